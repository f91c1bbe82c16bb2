//! Throttled authentication attempts: one row per key, counted as attempts
//! start, delayed with doubling waits, forgiven when they succeed.

use sqlx::Row as _;

use super::super::super::{Attempt, AttemptRule, StoreError};
use super::Conn;

/// Counts an attempt unless the key is delayed, in one statement: the
/// conditional `DO UPDATE … WHERE` leaves a delayed row alone (and returns
/// nothing), so an attempt during a delay neither counts nor extends it.
/// A row past `forget_at` starts over at one. The new delay: none below
/// `free` counted attempts, then `first_delay`, doubling up to `max_delay`.
/// `$1` key, `$2` now, `$3` free, `$4` first delay, `$5` max delay, `$6` memory.
const TAKE: &str = "\
INSERT INTO auth_throttle (key, failures, delay_secs, blocked_until, forget_at) \
VALUES ($1, 1, CASE WHEN 1 >= $3 THEN $4 ELSE 0 END, \
        $2 + CASE WHEN 1 >= $3 THEN $4 ELSE 0 END, \
        $2 + CASE WHEN 1 >= $3 THEN $4 ELSE 0 END + $6) \
ON CONFLICT (key) DO UPDATE SET \
  failures = CASE WHEN auth_throttle.forget_at <= $2 THEN 1 ELSE auth_throttle.failures + 1 END, \
  delay_secs = CASE \
    WHEN (CASE WHEN auth_throttle.forget_at <= $2 THEN 1 ELSE auth_throttle.failures + 1 END) < $3 THEN 0 \
    WHEN auth_throttle.forget_at <= $2 OR auth_throttle.delay_secs = 0 THEN $4 \
    WHEN auth_throttle.delay_secs * 2 > $5 THEN $5 \
    ELSE auth_throttle.delay_secs * 2 END, \
  blocked_until = $2 + CASE \
    WHEN (CASE WHEN auth_throttle.forget_at <= $2 THEN 1 ELSE auth_throttle.failures + 1 END) < $3 THEN 0 \
    WHEN auth_throttle.forget_at <= $2 OR auth_throttle.delay_secs = 0 THEN $4 \
    WHEN auth_throttle.delay_secs * 2 > $5 THEN $5 \
    ELSE auth_throttle.delay_secs * 2 END, \
  forget_at = $2 + $6 + CASE \
    WHEN (CASE WHEN auth_throttle.forget_at <= $2 THEN 1 ELSE auth_throttle.failures + 1 END) < $3 THEN 0 \
    WHEN auth_throttle.forget_at <= $2 OR auth_throttle.delay_secs = 0 THEN $4 \
    WHEN auth_throttle.delay_secs * 2 > $5 THEN $5 \
    ELSE auth_throttle.delay_secs * 2 END \
WHERE auth_throttle.blocked_until <= $2 \
RETURNING failures, blocked_until";

pub(super) async fn take_attempt(
    c: &mut Conn,
    key: &str,
    now: i64,
    rule: &AttemptRule,
) -> Result<Attempt, StoreError> {
    let counted = sqlx::query(TAKE)
        .bind(key)
        .bind(now)
        .bind(rule.free)
        .bind(rule.first_delay)
        .bind(rule.max_delay)
        .bind(rule.memory)
        .fetch_optional(&mut *c)
        .await?;
    if let Some(row) = counted {
        return Ok(Attempt::Counted {
            failures: row.try_get("failures")?,
            delayed_until: row.try_get("blocked_until")?,
        });
    }
    let row = sqlx::query("SELECT blocked_until FROM auth_throttle WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
    // A row deleted between the two statements (a success elsewhere) ends
    // the delay.
    let until = match row {
        Some(row) => row.try_get("blocked_until")?,
        None => now,
    };
    Ok(Attempt::Delayed { until })
}

pub(super) async fn forgive_attempt(
    c: &mut Conn,
    key: &str,
    now: i64,
    rule: &AttemptRule,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE auth_throttle SET failures = failures - 1, \
         delay_secs = CASE WHEN failures - 1 < $3 THEN 0 ELSE delay_secs END, \
         blocked_until = CASE WHEN failures - 1 < $3 AND blocked_until > $2 THEN $2 \
                         ELSE blocked_until END \
         WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .bind(now)
    .bind(rule.free)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn clear_attempts(c: &mut Conn, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM auth_throttle WHERE key = $1")
        .bind(key)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// What [`super::purge_expired`] deletes here: keys forgotten before `$1`.
pub(super) const PURGE: &[&str] = &["DELETE FROM auth_throttle WHERE forget_at <= $1"];
