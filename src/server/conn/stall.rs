//! The send side of `body_timeout`: a client that accepts nothing of a
//! response for that long (it stopped reading, and the socket's buffers are
//! full) loses its connection. The response's upstream body is dropped with it,
//! unread, so its upstream connection is closed rather than reused.
//!
//! The clock runs only while a write waits and a request of the connection is
//! in flight: between requests nothing is written, and an upgraded WebSocket
//! tunnel, which is no request, keeps its own `idle_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Load;
use crate::telemetry::LimitLabel;

/// A connection's byte stream whose writes may wait at most `timeout` while a
/// request is in flight; then they fail with `TimedOut`, and so does the
/// connection.
pub(super) struct SendTimeout<T> {
    inner: T,
    timeout: Duration,
    load: Arc<Load>,
    hits: Family<LimitLabel, Counter>,
    /// Created at the first write that has to wait (most connections never
    /// have one), then reset.
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    expired: bool,
}

impl<T> SendTimeout<T> {
    pub(super) fn new(
        inner: T,
        timeout: Duration,
        load: Arc<Load>,
        hits: Family<LimitLabel, Counter>,
    ) -> SendTimeout<T> {
        SendTimeout {
            inner,
            timeout,
            load,
            hits,
            deadline: None,
            waiting: false,
            expired: false,
        }
    }

    /// The stream it wraps.
    pub(super) fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Passes a finished write through; a waiting one starts the clock (if it
    /// is not running) and fails once it has run out.
    fn check<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if self.load.in_flight.load(Ordering::Relaxed) == 0 {
            self.waiting = false;
            return Poll::Pending;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.deadline {
                Some(d) => d.as_mut().reset(deadline),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if !fired {
            return Poll::Pending;
        }
        self.expired = true;
        self.hits.get_or_create(&LimitLabel::BODY_TIMEOUT).inc();
        tracing::debug!(
            "Connection closed: the client accepted nothing of the response for body_timeout"
        );
        Poll::Ready(Err(expired()))
    }
}

fn expired() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client accepted nothing for body_timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing is not sending a response: a client that does not take the
        // TLS close_notify does not hold anything the idle timeout would not.
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
