//! The pipeline, top to bottom in one function: normalise → route → bearer →
//! verify → authorise → rewrite headers → forward → respond, then one access-log
//! line and the metrics, on success and on failure alike.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION};
use http::{HeaderValue, Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::forward::{Upstream, UpstreamBody};
use super::headers::{self, X_REQUEST_ID};
use super::respond::Reject;
use crate::auth::Identity;
use crate::auth::bearer::{self, Credentials};
use crate::config::AuthMode;
use crate::routing::{self, NormalPath, PathError, RouteMatch};
use crate::state::Snapshot;
use crate::telemetry::access::{AccessEntry, AccessLog};
use crate::telemetry::{Metrics, Reason, RouteStatus};

/// A response body: the upstream's, streamed, or one the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The proxy service shared by every connection.
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    upstreams: Arc<[Upstream]>,
    metrics: Metrics,
    access_log: AccessLog,
    proto: &'static str,
    no_route: Arc<str>,
}

/// What the access log and metrics need to know about one request.
struct Ctx {
    route: Option<Arc<str>>,
    identity: Option<Arc<Identity>>,
}

// === impl Proxy ===

impl Proxy {
    /// A proxy over `snapshot`, forwarding to `upstreams` (indexed as in the config).
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        upstreams: Arc<[Upstream]>,
        metrics: Metrics,
        access_log: AccessLog,
    ) -> Proxy {
        Proxy {
            snapshot,
            upstreams,
            metrics,
            access_log,
            proto: "http",
            no_route: Arc::from(""),
        }
    }

    /// Handles one request; never fails (every error becomes a response).
    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Response<ProxyBody> {
        let start = Instant::now();
        let snapshot = self.snapshot.load_full();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        let close_after_reject = req.version() < Version::HTTP_2 && !req.body().is_end_stream();
        let mut ctx = Ctx {
            route: None,
            identity: None,
        };
        let mut path_for_log = None;
        let result = self
            .pipeline(
                &snapshot,
                req,
                client,
                &request_id,
                &mut ctx,
                &mut path_for_log,
            )
            .await;
        let (mut resp, reason) = match result {
            Ok(resp) => (resp, None),
            Err(reject) => {
                let reason = reject.reason();
                self.metrics
                    .rejections
                    .get_or_create(&Reason { reason })
                    .inc();
                let mut resp = reject.into_response().map(Either::Right);
                // The request body was not read: the connection cannot be reused.
                if close_after_reject {
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                (resp, Some(reason))
            }
        };
        resp.headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        let status = resp.status().as_u16();
        let route = ctx.route.unwrap_or_else(|| self.no_route.clone());
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        self.access_log.record(&AccessEntry {
            method: method.as_str(),
            path: path_for_log.as_deref().unwrap_or("-"),
            route: &route,
            status,
            latency_ms,
            sub: ctx.identity.as_ref().and_then(|i| i.sub.as_deref()),
            org: ctx.identity.as_ref().and_then(|i| i.org.as_deref()),
            reason,
            request_id: request_id.to_str().unwrap_or_default(),
        });
        self.metrics
            .requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        resp
    }

    async fn pipeline(
        &self,
        snap: &Snapshot,
        mut req: Request<Incoming>,
        client: SocketAddr,
        request_id: &HeaderValue,
        ctx: &mut Ctx,
        path_for_log: &mut Option<String>,
    ) -> Result<Response<ProxyBody>, Reject> {
        // 0. The request line and `Host`: what the upstream will dispatch on must
        //    be unambiguous before anything is judged by it.
        if !is_upper_token(req.method()) {
            return Err(Reject::BadMethod);
        }
        let (version, authority) = (req.version(), req.uri().authority().cloned());
        headers::check_host(req.headers_mut(), version, authority.as_ref())
            .map_err(|_| Reject::BadHost)?;

        // 1. Normalise before anything looks at the path, so that the route, the
        //    policy and the upstream all see the same resource.
        let h2 = req.version() == Version::HTTP_2;
        let path = routing::normalize(req.uri(), h2).map_err(Reject::BadPath)?;
        *path_for_log = Some(path.decoded().to_owned());

        // 2. Route, with the method the upstream will act on.
        let (index, effective_method) = route(snap, req.method(), req.headers(), &path)?;
        let route = &snap.routes[index];
        ctx.route = Some(route.name.clone());
        let policy = &route.policy;

        // 3–5. Bearer, verify, authorise (anonymous routes never look at the header).
        let identity = match policy.auth {
            AuthMode::Anonymous => None,
            mode => match bearer::read(req.headers()).map_err(Reject::BadAuthorization)? {
                Credentials::Absent if mode == AuthMode::Required => return Err(Reject::NoToken),
                Credentials::OtherScheme if mode == AuthMode::Required => {
                    return Err(Reject::WrongScheme);
                }
                Credentials::Absent | Credentials::OtherScheme => None,
                Credentials::Bearer(token) => {
                    let id = snap.verifier.verify(token).await.map_err(Reject::Token)?;
                    ctx.identity = Some(id.clone());
                    policy
                        .authorize(&id, &path)
                        .map_err(|d| Reject::Denied(d, policy.scope_challenge.clone()))?;
                    Some(id)
                }
            },
        };
        // 6. Rewrite headers.
        let upstream = &self.upstreams[route.upstream];
        let (mut parts, body) = req.into_parts();
        let uri = upstream.uri(path.encoded(), parts.uri.query())?;
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        headers::strip_hop_by_hop(&mut parts.headers);
        let overrides = if route.method_override {
            headers::Overrides::KeepMethod
        } else {
            headers::Overrides::Strip
        };
        headers::strip_client_controlled(&mut parts.headers, &snap.identity_headers, overrides);
        if let Some(m) = &effective_method {
            headers::set_method_override(&mut parts.headers, m);
        }
        if let Some(id) = &identity {
            headers::set_identity(&mut parts.headers, &snap.identity_headers, id);
        }
        if !policy.forward_token {
            parts.headers.remove(AUTHORIZATION);
        }
        headers::set_forwarded(
            &mut parts.headers,
            client.ip(),
            self.proto,
            authority.as_deref(),
        );
        parts
            .headers
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let (body, body_sent) = UpstreamBody::new(body, snap.identity_headers.clone());
        let upstream_req = Request::from_parts(parts, body);

        // 7. Forward.
        let sent = Instant::now();
        let result = upstream.send(upstream_req, body_sent).await;
        self.metrics
            .upstream_latency
            .get_or_create(&upstream.label)
            .observe(sent.elapsed().as_secs_f64());
        let mut resp = result?;
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }
}

/// Whether the method is an upper-case token (`A-Z`, `-`, `_`). Methods are
/// case-sensitive, but many frameworks upper-case them (Symfony, Laravel): a
/// `get` that no `methods: [GET]` route matches would reach them as a GET
/// through a weaker route. nginx refuses such methods too.
fn is_upper_token(m: &Method) -> bool {
    m.as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Finds the route for a normalised path, and the overridden method when the
/// route honours method overrides.
///
/// A path with matrix parameters is routed without them, and refused unless the
/// route it reaches opts in: a servlet upstream would route it without them too.
/// A method override is judged like the method itself: the route is looked up
/// again with it, and that route must opt in as well (so a `GET`-only route
/// cannot become a `DELETE` through another route's opt-in).
fn route(
    snap: &Snapshot,
    method: &Method,
    headers: &http::HeaderMap,
    path: &NormalPath,
) -> Result<(usize, Option<Method>), Reject> {
    let found = |m: &Method| match snap.table.lookup(m, path) {
        RouteMatch::Found(i) => Ok(i),
        // With matrix parameters, a path that reaches no route is refused for
        // them: the same resource without them may well exist.
        _ if path.has_matrix_params() => Err(Reject::BadPath(PathError::MatrixParams)),
        RouteMatch::MethodNotAllowed(allow) => Err(Reject::MethodNotAllowed(allow)),
        RouteMatch::NotFound => Err(Reject::NotFound),
    };
    let mut index = found(method)?;
    let mut effective = None;
    if snap.routes[index].method_override {
        if let Some(m) = headers::method_override(headers).map_err(|_| Reject::BadMethodOverride)? {
            index = found(&m)?;
            if !snap.routes[index].method_override {
                return Err(Reject::MethodOverrideRefused);
            }
            effective = Some(m);
        }
    }
    if path.has_matrix_params() && !snap.routes[index].matrix_params {
        return Err(Reject::BadPath(PathError::MatrixParams));
    }
    Ok((index, effective))
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}
