//! Protocol upgrades (WebSockets): which requests ask for one, and the splice
//! that copies the upgraded streams both ways once the upstream answered 101.
//! The token and the policy were checked once, on the upgrade request; after
//! that the bytes are the two ends' business, until either side closes or
//! nothing moves for `idle_timeout`. A splice runs inside its downstream
//! connection's task ([`Tunnels`]), so it keeps that connection's permit of
//! `max_connections` and is drained at shutdown like a request in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use http::header::{CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::headers::Seen;

/// What an HTTP/1.1 request's `Connection: upgrade` + `Upgrade` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// No upgrade (or `h2c`, which the gateway ignores as RFC 9113 allows: the
    /// request is answered in HTTP/1.1).
    Nothing,
    /// `Upgrade: websocket`.
    WebSocket,
    /// Any other protocol.
    Other,
}

/// A splice waiting to run.
type Splice = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a downstream connection collects the splices of its upgraded
/// requests (a request extension): the connection's task runs them once the
/// HTTP exchange has handed the stream over, so a tunnel holds the
/// connection's permit for as long as it lives, and a shutdown waits for it
/// (up to the grace period, then closes it) as for any connection.
#[derive(Clone, Default)]
pub struct Tunnels(Arc<Mutex<Vec<Splice>>>);

impl Tunnels {
    /// The splices handed over so far (each taken once).
    pub fn take(&self) -> Vec<Pin<Box<dyn Future<Output = ()> + Send>>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, splice: Splice) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(splice);
    }
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels").finish_non_exhaustive()
    }
}

/// Reads the upgrade a request asks for (`seen`: its fields, taken before).
pub fn asked(headers: &HeaderMap, seen: Seen) -> Asked {
    if !seen.upgrade() {
        return Asked::Nothing;
    }
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut protocols = headers.get_all(UPGRADE).iter();
    let Some(first) = protocols.next() else {
        return Asked::Nothing;
    };
    if !connection_upgrade {
        // An `Upgrade` that `Connection` does not name is hop-by-hop noise.
        return Asked::Nothing;
    }
    if protocols.next().is_some() {
        return Asked::Other;
    }
    let value = first.to_str().unwrap_or_default().trim();
    if value.eq_ignore_ascii_case("websocket") {
        Asked::WebSocket
    } else if value.eq_ignore_ascii_case("h2c") {
        Asked::Nothing
    } else {
        Asked::Other
    }
}

/// Joins the client's and the upstream's upgraded streams and copies bytes both
/// ways until either closes or nothing moves for `idle` (checked every quarter
/// of it). Runs in the connection's task, handed over through `tunnels`; a
/// request without them (none in the gateway) gets a task of its own.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, tunnels: Option<&Tunnels>) {
    let splice = Box::pin(run(client, upstream, idle));
    match tunnels {
        Some(t) => t.push(splice),
        None => {
            tokio::spawn(splice);
        }
    }
}

async fn run(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "Upgrade did not complete");
            return;
        }
    };
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Counted {
        inner: TokioIo::new(client),
        activity: activity.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let tick = idle / 4;
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet = 0u32;
    loop {
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "Upgraded connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                let now = activity.load(Ordering::Relaxed);
                if now == seen {
                    quiet += 1;
                    if quiet >= 4 {
                        tracing::debug!("Upgraded connection closed after its idle timeout");
                        return;
                    }
                } else {
                    seen = now;
                    quiet = 0;
                }
            }
        }
    }
}

/// A stream that counts its reads and writes (both directions go through the
/// client side of the splice).
struct Counted<T> {
    inner: T,
    activity: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::asked`] with the map's fields seen as the server does.
    fn asked(h: &HeaderMap) -> Asked {
        super::asked(h, Seen::of(h))
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        m
    }

    #[test]
    fn upgrades_are_read_from_connection_and_upgrade() {
        assert_eq!(asked(&h(&[])), Asked::Nothing);
        assert_eq!(
            asked(&h(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket")
            ])),
            Asked::WebSocket
        );
        assert_eq!(asked(&h(&[("upgrade", "websocket")])), Asked::Nothing);
        assert_eq!(
            asked(&h(&[("connection", "upgrade"), ("upgrade", "h2c")])),
            Asked::Nothing
        );
        assert_eq!(
            asked(&h(&[("connection", "upgrade"), ("upgrade", "TLS/1.2")])),
            Asked::Other
        );
        assert_eq!(
            asked(&h(&[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c")
            ])),
            Asked::Other
        );
    }
}
