//! CORS per route, as the Fetch standard describes it: with `cors:` on a route,
//! the gateway answers that route's preflights itself (no token needed: browsers
//! send none; never forwarded), and adds the CORS response headers to its
//! responses — proxied ones and refusals alike, so that a browser can read a 401.
//! A disallowed origin gets no CORS headers at all; credentials never go with
//! `*`; every answer that depends on `Origin` says `Vary: Origin`.
//!
//! Without `cors:`, an `OPTIONS` request is an ordinary request of its route
//! (closed by default: a `required` route wants a token).

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::CorsConfig;

/// A route's CORS policy, with its header values made once.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    any_origin: bool,
    methods: Vec<Method>,
    methods_value: Option<HeaderValue>,
    headers: Vec<HeaderName>,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

/// What a preflight gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Allowed: these response headers, status 204.
    Allowed(HeaderMap),
    /// Origin, method or a header not allowed: no CORS headers.
    Refused,
}

/// Whether a request is a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), and the method it asks about.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

impl Cors {
    /// Compiles a route's `cors:`; `route_methods` (the route's `methods`)
    /// stand in when `allow_methods` is not given.
    pub fn new(cfg: &CorsConfig, route_methods: Option<&[Method]>) -> Cors {
        let methods = if cfg.allow_methods.is_empty() {
            route_methods
                .map(<[Method]>::to_vec)
                .unwrap_or_else(|| vec![Method::GET, Method::HEAD, Method::POST])
        } else {
            cfg.allow_methods.clone()
        };
        let list = |items: Vec<&str>| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        Cors {
            any_origin: cfg.allow_origins.iter().any(|o| o == "*"),
            origins: cfg.allow_origins.clone(),
            methods_value: list(methods.iter().map(Method::as_str).collect()),
            methods,
            headers_value: list(cfg.allow_headers.iter().map(HeaderName::as_str).collect()),
            headers: cfg.allow_headers.clone(),
            expose_value: list(cfg.expose_headers.iter().map(HeaderName::as_str).collect()),
            max_age: cfg
                .max_age
                .and_then(|d| HeaderValue::from_str(&d.as_secs().to_string()).ok()),
            credentials: cfg.allow_credentials,
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed:
    /// `*` for any origin without credentials, else the origin itself.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        if self.any_origin {
            return Some(if self.credentials {
                origin.clone()
            } else {
                HeaderValue::from_static("*")
            });
        }
        self.origins
            .iter()
            .any(|o| o == text)
            .then(|| origin.clone())
    }

    /// Answers a preflight for `method` (from `Access-Control-Request-Method`).
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Preflight {
        let Some(origin) = request.get(ORIGIN).and_then(|o| self.allow_origin(o)) else {
            return Preflight::Refused;
        };
        if !self.methods.contains(method) {
            return Preflight::Refused;
        }
        let asked_headers = request
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty());
        for h in asked_headers {
            if !self
                .headers
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(h))
            {
                return Preflight::Refused;
            }
        }
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Some(m) = &self.methods_value {
            out.insert(ACCESS_CONTROL_ALLOW_METHODS, m.clone());
        }
        if let Some(h) = &self.headers_value {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
        }
        if let Some(a) = &self.max_age {
            out.insert(ACCESS_CONTROL_MAX_AGE, a.clone());
        }
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Preflight::Allowed(out)
    }

    /// Sets the CORS headers of an actual (non-preflight) response for a
    /// request from `origin`, replacing any the upstream set, and adds
    /// `Vary: Origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        for name in [
            &ACCESS_CONTROL_ALLOW_ORIGIN,
            &ACCESS_CONTROL_ALLOW_CREDENTIALS,
            &ACCESS_CONTROL_EXPOSE_HEADERS,
            &ACCESS_CONTROL_ALLOW_METHODS,
            &ACCESS_CONTROL_ALLOW_HEADERS,
            &ACCESS_CONTROL_MAX_AGE,
        ] {
            response.remove(name);
        }
        // Only `*` without credentials answers the same to every origin.
        if !self.any_origin || self.credentials {
            add_vary(response, "origin");
        }
        let Some(allowed) = origin.and_then(|o| self.allow_origin(o)) else {
            return;
        };
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            response.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(e) = &self.expose_value {
            response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

/// Adds `token` to `Vary` unless it is already there (or `Vary: *`).
pub fn add_vary(headers: &mut HeaderMap, token: &str) {
    let present = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case(token));
    if !present {
        if let Ok(v) = HeaderValue::from_str(token) {
            headers.append(VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(origins: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec![
                HeaderName::from_static("authorization"),
                HeaderName::from_static("content-type"),
            ],
            expose_headers: vec![HeaderName::from_static("x-request-id")],
            max_age: Some(Duration::from_secs(600)),
            allow_credentials: credentials,
        }
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn preflights_follow_the_policy() {
        let c = Cors::new(&cfg(&["https://app.example.test"], true), None);
        let ok = req(&[
            ("origin", "https://app.example.test"),
            (
                "access-control-request-headers",
                "Authorization, content-type",
            ),
        ]);
        let Preflight::Allowed(h) = c.preflight(&Method::POST, &ok) else {
            panic!("refused");
        };
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.test");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(
            h[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        for (method, headers) in [
            (Method::DELETE, ok.clone()),
            (Method::GET, req(&[("origin", "https://evil.test")])),
            (
                Method::GET,
                req(&[
                    ("origin", "https://app.example.test"),
                    ("access-control-request-headers", "x-secret"),
                ]),
            ),
            (Method::GET, req(&[("origin", "null")])),
        ] {
            assert_eq!(
                c.preflight(&method, &headers),
                Preflight::Refused,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn credentials_never_go_with_a_wildcard_and_responses_vary_on_origin() {
        let any = Cors::new(&cfg(&["*"], false), None);
        let mut h = HeaderMap::new();
        any.decorate(Some(&HeaderValue::from_static("https://x.test")), &mut h);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let listed = Cors::new(&cfg(&["https://app.example.test"], true), None);
        let mut h = req(&[
            ("access-control-allow-origin", "*"),
            ("vary", "accept-encoding"),
        ]);
        listed.decorate(Some(&HeaderValue::from_static("https://evil.test")), &mut h);
        assert!(
            !h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN),
            "the upstream's header is replaced"
        );
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);
        let mut h = HeaderMap::new();
        listed.decorate(
            Some(&HeaderValue::from_static("https://app.example.test")),
            &mut h,
        );
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.test");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
    }
}
