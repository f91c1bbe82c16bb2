//! Webhooks managed through the CLI and the admin API (those of the
//! configuration's `issuer.webhooks` live in memory only and are not listed
//! here): creation with a given or generated Standard Webhooks secret,
//! listing and deletion. The secret is returned by creation only; audit
//! entries never carry it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Uri;
use serde_json::json;

use super::{Actor, ManageError, audit, invalid};
use crate::config::value::{HttpUrl, ParseValue, WebhookEvent, WebhookSecret};
use crate::config::{WebhookAddressPolicy, WebhookConfig};
use crate::issuer::signing::MasterKey;
use crate::issuer::signing::seal::seal_secret;
use crate::issuer::store::{Store, Webhook, new_id, redacted};

/// Bytes of randomness in a generated webhook secret (256 bits).
const SECRET_BYTES: usize = 32;

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

/// Every stored webhook, by id (with their secrets as stored, sealed or not:
/// callers never print those).
pub async fn list_webhooks(store: &dyn Store) -> Result<Vec<Webhook>, ManageError> {
    Ok(store.list_webhooks().await?)
}

/// Deletes a stored webhook: no event is delivered to it any more.
pub async fn delete_webhook(
    store: &dyn Store,
    actor: Actor<'_>,
    id: &str,
) -> Result<(), ManageError> {
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
