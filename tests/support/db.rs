//! Issuer databases for tests: a SQLite file, or a fresh PostgreSQL schema
//! (`$PORTCULLIS_TEST_POSTGRES_URL`), and `on_both_databases!`, which runs a
//! case on each.

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// Where the tests look for PostgreSQL when the variable is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server for tests: the variable's URL (a test then fails if it
/// is unreachable: CI asked for it), else the default when a connection to it
/// succeeds; `None` after recording a skip.
pub async fn postgres_url() -> Option<String> {
    static PROBE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    if let Ok(url) = std::env::var(POSTGRES_URL) {
        return Some(url);
    }
    let reachable = *PROBE
        .get_or_init(|| async {
            use sqlx::Connection as _;
            let attempt = sqlx::PgConnection::connect(DEFAULT_POSTGRES_URL);
            match tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await {
                Ok(Ok(c)) => {
                    let _ = c.close().await;
                    true
                }
                _ => false,
            }
        })
        .await;
    if reachable {
        Some(DEFAULT_POSTGRES_URL.to_owned())
    } else {
        super::skip(&format!(
            "needs PostgreSQL: {POSTGRES_URL} is unset and nothing answers at {DEFAULT_POSTGRES_URL}"
        ));
        None
    }
}

/// An issuer database that lives as long as one test: a SQLite file in a
/// temporary directory, or a fresh schema on `$PORTCULLIS_TEST_POSTGRES_URL`,
/// dropped when the value is dropped (also when the test panicked).
pub struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>, // (base url, schema)
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            url: format!("sqlite://{}/issuer.db", dir.path().display()),
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A fresh schema on the tests' PostgreSQL: `$PORTCULLIS_TEST_POSTGRES_URL`,
    /// else the documented default (`postgres://postgres@127.0.0.1:5432/test`)
    /// when something answers there; `None` (the test says it was skipped)
    /// when neither is available.
    pub async fn postgres() -> Option<TestDb> {
        use sqlx::Connection as _;
        let base = postgres_url().await?;
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .expect("create schema");
        admin.close().await.expect("close");
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            _dir: None,
            postgres: Some((base, schema)),
        })
    }

    /// The `issuer.database` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a PostgreSQL schema (else a SQLite file).
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs one SQL statement on the database (test-only tampering, such as
    /// moving a key's schedule), returning the rows affected.
    pub async fn execute(&self, sql: &str) -> u64 {
        use sqlx::Connection as _;
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let n = sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
            n.rows_affected()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let n = sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
            n.rows_affected()
        }
    }

    /// The columns `columns` of the rows `sql` selects, as text (integers
    /// rendered in decimal, NULL as "NULL").
    pub async fn rows(&self, sql: &str, columns: &[&str]) -> Vec<Vec<String>> {
        use sqlx::{Connection as _, Row as _};
        macro_rules! read {
            ($conn:ty) => {{
                let mut c = <$conn>::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap();
                c.close().await.unwrap();
                rows.iter()
                    .map(|row| {
                        columns
                            .iter()
                            .map(|&name| {
                                if let Ok(v) = row.try_get::<Option<String>, _>(name) {
                                    return v.unwrap_or_else(|| "NULL".to_owned());
                                }
                                match row.try_get::<Option<i64>, _>(name) {
                                    Ok(v) => v.map_or_else(|| "NULL".to_owned(), |v| v.to_string()),
                                    Err(e) => panic!("column {name}: {e}"),
                                }
                            })
                            .collect()
                    })
                    .collect()
            }};
        }
        if self.is_postgres() {
            read!(sqlx::PgConnection)
        } else {
            read!(sqlx::SqliteConnection)
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, schema)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async: drop the schema on a runtime of its own.
        let name = schema.clone();
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection as _;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
            })
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop schema {name}");
        }
    }
}

/// Declares each `case` (an `async fn(TestDb)`) twice: `sqlite::case` on a
/// temporary SQLite file and `postgres::case` on a fresh PostgreSQL schema
/// (which prints "skipped" and passes when the URL is unset). Attributes before
/// a case (`#[ignore = "…"]`) go on both of its tests.
#[macro_export]
macro_rules! on_both_databases {
    ($($(#[$meta:meta])* $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn $case() {
                    super::$case($crate::support::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn $case() {
                    if let Some(db) = $crate::support::TestDb::postgres().await {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}
