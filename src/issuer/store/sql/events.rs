//! Webhooks, the durable event outbox, and the audit log.

use sqlx::Row as _;

use super::super::super::{
    AuditEntry, AuditFilter, AuditPosition, EventPosition, EventStatus, NewEvent, OutboxEvent,
    Page, StoreError, StoredEvent, Webhook, WebhookStatus,
};
use super::{Conn, Row, SKIP_LOCKED, decode_all, opt_json_column, to_json, write_error};

// --- webhooks ---

pub(super) async fn replace_webhook_secret(
    c: &mut Conn,
    id: &str,
    expected: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE webhooks SET secret = $3 WHERE id = $1 AND secret = $2")
        .bind(id)
        .bind(expected)
        .bind(new)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Replaces the previous secret of webhook `id` with `new` if it is still
/// `expected` (sealing a plain one at start).
pub(super) async fn replace_webhook_previous_secret(
    c: &mut Conn,
    id: &str,
    expected: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhooks SET previous_secret = $3 WHERE id = $1 AND previous_secret = $2",
    )
    .bind(id)
    .bind(expected)
    .bind(new)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The secret becomes the previous one (until `previous_until`; dropped when
/// `None`) and `new` the secret, if the secret is still `expected`: of two
/// rotations at once, one wins.
pub(super) async fn rotate_webhook_secret(
    c: &mut Conn,
    id: &str,
    expected: &str,
    new: &str,
    previous_until: Option<i64>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhooks SET \
         previous_secret = CASE WHEN $4 IS NULL THEN NULL ELSE secret END, \
         previous_secret_until = $4, secret = $3 \
         WHERE id = $1 AND secret = $2",
    )
    .bind(id)
    .bind(expected)
    .bind(new)
    .bind(previous_until)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn upsert_webhook(c: &mut Conn, w: &Webhook) -> Result<(), StoreError> {
    let events = w
        .events
        .as_ref()
        .map(|events| to_json("events", events))
        .transpose()?;
    sqlx::query(
        "INSERT INTO webhooks (id, url, secret, events, created_at, previous_secret, \
         previous_secret_until) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
         events = excluded.events, previous_secret = excluded.previous_secret, \
         previous_secret_until = excluded.previous_secret_until",
    )
    .bind(&w.id)
    .bind(&w.url)
    .bind(&w.secret)
    .bind(events)
    .bind(w.created_at)
    .bind(&w.previous_secret)
    .bind(w.previous_secret_until)
    .execute(&mut *c)
    .await
    .map_err(write_error("webhook"))?;
    Ok(())
}

pub(super) async fn list_webhooks(
    c: &mut Conn,
    page: Page<'_>,
) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks \
         WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(&mut *c)
        .await?;
    decode_all(rows, webhook)
}

pub(super) async fn get_webhook(c: &mut Conn, id: &str) -> Result<Option<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
    row.as_ref().map(webhook).transpose()
}

/// Deletes the webhook with its delivery status.
pub(super) async fn delete_webhook(c: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM webhook_status WHERE receiver = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

const WEBHOOK_COLUMNS: &str =
    "id, url, secret, events, created_at, previous_secret, previous_secret_until";

fn webhook(row: &Row) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        events: opt_json_column(row, "events")?,
        created_at: row.try_get("created_at")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_until: row.try_get("previous_secret_until")?,
    })
}

// --- delivery status ---

/// Records one delivery to `receiver` at `now`: a success resets the count
/// of failures, a failure (`error`) adds one. One statement, so replicas
/// delivering at once each count.
pub(super) async fn record_delivery(
    c: &mut Conn,
    receiver: &str,
    now: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let sql = match error {
        None => {
            "INSERT INTO webhook_status (receiver, last_success_at, consecutive_failures) \
             VALUES ($1, $2, 0) ON CONFLICT (receiver) DO UPDATE SET \
             last_success_at = excluded.last_success_at, consecutive_failures = 0"
        }
        Some(_) => {
            "INSERT INTO webhook_status (receiver, last_failure_at, last_error, \
             consecutive_failures) VALUES ($1, $2, $3, 1) ON CONFLICT (receiver) DO UPDATE SET \
             last_failure_at = excluded.last_failure_at, last_error = excluded.last_error, \
             consecutive_failures = webhook_status.consecutive_failures + 1"
        }
    };
    let mut query = sqlx::query(sql).bind(receiver).bind(now);
    if let Some(error) = error {
        query = query.bind(error);
    }
    query.execute(&mut *c).await?;
    Ok(())
}

pub(super) async fn list_webhook_status(c: &mut Conn) -> Result<Vec<WebhookStatus>, StoreError> {
    let rows = sqlx::query(
        "SELECT receiver, last_success_at, last_failure_at, last_error, consecutive_failures \
         FROM webhook_status ORDER BY receiver",
    )
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, |row| {
        Ok(WebhookStatus {
            receiver: row.try_get("receiver")?,
            last_success_at: row.try_get("last_success_at")?,
            last_failure_at: row.try_get("last_failure_at")?,
            last_error: row.try_get("last_error")?,
            consecutive_failures: row.try_get("consecutive_failures")?,
        })
    })
}

// --- the outbox ---

pub(super) async fn enqueue(c: &mut Conn, e: &NewEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO event_outbox (id, event, created_at, data, enqueued_at, attempts, \
         next_attempt_at) VALUES ($1, $2, $3, $4, $5, 0, $5)",
    )
    .bind(&e.id)
    .bind(&e.event)
    .bind(&e.created_at)
    .bind(&e.data)
    .bind(e.due_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("event"))?;
    Ok(())
}

/// Claims due events by moving them to `claim_until`. The outer `WHERE`
/// repeats the due condition so that, on PostgreSQL, a claimer that waited for
/// another's row lock re-checks it against the committed row and skips it;
/// `SKIP_LOCKED` lets concurrent claimers pick different rows instead of
/// queueing for the same few. The pick is a CTE because PostgreSQL runs a
/// locking CTE once, where an `IN (subquery)` may be re-run per row and then
/// skip the rows this statement already updated, reaching past `LIMIT`.
pub(super) async fn claim_due(
    c: &mut Conn,
    now: i64,
    claim_until: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let sql = format!(
        "WITH claimed AS (SELECT id FROM event_outbox \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, enqueued_at, id LIMIT $3{SKIP_LOCKED}) \
         UPDATE event_outbox SET next_attempt_at = $2 \
         WHERE id IN (SELECT id FROM claimed) \
         AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
         RETURNING id, event, created_at, data, attempts, delivered_to, only_to, enqueued_at"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(claim_until)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("enqueued_at")?, outbox_event(row)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    // RETURNING has no order of its own: oldest first.
    claimed.sort_by(|(a_at, a), (b_at, b)| (a_at, &a.id).cmp(&(b_at, &b.id)));
    Ok(claimed.into_iter().map(|(_, event)| event).collect())
}

pub(super) async fn mark_delivered(c: &mut Conn, id: &str, now: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_outbox SET delivered_at = $2 WHERE id = $1 AND delivered_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn schedule_retry(
    c: &mut Conn,
    id: &str,
    attempts: i64,
    next_at: i64,
    delivered_to: &[String],
    last_error: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_outbox SET attempts = $2, next_attempt_at = $3, delivered_to = $4, \
         last_error = $5 WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL",
    )
    .bind(id)
    .bind(attempts)
    .bind(next_at)
    .bind(to_json("delivered_to", delivered_to)?)
    .bind(last_error)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Makes the event a dead letter at `now`; `last_error` `None` keeps the
/// one recorded.
pub(super) async fn mark_failed(
    c: &mut Conn,
    id: &str,
    attempts: i64,
    now: i64,
    delivered_to: &[String],
    last_error: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_outbox SET attempts = $2, failed_at = $3, delivered_to = $4, \
         last_error = COALESCE($5, last_error), only_to = NULL \
         WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL",
    )
    .bind(id)
    .bind(attempts)
    .bind(now)
    .bind(to_json("delivered_to", delivered_to)?)
    .bind(last_error)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Makes a failed event due at `now` again with no attempt counted, for
/// every webhook it has not reached or `only_to` alone. Only a failed event:
/// of two redeliveries at once, one wins, and a pending event is left to its
/// retries.
pub(super) async fn redeliver(
    c: &mut Conn,
    id: &str,
    now: i64,
    only_to: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = $2, \
         only_to = $3, last_error = NULL \
         WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NOT NULL",
    )
    .bind(id)
    .bind(now)
    .bind(only_to)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

const EVENT_COLUMNS: &str = "id, event, created_at, data, attempts, delivered_to, only_to, \
     enqueued_at, next_attempt_at, delivered_at, failed_at, last_error";

pub(super) async fn get_event(c: &mut Conn, id: &str) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM event_outbox WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
    row.as_ref().map(stored_event).transpose()
}

/// Events newest first (`enqueued_at`, then `id`, descending), of `status`
/// when given, from the one after `after`.
pub(super) async fn list_events(
    c: &mut Conn,
    status: Option<EventStatus>,
    after: Option<&EventPosition>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM event_outbox \
         WHERE ($1 IS NULL \
             OR ($1 = 'delivered' AND delivered_at IS NOT NULL) \
             OR ($1 = 'failed' AND delivered_at IS NULL AND failed_at IS NOT NULL) \
             OR ($1 = 'pending' AND delivered_at IS NULL AND failed_at IS NULL)) \
         AND ($2 IS NULL OR enqueued_at < $2 OR (enqueued_at = $2 AND id < $3)) \
         ORDER BY enqueued_at DESC, id DESC LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(status.map(EventStatus::as_str))
        .bind(after.map(|p| p.enqueued_at))
        .bind(after.map(|p| p.id.as_str()))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    decode_all(rows, stored_event)
}

/// Deletes the failed events that failed before `before`.
pub(super) async fn purge_failed(c: &mut Conn, before: i64) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM event_outbox WHERE delivered_at IS NULL AND failed_at <= $1")
            .bind(before)
            .execute(&mut *c)
            .await?;
    Ok(done.rows_affected())
}

/// What [`super::purge_expired`] deletes here: events delivered before `$1`.
pub(super) const PURGE: &[&str] = &["DELETE FROM event_outbox WHERE delivered_at <= $1"];

fn outbox_event(row: &Row) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        created_at: row.try_get("created_at")?,
        data: row.try_get("data")?,
        attempts: row.try_get("attempts")?,
        delivered_to: opt_json_column(row, "delivered_to")?.unwrap_or_default(),
        only_to: row.try_get("only_to")?,
    })
}

fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        event: outbox_event(row)?,
        enqueued_at: row.try_get("enqueued_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
        failed_at: row.try_get("failed_at")?,
        last_error: row.try_get("last_error")?,
    })
}

// --- the audit log ---

/// Deletes the failed-login entries (`login.failed`, `login.throttled`) from
/// before `before`: their number follows what strangers send, so they are
/// kept for a while only, unlike the rest of the log.
pub(super) async fn purge_login_audit(c: &mut Conn, before: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM audit_log WHERE action IN ('login.failed', 'login.throttled') AND at <= $1",
    )
    .bind(before)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn insert_audit(c: &mut Conn, a: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&a.id)
    .bind(a.at)
    .bind(&a.actor)
    .bind(&a.action)
    .bind(&a.target)
    .bind(&a.detail)
    .execute(&mut *c)
    .await
    .map_err(write_error("audit entry"))?;
    Ok(())
}

/// Replaces the detail of every entry about `target` with `detail` (an
/// erasure of the personal data the details held); how many changed.
pub(super) async fn redact_audit(
    c: &mut Conn,
    target: &str,
    detail: &str,
) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE audit_log SET detail = $2 WHERE target = $1 AND detail <> $2")
        .bind(target)
        .bind(detail)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected())
}

/// Entries newest first (`at`, then `seq`, descending), filtered, from the
/// one after `after`. An organization's entries are those whose target is
/// its id or starts with its id and a `/` (its memberships); `substr` rather
/// than `LIKE`, in which the `_` of an id would match any character.
pub(super) async fn list_audit(
    c: &mut Conn,
    filter: &AuditFilter<'_>,
    after: Option<AuditPosition>,
    limit: i64,
) -> Result<Vec<(AuditPosition, AuditEntry)>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, id, at, actor, action, target, detail FROM audit_log \
         WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) \
         AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR action = $4) \
         AND ($5 IS NULL OR target = $5 OR substr(target, 1, length($5) + 1) = $5 || '/') \
         AND ($6 IS NULL OR at < $6 OR (at = $6 AND seq < $7)) \
         ORDER BY at DESC, seq DESC LIMIT $8",
    )
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.actor)
    .bind(filter.action)
    .bind(filter.org_id)
    .bind(after.map(|p| p.at))
    .bind(after.map(|p| p.seq))
    .bind(limit)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|row| {
            let position = AuditPosition {
                at: row.try_get("at")?,
                seq: row.try_get("seq")?,
            };
            Ok((position, audit_entry(row)?))
        })
        .collect()
}

fn audit_entry(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: row.try_get("detail")?,
    })
}
