//! Header rewriting: hop-by-hop removal, identity headers (set from the token,
//! stripped from the client), `X-Forwarded-*` and `X-Request-Id`.

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::Identity;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY_AUTHENTICATE: HeaderName = HeaderName::from_static("proxy-authenticate");
static PROXY_AUTHORIZATION: HeaderName = HeaderName::from_static("proxy-authorization");

/// The longest client-supplied request id that is kept.
const MAX_REQUEST_ID: usize = 128;

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any the `Connection`
/// header names. `Trailer` is end-to-end and stays: hyper's HTTP/1.1 encoder
/// sends only the trailer fields it declares.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most requests carry none of these.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(&CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(&CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(&CONNECTION);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove(&TRANSFER_ENCODING);
    headers.remove(&UPGRADE);
    // `TE: trailers` is the one value allowed through (gRPC needs it).
    let te_trailers = headers
        .get(&TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(&TE);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "transfer-encoding"
            | "upgrade"
            | "te"
    )
}

/// Removes every identity header, whatever letter case the client used
/// (header names are case-insensitive and stored lower-case), and any spelling
/// with `_` for `-` (`X_Auth_Subject`), which CGI, WSGI and Rack upstreams read
/// as the identity header itself.
pub fn strip_identity(headers: &mut HeaderMap, names: &[HeaderName]) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for k in headers.keys() {
        if names
            .iter()
            .any(|n| same_but_underscores(n.as_str(), k.as_str()))
        {
            doomed.push(k.clone());
        }
    }
    for k in doomed {
        headers.remove(k);
    }
}

/// `identity` spelt as `candidate`, where `candidate` may have `_` for `-`.
fn same_but_underscores(identity: &str, candidate: &str) -> bool {
    identity.len() == candidate.len()
        && identity
            .bytes()
            .zip(candidate.bytes())
            .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
}

/// Sets the identity headers from a verified identity.
pub fn set_identity(headers: &mut HeaderMap, names: &[HeaderName], identity: &Identity) {
    for (name, value) in names.iter().zip(&identity.headers) {
        if let Some(v) = value {
            headers.insert(name.clone(), v.clone());
        }
    }
}

/// Appends the client address to `X-Forwarded-For` (every incoming line kept,
/// joined into one), sets `X-Forwarded-Proto` and `X-Forwarded-Host` (from
/// `Host`, or the HTTP/2 authority).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    authority: Option<&str>,
) {
    let ip = client.to_string();
    // Several header lines are one comma-separated list (RFC 9110 §5.3).
    let prev: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prev.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prev.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    let host = headers
        .get(&HOST)
        .cloned()
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok()));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// The request id: the client's when it is sane, else a new UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let ok = !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b));
        if ok {
            return v.clone();
        }
    }
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
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
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("accept"));
        assert!(h.contains_key("trailer"));
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
    }

    #[test]
    fn forwarded_headers_append_and_set() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("host", "api.example.test"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut h, "127.0.0.1".parse().expect("ip"), "http", None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.test");
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "bad id with spaces")]));
        assert_eq!(fresh.len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
