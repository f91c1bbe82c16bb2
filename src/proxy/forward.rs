//! Upstreams: a pooled keep-alive client per upstream, the request URI rewrite,
//! connect and response timeouts, and streaming bodies with identity headers
//! filtered out of request trailers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use super::respond::Reject;
use crate::config::UpstreamConfig;
use crate::telemetry::UpstreamLabel;

/// A request body on its way upstream: streamed as it arrives, with identity
/// headers removed from its trailers.
pub struct UpstreamBody {
    inner: Incoming,
    identity: Arc<[HeaderName]>,
    /// Fired when the client's body has been read to its end (`true`) or broke
    /// off (`false`).
    finished: Option<oneshot::Sender<bool>>,
}

/// Resolves when the request body has been sent in full (`true`) or failed
/// (`false`); `None` for a request without a body.
pub type BodySent = Option<oneshot::Receiver<bool>>;

impl UpstreamBody {
    /// Wraps the client's body; the receiver learns when it has been read in full.
    pub fn new(inner: Incoming, identity: Arc<[HeaderName]>) -> (Self, BodySent) {
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
                finished,
            },
            sent,
        )
    }

    fn finish(&mut self, complete: bool) {
        if let Some(tx) = self.finished.take() {
            let _ = tx.send(complete);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        super::headers::strip_client_controlled(
                            &mut trailers,
                            &this.identity,
                            super::headers::Overrides::Strip,
                        );
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// One configured upstream.
pub struct Upstream {
    pub label: UpstreamLabel,
    scheme: Scheme,
    authority: Authority,
    /// A base path from the upstream URL, without a trailing slash ("" for none).
    base_path: String,
    timeout: Duration,
    client: UpstreamClient,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.label.upstream)
            .finish()
    }
}

/// Why an upstream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}` has no usable scheme and authority")]
    BadUrl(String),
    #[error("could not set up TLS for upstream `{0}`")]
    Tls(String, #[source] std::io::Error),
}

// === impl Upstream ===

impl Upstream {
    /// Builds the pooled client for one upstream.
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let parts = cfg.url.clone().into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(UpstreamError::BadUrl(cfg.name.clone()));
        };
        let base_path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let tls = rustls_client().map_err(|e| UpstreamError::Tls(cfg.name.clone(), e))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .http1_writev(false)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            label: UpstreamLabel {
                upstream: Arc::from(cfg.name.as_str()),
            },
            scheme,
            authority,
            base_path,
            timeout: cfg.timeout,
            client,
        })
    }

    /// The upstream URI for a normalised path and the original query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, Reject> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq).map_err(|_| Reject::Internal)?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| Reject::Internal)
    }

    /// Sends the request; the response timeout covers the wait for its headers.
    ///
    /// As in Envoy, the response timeout starts once the request body has been
    /// sent in full, so a long upload to a healthy upstream is not cut short. A
    /// client body that breaks off (or is malformed, as a bad chunk) is the
    /// client's fault: 400, not 502.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        body_sent: BodySent,
    ) -> Result<Response<Incoming>, Reject> {
        let response = self.client.request(req);
        tokio::pin!(response);
        if let Some(sent) = body_sent {
            tokio::select! {
                // The body's verdict first: the failed body also fails the
                // response, which must not read as the upstream's fault.
                biased;
                complete = sent => {
                    if complete == Ok(false) {
                        return Err(Reject::BadBody);
                    }
                }
                r = &mut response => return self.outcome(r),
            }
        }
        match tokio::time::timeout(self.timeout, response).await {
            Err(_) => Err(Reject::UpstreamTimeout),
            Ok(r) => self.outcome(r),
        }
    }

    fn outcome(
        &self,
        r: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
    ) -> Result<Response<Incoming>, Reject> {
        match r {
            Ok(resp) => Ok(resp),
            Err(e) => {
                let timed_out = is_timeout(&e);
                tracing::debug!(upstream = %self.label.upstream, error = %crate::telemetry::events::chain(&e), "Upstream request failed");
                Err(if timed_out {
                    Reject::UpstreamTimeout
                } else {
                    Reject::UpstreamUnavailable
                })
            }
        }
    }
}

fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        cur = e.source();
    }
    false
}

fn rustls_client() -> Result<rustls::ClientConfig, std::io::Error> {
    let roots = crate::tls::native_roots();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
