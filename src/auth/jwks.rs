//! Where an issuer's keys come from (`jwks_uri`, `discovery_url`, `jwks_file`),
//! and how they stay fresh: a background refresher that honours Cache-Control,
//! keeps the last good set when the issuer is down (up to 24 h), and a
//! single-flight, rate-limited refetch when a token names an unknown `kid` or the
//! issuer has no keys yet.
//!
//! Every fetch of an issuer is single flight: it runs as a task of its own, and
//! whoever needs keys while it runs (requests, the refresher) waits for that one
//! fetch instead of starting another. Requests wait at most [`WAIT_FOR_FETCH`],
//! then answer 503; on-demand rate limits count from the end of a fetch, so a
//! slow issuer is asked again only after a pause, never once per waiting request.
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
use std::sync::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::keys::{JwksParseError, KeySet, parse_jwks};
use crate::config::{IssuerConfig, KeySourceConfig};
use crate::telemetry::{IssuerLabel, Metrics, redact};

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
/// How long a request waits for a fetch in flight before it is answered 503.
pub const WAIT_FOR_FETCH: Duration = Duration::from_secs(3);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The HTTP(S) client used for JWKS and discovery documents.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Why fetching a key set failed. URLs in it are shown without userinfo or
/// query ([`crate::telemetry::redact::url`]). Cheap to clone: everyone who waited
/// for one fetch gets its outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("request to {0} failed")]
    Request(String, #[source] Arc<hyper_util::client::legacy::Error>),
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
    File(PathBuf, #[source] Arc<std::io::Error>),
    #[error("the key set is invalid")]
    Parse(#[source] Arc<JwksParseError>),
    #[error("the fetch was cancelled by shutdown")]
    Cancelled,
    #[error("could not set up TLS for key fetching")]
    Tls(#[source] Arc<std::io::Error>),
    #[error("the built-in issuer's keys are installed in process, never fetched")]
    Builtin,
    #[error("the issuer has no signing keys: its tokens are checked by introspection")]
    NoKeys,
}

/// The TLS settings for an issuer's fetches: system roots plus an optional
/// extra CA file.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, FetchError> {
    let mut roots = crate::tls::native_roots();
    if let Some(path) = ca_file {
        let roots = Arc::make_mut(&mut roots);
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| FetchError::Tls(Arc::new(std::io::Error::other(e.to_string()))))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| FetchError::Tls(Arc::new(std::io::Error::other(e.to_string()))))?;
            roots
                .add(cert)
                .map_err(|e| FetchError::Tls(Arc::new(std::io::Error::other(e))))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(Arc::new(std::io::Error::other(e))))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Builds the client for JWKS fetches: system roots plus an optional extra CA file.
pub fn http_client(ca_file: Option<&Path>) -> Result<HttpClient, FetchError> {
    let tls = tls_config(ca_file)?;
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

/// What one fetch ended with, shared by everyone who waited for it.
pub type Outcome = Result<Duration, FetchError>;

/// Why a fetch was started: on-demand fetches have rate limits of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Scheduled,
    MissingKeys,
    UnknownKid,
}

struct FetchState {
    /// The fetch running now; its channel turns `Some` when it ends.
    in_flight: Option<watch::Receiver<Option<Outcome>>>,
    /// When the last on-demand fetch for missing keys ended. The system's
    /// monotonic clock, not tokio's: it is set on the control runtime and read on
    /// request workers, whose tokio clocks a test may pause apart.
    missing_keys_ended: Option<std::time::Instant>,
    last_success: Option<Instant>,
    /// The `jwks_uri` learned from discovery.
    discovered: Option<Uri>,
}

/// What waiting for a refetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// The keys changed.
    Changed,
    /// They did not (or no fetch was allowed now).
    Unchanged,
    /// A fetch is still running after [`WAIT_FOR_FETCH`].
    StillRunning,
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
                    .map_err(|e| FetchError::File(path.clone(), Arc::new(e))),
                None,
            ),
            KeySourceConfig::Builtin => (Err(FetchError::Builtin), None),
            KeySourceConfig::None => (Err(FetchError::NoKeys), None),
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
            serde_json::from_slice(&body).map_err(|_| FetchError::Discovery(redact::url(url)))?;
        if doc.issuer != self.config.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: doc.issuer,
            });
        }
        let jwks: Uri = doc
            .jwks_uri
            .parse()
            .map_err(|_| FetchError::Discovery(redact::url(url)))?;
        // The discovered URL obeys the rule the configured ones do: a document
        // fetched over https must not send the key fetch over plain http.
        match jwks.scheme_str() {
            Some("http") | Some("https")
                if crate::config::transport_ok(&jwks, self.config.allow_plain_http) =>
            {
                Ok(jwks)
            }
            _ => Err(FetchError::Discovery(redact::url(url))),
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
            .map_err(|_| FetchError::Discovery(redact::url(uri)))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Request(redact::url(uri), Arc::new(e)))?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status(redact::url(uri), resp.status()));
            }
            let max_age = refresh_interval(resp.headers());
            let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(redact::url(uri))
                    } else {
                        FetchError::Body(redact::url(uri))
                    }
                })?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fut)
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout(redact::url(uri))))
    }
}

/// One issuer's keys and the machinery that keeps them fresh.
pub struct IssuerKeys {
    pub config: Arc<IssuerConfig>,
    label: IssuerLabel,
    current: ArcSwapOption<KeySet>,
    generation: AtomicU64,
    /// Held only for bookkeeping, never across an `await`.
    state: Mutex<FetchState>,
    fetcher: Fetcher,
    /// The runtime fetches run on: the one the issuer was created on, so that the
    /// HTTP client's connections live there and not on a request worker's runtime.
    control: Option<tokio::runtime::Handle>,
    /// Milliseconds since `epoch` at which the last unknown-kid refetch ended
    /// (`u64::MAX`: never), read without the lock so that a flood of unknown kids
    /// costs no contention.
    unknown_kid_ended_ms: AtomicU64,
    epoch: Instant,
    metrics: Metrics,
    /// Set when a reload drops this issuer: its refresher stops.
    retired: watch::Sender<bool>,
    /// RFC 7662 introspection for its opaque tokens, when configured.
    introspector: Option<super::introspect::Introspector>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.config.id)
            .finish()
    }
}

/// Ends a fetch's bookkeeping even when its task is cancelled (shutdown): the
/// next caller starts afresh instead of waiting for a fetch that will never end.
struct InFlight {
    keys: Arc<IssuerKeys>,
    trigger: Trigger,
    done: watch::Sender<Option<Outcome>>,
    outcome: Option<Outcome>,
}

impl InFlight {
    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or(Err(FetchError::Cancelled));
        let mut st = self.keys.lock_state();
        st.in_flight = None;
        match self.trigger {
            Trigger::MissingKeys => st.missing_keys_ended = Some(std::time::Instant::now()),
            Trigger::UnknownKid => self
                .keys
                .unknown_kid_ended_ms
                .store(self.keys.now_ms(), Ordering::Release),
            Trigger::Scheduled => {}
        }
        drop(st);
        let _ = self.done.send(Some(outcome));
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
                in_flight: None,
                missing_keys_ended: None,
                last_success: None,
                discovered: None,
            }),
            unknown_kid_ended_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            fetcher: Fetcher {
                config: config.clone(),
                client,
            },
            control: tokio::runtime::Handle::try_current().ok(),
            metrics,
            retired: watch::channel(false).0,
            introspector: None,
        }
    }

    /// The same, with an introspection client for the issuer's opaque tokens.
    pub fn with_introspector(
        mut self,
        introspector: super::introspect::Introspector,
    ) -> IssuerKeys {
        self.introspector = Some(introspector);
        self
    }

    /// The issuer's introspection client, when it declares `introspection:`.
    pub fn introspector(&self) -> Option<&super::introspect::Introspector> {
        self.introspector.as_ref()
    }

    /// A reload dropped this issuer (or changed it into a new one): its
    /// background refresher stops. Requests that still hold it finish with it.
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // The state is plain bookkeeping: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn unknown_kid_recently(&self) -> bool {
        let last = self.unknown_kid_ended_ms.load(Ordering::Acquire);
        last != u64::MAX
            && self.now_ms().saturating_sub(last) < UNKNOWN_KID_INTERVAL.as_millis() as u64
    }

    /// The keys in force, if any were ever fetched (and are not too stale).
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// The generation of the keys in force: it changes whenever they change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a key set is loaded (for the built-in issuer: installed; an
    /// issuer without keys, whose tokens are opaque, is always ready).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some() || !self.has_keys()
    }

    /// Whether the keys come from the built-in issuer in process.
    pub fn is_builtin(&self) -> bool {
        self.config.keys == KeySourceConfig::Builtin
    }

    /// Whether the issuer has signing keys at all (not only introspection).
    pub fn has_keys(&self) -> bool {
        self.config.keys != KeySourceConfig::None
    }

    /// Whether the keys are fetched (not pushed by the built-in issuer, and not
    /// absent).
    fn fetched(&self) -> bool {
        !self.is_builtin() && self.has_keys()
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
    /// flight, at most once per [`UNKNOWN_KID_INTERVAL`] counted from the end of
    /// the last such refetch), waiting at most [`WAIT_FOR_FETCH`].
    pub async fn refetch_unknown_kid(self: &Arc<Self>, seen: u64) -> Refetch {
        let changed = |k: &Self| {
            if k.generation() != seen {
                Refetch::Changed
            } else {
                Refetch::Unchanged
            }
        };
        // The built-in issuer installs every key it publishes before signing with it.
        if self.generation() != seen || !self.fetched() {
            return changed(self);
        }
        let joined = {
            let mut st = self.lock_state();
            match &st.in_flight {
                Some(rx) => rx.clone(),
                None if self.unknown_kid_recently() => return Refetch::Unchanged,
                None => self.start_locked(&mut st, Trigger::UnknownKid),
            }
        };
        match wait_bounded(joined).await {
            Some(_) => changed(self),
            None if self.generation() != seen => Refetch::Changed,
            None => Refetch::StillRunning,
        }
    }

    /// No keys yet: fetch now (single flight; at most once per second counted
    /// from the end of the last such fetch), waiting at most [`WAIT_FOR_FETCH`].
    /// True when keys are loaded.
    pub async fn fetch_if_missing(self: &Arc<Self>) -> bool {
        if self.current.load().is_some() || !self.fetched() {
            return self.current.load().is_some();
        }
        let joined = {
            let mut st = self.lock_state();
            if self.current.load().is_some() {
                return true;
            }
            match &st.in_flight {
                Some(rx) => rx.clone(),
                None if st
                    .missing_keys_ended
                    .is_some_and(|t| t.elapsed() < MISSING_KEYS_INTERVAL) =>
                {
                    return false;
                }
                None => self.start_locked(&mut st, Trigger::MissingKeys),
            }
        };
        wait_bounded(joined).await;
        self.is_ready()
    }

    /// Fetches and installs the key set now (or waits for the fetch in flight,
    /// however long it takes); returns the refresh interval it asked for. The
    /// built-in issuer is never fetched ([`FetchError::Builtin`]).
    pub async fn refresh(self: &Arc<Self>) -> Result<Duration, FetchError> {
        match self.config.keys {
            KeySourceConfig::Builtin => return Err(FetchError::Builtin),
            KeySourceConfig::None => return Err(FetchError::NoKeys),
            KeySourceConfig::JwksUri(_)
            | KeySourceConfig::Discovery(_)
            | KeySourceConfig::File(_) => {}
        }
        let mut rx = {
            let mut st = self.lock_state();
            match &st.in_flight {
                Some(rx) => rx.clone(),
                None => self.start_locked(&mut st, Trigger::Scheduled),
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(FetchError::Cancelled)),
            Err(_) => Err(FetchError::Cancelled),
        }
    }

    /// Starts a fetch as a task of its own (so that a request that gives up
    /// waiting does not cancel it) and records it as the one in flight.
    fn start_locked(
        self: &Arc<Self>,
        st: &mut FetchState,
        trigger: Trigger,
    ) -> watch::Receiver<Option<Outcome>> {
        let (done, rx) = watch::channel(None);
        st.in_flight = Some(rx.clone());
        let discovered = st.discovered.clone();
        let mut guard = InFlight {
            keys: self.clone(),
            trigger,
            done,
            outcome: None,
        };
        let task = async move {
            let outcome = guard.keys.fetch(discovered).await;
            guard.finish(outcome);
        };
        match &self.control {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        rx
    }

    async fn fetch(&self, discovered: Option<Uri>) -> Outcome {
        self.metrics.jwks_fetches.get_or_create(&self.label).inc();
        let (result, discovered) = self.fetcher.fetch(discovered).await;
        let mut st = self.lock_state();
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
                Err(e) => Err(self.failed(&st, FetchError::Parse(Arc::new(e)))),
            },
            Err(e) => Err(self.failed(&st, e)),
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
        if !self.fetched() {
            return;
        }
        let mut retired = self.retired.subscribe();
        let mut delay = Duration::ZERO;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
                _ = retired.wait_for(|r| *r) => return,
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

/// Waits for a fetch to end, at most [`WAIT_FOR_FETCH`]; `None` when it is still
/// running then. A fetch whose task vanished counts as ended.
async fn wait_bounded(mut rx: watch::Receiver<Option<Outcome>>) -> Option<()> {
    match tokio::time::timeout(WAIT_FOR_FETCH, rx.wait_for(Option::is_some)).await {
        Ok(_) => Some(()),
        Err(_) => None,
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
