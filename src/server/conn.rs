//! One downstream connection: the TLS handshake (bounded by
//! `header_read_timeout`), HTTP/1.1 or HTTP/2 (by ALPN over TLS, by the
//! prior-knowledge preface in cleartext), the limits of `server.limits`, an idle
//! timeout, graceful shutdown, and a connection span. Every request of the
//! connection carries its [`ConnInfo`] as an extension.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::Limits;
use crate::net::ConnInfo;
use crate::proxy::ProxyBody;
use crate::telemetry::{LimitLabel, Metrics};

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
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _ = tcp.set_nodelay(true);
    let span = tracing::debug_span!("connection", %peer, tls = tls.is_some());
    async move {
        let activity = Arc::new(AtomicU64::new(0));
        let (io, info, h2) = match tls {
            None => {
                let h2 = match tokio::time::timeout(limits.header_read_timeout, is_h2(&tcp)).await {
                    Ok(Ok(h2)) => h2,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        metrics.limit_hit(LimitLabel::HEADER_READ_TIMEOUT);
                        return;
                    }
                };
                let info = ConnInfo {
                    peer,
                    tls: false,
                    client_certs: None,
                };
                (Io::Plain(tcp), info, h2)
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
                let info = ConnInfo {
                    peer,
                    tls: true,
                    client_certs,
                };
                (Io::Tls(Box::new(stream)), info, h2)
            }
        };
        let info = Arc::new(info);
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(info.clone());
            // Boxed once: the request's future is several kilobytes, and hyper
            // moves it into its dispatcher; a pointer moves for free.
            let fut = Box::pin(handler(req));
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let io = TokioIo::new(Counted {
            inner: io,
            activity: activity.clone(),
        });
        let result = if h2 {
            let mut b = http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
            let conn = b.serve_connection(io, service);
            drive(
                conn,
                &activity,
                limits.idle_timeout,
                &mut shutdown,
                &metrics,
            )
            .await
        } else {
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_header_size(limits.max_header_bytes)
                // One flattened write per response instead of a vectored one:
                // cheaper for the small heads and bodies an API gateway carries.
                .writev(false);
            let conn = b.serve_connection(io, service).with_upgrades();
            drive(
                conn,
                &activity,
                limits.idle_timeout,
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
    }
    .instrument(span)
    .await;
}

/// Whether a cleartext connection starts with the HTTP/2 preface; reads
/// nothing (peeks), so the chosen codec sees every byte.
async fn is_h2(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: wait for more bytes without spinning.
        tcp.readable().await?;
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

/// Runs a connection; asks it to close gracefully when nothing has moved on it
/// for `idle` (checked every quarter of it, so it closes between `idle` and
/// 1.25 × `idle`) or when `shutdown` fires. A request in flight still finishes.
async fn drive<C: Graceful>(
    conn: C,
    activity: &AtomicU64,
    idle: Duration,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &Metrics,
) -> Result<(), hyper::Error> {
    tokio::pin!(conn);
    let tick = idle / 4;
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet = 0u32;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = tokio::time::sleep(tick), if !closing => {
                let now = activity.load(Ordering::Relaxed);
                if now == seen {
                    quiet += 1;
                    if quiet >= 4 {
                        closing = true;
                        metrics.limit_hit(LimitLabel::IDLE_TIMEOUT);
                        conn.as_mut().graceful();
                    }
                } else {
                    seen = now;
                    quiet = 0;
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful();
            }
        }
    }
}

/// The connection's byte stream, plain or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// `Io` that counts its reads and writes, for the idle timeout.
struct Counted {
    inner: Io,
    activity: Arc<AtomicU64>,
}

impl Counted {
    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.inner {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.touch();
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
        let r = match &mut this.inner {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
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
            this.touch();
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
