//! The only way to print headers: credentials are replaced before anything is shown.

use std::fmt;

use http::HeaderMap;

/// Headers whose values are never printed.
const SECRET: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// A `Debug` view of a header map with credentials redacted.
pub struct Redacted<'a>(pub &'a HeaderMap);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (name, value) in self.0 {
            if SECRET.contains(&name.as_str()) {
                m.entry(&name.as_str(), &"[redacted]");
            } else {
                m.entry(&name.as_str(), &value);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer secret-token".parse().expect("value"),
        );
        h.insert("accept", "*/*".parse().expect("value"));
        let shown = format!("{:?}", Redacted(&h));
        assert!(!shown.contains("secret-token"));
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("*/*"));
    }
}
