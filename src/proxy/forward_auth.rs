//! Forward-auth: the decision without the proxying, for teams that keep their
//! own proxy (nginx `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`
//! HTTP). The outer proxy describes the original request; the same stages as
//! in proxy mode ([`super::decide`]) judge it, and the answer is 200 with the
//! identity headers, or exactly the refusal the proxy would have sent.
//!
//! The original request must be described, as a pair: `X-Forwarded-Method` +
//! `X-Forwarded-Uri` (Traefik) or `X-Original-Method` + `X-Original-URI`
//! (nginx). Without one, the auth request's own request line is the original
//! only with `forward_auth.trust_request_line` (Envoy `ext_authz` sends it so);
//! otherwise, or with half a pair, the request is refused: guessing would judge
//! the auth request's `GET /` instead of the request the proxy forwards. The
//! host is `X-Forwarded-Host`, else `Host`.
//!
//! Two sources that disagree (say `X-Forwarded-Uri` and `X-Original-URI` with
//! different values) are refused: the outer proxy is misconfigured, and guessing
//! would decide for a request that may not be the one it forwards.
//!
//! What differs from proxy mode, because the outer proxy forwards the client's
//! request as it came and nothing here can remove a header from it: a header
//! the proxy would strip (an identity header, a URL override, a method override
//! the route does not honour, a forwarding header spelt with `_`) is refused;
//! and a CORS preflight is judged like any request of its route (the proxy
//! answers preflights without a token and never forwards them, but a 200 here
//! would make the outer proxy forward it).

use std::sync::Arc;

use crate::net::Inbound;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};

use super::decide;
use super::handle::{Outcome, Proxy, ProxyBody};
use super::headers::{self, Overrides};
use super::respond::Reject;
use super::upgrade::{self, Asked};
use crate::auth::Identity;
use crate::net::ConnInfo;
use crate::state::Snapshot;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The original request as the outer proxy described it.
#[derive(Debug)]
struct Original {
    method: Method,
    uri: Uri,
}

impl Proxy {
    /// Decides one forward-auth request; never fails (every refusal becomes the
    /// response the proxy would have sent, counted like one).
    pub async fn forward_auth(
        &self,
        req: Request<Inbound>,
        _conn: &ConnInfo,
        out: &mut Outcome,
    ) -> Response<ProxyBody> {
        let snapshot = self.snapshot();
        match decide_forwarded(&snapshot, &req, out).await {
            Ok(identity) => allowed(&snapshot, identity.as_deref()),
            Err(reject) => self.refuse(reject, out, false),
        }
    }
}

async fn decide_forwarded(
    snap: &Snapshot,
    req: &Request<Inbound>,
    out: &mut Outcome,
) -> Result<Option<Arc<Identity>>, Reject> {
    let trust = snap
        .config
        .forward_auth
        .as_ref()
        .is_some_and(|f| f.trust_request_line);
    let original = original(req, trust)?;
    // What the proxy would strip whatever the route: refused before a token
    // is verified for a request that cannot be allowed.
    let identity = &snap.identity_headers;
    if let Some(h) = headers::unstrippable(req.headers(), identity, Overrides::KeepMethod) {
        return Err(Reject::SpoofedHeader(h));
    }
    // No preflight exception (see the module's header): an `OPTIONS` is
    // decided as one, so a route that requires a token wants one.
    let decision = decide::decide(
        snap,
        &original.method,
        &original.uri,
        req.headers(),
        false,
        out,
    )
    .await?;
    let route = &snap.routes[decision.route];
    if !route.method_override {
        if let Some(h) = headers::unstrippable(req.headers(), identity, Overrides::Strip) {
            return Err(Reject::SpoofedHeader(h));
        }
    }
    // An upgrade is judged as the proxy would judge it (when the outer proxy
    // passes the auth request one at all).
    match upgrade::asked(req.headers(), super::headers::Seen::of(req.headers())) {
        Asked::Nothing => {}
        Asked::WebSocket if route.websocket => {}
        Asked::WebSocket | Asked::Other => return Err(Reject::UpgradeRefused),
    }
    Ok(decision.identity)
}

/// 200 with every identity header: the verified value, or empty when the token
/// (or an anonymous route) gives none, so that an outer proxy that copies them
/// onto the request overwrites whatever the client sent under those names.
fn allowed(snap: &Snapshot, identity: Option<&Identity>) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::default()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    for (i, name) in snap.identity_headers.iter().enumerate() {
        let value = identity
            .and_then(|id| id.headers.get(i).cloned().flatten())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        h.insert(name.clone(), value);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// The method and URI of the original request (`trust_request_line`: the
/// auth request's own request line stands for it when nothing describes it).
fn original<B>(req: &Request<B>, trust_request_line: bool) -> Result<Original, Reject> {
    let h = req.headers();
    let forwarded = pair(h, &X_FORWARDED_METHOD, &X_FORWARDED_URI)?;
    let nginx = pair(h, &X_ORIGINAL_METHOD, &X_ORIGINAL_URI)?;
    let described = match (forwarded, nginx) {
        (Pair::Full(a), Pair::Full(b)) if a != b => return Err(Reject::AmbiguousOriginal),
        (Pair::Full(a), Pair::Absent | Pair::Full(_)) | (Pair::Absent, Pair::Full(a)) => Some(a),
        (Pair::Absent, Pair::Absent) => None,
        (Pair::Half(missing), other) | (other, Pair::Half(missing)) => {
            // Half a pair beside a whole one: a client sent it (the outer
            // proxy forwards its headers). Without a whole one: the proxy
            // is misconfigured, and every request will be refused.
            if matches!(other, Pair::Full(_)) {
                tracing::debug!(
                    missing,
                    "Forward-auth request describes the original request by halves"
                );
            } else {
                tracing::warn!(
                    missing,
                    "Forward-auth request describes the original request by halves"
                );
            }
            return Err(Reject::NoOriginal);
        }
    };
    let (method, uri) = match described {
        // The request line is the description: another one must agree with it.
        Some((m, u)) if trust_request_line && !is_request_line(req, m, u) => {
            return Err(Reject::AmbiguousOriginal);
        }
        Some((m, u)) => (
            Method::from_bytes(m.as_bytes()).map_err(|_| Reject::BadMethod)?,
            u.to_str()
                .ok()
                .and_then(|s| s.parse::<Uri>().ok())
                .ok_or(Reject::BadPath(crate::routing::PathError::NotOriginForm))?,
        ),
        None if trust_request_line => (req.method().clone(), req.uri().clone()),
        None => {
            tracing::warn!(
                missing = "X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI",
                "Forward-auth request does not describe the original request"
            );
            return Err(Reject::NoOriginal);
        }
    };
    // The original request line was origin-form: anything else is not what
    // the outer proxy forwards. Unlike the proxy, which sends the upstream the
    // path it judged, the outer proxy forwards the path as the client wrote
    // it: a fragment (dropped when parsed here, kept by some upstreams) or a
    // leading `//` (a network-path reference to URL parsers: `//public/admin`
    // is the path `/admin` on host `public`) would be judged as another path.
    let path_and_query = uri.path_and_query().map_or("", |p| p.as_str());
    if uri.scheme().is_some()
        || uri.authority().is_some()
        || path_and_query.starts_with("//")
        || described.is_some_and(|(_, u)| u.as_bytes().contains(&b'#'))
    {
        return Err(Reject::BadPath(crate::routing::PathError::NotOriginForm));
    }
    let host = match one_of(h, &[&X_FORWARDED_HOST])? {
        Some(v) => Some(v),
        None => one_of(h, &[&HOST])?,
    };
    if let Some(host) = host {
        if !super::headers::valid_authority(host.as_bytes()) {
            return Err(Reject::BadHost);
        }
    }
    Ok(Original { method, uri })
}

/// One pair of description headers.
#[derive(Debug, Clone, Copy)]
enum Pair<'a> {
    Absent,
    /// One of the two, the other (named) missing.
    Half(&'static str),
    Full((&'a HeaderValue, &'a HeaderValue)),
}

/// A method and a URI header: both present, both absent, or half a pair.
fn pair<'a>(
    h: &'a HeaderMap,
    method: &'static HeaderName,
    uri: &'static HeaderName,
) -> Result<Pair<'a>, Reject> {
    Ok(match (one_of(h, &[method])?, one_of(h, &[uri])?) {
        (Some(m), Some(u)) => Pair::Full((m, u)),
        (None, None) => Pair::Absent,
        (Some(_), None) => Pair::Half(uri.as_str()),
        (None, Some(_)) => Pair::Half(method.as_str()),
    })
}

/// Whether a description names exactly the auth request's own request line.
fn is_request_line<B>(req: &Request<B>, method: &HeaderValue, uri: &HeaderValue) -> bool {
    method.as_bytes() == req.method().as_str().as_bytes()
        && req
            .uri()
            .path_and_query()
            .is_some_and(|pq| pq.as_str().as_bytes() == uri.as_bytes())
}

/// The one value the first present of `names` carries; several lines, or two
/// names that disagree, are refused.
fn one_of<'a>(h: &'a HeaderMap, names: &[&HeaderName]) -> Result<Option<&'a HeaderValue>, Reject> {
    let mut found: Option<&HeaderValue> = None;
    for name in names {
        let mut values = h.get_all(*name).iter();
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Err(Reject::AmbiguousOriginal);
            }
            match found {
                Some(prev) if prev != v => return Err(Reject::AmbiguousOriginal),
                _ => found = Some(v),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/auth");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    fn described(pairs: &[(&str, &str)]) -> Result<(Method, String), Reject> {
        original(&req(pairs), false).map(|o| (o.method, o.uri.to_string()))
    }

    #[test]
    fn the_original_request_is_described_by_a_pair() {
        assert_eq!(
            described(&[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/orgs/acme/items/1?x=1"),
                ("x-forwarded-host", "api.example.test"),
            ]),
            Ok((Method::DELETE, "/orgs/acme/items/1?x=1".to_owned()))
        );
        assert_eq!(
            described(&[("x-original-method", "POST"), ("x-original-uri", "/a")]),
            Ok((Method::POST, "/a".to_owned()))
        );
        // Both pairs agreeing is fine; disagreeing is refused.
        let both = |m: &'static str, u: &'static str| {
            described(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a"),
                ("x-original-method", m),
                ("x-original-uri", u),
            ])
        };
        assert!(both("GET", "/a").is_ok());
        assert_eq!(both("GET", "/admin"), Err(Reject::AmbiguousOriginal));
        assert_eq!(both("DELETE", "/a"), Err(Reject::AmbiguousOriginal));
        let get = ("x-forwarded-method", "GET");
        for uri in [
            "http://evil.test/a",
            "//public/admin",
            "/public/x#/../../admin",
        ] {
            let r = described(&[get, ("x-forwarded-uri", uri)]);
            assert!(r.is_err(), "{uri}: {r:?}");
        }
        assert_eq!(
            described(&[get, ("x-forwarded-uri", "/a"), ("x-forwarded-host", "a b")]),
            Err(Reject::BadHost)
        );
    }

    #[test]
    fn no_description_or_half_of_one_is_refused() {
        for pairs in [
            &[][..],
            &[("x-forwarded-uri", "/a")][..],
            &[("x-original-method", "GET")][..],
            &[("x-forwarded-method", "GET"), ("x-original-uri", "/a")][..],
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/a"),
                ("x-forwarded-method", "GET"),
            ][..],
        ] {
            assert_eq!(described(pairs), Err(Reject::NoOriginal), "{pairs:?}");
        }
    }

    #[test]
    fn a_trusted_request_line_is_the_description() {
        let o = original(&req(&[]), true).expect("envoy");
        assert_eq!((o.method, o.uri.path()), (Method::GET, "/auth"));
        let same = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/auth")];
        assert!(original(&req(&same), true).is_ok());
        let other = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ];
        assert_eq!(
            original(&req(&other), true).err(),
            Some(Reject::AmbiguousOriginal)
        );
        assert_eq!(
            original(&req(&[("x-original-uri", "/auth")]), true).err(),
            Some(Reject::NoOriginal)
        );
    }
}
