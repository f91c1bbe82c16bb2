//! Secrets at rest, against the real binary: webhook secrets sealed with
//! `PORTCULLIS_MASTER_KEY` like signing keys (those made with the CLI, and
//! plain rows from before, sealed at the next start), still signing what is
//! delivered; a warning at start without a master key; and the SQLite files
//! readable by their owner only. Each case runs on a SQLite file and, when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis::issuer::store::{self, Webhook};
use support::process::{ConfigFile, Portcullis, admin_with_env};
use support::*;

const MASTER: (&str, &str) = ("PORTCULLIS_MASTER_KEY", "correct horse battery staple 0123");
/// The secret of a webhook stored before secrets were sealed.
const LEGACY_KEY: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn setup(db: &TestDb) -> ConfigFile {
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
  signing_algs: [ES256]
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
            db = db.url(),
        )
    })
    .await
}

/// Whether `r`'s signature is the Standard Webhooks HMAC under `key`.
fn signed_with(r: &Received, key: &[u8]) -> bool {
    let header = |n: &str| r.headers[n].to_str().unwrap().to_owned();
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(header("webhook-id").as_bytes());
    ctx.update(b".");
    ctx.update(header("webhook-timestamp").as_bytes());
    ctx.update(b".");
    ctx.update(&r.body);
    header("webhook-signature") == format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The webhooks' secrets as the database holds them, by id.
async fn stored_secrets(db: &TestDb) -> Vec<(String, String)> {
    db.rows(
        "SELECT id, secret FROM webhooks ORDER BY id",
        &["id", "secret"],
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect()
}

async fn webhook_secrets_are_sealed_at_rest_and_still_sign(db: TestDb) {
    let s = setup(&db).await;
    let (old_receiver, new_receiver) = (Upstream::start().await, Upstream::start().await);
    // A webhook from before: its secret stored in the clear.
    let st = store::open(db.url()).await.unwrap();
    st.upsert_webhook(&Webhook {
        id: "whk_legacy".into(),
        url: format!("{}/old", old_receiver.url()),
        secret: format!("whsec_{LEGACY_KEY}"),
        events: None,
        created_at: now(),
        previous_secret: None,
        previous_secret_until: None,
    })
    .await
    .unwrap();
    st.close().await;
    // One made now with the CLI: shown once, stored sealed.
    let url = format!("{}/new", new_receiver.url());
    let made = admin_with_env(&s.config, &["webhook", "create", "--url", &url], &[MASTER]);
    let new_secret = made["secret"].as_str().unwrap().to_owned();
    let new_id = made["id"].as_str().unwrap().to_owned();
    // The next start seals the old one; nothing is lost.
    let p = Portcullis::start_with_env(&s.config, &[MASTER]).await;
    eventually("the plain secret to be sealed", || async {
        stored_secrets(&db)
            .await
            .iter()
            .all(|(_, s)| s.starts_with("pcws1:"))
    })
    .await;
    let stored = stored_secrets(&db).await;
    assert_eq!(stored.len(), 2);
    for (_, secret) in &stored {
        assert!(!secret.contains(LEGACY_KEY) && !secret.contains(&new_secret[6..]));
    }
    assert!(p.logged("PORTCULLIS_MASTER_KEY is not set").is_empty());
    // An event reaches both, signed with the secrets as given.
    admin_with_env(&s.config, &["org", "create", "--name", "Acme"], &[MASTER]);
    for receiver in [&old_receiver, &new_receiver] {
        let r = receiver.clone();
        eventually("the event to be delivered", || {
            let r = r.clone();
            async move { r.count() > 0 }
        })
        .await;
    }
    let legacy_key = STANDARD.decode(LEGACY_KEY).unwrap();
    assert!(signed_with(&old_receiver.last(), &legacy_key));
    let new_key = STANDARD.decode(&new_secret["whsec_".len()..]).unwrap();
    assert!(signed_with(&new_receiver.last(), &new_key), "{new_id}");
    // Nothing on disk shows either secret (SQLite: the file and its WAL).
    if !db.is_postgres() {
        for entry in std::fs::read_dir(s.dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(LEGACY_KEY) && !text.contains(&new_secret[6..]));
        }
    }
    p.kill().await;
}

async fn without_a_master_key_the_start_warns(db: TestDb) {
    let s = setup(&db).await;
    let p = Portcullis::start(&s.config).await;
    eventually("the warning", || async {
        !p.logged("PORTCULLIS_MASTER_KEY is not set").is_empty()
    })
    .await;
    let warning = p.logged("PORTCULLIS_MASTER_KEY is not set").remove(0);
    assert_eq!(warning["level"], "WARN", "{warning}");
    p.kill().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TestDb::sqlite();
    let s = setup(&db).await;
    let p = Portcullis::start(&s.config).await;
    let path = db.url().trim_start_matches("sqlite://").to_owned();
    // The issuer has written (its keys): the WAL and its index exist.
    for suffix in ["", "-wal", "-shm"] {
        let mode = std::fs::metadata(format!("{path}{suffix}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{path}{suffix}");
    }
    p.kill().await;
}

/// The first six bytes of every stored private key, in lowercase hex.
async fn key_prefixes(db: &TestDb) -> Vec<String> {
    let sql = match db.is_postgres() {
        true => {
            "SELECT encode(substring(private_key from 1 for 6), 'hex') AS head FROM signing_keys"
        }
        false => "SELECT lower(hex(substr(private_key, 1, 6))) AS head FROM signing_keys",
    };
    let rows = db.rows(sql, &["head"]).await;
    rows.into_iter().map(|r| r[0].clone()).collect()
}

/// `pcsk1:`, the prefix of a sealed key, in hex.
const SEALED: &str = "7063736b313a";

async fn plain_signing_keys_are_sealed_when_a_master_key_arrives(db: TestDb) {
    let s = setup(&db).await;
    // Without a master key the first keys are stored plain (PKCS#8).
    let first = Portcullis::start(&s.config).await;
    let jwks = support::oauth::jwks_kids(&first.url("")).await;
    first.kill().await;
    let heads = key_prefixes(&db).await;
    assert!(
        !heads.is_empty() && heads.iter().all(|h| h != "pcsk1:"),
        "{heads:?}"
    );
    // With one, the next start seals them, and they still sign and publish.
    let second = Portcullis::start_with_env(&s.config, &[MASTER]).await;
    let heads = key_prefixes(&db).await;
    assert!(heads.iter().all(|h| h == SEALED), "{heads:?}");
    assert_eq!(support::oauth::jwks_kids(&second.url("")).await, jwks);
    second.kill().await;
}

on_both_databases!(
    plain_signing_keys_are_sealed_when_a_master_key_arrives,
    webhook_secrets_are_sealed_at_rest_and_still_sign,
    without_a_master_key_the_start_warns,
);
