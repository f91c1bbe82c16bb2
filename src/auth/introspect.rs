//! RFC 7662 token introspection, for issuers that declare `introspection:`:
//! tokens that are not JWTs (or any token of an issuer without signing keys)
//! are sent to the issuer's introspection endpoint, with the gateway's client
//! credentials (`client_secret_basic`). The answer is cached under the token's
//! SHA-256: an active one no longer than `cache` nor than the token's `exp`, an
//! inactive one 5 s, in a cache of its own (a flood of made-up tokens must not
//! push out the answers for real ones). Concurrent requests with the same token
//! share one call (single flight), and at most `max_concurrent` calls to one
//! endpoint are in flight: a request that cannot get a turn within a second is
//! answered 503 rather than passed on, so made-up tokens cannot be turned into
//! a flood against the issuer. An endpoint that fails or answers nonsense is an
//! outage — the request gets 503 — never an "allow".

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use super::cache::TokenDigest;
use super::jwks::{FetchError, tls_config};
use crate::clock::Clock;
use crate::config::IntrospectionConfig;
use crate::telemetry::{IntrospectionLabel, Metrics, redact};

/// How long an inactive answer is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Distinct tokens whose answers are kept.
pub const MAX_ENTRIES: u64 = 10_000;
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a turn to call the endpoint.
const TURN_WAIT: Duration = Duration::from_secs(1);
const MAX_ANSWER: usize = 64 * 1024;

/// What the endpoint said about a token.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `active: true`, with the answer's members as claims.
    Active(Arc<Map<String, Value>>),
    /// `active: false` (unknown, expired, revoked, or not for this issuer).
    Inactive,
}

/// The endpoint could not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the introspection endpoint {0} gave no usable answer")]
pub struct Unavailable(String);

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One issuer's introspection client and answer cache.
pub struct Introspector {
    config: IntrospectionConfig,
    authorization: HeaderValue,
    client: HttpClient,
    /// Active answers.
    active: moka::future::Cache<TokenDigest, Arc<Map<String, Value>>>,
    /// Tokens the endpoint called inactive (kept [`NEGATIVE_TTL`]).
    inactive: moka::sync::Cache<TokenDigest, ()>,
    /// Turns to call the endpoint (`max_concurrent`).
    turns: tokio::sync::Semaphore,
    /// The runtime calls run on (the one this was made on), so that the
    /// client's connections live there and not on a request worker.
    control: Option<tokio::runtime::Handle>,
    label: IntrospectionLabel,
    metrics: Metrics,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("url", &redact::url(&self.config.url))
            .finish_non_exhaustive()
    }
}

struct Expiry {
    clock: Arc<dyn Clock>,
    positive: Duration,
}

impl moka::Expiry<TokenDigest, Arc<Map<String, Value>>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        claims: &Arc<Map<String, Value>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map(|exp| exp.saturating_sub(self.clock.now_unix()).max(0) as u64)
            .map(Duration::from_secs)
            .unwrap_or(Duration::ZERO);
        Some(left.min(self.positive))
    }
}

/// Why no active answer was cached.
#[derive(Debug)]
enum Miss {
    Inactive,
    Unavailable(Unavailable),
}

impl Introspector {
    /// An introspector for `issuer` (its id labels the metrics); `ca_file`
    /// adds roots for an `https://` endpoint.
    pub fn new(
        issuer: &str,
        config: &IntrospectionConfig,
        ca_file: Option<&std::path::Path>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Introspector, FetchError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(Duration::from_secs(5)));
                http
            });
        // RFC 6749 §2.3.1: both parts form-encoded before the Basic encoding.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = format!(
            "{}:{}",
            enc(&config.client_id),
            enc(config.client_secret.expose())
        );
        let mut authorization = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
        .map_err(|_| FetchError::Discovery(redact::url(&config.url)))?;
        authorization.set_sensitive(true);
        let label = IntrospectionLabel {
            issuer: Arc::from(issuer),
            outcome: "active",
        };
        for outcome in ["active", "inactive", "error"] {
            let _ = metrics.introspections.get_or_create(&IntrospectionLabel {
                outcome,
                ..label.clone()
            });
        }
        Ok(Introspector {
            authorization,
            client: Client::builder(TokioExecutor::new()).build(https),
            active: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(Expiry {
                    clock,
                    positive: config.cache,
                })
                .build(),
            inactive: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            turns: tokio::sync::Semaphore::new(config.max_concurrent),
            control: tokio::runtime::Handle::try_current().ok(),
            config: config.clone(),
            label,
            metrics,
        })
    }

    /// Whether this was built from exactly `config` (a reload keeps it, and
    /// its cache).
    pub fn same_config(&self, config: &IntrospectionConfig) -> bool {
        self.config == *config
    }

    /// The endpoint's answer for `token`, from the cache or from one call that
    /// every concurrent request with the same token shares.
    pub async fn introspect(
        &self,
        token: &str,
        digest: TokenDigest,
    ) -> Result<Answer, Unavailable> {
        if self.inactive.contains_key(&digest) {
            return Ok(Answer::Inactive);
        }
        let call = async {
            match self.call(token).await {
                Ok(Answer::Active(claims)) => Ok(claims),
                Ok(Answer::Inactive) => Err(Miss::Inactive),
                Err(e) => Err(Miss::Unavailable(e)),
            }
        };
        match self.active.try_get_with(digest, call).await {
            Ok(claims) => Ok(Answer::Active(claims)),
            Err(miss) => match &*miss {
                Miss::Inactive => {
                    self.inactive.insert(digest, ());
                    Ok(Answer::Inactive)
                }
                Miss::Unavailable(e) => Err(e.clone()),
            },
        }
    }

    async fn call(&self, token: &str) -> Result<Answer, Unavailable> {
        let shown = redact::url(&self.config.url);
        // A turn, or 503: never an unbounded queue of calls.
        let Ok(Ok(_turn)) = tokio::time::timeout(TURN_WAIT, self.turns.acquire()).await else {
            self.metrics
                .limit_hits
                .get_or_create(&crate::telemetry::LimitLabel::INTROSPECTION_MAX_CONCURRENT)
                .inc();
            return Err(Unavailable(shown));
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let req = Request::post(self.config.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .header(AUTHORIZATION, self.authorization.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Unavailable(shown.clone()))?;
        let client = self.client.clone();
        let work = async move {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            if resp.status() != StatusCode::OK {
                return Err(format!("answered {}", resp.status()));
            }
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|_| "the answer could not be read".to_owned())?
                .to_bytes();
            serde_json::from_slice::<Map<String, Value>>(&bytes)
                .map_err(|_| "the answer is not a JSON object".to_owned())
        };
        let work = tokio::time::timeout(TIMEOUT, work);
        let result = match &self.control {
            Some(h) => h.spawn(work).await.ok(),
            None => Some(work.await),
        };
        let answer = match result {
            Some(Ok(Ok(map))) => match map.get("active") {
                Some(Value::Bool(true)) => Ok(Answer::Active(Arc::new(map))),
                Some(Value::Bool(false)) => Ok(Answer::Inactive),
                _ => Err("the answer has no boolean `active`".to_owned()),
            },
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err("no answer within 5 s".to_owned()),
            None => Err("the call was cancelled".to_owned()),
        };
        let outcome = match &answer {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Inactive) => "inactive",
            Err(_) => "error",
        };
        self.metrics
            .introspections
            .get_or_create(&IntrospectionLabel {
                outcome,
                ..self.label.clone()
            })
            .inc();
        answer.map_err(|error| {
            tracing::warn!(issuer = %self.label.issuer, endpoint = %shown, %error, "Introspection failed");
            Unavailable(shown)
        })
    }
}
