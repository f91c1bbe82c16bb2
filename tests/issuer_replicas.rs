//! Two issuer processes (the real binary, twice) on one PostgreSQL database:
//! after `portcullis admin keys rotate` both publish the same JWKS, and a token
//! the new key signed through one verifies at the other's gateway route; a
//! refresh token rotated through one and replayed through the other is reuse;
//! concurrent refreshes of one token spread over both have exactly one winner.
//! Every case needs `PORTCULLIS_TEST_POSTGRES_URL` (each gets a fresh schema)
//! and prints "skipped" without it.
//!
//! Replicas re-read the key records every `issuer.key_sync_interval`, set to 1 s
//! here, so the key case waits a few of those periods.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use support::oauth::{
    client_credentials, code_flow, jwks_kids, login_attempts_from, login_for_code, redeem_code,
    refresh,
};
use support::process::{Portcullis, admin, seed};
use support::*;

const API: &str = "https://api.example.test";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "ada@example.test";
const PASSWORD: &str = "correct horse battery staple";
/// Many key-sync periods of a replica.
const KEY_SYNC_BOUND: Duration = Duration::from_secs(30);

/// Two processes on one fresh PostgreSQL schema, with a client_credentials
/// client and the user Ada created through `portcullis admin`.
struct Replicas {
    a: Portcullis,
    b: Portcullis,
    config: PathBuf,
    m2m: (String, String),
    db: TestDb,
    /// The receiver of the webhook both processes deliver to.
    hooks: Upstream,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

impl Replicas {
    fn m2m(&self) -> (&str, &str) {
        (&self.m2m.0, &self.m2m.1)
    }
}

/// How the two processes are started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The second once the first is ready (it finds the keys the first made).
    OneAfterTheOther,
    /// Both at once on the new database (as a deployment of two replicas would).
    Together,
}

async fn replicas(start: Start) -> Option<Replicas> {
    let db = TestDb::postgres().await?;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let hooks = Upstream::start().await;
    let yaml = format!(
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
  key_sync_interval: 1s
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
  webhooks:
    - url: "{hooks}/hook"
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
issuers:
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
        up = up.url(),
        hooks = hooks.url(),
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let seeded = seed(&config, API, EMAIL, PASSWORD);
    let m2m = (seeded.client_id, seeded.client_secret);
    let (a, b) = match start {
        Start::OneAfterTheOther => {
            let a = Portcullis::start(&config).await;
            (a, Portcullis::start(&config).await)
        }
        Start::Together => tokio::join!(Portcullis::start(&config), Portcullis::start(&config)),
    };
    Some(Replicas {
        a,
        b,
        config,
        m2m,
        db,
        hooks,
        _dir: dir,
        _up: up,
    })
}

fn kid(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_owned()
}

async fn status_at(p: &Portcullis, token: &str) -> u16 {
    get(&p.url("/api/items"), Some(token)).await.0.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_publish_the_same_keys_after_a_rotation() {
    let Some(r) = replicas(Start::OneAfterTheOther).await else {
        return;
    };
    let (a, b) = (r.a.url(""), r.b.url(""));
    let before = jwks_kids(&a).await;
    assert_eq!(jwks_kids(&b).await, before, "one key set from the start");
    let old = client_credentials(&a, r.m2m()).await;
    assert!(before.contains(&kid(&old)));

    let rotated = admin(&r.config, &["keys", "rotate"]);
    assert_eq!(rotated["rotated"], true, "{rotated}");
    // One successor per algorithm; access tokens are signed with ES256's.
    let new_keys: Vec<(String, String)> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["new"] == true)
        .map(|k| (k["kid"].as_str().unwrap().to_owned(), k["alg"].to_string()))
        .collect();
    assert_eq!(new_keys.len(), 2, "{rotated}");
    let new_kids: Vec<String> = new_keys.iter().map(|(kid, _)| kid.clone()).collect();
    let new_kid = new_keys
        .iter()
        .find(|(_, alg)| alg.contains("ES256"))
        .map(|(kid, _)| kid.clone())
        .unwrap_or_else(|| panic!("no new ES256 key in {rotated}"));
    within(
        KEY_SYNC_BOUND,
        "both replicas to publish the new keys",
        || {
            let (a, b, new_kids) = (a.clone(), b.clone(), new_kids.clone());
            async move {
                let (ka, kb) = (jwks_kids(&a).await, jwks_kids(&b).await);
                ka == kb && new_kids.iter().all(|k| ka.contains(k))
            }
        },
    )
    .await;
    let published = jwks_kids(&a).await;
    assert!(
        published
            .iter()
            .all(|k| new_kids.contains(k) || before.contains(k))
    );
    assert_eq!(
        status_at(&r.b, &old).await,
        200,
        "the old key still verifies"
    );

    // The successor signs once the JWKS cache age (300 s) has passed. Instead of
    // waiting for it, move its schedule (and its predecessor's retirement) 300 s
    // back in the database, as if that time had passed.
    let new_list = new_kids
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let moved = r
        .db
        .execute(&format!(
            "UPDATE signing_keys SET publish_at = publish_at - 300, activate_at = activate_at - 300 \
             WHERE kid IN ({new_list})"
        ))
        .await;
    assert_eq!(moved, 2);
    r.db.execute(&format!(
        "UPDATE signing_keys SET retire_at = retire_at - 300 WHERE kid NOT IN ({new_list})"
    ))
    .await;
    let m2m = r.m2m.clone();
    within(KEY_SYNC_BOUND, "replica A to sign with the new key", || {
        let (a, m2m, new_kid) = (a.clone(), m2m.clone(), new_kid.clone());
        async move { kid(&client_credentials(&a, (&m2m.0, &m2m.1)).await) == new_kid }
    })
    .await;
    let fresh = client_credentials(&a, r.m2m()).await;
    assert_eq!(kid(&fresh), new_kid);
    assert_eq!(
        status_at(&r.b, &fresh).await,
        200,
        "B verifies A's new-key token"
    );
    assert_eq!(status_at(&r.b, &old).await, 200, "and still the old key's");
    assert_eq!(jwks_kids(&b).await, jwks_kids(&a).await);
    r.a.kill().await;
    r.b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_replayed_at_the_other_replica_is_reuse() {
    let Some(r) = replicas(Start::OneAfterTheOther).await else {
        return;
    };
    let (a, b) = (r.a.url(""), r.b.url(""));
    // The code comes from A and is redeemed at B (codes live in the database).
    let (code, verifier) =
        login_for_code(&a, "web", CALLBACK, "openid read:data", (EMAIL, PASSWORD)).await;
    let (status, issued) = redeem_code(&b, "web", CALLBACK, &code, &verifier).await;
    assert_eq!(status, 200, "{issued}");
    let t0 = issued["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = refresh(&a, "web", &t0).await;
    assert_eq!(status, 200, "{body}");
    let t1 = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, body) = refresh(&b, "web", &t0).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The family is revoked: A's successor is refused too, at either replica.
    for base in [&a, &b] {
        let (status, body) = refresh(base, "web", &t1).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    r.a.kill().await;
    r.b.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_across_replicas_have_one_winner() {
    let Some(r) = replicas(Start::OneAfterTheOther).await else {
        return;
    };
    let (a, b) = (r.a.url(""), r.b.url(""));
    let issued = code_flow(&b, "web", CALLBACK, "openid read:data", (EMAIL, PASSWORD)).await;
    let t0: Arc<str> = issued["refresh_token"].as_str().unwrap().into();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let base = if i % 2 == 0 { a.clone() } else { b.clone() };
            let t0 = t0.clone();
            tokio::spawn(async move { refresh(&base, "web", &t0).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status.as_u16() {
            200 => winners += 1,
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(winners, 1);
    r.a.kill().await;
    r.b.kill().await;
}

/// Two replicas deployed at once on a new database: the one that loses the
/// rotation lease must still start with the keys the other one writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_on_a_new_database_share_one_key_set() {
    let Some(r) = replicas(Start::Together).await else {
        return;
    };
    let (a, b) = (r.a.url(""), r.b.url(""));
    let stored =
        r.db.rows("SELECT kid, alg FROM signing_keys", &["kid", "alg"])
            .await;
    assert_eq!(stored.len(), 2, "one key per algorithm: {stored:?}");
    let kids: Vec<String> = stored.iter().map(|row| row[0].clone()).collect();
    for base in [&a, &b] {
        let mut published = jwks_kids(base).await;
        published.sort();
        let mut expected = kids.clone();
        expected.sort();
        assert_eq!(published, expected, "{base} publishes every key");
    }
    // Both sign at once, with those keys, and accept each other's tokens.
    let from_a = client_credentials(&a, r.m2m()).await;
    let from_b = client_credentials(&b, r.m2m()).await;
    assert!(kids.contains(&kid(&from_a)) && kids.contains(&kid(&from_b)));
    assert_eq!(status_at(&r.b, &from_a).await, 200);
    assert_eq!(status_at(&r.a, &from_b).await, 200);
    r.a.kill().await;
    r.b.kill().await;
}

/// Failed logins are counted in the database, so the delay they set for an
/// account at one address holds on every replica; the right password from
/// any other address works on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_delay_holds_across_replicas() {
    let Some(r) = replicas(Start::OneAfterTheOther).await else {
        return;
    };
    let (a, b) = (r.a.url(""), r.b.url(""));
    let stranger = loopback(2);
    let wrong = login_attempts_from(stranger, &a, "web", CALLBACK, EMAIL, &["wrong"; 3]).await;
    assert!(wrong.iter().all(|s| *s == 401), "{wrong:?}");
    // The third failure set a delay of 2 s at that address (real time: the
    // attempts below take milliseconds).
    let delayed = login_attempts_from(stranger, &b, "web", CALLBACK, EMAIL, &[PASSWORD]).await;
    assert_eq!(delayed[0], 429, "B checked a password during A's delay");
    let elsewhere = login_attempts_from(loopback(3), &b, "web", CALLBACK, EMAIL, &[PASSWORD]).await;
    assert_eq!(elsewhere[0], 302, "the account is not locked");
    r.a.kill().await;
    r.b.kill().await;
}

/// Both processes poll the one outbox: every event reaches the webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_delivered_once_by_one_of_the_replicas() {
    let Some(r) = replicas(Start::OneAfterTheOther).await else {
        return;
    };
    for n in 0..8 {
        admin(&r.config, &["org", "create", "--name", &format!("Org {n}")]);
    }
    let ids = |rows: Vec<Vec<String>>| -> Vec<String> {
        let mut ids: Vec<String> = rows.into_iter().map(|mut row| row.remove(0)).collect();
        ids.sort();
        ids
    };
    let stored = ids(r.db.rows("SELECT id FROM event_outbox", &["id"]).await);
    assert!(stored.len() >= 8, "{stored:?}");
    within(
        Duration::from_secs(30),
        "every event to be delivered",
        || async {
            r.db.rows(
                "SELECT id FROM event_outbox WHERE delivered_at IS NULL",
                &["id"],
            )
            .await
            .is_empty()
        },
    )
    .await;
    let mut delivered: Vec<String> = r
        .hooks
        .received()
        .iter()
        .map(|req| req.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    assert_eq!(delivered, stored, "each stored event exactly once");
    r.a.kill().await;
    r.b.kill().await;
}
