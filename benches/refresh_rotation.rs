//! Refresh-token rotation throughput of the built-in issuer, end to end over
//! HTTP: `grant_type=refresh_token` at `/oauth/token`, each client rotating its
//! own chain (every response's `refresh_token` is the next request's), on
//! PostgreSQL and on SQLite.
//!
//! ```sh
//! cargo bench --bench refresh_rotation                      # both backends, both client kinds, 4 s each
//! cargo bench --bench refresh_rotation -- --db postgres --clients 64 --secs 10
//! cargo bench --bench refresh_rotation -- --db sqlite --client public --hook off,on --clients 1
//! ```
//!
//! Options (each also an environment variable, the flag wins):
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--db postgres,sqlite` | `PORTCULLIS_BENCH_DB` | `postgres,sqlite` |
//! | `--client public,confidential` | `PORTCULLIS_BENCH_CLIENT` | `public,confidential` |
//! | `--clients N` (concurrent keep-alive connections) | `PORTCULLIS_BENCH_CLIENTS` | 32 |
//! | `--secs D` (timed seconds per cell) | `PORTCULLIS_BENCH_SECS` | 4 |
//! | `--warmup W` (untimed seconds per cell) | `PORTCULLIS_BENCH_WARMUP` | 1 |
//! | `--workers N` (`server.workers`) | `PORTCULLIS_BENCH_WORKERS` | one per CPU |
//! | `--scope S` (the families' scope) | `PORTCULLIS_BENCH_SCOPE` | `openid offline_access read:data write:data` |
//! | `--id-token-alg A` (the clients' `id_token_signed_response_alg`) | `PORTCULLIS_BENCH_ID_TOKEN_ALG` | the issuer's default (RS256) |
//! | `--hook off,on` (a `token.pre_issue` hook on 127.0.0.1 that allows and adds a claim) | `PORTCULLIS_BENCH_HOOK` | `off` |
//! | | `PORTCULLIS_BENCH_POSTGRES_URL` | `postgres://postgres@127.0.0.1:5432/test` |
//!
//! The issuer runs in this process as `portcullis run` runs it (`server::start`
//! on a multi-threaded control runtime, which serves the issuer's endpoints,
//! plus its worker threads); the load generator runs on a single-threaded
//! runtime of its own thread, one HTTP/1.1 keep-alive connection per client.
//! PostgreSQL gets a fresh schema per cell (dropped afterwards, as the tests
//! do); SQLite a fresh file in a temp dir. Families are seeded through the
//! store as the authorization-code grant creates them: a user who is an
//! `editor` in an organization, an API resource, so every rotation also looks
//! up the membership, the resource and the role, as in production.
//!
//! Every timed response must be 200 with a new refresh token: anything else
//! fails the run (exit status 1) after the cleanup.
//!
//! With `--hook on`, a hook receiver runs in this process on the control
//! runtime (HTTP/1.1, it reads the signed request and answers
//! `{"allow":true,"claims":{"plan":"gold"}}`), and the run first times 2,000
//! sequential POSTs of a hook-sized body to it over one keep-alive connection:
//! the bare round trip a hook call costs at least.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sqlx::Connection;
use tokio::net::TcpStream;

use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::issuer::store::{self, Membership, Organization, RefreshFamily, Role, Store, User};
use portcullis::issuer::token::{random_token, token_hash};
use portcullis::server::{self, Options};

const API: &str = "https://api.bench.test";
const SECRET: &str = "bench-secret-0123456789abcdef";
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const HOOK_SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// What the bench's hook receiver answers.
const HOOK_ANSWER: &str = r#"{"allow":true,"claims":{"plan":"gold"}}"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Db {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `token_endpoint_auth_method=none`: `client_id` in the form.
    Public,
    /// `client_secret_basic` (argon2id hash, verified once then remembered).
    Confidential,
}

#[derive(Debug, Clone)]
struct Settings {
    dbs: Vec<Db>,
    kinds: Vec<Kind>,
    clients: usize,
    secs: u64,
    warmup: u64,
    workers: Option<usize>,
    scope: String,
    id_token_alg: Option<String>,
    hooks: Vec<bool>,
    postgres: String,
}

/// One cell's outcome.
struct Outcome {
    db: Db,
    kind: Kind,
    hook: bool,
    rotations: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("refresh_rotation: FAILED: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let s = settings()?;
    println!(
        "refresh rotation: {} clients (HTTP/1.1 keep-alive, one chain each), {} s warm-up + {} s timed per cell, server.workers {}, scope \"{}\", ID tokens {}",
        s.clients,
        s.warmup,
        s.secs,
        s.workers
            .map_or_else(|| "= CPUs".to_owned(), |w| w.to_string()),
        s.scope,
        s.id_token_alg.as_deref().unwrap_or("default alg"),
    );
    let mut outcomes = Vec::new();
    let mut failure = None;
    if s.hooks.contains(&true) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let (p50, p99) = rt.block_on(bare_round_trip())?;
        println!(
            "  bare POST round trip to the hook receiver: p50 {:.3} ms  p99 {:.3} ms (2,000 sequential, keep-alive)",
            ms(p50),
            ms(p99)
        );
    }
    'cells: for &db in &s.dbs {
        for &kind in &s.kinds {
            for &hook in &s.hooks {
                match cell(&s, db, kind, hook) {
                    Ok(o) => {
                        println!(
                            "  {:<8} {:<12} {:>7.0} rotations/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} in {:.1} s)",
                            name(db),
                            label(kind, hook),
                            o.rotations as f64 / o.elapsed.as_secs_f64(),
                            ms(o.p50),
                            ms(o.p99),
                            ms(o.max),
                            o.rotations,
                            o.elapsed.as_secs_f64(),
                        );
                        outcomes.push(o);
                    }
                    Err(e) => {
                        failure = Some(e.context(format!("{} / {}", name(db), label(kind, hook))));
                        break 'cells;
                    }
                }
            }
        }
    }
    if !outcomes.is_empty() {
        println!();
        println!(
            "| storage | client | rotations/s | p50 ms | p99 ms | max ms | rotations | errors |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for o in &outcomes {
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | 0 |",
                name(o.db),
                label(o.kind, o.hook),
                o.rotations as f64 / o.elapsed.as_secs_f64(),
                ms(o.p50),
                ms(o.p99),
                ms(o.max),
                o.rotations,
            );
        }
        let rate = |db: Db, kind: Kind| {
            outcomes
                .iter()
                .find(|o| o.db == db && o.kind == kind && !o.hook)
                .map(|o| o.rotations as f64 / o.elapsed.as_secs_f64())
        };
        for &kind in &s.kinds {
            if let (Some(pg), Some(lite)) = (rate(Db::Postgres, kind), rate(Db::Sqlite, kind)) {
                println!(
                    "PostgreSQL / SQLite ({}): {:.2}×",
                    kind_name(kind),
                    pg / lite
                );
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn name(db: Db) -> &'static str {
    match db {
        Db::Postgres => "postgres",
        Db::Sqlite => "sqlite",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Public => "public",
        Kind::Confidential => "confidential",
    }
}

/// The client kind, and `+hook` when a `token.pre_issue` hook is on.
fn label(kind: Kind, hook: bool) -> String {
    match hook {
        true => format!("{} +hook", kind_name(kind)),
        false => kind_name(kind).to_owned(),
    }
}

fn settings() -> anyhow::Result<Settings> {
    let env = |n: &str| std::env::var(n).ok();
    let mut db = env("PORTCULLIS_BENCH_DB").unwrap_or_else(|| "postgres,sqlite".into());
    let mut kind = env("PORTCULLIS_BENCH_CLIENT").unwrap_or_else(|| "public,confidential".into());
    let mut clients = env("PORTCULLIS_BENCH_CLIENTS").unwrap_or_else(|| "32".into());
    let mut secs = env("PORTCULLIS_BENCH_SECS").unwrap_or_else(|| "4".into());
    let mut warmup = env("PORTCULLIS_BENCH_WARMUP").unwrap_or_else(|| "1".into());
    let mut workers = env("PORTCULLIS_BENCH_WORKERS");
    let mut scope = env("PORTCULLIS_BENCH_SCOPE")
        .unwrap_or_else(|| "openid offline_access read:data write:data".into());
    let mut id_token_alg = env("PORTCULLIS_BENCH_ID_TOKEN_ALG").unwrap_or_default();
    let mut hook = env("PORTCULLIS_BENCH_HOOK").unwrap_or_else(|| "off".into());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        let slot = match flag.as_str() {
            // `cargo bench` passes `--bench`; a filter or `--nocapture` may follow.
            "--bench" | "--nocapture" | "--quiet" | "-q" => continue,
            "--db" => &mut db,
            "--client" => &mut kind,
            "--clients" => &mut clients,
            "--secs" => &mut secs,
            "--warmup" => &mut warmup,
            "--scope" => &mut scope,
            "--id-token-alg" => &mut id_token_alg,
            "--hook" => &mut hook,
            "--workers" => {
                workers = Some(match inline {
                    Some(v) => v,
                    None => args.next().context("--workers needs a value")?,
                });
                continue;
            }
            other if other.starts_with('-') => bail!("unknown option {other}"),
            _ => continue,
        };
        *slot = match inline {
            Some(v) => v,
            None => args
                .next()
                .with_context(|| format!("{flag} needs a value"))?,
        };
    }
    let dbs = db
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| match d {
            "postgres" | "pg" | "postgresql" => Ok(Db::Postgres),
            "sqlite" => Ok(Db::Sqlite),
            other => bail!("unknown database {other} (postgres, sqlite)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kinds = kind
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| match k {
            "public" => Ok(Kind::Public),
            "confidential" => Ok(Kind::Confidential),
            other => bail!("unknown client kind {other} (public, confidential)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hooks = hook
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match h {
            "off" => Ok(false),
            "on" => Ok(true),
            other => bail!("unknown --hook value {other} (off, on)"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = Settings {
        dbs,
        kinds,
        hooks,
        clients: clients.parse().context("--clients")?,
        secs: secs.parse().context("--secs")?,
        warmup: warmup.parse().context("--warmup")?,
        workers: workers
            .map(|w| w.parse())
            .transpose()
            .context("--workers")?,
        scope,
        id_token_alg: Some(id_token_alg).filter(|a| !a.is_empty()),
        postgres: env("PORTCULLIS_BENCH_POSTGRES_URL").unwrap_or_else(|| DEFAULT_POSTGRES.into()),
    };
    ensure!(settings.clients > 0, "--clients must be at least 1");
    ensure!(settings.secs > 0, "--secs must be at least 1");
    Ok(settings)
}

// === one cell: a database, an issuer, the load ===

/// A database that lives as long as one cell.
enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        base: String,
        schema: String,
    },
}

impl Database {
    async fn create(s: &Settings, db: Db) -> anyhow::Result<Database> {
        Ok(match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}/issuer.db", dir.path().display());
                Database::Sqlite { _dir: dir, url }
            }
            Db::Postgres => {
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&s.postgres)
                    .await
                    .with_context(|| format!("cannot connect to {}", s.postgres))?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Database::Postgres {
                    base: s.postgres.clone(),
                    schema,
                }
            }
        })
    }

    fn url(&self) -> String {
        match self {
            Database::Sqlite { url, .. } => url.clone(),
            Database::Postgres { base, schema } => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    async fn drop_it(self) -> anyhow::Result<()> {
        if let Database::Postgres { base, schema } = self {
            let mut admin = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("could not drop schema {schema}"))?;
            admin.close().await?;
        }
        Ok(())
    }
}

fn yaml(
    db: &str,
    workers: Option<usize>,
    id_token_alg: Option<&str>,
    hook: Option<std::net::SocketAddr>,
) -> String {
    let workers = workers
        .map(|w| format!("  workers: {w}\n"))
        .unwrap_or_default();
    let hooks = hook
        .map(|addr| {
            format!(
                "  webhook_address_policy: {{ allow_private: true }}\n  hooks:\n    - event: token.pre_issue\n      url: \"http://{addr}/pre-issue\"\n      secret: \"whsec_{HOOK_SECRET}\"\n"
            )
        })
        .unwrap_or_default();
    let alg = id_token_alg
        .map(|a| format!("      id_token_signed_response_alg: {a}\n"))
        .unwrap_or_default();
    format!(
        r#"server:
  listen: "127.0.0.1:0"
{workers}admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.bench.test"
  database: "{db}"
  signing_algs: [ES256, RS256]
{hooks}  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: backend
      client_secret: "{SECRET}"
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data, write:data] }}
{alg}    - client_id: spa
      public: true
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data, write:data] }}
{alg}issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "http://127.0.0.1:9" }}
routes:
  - path: /*
    upstream: api
"#
    )
}

/// Runs one cell on runtimes of its own; the database is dropped whatever happens.
fn cell(s: &Settings, db: Db, kind: Kind, hook: bool) -> anyhow::Result<Outcome> {
    // The control runtime, built as `portcullis run` builds it.
    let control = tokio::runtime::Builder::new_multi_thread()
        .thread_name("portcullis-control")
        .enable_all()
        .build()?;
    let database = control.block_on(Database::create(s, db))?;
    let result = control.block_on(serve_and_load(s, db, kind, hook, &database.url()));
    let dropped = control.block_on(database.drop_it());
    control.shutdown_timeout(Duration::from_secs(5));
    let outcome = result?;
    dropped?;
    Ok(outcome)
}

async fn serve_and_load(
    s: &Settings,
    db: Db,
    kind: Kind,
    hook: bool,
    url: &str,
) -> anyhow::Result<Outcome> {
    let receiver = match hook {
        true => Some(hook_receiver().await?),
        false => None,
    };
    let config = Config::from_yaml(
        &yaml(url, s.workers, s.id_token_alg.as_deref(), receiver),
        Path::new("bench.yaml"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = server::start(config, Options::default())
        .await
        .context("cannot start the issuer")?;
    let addr = running.proxy_addr;
    let store = store::open(url).await.context("cannot open the store")?;
    let seeded = seed(store.as_ref(), s.clients, kind, &s.scope).await;
    store.close().await;
    let tokens = match seeded {
        Ok(t) => t,
        Err(e) => {
            running.shutdown().await;
            return Err(e);
        }
    };
    // The load runs on a thread of its own (a single-threaded runtime) so the
    // issuer's runtimes are left to the issuer.
    let (warmup, secs) = (s.warmup, s.secs);
    let load = std::thread::spawn(move || -> anyhow::Result<(usize, Duration, Vec<u32>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(drive(addr, kind, tokens, warmup, secs))
    });
    let loaded = tokio::task::spawn_blocking(move || load.join())
        .await
        .context("load thread")?;
    running.shutdown().await;
    let (rotations, elapsed, mut latencies) = match loaded {
        Ok(r) => r?,
        Err(_) => bail!("the load thread panicked"),
    };
    ensure!(rotations > 0, "no rotation completed");
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        Duration::from_micros(u64::from(latencies[i]))
    };
    Ok(Outcome {
        db,
        kind,
        hook,
        rotations,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    })
}

/// A user who is an `editor` in `org_bench`, and `n` refresh families of the
/// client `kind` uses, as the authorization-code grant creates them; their
/// first refresh tokens.
async fn seed(s: &dyn Store, n: usize, kind: Kind, scope: &str) -> anyhow::Result<Vec<String>> {
    let now = SystemClock.now_unix();
    let user = store::new_id("usr");
    s.create_organization(&Organization {
        id: "org_bench".into(),
        name: "Bench".into(),
        created_at: now,
    })
    .await?;
    s.create_user(&User {
        id: user.clone(),
        email: Some(format!("{user}@bench.test")),
        name: Some("Bench".into()),
        picture: None,
        email_verified: true,
        password_hash: None,
        created_at: now,
        updated_at: now,
        anonymous: false,
        anonymized_at: None,
    })
    .await?;
    s.create_role(&Role {
        name: "editor".into(),
        grants: [(
            API.to_owned(),
            vec!["read:data".into(), "write:data".into()],
        )]
        .into_iter()
        .collect(),
        created_at: now,
    })
    .await?;
    s.add_membership(&Membership {
        org_id: "org_bench".into(),
        user_id: user.clone(),
        roles: vec!["editor".into()],
        created_at: now,
    })
    .await?;
    let client = match kind {
        Kind::Public => "spa",
        Kind::Confidential => "backend",
    };
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let token = random_token(32);
        s.create_family(&RefreshFamily {
            id: store::new_id("fam"),
            client_id: client.into(),
            user_id: user.clone(),
            org_id: Some("org_bench".into()),
            scope: scope.to_owned(),
            resource: Some(API.into()),
            auth_time: now,
            generation: 0,
            current_hash: token_hash(&token),
            previous_hash: None,
            rotated_at: None,
            created_at: now,
            absolute_expires_at: now + 30 * 86_400,
            idle_expires_at: None,
            revoked_at: None,
        })
        .await?;
        tokens.push(token);
    }
    Ok(tokens)
}

// === the load ===

/// One client: a keep-alive connection and the head of its chain.
struct Chain {
    send: http1::SendRequest<Full<Bytes>>,
    token: String,
    auth: Option<String>,
}

impl Chain {
    async fn open(addr: std::net::SocketAddr, kind: Kind, token: String) -> anyhow::Result<Chain> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let auth = match kind {
            Kind::Public => None,
            Kind::Confidential => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("backend:{SECRET}"))
            )),
        };
        Ok(Chain { send, token, auth })
    }

    /// One rotation: the next token replaces the current one.
    async fn rotate(&mut self) -> anyhow::Result<()> {
        let mut body = format!(
            "grant_type=refresh_token&refresh_token={}",
            form_urlencoded::byte_serialize(self.token.as_bytes()).collect::<String>()
        );
        if self.auth.is_none() {
            body.push_str("&client_id=spa");
        }
        let mut req = Request::post("/oauth/token")
            .header("host", "issuer.bench.test")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let next = json["refresh_token"]
            .as_str()
            .context("a 200 without a refresh_token")?;
        ensure!(next != self.token, "the refresh token did not rotate");
        self.token = next.to_owned();
        Ok(())
    }
}

/// Every client rotates its chain for `warmup` seconds untimed, then `secs`
/// seconds timed: the count, the timed span, each timed latency in µs.
async fn drive(
    addr: std::net::SocketAddr,
    kind: Kind,
    tokens: Vec<String>,
    warmup: u64,
    secs: u64,
) -> anyhow::Result<(usize, Duration, Vec<u32>)> {
    let mut chains = Vec::with_capacity(tokens.len());
    for t in tokens {
        chains.push(Chain::open(addr, kind, t).await?);
    }
    let start = Instant::now();
    let timed_from = start + Duration::from_secs(warmup);
    let until = timed_from + Duration::from_secs(secs);
    let tasks: Vec<_> = chains
        .into_iter()
        .map(|mut chain| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    chain.rotate().await?;
                    if sent >= timed_from {
                        let us = sent.elapsed().as_micros();
                        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("a client task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = Instant::now().saturating_duration_since(timed_from);
    Ok((all.len(), elapsed, all))
}

// === the hook receiver ===

/// A `token.pre_issue` receiver on 127.0.0.1 that reads each request and
/// allows it with one added claim; its address. Runs until the runtime ends.
async fn hook_receiver() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(HOOK_ANSWER.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// 2,000 sequential POSTs of a hook-sized body to a fresh receiver over one
/// keep-alive connection (after 200 untimed): p50 and p99.
async fn bare_round_trip() -> anyhow::Result<(Duration, Duration)> {
    let addr = hook_receiver().await?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = Bytes::from(
        serde_json::json!({
            "id": "evt_0123456789abcdef0123456789abcdef",
            "event": "token.pre_issue",
            "created_at": "2026-01-01T00:00:00.000000Z",
            "data": {"grant_type": "refresh_token", "client_id": "spa", "sub": "usr_0123456789abcdef0123456789abcdef", "aud": API, "scope": "openid offline_access read:data write:data", "org_id": "org_bench"}
        })
        .to_string(),
    );
    let mut latencies = Vec::with_capacity(2000);
    for i in 0..2200 {
        let req = Request::post("/pre-issue")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("webhook-id", "evt_0123456789abcdef0123456789abcdef")
            .header("webhook-timestamp", "1800000000")
            .header(
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            )
            .body(Full::new(body.clone()))?;
        let sent = Instant::now();
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let answer = resp.into_body().collect().await?.to_bytes();
        ensure!(
            answer.as_ref() == HOOK_ANSWER.as_bytes(),
            "unexpected answer"
        );
        if i >= 200 {
            latencies.push(sent.elapsed());
        }
    }
    latencies.sort_unstable();
    Ok((
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    ))
}
