//! The SQLite backend, the embedded default: one file, WAL mode, a small pool.
//!
//! The queries are shared with PostgreSQL (`sql.rs`, compiled here for
//! [`sqlx::Sqlite`]); this file holds only what differs: connecting, pragmas,
//! the migrations, and how a transaction begins.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;

// The shared queries are compiled once per backend: `sql.rs` names its
// database as `super::Db`. See `sql.rs` for why this is not a generic.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

/// The database `sql.rs` is compiled for here.
type Db = sqlx::Sqlite;

/// Write transactions take the write lock up front (`BEGIN IMMEDIATE`), so a
/// busy database makes them wait out `busy_timeout` instead of failing when a
/// deferred transaction tries to upgrade its lock.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// SQLite has no row locks: writers are serialised, so claims never overlap.
const SKIP_LOCKED: &str = "";

/// Connections in the pool: WAL lets readers run beside the one writer.
const MAX_CONNECTIONS: u32 = 8;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

pub use sql::SqlStore as SqliteStore;

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a crash of the process (kill -9); only
            // a power loss may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // Each connection to `:memory:` is a database of its own: keep exactly
        // one, for as long as the pool lives.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self::new(pool))
    }
}
