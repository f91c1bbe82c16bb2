//! Webhook delivery from the durable outbox (spec "Events"): a background task
//! claims due events, POSTs each to every webhook that wants it, signed per the
//! Standard Webhooks scheme, and marks it delivered or schedules a retry with
//! exponential backoff. An event whose attempts run out becomes failed (a dead
//! letter) until an operator redelivers it (`manage::redeliver_event`); a
//! redelivery, like a retry, goes only to the webhooks the event has not
//! reached. Only to addresses `issuer.webhook_address_policy` allows, checked
//! after resolution (`guard`); a refused delivery is logged, counted
//! (`outcome="refused"`) and retried or abandoned like any failure. Each POST's
//! outcome is recorded as its webhook's delivery status. During a secret's
//! rotation overlap a delivery carries one signature per secret, the new one
//! first. Enqueuing lives with the changes (`manage`, `revoke` …).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use super::manage::{configured_webhook_id, webhook_secret_context};
use super::signing::MasterKey;
use super::signing::seal::{SecretError, open_secret};
use super::store::{OutboxEvent, Store};
use crate::clock::Clock;
use crate::config::{WebhookAddressPolicy, WebhookConfig};
use crate::telemetry::events::chain;
use crate::telemetry::{Metrics, Outcome};
use guard::GuardedResolver;

/// How often the outbox is polled.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Time allowed for one POST, response body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a receiver's answer read (and dropped) to reuse its connection.
const MAX_DRAIN: usize = 64 * 1024;
/// Events claimed per poll (another poll follows at once while batches are
/// full).
const BATCH: i64 = 5;
/// Added to the longest a batch can take, for the outbox updates after it.
const CLAIM_MARGIN_SECS: i64 = 10;
/// The first retry's delay; it doubles per failed attempt up to [`MAX_DELAY_SECS`].
const BASE_DELAY_SECS: i64 = 5;
const MAX_DELAY_SECS: i64 = 3600;
/// After this many failed attempts the event is failed (a dead letter: never
/// due again until redelivered) and logged at `error`, so that one dead
/// endpoint cannot hold the outbox forever. With the backoff, the last
/// attempt comes about 1.4 hours after the first.
pub const MAX_ATTEMPTS: i64 = 10;
/// The longest error text recorded for a delivery.
const MAX_ERROR_LEN: usize = 300;

pub(super) mod guard;

pub use guard::Refused;

/// The HTTP client of webhooks and blocking hooks: every connection goes
/// through the address policy ([`GuardedResolver`]).
pub(super) type WebhookClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Delivers outbox events to the configured and stored webhooks.
pub struct Deliverer {
    store: Arc<dyn Store>,
    configured: Vec<Target>,
    clock: Arc<dyn Clock>,
    client: WebhookClient,
    metrics: Metrics,
    /// Opens the stored webhooks' sealed secrets.
    master: Option<Arc<MasterKey>>,
    /// Which addresses deliveries may reach.
    policy: Arc<WebhookAddressPolicy>,
}

/// One endpoint, from the configuration or the store.
struct Target {
    /// The receiver's id: a stored webhook's, or the one derived from a
    /// configured webhook's URL. What the outbox records of the webhooks an
    /// event reached, and what its delivery status is kept under.
    id: String,
    url: Uri,
    /// The signing keys: the secret's, then during a rotation's overlap the
    /// previous secret's.
    keys: Vec<Vec<u8>>,
    /// What outbox rows from before receiver ids recorded of this webhook
    /// (see [`legacy_key`]), one per key.
    legacy: Vec<String>,
    /// `None`: every event.
    events: Option<Vec<String>>,
}

/// Why one POST failed. Never carries the secret.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("response body failed")]
    Body(#[source] hyper::Error),
    #[error("timed out")]
    Timeout,
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("cannot build the request")]
    Build(#[source] http::Error),
    #[error("refused")]
    Refused(#[source] Refused),
}

// === impl Deliverer ===

impl Deliverer {
    /// A deliverer for `webhooks` (the configuration's) plus whatever the store
    /// lists at each poll. Fails only if TLS cannot be set up.
    pub fn new(
        store: Arc<dyn Store>,
        webhooks: &[WebhookConfig],
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        master: Option<Arc<MasterKey>>,
        policy: WebhookAddressPolicy,
    ) -> Result<Self, rustls::Error> {
        let policy = Arc::new(policy);
        let configured = webhooks
            .iter()
            .map(|w| {
                Target::new(
                    configured_webhook_id(&w.url),
                    w.url.clone(),
                    std::iter::once(&w.secret)
                        .chain(&w.previous_secret)
                        .map(|s| s.key().to_vec())
                        .collect(),
                    w.events
                        .as_ref()
                        .map(|es| es.iter().map(|e| e.as_str().to_owned()).collect()),
                )
            })
            .collect();
        Ok(Self {
            store,
            configured,
            clock,
            client: client(policy.clone())?,
            metrics,
            master,
            policy,
        })
    }

    /// Polls the outbox every second until `shutdown`; at once again while
    /// polls find full batches.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            while self.poll_once().await >= BATCH as usize {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }

    /// Claims the due events and delivers each once; how many it claimed.
    ///
    /// The claim lasts as long as delivering the batch can take (every POST
    /// of every event timing out, one after the other), so that no other
    /// replica claims an event still in delivery, and an event claimed by a
    /// process that died is due again soon after.
    pub async fn poll_once(&self) -> usize {
        let targets = self.targets().await;
        let posts = BATCH * (self.configured.len() + targets.len()).max(1) as i64;
        let claim = posts * REQUEST_TIMEOUT.as_secs() as i64 + CLAIM_MARGIN_SECS;
        let now = self.clock.now_unix();
        let due = match self.store.due_events(now, now + claim, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "Webhook outbox poll failed");
                return 0;
            }
        };
        // Read again once events are claimed: an event is signed with the
        // secrets in force when it was claimed, so one raised just after a
        // secret rotation (committed before it) carries the new secret too.
        let targets = if due.is_empty() {
            targets
        } else {
            self.targets().await
        };
        for event in &due {
            self.deliver(event, &targets).await;
        }
        due.len()
    }

    async fn targets(&self) -> Vec<Target> {
        let mut stored = match self.store.list_webhooks().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "Webhook list failed");
                Vec::new()
            }
        };
        let now = self.clock.now_unix();
        let mut targets: Vec<Target> = Vec::new();
        for w in stored.drain(..) {
            let url = w.url.parse::<Uri>();
            let mut secrets = vec![&w.secret];
            if w.previous_secret_until.is_some_and(|until| until > now) {
                secrets.extend(&w.previous_secret);
            }
            let keys: Option<Vec<Vec<u8>>> = match secrets
                .into_iter()
                .map(|s| self.open_key(&w.id, s))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(keys) => keys.into_iter().collect(),
                Err(e) => {
                    tracing::error!(webhook = %w.id, error = %chain(&e), "Stored webhook secret cannot be opened; webhook skipped");
                    continue;
                }
            };
            match (url, keys) {
                (Ok(url), Some(keys)) => targets.push(Target::new(w.id, url, keys, w.events)),
                _ => tracing::warn!(webhook = %w.id, "Stored webhook unusable, skipped"),
            }
        }
        targets
    }

    /// The HMAC key of a stored secret (sealed or not) of webhook `id`;
    /// `None` when it is not a `whsec_` secret.
    fn open_key(&self, id: &str, stored: &str) -> Result<Option<Vec<u8>>, SecretError> {
        let context = webhook_secret_context(id);
        let what = format!("the secret of webhook {id}");
        let secret = open_secret(self.master.as_deref(), &context, stored, &what)?;
        Ok(secret
            .strip_prefix("whsec_")
            .and_then(|k| STANDARD.decode(k).ok()))
    }

    /// One round of deliveries of `event`: to every webhook that wants it
    /// and has not got it (after a redelivery to one webhook, to that one
    /// only). The event is delivered when none is left, failed when its
    /// last attempt failed or when a redelivery to one webhook leaves others
    /// without it, and otherwise due again after the backoff.
    async fn deliver(&self, event: &OutboxEvent, stored: &[Target]) {
        let body = Bytes::from(payload(event));
        let mut errors: Vec<String> = Vec::new();
        let mut left_out = false;
        let mut delivered_to = event.delivered_to.clone();
        for target in self.configured.iter().chain(stored) {
            if !target.wants(&event.event) || target.reached(&delivered_to) {
                continue;
            }
            if event
                .only_to
                .as_ref()
                .is_some_and(|only| *only != target.id)
            {
                left_out = true;
                continue;
            }
            let timestamp = self.clock.now_unix();
            let posted = self.post(target, event, timestamp, body.clone()).await;
            let outcome = match &posted {
                Ok(()) => "delivered",
                Err(DeliveryError::Refused(_)) => "refused",
                Err(_) => "failed",
            };
            self.metrics
                .webhook_deliveries
                .get_or_create(&Outcome { outcome })
                .inc();
            let error = match &posted {
                Ok(()) => None,
                Err(e) => Some(error_text(e, &target.url)),
            };
            match posted {
                Ok(()) => delivered_to.push(target.id.clone()),
                Err(DeliveryError::Refused(Refused(what))) => {
                    tracing::warn!(url = %target.shown(), webhook = %target.id, event_id = %event.id, address = what, "Webhook delivery refused by the address policy");
                }
                Err(e) => {
                    tracing::warn!(url = %target.shown(), webhook = %target.id, event_id = %event.id, error = %chain(&e), "Webhook delivery failed");
                }
            }
            let now = self.clock.now_unix();
            if let Err(e) = self
                .store
                .record_webhook_delivery(&target.id, now, error.as_deref())
                .await
            {
                tracing::warn!(webhook = %target.id, error = %chain(&e), "Webhook status update failed");
            }
            if let Some(error) = error {
                errors.push(format!("{}: {error}", target.id));
            }
        }
        let now = self.clock.now_unix();
        let attempts = event.attempts + 1;
        let result = if errors.is_empty() && !left_out {
            self.store.mark_delivered(&event.id, now).await
        } else if errors.is_empty() {
            // A redelivery to one webhook reached it; the others it was
            // failed for are still waiting.
            self.store
                .mark_failed(&event.id, event.attempts, now, &delivered_to, None)
                .await
        } else if attempts >= MAX_ATTEMPTS {
            tracing::error!(event_id = %event.id, attempts, "Webhook delivery abandoned; the event is failed until redelivered");
            self.metrics.webhook_events_abandoned.inc();
            let error = errors.join("; ");
            self.store
                .mark_failed(&event.id, attempts, now, &delivered_to, Some(&error))
                .await
        } else {
            let next_at = now + backoff(attempts);
            let error = errors.join("; ");
            self.store
                .schedule_retry(&event.id, attempts, next_at, &delivered_to, &error)
                .await
        };
        if let Err(e) = result {
            tracing::warn!(event_id = %event.id, error = %chain(&e), "Webhook outbox update failed");
        }
    }

    async fn post(
        &self,
        target: &Target,
        event: &OutboxEvent,
        timestamp: i64,
        body: Bytes,
    ) -> Result<(), DeliveryError> {
        // A literal address skips resolution, and with it the resolver's
        // check: checked here.
        if let Some(refused) = target
            .url
            .host()
            .and_then(|h| guard::check_literal(&self.policy, h))
        {
            return Err(DeliveryError::Refused(refused));
        }
        let signature = target
            .keys
            .iter()
            .map(|key| sign(key, &event.id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let req = Request::post(target.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", event.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(body))
            .map_err(DeliveryError::Build)?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| match guard::refusal_in(&e) {
                    Some(refused) => DeliveryError::Refused(refused),
                    None => DeliveryError::Request(e),
                })?;
            let status = resp.status();
            // Drain the body so that the connection can be reused, keeping
            // none of it: past `MAX_DRAIN` bytes it is left unread (the
            // connection closes with it), so a receiver cannot make the
            // issuer hold an answer of any size.
            let mut body = resp.into_body();
            let mut seen = 0usize;
            while seen <= MAX_DRAIN {
                match body.frame().await {
                    Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                    Some(Err(e)) => return Err(DeliveryError::Body(e)),
                    None => break,
                }
            }
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status(status))
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout)?
    }
}

// === impl Target ===

impl Target {
    fn new(id: String, url: Uri, keys: Vec<Vec<u8>>, events: Option<Vec<String>>) -> Target {
        let legacy = keys.iter().map(|key| legacy_key(&url, key)).collect();
        Target {
            id,
            url,
            keys,
            legacy,
            events,
        }
    }

    /// Whether the event already reached this webhook: its id is in
    /// `delivered_to`, or a key of the older kind (a hash of its URL and a
    /// secret, which outbox rows from before receiver ids hold).
    fn reached(&self, delivered_to: &[String]) -> bool {
        delivered_to
            .iter()
            .any(|k| *k == self.id || self.legacy.contains(k))
    }

    fn shown(&self) -> String {
        shown(&self.url)
    }

    fn wants(&self, event: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|es| es.iter().any(|e| e == event))
    }
}

/// What the outbox recorded of a webhook an event reached before receivers
/// had ids: the hash of its URL and secret.
fn legacy_key(url: &Uri, key: &[u8]) -> String {
    let mut material = url.to_string().into_bytes();
    material.push(0);
    material.extend_from_slice(key);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Why a POST to `url` failed, as recorded in the outbox and the webhook's
/// status: the error and its causes, without the URL or its query (which
/// may carry a credential), at most [`MAX_ERROR_LEN`] bytes.
fn error_text(err: &(dyn std::error::Error + 'static), url: &Uri) -> String {
    let mut text = chain(err);
    text = text.replace(&url.to_string(), "the webhook URL");
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        text = text.replace(query, "…");
    }
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `url` without its query, for logs (a query may carry a credential).
pub(super) fn shown(url: &Uri) -> String {
    let mut shown = format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map(|a| a.as_str()).unwrap_or(""),
        url.path()
    );
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// The JSON body: `{"id","event","created_at","data"}`; `data` is stored JSON.
fn payload(event: &OutboxEvent) -> String {
    let data: serde_json::Value =
        serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": event.id,
        "event": event.event,
        "created_at": event.created_at,
        "data": data,
    })
    .to_string()
}

/// The `webhook-signature` value: `v1,` and base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Seconds before the next attempt after `attempts` failures.
fn backoff(attempts: i64) -> i64 {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    BASE_DELAY_SECS
        .saturating_mul(1i64 << exp)
        .min(MAX_DELAY_SECS)
}

/// A client that connects only where `policy` allows (HTTP/1.1, https or
/// http, the system's roots, 5 s to connect).
pub(super) fn client(policy: Arc<WebhookAddressPolicy>) -> Result<WebhookClient, rustls::Error> {
    let roots = crate::tls::native_roots();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let tls = builder
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy));
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_errors_name_neither_the_url_nor_its_query() {
        let url: Uri = "http://hooks.test:81/in?token=s3cret".parse().unwrap();
        let err = DeliveryError::Status(http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_text(&err, &url), "answered 503 Service Unavailable");
        // Whatever a cause says, the URL and its query leave.
        #[derive(Debug, thiserror::Error)]
        #[error("failed for http://hooks.test:81/in?token=s3cret (token=s3cret)")]
        struct Loud;
        let text = error_text(&Loud, &url);
        assert_eq!(text, "failed for the webhook URL (…)");
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Long(String);
        let text = error_text(&Long("é".repeat(400)), &url);
        assert!(
            text.len() <= MAX_ERROR_LEN + '…'.len_utf8(),
            "{}",
            text.len()
        );
        assert!(text.ends_with('…'));
    }

    #[test]
    fn a_webhook_is_reached_by_its_id_or_by_the_older_keys() {
        let url: Uri = "https://hooks.test/in".parse().unwrap();
        let keys = vec![b"new-key".to_vec(), b"old-key".to_vec()];
        let target = Target::new("whk_1".into(), url.clone(), keys, None);
        assert!(!target.reached(&[]));
        assert!(target.reached(&["whk_1".into()]));
        assert!(target.reached(&[legacy_key(&url, b"old-key")]));
        assert!(!target.reached(&["whk_2".into(), legacy_key(&url, b"other")]));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), 5);
        assert_eq!(backoff(2), 10);
        assert_eq!(backoff(3), 20);
        assert_eq!(backoff(30), MAX_DELAY_SECS);
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks reference test vectors.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
