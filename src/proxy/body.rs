//! Bodies on their way through: the client's request body sent upstream
//! (client-controlled headers removed from its trailers, its size capped, a
//! stall between two of its pieces bounded by `body_timeout`) — streamed as
//! it arrives, or, when a route's `max_body` must hold for a body of unknown
//! length, read whole first ([`read_whole`]) and then replayed — and the
//! upstream's response body streamed back, handing its HTTP/1.1 connection
//! back to the worker's pool once it has been read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::net::Inbound;
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::h1;
use super::headers::{Overrides, strip_client_controlled};
use super::pool::{Lease, Pool};

/// How the client's request body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Read to its end.
    Complete,
    /// It broke off, or its framing was malformed.
    Failed,
    /// It grew past the route's `max_body`.
    TooLarge,
    /// Nothing of it arrived for `body_timeout`.
    Stalled,
}

/// Why the request body stopped (the error a hyper client sees).
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("the request body failed")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the request body exceeds the route's limit of {0} bytes")]
    TooLarge(u64),
    #[error("nothing of the request body arrived for {0:?}")]
    Stalled(Duration),
}

/// A request body on its way upstream: streamed as it arrives, with
/// client-controlled headers removed from its trailers, and cut off (an error,
/// so the upstream never sees a complete request) past `limit` bytes, or when
/// the client sends nothing of it for `timeout` while the upstream waits for
/// more. Or a body read whole beforehand ([`UpstreamBody::buffered`]),
/// replayed frame by frame.
pub struct UpstreamBody {
    inner: Source,
    identity: Arc<[HeaderName]>,
    limit: Option<u64>,
    seen: u64,
    timeout: Duration,
    /// Armed when the upstream asks for more and none has arrived. Boxed (the
    /// HTTP/2 client wants an `Unpin` body) and created at the first wait, so a
    /// request without a body, or whose body came with its head, has none.
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Fired once with how the body ended.
    finished: Option<oneshot::Sender<BodyEnd>>,
}

/// Resolves with how the request body ended; `None` for a request without a body.
pub type BodySent = Option<oneshot::Receiver<BodyEnd>>;

/// A client's request body read whole before anything was sent upstream
/// ([`read_whole`]): its data in one piece (at most the limit it was read
/// under), then its trailers, if it had any.
#[derive(Debug)]
pub struct Buffered {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

/// Where an [`UpstreamBody`]'s frames come from.
enum Source {
    /// The client's body, as it arrives.
    Streamed(Inbound),
    /// The client's body, read whole beforehand. Boxed: the streamed variant,
    /// the common one, stays as small as the body it wraps.
    Buffered(Box<Buffered>),
}

// === impl UpstreamBody ===

impl UpstreamBody {
    /// Wraps the client's body; the receiver learns how it ended.
    pub fn new(
        inner: Inbound,
        identity: Arc<[HeaderName]>,
        limit: Option<u64>,
        timeout: Duration,
    ) -> (Self, BodySent) {
        Self::from_source(Source::Streamed(inner), identity, limit, timeout)
    }

    /// Replays a body read whole beforehand (its limit already held, and it
    /// never waits); the receiver learns when its last frame was handed over.
    pub fn buffered(body: Box<Buffered>, identity: Arc<[HeaderName]>) -> (Self, BodySent) {
        Self::from_source(Source::Buffered(body), identity, None, Duration::ZERO)
    }

    fn from_source(
        inner: Source,
        identity: Arc<[HeaderName]>,
        limit: Option<u64>,
        timeout: Duration,
    ) -> (Self, BodySent) {
        let (finished, sent) = if inner.is_end_stream() {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        (
            UpstreamBody {
                inner,
                identity,
                limit,
                seen: 0,
                timeout,
                stall: None,
                waiting: false,
                finished,
            },
            sent,
        )
    }

    fn finish(&mut self, end: BodyEnd) {
        if let Some(tx) = self.finished.take() {
            let _ = tx.send(end);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if let Some(limit) = this.limit.filter(|l| this.seen > *l) {
                        this.finish(BodyEnd::TooLarge);
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge(limit))));
                    }
                }
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        strip_client_controlled(
                            &mut trailers,
                            &this.identity,
                            Overrides::Strip,
                            false,
                        );
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                if this.inner.is_end_stream() {
                    this.finish(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish(BodyEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(BodyEnd::Failed);
                Poll::Ready(Some(Err(RequestBodyError::Client(e.into()))))
            }
            Poll::Pending => {
                // The clock runs from the moment the upstream is ready for more
                // and the client has sent nothing: a slow upstream is not the
                // client's stall.
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.timeout;
                    match &mut this.stall {
                        Some(stall) => stall.as_mut().reset(deadline),
                        None => this.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let fired = this
                    .stall
                    .as_mut()
                    .is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                this.finish(BodyEnd::Stalled);
                Poll::Ready(Some(Err(RequestBodyError::Stalled(this.timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl Source ===

impl Source {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self {
            Source::Streamed(inner) => Pin::new(inner).poll_frame(cx),
            Source::Buffered(body) => Poll::Ready(body.next().map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Streamed(inner) => inner.is_end_stream(),
            Source::Buffered(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Streamed(inner) => inner.size_hint(),
            Source::Buffered(body) => body.size_hint(),
        }
    }
}

// === impl Buffered ===

impl Buffered {
    /// The data read (trailers aside).
    pub fn into_data(self) -> Bytes {
        self.data.unwrap_or_default()
    }

    /// The next frame to replay: the data, then the trailers.
    fn next(&mut self) -> Option<Frame<Bytes>> {
        match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    /// Exact without trailers, so that the upstream is told the length
    /// (`Content-Length`). With trailers it stays open: HTTP/1.1 carries
    /// trailers only in a chunked body.
    fn size_hint(&self) -> SizeHint {
        let len = self.data.as_ref().map_or(0, |d| d.len() as u64);
        if self.trailers.is_none() {
            return SizeHint::with_exact(len);
        }
        let mut hint = SizeHint::new();
        hint.set_lower(len);
        hint
    }
}

/// Reads the client's body whole before anything is sent upstream, the way
/// nginx buffers a request body: for a route's `max_body` to hold for a body
/// whose length is not declared (HTTP/1.1 chunked, HTTP/2 without
/// `content-length`), so that the upstream sees the whole body or nothing.
/// Refused once it passes `limit` bytes, when nothing of it arrives for
/// `timeout` (the bound on each wait for a piece, as while streaming), or when
/// it breaks off. Memory: the data kept never exceeds `limit` bytes (plus its
/// trailers, which the HTTP layer bounds as it bounds a head).
pub async fn read_whole<B>(
    body: &mut B,
    limit: u64,
    timeout: Duration,
) -> Result<Buffered, RequestBodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(RequestBodyError::Client(e.into())),
            Err(_) => return Err(RequestBodyError::Stalled(timeout)),
        };
        match frame.into_data() {
            Ok(piece) => {
                let len = data.len().saturating_add(piece.len());
                if len > cap {
                    return Err(RequestBodyError::TooLarge(limit));
                }
                grow(&mut data, piece.len(), cap);
                data.extend_from_slice(&piece);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(Buffered {
        data: (!data.is_empty()).then(|| Bytes::from(data)),
        trailers,
    })
}

/// Makes room in `data` for `more` bytes (`data.len() + more <= cap`):
/// doubling, as a `Vec` grows, but never past `cap`.
fn grow(data: &mut Vec<u8>, more: usize, cap: usize) {
    let len = data.len() + more;
    if len > data.capacity() {
        let grown = len.max(data.capacity().saturating_mul(2)).min(cap);
        data.reserve_exact(grown - data.len());
    }
}

/// The upstream's response body, streamed to the client; when it has been read
/// to its end, its HTTP/1.1 connection goes back to the pool (hyper's
/// [`Lease`], or the proxy's own client's connection). Dropped before its end,
/// the connection goes with it: it is mid-response and cannot carry another
/// request.
pub struct ResponseBody {
    inner: Inner,
}

enum Inner {
    /// From hyper's client.
    Hyper {
        body: hyper::body::Incoming,
        lease: Option<Lease>,
    },
    /// From the proxy's own client, which hands its connection back to `pool`.
    Direct { body: h1::Body, pool: Arc<Pool> },
}

/// Why the upstream's response body broke off.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    #[error("the upstream's response body failed")]
    Hyper(#[source] hyper::Error),
    #[error("the upstream's response body failed")]
    Direct(#[source] h1::Error),
}

impl ResponseBody {
    /// Wraps `inner`; the lease is returned at once when there is no body at all.
    pub fn new(inner: hyper::body::Incoming, lease: Option<Lease>) -> ResponseBody {
        let mut body = ResponseBody {
            inner: Inner::Hyper { body: inner, lease },
        };
        if body.is_end_stream() {
            body.end();
        }
        body
    }

    /// A body read by the proxy's own client; its connection goes back to
    /// `pool` once the body was read to its end (at once when it has none).
    pub fn direct(body: h1::Body, pool: Arc<Pool>) -> ResponseBody {
        let mut body = ResponseBody {
            inner: Inner::Direct { body, pool },
        };
        if body.is_end_stream() {
            body.end();
        }
        body
    }

    fn end(&mut self) {
        match &mut self.inner {
            Inner::Hyper { lease, .. } => {
                if let Some(lease) = lease.take() {
                    lease.release();
                }
            }
            Inner::Direct { body, pool } => {
                if let Some(conn) = body.take_reusable() {
                    pool.put_back(conn);
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Hyper { body, lease } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                // An error: the connection is broken, drop it with the body.
                if let Poll::Ready(Some(Err(_))) = &polled {
                    *lease = None;
                }
                polled.map_err(ResponseBodyError::Hyper)
            }
            // A broken body drops its connection itself.
            Inner::Direct { body, .. } => body.poll_frame(cx).map_err(ResponseBodyError::Direct),
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this.end(),
            Poll::Ready(None) => this.end(),
            Poll::Ready(Some(_)) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::Direct { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::Direct { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
