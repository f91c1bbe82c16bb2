//! `server.limits.body_timeout` on the built-in issuer's endpoints, over raw
//! sockets: a request body that stops arriving is answered 408 in the
//! endpoint's own shape (RFC 6749 JSON at the OAuth endpoints, the admin
//! API's JSON error, an HTML page at `/login`), its HTTP/1.1 connection is
//! closed, and the hit is counted in `portcullis_limit_hits_total`; a body
//! that keeps coming, however slowly in all, is read. The bound here is a
//! short configured `body_timeout` (the issuer runs on the server's own
//! runtime, whose time the test cannot pause; `src/issuer/body.rs` tests the
//! reader on paused time).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::oauth::basic;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const BILLING: (&str, &str) = ("billing", "billing-secret-0123456789");
const ADMIN: (&str, &str) = ("ops", "ops-secret-0123456789");
/// The configured `body_timeout` of the stall test.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);
/// The configured `body_timeout` of the slow-body test: its pauses are a
/// twentieth of it, so a loaded machine cannot stretch one past the bound.
const SLOW_BODY_TIMEOUT: Duration = Duration::from_secs(3);

struct Env {
    _dir: tempfile::TempDir,
    _up: Upstream,
    gw: Gateway,
}

async fn env(body_timeout: Duration) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
  limits:
    body_timeout: {timeout}ms
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "sqlite://{dir}/issuer.db"
  signing_algs: [ES256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: {billing}
      client_secret: "{billing_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: {ops}
      client_secret: "{ops_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
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
        timeout = body_timeout.as_millis(),
        dir = dir.path().display(),
        billing = BILLING.0,
        billing_secret = BILLING.1,
        ops = ADMIN.0,
        ops_secret = ADMIN.1,
        up = up.url(),
    );
    let gw = Gateway::start(&yaml).await;
    Env {
        _dir: dir,
        _up: up,
        gw,
    }
}

async fn hits(gw: &Gateway) -> f64 {
    gw.metric(r#"portcullis_limit_hits_total{limit="body_timeout"}"#)
        .await
}

/// Sends `head` and `part` of a body, then nothing: the answer, split into
/// its head (lowercased) and body, once the server closed the connection.
/// Panics if it never does (a bound, not a wait: the read ends as soon as
/// the connection closes).
async fn stall(gw: &Gateway, head: &str, part: &str) -> (String, String) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("{head}\r\n\r\n{part}").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("a stalled body kept its connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_ascii_lowercase(), body.to_owned())
}

/// A body that stops arriving is answered 408 by each kind of endpoint, in
/// its own shape, with `Connection: close`; the connection closes, and each
/// stall is one hit of `body_timeout`.
#[tokio::test]
async fn stalled_bodies_get_a_408_in_each_endpoints_shape_and_lose_their_connection() {
    let env = env(BODY_TIMEOUT).await;
    let gw = &env.gw;
    assert_eq!(hits(gw).await, 0.0);
    let timeout_error = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert_eq!(v["error"], "invalid_request", "{body}");
        assert_eq!(
            v["error_description"], "the request body did not arrive in time",
            "{body}"
        );
    };

    // The token endpoint: 30 of 1000 declared bytes.
    let (head, body) = stall(
        gw,
        &format!(
            "POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000",
            basic(BILLING)
        ),
        "grant_type=client_credentials&",
    )
    .await;
    assert_eq!(raw_status(&head), 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    timeout_error(&body);
    assert_eq!(hits(gw).await, 1.0);

    // The revocation endpoint, chunked, stopping between two chunks.
    let (head, body) = stall(
        gw,
        &format!(
            "POST /oauth/revoke HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked",
            basic(BILLING)
        ),
        "6\r\ntoken=\r\n",
    )
    .await;
    assert_eq!(raw_status(&head), 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    timeout_error(&body);
    assert_eq!(hits(gw).await, 2.0);

    // The hosted login form: an HTML page.
    let (head, body) = stall(
        gw,
        "POST /login HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100",
        "txn=abc&csrf=",
    )
    .await;
    assert_eq!(raw_status(&head), 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("did not arrive in time"), "{body}");
    assert_eq!(hits(gw).await, 3.0);

    // The admin API, whose token is checked before the body is read.
    let token = oauth::client_credentials_for(&gw.url(""), ADMIN, ADMIN_API).await;
    let (head, body) = stall(
        gw,
        &format!(
            "POST /admin/v1/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100"
        ),
        r#"{"name": "#,
    )
    .await;
    assert_eq!(raw_status(&head), 408, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    timeout_error(&body);
    assert_eq!(hits(gw).await, 4.0);

    // Nothing else was held up: a whole request is answered at once.
    let token = oauth::client_credentials_for(&gw.url(""), BILLING, API).await;
    assert!(!token.is_empty());
    env.gw.shutdown().await;
}

/// A token request whose body comes a byte at a time, each well within
/// `body_timeout` of the last but longer than `body_timeout` in all, gets
/// its token: the bound is on the silence between two pieces.
#[tokio::test]
async fn bodies_that_keep_moving_are_read_however_long_they_take() {
    let env = env(SLOW_BODY_TIMEOUT).await;
    let gw = &env.gw;
    let form = b"grant_type=client_credentials";
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        basic(BILLING),
        form.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A byte, then a pause of a twentieth of the bound: the pauses pace the
    // client, nothing waits on them.
    let pause = SLOW_BODY_TIMEOUT / 20;
    assert!(pause * form.len() as u32 > SLOW_BODY_TIMEOUT);
    for byte in form {
        s.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(pause).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the token request was never answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert_eq!(v["token_type"], "Bearer", "{answer}");
    assert!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(hits(gw).await, 0.0);
    env.gw.shutdown().await;
}
