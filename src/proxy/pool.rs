//! Each worker's connections to the upstreams: per worker one [`Pool`] per
//! [`Target`], owned by that worker's thread, so the worker that accepted a
//! request writes it to a connection it owns with no cross-thread hand-off.
//!
//! HTTP/1.1 connections are leased for one exchange and come back to the pool
//! when the response body has been read to its end ([`Lease`]); a request never
//! waits for a busy connection but opens another. A request without a body, or
//! with one of a known length, is exchanged by the proxy's own HTTP/1.1
//! client (`h1`), in its own task, on
//! connections kept apart from hyper's: a pooled one is taken only when
//! nothing arrived on it while idle (no close, no stray bytes), and an
//! idempotent request is sent again, once, on a fresh connection when a
//! reused one was closed before any answer came (the keep-alive race). HTTP/2 (`protocol: h2`) shares
//! one multiplexed connection per worker. A pooled connection that turns out to
//! be closed before the request was written is retried once on a fresh one.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::body::{BodyEnd, BodySent, RequestBodyError, ResponseBody, UpstreamBody};
use super::h1;
use super::headers::Added;
use crate::upstream::{ConnectError, Target};

/// Idle HTTP/1.1 connections kept per target per worker.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why forwarding failed. Whose fault it is decides the status: the client's
/// body (400, 408, 413), the upstream (502, 504), or a request the gateway could not
/// build (500).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the upstream")]
    Connect(#[source] ConnectError),
    #[error("the HTTP handshake with the upstream failed")]
    Handshake(#[source] hyper::Error),
    #[error("the upstream exchange failed")]
    Exchange(#[source] hyper::Error),
    #[error("the upstream exchange failed")]
    Upstream(#[source] h1::Error),
    #[error("no response headers within the upstream timeout")]
    ResponseTimeout,
    #[error("the client's request body broke off or was malformed")]
    ClientBody,
    #[error("the client's request body exceeds the route's limit")]
    BodyTooLarge,
    #[error("the client's request body stalled for longer than `body_timeout`")]
    BodyStalled,
    #[error("the upstream request could not be built")]
    BadRequest,
}

/// One worker's connections to one target.
pub struct Pool {
    target: Arc<Target>,
    idle: Mutex<Vec<Idle>>,
    /// Idle connections of the proxy's own client (`h1`), most recent last.
    direct: Mutex<Vec<IdleConn>>,
    h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

struct Idle {
    tx: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

struct IdleConn {
    conn: Box<h1::Conn>,
    since: Instant,
}

/// An HTTP/1.1 connection lent to one exchange; [`Lease::release`] hands it
/// back to the pool (dropping it instead closes the connection).
pub struct Lease {
    pool: Arc<Pool>,
    tx: http1::SendRequest<UpstreamBody>,
}

impl Lease {
    /// The exchange ended cleanly: the connection may carry another request.
    pub fn release(self) {
        let mut idle = self.pool.lock_idle();
        if idle.len() < MAX_IDLE && !self.tx.is_closed() {
            idle.push(Idle {
                tx: self.tx,
                since: Instant::now(),
            });
        }
    }
}

// === impl Pool ===

impl Pool {
    /// An empty pool for `target`.
    pub fn new(target: Arc<Target>) -> Pool {
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            direct: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
        }
    }

    /// The target these connections go to.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Plain bookkeeping: a panic elsewhere leaves it usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that can take a request now;
    /// closed and stale ones are dropped on the way.
    fn take_idle(&self) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = self.lock_idle();
        while let Some(entry) = idle.pop() {
            if entry.tx.is_ready() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.tx);
            }
        }
        None
    }

    /// Sends the request and waits for the response head. The response timeout
    /// starts once the request body has been sent in full (as in Envoy), so a
    /// long upload to a healthy upstream is not cut short; without a body, at
    /// `now` (the caller's clock reading). `upgrade` asks for a connection of
    /// its own that may switch protocols.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        added: Added<'_>,
        body_sent: BodySent,
        upgrade: bool,
        now: Instant,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let mut started = now;
        let exchange = async {
            let direct = (!upgrade && !self.target.is_h2())
                .then(|| h1::framing_of(req.method(), req.headers(), req.body()))
                .flatten();
            if let Some(len) = direct {
                return self.send_direct(req, &added, len).await;
            }
            // hyper's client sends what the map holds.
            added.apply(req.headers_mut());
            if self.target.is_h2() && !upgrade {
                self.send_h2(req).await
            } else {
                self.send_h1(req, upgrade).await
            }
        };
        tokio::pin!(exchange);
        if let Some(sent) = body_sent {
            tokio::select! {
                // The body's verdict first: a failed body also fails the
                // exchange, which must not read as the upstream's fault.
                biased;
                end = sent => match end {
                    Ok(BodyEnd::Failed) => return Err(ForwardError::ClientBody),
                    Ok(BodyEnd::TooLarge) => return Err(ForwardError::BodyTooLarge),
                    Ok(BodyEnd::Stalled) => return Err(ForwardError::BodyStalled),
                    Ok(BodyEnd::Complete) | Err(_) => started = Instant::now(),
                },
                r = &mut exchange => return r,
            }
        }
        // A timeout too long to add to the clock is none.
        let Some(deadline) = started.checked_add(self.target.timeout()) else {
            return exchange.await;
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ForwardError::ResponseTimeout),
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        upgrade: bool,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        // An upgrade takes a connection of its own: it will never come back.
        let mut pooled = if upgrade { None } else { self.take_idle() };
        loop {
            let (mut tx, from_pool) = match pooled.take() {
                Some(tx) => (tx, true),
                // Boxed: connecting (TCP, TLS) is a large future that most
                // requests, served by a pooled connection, never run.
                None => (Box::pin(self.open_h1(upgrade)).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    // An upgrade request's connection never comes back: after a
                    // 101 it is the tunnel's, and after any other answer its
                    // state is unknown (the upstream may have switched anyway,
                    // or still expect the upgrade), so it closes with the body.
                    // Nor does one that switched protocols unasked.
                    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                    let lease = (!upgrade && !switching).then(|| Lease {
                        pool: self.clone(),
                        tx,
                    });
                    return Ok(resp.map(|b| ResponseBody::new(b, lease)));
                }
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written (the upstream
                    // dropped an idle connection): once more, on a fresh one.
                    Some(back) if from_pool => req = back,
                    _ => return Err(ForwardError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// A request without a body (`len`: `None`), or with one of a known
    /// length, by the proxy's own client.
    async fn send_direct(
        self: &Arc<Self>,
        req: Request<UpstreamBody>,
        added: &Added<'_>,
        len: Option<u64>,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let (parts, body) = req.into_parts();
        let mut body = Some(body);
        // A body once sent (even in part) is gone: never sent twice.
        let idempotent = len.is_none() && parts.method.is_idempotent();
        let mut pooled = self.take_direct();
        loop {
            let (mut conn, reused) = match pooled.take() {
                Some(conn) => (conn, true),
                None => {
                    // Boxed, as in `send_h1`: most requests never connect.
                    let stream = Box::pin(self.target.connect(true))
                        .await
                        .map_err(ForwardError::Connect)?;
                    (Box::new(h1::Conn::new(stream)), false)
                }
            };
            let exchanged = match len {
                None => conn.exchange(&parts, added).await,
                Some(len) => match body.take() {
                    Some(body) => conn.exchange_with_body(&parts, added, body, len).await,
                    // Never: a request with a body is not sent twice.
                    None => return Err(ForwardError::BadRequest),
                },
            };
            match exchanged {
                Ok(mut head) => {
                    let body = ResponseBody::direct(head.body(conn), self.clone());
                    let mut resp = Response::new(body);
                    *resp.status_mut() = head.status;
                    *resp.headers_mut() = head.headers;
                    if let Some(reason) = head.reason {
                        resp.extensions_mut().insert(reason);
                    }
                    return Ok(resp);
                }
                // Closed before any answer: once more, on a fresh connection.
                Err(h1::Error::Unanswered(_)) if reused && idempotent => {}
                Err(h1::Error::Request(e)) => return Err(body_error(e)),
                Err(e) => return Err(ForwardError::Upstream(e)),
            }
        }
    }

    /// The most recently used idle connection of the proxy's own client;
    /// stale ones, and those the upstream closed or wrote to while they were
    /// idle, are dropped on the way.
    fn take_direct(&self) -> Option<Box<h1::Conn>> {
        let mut idle = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut entry) = idle.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.still_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// A connection of the proxy's own client whose exchange ended cleanly.
    /// Those idle for longer than [`IDLE_TIMEOUT`] are closed on the way
    /// (the oldest are first in line, and a pool used last in, first out
    /// would otherwise keep them, and their sockets, for good).
    pub(super) fn put_back(&self, conn: Box<h1::Conn>) {
        let now = Instant::now();
        let mut idle = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        let stale = idle
            .iter()
            .take_while(|e| now.duration_since(e.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(IdleConn { conn, since: now });
        }
    }

    async fn open_h1(
        &self,
        upgrade: bool,
    ) -> Result<http1::SendRequest<UpstreamBody>, ForwardError> {
        let stream = self
            .target
            .connect(upgrade)
            .await
            .map_err(ForwardError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            // One flattened write per request head, as on the server side.
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ForwardError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "Upstream connection ended with an error");
            }
        });
        Ok(tx)
    }

    async fn send_h2(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let mut req = req;
        let mut fresh = false;
        loop {
            let cached = self
                .h2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|tx| !tx.is_closed());
            let mut tx = match cached {
                Some(tx) => tx,
                None => {
                    fresh = true;
                    let tx = Box::pin(self.open_h2()).await?;
                    *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
                    tx
                }
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|b| ResponseBody::new(b, None)));
                }
                Err(e) => match retry_message(e, fresh) {
                    Ok(back) => req = back,
                    Err(e) => return Err(ForwardError::Exchange(e)),
                },
            }
        }
    }

    async fn open_h2(&self) -> Result<http2::SendRequest<UpstreamBody>, ForwardError> {
        let stream = self
            .target
            .connect(false)
            .await
            .map_err(ForwardError::Connect)?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ForwardError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(tx)
    }
}

/// What the client's body failing means for its answer (the same as when
/// hyper's client reports it through the body's own signal).
fn body_error(e: Box<dyn std::error::Error + Send + Sync>) -> ForwardError {
    match e.downcast_ref::<RequestBodyError>() {
        Some(RequestBodyError::TooLarge(_)) => ForwardError::BodyTooLarge,
        Some(RequestBodyError::Stalled(_)) => ForwardError::BodyStalled,
        Some(RequestBodyError::Client(_)) | None => ForwardError::ClientBody,
    }
}

/// The request back from a failed send when it was never written and may be
/// retried (once, and only on a connection that was not fresh).
fn retry_message(
    mut e: TrySendError<Request<UpstreamBody>>,
    fresh: bool,
) -> Result<Request<UpstreamBody>, hyper::Error> {
    match e.take_message() {
        Some(back) if !fresh => Ok(back),
        _ => Err(e.into_error()),
    }
}

/// Sets what an upstream request needs for its protocol: origin-form and
/// HTTP/1.1 (with a `Host`, and an HTTP/2 client's `cookie` crumbs joined into
/// one line) for HTTP/1.1 upstreams, an absolute URI and HTTP/2 (without
/// `Host`, which `:authority` carries; the crumbs go as they came) for HTTP/2
/// ones.
pub fn prepare(
    target: &Target,
    parts: &mut http::request::Parts,
    pq: PathAndQuery,
    upgrade: bool,
) -> Result<(), ForwardError> {
    if target.is_h2() && !upgrade {
        let host = parts.headers.remove(http::header::HOST);
        let host = host.as_ref().and_then(|h| h.to_str().ok());
        parts.uri = target.h2_uri(pq, host).ok_or(ForwardError::BadRequest)?;
        parts.version = Version::HTTP_2;
    } else {
        // An HTTP/2 client's `cookie` may come in crumbs; HTTP/1.x wants one line.
        if parts.version == Version::HTTP_2 {
            super::headers::join_cookie_crumbs(&mut parts.headers)
                .map_err(|_| ForwardError::BadRequest)?;
        }
        parts.uri = Uri::from(pq);
        parts.version = Version::HTTP_11;
        if !parts.headers.contains_key(http::header::HOST) {
            let host = http::HeaderValue::from_str(target.authority().as_str())
                .map_err(|_| ForwardError::BadRequest)?;
            parts.headers.insert(http::header::HOST, host);
        }
    }
    Ok(())
}

/// Each worker's pools, one per target of the configuration in force. A new
/// configuration generation brings new pools only for targets that changed.
#[derive(Default)]
pub struct Pools {
    current: Mutex<(u64, Arc<[Arc<Pool>]>)>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools").finish_non_exhaustive()
    }
}

impl Pools {
    /// Empty: the first request builds the pools of its configuration.
    pub fn new() -> Pools {
        Pools {
            current: Mutex::new((u64::MAX, Arc::from(Vec::new()))),
        }
    }

    /// The pools for configuration `generation` with `targets` (indexed as the
    /// configuration's upstreams).
    pub fn get(&self, generation: u64, targets: &[Arc<Target>]) -> Arc<[Arc<Pool>]> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.0 != generation {
            let fresh: Vec<Arc<Pool>> = targets
                .iter()
                .map(|t| {
                    cur.1
                        .iter()
                        .find(|p| Arc::ptr_eq(&p.target, t))
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Pool::new(t.clone())))
                })
                .collect();
            *cur = (generation, Arc::from(fresh));
        }
        cur.1.clone()
    }
}
