//! Webhooks managed through the CLI and the admin API: creation with a given
//! or generated Standard Webhooks secret, listing, deletion, and secret
//! rotation with an overlap. Listings show the configuration's
//! `issuer.webhooks` too (read-only, under an id derived from their URL), each
//! webhook with its delivery status. A secret is returned by the creation or
//! rotation that made it only; audit entries never carry it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Uri;
use serde_json::json;

use super::{Actor, ManageError, audit, invalid};
use crate::config::value::{HttpUrl, ParseValue, WebhookEvent, WebhookSecret};
use crate::config::{WebhookAddressPolicy, WebhookConfig};
use crate::issuer::signing::MasterKey;
use crate::issuer::signing::seal::seal_secret;
use crate::issuer::store::{Page, Store, Webhook, WebhookStatus, new_id, redacted};

/// Bytes of randomness in a generated webhook secret (256 bits).
const SECRET_BYTES: usize = 32;

/// How long a rotated-out secret still signs deliveries when the rotation
/// names no overlap.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 3600;

/// The longest overlap a rotation may ask for.
pub const MAX_OVERLAP_SECS: i64 = 30 * 24 * 3600;

/// The prefix of the ids derived for configured webhooks.
const CONFIGURED_PREFIX: &str = "cfg_";

/// A webhook as administration shows it: stored (created through the CLI or
/// the admin API) or configured (`issuer.webhooks`), with its delivery
/// status. Never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEntry {
    /// `whk_…` for a stored webhook, `cfg_…` (from its URL) for a configured
    /// one.
    pub id: String,
    /// Where events go; a configured webhook's without its query, which the
    /// configuration may fill with a credential.
    pub url: String,
    /// The events delivered; `None` for every event.
    pub events: Option<Vec<String>>,
    /// When a stored webhook was created; `None` for a configured one.
    pub created_at: Option<i64>,
    /// Whether it comes from the configuration (and changes there only).
    pub configured: bool,
    /// While a rotation's overlap lasts, when the previous secret stops
    /// signing; a configured webhook's `previous_secret` has no end, `None`.
    pub previous_secret_until: Option<i64>,
    /// How deliveries to it went lately.
    pub status: WebhookStatus,
}

/// The outcome of a secret rotation: the webhook, and its new secret in the
/// clear, the only time it is given out.
#[derive(Clone)]
pub struct RotatedSecret {
    /// The webhook after the rotation.
    pub webhook: WebhookEntry,
    /// The new Standard Webhooks secret (`whsec_…`).
    pub secret: String,
}

impl std::fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("webhook", &self.webhook)
            .field("secret", &redacted(&Some(&self.secret)))
            .finish()
    }
}

/// A webhook to create. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct NewWebhook {
    /// Where events are POSTed: an absolute http or https URL.
    pub url: String,
    /// The event names to deliver (each a known event, no duplicates);
    /// `None` for every event.
    pub events: Option<Vec<String>>,
    /// A Standard Webhooks secret (`whsec_` and base64 of 24 to 64 bytes);
    /// `None` to generate one.
    pub secret: Option<String>,
}

impl std::fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &redacted(&self.secret))
            .finish()
    }
}

/// A fresh Standard Webhooks secret: `whsec_` and base64 of 32 random bytes.
pub fn generate_webhook_secret() -> Result<String, ManageError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ManageError::Crypto)?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// Creates a webhook with a fresh `whk_…` id and returns it with its secret
/// in the clear, the only time the secret is given out; the store gets it
/// sealed under `master` (when set). A URL that a stored webhook or the
/// configuration (`configured`) already delivers to is refused, so that no
/// event is delivered twice to one endpoint. The check reads before the
/// transaction, so two creations racing for one URL may both succeed. A URL
/// whose host is obviously refused by `policy` (a literal private address,
/// `localhost`) is refused here, as a helpful early error; every delivery
/// checks the resolved addresses again.
pub async fn create_webhook(
    store: &dyn Store,
    actor: Actor<'_>,
    configured: &[WebhookConfig],
    new: NewWebhook,
    master: Option<&MasterKey>,
    policy: &WebhookAddressPolicy,
) -> Result<Webhook, ManageError> {
    let uri = check_url(&new.url)?;
    if let Some(what) = uri.host().and_then(|h| policy.refuses_host(h)) {
        return Err(invalid(
            "url",
            format!(
                "the host is a {what} address, which issuer.webhook_address_policy refuses \
                 (allow_private: true for development, or allow the range)"
            ),
        ));
    }
    let events = match new.events {
        Some(events) => Some(check_events(events)?),
        None => None,
    };
    let secret = match new.secret {
        Some(secret) => {
            // The parser's messages never echo the secret.
            WebhookSecret::parse_value(&secret).map_err(|e| invalid("secret", e))?;
            secret
        }
        None => generate_webhook_secret()?,
    };
    let stored = store.list_webhooks().await?;
    let taken = configured.iter().any(|w| w.url == uri)
        || stored
            .iter()
            .any(|w| w.url.parse::<Uri>().is_ok_and(|u| u == uri));
    if taken {
        return Err(ManageError::Exists("a webhook with this url"));
    }
    let webhook = Webhook {
        id: new_id("whk"),
        url: new.url,
        secret,
        events,
        created_at: actor.now,
        previous_secret: None,
        previous_secret_until: None,
    };
    let detail = json!({ "url": webhook.url, "events": webhook.events });
    let context = webhook_secret_context(&webhook.id);
    let what = format!("the secret of webhook {}", webhook.id);
    let sealed = Webhook {
        secret: seal_secret(master, &context, &webhook.secret, &what)
            .map_err(|_| ManageError::Crypto)?,
        ..webhook.clone()
    };
    let mut tx = store.begin().await?;
    tx.upsert_webhook(&sealed).await?;
    tx.insert_audit(&audit(actor, "webhook.created", &webhook.id, detail))
        .await?;
    tx.commit().await?;
    Ok(webhook)
}

/// What a webhook's sealed secret is bound to: its record.
pub fn webhook_secret_context(id: &str) -> String {
    format!("webhook:{id}")
}

/// The id under which a configured webhook is listed, recorded as reached in
/// the outbox, and redelivered to: `cfg_` and 32 hex digits of the SHA-256
/// of its URL, so it stays the same across restarts and secret rotations.
pub fn configured_webhook_id(url: &Uri) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, url.to_string().as_bytes());
    let mut id = String::with_capacity(CONFIGURED_PREFIX.len() + 32);
    id.push_str(CONFIGURED_PREFIX);
    for b in &digest.as_ref()[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Every webhook, configured and stored, by id, with its delivery status
/// (and, while a rotation's overlap lasts at `now`, when it ends).
pub async fn list_webhooks(
    store: &dyn Store,
    configured: &[WebhookConfig],
    now: i64,
) -> Result<Vec<WebhookEntry>, ManageError> {
    list_webhooks_page(store, configured, Page::ALL, now).await
}

/// One page of the webhooks, configured and stored, by id (the configured
/// ones' `cfg_` ids come before the stored ones' `whk_`), with their
/// delivery status.
pub async fn list_webhooks_page(
    store: &dyn Store,
    configured: &[WebhookConfig],
    page: Page<'_>,
    now: i64,
) -> Result<Vec<WebhookEntry>, ManageError> {
    let statuses = store.list_webhook_status().await?;
    let mut entries: Vec<WebhookEntry> = configured
        .iter()
        .map(|w| configured_entry(w, &statuses))
        .filter(|e| page.after.is_none_or(|after| e.id.as_str() > after))
        .collect();
    let stored = store.list_webhooks_page(page).await?;
    entries.extend(stored.iter().map(|w| stored_entry(w, &statuses, now)));
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    entries.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    Ok(entries)
}

/// The webhook with this id, configured or stored.
pub async fn get_webhook(
    store: &dyn Store,
    configured: &[WebhookConfig],
    id: &str,
    now: i64,
) -> Result<WebhookEntry, ManageError> {
    let statuses = store.list_webhook_status().await?;
    if let Some(w) = configured
        .iter()
        .find(|w| configured_webhook_id(&w.url) == id)
    {
        return Ok(configured_entry(w, &statuses));
    }
    match store.get_webhook(id).await? {
        Some(w) => Ok(stored_entry(&w, &statuses, now)),
        None => Err(ManageError::UnknownWebhook(id.to_owned())),
    }
}

/// Gives stored webhook `id` a fresh secret and returns it in the clear, the
/// only time it is given out. Deliveries go on being signed with the secret
/// it replaces too, a second `v1,` signature, for `overlap_secs` (0: not at
/// all; at most [`MAX_OVERLAP_SECS`]), so that receivers can switch to the
/// new secret meanwhile. One previous secret is kept: rotating again during
/// an overlap ends it. A configured webhook rotates in the configuration
/// (`previous_secret`), and is refused here.
pub async fn rotate_webhook_secret(
    store: &dyn Store,
    actor: Actor<'_>,
    configured: &[WebhookConfig],
    id: &str,
    overlap_secs: i64,
    master: Option<&MasterKey>,
) -> Result<RotatedSecret, ManageError> {
    if !(0..=MAX_OVERLAP_SECS).contains(&overlap_secs) {
        return Err(invalid("overlap", "must be from 0s to 30d"));
    }
    if configured
        .iter()
        .any(|w| configured_webhook_id(&w.url) == id)
    {
        return Err(ManageError::ConfiguredWebhook(id.to_owned()));
    }
    let current = store
        .get_webhook(id)
        .await?
        .ok_or_else(|| ManageError::UnknownWebhook(id.to_owned()))?;
    let secret = generate_webhook_secret()?;
    let context = webhook_secret_context(id);
    let what = format!("the secret of webhook {id}");
    let sealed = seal_secret(master, &context, &secret, &what).map_err(|_| ManageError::Crypto)?;
    let until = (overlap_secs > 0).then(|| actor.now.saturating_add(overlap_secs));
    let mut tx = store.begin().await?;
    if !tx
        .rotate_webhook_secret(id, &current.secret, &sealed, until)
        .await?
    {
        // Deleted, or rotated by another caller, since it was read.
        return Err(ManageError::Exists("a newer secret for this webhook"));
    }
    let detail = json!({ "previous_secret_until": until });
    tx.insert_audit(&audit(actor, "webhook.secret_rotated", id, detail))
        .await?;
    tx.commit().await?;
    let rotated = Webhook {
        secret: sealed,
        previous_secret: until.map(|_| current.secret.clone()),
        previous_secret_until: until,
        ..current
    };
    let statuses = store.list_webhook_status().await?;
    Ok(RotatedSecret {
        webhook: stored_entry(&rotated, &statuses, actor.now),
        secret,
    })
}

fn status_of(id: &str, statuses: &[WebhookStatus]) -> WebhookStatus {
    statuses
        .iter()
        .find(|s| s.receiver == id)
        .cloned()
        .unwrap_or_else(|| WebhookStatus {
            receiver: id.to_owned(),
            ..WebhookStatus::default()
        })
}

fn configured_entry(w: &WebhookConfig, statuses: &[WebhookStatus]) -> WebhookEntry {
    let id = configured_webhook_id(&w.url);
    WebhookEntry {
        url: crate::issuer::events::shown(&w.url),
        events: w
            .events
            .as_ref()
            .map(|es| es.iter().map(|e| e.as_str().to_owned()).collect()),
        created_at: None,
        configured: true,
        previous_secret_until: None,
        status: status_of(&id, statuses),
        id,
    }
}

/// The entry of a stored webhook; the previous secret's end is shown while
/// it is later than `now`.
pub(super) fn stored_entry(w: &Webhook, statuses: &[WebhookStatus], now: i64) -> WebhookEntry {
    WebhookEntry {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        created_at: Some(w.created_at),
        configured: false,
        previous_secret_until: w
            .previous_secret
            .as_ref()
            .and(w.previous_secret_until)
            .filter(|until| *until > now),
        status: status_of(&w.id, statuses),
    }
}

/// Whether the webhook with these `events` takes events named `event`.
pub(super) fn takes(events: Option<&[String]>, event: &str) -> bool {
    events.is_none_or(|es| es.iter().any(|e| e == event))
}

/// Deletes a stored webhook: no event is delivered to it any more. A
/// configured one (of `configured`) is refused: it goes from the
/// configuration.
pub async fn delete_webhook(
    store: &dyn Store,
    actor: Actor<'_>,
    configured: &[WebhookConfig],
    id: &str,
) -> Result<(), ManageError> {
    if configured
        .iter()
        .any(|w| configured_webhook_id(&w.url) == id)
    {
        return Err(ManageError::ConfiguredWebhook(id.to_owned()));
    }
    let mut tx = store.begin().await?;
    if !tx.delete_webhook(id).await? {
        return Err(ManageError::UnknownWebhook(id.to_owned()));
    }
    tx.insert_audit(&audit(actor, "webhook.deleted", id, json!({})))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// An absolute http(s) URL with a host and no fragment.
fn check_url(url: &str) -> Result<Uri, ManageError> {
    if url.contains('#') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "url",
            "must not carry a fragment, spaces or control characters",
        ));
    }
    let HttpUrl(uri) = HttpUrl::parse_value(url).map_err(|e| invalid("url", e))?;
    Ok(uri)
}

/// Known event names, at least one, none twice.
fn check_events(events: Vec<String>) -> Result<Vec<String>, ManageError> {
    if events.is_empty() {
        return Err(invalid(
            "events",
            "list at least one event, or leave the list out for every event",
        ));
    }
    for (i, e) in events.iter().enumerate() {
        WebhookEvent::parse_value(e).map_err(|reason| invalid("events", reason))?;
        if events[..i].contains(e) {
            return Err(invalid("events", format!("`{e}` is listed twice")));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_as_standard_webhooks_secrets() {
        let s = generate_webhook_secret().unwrap();
        assert!(s.starts_with("whsec_"), "{s}");
        let parsed = WebhookSecret::parse_value(&s).unwrap();
        assert_eq!(parsed.key().len(), SECRET_BYTES);
        assert_ne!(s, generate_webhook_secret().unwrap());
    }

    #[test]
    fn configured_webhooks_have_ids_of_their_urls() {
        let a: Uri = "https://hooks.example.test/in?token=x".parse().unwrap();
        let b: Uri = "https://hooks.example.test/in".parse().unwrap();
        let id = configured_webhook_id(&a);
        assert_eq!(id, configured_webhook_id(&a.to_string().parse().unwrap()));
        assert_ne!(id, configured_webhook_id(&b));
        assert!(id.starts_with("cfg_") && id.len() == 36, "{id}");
        assert!(
            id[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!id.contains("token"));
    }

    #[test]
    fn urls_and_events_are_checked() {
        assert!(check_url("https://hooks.example.test/in").is_ok());
        for bad in [
            "ftp://x.test/",
            "/relative",
            "https://",
            "https://x.test/#f",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_events(vec!["user.created".into(), "key.rotated".into()]).is_ok());
        assert!(check_events(vec![]).is_err());
        assert!(check_events(vec!["user.exploded".into()]).is_err());
        assert!(check_events(vec!["user.created".into(), "user.created".into()]).is_err());
    }
}
