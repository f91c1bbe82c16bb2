//! Two replicas (the real binary, twice) on one PostgreSQL schema: a
//! revocation through A reaches B's gateway through PostgreSQL's notice,
//! within [`BOUND`]; when B's listening connection is killed, B listens again
//! and reads what it missed; when B is cut off from the database altogether,
//! what was revoked meanwhile arrives as soon as it reconnects. Both run with
//! `issuer.revocation.sync_interval: 1h`, so the periodic read explains
//! nothing here. Skipped without PostgreSQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::*;

/// How long a revocation through one replica may take to reach the other
/// (a bound for the tests, far above what is measured: milliseconds).
const BOUND: Duration = Duration::from_secs(10);

/// Replica `a` on the database itself and `b` on `b_url` (the same database,
/// or a relay to it), both seeded and running.
struct Replicas {
    a: Portcullis,
    b: Portcullis,
    config: PathBuf,
    seeded: Seeded,
    db: TestDb,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

impl Replicas {
    async fn start(db: TestDb, b_url: Option<String>) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let config = dir.path().join("a.yaml");
        std::fs::write(&config, yaml(db.url(), &up.url(), "1h")).unwrap();
        let b_config = dir.path().join("b.yaml");
        let b_db = b_url.unwrap_or_else(|| db.url().to_owned());
        std::fs::write(&b_config, yaml(&b_db, &up.url(), "1h")).unwrap();
        let seeded = seed(&config, API, EMAIL, PASSWORD);
        let a = Portcullis::start(&config).await;
        let b = Portcullis::start(&b_config).await;
        Replicas {
            a,
            b,
            config,
            seeded,
            db,
            _dir: dir,
            _up: up,
        }
    }

    fn m2m(&self) -> (&str, &str) {
        (&self.seeded.client_id, &self.seeded.client_secret)
    }

    /// A client_credentials token from A that B has verified (and cached).
    async fn token_seen_by_b(&self) -> String {
        let token = client_credentials(&self.a.url(""), self.m2m()).await;
        assert_eq!(status(&self.b, &token).await, 200);
        token
    }

    async fn stop(self) {
        self.a.kill().await;
        self.b.kill().await;
    }
}

/// Polls B's gateway until it refuses `token`; how long that took after
/// `since`. No pause between polls: each is a request of well under a
/// millisecond, and the wait is what is measured.
async fn until_refused(b: &Portcullis, token: &str, since: Instant) -> Duration {
    loop {
        if status(b, token).await == 401 {
            return since.elapsed();
        }
        assert!(since.elapsed() < BOUND, "B still accepts a revoked token");
    }
}

async fn a_revocation_reaches_the_other_replica(db: TestDb) {
    let r = Replicas::start(db, None).await;
    let a = r.a.url("");
    // By jti, many times over: the delay from A's answer to B's refusal.
    let mut delays = Vec::new();
    for _ in 0..20 {
        let token = r.token_seen_by_b().await;
        oauth::revoke(&a, r.m2m(), &token).await;
        let revoked = Instant::now();
        assert_refused(&r.a, &token, "at the replica that revoked").await;
        delays.push(until_refused(&r.b, &token, revoked).await);
        assert_refused(&r.b, &token, "at the other replica").await;
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "revocation delay to the other replica over {} revocations: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        delays.len(),
        ms(delays[0]),
        ms(delays[delays.len() / 2]),
        ms(delays[delays.len() - 1]),
    );

    // A family, through reuse detection at A.
    let issued = code_flow(&a, "web", CALLBACK, "openid read:data", (EMAIL, PASSWORD)).await;
    let first = Tokens::of(&issued);
    let (status_, body) = refresh(&a, "web", &first.refresh).await;
    assert_eq!(status_, 200, "{body}");
    assert_eq!(status(&r.b, &first.access).await, 200);
    let (status_, _) = refresh(&a, "web", &first.refresh).await;
    assert_eq!(status_, 400);
    until_refused(&r.b, &first.access, Instant::now()).await;

    // A user deleted by `portcullis admin`, a third process: its notice
    // reaches both.
    let ada = Tokens::of(&code_flow(&a, "web", CALLBACK, "read:data", (EMAIL, PASSWORD)).await);
    assert_eq!(status(&r.b, &ada.access).await, 200);
    admin(&r.config, &["user", "delete", &sub(&ada.access)]);
    let deleted = Instant::now();
    until_refused(&r.a, &ada.access, deleted).await;
    until_refused(&r.b, &ada.access, deleted).await;
    r.stop().await;
}

async fn a_replica_whose_listener_was_killed_catches_up(db: TestDb) {
    let r = Replicas::start(db, None).await;
    let token = r.token_seen_by_b().await;
    let listener = format!("portcullis-revocations/{}", r.b.pid());
    let killed =
        r.db.rows(
            &format!(
                "SELECT pg_terminate_backend(pid)::text AS killed FROM pg_stat_activity \
                 WHERE application_name = '{listener}'"
            ),
            &["killed"],
        )
        .await;
    assert_eq!(killed, [["true"]], "B's listening connection");
    oauth::revoke(&r.a.url(""), r.m2m(), &token).await;
    until_refused(&r.b, &token, Instant::now()).await;
    within(BOUND, "B to say it listens again", || async {
        !r.b.logged("Listening for revocations again").is_empty()
    })
    .await;
    // And it goes on listening: the next revocation arrives as the first did.
    let next = r.token_seen_by_b().await;
    oauth::revoke(&r.a.url(""), r.m2m(), &next).await;
    until_refused(&r.b, &next, Instant::now()).await;
    r.stop().await;
}

async fn what_was_revoked_while_a_replica_was_cut_off_arrives_when_it_reconnects(db: TestDb) {
    let relay = Relay::start(&db).await;
    let b_url = relay.url(db.url());
    let r = Replicas::start(db, Some(b_url)).await;
    let token = r.token_seen_by_b().await;

    relay.cut();
    oauth::revoke(&r.a.url(""), r.m2m(), &token).await;
    assert_refused(&r.a, &token, "at the replica that revoked").await;
    // B cannot know: nothing reaches it from the database.
    assert_eq!(
        status(&r.b, &token).await,
        200,
        "B learnt of it while cut off"
    );

    relay.restore();
    let reconnected = Instant::now();
    let took = until_refused(&r.b, &token, reconnected).await;
    eprintln!(
        "after the database came back, B refused the token revoked meanwhile in {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    // The line is written before the catch-up read, but the test reads the
    // process's output on a thread of its own: it may come in a little later.
    eventually("B to log that it listens again", || async {
        !r.b.logged("Listening for revocations again").is_empty()
    })
    .await;
    r.stop().await;
}

/// Cases that need two processes on one database: PostgreSQL only.
macro_rules! on_postgres {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(db) = $crate::support::TestDb::postgres().await {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}

on_postgres!(
    a_revocation_reaches_the_other_replica,
    a_replica_whose_listener_was_killed_catches_up,
    what_was_revoked_while_a_replica_was_cut_off_arrives_when_it_reconnects,
);

/// A TCP relay to the database that can cut every connection through it and
/// refuse new ones, as a network partition between one replica and the
/// database would.
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(db: &TestDb) -> Relay {
        let target = match authority(db.url()) {
            a if a.contains(':') => a.to_owned(),
            host => format!("{host}:5432"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (accepting, kept) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().unwrap().push(link.abort_handle());
            }
        });
        Relay { addr, open, links }
    }

    /// `url` with the relay in place of the database's host and port.
    fn url(&self, url: &str) -> String {
        url.replacen(authority(url), &self.addr.to_string(), 1)
    }

    /// Closes every connection through the relay and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Lets connections through again.
    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// The `host:port` of a `postgres://user@host:port/db?…` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap()
}
