//! Revocation facts: one row per revocation, added in the transaction of the
//! revocation, read by every process that keeps a revocation set (at start,
//! then everything with an id above the last one it applied).
//!
//! Readers rely on ids growing in commit order: a reader that has applied id
//! N and reads `id > N` must never miss a row that commits later with a
//! smaller id. SQLite serialises writers, and its `AUTOINCREMENT` never reuses
//! an id; on PostgreSQL [`super::REVOCATION_LOCK`] serialises the inserts
//! until commit, and [`super::REVOCATION_NOTIFY`] tells the listeners when
//! the row commits.

use sqlx::Row as _;

use super::super::super::{RevocationRecord, StoreError, TokenFacts};
use super::{Conn, Row};

const COLUMNS: &str = "id, kind, value, issued_before, expires_at, created_at";

pub(super) async fn record(c: &mut Conn, r: &RevocationRecord) -> Result<i64, StoreError> {
    if let Some(lock) = super::REVOCATION_LOCK {
        sqlx::query(lock).execute(&mut *c).await?;
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO revocations (kind, value, issued_before, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&r.kind)
    .bind(&r.value)
    .bind(r.issued_before)
    .bind(r.expires_at)
    .bind(r.created_at)
    .fetch_one(&mut *c)
    .await?;
    if let Some(notify) = super::REVOCATION_NOTIFY {
        sqlx::query(notify)
            .bind(id.to_string())
            .execute(&mut *c)
            .await?;
    }
    Ok(id)
}

pub(super) async fn is_revoked(c: &mut Conn, t: &TokenFacts<'_>) -> Result<bool, StoreError> {
    let found = sqlx::query(
        "SELECT 1 FROM revocations WHERE (kind = 'jti' AND value = $1) \
         OR (kind = 'family' AND value = $2) \
         OR (kind = 'subject' AND value = $3 AND issued_before >= $5) \
         OR (kind = 'client' AND value = $4 AND issued_before >= $5) LIMIT 1",
    )
    .bind(t.jti)
    .bind(t.family_id)
    .bind(t.sub)
    .bind(t.client_id)
    .bind(t.iat)
    .fetch_optional(&mut *c)
    .await?;
    Ok(found.is_some())
}

pub(super) async fn after(
    c: &mut Conn,
    after: i64,
    live_at: i64,
    limit: i64,
) -> Result<Vec<RevocationRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM revocations WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after)
        .bind(live_at)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
    super::decode_all(rows, record_of)
}

pub(super) async fn last_id(c: &mut Conn) -> Result<i64, StoreError> {
    let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM revocations")
        .fetch_one(&mut *c)
        .await?;
    Ok(id.unwrap_or(0))
}

fn record_of(row: &Row) -> Result<RevocationRecord, StoreError> {
    Ok(RevocationRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        issued_before: row.try_get("issued_before")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}

/// What [`super::purge_expired`] deletes here: facts whose tokens all
/// expired before `$1`.
pub(super) const PURGE: &[&str] = &["DELETE FROM revocations WHERE expires_at <= $1"];
