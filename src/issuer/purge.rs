//! Housekeeping: what has no use any more leaves the database (expired codes,
//! refresh families past their absolute expiry, revoked JTIs past their `exp`,
//! delivered events, finished sign-ins and sessions), once at start and then
//! every [`PURGE_EVERY`]. Every replica may run it: the deletes are idempotent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::store::Store;
use crate::clock::Clock;

/// How often expired records are deleted.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How long past its expiry a record is kept: long enough for a replayed
/// authorization code to still be recognised (and revoke what it issued).
pub const RETENTION: i64 = 24 * 3600;

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
        let before = clock.now_unix().saturating_sub(RETENTION);
        match store.purge_expired(before).await {
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
        // Expired more than RETENTION ago: gone at the first pass.
        store.revoke_jti("old", t0 - RETENTION - 1).await.unwrap();
        // Expires an hour from now: kept until RETENTION after that.
        store.revoke_jti("new", t0 + 3600).await.unwrap();
        let (stop, rx) = watch::channel(false);
        let every = Duration::from_millis(20);
        let task = tokio::spawn(run_every(store.clone(), clock.clone(), every, rx));
        let gone = |jti: &'static str| {
            let store = store.clone();
            async move {
                for _ in 0..1000 {
                    if !store.is_jti_revoked(jti).await.unwrap() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        assert!(gone("old").await);
        assert!(store.is_jti_revoked("new").await.unwrap());
        clock.advance(3600 + RETENTION);
        assert!(gone("new").await);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
