//! The pipeline, top to bottom in one function: normalise → route → bearer →
//! verify → authorise → rewrite headers → forward → respond, then one access-log
//! line and the metrics, on success and on failure alike.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION};
use http::{HeaderValue, Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{ResponseBody, UpstreamBody};
use super::headers::{self, X_REQUEST_ID};
use super::pool::{self, ForwardError, Pools};
use super::respond::Reject;
use crate::auth::Identity;
use crate::auth::bearer::{self, Credentials};
use crate::config::AuthMode;
use crate::net::{self, ConnInfo};
use crate::routing::{self, NormalPath, PathError, RouteMatch};
use crate::state::Snapshot;
use crate::telemetry::{Metrics, Reason};
use crate::upstream::{ConnectError, Target};

/// A response body: the upstream's, streamed, or one the proxy wrote.
pub type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// One worker's proxy: the configuration in force (shared) and this worker's
/// upstream connections (its own).
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// This worker's connections to the upstreams.
    pools: Pools,
    metrics: Metrics,
}

/// What one request did, for the access log and the metrics (written by the
/// dispatcher once the response is ready, on success and failure alike).
#[derive(Debug, Default)]
pub struct Outcome {
    /// The matched route's pattern.
    pub route: Option<Arc<str>>,
    /// The verified identity, when a token was verified.
    pub identity: Option<Arc<Identity>>,
    /// The normalised path (absent when the path was refused).
    pub path: Option<String>,
    /// Why the gateway answered itself.
    pub reason: Option<&'static str>,
}

// === impl Proxy ===

impl Proxy {
    /// A proxy over `snapshot`, for one worker: its upstream connections are its own.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Proxy {
        Proxy {
            snapshot,
            pools: Pools::new(),
            metrics,
        }
    }

    /// Handles one request; never fails (every refusal becomes a response, and
    /// is counted in `portcullis_rejections_total`). What it did goes to `out`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        out: &mut Outcome,
    ) -> Response<ProxyBody> {
        let snapshot = self.snapshot.load_full();
        let close_after_reject = req.version() < Version::HTTP_2 && !req.body().is_end_stream();
        match self.pipeline(&snapshot, req, conn, request_id, out).await {
            Ok(resp) => resp,
            Err(reject) => {
                let reason = reject.reason();
                out.reason = Some(reason);
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
                resp
            }
        }
    }

    async fn pipeline(
        &self,
        snap: &Snapshot,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        out: &mut Outcome,
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
        out.path = Some(path.decoded().to_owned());

        // 2. Route, with the method the upstream will act on.
        let (index, effective_method) = route(snap, req.method(), req.headers(), &path)?;
        let route = &snap.routes[index];
        out.route = Some(route.name.clone());
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
                    out.identity = Some(id.clone());
                    policy
                        .authorize(&id, &path)
                        .map_err(|d| Reject::Denied(d, policy.scope_challenge.clone()))?;
                    Some(id)
                }
            },
        };
        // 6. Rewrite headers.
        let pools = self.pools.get(snap.generation, &snap.upstreams);
        let pool = &pools[route.upstream];
        let target = pool.target();
        let (mut parts, body) = req.into_parts();
        let pq = target
            .path_and_query(path.encoded(), parts.uri.query())
            .ok_or(Reject::Internal)?;
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        headers::strip_hop_by_hop(&mut parts.headers);
        let overrides = if route.method_override {
            headers::Overrides::KeepMethod
        } else {
            headers::Overrides::Strip
        };
        let trusted = net::is_trusted(conn.peer.ip(), &snap.config.server.trusted_proxies);
        headers::strip_client_controlled(
            &mut parts.headers,
            &snap.identity_headers,
            overrides,
            trusted,
        );
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
            &headers::Hop {
                peer: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                authority: authority.as_deref(),
                trusted,
                client_certs: conn.client_certs.as_deref(),
            },
        );
        parts
            .headers
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        pool::prepare(target, &mut parts, pq, false)
            .map_err(|e| forward_reject(e, target, request_id))?;
        let (body, body_sent) =
            UpstreamBody::new(body, snap.identity_headers.clone(), route.max_body);
        let upstream_req = Request::from_parts(parts, body);

        // 7. Forward.
        let sent = Instant::now();
        let result = pool.send(upstream_req, body_sent, false).await;
        self.metrics
            .upstream_latency
            .get_or_create(&target.label)
            .observe(sent.elapsed().as_secs_f64());
        let mut resp = result.map_err(|e| forward_reject(e, target, request_id))?;
        headers::strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }
}

/// The refusal for a forwarding failure, logged with its cause (and the request
/// id, also when the request span is filtered out): `warn` when the upstream
/// failed, `debug` when the client's body did.
fn forward_reject(e: ForwardError, target: &Target, request_id: &HeaderValue) -> Reject {
    let reject = match &e {
        ForwardError::Connect(ConnectError::Timeout) | ForwardError::ResponseTimeout => {
            Reject::UpstreamTimeout
        }
        ForwardError::Connect(_) | ForwardError::Handshake(_) | ForwardError::Exchange(_) => {
            Reject::UpstreamUnavailable
        }
        ForwardError::ClientBody => Reject::BadBody,
        ForwardError::BodyTooLarge => Reject::BodyTooLarge,
        ForwardError::BadRequest => Reject::Internal,
    };
    let error = crate::telemetry::events::chain(&e);
    let upstream = &*target.label.upstream;
    let request_id = request_id.to_str().unwrap_or_default();
    match reject {
        Reject::BadBody | Reject::BodyTooLarge => {
            tracing::debug!(upstream, request_id, %error, "Request body refused")
        }
        Reject::Internal => {
            tracing::error!(upstream, request_id, %error, "Upstream request could not be built")
        }
        _ => tracing::warn!(upstream, request_id, %error, "Upstream request failed"),
    }
    reject
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
