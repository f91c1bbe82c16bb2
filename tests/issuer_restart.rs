//! Restart safety of the built-in issuer against the real binary: everything
//! issued before a `kill -9` (SIGKILL, no drain) is still there after a restart
//! on the same database — refresh families and their rotation state, revoked
//! access tokens, the signing keys (no new key is generated), client secrets,
//! and webhook events still waiting in the outbox (delivered afterwards, exactly
//! as stored). Each case runs on a SQLite file and, when
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
use serde_json::Value;
use support::oauth::{self, client_credentials, introspect, jwks_kids, refresh};
use support::process::{ConfigFile, Portcullis, Seeded, admin, seed};
use support::*;

const API: &str = "https://api.example.test";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "ada@example.test";
const PASSWORD: &str = "correct horse battery staple";
const HOOK_SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A configuration file for `db` in a temporary directory; `hook` is the
/// address of a webhook receiver (which need not be listening).
async fn setup(db: &TestDb, hook: Option<SocketAddr>) -> ConfigFile {
    let webhooks = hook
        .map(|addr| {
            format!("  webhooks:\n    - url: \"http://{addr}/hook\"\n      secret: \"whsec_{HOOK_SECRET}\"\n")
        })
        .unwrap_or_default();
    ConfigFile::write(|up| {
        format!(
            r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 1s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  webhook_address_policy: {{ allow_private: true }}  # receivers on 127.0.0.1
  signing_algs: [ES256, RS256]
  access_token_ttl: 15m
  refresh_token_ttl: 30d
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
{webhooks}issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
    scopes: [read:data]
"#,
            db = db.url(),
        )
    })
    .await
}

fn base(p: &Portcullis) -> String {
    p.url("")
}

/// The status of a GET of a protected route through the gateway.
async fn through_gateway(p: &Portcullis, token: &str) -> u16 {
    get(&p.url("/api/items"), Some(token)).await.0.as_u16()
}

/// Every stored signing key with its schedule.
async fn signing_keys(db: &TestDb) -> Vec<Vec<String>> {
    let columns = ["kid", "alg", "publish_at", "activate_at", "retire_at"];
    db.rows(
        &format!(
            "SELECT {} FROM signing_keys ORDER BY kid",
            columns.join(", ")
        ),
        &columns,
    )
    .await
}

async fn tokens_survive_a_kill(db: TestDb) {
    let s = setup(&db, None).await;
    let Seeded {
        client_id,
        client_secret: secret,
        org_id: org,
    } = seed(&s.config, API, EMAIL, PASSWORD);
    let m2m = (client_id.as_str(), secret.as_str());

    let first = Portcullis::start(&s.config).await;
    let url = base(&first);
    let kids = jwks_kids(&url).await;
    assert!(!kids.is_empty());
    let key_rows = signing_keys(&db).await;
    let kept = client_credentials(&url, m2m).await;
    let revoked = client_credentials(&url, m2m).await;
    oauth::revoke(&url, m2m, &revoked).await;
    assert_eq!(introspect(&url, m2m, &revoked).await["active"], false);
    assert_eq!(through_gateway(&first, &kept).await, 200);

    // A refresh token through the real login flow, rotated once before the kill.
    let issued =
        oauth::code_flow(&url, "web", CALLBACK, "openid read:data", (EMAIL, PASSWORD)).await;
    let user_access = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&user_access)["org_id"], org.as_str());
    let (status, body) = refresh(&url, "web", issued["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let current = body["refresh_token"].as_str().unwrap().to_owned();
    // And a code issued, not yet redeemed.
    let (code, verifier) =
        oauth::login_for_code(&url, "web", CALLBACK, "openid read:data", (EMAIL, PASSWORD)).await;

    first.kill().await;
    let second = Portcullis::start(&s.config).await;
    let url = base(&second);

    // The same keys, no new one: tokens from before the kill still verify.
    assert_eq!(
        jwks_kids(&url).await,
        kids,
        "the key set changed on restart"
    );
    assert_eq!(
        signing_keys(&db).await,
        key_rows,
        "a key was made or changed"
    );
    assert_eq!(through_gateway(&second, &kept).await, 200);
    assert_eq!(through_gateway(&second, &user_access).await, 200);
    let again = client_credentials(&url, m2m).await;
    assert!(kids.contains(&header_of(&again)["kid"].as_str().unwrap().to_owned()));

    // Revocation state and client secrets are where they were.
    assert_eq!(introspect(&url, m2m, &revoked).await["active"], false);
    let live = introspect(&url, m2m, &kept).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["client_id"], client_id.as_str());
    let (status, body) = oauth::post(
        &url,
        "/oauth/token",
        Some((&client_id, "not-the-secret")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // The code is redeemed once, after the restart.
    let (status, body) = oauth::redeem_code(&url, "web", CALLBACK, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        through_gateway(&second, body["access_token"].as_str().unwrap()).await,
        200
    );
    let (status, body) = oauth::redeem_code(&url, "web", CALLBACK, &code, &verifier).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The family rotates on; the replaced token is then reuse, which revokes it.
    let (status, body) = refresh(&url, "web", &current).await;
    assert_eq!(status, 200, "{body}");
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        through_gateway(&second, body["access_token"].as_str().unwrap()).await,
        200
    );
    let (status, body) = refresh(&url, "web", &current).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&url, "web", &next).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the successor died with its family"
    );
    second.kill().await;
}

/// `keys rotate` while the issuer runs, then a kill -9: the restarted process
/// publishes the waiting successors beside the keys in force, keeps signing with
/// the latter (the successors are not due yet), and makes no key of its own.
async fn a_waiting_successor_survives_a_kill(db: TestDb) {
    let s = setup(&db, None).await;
    let Seeded {
        client_id,
        client_secret: secret,
        ..
    } = seed(&s.config, API, EMAIL, PASSWORD);
    let m2m = (client_id.as_str(), secret.as_str());
    let first = Portcullis::start(&s.config).await;
    let before = jwks_kids(&first.url("")).await;
    let token = client_credentials(&first.url(""), m2m).await;
    let rotated = admin(&s.config, &["keys", "rotate"]);
    assert_eq!(rotated["rotated"], true, "{rotated}");
    let mut published: Vec<String> = rotated["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    published.sort();
    assert_eq!(published.len(), before.len() * 2, "{rotated}");
    let key_rows = signing_keys(&db).await;
    first.kill().await;

    let second = Portcullis::start(&s.config).await;
    let url = second.url("");
    assert_eq!(jwks_kids(&url).await, published);
    assert_eq!(
        signing_keys(&db).await,
        key_rows,
        "a key was made or changed"
    );
    let fresh = client_credentials(&url, m2m).await;
    assert_eq!(header_of(&fresh)["kid"], header_of(&token)["kid"]);
    assert_eq!(through_gateway(&second, &token).await, 200);
    second.kill().await;
}

/// The columns of the outbox that make up what is delivered.
const OUTBOX: &[&str] = &[
    "id",
    "event",
    "created_at",
    "data",
    "attempts",
    "delivered_at",
];

async fn outbox(db: &TestDb, event: &str) -> Vec<Vec<String>> {
    db.rows(
        &format!(
            "SELECT id, event, created_at, data, attempts, delivered_at FROM event_outbox WHERE event = '{event}'"
        ),
        OUTBOX,
    )
    .await
}

async fn a_pending_webhook_event_survives_a_kill(db: TestDb) {
    // The receiver is down for the first process: nothing can be delivered.
    let hook = closed_port().await;
    let s = setup(&db, Some(hook)).await;
    let first = Portcullis::start(&s.config).await;
    admin(&s.config, &["org", "create", "--name", "Acme"]);
    // Wait until the first process has tried and failed (so the event is
    // pending a retry, not claimed), then kill it.
    within(
        Duration::from_secs(30),
        "a failed delivery attempt",
        || async {
            outbox(&db, "organization.created")
                .await
                .first()
                .is_some_and(|row| row[4] != "0")
        },
    )
    .await;
    first.kill().await;
    let stored = outbox(&db, "organization.created").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let stored = stored[0].clone();
    assert_eq!(stored[5], "NULL", "not delivered before the kill");

    let receiver = Upstream::start_at(hook).await;
    let second = Portcullis::start(&s.config).await;
    within(
        Duration::from_secs(30),
        "the delivery after the restart",
        || async { receiver.count() >= 1 },
    )
    .await;
    within(
        Duration::from_secs(30),
        "the event to be marked delivered",
        || async { outbox(&db, "organization.created").await[0][5] != "NULL" },
    )
    .await;
    second.kill().await;

    assert_eq!(receiver.count(), 1, "delivered exactly once");
    let r = receiver.last();
    let header = |name: &str| r.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), stored[0]);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], stored[0].as_str());
    assert_eq!(body["event"], stored[1].as_str());
    assert_eq!(body["created_at"], stored[2].as_str());
    assert_eq!(
        body["data"],
        serde_json::from_str::<Value>(&stored[3]).unwrap()
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &STANDARD.decode(HOOK_SECRET).unwrap());
    let ts = header("webhook-timestamp");
    let signed = [stored[0].as_bytes(), b".", ts.as_bytes(), b".", &r.body].concat();
    assert_eq!(
        header("webhook-signature"),
        format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()))
    );
}

/// A receiver that accepts connections and reads requests but never answers;
/// counts the connections that sent something.
async fn hanging_receiver(addr: SocketAddr) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            held.push(stream);
        }
    });
    (task, seen)
}

/// A `kill -9` while a delivery is in flight (claimed, the POST unanswered):
/// after a restart the event is still delivered, once the dead process's claim
/// lapses (as long as a batch can take: a minute with one webhook).
async fn an_event_claimed_by_a_killed_process_is_delivered_after_restart(db: TestDb) {
    let hook = closed_port().await;
    let s = setup(&db, Some(hook)).await;
    let (hanging, seen) = hanging_receiver(hook).await;
    let first = Portcullis::start(&s.config).await;
    admin(&s.config, &["org", "create", "--name", "Acme"]);
    within(
        Duration::from_secs(30),
        "the first process to POST the event",
        || async { seen.load(Ordering::SeqCst) >= 1 },
    )
    .await;
    first.kill().await;
    hanging.abort();
    let _ = hanging.await;
    let stored = outbox(&db, "organization.created").await;
    assert_eq!(stored[0][5], "NULL", "not delivered before the kill");

    let receiver = Upstream::start_at(hook).await;
    let second = Portcullis::start(&s.config).await;
    within(
        Duration::from_secs(120),
        "the delivery after the restart",
        || async { receiver.count() >= 1 },
    )
    .await;
    second.kill().await;
    assert_eq!(
        receiver.last().headers["webhook-id"].to_str().unwrap(),
        stored[0][0]
    );
}

on_both_databases!(
    tokens_survive_a_kill,
    a_waiting_successor_survives_a_kill,
    a_pending_webhook_event_survives_a_kill,
    an_event_claimed_by_a_killed_process_is_delivered_after_restart,
);
