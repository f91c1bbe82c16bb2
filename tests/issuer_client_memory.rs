//! The token endpoint remembers the clients and API resources it read for up
//! to a second (`issuer::store::memo`), so a busy client costs no database
//! round trip. What that must never do, on the real binary: keep a deleted
//! client or a replaced secret working. A change made through the process
//! itself is seen at once; one made by another process (`portcullis admin`,
//! a replica) within `RECENT` (1 s), here given a margin for a loaded
//! machine. The replica cases need `PORTCULLIS_TEST_POSTGRES_URL` and print
//! "skipped" without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::oauth::{enc, post};
use support::process::{Portcullis, admin};
use support::*;

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const OPS: (&str, &str) = ("ops", "ops-secret-0123456789");
const SVC_ID: &str = "svc";
const OLD_SECRET: &str = "svc-secret-old-0123456789";
const NEW_SECRET: &str = "svc-secret-new-0123456789";
/// The documented bound (1 s) and room for a busy machine.
const OTHER_PROCESS_BOUND: Duration = Duration::from_secs(3);

fn yaml(db: &str, svc_secret: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 1s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  signing_algs: [ES256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: {ops}
      client_secret: "{ops_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
    - client_id: {SVC_ID}
      client_secret: "{svc_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "http://127.0.0.1:9", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
"#,
        ops = OPS.0,
        ops_secret = OPS.1,
    )
}

/// The status of a `client_credentials` request for [`API`] as `client`.
async fn token_status(p: &Portcullis, client: (&str, &str)) -> u16 {
    let body = format!("grant_type=client_credentials&resource={}", enc(API));
    post(&p.url(""), "/oauth/token", Some(client), &body)
        .await
        .0
        .as_u16()
}

/// An admin API token from `p`.
async fn admin_token(p: &Portcullis) -> String {
    let body = format!("grant_type=client_credentials&resource={}", enc(ADMIN_API));
    let (status, answer) = post(&p.url(""), "/oauth/token", Some(OPS), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `method path` on `p`'s admin API with `body`.
async fn admin_api(p: &Portcullis, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = admin_token(p).await;
    let mut req = Request::builder()
        .method(method)
        .uri(p.url(path))
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let (status, _, text) = send(req.body(Full::new(bytes)).unwrap()).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status.as_u16(), json)
}

/// Creates a client_credentials client through `p`'s admin API.
async fn create_client(p: &Portcullis) -> (String, String) {
    let (status, made) = admin_api(
        p,
        "POST",
        "/admin/v1/clients",
        Some(json!({
            "name": "batch",
            "grant_types": ["client_credentials"],
            "scopes": { API: ["read:data"] },
        })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let text = |k: &str| made[k].as_str().expect(k).to_owned();
    (text("client_id"), text("client_secret"))
}

/// Asks often, for a while: every answer is a token (the memo is warm).
async fn warm(p: &Portcullis, client: (&str, &str)) {
    for _ in 0..5 {
        assert_eq!(token_status(p, client).await, 200);
    }
}

/// Waits at most `bound` for `client` to be refused at `p`; how long it took.
async fn refused_within(p: &Portcullis, client: (&str, &str), bound: Duration) -> Duration {
    let since = Instant::now();
    within(bound, "the client to be refused", || async {
        token_status(p, client).await == 401
    })
    .await;
    since.elapsed()
}

fn write_config(dir: &Path, db: &str, svc_secret: &str) -> std::path::PathBuf {
    let config = dir.join(format!("gateway-{}.yaml", svc_secret.len() + db.len()));
    std::fs::write(&config, yaml(db, svc_secret)).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deleted_through_the_process_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let config = write_config(dir.path(), &db, OLD_SECRET);
    let p = Portcullis::start(&config).await;
    let (id, secret) = create_client(&p).await;
    warm(&p, (&id, &secret)).await;
    let (status, _) = admin_api(&p, "DELETE", &format!("/admin/v1/clients/{id}"), None).await;
    assert_eq!(status, 200);
    // No wait: the very next request is refused.
    assert_eq!(token_status(&p, (&id, &secret)).await, 401);
    // Other clients are unaffected.
    assert_eq!(token_status(&p, (SVC_ID, OLD_SECRET)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deleted_by_another_process_is_refused_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let config = write_config(dir.path(), &db, OLD_SECRET);
    let p = Portcullis::start(&config).await;
    let made = admin(
        &config,
        &[
            "client",
            "create",
            "--name",
            "batch",
            "--grant-type",
            "client_credentials",
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    );
    let id = made["client_id"].as_str().unwrap().to_owned();
    let secret = made["client_secret"].as_str().unwrap().to_owned();
    warm(&p, (&id, &secret)).await;
    admin(&config, &["client", "delete", &id]);
    let took = refused_within(&p, (&id, &secret), OTHER_PROCESS_BOUND).await;
    eprintln!("deleted by `portcullis admin`: refused after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stop_honouring_deleted_clients_and_replaced_secrets() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), db.url(), OLD_SECRET);
    let a = Portcullis::start(&config).await;
    let b = Portcullis::start(&config).await;

    // A client deleted through A: at once on A, within the bound on B.
    let (id, secret) = create_client(&a).await;
    warm(&a, (&id, &secret)).await;
    warm(&b, (&id, &secret)).await;
    let (status, _) = admin_api(&a, "DELETE", &format!("/admin/v1/clients/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(token_status(&a, (&id, &secret)).await, 401);
    let took = refused_within(&b, (&id, &secret), OTHER_PROCESS_BOUND).await;
    eprintln!("deleted through a replica: refused by the other after {took:?}");

    // A declared secret replaced by a replica that starts with the new one
    // (the declaration is applied at start): B, which verified and
    // remembered the old secret, refuses it within the bound and accepts
    // the new one.
    warm(&b, (SVC_ID, OLD_SECRET)).await;
    let rotated = write_config(dir.path(), db.url(), NEW_SECRET);
    let c = Portcullis::start(&rotated).await;
    assert_eq!(token_status(&c, (SVC_ID, OLD_SECRET)).await, 401);
    assert_eq!(token_status(&c, (SVC_ID, NEW_SECRET)).await, 200);
    let took = refused_within(&b, (SVC_ID, OLD_SECRET), OTHER_PROCESS_BOUND).await;
    eprintln!("secret replaced by a replica: old one refused by the other after {took:?}");
    assert_eq!(token_status(&b, (SVC_ID, NEW_SECRET)).await, 200);
}
