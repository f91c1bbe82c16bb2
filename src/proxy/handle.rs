//! The pipeline, top to bottom: the request's `Host` → the decision (method,
//! path, route, token, policy: `decide`) → upgrade check → rewrite headers →
//! forward → respond. The dispatcher writes one access-log line and the metrics
//! from the [`Outcome`], on success and on failure alike.

use std::borrow::Cow;
use std::sync::Arc;

use crate::net::Inbound;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, ORIGIN, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{Either, Full};
use tokio::time::Instant;

use super::body::{self, Buffered, RequestBodyError, ResponseBody, UpstreamBody};
use super::decide::{self, Decision};
use super::headers::{self, X_REQUEST_ID};
use super::pool::{self, ForwardError, Pools};
use super::respond::Reject;
use super::upgrade::{self, Asked};
use crate::auth::Identity;
use crate::net::{self, ConnInfo};
use crate::policy::cors::{self, Preflight};
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
    /// The matched route, as an index into the snapshot's routes.
    pub route_index: Option<usize>,
    /// The verified identity, when a token was verified.
    pub identity: Option<Arc<Identity>>,
    /// The normalised path (absent when the path was refused).
    pub path: Option<String>,
    /// Why the gateway answered itself.
    pub reason: Option<&'static str>,
    /// When the upstream's response head arrived: the request's latency ends
    /// there too (what follows is a header pass), read from the clock once.
    pub answered: Option<Instant>,
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
    /// `seen`: the request's fields ([`headers::Seen`]).
    pub async fn handle(
        &self,
        req: Request<Inbound>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        seen: headers::Seen,
        out: &mut Outcome,
    ) -> Response<ProxyBody> {
        let snapshot = self.snapshot.load_full();
        let close_after_reject = req.version() < Version::HTTP_2 && !req.body().is_end_stream();
        let origin = seen
            .origin()
            .then(|| req.headers().get(ORIGIN).cloned())
            .flatten();
        let mut resp = match self
            .pipeline(&snapshot, req, conn, request_id, seen, out)
            .await
        {
            Ok(resp) => resp,
            Err(reject) => self.refuse(reject, out, close_after_reject),
        };
        // CORS headers on everything a CORS route answers, refusals included,
        // so that a browser can read a 401.
        if let Some(cors) = out
            .route_index
            .and_then(|i| snapshot.routes[i].cors.as_ref())
        {
            cors.decorate(origin.as_ref(), resp.headers_mut());
        }
        resp
    }

    /// The configuration in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The response for a refusal, counted in `portcullis_rejections_total`.
    /// `body_unread`: an HTTP/1.x request body was left unread.
    pub fn refuse(
        &self,
        reject: Reject,
        out: &mut Outcome,
        body_unread: bool,
    ) -> Response<ProxyBody> {
        let reason = reject.reason();
        out.reason = Some(reason);
        self.metrics
            .rejections
            .get_or_create(&Reason { reason })
            .inc();
        if let Some(limit) = reject.limit() {
            self.metrics.limit_hit(limit);
        }
        // The request body was not read, or the client expects to speak
        // another protocol next: the connection cannot be reused.
        let close = body_unread || reject == Reject::UpgradeRefused;
        let mut resp = reject.into_response().map(Either::Right);
        if close {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn pipeline(
        &self,
        snap: &Snapshot,
        mut req: Request<Inbound>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        seen: headers::Seen,
        out: &mut Outcome,
    ) -> Result<Response<ProxyBody>, Reject> {
        // 1. `Host` before anything is judged: the upstream's virtual host must
        //    be the one the gateway saw (HTTP/2 requests get `:authority`).
        let (version, authority) = (req.version(), req.uri().authority().cloned());
        headers::check_host(req.headers_mut(), version, authority.as_ref())
            .map_err(|_| Reject::BadHost)?;
        // A CORS preflight on a route with `cors:` is answered here, without a
        // token (browsers send none) and never forwarded.
        let h2 = version == Version::HTTP_2;
        if let Some(asked) = seen
            .origin()
            .then(|| cors::preflight_method(req.method(), req.headers()))
            .flatten()
        {
            if let Some(answer) = preflight(snap, &req, &asked, h2, out) {
                return answer;
            }
        }
        // 2. The decision: method, path, route, token, policy.
        let decision =
            decide::decide(snap, req.method(), req.uri(), req.headers(), h2, out).await?;
        let route = &snap.routes[decision.route];
        // 3. An upgrade only where the route allows it; it never reaches an
        //    upstream otherwise. Its token was checked above, once.
        let asked = if h2 {
            Asked::Nothing
        } else {
            upgrade::asked(req.headers(), seen)
        };
        let websocket = match asked {
            Asked::Nothing => false,
            Asked::WebSocket if route.websocket => true,
            Asked::WebSocket | Asked::Other => return Err(Reject::UpgradeRefused),
        };
        // The route's `max_body` holds before anything is sent: a declared
        // length over it is refused at once, and a body of unknown length is
        // read first, up to it (a body with a declared length, or on a route
        // without the limit, streams as it arrives).
        let mut buffered = None;
        if let Some(limit) = route.max_body.filter(|_| !req.body().is_end_stream()) {
            match req.body().size_hint().exact() {
                Some(len) if len > limit => return Err(Reject::BodyTooLarge),
                Some(_) => {}
                None => {
                    // Boxed, the read and what it keeps: most requests never
                    // run it, and the pipeline's future stays as small.
                    let timeout = snap.config.server.limits.body_timeout;
                    let read = Box::pin(body::read_whole(req.body_mut(), limit, timeout)).await;
                    let read = read.map_err(|e| body_reject(&e, request_id))?;
                    buffered = Some(Box::new(read));
                }
            }
        }
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        // 4. Rewrite, 5. forward.
        let pools = self.pools.get(snap.generation, &snap.upstreams);
        let pool = &pools[route.upstream];
        let target = pool.target();
        let (upstream_req, added, body_sent) = rewrite(
            snap, req, buffered, conn, request_id, seen, &decision, out, target, websocket,
        )?;
        let sent = Instant::now();
        let result = pool
            .send(upstream_req, added, body_sent, websocket, sent)
            .await;
        let answered = Instant::now();
        out.answered = Some(answered);
        target
            .latency
            .get_or_init(|| {
                self.metrics
                    .upstream_latency
                    .get_or_create_owned(&target.label)
            })
            .observe((answered - sent).as_secs_f64());
        let mut resp = result.map_err(|e| forward_reject(e, target, request_id))?;
        // 6. Respond: a 101 splices the two upgraded streams.
        match client_upgrade {
            Some(client) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let upstream = hyper::upgrade::on(&mut resp);
                headers::strip_hop_by_hop(resp.headers_mut());
                let h = resp.headers_mut();
                h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                let idle = snap.config.server.limits.idle_timeout;
                upgrade::splice(client, upstream, idle, Some(&conn.tunnels));
            }
            _ => headers::strip_hop_by_hop(resp.headers_mut()),
        }
        Ok(resp.map(Either::Left))
    }
}

/// Answers a preflight when the route that would serve the actual request (its
/// path, the method it asks about) has `cors:`; `None` otherwise, and the
/// `OPTIONS` request goes on as an ordinary one.
fn preflight(
    snap: &Snapshot,
    req: &Request<Inbound>,
    asked: &Method,
    h2: bool,
    out: &mut Outcome,
) -> Option<Result<Response<ProxyBody>, Reject>> {
    let path = crate::routing::normalize(req.uri(), h2).ok()?;
    let crate::routing::RouteMatch::Found(index) = snap.table.lookup(asked, &path) else {
        return None;
    };
    let route = &snap.routes[index];
    let cors = route.cors.as_ref()?;
    // Not `route_index`: a preflight's answer is complete, not decorated later.
    out.route = Some(route.name.clone());
    out.path = Some(path.decoded().to_owned());
    Some(match cors.preflight(asked, req.headers()) {
        Preflight::Allowed(headers) => {
            let mut resp = Response::new(Either::Right(Full::default()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            *resp.headers_mut() = headers;
            for token in [
                "origin",
                "access-control-request-method",
                "access-control-request-headers",
            ] {
                cors::add_vary(resp.headers_mut(), token);
            }
            Ok(resp)
        }
        Preflight::Refused => Err(Reject::CorsRefused),
    })
}

/// The upstream request: the normalised path on the target, hop-by-hop and
/// client-controlled headers gone, identity and forwarding headers set, the body
/// streamed under the route's size limit, or `buffered`: read whole before
/// (the request's own body is then spent).
#[allow(clippy::too_many_arguments)] // the pipeline's state, handed down once
fn rewrite<'a>(
    snap: &'a Snapshot,
    req: Request<Inbound>,
    buffered: Option<Box<Buffered>>,
    conn: &'a ConnInfo,
    request_id: &'a HeaderValue,
    seen: headers::Seen,
    decision: &'a Decision,
    out: &Outcome,
    target: &Target,
    websocket: bool,
) -> Result<(Request<UpstreamBody>, headers::Added<'a>, body::BodySent), Reject> {
    let route = &snap.routes[decision.route];
    let (mut parts, body) = req.into_parts();
    let pq = target
        .path_and_query(decision.upstream_path(out), parts.uri.query())
        .ok_or(Reject::Internal)?;
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    // What the gateway adds (forwarding headers, the request id, the
    // identity) goes beside the map, not into it: see `headers::Added`.
    let mut added = headers::Added::with_capacity(FORWARDING_FIELDS + snap.identity_headers.len());
    // Only `Host` was added since the fields were seen.
    headers::strip_seen_hop_by_hop(&mut parts.headers, seen);
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
    if let Some(m) = &decision.overridden {
        super::overrides::set_method_override(&mut parts.headers, m);
    }
    if let Some(id) = &decision.identity {
        headers::set_identity(&mut added, &snap.identity_headers, id);
    }
    if !route.policy.forward_token {
        parts.headers.remove(AUTHORIZATION);
    }
    headers::set_forwarded(
        &mut parts.headers,
        &mut added,
        &headers::Hop {
            peer: conn.peer.ip(),
            proto: if conn.tls { "https" } else { "http" },
            authority: authority.as_deref(),
            trusted,
            client_certs: conn.client_certs.as_deref(),
            cache: &conn.hop,
        },
    );
    // The client's, if it sent one, may be what `request_id` is.
    if seen.request_id() {
        parts.headers.remove(&X_REQUEST_ID);
    }
    added.push(&X_REQUEST_ID, Cow::Borrowed(request_id));
    if websocket {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    pool::prepare(target, &mut parts, pq, websocket)
        .map_err(|e| forward_reject(e, target, request_id))?;
    let identity = snap.identity_headers.clone();
    let (body, body_sent) = match buffered {
        None => {
            let body_timeout = snap.config.server.limits.body_timeout;
            UpstreamBody::new(body, identity, route.max_body, body_timeout)
        }
        Some(read) => UpstreamBody::buffered(read, identity),
    };
    Ok((Request::from_parts(parts, body), added, body_sent))
}

/// At most how many fields `rewrite` adds beside the map besides the identity
/// headers: `X-Forwarded-For`, `-Proto`, `-Host`, `Forwarded`, `X-Real-IP`,
/// `X-Request-Id`.
const FORWARDING_FIELDS: usize = 6;

/// The refusal for a request body read whole before forwarding that could not
/// be ([`body::read_whole`]); logged at `debug`, the client's fault.
fn body_reject(e: &RequestBodyError, request_id: &HeaderValue) -> Reject {
    let reject = match e {
        RequestBodyError::Client(_) => Reject::BadBody,
        RequestBodyError::TooLarge(_) => Reject::BodyTooLarge,
        RequestBodyError::Stalled(_) => Reject::BodyTimeout,
    };
    let error = crate::telemetry::events::chain(e);
    let request_id = request_id.to_str().unwrap_or_default();
    tracing::debug!(request_id, %error, "Request body refused");
    reject
}

/// The refusal for a forwarding failure, logged with its cause (and the request
/// id, also when the request span is filtered out): `warn` when the upstream
/// failed, `debug` when the client's body did.
fn forward_reject(e: ForwardError, target: &Target, request_id: &HeaderValue) -> Reject {
    let reject = match &e {
        ForwardError::Connect(ConnectError::Timeout) | ForwardError::ResponseTimeout => {
            Reject::UpstreamTimeout
        }
        ForwardError::Connect(_)
        | ForwardError::Handshake(_)
        | ForwardError::Exchange(_)
        | ForwardError::Upstream(_) => Reject::UpstreamUnavailable,
        ForwardError::ClientBody => Reject::BadBody,
        ForwardError::BodyTooLarge => Reject::BodyTooLarge,
        ForwardError::BodyStalled => Reject::BodyTimeout,
        ForwardError::BadRequest => Reject::Internal,
    };
    let error = crate::telemetry::events::chain(&e);
    let upstream = &*target.label.upstream;
    let request_id = request_id.to_str().unwrap_or_default();
    match reject {
        Reject::BadBody | Reject::BodyTooLarge | Reject::BodyTimeout => {
            tracing::debug!(upstream, request_id, %error, "Request body refused")
        }
        Reject::Internal => {
            tracing::error!(upstream, request_id, %error, "Upstream request could not be built")
        }
        _ => tracing::warn!(upstream, request_id, %error, "Upstream request failed"),
    }
    reject
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}
