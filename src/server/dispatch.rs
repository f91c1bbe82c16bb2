//! One dispatch for every request on the public listener: the built-in
//! issuer's endpoints and proxied routes alike get an `X-Request-Id`, a request
//! span, one access-log line and `portcullis_requests_total`; a panic in any
//! handler is logged with the request id and answered with a bare 500.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use http::header::CONNECTION;
use http::{HeaderValue, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::issuer::Issuer;
use crate::net::ConnInfo;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::{Outcome, Proxy, ProxyBody, Reject};
use crate::telemetry::access::{AccessEntry, AccessLog};
use crate::telemetry::{Metrics, Reason, RouteStatus};

/// What every request on a worker needs.
pub struct Worker {
    pub proxy: Proxy,
    pub issuer: Option<(Arc<Issuer>, tokio::runtime::Handle)>,
    pub metrics: Metrics,
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

/// Answers one request of the public listener.
pub async fn public(
    worker: Arc<Worker>,
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Response<ProxyBody> {
    dispatch(worker, req, conn, Listener::Public).await
}

/// Answers one request of the forward-auth listener.
pub async fn forward_auth(
    worker: Arc<Worker>,
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Response<ProxyBody> {
    dispatch(worker, req, conn, Listener::ForwardAuth).await
}

async fn dispatch(
    worker: Arc<Worker>,
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    listener: Listener,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let request_id = headers::request_id(req.headers());
    let method = req.method().clone();
    // The request id is the span's one field: recording more later (route,
    // status) re-formats the span's fields, and the access line has them. The
    // issuer's requests always get the span; a proxied request only at `debug`,
    // where creating it would otherwise cost as much as its access line does
    // (its `warn` and `error` lines carry `request_id` themselves).
    let to_issuer =
        listener == Listener::Public && worker.issuer.is_some() && Issuer::serves(req.uri().path());
    let id = request_id.to_str().unwrap_or_default();
    let span = if to_issuer {
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
            if headers::check_framing(req.headers()).is_err() {
                // Its body is left unread: the connection closes after this.
                return worker.proxy.refuse(Reject::BadFraming, out, true);
            }
            if listener == Listener::ForwardAuth {
                return worker.proxy.forward_auth(req, &conn, out).await;
            }
            match &worker.issuer {
                Some((issuer, control)) if Issuer::serves(req.uri().path()) => {
                    let path = req.uri().path();
                    out.route = Some(Arc::from(if path.starts_with("/admin/v1/") {
                        ADMIN_ROUTE
                    } else {
                        path
                    }));
                    out.path = Some(path.to_owned());
                    // The issuer throttles failed sign-ins per client address.
                    let trusted = &worker.proxy.snapshot().config.server.trusted_proxies;
                    let client = crate::net::client_ip(conn.peer.ip(), req.headers(), trusted);
                    issue(issuer.clone(), control, req, conn, client).await
                }
                _ => worker.proxy.handle(req, &conn, request_id, out).await,
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
        latency_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        sub: out.identity.as_ref().and_then(|i| i.sub.as_deref()),
        org: out.identity.as_ref().and_then(|i| i.org.as_deref()),
        reason: out.reason,
        request_id: request_id.to_str().unwrap_or_default(),
    });
    worker
        .metrics
        .requests
        .get_or_create(&RouteStatus { route, status })
        .inc();
    resp
}

/// Runs an issuer request on the control runtime, where the database pool and
/// the key ring live, and hands the answer back to the worker's connection. A
/// panic there is reported like any other (the task's join error).
async fn issue(
    issuer: Arc<Issuer>,
    control: &tokio::runtime::Handle,
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    client: std::net::IpAddr,
) -> Response<ProxyBody> {
    req.extensions_mut().insert(conn);
    req.extensions_mut()
        .insert(crate::issuer::throttle::ClientIp(client));
    let span = tracing::Span::current();
    let task = control.spawn(async move { issuer.handle(req).await }.instrument(span));
    match task.await {
        Ok(resp) => resp.map(Either::Right),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Reject::Internal.into_response().map(Either::Right),
    }
}
