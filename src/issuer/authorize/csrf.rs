//! Cookies and CSRF protection for the login pages: reading a cookie, writing
//! `Set-Cookie` values (with the `__Host-` prefix and `Secure` when the issuer
//! is served over https), and the double-submit check that binds a form to its
//! login transaction in constant time.

use http::HeaderMap;
use http::header::COOKIE;

/// Compares two strings in constant time (for their common length; the length
/// itself is not secret).
pub fn ct_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether a login form may proceed: the token the transaction holds
/// (`expected`) equals both the token in the form and the one in the CSRF
/// cookie. Any missing piece fails.
pub fn csrf_ok(expected: &str, cookie: Option<&str>, field: Option<&str>) -> bool {
    match (cookie, field) {
        (Some(c), Some(f)) => !expected.is_empty() & ct_eq(expected, c) & ct_eq(expected, f),
        _ => false,
    }
}

/// The value of cookie `name` across every `Cookie` header; `None` when absent
/// or present more than once (a planted duplicate is not trusted).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v.trim_matches('"'));
            }
        }
    }
    found
}

/// How a cookie is scoped and protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieJar {
    /// The issuer is served over https: `Secure` and the `__Host-` prefix.
    pub secure: bool,
}

// === impl CookieJar ===

impl CookieJar {
    /// The cookie's full name (`__Host-` prefixed when secure).
    pub fn name(self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// A `Set-Cookie` value: `HttpOnly`, `Path=/`, the given `SameSite`, lasting
    /// `max_age` seconds (0 deletes it).
    pub fn set(self, base: &str, value: &str, same_site: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}",
            self.name(base)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn csrf_needs_cookie_field_and_transaction_to_agree() {
        assert!(csrf_ok("tok", Some("tok"), Some("tok")));
        assert!(!csrf_ok("tok", Some("tok"), Some("tox")));
        assert!(!csrf_ok("tok", Some("bad"), Some("tok")));
        assert!(!csrf_ok("tok", None, Some("tok")));
        assert!(!csrf_ok("tok", Some("tok"), None));
        assert!(!csrf_ok("", Some(""), Some("")));
        assert!(!csrf_ok("tok", Some("toke"), Some("toke")));
    }

    #[test]
    fn cookies_are_read_from_every_header_and_duplicates_refused() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
        h.append(COOKIE, HeaderValue::from_static("b=9"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn set_cookie_carries_the_protections() {
        let plain = CookieJar { secure: false }.set("s", "v", "Lax", 60);
        assert_eq!(plain, "s=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        let secure = CookieJar { secure: true }.set("s", "v", "Strict", 0);
        assert!(secure.starts_with("__Host-s=v;") && secure.ends_with("; Secure"));
        assert!(secure.contains("SameSite=Strict"));
    }
}
