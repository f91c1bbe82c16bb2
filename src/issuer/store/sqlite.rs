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

pub use sql::SqlStore as SqliteStore;

/// The database `sql.rs` is compiled for here.
type Db = sqlx::Sqlite;

/// Write transactions take the write lock up front (`BEGIN IMMEDIATE`), so a
/// busy database makes them wait out `busy_timeout` instead of failing when a
/// deferred transaction tries to upgrade its lock.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// SQLite has no row locks: writers are serialised, so claims never overlap.
const SKIP_LOCKED: &str = "";

/// Writers are serialised already, so revocation ids grow in commit order
/// without a lock; and one process (plus the admin CLI's) needs no notices:
/// the readers poll.
const REVOCATION_LOCK: Option<&str> = None;
const REVOCATION_NOTIFY: Option<&str> = None;

/// SQLite sends no notices (see [`REVOCATION_NOTIFY`]).
async fn listen_revocations(
    _pool: &sqlx::SqlitePool,
) -> Result<Option<Box<dyn super::RevocationNotices>>, StoreError> {
    Ok(None)
}

/// Connections in the pool: WAL lets readers run beside the one writer. Four
/// serve as many requests as eight on the issuer's workloads
/// (`benches/RESULTS.md`): writers are serialised anyway, and with fewer
/// connections fewer writers sleep in the busy handler waiting for the write
/// lock (with eight, refresh rotation's p99 was up to twice as high). Each
/// connection is a thread with its own page cache.
const MAX_CONNECTIONS: u32 = 4;

/// Page cache per connection, in KiB (SQLite's default is 2000). The OS page
/// cache still holds the file, so a miss here is a `pread`, not a disk read;
/// with the default, a database of a few hundred thousand refresh families
/// grew the process by 2 MiB per connection under load.
const CACHE_KIB: u32 = 512;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        // Each connection to `:memory:` is a database of its own: keep exactly
        // one, for as long as the pool lives.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
        if let Some(file) = &file {
            owner_only::prepare(file).map_err(StoreError::File)?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a crash of the process (kill -9); only
            // a power loss may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .foreign_keys(true);
        // No ping before handing out a connection: an embedded database cannot
        // hang up, and the ping is a round trip through the connection's
        // thread on every store call.
        let pool = SqlitePoolOptions::new().test_before_acquire(false);
        let pool = if in_memory {
            pool.min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(MAX_CONNECTIONS)
        }
        .connect_with(options)
        .await
        .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        if let Some(file) = &file {
            // WAL mode has created the -wal and -shm files by now (SQLite
            // gives them the database file's mode; this makes sure).
            owner_only::tighten_companions(file).map_err(StoreError::File)?;
        }
        Ok(Self::new(pool))
    }
}

/// The database file and its `-wal` and `-shm` companions are readable by
/// their owner only (0600): they hold password hashes, client secret hashes,
/// and, without a master key, signing keys and webhook secrets.
#[cfg(unix)]
mod owner_only {
    use std::fs::{OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    use std::path::{Path, PathBuf};

    const MODE: u32 = 0o600;

    /// Creates the database file with mode 0600 if it is missing (SQLite
    /// reads an empty file as a new database), or tightens an existing one.
    pub(super) fn prepare(file: &Path) -> io::Result<()> {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(file)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(file),
            Err(e) => Err(e),
        }
    }

    /// Tightens the `-wal`, `-shm` and `-journal` files next to `file`, where
    /// they exist.
    pub(super) fn tighten_companions(file: &Path) -> io::Result<()> {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            match tighten(&PathBuf::from(name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn tighten(path: &Path) -> io::Result<()> {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, Permissions::from_mode(MODE))?;
            tracing::warn!(file = %path.display(), was = format!("{mode:o}"), "Issuer database file was readable by others; now 0600");
        }
        Ok(())
    }
}

/// Elsewhere file modes are the platform's business.
#[cfg(not(unix))]
mod owner_only {
    use std::io;
    use std::path::Path;

    pub(super) fn prepare(_: &Path) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn tighten_companions(_: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::store::{ApiResource, Store};

    #[tokio::test]
    async fn an_in_memory_database_keeps_its_data_across_calls() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let api = ApiResource {
            identifier: "https://api.test".into(),
            scopes: vec!["read".into()],
        };
        store.upsert_api_resource(&api).await.unwrap();
        // A second connection would see an empty database of its own.
        assert_eq!(store.list_api_resources().await.unwrap(), vec![api]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_missing_file_is_created_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let first = SqliteStore::open(&url).await.unwrap();
        first.try_rotation_lock("a", 0, 60).await.unwrap();
        first.close().await;
        // Reopening finds the schema migrated and the lease held.
        let again = SqliteStore::open(&url).await.unwrap();
        assert!(!again.try_rotation_lock("b", 1, 60).await.unwrap());
        again.close().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let mode = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(std::path::PathBuf::from(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.try_rotation_lock("a", 0, 60).await.unwrap();
        // The write went to the WAL; all three files exist now.
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "{suffix}");
        }
        store.close().await;
        // A file an operator left readable by others is tightened at open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = SqliteStore::open(&url).await.unwrap();
        assert_eq!(mode(""), 0o600);
        again.close().await;
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_connect_error() {
        let err = SqliteStore::open("sqlite://?mode=bogus").await.err();
        assert!(matches!(err, Some(StoreError::Connect(_))), "{err:?}");
    }
}
