//! The PostgreSQL backend, for several replicas sharing one database.
//!
//! The queries are shared with SQLite (`sql.rs`, compiled here for
//! [`sqlx::Postgres`]); this file holds only what differs: connecting, the
//! migrations, how a transaction begins, and the notices of new revocations
//! (`LISTEN`/`NOTIFY`). Every race the store settles is
//! one conditional `UPDATE` at READ COMMITTED: a concurrent writer waits for the
//! row lock, then re-checks the `WHERE` against the committed row and matches
//! nothing, so exactly one replica wins.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::{RevocationNotices, StoreError};

// The shared queries are compiled once per backend: `sql.rs` names its
// database as `super::Db`. See `sql.rs` for why this is not a generic.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

pub use sql::SqlStore as PostgresStore;

/// The database `sql.rs` is compiled for here.
type Db = sqlx::Postgres;

/// Transactions run at the default READ COMMITTED level (see the module docs).
const BEGIN: &str = "BEGIN";

/// Concurrent outbox claimers skip rows another claimer has locked, rather
/// than wait for them and then find them claimed.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// Revocation writers take this lock until they commit, so that ids are
/// handed out in commit order (a reader past id N never misses a later commit
/// with a smaller id). Per schema: replicas of other installations on the same
/// server do not wait for each other. Revocations are rare; issuing never
/// takes it.
const REVOCATION_LOCK: Option<&str> = Some(
    "SELECT pg_advisory_xact_lock(hashtext('portcullis.revocations'), hashtext(current_schema()))",
);

/// The channel new revocations are announced on, with the row id as payload;
/// PostgreSQL delivers the notice when (and only if) the transaction commits.
const REVOCATION_CHANNEL: &str = "portcullis_revocations";
const REVOCATION_NOTIFY: Option<&str> = Some("SELECT pg_notify('portcullis_revocations', $1)");

/// How long taking the listener's connection may wait before it fails (and
/// is tried again later).
const LISTEN_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool of each replica.
const MAX_CONNECTIONS: u32 = 16;

/// A pooled connection idle at least this long is pinged before use, so one
/// the server or the network dropped meanwhile (a restart, a failover, an idle
/// timeout) is replaced instead of failing a request. A connection that served
/// a statement more recently is used as is (if the server dropped it within
/// that second, the one request that next takes it fails with `server_error`
/// and the connection is discarded): sqlx's default pings before every
/// acquisition, a round trip more per store call: refresh rotation makes six
/// to eight store calls, and the pings cost it 10–30 % of its throughput
/// (`benches/RESULTS.md`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects to `url` (`postgres://…`; `?options=-c search_path=…` picks a
    /// schema) and applies pending migrations. Replicas starting at once are
    /// serialised by the migrator's advisory lock.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self::new(pool))
    }
}

/// Listens for new revocations on a connection of its own (not one of the
/// pool's), named `portcullis-revocations/<process id>` in
/// `pg_stat_activity`, so that an operator can tell it apart.
async fn listen_revocations(
    pool: &PgPool,
) -> Result<Option<Box<dyn RevocationNotices>>, StoreError> {
    let name = format!("portcullis-revocations/{}", std::process::id());
    let options = (*pool.connect_options()).clone().application_name(&name);
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(LISTEN_ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&own)
        .await
        .map_err(StoreError::Connect)?;
    listener.ignore_pool_close_event(true);
    listener.listen(REVOCATION_CHANNEL).await?;
    Ok(Some(Box::new(Notices {
        listener,
        broken: false,
    })))
}

/// [`RevocationNotices`] over a [`PgListener`], which reconnects (and listens
/// again) by itself when its connection drops.
struct Notices {
    listener: PgListener,
    /// The last call failed: the connection is gone and was not replaced.
    broken: bool,
}

#[async_trait]
impl RevocationNotices for Notices {
    async fn next(&mut self) -> Result<bool, StoreError> {
        if self.broken {
            // Any statement makes the listener connect and listen again;
            // then whatever was missed must be read.
            sqlx::query("SELECT 1").execute(&mut self.listener).await?;
            self.broken = false;
            return Ok(false);
        }
        match self.listener.try_recv().await {
            Ok(Some(_)) => Ok(true),
            // Lost, and already listening again on a new connection.
            Ok(None) => Ok(false),
            Err(e) => {
                self.broken = true;
                Err(StoreError::Database(e))
            }
        }
    }
}
