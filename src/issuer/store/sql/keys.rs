//! Signing keys, and the leases that let one replica at a time rotate them.

use sqlx::Row as _;

use super::super::super::{SigningKeyRecord, StoreError};
use super::{Conn, Row, decode_all, write_error};

/// The name of the lease row that guards key rotation.
pub(super) const ROTATION_LEASE: &str = "key_rotation";

pub(super) async fn insert_signing_key(
    c: &mut Conn,
    key: &SigningKeyRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, publish_at, \
         activate_at, retire_at, expire_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_key)
    .bind(&key.public_jwk)
    .bind(key.created_at)
    .bind(key.publish_at)
    .bind(key.activate_at)
    .bind(key.retire_at)
    .bind(key.expire_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("signing key"))?;
    Ok(())
}

pub(super) async fn list_signing_keys(
    c: &mut Conn,
    now: i64,
) -> Result<Vec<SigningKeyRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT kid, alg, private_key, public_jwk, created_at, publish_at, activate_at, \
         retire_at, expire_at FROM signing_keys WHERE expire_at IS NULL OR expire_at > $1 \
         ORDER BY activate_at, kid",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    decode_all(rows, signing_key)
}

pub(super) async fn replace_material(
    c: &mut Conn,
    kid: &str,
    expected: &[u8],
    new: &[u8],
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE signing_keys SET private_key = $3 WHERE kid = $1 AND private_key = $2")
            .bind(kid)
            .bind(expected)
            .bind(new)
            .execute(&mut *c)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn update_signing_key_times(
    c: &mut Conn,
    kid: &str,
    retire_at: Option<i64>,
    expire_at: Option<i64>,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE signing_keys SET retire_at = $2, expire_at = $3 WHERE kid = $1")
        .bind(kid)
        .bind(retire_at)
        .bind(expire_at)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn signing_key(row: &Row) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_key: row.try_get("private_key")?,
        public_jwk: row.try_get("public_jwk")?,
        created_at: row.try_get("created_at")?,
        publish_at: row.try_get("publish_at")?,
        activate_at: row.try_get("activate_at")?,
        retire_at: row.try_get("retire_at")?,
        expire_at: row.try_get("expire_at")?,
    })
}

/// Takes or renews lease `name` for `holder` until `now + ttl`. The upsert's
/// `WHERE` lets the update through only when the lease is `holder`'s already
/// or has run out, so one statement decides between concurrent callers.
pub(super) async fn try_lease(
    c: &mut Conn,
    name: &str,
    holder: &str,
    now: i64,
    ttl: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
    )
    .bind(name)
    .bind(holder)
    .bind(now.saturating_add(ttl))
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}
