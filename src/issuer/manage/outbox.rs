//! The outbox as operators see it: events listed newest first (all, or the
//! pending, delivered or failed ones), and failed events — dead letters,
//! whose attempts ran out — redelivered to the webhooks they did not reach,
//! or to one of them. A redelivery never reaches a webhook twice: the outbox
//! remembers which webhooks each event reached, and every round skips them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::webhooks::{configured_webhook_id, takes};
use super::{Actor, ManageError, audit};
use crate::config::WebhookConfig;
use crate::issuer::store::{EventPosition, EventStatus, Store, StoredEvent};

/// The cursor of the page of events after the one at `position`: the same
/// opaque text the admin API sends in `Next-Cursor` for `GET /events`, so
/// that the CLI's cursors and the API's are interchangeable.
pub fn event_cursor(position: &EventPosition) -> String {
    URL_SAFE_NO_PAD.encode(format!("events\n{}.{}", position.enqueued_at, position.id))
}

/// The position an [`event_cursor`] holds; `None` for anything else.
pub fn parse_event_cursor(cursor: &str) -> Option<EventPosition> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.strip_prefix("events\n")?.split_once('.')?;
    Some(EventPosition {
        enqueued_at: at.parse().ok()?,
        id: id.to_owned(),
    })
    .filter(|p| !p.id.is_empty())
}

/// Up to `limit` events, newest first, only those of `status` when given,
/// from the one after `after`.
pub async fn list_events(
    store: &dyn Store,
    status: Option<EventStatus>,
    after: Option<&EventPosition>,
    limit: i64,
) -> Result<Vec<StoredEvent>, ManageError> {
    Ok(store.list_events_page(status, after, limit).await?)
}

/// The event with this id.
pub async fn get_event(store: &dyn Store, id: &str) -> Result<StoredEvent, ManageError> {
    store
        .get_event(id)
        .await?
        .ok_or_else(|| ManageError::UnknownEvent(id.to_owned()))
}

/// Makes failed event `id` due now, its attempts counted anew, for every
/// webhook that takes it and has not got it — or, with `webhook`, for that
/// one only (which must take the event and not have got it). Only a failed
/// event: a pending one is on its way already, a delivered one reached every
/// webhook; of two redeliveries at once one wins, the other is refused.
/// Returns the event as it is now.
pub async fn redeliver_event(
    store: &dyn Store,
    actor: Actor<'_>,
    configured: &[WebhookConfig],
    id: &str,
    webhook: Option<&str>,
) -> Result<StoredEvent, ManageError> {
    let event = get_event(store, id).await?;
    if event.status() != EventStatus::Failed {
        return Err(not_failed(id, event.status()));
    }
    if let Some(webhook) = webhook {
        let events = match configured
            .iter()
            .find(|w| configured_webhook_id(&w.url) == webhook)
        {
            Some(w) => w
                .events
                .as_ref()
                .map(|es| es.iter().map(|e| e.as_str().to_owned()).collect()),
            None => {
                store
                    .get_webhook(webhook)
                    .await?
                    .ok_or_else(|| ManageError::UnknownWebhook(webhook.to_owned()))?
                    .events
            }
        };
        if !takes(events.as_deref(), &event.event.event) {
            return Err(ManageError::EventState {
                id: id.to_owned(),
                state: format!(
                    "is a {} event, which webhook `{webhook}` does not take",
                    event.event.event
                ),
            });
        }
        if event.event.delivered_to.iter().any(|k| k == webhook) {
            return Err(ManageError::EventState {
                id: id.to_owned(),
                state: format!("reached webhook `{webhook}` already"),
            });
        }
    }
    let mut tx = store.begin().await?;
    if !tx.redeliver_event(id, actor.now, webhook).await? {
        // Redelivered (or purged) since it was read.
        let now = store.get_event(id).await?;
        return Err(match now {
            Some(e) => not_failed(id, e.status()),
            None => ManageError::UnknownEvent(id.to_owned()),
        });
    }
    let detail = json!({ "event": event.event.event, "webhook_id": webhook });
    tx.insert_audit(&audit(actor, "event.redelivered", id, detail))
        .await?;
    tx.commit().await?;
    get_event(store, id).await
}

fn not_failed(id: &str, status: EventStatus) -> ManageError {
    let state = match status {
        EventStatus::Pending => {
            "is pending: its delivery is under way, only failed events are redelivered"
        }
        EventStatus::Delivered => "was delivered to every webhook that takes it",
        EventStatus::Failed => "is failed",
    };
    ManageError::EventState {
        id: id.to_owned(),
        state: state.to_owned(),
    }
}
