//! Where an issuer's keys come from (`jwks_uri`, `discovery_url`, `jwks_file`),
//! and how they stay fresh: a background refresher that honours Cache-Control,
//! keeps the last good set when the issuer is down (up to 24 h), and a
//! single-flight, rate-limited refetch when a token names an unknown `kid`.
//! The built-in issuer (`builtin: true`) is never fetched: it pushes its
//! published JWKS in process ([`IssuerKeys::install_jwks`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::keys::{JwksParseError, KeySet, parse_jwks};
use crate::config::{IssuerConfig, KeySourceConfig};
use crate::telemetry::{IssuerLabel, Metrics};

/// Bounds for a key set's refresh interval taken from `Cache-Control: max-age`.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Refresh interval when the response says nothing.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);
/// How long the last good set keeps serving while refreshes fail.
pub const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// At most one unknown-`kid` refetch per issuer per this period.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// At most one on-demand fetch for an issuer without keys per this period.
const MISSING_KEYS_INTERVAL: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The HTTP(S) client used for JWKS and discovery documents.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Why fetching a key set failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request to {0} failed")]
    Request(String, #[source] hyper_util::client::legacy::Error),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("{0} answered {1}")]
    Status(String, StatusCode),
    #[error("the document from {0} could not be read")]
    Body(String),
    #[error("the document from {0} is too large")]
    TooLarge(String),
    #[error("the discovery document from {0} is invalid")]
    Discovery(String),
    #[error("the discovery document names issuer `{found}`, not the configured `{expected}`")]
    IssuerMismatch { expected: String, found: String },
    #[error("the key file {0} could not be read")]
    File(PathBuf, #[source] std::io::Error),
    #[error("the key set is invalid")]
    Parse(#[source] JwksParseError),
    #[error("the fetch was cancelled by shutdown")]
    Cancelled,
    #[error("could not set up TLS for key fetching")]
    Tls(#[source] std::io::Error),
    #[error("the built-in issuer's keys are installed in process, never fetched")]
    Builtin,
}

/// Builds the client for JWKS fetches: system roots plus an optional extra CA file.
pub fn http_client(ca_file: Option<&Path>) -> Result<HttpClient, FetchError> {
    let mut roots = crate::tls::native_roots();
    if let Some(path) = ca_file {
        let roots = Arc::make_mut(&mut roots);
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| FetchError::Tls(std::io::Error::other(e.to_string())))?;
        for cert in certs {
            let cert = cert.map_err(|e| FetchError::Tls(std::io::Error::other(e.to_string())))?;
            roots
                .add(cert)
                .map_err(|e| FetchError::Tls(std::io::Error::other(e)))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

struct FetchState {
    last_on_demand: Option<Instant>,
    last_success: Option<Instant>,
    /// The `jwks_uri` learned from discovery.
    discovered: Option<Uri>,
}

/// Fetches one issuer's documents. Cheap to clone, so that a fetch can run as a
/// task of its own on the control runtime.
#[derive(Clone)]
struct Fetcher {
    config: Arc<IssuerConfig>,
    client: HttpClient,
}

// === impl Fetcher ===

impl Fetcher {
    /// Fetches the key-set document; `discovered` is the `jwks_uri` learned from an
    /// earlier discovery, and the one learned now is returned beside the result.
    async fn fetch(
        &self,
        discovered: Option<Uri>,
    ) -> (Result<(Bytes, Duration), FetchError>, Option<Uri>) {
        match &self.config.keys {
            KeySourceConfig::JwksUri(uri) => (self.get(uri).await, None),
            KeySourceConfig::Discovery(url) => {
                let jwks = match discovered {
                    Some(u) => u,
                    None => match self.discover(url).await {
                        Ok(u) => u,
                        Err(e) => return (Err(e), None),
                    },
                };
                (self.get(&jwks).await, Some(jwks))
            }
            KeySourceConfig::File(path) => (
                tokio::fs::read(path)
                    .await
                    .map(|b| (Bytes::from(b), MIN_REFRESH))
                    .map_err(|e| FetchError::File(path.clone(), e)),
                None,
            ),
            KeySourceConfig::Builtin => (Err(FetchError::Builtin), None),
        }
    }

    async fn discover(&self, url: &Uri) -> Result<Uri, FetchError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let (body, _) = self.get(url).await?;
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|_| FetchError::Discovery(url.to_string()))?;
        if doc.issuer != self.config.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: doc.issuer,
            });
        }
        let jwks: Uri = doc
            .jwks_uri
            .parse()
            .map_err(|_| FetchError::Discovery(url.to_string()))?;
        match jwks.scheme_str() {
            Some("http") | Some("https") => Ok(jwks),
            _ => Err(FetchError::Discovery(url.to_string())),
        }
    }

    async fn get(&self, uri: &Uri) -> Result<(Bytes, Duration), FetchError> {
        let req = Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|_| FetchError::Discovery(uri.to_string()))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Request(uri.to_string(), e))?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status(uri.to_string(), resp.status()));
            }
            let max_age = refresh_interval(resp.headers());
            let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(uri.to_string())
                    } else {
                        FetchError::Body(uri.to_string())
                    }
                })?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout(uri.to_string())))
    }
}

/// One issuer's keys and the machinery that keeps them fresh.
pub struct IssuerKeys {
    pub config: Arc<IssuerConfig>,
    label: IssuerLabel,
    current: ArcSwapOption<KeySet>,
    generation: AtomicU64,
    state: Mutex<FetchState>,
    fetcher: Fetcher,
    /// The runtime fetches run on: the one the issuer was created on, so that the
    /// HTTP client's connections live there and not on a request worker's runtime.
    control: Option<tokio::runtime::Handle>,
    /// Milliseconds since `epoch` of the last unknown-kid refetch (`u64::MAX`: never),
    /// read without the lock so that a flood of unknown kids costs no contention.
    last_unknown_kid_ms: AtomicU64,
    epoch: Instant,
    metrics: Metrics,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.config.id)
            .finish()
    }
}

// === impl IssuerKeys ===

impl IssuerKeys {
    /// An issuer with no keys yet.
    pub fn new(config: Arc<IssuerConfig>, client: HttpClient, metrics: Metrics) -> IssuerKeys {
        let label = IssuerLabel {
            issuer: Arc::from(config.id.as_str()),
        };
        // Export both series at zero from the start: a series that first appears
        // at 1 hides that first failure from `rate()` and `increase()`.
        let _ = metrics.jwks_fetches.get_or_create(&label);
        let _ = metrics.jwks_failures.get_or_create(&label);
        IssuerKeys {
            label,
            config: config.clone(),
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            state: Mutex::new(FetchState {
                last_on_demand: None,
                last_success: None,
                discovered: None,
            }),
            last_unknown_kid_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            fetcher: Fetcher {
                config: config.clone(),
                client,
            },
            control: tokio::runtime::Handle::try_current().ok(),
            metrics,
        }
    }

    fn unknown_kid_recently(&self) -> bool {
        let last = self.last_unknown_kid_ms.load(Ordering::Acquire);
        let now = self.epoch.elapsed().as_millis() as u64;
        last != u64::MAX && now.saturating_sub(last) < UNKNOWN_KID_INTERVAL.as_millis() as u64
    }

    /// The keys in force, if any were ever fetched (and are not too stale).
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// The generation of the keys in force: it changes whenever they change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a key set is loaded (for the built-in issuer: installed).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// Whether the keys come from the built-in issuer in process.
    pub fn is_builtin(&self) -> bool {
        self.config.keys == KeySourceConfig::Builtin
    }

    /// Replaces the key set with `keys` (a no-op when they are the same keys);
    /// a change bumps the generation, which invalidates cached verdicts.
    pub fn install_keys(&self, keys: Vec<Arc<super::keys::Key>>) {
        self.install(keys);
    }

    /// Installs the key set of a JWKS document, through exactly the checks a
    /// fetched one passes ([`parse_jwks`]). This is how the built-in issuer
    /// publishes its keys to the gateway; on error the keys in force stay.
    pub fn install_jwks(&self, jwks: &[u8]) -> Result<(), JwksParseError> {
        self.install(parse_jwks(jwks)?);
        Ok(())
    }

    /// A token named a `kid` that generation `seen` lacks: refetch once (single
    /// flight, at most once per [`UNKNOWN_KID_INTERVAL`]). True when the keys changed.
    pub async fn refetch_unknown_kid(&self, seen: u64) -> bool {
        // The built-in issuer installs every key it publishes before signing with it.
        if self.generation() != seen || self.is_builtin() {
            return self.generation() != seen;
        }
        if self.unknown_kid_recently() {
            return false;
        }
        let mut st = self.state.lock().await;
        if self.generation() != seen {
            return true;
        }
        if self.unknown_kid_recently() {
            return false;
        }
        self.last_unknown_kid_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        let _ = self.fetch_locked(&mut st).await;
        self.generation() != seen
    }

    /// No keys yet: fetch now (single flight, rate-limited). True when keys are loaded.
    pub async fn fetch_if_missing(&self) -> bool {
        if self.is_ready() || self.is_builtin() {
            return self.is_ready();
        }
        let mut st = self.state.lock().await;
        if self.is_ready() {
            return true;
        }
        if st
            .last_on_demand
            .is_some_and(|t| t.elapsed() < MISSING_KEYS_INTERVAL)
        {
            return false;
        }
        st.last_on_demand = Some(Instant::now());
        let _ = self.fetch_locked(&mut st).await;
        self.is_ready()
    }

    /// Fetches and installs the key set now; returns the refresh interval it asked
    /// for. The built-in issuer is never fetched ([`FetchError::Builtin`]).
    pub async fn refresh(&self) -> Result<Duration, FetchError> {
        if self.is_builtin() {
            return Err(FetchError::Builtin);
        }
        let mut st = self.state.lock().await;
        self.fetch_locked(&mut st).await
    }

    async fn fetch_locked(&self, st: &mut FetchState) -> Result<Duration, FetchError> {
        self.metrics.jwks_fetches.get_or_create(&self.label).inc();
        let fetcher = self.fetcher.clone();
        let discovered = st.discovered.clone();
        let work = async move { fetcher.fetch(discovered).await };
        let (result, discovered) = match &self.control {
            Some(h) => h
                .spawn(work)
                .await
                .unwrap_or_else(|_| (Err(FetchError::Cancelled), None)),
            None => work.await,
        };
        if discovered.is_some() {
            st.discovered = discovered;
        }
        match result {
            Ok((body, max_age)) => match parse_jwks(&body) {
                Ok(keys) => {
                    self.install(keys);
                    st.last_success = Some(Instant::now());
                    Ok(max_age)
                }
                Err(e) => Err(self.failed(st, FetchError::Parse(e))),
            },
            Err(e) => Err(self.failed(st, e)),
        }
    }

    fn failed(&self, st: &FetchState, err: FetchError) -> FetchError {
        self.metrics.jwks_failures.get_or_create(&self.label).inc();
        let stale = st.last_success.map(|t| t.elapsed());
        if stale.is_some_and(|s| s > MAX_STALE) && self.current.load().is_some() {
            tracing::error!(issuer = %self.config.id, "Key set dropped: stale for more than 24 h");
            self.current.store(None);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let error = crate::telemetry::events::chain(&err);
        match (&err, stale) {
            (FetchError::IssuerMismatch { .. }, _) => {
                tracing::error!(issuer = %self.config.id, %error, "Discovery document refused")
            }
            (_, Some(_)) => {
                tracing::warn!(issuer = %self.config.id, %error, "Key set refresh failed; serving the last good set")
            }
            (_, None) => tracing::error!(issuer = %self.config.id, %error, "Key set fetch failed"),
        }
        err
    }

    fn install(&self, keys: Vec<Arc<super::keys::Key>>) {
        let unchanged = self
            .current
            .load()
            .as_ref()
            .is_some_and(|cur| cur.same_keys(&keys));
        if unchanged {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let count = keys.len();
        self.current
            .store(Some(Arc::new(KeySet { keys, generation })));
        tracing::info!(issuer = %self.config.id, keys = count, generation, "Key set installed");
    }

    /// Keeps the key set fresh until `shutdown` fires. The first fetch happens at
    /// once. Returns at once for the built-in issuer, which has nothing to fetch.
    pub async fn run_refresher(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.is_builtin() {
            return;
        }
        let mut delay = Duration::ZERO;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            match self.refresh().await {
                Ok(max_age) => {
                    failures = 0;
                    delay = max_age;
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    delay = retry_delay(failures);
                }
            }
        }
    }
}

/// Back-off after `failures` consecutive failed refreshes: 2 s, 4 s … capped at 5 min.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(8);
    Duration::from_secs(secs.min(300))
}

/// The refresh interval a response asks for: `max-age` within the bounds, else 10 min.
pub fn refresh_interval(headers: &http::HeaderMap) -> Duration {
    let max_age = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let (k, v) = d.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .next();
    match max_age {
        Some(s) => Duration::from_secs(s).clamp(MIN_REFRESH, MAX_REFRESH),
        None => DEFAULT_REFRESH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, v.parse().expect("value"));
        h
    }

    #[test]
    fn max_age_is_honoured_within_bounds() {
        assert_eq!(
            refresh_interval(&cc("public, max-age=300")),
            Duration::from_secs(300)
        );
        assert_eq!(refresh_interval(&cc("max-age=5")), MIN_REFRESH);
        assert_eq!(refresh_interval(&cc("max-age=999999")), MAX_REFRESH);
        assert_eq!(refresh_interval(&cc("no-cache")), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(&http::HeaderMap::new()), DEFAULT_REFRESH);
    }

    #[test]
    fn retries_back_off_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_secs(256));
    }
}
