//! One dispatch for every request on the public listener: the built-in
//! issuer's endpoints and proxied routes alike get an `X-Request-Id`, a request
//! span, one access-log line and `portcullis_requests_total`; a panic in any
//! handler is logged with the request id and answered with a bare 500.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::net::Inbound;
use futures_util::FutureExt;
use http::header::CONNECTION;
use http::{HeaderValue, Request, Response};
use http_body::Body as _;
use http_body_util::Either;
use tokio::time::Instant;
use tracing::Instrument;

use crate::issuer::Issuer;
use crate::issuer::body::Stalled;
use crate::net::ConnInfo;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::{Outcome, Proxy, ProxyBody, Reject};
use crate::routing::{PathError, normalize};
use crate::telemetry::access::{AccessEntry, AccessLog};
use crate::telemetry::{LimitLabel, Metrics, Reason, RequestCounters};

/// What every request on a worker needs.
pub struct Worker {
    pub proxy: Proxy,
    pub issuer: Option<(Arc<Issuer>, tokio::runtime::Handle)>,
    pub metrics: Metrics,
    /// This worker's handles on `portcullis_requests_total`.
    pub requests: RequestCounters,
    pub access_log: AccessLog,
    /// Where caught panics are counted.
    pub panics: Arc<std::sync::atomic::AtomicUsize>,
    /// The `route` label of requests no route matched.
    pub no_route: Arc<str>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

/// The `route` label of the issuer's admin API (its paths carry ids).
const ADMIN_ROUTE: &str = "/admin/v1/*";

/// Which listener a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener: issuer endpoints, then proxied routes.
    Public,
    /// `forward_auth.listen`: decisions only.
    ForwardAuth,
}

/// Answers one request of the public listener. (Not an `async fn` of its
/// own: the dispatch future is returned as it is, not wrapped in another that
/// would hold the request a second time.)
pub fn public(
    worker: Arc<Worker>,
    req: Request<Inbound>,
    conn: Arc<ConnInfo>,
) -> impl Future<Output = Response<ProxyBody>> + Send {
    dispatch(worker, req, conn, Listener::Public)
}

/// Answers one request of the forward-auth listener.
pub fn forward_auth(
    worker: Arc<Worker>,
    req: Request<Inbound>,
    conn: Arc<ConnInfo>,
) -> impl Future<Output = Response<ProxyBody>> + Send {
    dispatch(worker, req, conn, Listener::ForwardAuth)
}

async fn dispatch(
    worker: Arc<Worker>,
    mut req: Request<Inbound>,
    conn: Arc<ConnInfo>,
    listener: Listener,
) -> Response<ProxyBody> {
    let start = Instant::now();
    // The fields every check below looks for, in one pass over the names.
    let seen = headers::Seen::of(req.headers());
    let request_id = headers::request_id(req.headers(), seen);
    let method = req.method().clone();
    // The request id is the span's one field: recording more later (route,
    // status) re-formats the span's fields, and the access line has them. The
    // issuer's requests always get the span; a proxied request only at `debug`,
    // where creating it would otherwise cost as much as its access line does
    // (its `warn` and `error` lines carry `request_id` themselves).
    let to_issuer = if listener == Listener::Public && worker.issuer.is_some() {
        issuer_target(req.uri(), req.version() == http::Version::HTTP_2)
    } else {
        IssuerTarget::No
    };
    let id = request_id.to_str().unwrap_or_default();
    let span = if to_issuer != IssuerTarget::No {
        tracing::info_span!("request", request_id = %id)
    } else {
        tracing::debug_span!("request", request_id = %id)
    };
    let mut out = Outcome::default();
    // Boxed once, here: the handler's future is kilobytes, and the panic and
    // span wrappers below would each copy it; a pointer moves for free.
    let handled = {
        let out = &mut out;
        let worker = &worker;
        let request_id = &request_id;
        Box::pin(async move {
            // Framing first, on every listener: a body hyper de-chunked but
            // that is still in another coding is refused, never read as plain.
            if headers::check_framing(req.headers(), seen).is_err() {
                // Its body is left unread: the connection closes after this.
                return worker.proxy.refuse(Reject::BadFraming, out, true);
            }
            if listener == Listener::ForwardAuth {
                return worker.proxy.forward_auth(req, &conn, out).await;
            }
            if let IssuerTarget::Refused(reason) = to_issuer {
                let unread = req.version() < http::Version::HTTP_2 && !req.body().is_end_stream();
                return worker.proxy.refuse(Reject::BadPath(reason), out, unread);
            }
            if let IssuerTarget::Canonical(path) = &to_issuer {
                // The issuer sees the path its routes would have matched.
                if canonical_uri(&mut req, path).is_err() {
                    return worker
                        .proxy
                        .refuse(Reject::BadPath(PathError::BadEscape), out, true);
                }
            }
            match &worker.issuer {
                Some((issuer, control)) if to_issuer != IssuerTarget::No => {
                    let path = req.uri().path();
                    out.route = Some(Arc::from(if path.starts_with("/admin/v1/") {
                        ADMIN_ROUTE
                    } else {
                        path
                    }));
                    out.path = Some(path.to_owned());
                    // The configuration in force: its body_timeout, and
                    // (the issuer throttles failed sign-ins per client
                    // address) the trusted proxies.
                    let snapshot = worker.proxy.snapshot();
                    let server = &snapshot.config.server;
                    let client = crate::net::client_ip(
                        conn.peer.ip(),
                        req.headers(),
                        &server.trusted_proxies,
                    );
                    let http1 = req.version() < http::Version::HTTP_2;
                    let timeout = server.limits.body_timeout;
                    let mut resp = issue(issuer.clone(), control, req, conn, client, timeout).await;
                    if resp.extensions().get::<Stalled>().is_some() {
                        body_stalled(worker, out, &mut resp, http1);
                    }
                    resp
                }
                _ => worker.proxy.handle(req, &conn, request_id, seen, out).await,
            }
        })
    };
    let result = AssertUnwindSafe(handled)
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(_) => {
            worker
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                request_id = %request_id.to_str().unwrap_or_default(),
                "Request handler panicked"
            );
            let reason = Reject::Internal.reason();
            out.reason = Some(reason);
            worker
                .metrics
                .rejections
                .get_or_create(&Reason { reason })
                .inc();
            let mut resp = Reject::Internal.into_response().map(Either::Right);
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    };
    resp.headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    let status = resp.status().as_u16();
    let route = out.route.unwrap_or_else(|| worker.no_route.clone());
    worker.access_log.record(&AccessEntry {
        method: method.as_str(),
        path: out.path.as_deref().unwrap_or("-"),
        route: &route,
        status,
        latency_us: u64::try_from((out.answered.unwrap_or_else(Instant::now) - start).as_micros())
            .unwrap_or(u64::MAX),
        sub: out.identity.as_ref().and_then(|i| i.sub.as_deref()),
        org: out.identity.as_ref().and_then(|i| i.org.as_deref()),
        reason: out.reason,
        request_id: request_id.to_str().unwrap_or_default(),
    });
    worker.requests.inc(route, status);
    resp
}

/// Runs an issuer request on the control runtime, where the database pool and
/// the key ring live, and hands the answer back to the worker's connection. A
/// panic there is reported like any other (the task's join error).
/// `body_timeout` bounds each wait for a piece of the request body.
async fn issue(
    issuer: Arc<Issuer>,
    control: &tokio::runtime::Handle,
    mut req: Request<Inbound>,
    conn: Arc<ConnInfo>,
    client: std::net::IpAddr,
    body_timeout: std::time::Duration,
) -> Response<ProxyBody> {
    req.extensions_mut().insert(conn);
    req.extensions_mut()
        .insert(crate::issuer::throttle::ClientIp(client));
    let span = tracing::Span::current();
    let task =
        control.spawn(async move { issuer.handle(req, body_timeout).await }.instrument(span));
    match task.await {
        Ok(resp) => resp.map(Either::Right),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Reject::Internal.into_response().map(Either::Right),
    }
}

/// The issuer's answer to a request whose body stalled: counted as a hit of
/// `body_timeout` (the access line's `reason` too), and on HTTP/1.1 the
/// connection's last, since the rest of the body may still be on its way.
fn body_stalled(worker: &Worker, out: &mut Outcome, resp: &mut Response<ProxyBody>, http1: bool) {
    out.reason = Some(Reject::BodyTimeout.reason());
    worker.metrics.limit_hit(LimitLabel::BODY_TIMEOUT);
    if http1 {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Whether a public-listener request is the built-in issuer's, judged on the
/// normalised path as routes are: `/oauth//token` and `/oauth/%74oken` are the
/// issuer's `/oauth/token`, never a route's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IssuerTarget {
    /// A route's (or refused by the routes' own rules).
    No,
    /// The issuer's, as sent.
    AsSent,
    /// The issuer's, once the path is written canonically (this path and
    /// the query as sent).
    Canonical(String),
    /// An issuer path with something the issuer does not take (matrix
    /// parameters).
    Refused(PathError),
}

fn issuer_target(uri: &http::Uri, h2: bool) -> IssuerTarget {
    let raw = uri.path();
    // Most paths are written canonically: nothing to decode, no empty or dot
    // segment, no parameters. Those are matched as they are.
    let plain = !raw
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
        && !raw.bytes().any(|b| b == b'%' || b == b';');
    if plain {
        return if Issuer::serves(raw) {
            IssuerTarget::AsSent
        } else {
            IssuerTarget::No
        };
    }
    match normalize(uri, h2) {
        Ok(path) if Issuer::serves(path.decoded()) => {
            if path.has_matrix_params() {
                IssuerTarget::Refused(PathError::MatrixParams)
            } else {
                IssuerTarget::Canonical(path.encoded().to_owned())
            }
        }
        // A route's, or refused by the routes with the same answer.
        _ => IssuerTarget::No,
    }
}

/// Replaces the request's path with `path`, keeping the query.
fn canonical_uri(req: &mut Request<Inbound>, path: &str) -> Result<(), http::Error> {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq.parse()?);
    *req.uri_mut() = http::Uri::from_parts(parts)?;
    Ok(())
}
