//! Housekeeping: what has no use any more leaves the database (expired codes,
//! refresh families past their absolute expiry, revocation facts once every token they match has expired,
//! delivered events, failed events (dead letters) older than
//! [`FAILED_EVENT_RETENTION`], finished sign-ins and sessions, forgotten
//! throttle keys, failed-login audit entries older than
//! [`LOGIN_AUDIT_RETENTION`], and
//! anonymous users who were never promoted once their refresh tokens are
//! gone), once at start and then every [`PURGE_EVERY`]. Every replica may run
//! it: the deletes are idempotent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::manage::event;
use super::store::{Store, StoreError};
use crate::clock::Clock;

/// How often expired records are deleted.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How long past its expiry a record is kept: long enough for a replayed
/// authorization code to still be recognised (and revoke what it issued).
pub const RETENTION: i64 = 24 * 3600;

/// How long failed-login audit entries (`login.failed`, `login.throttled`)
/// are kept: their number follows what strangers send (at most a few dozen
/// an hour per source address, which the throttle allows), so unlike the
/// rest of the audit log they do not stay forever.
pub const LOGIN_AUDIT_RETENTION: i64 = 30 * 24 * 3600;

/// How long a failed event (a dead letter) waits for a redelivery before it
/// is deleted.
pub const FAILED_EVENT_RETENTION: i64 = 30 * 24 * 3600;

/// Anonymous users deleted (with their events) per transaction.
const ANONYMOUS_BATCH: i64 = 500;

/// Purges every [`PURGE_EVERY`] until `shutdown` changes.
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, shutdown: watch::Receiver<bool>) {
    run_every(store, clock, PURGE_EVERY, shutdown).await;
}

async fn run_every(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = clock.now_unix();
        let before = now.saturating_sub(RETENTION);
        let audit_before = now.saturating_sub(LOGIN_AUDIT_RETENTION);
        let purged = async {
            let expired = store.purge_expired(before).await?;
            let audit = store.purge_login_audit(audit_before).await?;
            let failed = store
                .purge_failed_events(now.saturating_sub(FAILED_EVENT_RETENTION))
                .await?;
            // After the families: a user whose last one just went goes too.
            let anonymous = purge_anonymous_users(store.as_ref(), before, now).await?;
            Ok::<_, StoreError>(expired + audit + failed + anonymous)
        }
        .await;
        match purged {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "Expired issuer records purged"),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::events::chain(&e), "Purging expired records failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes the anonymous users created before `before` who hold no refresh
/// family any more (the last one expired and was purged: they can never come
/// back), each with a `user.deleted` event in the same transaction, in
/// batches of [`ANONYMOUS_BATCH`]; how many. A user promoted meanwhile stays.
pub async fn purge_anonymous_users(
    store: &dyn Store,
    before: i64,
    now: i64,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let mut tx = store.begin().await?;
        let ids = tx
            .delete_stale_anonymous_users(before, ANONYMOUS_BATCH)
            .await?;
        for id in &ids {
            let data = json!({
                "id": id,
                "email": null,
                "name": null,
                "picture": null,
                "email_verified": false,
                "anonymous": true,
                "reason": "expired",
            });
            tx.enqueue_event(&event("user.deleted", now, data)).await?;
        }
        tx.commit().await?;
        total += ids.len() as u64;
        if (ids.len() as i64) < ANONYMOUS_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::issuer::store::sqlite::SqliteStore;

    // The period is shortened rather than the clock paused: sqlx's pool
    // timeouts would fire at once under paused time. Nothing waits on it: the
    // test polls for the outcome.
    #[tokio::test]
    async fn expired_records_go_at_start_and_then_every_period() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
        let t0 = 1_700_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        let revoked = |jti: &str, exp: i64| crate::issuer::revocation::jti(jti, exp - 60, exp, t0);
        // Expired more than RETENTION ago: gone at the first pass.
        store
            .record_revocation(&revoked("old", t0 - RETENTION - 1))
            .await
            .unwrap();
        // Expires an hour from now: kept until RETENTION after that.
        store
            .record_revocation(&revoked("new", t0 + 3600))
            .await
            .unwrap();
        let is_revoked = |jti: &'static str| {
            let store = store.clone();
            async move {
                let facts = crate::issuer::store::TokenFacts {
                    jti,
                    family_id: None,
                    sub: "usr_1",
                    client_id: None,
                    iat: t0,
                };
                store.is_revoked(&facts).await.unwrap()
            }
        };
        let (stop, rx) = watch::channel(false);
        let every = Duration::from_millis(20);
        let task = tokio::spawn(run_every(store.clone(), clock.clone(), every, rx));
        let gone = |jti: &'static str| async move {
            for _ in 0..1000 {
                if !is_revoked(jti).await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        assert!(gone("old").await);
        assert!(is_revoked("new").await);
        clock.advance(3600 + RETENTION);
        assert!(gone("new").await);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn anonymous_users_go_once_their_families_are_gone() {
        use crate::issuer::store::{RefreshFamily, User};
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
        let t0 = 1_700_000_000;
        let user = |id: &str, anonymous: bool, created_at: i64| User {
            id: id.into(),
            email: (!anonymous).then(|| format!("{id}@example.test")),
            name: None,
            picture: None,
            email_verified: false,
            password_hash: None,
            created_at,
            updated_at: created_at,
            anonymous,
            anonymized_at: None,
        };
        let old = t0 - RETENTION - 1;
        for u in [
            user("usr_stale", true, old),
            user("usr_kept", true, old),
            user("usr_young", true, t0),
            user("usr_promoted", false, old),
        ] {
            store.create_user(&u).await.unwrap();
        }
        let client = crate::issuer::store::Client {
            client_id: "app".into(),
            name: "app".into(),
            secret_hash: None,
            public: true,
            require_pkce: true,
            grant_types: vec!["anonymous".into(), "refresh_token".into()],
            redirect_uris: vec![],
            scopes: Default::default(),
            id_token_signed_response_alg: None,
            introspection: vec![],
            created_at: old,
        };
        store.create_client(&client).await.unwrap();
        let family = |user: &str, expires: i64| RefreshFamily {
            id: format!("rfam_{user}"),
            client_id: "app".into(),
            user_id: user.into(),
            org_id: None,
            scope: String::new(),
            resource: None,
            auth_time: old,
            generation: 0,
            current_hash: format!("hash_{user}"),
            previous_hash: None,
            rotated_at: None,
            created_at: old,
            absolute_expires_at: expires,
            idle_expires_at: None,
            revoked_at: None,
        };
        // Stale's family expired long enough ago to be purged; kept's lives.
        store
            .create_family(&family("usr_stale", old))
            .await
            .unwrap();
        store
            .create_family(&family("usr_kept", t0 + 3600))
            .await
            .unwrap();
        let before = t0 - RETENTION;
        store.purge_expired(before).await.unwrap();
        assert_eq!(
            purge_anonymous_users(store.as_ref(), before, t0)
                .await
                .unwrap(),
            1
        );
        assert!(store.get_user("usr_stale").await.unwrap().is_none());
        for id in ["usr_kept", "usr_young", "usr_promoted"] {
            assert!(store.get_user(id).await.unwrap().is_some(), "{id}");
        }
        let events = store.due_events(t0, t0 + 60, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "user.deleted");
        let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(
            (data["id"].as_str(), data["anonymous"].as_bool()),
            (Some("usr_stale"), Some(true))
        );
        // Nothing more to do the second time.
        assert_eq!(
            purge_anonymous_users(store.as_ref(), before, t0)
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn failed_login_audit_entries_are_kept_for_a_while_only() {
        use crate::issuer::store::AuditEntry;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
        let t0 = 1_700_000_000;
        let entry = |id: &str, action: &str, at: i64| AuditEntry {
            id: id.into(),
            at,
            actor: "anonymous".into(),
            action: action.into(),
            target: None,
            detail: "{}".into(),
        };
        let old = t0 - LOGIN_AUDIT_RETENTION - 1;
        for e in [
            entry("a1", "login.failed", old),
            entry("a2", "login.throttled", old),
            entry("a3", "login.succeeded", old),
            entry("a4", "client.created", old),
            entry("a5", "login.failed", t0 - 60),
        ] {
            store.insert_audit(&e).await.unwrap();
        }
        let clock = Arc::new(ManualClock::new(t0));
        let (stop, rx) = watch::channel(false);
        let every = Duration::from_millis(20);
        let task = tokio::spawn(run_every(store.clone(), clock, every, rx));
        let mut left = Vec::new();
        for _ in 0..1000 {
            left = store.list_audit(10).await.unwrap();
            if left.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ids: Vec<&str> = left.iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["a3", "a4", "a5"]);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
