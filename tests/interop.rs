//! Interop with libraries nobody here wrote: openid-client discovers the
//! built-in issuer and runs `client_credentials`, and the whole user lifecycle
//! (authorization code with PKCE through the login form, ID tokens it
//! validates itself, userinfo, refresh rotation and reuse, revocation,
//! introspection, logout); jose verifies access tokens with
//! `createRemoteJWKSet` + `jwtVerify`. The pinned npm packages are installed
//! by the tests themselves on first use (`npm ci --prefix tests/interop`);
//! without node, or when npm cannot reach its registry, they say they were
//! skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use portcullis::issuer::clients::hash_secret;
use portcullis::issuer::store::{self, Membership, Organization, User};
use serde_json::Value;
use support::*;

const API: &str = "https://api.example.test";
const SECRET: &str = "interop-secret-0123456789";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "ada@example.test";
const PASSWORD: &str = "correct horse battery staple";

/// The folder of the scripts, when node is there; the pinned packages are
/// installed on first use (`npm ci`, from `package-lock.json`), once per run.
fn interop_dir() -> Option<PathBuf> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node {
        skip("needs Node.js (node) for openid-client and jose");
        return None;
    }
    let installed = || {
        ["jose", "openid-client"]
            .iter()
            .all(|p| dir.join("node_modules").join(p).exists())
    };
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !installed() {
        let ran = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .output();
        if !ran.as_ref().is_ok_and(|o| o.status.success()) || !installed() {
            skip("needs the npm packages of tests/interop, and `npm ci` could not install them");
            return None;
        }
    }
    Some(dir)
}

/// The gateway with the issuer at a reserved port (the issuer URL must be
/// where clients reach it), on a temporary SQLite file.
struct Env {
    gw: Gateway,
    url: String,
    db: String,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let addr = closed_port().await;
    let url = format!("http://{addr}");
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "{addr}"
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "{url}"
  database: "{db}"
  signing_algs: [ES256, RS256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: interop
      client_secret: "{SECRET}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: webapp
      client_secret: "{SECRET}"
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
upstreams:
  api: {{ url: "{up}" }}
routes:
  - path: /*
    upstream: api
"#,
        up = up.url(),
    );
    let gw = Gateway::start(&yaml).await;
    Env {
        gw,
        url,
        db,
        _dir: dir,
        _up: up,
    }
}

/// Runs `script` with `vars`; the JSON line it printed.
async fn node(dir: &Path, script: &str, vars: &[(&str, &str)]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(script));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test]
async fn openid_client_and_jose_accept_the_issuer() {
    let Some(dir) = interop_dir() else { return };
    let env = env().await;
    let vars = [
        ("ISSUER", env.url.as_str()),
        ("CLIENT_ID", "interop"),
        ("CLIENT_SECRET", SECRET),
        ("RESOURCE", API),
    ];
    let report = node(&dir, "client_credentials.mjs", &vars).await;
    assert_eq!(report["ok"], true);
    assert_eq!(report["alg"], "ES256");
    assert_eq!(report["scope"], "read:data");
    assert_eq!(report["sub"], "interop");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn openid_client_runs_the_user_lifecycle() {
    let Some(dir) = interop_dir() else { return };
    let env = env().await;
    let s = store::open(&env.db).await.unwrap();
    let t = now();
    s.create_organization(&Organization {
        id: "org_acme".into(),
        name: "Acme".into(),
        created_at: t,
    })
    .await
    .unwrap();
    s.create_user(&User {
        id: "usr_ada".into(),
        email: Some(EMAIL.into()),
        name: Some("Ada".into()),
        picture: None,
        email_verified: true,
        password_hash: Some(hash_secret(PASSWORD.into()).await.unwrap()),
        created_at: t,
        updated_at: t,
        anonymous: false,
        anonymized_at: None,
    })
    .await
    .unwrap();
    s.add_membership(&Membership {
        org_id: "org_acme".into(),
        user_id: "usr_ada".into(),
        roles: Vec::new(),
        created_at: t,
    })
    .await
    .unwrap();
    let vars = [
        ("ISSUER", env.url.as_str()),
        ("CLIENT_ID", "webapp"),
        ("CLIENT_SECRET", SECRET),
        ("REDIRECT_URI", CALLBACK),
        ("RESOURCE", API),
        ("EMAIL", EMAIL),
        ("PASSWORD", PASSWORD),
    ];
    let report = node(&dir, "code_flow.mjs", &vars).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["sub"], "usr_ada");
    assert_eq!(report["org_id"], "org_acme");
    assert_eq!(report["id_alg"], "RS256");
    s.close().await;
    env.gw.shutdown().await;
}
