//! Webhook delivery end to end: events enqueued in the outbox reach recording
//! receivers, signed per Standard Webhooks, with retries after a failure and the
//! `events` filter honoured; a receiver's answer is read only up to its cap. Runs on a manual clock, so that backoff passes
//! without waiting, on a temporary SQLite database and, when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis::clock::{Clock, ManualClock};
use portcullis::issuer::manage;
use portcullis::issuer::store::{self, Store, Webhook};
use portcullis::server::Options;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "c2Vjb25kLXNlY3JldC1rZXktZm9yLXRlc3Rz";

struct Env {
    db: TestDb,
    clock: Arc<ManualClock>,
}

fn env(db: TestDb) -> Env {
    Env {
        db,
        clock: Arc::new(ManualClock::new(now())),
    }
}

/// The address policy of these tests: the receivers listen on 127.0.0.1,
/// which the default policy refuses.
const DEVELOPMENT: &str = "{ allow_private: true }";

/// `hooks` is the YAML list under `issuer.webhooks`; receivers on private
/// addresses allowed.
async fn gateway(env: &Env, hooks: &str) -> Gateway {
    gateway_with_policy(env, hooks, DEVELOPMENT).await
}

/// As [`gateway`], with `policy` as `issuer.webhook_address_policy`.
async fn gateway_with_policy(env: &Env, hooks: &str, policy: &str) -> Gateway {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  webhook_address_policy: {policy}
  resources:
    - identifier: "https://api.example.test"
      scopes: [read:data]
  webhooks:
{hooks}
issuers:
  - id: local
    builtin: true
    audiences: ["https://api.example.test"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
"#,
        db = env.db.url(),
        up = up.url(),
    );
    let options = Options {
        clock: env.clock.clone(),
        ..Options::default()
    };
    Gateway::start_with(&yaml, options).await
}

fn hook(receiver: &Upstream, secret: &str, events: Option<&str>) -> String {
    let mut s = format!(
        "    - url: \"{}/hook\"\n      secret: \"whsec_{secret}\"\n",
        receiver.url()
    );
    if let Some(events) = events {
        s.push_str(&format!("      events: [{events}]\n"));
    }
    s
}

async fn enqueue(env: &Env, name: &str, data: Value) -> (Arc<dyn Store>, String) {
    let store = store::open(env.db.url()).await.unwrap();
    let event = manage::event(name, env.clock.now_unix(), data);
    store.enqueue_event(&event).await.unwrap();
    (store, event.id)
}

/// Polls until `receiver` has `n` requests, advancing the manual clock so that
/// any retry falls due; fails after a generous bound.
async fn wait_for(env: &Env, receiver: &Upstream, n: usize) {
    for _ in 0..400 {
        if receiver.count() >= n {
            return;
        }
        env.clock.advance(10);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("receiver got {} requests, wanted {n}", receiver.count());
}

fn expected_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &STANDARD.decode(secret).unwrap());
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()))
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn an_event_is_posted_signed(db: TestDb) {
    let env = env(db);
    let receiver = Upstream::start().await;
    let gw = gateway(&env, &hook(&receiver, SECRET, None)).await;
    let (_store, id) = enqueue(&env, "user.created", json!({"user_id": "usr_1"})).await;

    wait_for(&env, &receiver, 1).await;
    let r = receiver.last();
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/hook");
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "webhook-id"), id);
    let ts = header(&r, "webhook-timestamp");
    assert!(ts.parse::<i64>().unwrap() >= now());
    assert_eq!(
        header(&r, "webhook-signature"),
        expected_signature(SECRET, &id, ts, &r.body)
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["event"], "user.created");
    assert_eq!(body["data"], json!({"user_id": "usr_1"}));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    gw.shutdown().await;
}

async fn a_failed_delivery_is_retried(db: TestDb) {
    let env = env(db);
    let receiver = Upstream::start().await;
    receiver.set_status(500);
    let gw = gateway(&env, &hook(&receiver, SECRET, None)).await;
    let (_store, id) = enqueue(&env, "token.revoked", json!({})).await;

    wait_for(&env, &receiver, 1).await;
    receiver.set_status(200);
    wait_for(&env, &receiver, 2).await;
    assert_eq!(header(&receiver.last(), "webhook-id"), id);
    gw.shutdown().await;
}

/// A retry goes only to the webhooks the event has not reached yet.
async fn a_retry_skips_the_webhooks_already_reached(db: TestDb) {
    let env = env(db);
    let healthy = Upstream::start().await;
    let failing = Upstream::start().await;
    failing.set_status(503);
    let hooks = format!(
        "{}{}",
        hook(&healthy, SECRET, None),
        hook(&failing, OTHER_SECRET, None)
    );
    let gw = gateway(&env, &hooks).await;
    let (_store, id) = enqueue(&env, "token.revoked", json!({})).await;
    wait_for(&env, &failing, 2).await;
    failing.set_status(200);
    wait_for(&env, &failing, 3).await;
    assert_eq!(header(&failing.last(), "webhook-id"), id);
    assert_eq!(healthy.count(), 1, "the healthy webhook got the event once");
    // Every POST is counted by outcome: two delivered, two failed (at least;
    // the counter is bumped after the receiver saw the request).
    let delivered = r#"portcullis_webhook_deliveries_total{outcome="delivered"}"#;
    let failed = r#"portcullis_webhook_deliveries_total{outcome="failed"}"#;
    eventually("the delivery counters", || async {
        gw.metric(delivered).await == 2.0 && gw.metric(failed).await == 2.0
    })
    .await;
    assert_eq!(
        gw.metric("portcullis_webhook_events_abandoned_total").await,
        0.0
    );
    gw.shutdown().await;
}

async fn the_events_filter_is_honoured_for_configured_and_stored_webhooks(db: TestDb) {
    let env = env(db);
    let unwanted = Upstream::start().await;
    let wanted = Upstream::start().await;
    let stored = Upstream::start().await;
    let hooks = format!(
        "{}{}",
        hook(&unwanted, OTHER_SECRET, Some("key.rotated")),
        hook(&wanted, SECRET, Some("user.created, user.deleted")),
    );
    let gw = gateway(&env, &hooks).await;
    let db = store::open(env.db.url()).await.unwrap();
    db.upsert_webhook(&Webhook {
        id: "wh_stored".to_owned(),
        url: format!("{}/stored", stored.url()),
        secret: format!("whsec_{OTHER_SECRET}"),
        events: Some(vec!["user.created".to_owned()]),
        created_at: now(),
        previous_secret: None,
        previous_secret_until: None,
    })
    .await
    .unwrap();
    let (_store, id) = enqueue(&env, "user.created", json!({})).await;

    wait_for(&env, &wanted, 1).await;
    wait_for(&env, &stored, 1).await;
    let r = stored.last();
    assert_eq!(r.target, "/stored");
    let ts = header(&r, "webhook-timestamp");
    assert_eq!(
        header(&r, "webhook-signature"),
        expected_signature(OTHER_SECRET, &id, ts, &r.body)
    );
    // The unwanted webhook comes first in the list, so it had its turn already.
    assert_eq!(unwanted.count(), 0);
    gw.shutdown().await;
}

/// The webhooks of `urls`, stored directly (as a database from before the
/// policy, or one another deployment wrote, could hold them).
async fn store_webhooks(env: &Env, urls: &[String]) {
    let db = store::open(env.db.url()).await.unwrap();
    for (n, url) in urls.iter().enumerate() {
        db.upsert_webhook(&Webhook {
            id: format!("whk_{n}"),
            url: url.clone(),
            secret: format!("whsec_{SECRET}"),
            events: None,
            created_at: now(),
            previous_secret: None,
            previous_secret_until: None,
        })
        .await
        .unwrap();
    }
    db.close().await;
}

/// Waits until `n` deliveries were refused, then checks that the event is
/// still due for a retry (a refusal is a failure like any other).
async fn refused_and_retried(env: &Env, gw: &Gateway, n: f64, id: &str) {
    let refused = r#"portcullis_webhook_deliveries_total{outcome="refused"}"#;
    eventually("the refusals to be counted", || async {
        gw.metric(refused).await >= n
    })
    .await;
    // The refusals are counted as they happen; the outbox row records the
    // attempt once the round is over.
    let sql = format!("SELECT attempts, delivered_at FROM event_outbox WHERE id = '{id}'");
    let query = sql.as_str();
    eventually("a retry to be scheduled", || async move {
        env.db.rows(query, &["attempts", "delivered_at"]).await[0][0] != "0"
    })
    .await;
    let rows = env.db.rows(&sql, &["attempts", "delivered_at"]).await;
    assert_eq!(rows[0][1], "NULL", "not delivered: {rows:?}");
}

async fn loopback_targets_are_refused_and_never_contacted(db: TestDb) {
    let env = env(db);
    let receiver = Upstream::start().await;
    // The default policy; nothing configured could point at 127.0.0.1.
    let gw = gateway_with_policy(&env, "    []", "{}").await;
    let port = receiver.addr.port();
    // A literal address, and a name that resolves to one (checked after
    // resolution).
    let urls = [
        format!("http://127.0.0.1:{port}/literal"),
        format!("http://localhost:{port}/named"),
    ];
    store_webhooks(&env, &urls).await;
    let (_store, id) = enqueue(&env, "user.created", json!({})).await;
    refused_and_retried(&env, &gw, 2.0, &id).await;
    // Another round of retries: refused again, and no connection ever
    // reached the receiver.
    env.clock.advance(60);
    refused_and_retried(&env, &gw, 4.0, &id).await;
    assert_eq!(receiver.count(), 0);
    gw.shutdown().await;
}

async fn the_deny_list_holds_with_private_addresses_allowed(db: TestDb) {
    let env = env(db);
    let receiver = Upstream::start().await;
    let policy = r#"{ allow_private: true, deny: ["127.0.0.0/8"] }"#;
    let gw = gateway_with_policy(&env, "    []", policy).await;
    let url = format!("http://127.0.0.1:{}/denied", receiver.addr.port());
    store_webhooks(&env, &[url]).await;
    let (_store, id) = enqueue(&env, "user.created", json!({})).await;
    refused_and_retried(&env, &gw, 1.0, &id).await;
    assert_eq!(receiver.count(), 0);
    gw.shutdown().await;
}

/// How the endless receiver's answer to one POST ended.
#[derive(Debug)]
struct Stream {
    /// Bytes of the answer's body written before the connection broke.
    written: u64,
}

/// A receiver on 127.0.0.1 that answers each POST `200` with a chunked body
/// that never ends, and reports, once a connection breaks under it, how
/// much of that body it wrote; the count of connections it accepted.
async fn endless_receiver() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Stream>,
    Arc<AtomicUsize>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                read_request(&mut s).await;
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await
                    .unwrap();
                let chunk = [
                    format!("{:x}\r\n", 64 * 1024).into_bytes(),
                    vec![b'x'; 64 * 1024],
                    b"\r\n".to_vec(),
                ]
                .concat();
                let mut written = 0u64;
                // Writes until the other side drops the connection: a write
                // then fails (reset, or a broken pipe).
                while s.write_all(&chunk).await.is_ok() {
                    written += chunk.len() as u64;
                }
                let _ = tx.send(Stream { written });
            });
        }
    });
    (addr, rx, connections)
}

/// Reads one request: its head, then as many bytes as its `Content-Length`.
async fn read_request(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut piece).await.unwrap();
        assert!(n > 0, "the request ended early");
        buf.extend_from_slice(&piece[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = buf.len() - end;
    while body < length {
        let n = s.read(&mut piece).await.unwrap();
        assert!(n > 0, "the request body ended early");
        body += n;
    }
}

/// A receiver that answers 200 and then streams without end: the delivery
/// is recorded as delivered at once (not after the 10 s request timeout,
/// which would make it a failure), and the issuer drops the connection after
/// the 64 KiB it drains — the receiver sees it broken while still writing,
/// having written no more than that plus what the sockets between them
/// buffer.
async fn an_endless_answer_is_drained_up_to_its_cap(db: TestDb) {
    let env = env(db);
    let (addr, mut streams, connections) = endless_receiver().await;
    let hooks = format!("    - url: \"http://{addr}/hook\"\n      secret: \"whsec_{SECRET}\"\n");
    let gw = gateway(&env, &hooks).await;
    let (_store, id) = enqueue(&env, "user.created", json!({})).await;

    // A bound, not a wait: the report comes as soon as the connection breaks.
    let stream = tokio::time::timeout(Duration::from_secs(30), streams.recv())
        .await
        .expect("the issuer kept reading an endless answer")
        .expect("a report");
    // Linux's socket buffers (at most 32 MiB received, 4 MiB sent here, by
    // `net.ipv4.tcp_rmem` and `tcp_wmem`) and hyper's read buffer are far
    // below this; an uncapped reader would take gigabytes in the 10 s.
    assert!(
        stream.written < 64 * 1024 * 1024,
        "the receiver wrote {} bytes",
        stream.written
    );
    let delivered = r#"portcullis_webhook_deliveries_total{outcome="delivered"}"#;
    eventually("the delivery to be counted", || async {
        gw.metric(delivered).await == 1.0
    })
    .await;
    let sql = format!("SELECT attempts, delivered_at FROM event_outbox WHERE id = '{id}'");
    let (query, db) = (sql.as_str(), &env.db);
    eventually("the event to be marked delivered", || async move {
        db.rows(query, &["attempts", "delivered_at"]).await[0][1] != "NULL"
    })
    .await;
    assert_eq!(
        gw.metric(r#"portcullis_webhook_deliveries_total{outcome="failed"}"#)
            .await,
        0.0
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one POST, no retry");
    gw.shutdown().await;
}

on_both_databases!(
    an_endless_answer_is_drained_up_to_its_cap,
    loopback_targets_are_refused_and_never_contacted,
    the_deny_list_holds_with_private_addresses_allowed,
    an_event_is_posted_signed,
    a_failed_delivery_is_retried,
    a_retry_skips_the_webhooks_already_reached,
    the_events_filter_is_honoured_for_configured_and_stored_webhooks,
);
