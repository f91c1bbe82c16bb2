//! Forward-auth: the decision without the proxying, for teams that keep their
//! own proxy (nginx `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`
//! HTTP). The outer proxy describes the original request; the same stages as
//! in proxy mode ([`super::decide`]) judge it, and the answer is 200 with the
//! identity headers, or exactly the refusal the proxy would have sent.
//!
//! Where the original request comes from, first found wins:
//! - method: `X-Forwarded-Method` (Traefik, Envoy), `X-Original-Method` (nginx),
//!   else the auth request's own method (Envoy `ext_authz` sends the original);
//! - URI: `X-Forwarded-Uri`, `X-Original-URI`, else the auth request's own;
//! - host: `X-Forwarded-Host`, else `Host`.
//!
//! Two sources that disagree (say `X-Forwarded-Uri` and `X-Original-URI` with
//! different values) are refused: the outer proxy is misconfigured, and guessing
//! would decide for a request that may not be the one it forwards.

use std::sync::Arc;

use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::decide;
use super::handle::{Outcome, Proxy, ProxyBody};
use super::respond::Reject;
use super::upgrade::{self, Asked};
use crate::auth::Identity;
use crate::net::ConnInfo;
use crate::policy::cors::{self, Preflight};
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
        req: Request<Incoming>,
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
    req: &Request<Incoming>,
    out: &mut Outcome,
) -> Result<Option<Arc<Identity>>, Reject> {
    let original = original(req)?;
    // A CORS preflight on a route with `cors:` needs no token; the outer proxy
    // then answers it (CORS response headers are its job in this mode).
    if let Some(asked) = cors::preflight_method(&original.method, req.headers()) {
        let path = crate::routing::normalize(&original.uri, false).map_err(Reject::BadPath)?;
        if let crate::routing::RouteMatch::Found(i) = snap.table.lookup(&asked, &path) {
            if let Some(policy) = &snap.routes[i].cors {
                out.route = Some(snap.routes[i].name.clone());
                out.route_index = Some(i);
                return match policy.preflight(&asked, req.headers()) {
                    Preflight::Allowed(_) => Ok(None),
                    Preflight::Refused => Err(Reject::CorsRefused),
                };
            }
        }
    }
    let decision = decide::decide(
        snap,
        &original.method,
        &original.uri,
        req.headers(),
        false,
        out,
    )
    .await?;
    // An upgrade is judged as the proxy would judge it.
    let route = &snap.routes[decision.route];
    match upgrade::asked(req.headers()) {
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

/// The method and URI of the original request.
fn original<B>(req: &Request<B>) -> Result<Original, Reject> {
    let h = req.headers();
    let method = match one_of(h, &[&X_FORWARDED_METHOD, &X_ORIGINAL_METHOD])? {
        Some(v) => Method::from_bytes(v.as_bytes()).map_err(|_| Reject::BadMethod)?,
        None => req.method().clone(),
    };
    let uri = match one_of(h, &[&X_FORWARDED_URI, &X_ORIGINAL_URI])? {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<Uri>().ok())
            .ok_or(Reject::BadPath(crate::routing::PathError::NotOriginForm))?,
        None => req.uri().clone(),
    };
    if uri.scheme().is_some() || uri.authority().is_some() {
        // The original request line was origin-form: anything else is not what
        // the outer proxy forwards.
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

    #[test]
    fn the_original_request_comes_from_the_first_source_found() {
        let o = original(&req(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/orgs/acme/items/1?x=1"),
            ("x-forwarded-host", "api.example.test"),
        ]))
        .expect("traefik");
        assert_eq!(
            (o.method, o.uri.to_string()),
            (Method::DELETE, "/orgs/acme/items/1?x=1".to_owned())
        );
        let o = original(&req(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/a"),
        ]))
        .expect("nginx");
        assert_eq!((o.method, o.uri.path()), (Method::POST, "/a"));
        let o = original(&req(&[])).expect("envoy");
        assert_eq!((o.method, o.uri.path()), (Method::GET, "/auth"));
        // Both spellings agreeing is fine; disagreeing is refused.
        assert!(original(&req(&[("x-forwarded-uri", "/a"), ("x-original-uri", "/a")])).is_ok());
        assert_eq!(
            original(&req(&[
                ("x-forwarded-uri", "/a"),
                ("x-original-uri", "/admin")
            ]))
            .err(),
            Some(Reject::AmbiguousOriginal)
        );
        assert!(original(&req(&[("x-forwarded-uri", "http://evil.test/a")])).is_err());
        assert_eq!(
            original(&req(&[("x-forwarded-host", "a b")])).err(),
            Some(Reject::BadHost)
        );
    }
}
