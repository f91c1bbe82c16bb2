//! `portcullis admin …` against the real binary on a temporary SQLite
//! database: every command's JSON, the client secret shown once and then good
//! for tokens at a gateway on the same database, secrets never listed, exit 1
//! for unknown references, exit 2 for bad arguments, and `keys rotate`
//! publishing a new kid while tokens of the old key still verify. The commands
//! that list, update and delete (users, members, webhooks) are in
//! `admin_cli/manage.rs` and `admin_cli/catalog.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::clock::ManualClock;
use portcullis::config::Config;
use portcullis::server::{self, Options};
use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const API: &str = "https://api.example.test";

/// A temporary directory with a gateway.yaml whose issuer uses a SQLite file there.
struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    yaml: String,
    _up: Upstream,
}

async fn env() -> Env {
    env_on(None).await
}

/// An [`Env`] on `database`, or on a SQLite file in the directory.
async fn env_on(database: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let database = database
        .map(str::to_owned)
        .unwrap_or_else(|| format!("sqlite://{}/issuer.db", dir.path().display()));
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{database}"
  webhook_address_policy: {{ allow_private: true }}  # receivers on 127.0.0.1
  signing_algs: [ES256]
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
        up = up.url(),
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    Env {
        dir,
        config,
        yaml,
        _up: up,
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    /// The JSON on stdout of a successful run.
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// Asserts the exit code and that stderr mentions `text`.
    fn refused(&self, code: i32, text: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(self.stderr.contains(text), "{}", self.stderr);
        assert!(self.stdout.is_empty(), "{}", self.stdout);
    }
}

/// Runs `portcullis admin -c <config> <args>` to completion.
fn admin_with(config: &Path, args: &[&str]) -> Output {
    let out = std::process::Command::new(BIN)
        .arg("admin")
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("RUST_LOG")
        .output()
        .expect("run portcullis");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn admin(env: &Env, args: &[&str]) -> Output {
    admin_with(&env.config, args)
}

/// Creates the API and a client_credentials client allowed `read:data`:
/// (client_id, client_secret).
fn m2m_client(env: &Env) -> (String, String) {
    admin(
        env,
        &[
            "api",
            "create",
            "--identifier",
            API,
            "--scope",
            "read:data",
            "write:data",
        ],
    )
    .json();
    let client = admin(
        env,
        &[
            "client",
            "create",
            "--name",
            "billing",
            "--grant-type",
            "client_credentials",
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    )
    .json();
    (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn token(gw: &Gateway, id: &str, secret: &str) -> (StatusCode, Value) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let (status, _, body) = send(req).await;
    (status, serde_json::from_str(&body).unwrap())
}

fn kid_of(token: &str) -> String {
    let head = token.split('.').next().unwrap();
    let head: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    head["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(gw: &Gateway) -> Vec<String> {
    let (status, _, body) = get(&gw.url("/.well-known/jwks.json"), None).await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&body).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_command_prints_what_it_creates() {
    let env = env().await;
    let (client_id, secret) = m2m_client(&env);
    assert!(client_id.starts_with("client_"), "{client_id}");
    assert_eq!(secret.len(), 43, "256 bits, base64url: {secret}");

    let public = admin(
        &env,
        &[
            "client",
            "create",
            "--name",
            "web",
            "--public",
            "--grant-type",
            "authorization_code",
            "refresh_token",
            "--redirect-uri",
            "http://127.0.0.1:3000/callback",
            "--api",
            API,
            "--scope",
            "read:data",
            "write:data",
        ],
    )
    .json();
    assert_eq!(public["public"], true);
    assert!(public.get("client_secret").is_none(), "{public}");
    assert_eq!(
        public["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );

    let org = admin(&env, &["org", "create", "--name", "Acme"]).json();
    let org_id = org["id"].as_str().unwrap();
    assert!(org_id.starts_with("org_") && org["name"] == "Acme");
    let user = admin(
        &env,
        &[
            "user",
            "create",
            "--email",
            "ann@example.test",
            "--password",
            "correct horse battery",
            "--name",
            "Ann",
        ],
    )
    .json();
    let user_id = user["id"].as_str().unwrap();
    assert!(user_id.starts_with("usr_"));
    assert_eq!(user["email"], "ann@example.test");
    assert!(!user.to_string().contains("argon2"), "{user}");
    let role = admin(
        &env,
        &[
            "role",
            "create",
            "--name",
            "viewer",
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    )
    .json();
    assert_eq!(role["grants"][API], serde_json::json!(["read:data"]));
    let member = admin(
        &env,
        &[
            "member", "add", "--org", org_id, "--user", user_id, "--role", "viewer",
        ],
    )
    .json();
    assert_eq!(member["org_id"], org_id);
    assert_eq!(member["user_id"], user_id);
    assert_eq!(member["roles"], serde_json::json!(["viewer"]));

    // The list shows both clients, and neither a secret nor a hash.
    let list = admin(&env, &["client", "list"]);
    assert!(!list.stdout.contains(&secret) && !list.stdout.contains("argon2"));
    assert!(!list.stdout.contains("secret"), "{}", list.stdout);
    let ids: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&client_id));
    // The database holds the hash, never the secret itself.
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&secret));
    }

    let deleted = admin(&env, &["client", "delete", &client_id]).json();
    assert_eq!(deleted["deleted"], true);
    let list = admin(&env, &["client", "list"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_references_and_invalid_values_exit_1() {
    let env = env().await;
    m2m_client(&env);
    let org = admin(&env, &["org", "create", "--name", "Acme"]).json();
    let org_id = org["id"].as_str().unwrap();

    admin(
        &env,
        &[
            "role",
            "create",
            "--name",
            "viewer",
            "--api",
            "https://nowhere.test",
            "--scope",
            "read",
        ],
    )
    .refused(1, "unknown api `https://nowhere.test`");
    admin(
        &env,
        &[
            "role",
            "create",
            "--name",
            "viewer",
            "--api",
            API,
            "--scope",
            "delete:all",
        ],
    )
    .refused(1, "has no scope `delete:all`");
    // Role names are joined by commas in X-Auth-Roles: one named
    // `viewer,admin` would read as two roles upstream. Such names (and
    // spaces, quotes, control characters) are refused, and nothing is made.
    for bad in [
        "viewer,admin",
        "two words",
        "say\"hi\"",
        "it's",
        "tab\there",
        "",
        "ünï",
    ] {
        admin(
            &env,
            &[
                "role",
                "create",
                "--name",
                bad,
                "--api",
                API,
                "--scope",
                "read:data",
            ],
        )
        .refused(1, "no commas, spaces, quotes or control characters");
    }
    let long = "r".repeat(65);
    admin(
        &env,
        &[
            "role",
            "create",
            "--name",
            &long,
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    )
    .refused(1, "invalid role name");
    assert_eq!(admin(&env, &["role", "list"]).json(), serde_json::json!([]));
    admin(
        &env,
        &[
            "member", "add", "--org", "org_nope", "--user", "usr_x", "--role", "viewer",
        ],
    )
    .refused(1, "unknown organization `org_nope`");
    admin(
        &env,
        &[
            "member", "add", "--org", org_id, "--user", "usr_nope", "--role", "viewer",
        ],
    )
    .refused(1, "unknown user `usr_nope`");
    admin(&env, &["client", "delete", "client_nope"]).refused(1, "unknown client `client_nope`");
    admin(
        &env,
        &[
            "client",
            "create",
            "--name",
            "x",
            "--grant-type",
            "authorization_code",
        ],
    )
    .refused(1, "redirect uri");
    admin(
        &env,
        &[
            "user",
            "create",
            "--email",
            "not-an-email",
            "--password",
            "long enough",
            "--name",
            "X",
        ],
    )
    .refused(1, "invalid email");
    admin(
        &env,
        &["api", "create", "--identifier", API, "--scope", "other"],
    )
    .refused(1, "api already exists");

    // A configuration without `issuer:` has no database to manage.
    let plain = r#"server:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "https://issuer.test"
    jwks_uri: "http://127.0.0.1:9/jwks.json"
    audiences: ["https://api.test"]
upstreams:
  api: { url: "http://127.0.0.1:9" }
routes:
  - path: /*
    upstream: api
"#;
    let path = env.dir.path().join("plain.yaml");
    std::fs::write(&path, plain).unwrap();
    admin_with(&path, &["client", "list"]).refused(1, "no `issuer:` section");
}

#[test]
fn bad_arguments_exit_2_and_every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("none.yaml");
    // Usage errors come before the configuration is read.
    for args in [
        &["api", "create", "--identifier", API][..],
        &[
            "client",
            "create",
            "--name",
            "x",
            "--grant-type",
            "password",
        ],
        &["client", "create", "--name", "x"],
        &[
            "client",
            "create",
            "--name",
            "x",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        ],
        &["org", "create"],
        &["user", "create", "--email", "a@b.test", "--name", "A"],
        &["member", "add", "--org", "o", "--user", "u"],
        &["keys", "spin"],
        &["frobnicate"],
    ] {
        let out = admin_with(&config, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("error:") || out.stderr.contains("Usage"),
            "{args:?}: {}",
            out.stderr
        );
    }
    for args in [
        &["--help"][..],
        &["api", "create", "--help"],
        &["client", "create", "--help"],
        &["client", "list", "--help"],
        &["client", "delete", "--help"],
        &["org", "create", "--help"],
        &["user", "create", "--help"],
        &["role", "create", "--help"],
        &["member", "add", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let out = admin_with(&config, args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage: portcullis admin"),
            "{}",
            out.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_client_gets_tokens_through_the_gateway() {
    let env = env().await;
    let (client_id, secret) = m2m_client(&env);
    let gw = Gateway::start(&env.yaml).await;

    let (status, body) = token(&gw, &client_id, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read:data");
    let access = body["access_token"].as_str().unwrap();
    let (status, _, _) = get(&gw.url("/anything"), Some(access)).await;
    assert_eq!(status, 200);

    let (status, body) = token(&gw, &client_id, "not-the-secret").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_publishes_a_new_kid_and_old_tokens_still_verify() {
    let env = env().await;
    let (client_id, secret) = m2m_client(&env);

    // The first gateway creates the first key; a token is signed with it.
    let first = Gateway::start(&env.yaml).await;
    let (status, body) = token(&first, &client_id, &secret).await;
    assert_eq!(status, 200, "{body}");
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_token);
    assert_eq!(jwks_kids(&first).await, vec![old_kid.clone()]);
    first.shutdown().await;

    let rotated = admin(&env, &["keys", "rotate"]).json();
    assert_eq!(rotated["rotated"], true, "{rotated}");
    let keys = rotated["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{rotated}");
    let old = keys.iter().find(|k| k["kid"] == old_kid.as_str()).unwrap();
    assert_eq!(old["signing"], true);
    assert!(old["signs_until"].is_string() && old["published_until"].is_string());
    let new = keys.iter().find(|k| k["new"] == true).unwrap();
    let new_kid = new["kid"].as_str().unwrap().to_owned();
    assert_eq!(new["signing"], false);
    assert!(new["signs_from"].as_str().unwrap() > old["signs_from"].as_str().unwrap());
    assert_eq!(
        rotated["published"],
        serde_json::json!(keys.iter().map(|k| k["kid"].clone()).collect::<Vec<_>>())
    );

    // Rotating again while the successor waits changes nothing.
    let again = admin(&env, &["keys", "rotate"]).json();
    assert_eq!(again["rotated"], false, "{again}");

    // A gateway started afterwards publishes both keys and still accepts the
    // token of the old one.
    let second = Gateway::start(&env.yaml).await;
    let kids = jwks_kids(&second).await;
    assert!(
        kids.contains(&new_kid) && kids.contains(&old_kid),
        "{kids:?}"
    );
    let (status, _, _) = get(&second.url("/anything"), Some(&old_token)).await;
    assert_eq!(status, 200);
    second.shutdown().await;

    // Once the successor signs (after the JWKS cache age), new tokens carry its
    // kid and the old key's tokens still verify until they expire.
    let clock = Arc::new(ManualClock::new(now() + 360));
    let config = Config::from_yaml(&env.yaml, Path::new("gateway.yaml")).unwrap();
    let options = Options {
        clock,
        ..Options::default()
    };
    let later = server::start(config, options).await.expect("start");
    let url = |path: &str| format!("http://{}{path}", later.proxy_addr);
    let gw_token = |secret: String| {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        Request::post(url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .unwrap()
    };
    let (status, _, body) = send(gw_token(secret.clone())).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let new_token = body["access_token"].as_str().unwrap();
    assert_eq!(kid_of(new_token), new_kid);
    for t in [new_token, old_token.as_str()] {
        let (status, _, _) = get(&url("/anything"), Some(t)).await;
        assert_eq!(status, 200);
    }
    later.shutdown().await;
}

/// The same commands on PostgreSQL, in a fresh schema dropped afterwards
/// (skipped when `PORTCULLIS_TEST_POSTGRES_URL` is unset).
#[tokio::test(flavor = "multi_thread")]
async fn the_commands_work_on_postgres_too() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = db.url().to_owned();
    let env = env_on(Some(&url)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let (client_id, secret) = m2m_client(&env);
        let org = admin(&env, &["org", "create", "--name", "Acme"]).json();
        let user = admin(
            &env,
            &[
                "user",
                "create",
                "--email",
                "pg@example.test",
                "--password",
                "long enough",
                "--name",
                "Pat",
            ],
        )
        .json();
        admin(
            &env,
            &[
                "role",
                "create",
                "--name",
                "viewer",
                "--api",
                API,
                "--scope",
                "read:data",
            ],
        )
        .json();
        let (org, user) = (org["id"].as_str().unwrap(), user["id"].as_str().unwrap());
        admin(
            &env,
            &[
                "member", "add", "--org", org, "--user", user, "--role", "viewer",
            ],
        )
        .json();
        admin(
            &env,
            &[
                "member", "add", "--org", org, "--user", user, "--role", "nope",
            ],
        )
        .refused(1, "unknown role `nope`");
        let first = admin(&env, &["keys", "rotate"]).json();
        assert_eq!(first["rotated"], true, "{first}");
        let second = admin(&env, &["keys", "rotate"]).json();
        assert_eq!(second["keys"].as_array().unwrap().len(), 2, "{second}");
        let list = admin(&env, &["client", "list"]);
        assert!(!list.stdout.contains(&secret) && list.stdout.contains(&client_id));
    })
    .await;
    drop(db);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn declared_resources_are_known_before_any_gateway_ran() {
    let env = env().await;
    let yaml = env.yaml.replace(
        "  signing_algs: [ES256]\n",
        "  signing_algs: [ES256]\n  resources:\n    - identifier: \"https://declared.example.test\"\n      scopes: [read]\n",
    );
    std::fs::write(&env.config, yaml).unwrap();
    let client = admin(
        &env,
        &[
            "client",
            "create",
            "--name",
            "m2m",
            "--grant-type",
            "client_credentials",
            "--api",
            "https://declared.example.test",
            "--scope",
            "read",
        ],
    )
    .json();
    assert!(client["client_secret"].is_string(), "{client}");
}

#[path = "admin_cli/catalog.rs"]
mod catalog;
#[path = "admin_cli/manage.rs"]
mod manage;
#[path = "admin_cli/privileges.rs"]
mod privileges;
