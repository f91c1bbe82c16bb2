//! How a revocation becomes durable and reaches every gateway at once.
//!
//! Each revocation is a fact in the store (`revocations`), written in the
//! transaction that revokes: an access token by `jti` (`/oauth/revoke`), a
//! token family (`/oauth/revoke` with a refresh token, reuse detection, an
//! authorization code presented twice), a user's tokens up to now (deleted,
//! anonymized, new password), a client's (deleted). The builders here say how
//! long each fact matters: until every token it can match has expired.
//!
//! Each process keeps the gateway's [`RevocationSet`] in step with the facts
//! ([`Revocations`]): it loads the live ones before it serves, applies its own
//! right after they commit, and reads every fact with an id above the last
//! one it applied — when PostgreSQL notifies it (`LISTEN`), after its
//! listening connection was lost and is back, and every
//! `issuer.revocation.sync_interval` whatever happened. A lost or coalesced
//! notice therefore only delays a fact by at most that interval, and a fact
//! written by `portcullis admin` (another process) reaches a SQLite gateway
//! within it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::store::{RevocationNotices, RevocationRecord, Store, StoreError};
use crate::auth::revocation::{Kind, Revocation, RevocationSet};
use crate::clock::Clock;
use crate::telemetry::Metrics;

/// How long after a family's revocation a token of it can still be signed:
/// a redemption racing the replay that revoked its family signs with the time
/// its request began. Also covers clock differences between replicas.
pub const MINT_SLACK: i64 = 60;

/// The longest `issuer.access_token_ttl` allowed: facts about users and
/// clients, written where the configured lifetime is not known (the admin
/// layer, the CLI), are kept this long.
pub const LONGEST_ACCESS_TTL: i64 = 24 * 3600;

/// Facts read per query.
const PAGE: i64 = 10_000;

/// The first wait before a failed read of new facts is tried again (then
/// doubling, up to `sync_interval`).
const READ_RETRY_MIN: Duration = Duration::from_millis(200);

/// Waits between attempts to listen again after the connection was lost.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(200);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// The revocation set of this process and what keeps it in step with the
/// store.
pub struct Revocations {
    set: Arc<RevocationSet>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sync_interval: Duration,
    /// The highest fact id read from the store; reads continue above it.
    seen: tokio::sync::Mutex<i64>,
    /// How notices arrive, until [`Revocations::run`] takes it.
    listener: Mutex<Option<Listener>>,
}

/// Whether this backend sends notices, and the subscription when it does.
enum Listener {
    /// SQLite: none; the periodic read does it all.
    Unsupported,
    Listening(Box<dyn RevocationNotices>),
    /// PostgreSQL, but listening failed: try again.
    Retry,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.set.len())
            .finish_non_exhaustive()
    }
}

/// An access token, by its `jti`, until its `exp`.
pub fn jti(jti: &str, iat: i64, exp: i64, now: i64) -> RevocationRecord {
    record(Kind::Jti, jti, iat.min(now), exp, now)
}

/// Every token of the family `id`, revoked `now`, whose access tokens live
/// `access_ttl` seconds.
pub fn family(id: &str, now: i64, access_ttl: i64) -> RevocationRecord {
    let last_signed = now.saturating_add(MINT_SLACK);
    record(
        Kind::Family,
        id,
        last_signed,
        last_signed.saturating_add(access_ttl),
        now,
    )
}

/// The tokens of user `id` issued up to `now`.
pub fn subject(id: &str, now: i64) -> RevocationRecord {
    let until = now.saturating_add(LONGEST_ACCESS_TTL + MINT_SLACK);
    record(Kind::Subject, id, now, until, now)
}

/// The tokens issued to client `id` up to `now`.
pub fn client(id: &str, now: i64) -> RevocationRecord {
    let until = now.saturating_add(LONGEST_ACCESS_TTL + MINT_SLACK);
    record(Kind::Client, id, now, until, now)
}

fn record(kind: Kind, value: &str, issued_before: i64, until: i64, now: i64) -> RevocationRecord {
    RevocationRecord {
        id: 0,
        kind: kind.as_str().to_owned(),
        value: value.to_owned(),
        issued_before,
        expires_at: until,
        created_at: now,
    }
}

// === impl Revocations ===

impl Revocations {
    /// Starts listening for new facts (PostgreSQL), then loads every live
    /// fact into `set`: listening first, so that nothing committed between
    /// the two is missed. Fails only if the store cannot be read.
    pub async fn start(
        store: Arc<dyn Store>,
        set: Arc<RevocationSet>,
        clock: Arc<dyn Clock>,
        sync_interval: Duration,
    ) -> Result<Arc<Revocations>, StoreError> {
        let listener = match store.listen_revocations().await {
            Ok(Some(n)) => Listener::Listening(n),
            Ok(None) => Listener::Unsupported,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::events::chain(&e), "Cannot listen for revocations yet; reading them every sync_interval until it can");
                Listener::Retry
            }
        };
        let revocations = Revocations {
            set,
            store,
            clock,
            sync_interval,
            seen: tokio::sync::Mutex::new(0),
            listener: Mutex::new(Some(listener)),
        };
        revocations.load().await?;
        Ok(Arc::new(revocations))
    }

    /// The set this keeps.
    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    /// Applies facts this process has just committed, before the caller
    /// answers: the next request through this gateway sees them.
    pub fn applied(&self, records: &[RevocationRecord]) {
        self.apply(records, self.clock.now_unix());
    }

    /// Reads and applies every fact recorded since the last read; how many.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let mut seen = self.seen.lock().await;
        let now = self.clock.now_unix();
        let mut read = 0;
        loop {
            // Expired facts are read too (the set skips them): filtering them
            // here would leave `seen` below them and read them again.
            let rows = self.store.revocations_after(*seen, i64::MIN, PAGE).await?;
            if let Some(last) = rows.last() {
                *seen = last.id;
            }
            read += rows.len();
            self.apply(&rows, now);
            if (rows.len() as i64) < PAGE {
                return Ok(read);
            }
        }
    }

    /// Keeps the set in step until `shutdown`: a read after every notice
    /// (and after listening resumes), and every `sync_interval`, when
    /// expired entries also leave the set.
    pub async fn run(self: Arc<Self>, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Notices are awaited in a task of their own, never cancelled halfway
        // (which could leave the listening connection mid-message).
        let notices = listener.map(|l| tokio::spawn(listen(self.store.clone(), l, wake.clone())));
        let mut tick = tokio::time::interval(self.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evicted = self.set.evicted();
        metrics.revocation_entries.set(self.set.len() as i64);
        // After a failed read (a connection that died with the network, say),
        // the next one comes soon, not only at the next tick.
        let mut retry: Option<Duration> = None;
        loop {
            let again = async {
                match retry {
                    Some(after) => tokio::time::sleep(after).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tick.tick() => {
                    self.set.prune(self.clock.now_unix());
                }
                _ = again => {}
                _ = shutdown.changed() => break,
            }
            match self.catch_up().await {
                Ok(_) => retry = None,
                Err(e) => {
                    let after = retry
                        .map_or(READ_RETRY_MIN, |r| r * 2)
                        .min(self.sync_interval);
                    tracing::warn!(error = %crate::telemetry::events::chain(&e), retry_ms = after.as_millis() as u64, "Reading new revocations failed; trying again");
                    retry = Some(after);
                }
            }
            metrics.revocation_entries.set(self.set.len() as i64);
            let now_evicted = self.set.evicted();
            metrics
                .revocations_evicted
                .inc_by(now_evicted.saturating_sub(evicted));
            evicted = now_evicted;
        }
        if let Some(task) = notices {
            task.abort();
        }
    }

    /// Loads every fact live now.
    async fn load(&self) -> Result<(), StoreError> {
        let mut seen = self.seen.lock().await;
        // Every fact up to `last` committed before the reads below began:
        // those they skip have expired, so reading resumes above `last`.
        let last = self.store.last_revocation_id().await?;
        let now = self.clock.now_unix();
        let mut after = 0;
        loop {
            let rows = self.store.revocations_after(after, now, PAGE).await?;
            if let Some(r) = rows.last() {
                after = r.id;
            }
            self.apply(&rows, now);
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        *seen = after.max(last);
        tracing::info!(entries = self.set.len(), "Revocations loaded");
        Ok(())
    }

    fn apply(&self, rows: &[RevocationRecord], now: i64) {
        if rows.is_empty() {
            return;
        }
        let revocations: Vec<Revocation> = rows
            .iter()
            .filter_map(|r| match Kind::from_name(&r.kind) {
                Some(kind) => Some(Revocation {
                    kind,
                    value: r.value.clone(),
                    issued_before: r.issued_before,
                    until: r.expires_at,
                }),
                None => {
                    tracing::warn!(kind = %r.kind.escape_debug(), id = r.id, "Revocation of an unknown kind ignored");
                    None
                }
            })
            .collect();
        // A client's revocation is its deletion (perhaps by another process):
        // its remembered record must not authenticate it any more.
        if revocations.iter().any(|r| r.kind == Kind::Client) {
            self.store.catalog_changed();
        }
        let floor = self.set.floor();
        self.set.insert(&revocations, now);
        let raised = self.set.floor();
        if raised != floor {
            tracing::warn!(
                floor = raised,
                max_entries_reached = true,
                "Revocation set full: every built-in token issued at or before the floor is refused"
            );
        }
    }
}

/// Waits for notices and wakes the reader for each; listens again (and wakes
/// it, since notices were missed) after the connection was lost.
async fn listen(store: Arc<dyn Store>, listener: Listener, wake: Arc<Notify>) {
    let mut notices = match listener {
        Listener::Unsupported => return,
        Listener::Listening(n) => Some(n),
        Listener::Retry => None,
    };
    let mut retry = LISTEN_RETRY_MIN;
    loop {
        let outcome = match notices.as_mut() {
            Some(n) => n.next().await,
            None => match store.listen_revocations().await {
                Ok(Some(n)) => {
                    notices = Some(n);
                    Ok(false)
                }
                Ok(None) => return,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(true) => {
                retry = LISTEN_RETRY_MIN;
                wake.notify_one();
            }
            Ok(false) => {
                retry = LISTEN_RETRY_MIN;
                tracing::info!("Listening for revocations again; reading what was missed");
                wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::events::chain(&e), retry_ms = retry.as_millis() as u64, "Lost the revocation notices; listening again");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LISTEN_RETRY_MAX);
            }
        }
    }
}
