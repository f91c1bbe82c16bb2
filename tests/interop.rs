//! Interop with libraries nobody here wrote: openid-client discovers the
//! built-in issuer and runs `client_credentials`; jose verifies the token with
//! `createRemoteJWKSet` + `jwtVerify`. The npm packages are installed by
//! `.ci/run` (`npm ci --prefix tests/interop`); without node or them, the test
//! says it was skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::*;

const API: &str = "https://api.example.test";

#[tokio::test]
async fn openid_client_and_jose_accept_the_issuer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node
        || !dir.join("node_modules/jose").exists()
        || !dir.join("node_modules/openid-client").exists()
    {
        println!(
            "skipped: node or tests/interop/node_modules missing (run `npm ci --prefix tests/interop`)"
        );
        return;
    }
    let db_dir = tempfile::tempdir().unwrap();
    // The issuer URL must be where clients reach it: reserve a port first.
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
  database: "sqlite://{db}/issuer.db"
  signing_algs: [ES256, RS256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: interop
      client_secret: "interop-secret-0123456789"
      grant_types: [client_credentials]
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
        db = db_dir.path().display(),
        up = up.url(),
    );
    let gw = Gateway::start(&yaml).await;
    let out = tokio::process::Command::new("node")
        .arg(dir.join("client_credentials.mjs"))
        .env("ISSUER", &url)
        .env("CLIENT_ID", "interop")
        .env("CLIENT_SECRET", "interop-secret-0123456789")
        .env("RESOURCE", API)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["alg"], "ES256");
    assert_eq!(report["scope"], "read:data");
    assert_eq!(report["sub"], "interop");
    gw.shutdown().await;
}
