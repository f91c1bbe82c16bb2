//! Webhook operations end to end: events whose attempts ran out wait as failed
//! events (dead letters) across a restart and are redelivered — through the
//! real binary's `portcullis admin webhook redeliver` and the admin API — to
//! each webhook that missed them exactly once; each webhook's delivery status;
//! and secret rotation, during whose overlap every delivery verifies with the
//! old secret and with the new one under the independent `standardwebhooks`
//! package (PyPI), run as a receiver (`tests/webhooks/receiver.py`).
//!
//! The gateway runs in process on a manual clock where backoff and overlaps
//! must pass (as in `issuer_webhooks.rs`), and as the real binary for the
//! rotation through the CLI; the CLI is always the real binary. The Python
//! receiver needs the virtualenv `.ci/run` installs (`target/webhooks-venv`,
//! or `$PORTCULLIS_TEST_WEBHOOKS_VENV`); without it those tests say they were
//! skipped. Each case runs on SQLite and, when `PORTCULLIS_TEST_POSTGRES_URL`
//! is set, on a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::clock::ManualClock;
use portcullis::server::Options;
use serde_json::{Value, json};
use support::process::{BIN, Portcullis, admin, admin_with_env};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const OPS: (&str, &str) = ("ops", "ops-secret-0123456789");
/// The configured webhook's secret, and the one it replaces in a rotation.
const CONFIGURED: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CONFIGURED_OLD: &str = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXRlc3Rz";
/// A stored webhook's first secret.
const STORED: &str = "whsec_dGhpcmQtc2VjcmV0LWtleS1mb3ItdGVzdHMhIQ==";
const MASTER: (&str, &str) = ("PORTCULLIS_MASTER_KEY", "correct horse battery staple 0123");

// === the setting ===

/// A configuration file on `db`; `webhooks` is the YAML list under
/// `issuer.webhooks`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    yaml: String,
    _up: Upstream,
}

async fn setup(db: &TestDb, webhooks: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
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
  signing_algs: [ES256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: {ops}
      client_secret: "{ops_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
  webhooks:
{webhooks}
issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
"#,
        db = db.url(),
        ops = OPS.0,
        ops_secret = OPS.1,
        up = up.url(),
    );
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(&config, &yaml).unwrap();
    Setup {
        dir,
        config,
        yaml,
        _up: up,
    }
}

/// One entry of `issuer.webhooks`.
fn webhook(url: &str, secret: &str, previous: Option<&str>) -> String {
    let mut s = format!("    - url: \"{url}\"\n      secret: \"{secret}\"\n");
    if let Some(p) = previous {
        s.push_str(&format!("      previous_secret: \"{p}\"\n"));
    }
    s
}

/// The gateway in process on `clock`.
async fn gateway(s: &Setup, clock: &Arc<ManualClock>) -> Gateway {
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    Gateway::start_with(&s.yaml, options).await
}

/// Advances `clock` by ten minutes at a time (past any backoff) while the
/// deliverer polls, until `done`; fails after a generous bound.
async fn drive<F, Fut>(clock: &ManualClock, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2400 {
        if done().await {
            return;
        }
        clock.advance(600);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `portcullis admin <args>` (the real binary): exit code, stdout, stderr.
fn admin_raw(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("admin")
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The events `admin webhook events <args>` prints.
fn cli_events(config: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["webhook", "events"];
    all.extend_from_slice(args);
    admin(config, &all).as_array().unwrap().clone()
}

/// The stored status of each event of `ids`, read through the CLI.
fn statuses(config: &Path, ids: &[String]) -> Vec<String> {
    let events = cli_events(config, &[]);
    ids.iter()
        .map(|id| {
            events
                .iter()
                .find(|e| e["id"] == id.as_str())
                .map(|e| e["status"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// An admin API call with a token of `ops`.
async fn api(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let (status, headers, text) = send(req.body(Full::new(bytes)).unwrap()).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, headers, json)
}

/// An admin API token of `ops` (a new one after each move of a manual
/// clock, which may have outlived the last).
async fn admin_token(base: &str) -> String {
    let body = format!(
        "grant_type=client_credentials&resource={}",
        oauth::enc(ADMIN_API)
    );
    let (status, json) = oauth::post(base, "/oauth/token", Some(OPS), &body).await;
    assert_eq!(status, 200, "{json}");
    json["access_token"].as_str().unwrap().to_owned()
}

fn expected_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()))
}

// === the Python receiver ===

/// `tests/webhooks/receiver.py`: verifies each delivery with the
/// `standardwebhooks` package, once per named secret.
struct PyReceiver {
    _child: tokio::process::Child,
    port: u16,
}

impl PyReceiver {
    /// The virtualenv's python with `standardwebhooks`, or `None` (and the
    /// test says it was skipped).
    fn python() -> Option<PathBuf> {
        let venv = std::env::var_os("PORTCULLIS_TEST_WEBHOOKS_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/webhooks-venv"));
        let python = venv.join("bin/python");
        let usable = std::process::Command::new(&python)
            .args(["-c", "import standardwebhooks"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !usable {
            skip(&format!(
                "needs the PyPI package standardwebhooks in {} (installed by .ci/run: tests/webhooks/requirements.txt)",
                venv.display()
            ));
            return None;
        }
        Some(python)
    }

    /// Starts the receiver with `secrets` (name, `whsec_…`).
    async fn start(python: &Path, secrets: &[(&str, &str)]) -> PyReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/receiver.py");
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, secret) in secrets {
            cmd.arg("--secret").arg(format!("{name}={secret}"));
        }
        let mut child = cmd.spawn().expect("spawn the Python receiver");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            BufReader::new(stdout).lines().next_line().await
        })
        .await
        .expect("the receiver did not start within 30 s")
        .unwrap()
        .expect("the receiver exited");
        let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        PyReceiver {
            _child: child,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every delivery so far: `{"path", "id", "event", "signatures", "verified"}`.
    async fn log(&self) -> Vec<Value> {
        let (status, _, body) = get(&self.url("/_log"), None).await;
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits for the delivery of event `id` and returns it.
    async fn delivery(&self, id: &str) -> Value {
        eventually(&format!("the delivery of {id}"), || async {
            self.log().await.iter().any(|r| r["id"] == id)
        })
        .await;
        self.log()
            .await
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap()
    }

    /// Sets the receiver's clock to the real one plus `offset` seconds.
    async fn set_clock(&self, offset: i64) {
        self.control("/_clock", json!({ "offset": offset })).await;
    }

    /// Teaches the receiver another secret, `name`.
    async fn add_secret(&self, name: &str, secret: &str) {
        let body = json!({ "name": name, "secret": secret });
        self.control("/_secret", body).await;
    }

    async fn control(&self, path: &str, body: Value) {
        let req = Request::post(self.url(path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, _, _) = send(req).await;
        assert_eq!(status, 204);
    }
}

/// Creates an organization through the admin API; the id of its
/// `organization.created` event.
async fn org_event(base: &str, name: &str) -> String {
    let token = admin_token(base).await;
    let body = json!({ "name": name });
    let (status, _, org) = api(base, &token, "POST", "/admin/v1/organizations", Some(body)).await;
    assert_eq!(status, 201, "{org}");
    let (_, _, events) = api(base, &token, "GET", "/admin/v1/events?limit=1", None).await;
    assert_eq!(events[0]["data"]["id"], org["id"], "{events}");
    events[0]["id"].as_str().unwrap().to_owned()
}

/// The id of the newest event (of `name`), as the CLI lists them.
/// The id of the `organization.created` event of the organization `org`
/// (found by its data: events raised within one second list in no fixed
/// order, so "the newest" could be the one before).
fn org_created_event(config: &Path, org: &str) -> String {
    let events = cli_events(config, &["--limit", "20"]);
    let e = events
        .iter()
        .find(|e| e["event"] == "organization.created" && e["data"]["name"] == org)
        .unwrap_or_else(|| panic!("no organization.created for {org}: {events:?}"));
    e["id"].as_str().unwrap().to_owned()
}

// === the cases ===

/// Three events, a configured webhook that takes them at once, and a stored
/// one whose receiver is down across a restart: the events are failed once
/// their attempts run out, with the reason and without the URL's query; the
/// receiver comes up and each event is redelivered (CLI, admin API, to every
/// webhook that missed it or to one): the stored webhook gets each once, the
/// configured one never again, and the statuses follow.
async fn failed_events_wait_out_a_restart_and_are_redelivered_once(db: TestDb) {
    let clock = Arc::new(ManualClock::new(now()));
    let healthy = Upstream::start().await;
    let down = closed_port().await;
    let s = setup(
        &db,
        &webhook(&format!("{}/configured", healthy.url()), CONFIGURED, None),
    )
    .await;
    let gw = gateway(&s, &clock).await;
    let url = format!("http://{down}/hook?token=query-credential");
    let made = admin(
        &s.config,
        &["webhook", "create", "--url", &url, "--secret", STORED],
    );
    let whk = made["id"].as_str().unwrap().to_owned();
    let listed = admin(&s.config, &["webhook", "list"]);
    let cfg = listed[0]["id"].as_str().unwrap().to_owned();
    assert!(cfg.starts_with("cfg_"), "{listed}");
    assert_eq!(listed[0]["configured"], true);
    assert_eq!(listed[0]["url"], format!("{}/configured", healthy.url()));
    assert_eq!(listed[1]["id"], whk.as_str());
    for name in ["A", "B", "C"] {
        admin(&s.config, &["org", "create", "--name", name]);
    }
    let ids: Vec<String> = cli_events(&s.config, &[])
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);

    // Some attempts before the restart, the rest after it.
    drive(&clock, "three failed attempts", || async {
        cli_events(&s.config, &[])
            .iter()
            .all(|e| e["attempts"].as_i64().unwrap() >= 3)
    })
    .await;
    assert_eq!(statuses(&s.config, &ids), ["pending"; 3]);
    gw.shutdown().await;
    let gw = gateway(&s, &clock).await;
    drive(&clock, "the events to fail", || async {
        statuses(&s.config, &ids) == ["failed"; 3]
    })
    .await;

    let failed = cli_events(&s.config, &["--failed"]);
    assert_eq!(failed.len(), 3);
    for e in &failed {
        assert_eq!(e["attempts"], 10, "{e}");
        assert_eq!(e["delivered_to"], json!([cfg]), "{e}");
        assert!(
            e["failed_at"].is_string() && e["next_attempt_at"].is_null(),
            "{e}"
        );
        let error = e["last_error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("{whk}: request failed")),
            "{error}"
        );
        assert!(
            !error.contains("query-credential") && !error.contains("/hook"),
            "{error}"
        );
    }
    // The configured webhook got each event once, at once; the stored one's
    // status counts every failed attempt.
    assert_eq!(healthy.count(), 3);
    let hooks = admin(&s.config, &["webhook", "list"]);
    assert_eq!(hooks[0]["status"]["consecutive_failures"], 0);
    assert!(hooks[0]["status"]["last_success_at"].is_string());
    let stored = &hooks[1]["status"];
    // Ten failed attempts of each event (more if a round was cut short by
    // the restart before the outbox recorded it).
    assert!(
        stored["consecutive_failures"].as_i64().unwrap() >= 30,
        "{stored}"
    );
    assert!(stored["last_success_at"].is_null() && stored["last_failure_at"].is_string());
    assert!(
        !stored["last_error"]
            .as_str()
            .unwrap()
            .contains("query-credential")
    );

    // The receiver comes up. Redeliveries: by the CLI to every webhook that
    // missed it, by the API to the stored webhook, by the API without a body.
    let receiver = Upstream::start_at(down).await;
    let base = format!("http://{}", gw.addr);
    let token = admin_token(&base).await;
    let redeliver = |id: &str| format!("/admin/v1/events/{id}/redeliver");
    let (status, _, body) = api(
        &base,
        &token,
        "POST",
        &redeliver(&ids[1]),
        Some(json!({ "webhook_id": cfg })),
    )
    .await;
    assert_eq!(status, 409, "the configured webhook has it: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already")
    );
    let again = admin(&s.config, &["webhook", "redeliver", &ids[0]]);
    assert_eq!(
        (&again["status"], &again["attempts"]),
        (&json!("pending"), &json!(0))
    );
    let (code, _, err) = admin_raw(&s.config, &["webhook", "redeliver", &ids[0]]);
    assert_eq!(code, 1, "a pending event is not redelivered: {err}");
    assert!(err.contains("is pending"), "{err}");
    let (status, _, body) = api(
        &base,
        &token,
        "POST",
        &redeliver(&ids[1]),
        Some(json!({ "webhook_id": whk })),
    )
    .await;
    assert_eq!((status, &body["only_to"]), (StatusCode::OK, &json!(whk)));
    let (status, _, body) = api(&base, &token, "POST", &redeliver(&ids[2]), None).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("pending"))
    );

    drive(&clock, "the redeliveries", || async {
        statuses(&s.config, &ids) == ["delivered"; 3]
    })
    .await;
    // Delivered events are never claimed again: these counts are final.
    let got: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(got.len(), 3, "each event once: {got:?}");
    assert_eq!(healthy.count(), 3, "the configured webhook got none again");
    for r in receiver.received() {
        assert_eq!(r.target, "/hook?token=query-credential");
        let h = |n: &str| r.headers[n].to_str().unwrap().to_owned();
        let ts = h("webhook-timestamp");
        assert_eq!(
            h("webhook-signature"),
            expected_signature(STORED, &h("webhook-id"), &ts, &r.body)
        );
    }
    let token = admin_token(&base).await;
    let (status, _, hook) = api(
        &base,
        &token,
        "GET",
        &format!("/admin/v1/webhooks/{whk}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(hook["status"]["consecutive_failures"], 0, "{hook}");
    assert!(hook["status"]["last_success_at"].is_string());
    assert!(
        hook["status"]["last_error"].is_string(),
        "the last error stays visible"
    );

    // The listing by status, in pages; a delivered event is not redelivered.
    let (_, _, none) = api(&base, &token, "GET", "/admin/v1/events?status=failed", None).await;
    assert_eq!(none, json!([]));
    let (_, headers, page) = api(
        &base,
        &token,
        "GET",
        "/admin/v1/events?status=delivered&limit=2",
        None,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    let cursor = headers["next-cursor"].to_str().unwrap().to_owned();
    let (_, headers, rest) = api(
        &base,
        &token,
        "GET",
        &format!("/admin/v1/events?status=delivered&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert!(headers.get("next-cursor").is_none());
    let mut seen: Vec<Value> = page.as_array().unwrap().clone();
    seen.extend(rest.as_array().unwrap().iter().cloned());
    let seen: Vec<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // The CLI's cursor is the API's.
    let (code, out, err) = admin_raw(&s.config, &["webhook", "events", "--limit", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let next = err.split("--cursor ").nth(1).unwrap().trim().to_owned();
    assert_eq!(next, cursor);
    let (code, _, err) = admin_raw(&s.config, &["webhook", "redeliver", &ids[0]]);
    assert_eq!(code, 1);
    assert!(err.contains("was delivered"), "{err}");
    let (status, _, _) = api(&base, &token, "POST", &redeliver("evt_none"), None).await;
    assert_eq!(status, 404);
    gw.shutdown().await;
    drop(s.dir);
}

/// The real binary, with the master key: a configured webhook with
/// `previous_secret` and a stored one rotated through the CLI. During the
/// overlap each delivery carries two signatures and verifies, under
/// `standardwebhooks`, with the old secret and with the new one; a rotation
/// with no overlap signs with the newest secret only.
async fn deliveries_verify_with_either_secret_during_a_rotation(db: TestDb) {
    let Some(python) = PyReceiver::python() else {
        return;
    };
    let configured =
        PyReceiver::start(&python, &[("old", CONFIGURED_OLD), ("new", CONFIGURED)]).await;
    let s = setup(
        &db,
        &webhook(&configured.url("/in"), CONFIGURED, Some(CONFIGURED_OLD)),
    )
    .await;
    let p = Portcullis::start_with_env(&s.config, &[MASTER]).await;
    let cli = |args: &[&str]| admin_with_env(&s.config, args, &[MASTER]);

    // A stored webhook whose receiver knows its first secret only.
    let stored = PyReceiver::start(&python, &[("first", STORED)]).await;
    let made = cli(&[
        "webhook",
        "create",
        "--url",
        &stored.url("/in"),
        "--secret",
        STORED,
    ]);
    let whk = made["id"].as_str().unwrap().to_owned();
    cli(&["org", "create", "--name", "before"]);
    let before = org_created_event(&s.config, "before");
    let r = stored.delivery(&before).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(1), &json!(["first"]))
    );
    let r = configured.delivery(&before).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(2), &json!(["old", "new"]))
    );

    // The rotation: a new secret, shown once; the first one keeps signing.
    let rotated = cli(&["webhook", "rotate-secret", &whk, "--overlap", "1h"]);
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert!(second.starts_with("whsec_") && second != STORED);
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
    let listed = cli(&["webhook", "show", &whk]);
    assert!(listed.get("secret").is_none(), "{listed}");
    // The receiver learns the new secret: each verifies on its own.
    stored.add_secret("second", &second).await;
    cli(&["org", "create", "--name", "during"]);
    let during = org_created_event(&s.config, "during");
    let r = stored.delivery(&during).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(2), &json!(["first", "second"]))
    );

    // Rotating again without an overlap: the newest secret alone signs.
    let rotated = cli(&["webhook", "rotate-secret", &whk, "--overlap", "0s"]);
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert!(rotated["previous_secret_until"].is_null(), "{rotated}");
    stored.add_secret("third", &third).await;
    cli(&["org", "create", "--name", "after"]);
    let after = org_created_event(&s.config, "after");
    let r = stored.delivery(&after).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(1), &json!(["third"]))
    );
    // A configured webhook rotates in the configuration only.
    let cfg = cli(&["webhook", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for args in [
        &["webhook", "rotate-secret", &cfg][..],
        &["webhook", "delete", &cfg],
    ] {
        let (code, _, err) = admin_raw(&s.config, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("previous_secret"), "{err}");
    }
    // The secrets are sealed in the database, the previous one too.
    let rows = db
        .rows(
            &format!("SELECT secret FROM webhooks WHERE id = '{whk}'"),
            &["secret"],
        )
        .await;
    assert!(rows[0][0].starts_with("pcws1:"), "{rows:?}");
    assert!(p.log_text().contains("Listening"));
    assert!(!p.log_text().contains(&third[6..]));
}

/// On the manual clock, through the admin API: the previous secret signs
/// until the overlap ends, and not after; the receiver's clock follows.
async fn the_previous_secret_stops_signing_when_the_overlap_ends(db: TestDb) {
    let Some(python) = PyReceiver::python() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(now()));
    let s = setup(&db, "    []").await;
    let gw = gateway(&s, &clock).await;
    let base = format!("http://{}", gw.addr);
    let token = admin_token(&base).await;
    let first = PyReceiver::start(&python, &[("first", STORED)]).await;
    let (status, _, made) = api(
        &base,
        &token,
        "POST",
        "/admin/v1/webhooks",
        Some(json!({ "url": first.url("/in"), "secret": STORED })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let whk = made["id"].as_str().unwrap().to_owned();
    let rotate = format!("/admin/v1/webhooks/{whk}/rotate-secret");
    let (status, _, body) = api(
        &base,
        &token,
        "POST",
        &rotate,
        Some(json!({ "overlap": "x" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = api(
        &base,
        &token,
        "POST",
        &rotate,
        Some(json!({ "overlap": "31d" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, rotated) = api(
        &base,
        &token,
        "POST",
        &rotate,
        Some(json!({ "overlap": "2h" })),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    first.add_secret("second", &second).await;

    let id = org_event(&base, "within").await;
    let r = first.delivery(&id).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(2), &json!(["first", "second"]))
    );

    // Past the overlap (the receiver's clock too, for its timestamp check).
    clock.advance(2 * 3600 + 1);
    first.set_clock(2 * 3600 + 1).await;
    let id = org_event(&base, "past").await;
    let r = first.delivery(&id).await;
    assert_eq!(
        (&r["signatures"], &r["verified"]),
        (&json!(1), &json!(["second"]))
    );
    gw.shutdown().await;
}

on_both_databases!(
    failed_events_wait_out_a_restart_and_are_redelivered_once,
    deliveries_verify_with_either_secret_during_a_rotation,
    the_previous_secret_stops_signing_when_the_overlap_ends,
);
