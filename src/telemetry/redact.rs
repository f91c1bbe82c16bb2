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

/// A URL as logs may show it: scheme, host, port and path. The userinfo and
/// the query are left out: either may carry a credential (`?api_key=…`).
pub fn url(uri: &http::Uri) -> String {
    let mut out = String::with_capacity(uri.path().len() + 32);
    if let Some(s) = uri.scheme_str() {
        out.push_str(s);
        out.push_str("://");
    }
    if let Some(host) = uri.host() {
        out.push_str(host);
    }
    if let Some(port) = uri.port_u16() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(uri.path());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query() {
        let u: http::Uri = "https://user:pw@id.example.test:8443/jwks.json?key=s3cret"
            .parse()
            .expect("uri");
        assert_eq!(url(&u), "https://id.example.test:8443/jwks.json");
        let u: http::Uri = "http://[::1]/a".parse().expect("uri");
        assert_eq!(url(&u), "http://[::1]/a");
    }

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
