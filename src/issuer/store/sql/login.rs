//! The login flow's state: pending sign-in transactions and browser sessions
//! (failed logins are throttled in `throttle.rs`).

use sqlx::Row as _;

use super::super::super::{LoginSession, LoginTransaction, StoreError};
use super::{Conn, Row, write_error};

pub(super) async fn put_transaction(
    c: &mut Conn,
    txn: &LoginTransaction,
) -> Result<(), StoreError> {
    let (user_id, auth_time) = match &txn.user {
        Some((user, at)) => (Some(user.as_str()), Some(*at)),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO login_transactions (id_hash, csrf, request, user_id, auth_time, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_hash) DO UPDATE SET \
         csrf = excluded.csrf, request = excluded.request, user_id = excluded.user_id, \
         auth_time = excluded.auth_time, expires_at = excluded.expires_at",
    )
    .bind(&txn.id_hash)
    .bind(&txn.csrf)
    .bind(&txn.request)
    .bind(user_id)
    .bind(auth_time)
    .bind(txn.expires_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("login transaction"))?;
    Ok(())
}

pub(super) async fn get_transaction(
    c: &mut Conn,
    id_hash: &str,
    now: i64,
) -> Result<Option<LoginTransaction>, StoreError> {
    let row = sqlx::query(
        "SELECT id_hash, csrf, request, user_id, auth_time, expires_at \
         FROM login_transactions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    row.as_ref().map(transaction).transpose()
}

/// Deletes the transaction if it is still usable at `now`; true when this call
/// did, so of two finishing it at once exactly one does.
pub(super) async fn take_transaction(
    c: &mut Conn,
    id_hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM login_transactions WHERE id_hash = $1 AND expires_at > $2")
        .bind(id_hash)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn create_session(c: &mut Conn, s: &LoginSession) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO login_sessions (id_hash, user_id, auth_time, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&s.id_hash)
    .bind(&s.user_id)
    .bind(s.auth_time)
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(&mut *c)
    .await
    .map_err(write_error("login session"))?;
    Ok(())
}

pub(super) async fn get_session(
    c: &mut Conn,
    id_hash: &str,
    now: i64,
) -> Result<Option<LoginSession>, StoreError> {
    let row = sqlx::query(
        "SELECT id_hash, user_id, auth_time, created_at, expires_at FROM login_sessions \
         WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    row.as_ref().map(session).transpose()
}

pub(super) async fn delete_session(c: &mut Conn, id_hash: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM login_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn delete_sessions_of_user(
    c: &mut Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    // Pending sign-ins that already know the user (the organization chooser)
    // end too: they would otherwise still produce a code.
    sqlx::query("DELETE FROM login_transactions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    let done = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected())
}

/// What [`super::purge_expired`] deletes here: transactions and sessions that
/// ended before `$1`.
pub(super) const PURGE: &[&str] = &[
    "DELETE FROM login_transactions WHERE expires_at <= $1",
    "DELETE FROM login_sessions WHERE expires_at <= $1",
];

fn transaction(row: &Row) -> Result<LoginTransaction, StoreError> {
    let user_id: Option<String> = row.try_get("user_id")?;
    let auth_time: Option<i64> = row.try_get("auth_time")?;
    Ok(LoginTransaction {
        id_hash: row.try_get("id_hash")?,
        csrf: row.try_get("csrf")?,
        request: row.try_get("request")?,
        user: user_id.zip(auth_time),
        expires_at: row.try_get("expires_at")?,
    })
}

fn session(row: &Row) -> Result<LoginSession, StoreError> {
    Ok(LoginSession {
        id_hash: row.try_get("id_hash")?,
        user_id: row.try_get("user_id")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
