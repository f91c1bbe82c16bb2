//! Upstreams as the configuration describes them, compiled once per
//! configuration and shared by every worker: where to connect, TLS to it
//! (system roots plus `ca_file`, `client_cert` for mTLS, ALPN), which HTTP
//! version, which timeouts, and how a request's URI is built for it. A reload
//! keeps a [`Target`] whose settings did not change, and with it every worker's
//! pooled connections (`proxy::pool`).

mod connect;

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, PathAndQuery};

pub use connect::{ConnectError, Stream, TlsSetupError, read_certs};

use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::telemetry::UpstreamLabel;

/// Why an upstream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{0}` has no usable scheme and authority")]
    BadUrl(String),
    #[error("cannot set up TLS for upstream `{0}`")]
    Tls(String, #[source] TlsSetupError),
}

/// One configured upstream, compiled.
pub struct Target {
    pub label: UpstreamLabel,
    config: UpstreamConfig,
    https: bool,
    authority: Authority,
    host: String,
    port: u16,
    /// A base path from the upstream URL, without a trailing slash ("" for none).
    base_path: String,
    tls: Option<connect::Tls>,
    /// For `protocol: h2` over TLS: the same, offering `http/1.1`, for the
    /// connections a protocol upgrade (WebSocket) needs.
    tls_http1: Option<connect::Tls>,
    /// Its `portcullis_upstream_duration_seconds` histogram, looked up once:
    /// no label hashing and no read lock shared by every worker per request.
    pub latency: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.label.upstream)
            .finish()
    }
}

// === impl Target ===

impl Target {
    /// Compiles one upstream; reads its `ca_file` and `client_cert` now, so that
    /// a broken file fails the start (or the reload) instead of a request.
    pub fn new(cfg: &UpstreamConfig) -> Result<Target, UpstreamError> {
        let bad = || UpstreamError::BadUrl(cfg.name.clone());
        let authority = cfg.url.authority().cloned().ok_or_else(bad)?;
        let https = match cfg.url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = authority.host().to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls_for = |protocol| {
            connect::Tls::new(
                &host,
                cfg.ca_file.as_deref(),
                cfg.client_cert.as_ref(),
                protocol,
            )
            .map_err(|e| UpstreamError::Tls(cfg.name.clone(), e))
        };
        let tls = if https {
            Some(tls_for(cfg.protocol)?)
        } else {
            None
        };
        let tls_http1 = if https && cfg.protocol == UpstreamProtocol::H2 {
            Some(tls_for(UpstreamProtocol::Http1)?)
        } else {
            None
        };
        Ok(Target {
            label: UpstreamLabel {
                upstream: Arc::from(cfg.name.as_str()),
            },
            config: cfg.clone(),
            https,
            authority,
            host,
            port,
            base_path: cfg.url.path().trim_end_matches('/').to_owned(),
            tls,
            tls_http1,
            latency: std::sync::OnceLock::new(),
        })
    }

    /// Whether this target was compiled from exactly `cfg` (a reload keeps it,
    /// and with it every worker's connections).
    pub fn same_config(&self, cfg: &UpstreamConfig) -> bool {
        self.config == *cfg
    }

    /// The upstream's response timeout.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Whether the upstream speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.config.protocol == UpstreamProtocol::H2
    }

    /// The path and query sent upstream: the base path, the normalised path,
    /// the original query.
    pub fn path_and_query(&self, path: &str, query: Option<&str>) -> Option<PathAndQuery> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        PathAndQuery::try_from(pq).ok()
    }

    /// The absolute URI for an HTTP/2 request: `:authority` is the client's
    /// `Host` when it has one (as an HTTP/1.1 upstream would see it), else the
    /// upstream's own.
    pub fn h2_uri(&self, pq: PathAndQuery, host: Option<&str>) -> Option<Uri> {
        let authority = host
            .and_then(|h| Authority::try_from(h).ok())
            .unwrap_or_else(|| self.authority.clone());
        Uri::builder()
            .scheme(if self.https { "https" } else { "http" })
            .authority(authority)
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// The upstream's authority, for a `Host` when the client sent none.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Opens a connection (TLS when `https://`) within `connect_timeout`, in the
    /// upstream's protocol, or in HTTP/1.1 for a protocol upgrade (`http1`).
    pub async fn connect(&self, http1: bool) -> Result<Stream, ConnectError> {
        let (tls, protocol) = match (http1, &self.tls_http1) {
            (true, Some(t)) => (Some(t), UpstreamProtocol::Http1),
            (true, None) => (self.tls.as_ref(), UpstreamProtocol::Http1),
            (false, _) => (self.tls.as_ref(), self.config.protocol),
        };
        connect::connect(
            &self.host,
            self.port,
            tls,
            protocol,
            self.config.connect_timeout,
        )
        .await
    }
}
