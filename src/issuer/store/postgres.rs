//! The PostgreSQL backend, for several replicas sharing one database.
//!
//! The queries are shared with SQLite (`sql.rs`, compiled here for
//! [`sqlx::Postgres`]); this file holds only what differs: connecting, the
//! migrations, and how a transaction begins. Every race the store settles is
//! one conditional `UPDATE` at READ COMMITTED: a concurrent writer waits for the
//! row lock, then re-checks the `WHERE` against the committed row and matches
//! nothing, so exactly one replica wins.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;

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
