//! One downstream connection: the TLS handshake (bounded by
//! `header_read_timeout`), HTTP/1.1 or HTTP/2 (by ALPN over TLS, by the
//! prior-knowledge preface in cleartext), the limits of `server.limits`, an idle
//! timeout, graceful shutdown, the WebSocket tunnels its upgraded requests
//! become, and a connection span. Every request of the connection is handed to
//! the handler with its [`ConnInfo`] (no per-request extension map).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Limits;
use crate::net::{ConnInfo, Inbound};
use crate::proxy::ProxyBody;
use crate::telemetry::{LimitLabel, Metrics};

mod h1;
mod stall;

/// The largest read buffer of hyper's HTTP/1.1 server (its default
/// `max_buf_size`): no request head is longer.
const HYPER_MAX_BUF: usize = 8192 + 4096 * 100;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one accepted TCP connection until it closes, is idle for
/// `limits.idle_timeout`, or `shutdown` fires (then in-flight requests finish).
pub async fn serve<H, F>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Inbound>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _ = tcp.set_nodelay(true);
    let span = tracing::debug_span!("connection", %peer, tls = tls.is_some());
    async move {
        let activity = Arc::new(AtomicU64::new(0));
        let (io, prefix, info, h2) = match tls {
            None => {
                let mut tcp = tcp;
                let sniffed =
                    tokio::time::timeout(limits.header_read_timeout, sniff(&mut tcp)).await;
                let (h2, prefix) = match sniffed {
                    Ok(Ok(found)) => found,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        metrics.limit_hit(LimitLabel::HEADER_READ_TIMEOUT);
                        return;
                    }
                };
                let info = ConnInfo::new(peer, false, None);
                (Io::Plain(tcp), prefix, info, h2)
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let stream =
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics.limit_hit(LimitLabel::HEADER_READ_TIMEOUT);
                            return;
                        }
                    };
                let session = stream.get_ref().1;
                let h2 = session.alpn_protocol() == Some(b"h2");
                let client_certs = session
                    .peer_certificates()
                    .filter(|c| !c.is_empty())
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
                let info = ConnInfo::new(peer, true, client_certs);
                (Io::Tls(Box::new(stream)), Bytes::new(), info, h2)
            }
        };
        let info = Arc::new(info);
        let tunnels = info.tunnels.clone();
        let load = Arc::new(Load::default());
        // Every request of the connection, from either server: counted in
        // flight until its response body is dropped (sent or abandoned).
        let call = {
            let load = load.clone();
            move |req: Request<Inbound>| {
                let in_flight = InFlight::start(&load);
                // Small: the handler boxes its large part once, and a `map`
                // holds the handler's future once (an `async` block awaiting
                // it kept a second copy), so moving it copies little.
                handler(req, info.clone()).map(move |resp| {
                    resp.map(|inner| Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                })
            }
        };
        let service = {
            let call = call.clone();
            service_fn(move |req: Request<Incoming>| {
                call(req.map(Inbound::Hyper)).map(Ok::<_, std::convert::Infallible>)
            })
        };
        let io = Counted {
            inner: io,
            prefix,
            activity: activity.clone(),
            load: load.clone(),
            tunnel: false,
            unanswered: None,
        };
        let hits = metrics.limit_hits.clone();
        let io = stall::SendTimeout::new(io, limits.body_timeout, load.clone(), hits);
        let result = if h2 {
            let mut b = http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
            let conn = b.serve_connection(TokioIo::new(io), service);
            // PING, SETTINGS and WINDOW_UPDATE frames move bytes but are no
            // work: an HTTP/2 connection is idle when no request is in flight
            // and none has started.
            let progress = Progress::Requests(load.clone());
            drive(
                conn,
                &progress,
                &load,
                Timeouts {
                    idle: limits.idle_timeout,
                    head: None,
                },
                &mut shutdown,
                &metrics,
            )
            .await
        } else {
            // Plain requests go to the gateway's own HTTP/1.1 server; the
            // first that it does not take hands the connection to hyper's,
            // with every byte read so far.
            // hyper's server refuses a head larger than its read buffer
            // (417,792 bytes) whatever its own limit says; so does ours.
            let max_head = limits.max_header_bytes.min(HYPER_MAX_BUF);
            let conn = h1::serve(io, call, max_head, move |mut io, rest| {
                io.get_mut().give_back(rest);
                // `header_read_timeout` is kept by `drive`, not by hyper:
                // hyper's made a timer for every request (an allocation and
                // two visits to the timer wheel), and closed without the
                // 408 the client is owed.
                let mut b = http1::Builder::new();
                b.header_read_timeout(None)
                    .max_header_size(max_head)
                    // One flattened write per response instead of a vectored
                    // one: cheaper for the small heads and bodies an API
                    // gateway carries.
                    .writev(false);
                b.serve_connection(TokioIo::new(io), service)
                    .with_upgrades()
            });
            // Between requests `header_read_timeout` bounds the wait for the
            // next head, however slowly its bytes come.
            let progress = Progress::Bytes(activity.clone());
            drive(
                conn,
                &progress,
                &load,
                Timeouts {
                    idle: limits.idle_timeout,
                    head: Some(limits.header_read_timeout),
                },
                &mut shutdown,
                &metrics,
            )
            .await
        };
        if let Err(e) = result {
            if e.is_parse_too_large() {
                metrics.limit_hit(LimitLabel::MAX_HEADER_BYTES);
            } else if e.is_timeout() {
                metrics.limit_hit(LimitLabel::HEADER_READ_TIMEOUT);
            }
            tracing::debug!(error = %e, "Connection ended with an error");
        }
        // An upgraded request's tunnel runs here, after hyper handed the
        // stream over: it keeps this connection's permit and is drained with it.
        for tunnel in tunnels.take() {
            tunnel.await;
        }
    }
    .instrument(span)
    .await;
}

/// Reads the start of a cleartext connection until it is decided whether it is
/// the HTTP/2 preface: all of it (`true`), or bytes that cannot begin it, or the
/// end of the stream (`false`). Returns the bytes read, which the chosen codec
/// reads first. Each read waits for new bytes (the caller bounds the wait with
/// `header_read_timeout`), so a preface sent in pieces, or half of one held
/// open, costs nothing while it waits.
async fn sniff<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<(bool, Bytes)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    loop {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok((false, Bytes::copy_from_slice(&buf[..filled])));
        }
        filled += n;
        let read = &buf[..filled];
        if read != &H2_PREFACE[..filled] {
            return Ok((false, Bytes::copy_from_slice(read)));
        }
        if filled == H2_PREFACE.len() {
            return Ok((true, Bytes::copy_from_slice(read)));
        }
    }
}

/// The requests of one connection: how many started, how many are in flight
/// (from the handler's start until hyper drops the response body, that is
/// until the response has been sent or the stream reset).
#[derive(Debug, Default)]
struct Load {
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// Bytes written to a plain connection as it is dropped: the 408 of a
    /// head that did not arrive in time.
    farewell: std::sync::OnceLock<Bytes>,
}

/// One request in flight; counted out when dropped.
struct InFlight(Arc<Load>);

impl InFlight {
    fn start(load: &Arc<Load>) -> InFlight {
        load.started.fetch_add(1, Ordering::Relaxed);
        load.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(load.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted in flight while it lives.
struct Tracked {
    inner: ProxyBody,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What counts as progress for the idle timeout.
enum Progress {
    /// Bytes read or written (HTTP/1.1).
    Bytes(Arc<AtomicU64>),
    /// Requests started (HTTP/2).
    Requests(Arc<Load>),
}

impl Progress {
    fn now(&self) -> u64 {
        match self {
            Progress::Bytes(n) => n.load(Ordering::Relaxed),
            Progress::Requests(load) => load.started.load(Ordering::Relaxed),
        }
    }
}

/// A connection that can be asked to finish its in-flight requests and close.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The time limits [`drive`] keeps.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// No request in flight and no progress for this long: asked to close.
    idle: Duration,
    /// HTTP/1.x: no request head completed for this long while none is in
    /// flight (`header_read_timeout`): closed, with a 408 when part of a
    /// head arrived and the stream is plain.
    head: Option<Duration>,
}

/// Runs a connection; asks it to close gracefully when it has been idle for
/// `limits.idle` — no request in flight and no progress —, or when `shutdown`
/// fires, and closes an HTTP/1.x connection that has waited `limits.head` for
/// a request head (between requests too, however slowly its bytes come).
/// Both are checked every quarter of the shorter, so each fires between its
/// limit and 1.25 × it. Requests in flight still finish. A connection asked
/// to close that is still open after another idle period with nothing in
/// flight is dropped: a peer that never acknowledges HTTP/2's graceful
/// GOAWAY does not hold it open.
async fn drive<C: Graceful>(
    conn: C,
    progress: &Progress,
    load: &Load,
    limits: Timeouts,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &Metrics,
) -> Result<(), hyper::Error> {
    tokio::pin!(conn);
    let tick = limits.head.map_or(limits.idle, |h| h.min(limits.idle)) / 4;
    let began = tokio::time::Instant::now();
    // Idle: the last progress seen, and since when there has been none.
    let mut seen = progress.now();
    let mut quiet_since = began;
    // Head: the requests started when the wait began, since when, and the
    // reads by then (any more: part of a head arrived).
    let mut started = load.started.load(Ordering::Relaxed);
    let mut waiting_since = began;
    let mut reads = seen / READ;
    let mut busy = false;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful();
    }
    // The tick and the shutdown signal are registered with this task once;
    // afterwards they are polled again only when they may have fired
    // (`is_elapsed`, a new value seen through `probe`). The connection wakes
    // this task for every request, and polling both each time (a `select!`)
    // cost a timer-wheel and a waiter-list visit per wake-up.
    let probe = shutdown.clone();
    let changed = shutdown.changed();
    tokio::pin!(changed);
    let sleep = tokio::time::sleep(tick);
    tokio::pin!(sleep);
    let mut registered: Option<Waker> = None;
    loop {
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                return Poll::Ready(Side::Done(r));
            }
            let fresh = !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if (fresh || sleep.is_elapsed()) && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Side::Tick);
            }
            if !closing
                && (fresh || probe.has_changed().unwrap_or(true))
                && changed.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Side::Shutdown);
            }
            if fresh {
                registered = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        let now = tokio::time::Instant::now();
        sleep.as_mut().reset(now + tick);
        registered = None;
        match event {
            Side::Done(r) => return r,
            Side::Shutdown => {
                closing = true;
                conn.as_mut().graceful();
            }
            Side::Tick => {
                let in_flight = load.in_flight.load(Ordering::Relaxed) > 0;
                let now_progress = progress.now();
                if now_progress != seen || in_flight {
                    seen = now_progress;
                    quiet_since = now;
                }
                // The wait for a head starts at the first tick with nothing
                // in flight after a request started: never earlier than the
                // response's end.
                let now_started = load.started.load(Ordering::Relaxed);
                if in_flight {
                    busy = true;
                } else if busy || now_started != started {
                    busy = false;
                    started = now_started;
                    waiting_since = now;
                    reads = now_progress / READ;
                }
                if let Some(head) = limits
                    .head
                    .filter(|&h| !in_flight && now - waiting_since >= h)
                {
                    metrics.limit_hit(LimitLabel::HEADER_READ_TIMEOUT);
                    if now_progress / READ != reads {
                        let _ = load.farewell.set(request_timeout());
                    }
                    tracing::debug!(
                        ?head,
                        "Connection closed: no request head within header_read_timeout"
                    );
                    return Ok(());
                }
                if now - quiet_since < limits.idle {
                    continue;
                }
                quiet_since = now;
                if closing {
                    tracing::debug!(
                        "Connection dropped: still open an idle period after being asked to close"
                    );
                    return Ok(());
                }
                closing = true;
                metrics.limit_hit(LimitLabel::IDLE_TIMEOUT);
                conn.as_mut().graceful();
            }
        }
    }
}

/// The 408 written to a plain HTTP/1.x connection whose request head did not
/// arrive in time.
fn request_timeout() -> Bytes {
    answer(
        http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request head did not arrive in time",
    )
}

/// A whole HTTP/1.1 response that ends the connection, written by the
/// connection itself (no request reached the dispatcher): the JSON error
/// every refusal has, its own request id, `Connection: close`.
fn answer(status: http::StatusCode, code: &'static str, description: &'static str) -> Bytes {
    let body = crate::proxy::respond::json_error(status, code, description)
        .into_body()
        .collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let id = crate::proxy::headers::request_id(
        &http::HeaderMap::new(),
        crate::proxy::headers::Seen::default(),
    );
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(
        b"\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\nx-request-id: ",
    );
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Our answer in place of one hyper writes by itself when it cannot parse a
/// request head: a 400, 414 or 431 head alone, `content-length: 0`, without
/// the `x-request-id` every answer of ours has. `None`: `buf` is not that.
fn instead_of_automatic(buf: &[u8]) -> Option<Bytes> {
    let (code, description) = match buf.get(..13)? {
        b"HTTP/1.1 400 " => ("invalid_request", "the request could not be parsed"),
        b"HTTP/1.1 414 " => ("uri_too_long", "the request target is too long"),
        b"HTTP/1.1 431 " => (
            "request_header_fields_too_large",
            "the request head is larger than max_header_bytes",
        ),
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..head_end + 2];
    let has = |line: &[u8]| {
        head.windows(line.len())
            .any(|w| w.eq_ignore_ascii_case(line))
    };
    if head_end + 4 != buf.len() || !has(b"\r\ncontent-length: 0\r\n") || has(b"\r\nx-request-id:")
    {
        return None;
    }
    let status = std::str::from_utf8(&buf[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|n| http::StatusCode::from_u16(n).ok())?;
    Some(answer(status, code, description))
}

/// What woke [`drive`].
enum Side {
    /// The connection ended.
    Done(Result<(), hyper::Error>),
    /// The idle tick fired.
    Tick,
    /// Shutdown was signalled.
    Shutdown,
}

/// The connection's byte stream, plain or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// `Io` that counts its reads and writes, for the idle and head timeouts,
/// first hands out the bytes read while sniffing for the HTTP/2 preface, and
/// when dropped writes the connection's farewell ([`Load::farewell`]) if it
/// has one and the stream is plain.
struct Counted {
    inner: Io,
    prefix: Bytes,
    activity: Arc<AtomicU64>,
    load: Arc<Load>,
    /// A 101 was written: the rest is an upgraded connection's.
    tunnel: bool,
    /// The requests started when bytes last arrived with none in flight:
    /// while no request has started since, whatever hyper writes answers
    /// those bytes by itself (a head it could not parse), not a request.
    unanswered: Option<u64>,
}

/// One read, in the activity counter: reads count in its high half, writes
/// in its low half, so one atomic tells both.
const READ: u64 = 1 << 32;

impl Counted {
    /// Puts bytes read but not used back in front of what is still unread.
    fn give_back(&mut self, rest: Bytes) {
        if self.prefix.is_empty() {
            self.prefix = rest;
        } else if !rest.is_empty() {
            let mut both = Vec::with_capacity(rest.len() + self.prefix.len());
            both.extend_from_slice(&rest);
            both.extend_from_slice(&self.prefix);
            self.prefix = Bytes::from(both);
        }
    }

    fn touch(&self, read: bool) {
        let n = if read { READ } else { 1 };
        self.activity.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Best effort, without waiting: the send buffer of a connection
        // waiting for a head is empty, and the answer is small.
        if let (Some(farewell), Io::Plain(s)) = (self.load.farewell.get(), &self.inner) {
            let _ = s.try_write(farewell);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.touch(true);
            // Given back bytes may be read while a request is in flight
            // (the rest of its body): only bytes read with none in flight can
            // be a head hyper answers by itself.
            if this.load.in_flight.load(Ordering::Relaxed) == 0 {
                this.unanswered = Some(this.load.started.load(Ordering::Relaxed));
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = match &mut this.inner {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.touch(true);
            if this.load.in_flight.load(Ordering::Relaxed) == 0 {
                this.unanswered = Some(this.load.started.load(Ordering::Relaxed));
            }
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // A bare 400, 414 or 431 after bytes that started no request is one
        // hyper wrote by itself for a head it could not parse: it goes out
        // as our JSON refusal with a request id instead (the connection
        // closes after it either way). Response bodies are never looked at:
        // their request started after their bytes arrived.
        if buf.starts_with(b"HTTP/1.1 101 ") {
            // What follows is a tunnel's bytes, never looked at.
            this.tunnel = true;
        } else if !this.tunnel
            && buf.starts_with(b"HTTP/1.1 4")
            && this.unanswered == Some(this.load.started.load(Ordering::Relaxed))
        {
            if let Some(ours) = instead_of_automatic(buf) {
                let r = match &mut this.inner {
                    Io::Plain(s) => Pin::new(s).poll_write(cx, &ours),
                    Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, &ours),
                };
                return match r {
                    // Written (a fresh connection's buffer takes it whole):
                    // hyper's bytes count as sent.
                    Poll::Ready(Ok(n)) if n > 0 => {
                        this.touch(false);
                        Poll::Ready(Ok(buf.len()))
                    }
                    other => other,
                };
            }
        }
        let r = match &mut this.inner {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch(false);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A connection that is pending until asked to close, then ends; it
    /// wakes its task on every poll while `busy` (a connection carrying
    /// requests), and counts the polls.
    struct FakeConn {
        asked: bool,
        busy: usize,
        polls: usize,
    }

    impl Future for FakeConn {
        type Output = Result<(), hyper::Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.get_mut();
            this.polls += 1;
            if this.asked {
                return Poll::Ready(Ok(()));
            }
            if this.busy > 0 {
                this.busy -= 1;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    impl Graceful for &mut FakeConn {
        fn graceful(self: Pin<&mut Self>) {
            self.get_mut().asked = true;
        }
    }

    fn fake(busy: usize) -> FakeConn {
        FakeConn {
            asked: false,
            busy,
            polls: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_still_sees_shutdown() {
        // The connection is polled 1,000 times before the signal: the side
        // events are registered once and still fire.
        let (tx, mut rx) = watch::channel(false);
        let load = Load::default();
        let progress = Progress::Requests(Arc::new(Load::default()));
        let metrics = Metrics::new();
        let mut conn = fake(0);
        let started = tokio::time::Instant::now();
        {
            let driven = drive(
                &mut conn,
                &progress,
                &load,
                Timeouts {
                    idle: Duration::from_secs(3600),
                    head: None,
                },
                &mut rx,
                &metrics,
            );
            tokio::pin!(driven);
            for _ in 0..1_000 {
                assert!(futures_util::poll!(driven.as_mut()).is_pending());
            }
            tx.send(true).expect("receiver alive");
            driven.await.expect("closed cleanly");
        }
        assert!(conn.asked);
        assert!(conn.polls > 1_000);
        // At once, not by the idle timeout (paused time would jump to it).
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(
            metrics
                .limit_hits
                .get_or_create(&LimitLabel::IDLE_TIMEOUT)
                .get(),
            0
        );
    }

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 09:44:59 GMT\r\n\r\n";
        let ours = instead_of_automatic(hyper).expect("replaced");
        assert!(ours.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(ours.windows(14).any(|w| w == b"x-request-id: "));
        // With a body, with a request id, or another status: left alone.
        let with_body = [&hyper[..], b"HTTP/1.1 400 "].concat();
        let with_id = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\n\r\n";
        let sized = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\n";
        let other = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
        let no_end = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n";
        for buf in [&with_body[..], with_id, sized, other, no_end] {
            assert!(
                instead_of_automatic(buf).is_none(),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_does_not_arrive_in_time_ends_the_connection() {
        // Part of a head arrived (a read counted), no request started: the
        // connection ends after header_read_timeout (ticks of a quarter of
        // it), with a 408 to write, and the hit counted.
        let (_tx, mut rx) = watch::channel(false);
        let load = Load::default();
        let activity = Arc::new(AtomicU64::new(0));
        let progress = Progress::Bytes(activity.clone());
        let metrics = Metrics::new();
        let mut conn = fake(0);
        let started = tokio::time::Instant::now();
        let trickle = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            activity.fetch_add(READ, Ordering::Relaxed);
        };
        let driven = drive(
            &mut conn,
            &progress,
            &load,
            Timeouts {
                idle: Duration::from_secs(60),
                head: Some(Duration::from_secs(4)),
            },
            &mut rx,
            &metrics,
        );
        let ((), r) = tokio::join!(trickle, driven);
        r.expect("closed");
        assert!(!conn.asked, "dropped, not asked");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(4) && waited <= Duration::from_secs(5),
            "{waited:?}"
        );
        let farewell = load.farewell.get().expect("a 408 to write");
        assert!(farewell.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
        assert_eq!(
            metrics
                .limit_hits
                .get_or_create(&LimitLabel::HEADER_READ_TIMEOUT)
                .get(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_wait_starts_when_the_request_in_flight_ends() {
        // A request in flight for 30 s (longer than header_read_timeout) is
        // never cut; once it ends, the wait for the next head runs its full
        // time, and with no byte of a head there is nothing to answer.
        let (_tx, mut rx) = watch::channel(false);
        let load = Arc::new(Load::default());
        let progress = Progress::Bytes(Arc::new(AtomicU64::new(0)));
        let metrics = Metrics::new();
        let mut conn = fake(0);
        let started = tokio::time::Instant::now();
        let in_flight = InFlight::start(&load);
        let request = async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(in_flight);
        };
        let driven = drive(
            &mut conn,
            &progress,
            &load,
            Timeouts {
                idle: Duration::from_secs(600),
                head: Some(Duration::from_secs(4)),
            },
            &mut rx,
            &metrics,
        );
        let (_, r) = tokio::join!(request, driven);
        r.expect("closed");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(34) && waited <= Duration::from_secs(35),
            "{waited:?}"
        );
        assert!(load.farewell.get().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_asked_to_close_after_its_idle_time() {
        let (_tx, mut rx) = watch::channel(false);
        let load = Load::default();
        let progress = Progress::Bytes(Arc::new(AtomicU64::new(0)));
        let metrics = Metrics::new();
        let mut conn = fake(50);
        let started = tokio::time::Instant::now();
        drive(
            &mut conn,
            &progress,
            &load,
            Timeouts {
                idle: Duration::from_secs(8),
                head: None,
            },
            &mut rx,
            &metrics,
        )
        .await
        .expect("closed cleanly");
        assert!(conn.asked);
        // Four quiet ticks of a quarter of the idle time each.
        assert_eq!(started.elapsed(), Duration::from_secs(8));
        assert_eq!(
            metrics
                .limit_hits
                .get_or_create(&LimitLabel::IDLE_TIMEOUT)
                .get(),
            1
        );
    }

    /// A reader that hands out its pieces one per read, then waits forever
    /// (never waking its task), counting every read it is asked for.
    struct Pieces {
        pieces: VecDeque<&'static [u8]>,
        reads: usize,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            match this.pieces.pop_front() {
                Some(p) => {
                    let n = p.len().min(buf.remaining());
                    buf.put_slice(&p[..n]);
                    if n < p.len() {
                        this.pieces.push_front(&p[n..]);
                    }
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    fn sniff_pieces(pieces: &[&'static [u8]]) -> (Poll<(bool, Bytes)>, usize) {
        let mut io = Pieces {
            pieces: pieces.iter().copied().collect(),
            reads: 0,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let poll = {
            let mut fut = Box::pin(sniff(&mut io));
            fut.as_mut()
                .poll(&mut cx)
                .map(|r| r.expect("no read error"))
        };
        (poll, io.reads)
    }

    #[test]
    fn a_partial_preface_waits_without_spinning() {
        // Half a preface, then silence: one read per piece and one that
        // waits; polled again, one more read, never a loop.
        let (poll, reads) = sniff_pieces(&[b"PRI * HTTP/2.0\r\n"]);
        assert!(poll.is_pending());
        assert_eq!(reads, 2);
        // Byte by byte: one read per byte, then the decision.
        let bytes: Vec<&'static [u8]> = H2_PREFACE.chunks(1).collect();
        let (poll, reads) = sniff_pieces(&bytes);
        assert_eq!(poll, Poll::Ready((true, Bytes::from_static(H2_PREFACE))));
        assert_eq!(reads, H2_PREFACE.len());
    }

    #[test]
    fn the_bytes_read_go_to_the_chosen_protocol() {
        // Decided at the first byte that cannot begin the preface.
        let (poll, _) = sniff_pieces(&[b"P", b"O", b"ST / HTTP/1.1\r\n"]);
        assert_eq!(poll, Poll::Ready((false, Bytes::from_static(b"PO"))));
        let head: &'static [u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (poll, _) = sniff_pieces(&[head]);
        let first = Bytes::from_static(&head[..H2_PREFACE.len()]);
        assert_eq!(poll, Poll::Ready((false, first)));
        // The end of the stream decides too.
        let mut io: &[u8] = b"PRI * HT";
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let fut = sniff(&mut io);
        tokio::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok((h2, read))) => {
                assert!(!h2);
                assert_eq!(read, Bytes::from_static(b"PRI * HT"));
            }
            other => panic!("{other:?}"),
        }
    }
}
