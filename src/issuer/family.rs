//! Refresh-token families as the endpoints that issue and end them see them:
//! the size of their tokens, when one is over ([`expired`]), revoking one with its report ([`revoke_reported`]:
//! reuse detection, `/oauth/revoke`), and the report every revocation writes
//! in its transaction ([`reported`]: an outbox event and an audit entry).
//! Below `refresh`, `anonymous`, `revoke` and `introspect`, which all use
//! it, so that none of them imports another.

use serde_json::{Value, json};

use super::error::OAuthError;
use super::revocation;
use super::store::{self, AuditEntry, NewEvent, RefreshFamily};
use super::token::Minter;

/// Bytes of entropy in a refresh token.
pub const REFRESH_TOKEN_BYTES: usize = 32;

/// Whether the family can no longer be used at `now` (revocation aside).
pub fn expired(family: &RefreshFamily, now: i64) -> bool {
    now >= family.absolute_expires_at || family.idle_expires_at.is_some_and(|idle| now >= idle)
}

/// Revokes `family` (its refresh tokens, and its access tokens through the
/// revocation fact) and, when that changed it, records `event` (in the outbox
/// and the audit log, by `actor`) in the same transaction; the fact is
/// applied here once committed. True when this call revoked it.
pub async fn revoke_reported(
    minter: &Minter,
    family: &RefreshFamily,
    actor: &str,
    event: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let ttl = minter.section.access_token_ttl.as_secs() as i64;
    let fact = revocation::family(&family.id, now, ttl);
    let mut tx = minter.store.begin().await?;
    if !tx.revoke_family(&family.id, now).await? {
        return Ok(false);
    }
    tx.record_revocation(&fact).await?;
    let data = json!({
        "token_type": "refresh_token",
        "family_id": family.id,
        "client_id": family.client_id,
        "sub": family.user_id,
        "org_id": family.org_id,
    });
    let (event, audit) = reported(event, actor, &family.id, data, now);
    tx.enqueue_event(&event).await?;
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    minter.revocations.applied(&[fact]);
    Ok(true)
}

/// The outbox event and the audit entry for one security event.
pub fn reported(
    name: &str,
    actor: &str,
    target: &str,
    data: Value,
    now: i64,
) -> (NewEvent, AuditEntry) {
    let mut created_at = String::new();
    crate::telemetry::access::rfc3339(&mut created_at, now, 0);
    let text = data.to_string();
    let event = NewEvent {
        id: store::new_id("evt"),
        event: name.to_owned(),
        created_at,
        data: text.clone(),
        due_at: now,
    };
    let audit = AuditEntry {
        id: store::new_id("aud"),
        at: now,
        actor: actor.to_owned(),
        action: name.to_owned(),
        target: Some(target.to_owned()),
        detail: text,
    };
    (event, audit)
}
