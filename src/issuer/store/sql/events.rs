//! Webhooks, the durable event outbox, and the audit log.

use sqlx::Row as _;

use super::super::super::{
    AuditEntry, AuditFilter, AuditPosition, NewEvent, OutboxEvent, Page, StoreError, Webhook,
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

pub(super) async fn upsert_webhook(c: &mut Conn, w: &Webhook) -> Result<(), StoreError> {
    let events = w
        .events
        .as_ref()
        .map(|events| to_json("events", events))
        .transpose()?;
    sqlx::query(
        "INSERT INTO webhooks (id, url, secret, events, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
         events = excluded.events",
    )
    .bind(&w.id)
    .bind(&w.url)
    .bind(&w.secret)
    .bind(events)
    .bind(w.created_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("webhook"))?;
    Ok(())
}

pub(super) async fn list_webhooks(
    c: &mut Conn,
    page: Page<'_>,
) -> Result<Vec<Webhook>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, url, secret, events, created_at FROM webhooks \
         WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(page.after)
    .bind(page.limit)
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, webhook)
}

pub(super) async fn delete_webhook(c: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn webhook(row: &Row) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        events: opt_json_column(row, "events")?,
        created_at: row.try_get("created_at")?,
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
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, enqueued_at, id LIMIT $3{SKIP_LOCKED}) \
         UPDATE event_outbox SET next_attempt_at = $2 \
         WHERE id IN (SELECT id FROM claimed) \
         AND delivered_at IS NULL AND next_attempt_at <= $1 \
         RETURNING id, event, created_at, data, attempts, delivered_to, enqueued_at"
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
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE event_outbox SET attempts = $2, next_attempt_at = $3, delivered_to = $4 \
         WHERE id = $1 AND delivered_at IS NULL",
    )
    .bind(id)
    .bind(attempts)
    .bind(next_at)
    .bind(to_json("delivered_to", delivered_to)?)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
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
