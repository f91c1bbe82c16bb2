//! Revocation that holds everywhere, at once, against the real binary. What
//! the built-in issuer revokes — an access token by `jti`, the access tokens
//! of a revoked family (revocation, reuse detection, an authorization code
//! presented twice, also racing its redemption), of a deleted or anonymized
//! user, of a user whose password changed, of a deleted client — the gateway
//! refuses on the very next request (401 `invalid_token`, saying nothing of
//! why) and introspection calls inactive, also after a restart. Each case runs
//! on a SQLite file and on a fresh PostgreSQL schema (skipped without one).
//! `replicas`: two processes on one PostgreSQL database, where a revocation
//! through one reaches the other within the documented bound, also after the
//! other's listening connection was killed or cut off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "issuer_revocation/codes.rs"]
mod codes;
#[path = "issuer_revocation/replicas.rs"]
mod replicas;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::eventually;
use support::oauth::{self, client_credentials, code_flow, enc, refresh};
use support::process::{Portcullis, Seeded, admin, seed};
use support::*;

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "ada@example.test";
const PASSWORD: &str = "correct horse battery staple";
/// A resource server's client: may introspect every access token for `API`.
const RS: (&str, &str) = ("rs", "rs-secret-0123456789");
/// Holds the admin API's scope.
const OPS: (&str, &str) = ("ops", "ops-secret-0123456789");
/// Far above `issuer.revocation.sync_interval` here (1 s): the bound for a
/// revocation made by `portcullis admin` in another process.
const SYNC_BOUND: Duration = Duration::from_secs(15);

/// The configuration of a gateway with the built-in issuer on `db`, whose
/// processes re-read the revocations every `sync_interval`.
fn yaml(db: &str, up: &str, sync_interval: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 1s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  signing_algs: [ES256, RS256]
  revocation: {{ sync_interval: {sync_interval} }}
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
    - client_id: other
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
    - client_id: rs
      client_secret: "{rs}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
      introspection: ["{API}"]
    - client_id: ops
      client_secret: "{ops}"
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
        rs = RS.1,
        ops = OPS.1,
    )
}

/// One gateway process on `db`, seeded by `portcullis admin` with a
/// client_credentials client (`m2m`) and the user Ada, a reader in Acme.
struct Env {
    p: Portcullis,
    config: PathBuf,
    seeded: Seeded,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

impl Env {
    async fn start(db: &TestDb) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::start().await;
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml(db.url(), &up.url(), "1s")).unwrap();
        let seeded = seed(&config, API, EMAIL, PASSWORD);
        let p = Portcullis::start(&config).await;
        Env {
            p,
            config,
            seeded,
            _dir: dir,
            _up: up,
        }
    }

    fn base(&self) -> String {
        self.p.url("")
    }

    fn m2m(&self) -> (&str, &str) {
        (&self.seeded.client_id, &self.seeded.client_secret)
    }

    /// Ada's tokens from the login flow (a new family each time).
    async fn login(&self) -> Tokens {
        let issued = code_flow(
            &self.base(),
            "web",
            CALLBACK,
            "openid read:data",
            (EMAIL, PASSWORD),
        )
        .await;
        Tokens::of(&issued)
    }
}

/// An access token and the refresh token beside it.
struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn of(response: &Value) -> Tokens {
        Tokens {
            access: response["access_token"].as_str().unwrap().to_owned(),
            refresh: response["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// The status of a protected route through `p`'s gateway with `token`.
async fn status(p: &Portcullis, token: &str) -> u16 {
    get(&p.url("/api/items"), Some(token)).await.0.as_u16()
}

/// Asserts that `p`'s gateway refuses `token` as any invalid token (401
/// `invalid_token`), saying nothing of why.
async fn assert_refused(p: &Portcullis, token: &str, what: &str) {
    let (status, headers, body) = get(&p.url("/api/items"), Some(token)).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"portcullis\", error=\"invalid_token\", \
         error_description=\"the token is not active\"",
        "{what}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "invalid_token", "{what}");
    assert_eq!(body["error_description"], "the token is not active");
}

/// What introspection (by the resource server's client) says of `token`.
async fn active(base: &str, token: &str) -> bool {
    let answer = oauth::introspect(base, RS, token).await;
    answer["active"] == true
}

/// Revokes `token` as the public client `web` (RFC 7009); asserts 200.
async fn revoke_as_web(base: &str, token: &str) {
    let body = format!("client_id=web&token={}", enc(token));
    let (status, answer) = oauth::post(base, "/oauth/revoke", None, &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// An access token for the admin API.
async fn admin_token(base: &str) -> String {
    let body = format!("grant_type=client_credentials&resource={}", enc(ADMIN_API));
    let (status, answer) = oauth::post(base, "/oauth/token", Some(OPS), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

/// One admin API call; asserts a 2xx answer.
async fn admin_api(base: &str, method: &str, path: &str, body: Option<Value>) {
    let token = admin_token(base).await;
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
    let (status, _, text) = send(req.body(Full::new(bytes)).unwrap()).await;
    assert!(status.is_success(), "{method} {path}: {status} {text}");
}

fn sub(token: &str) -> String {
    claims_of(token)["sub"].as_str().unwrap().to_owned()
}

// === cases ===

async fn a_revoked_access_token_is_refused_on_the_next_request(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let ada = env.login().await;
    let family = claims_of(&ada.access)["family_id"].clone();
    assert!(
        family.as_str().is_some_and(|f| f.starts_with("rfam_")),
        "{family}"
    );
    let machine = client_credentials(&base, env.m2m()).await;
    assert_eq!(claims_of(&machine).get("family_id"), None);
    // Both verified once: the gateway caches them, and must still notice.
    assert_eq!(status(p, &ada.access).await, 200);
    assert_eq!(status(p, &machine).await, 200);

    revoke_as_web(&base, &ada.access).await;
    assert_refused(p, &ada.access, "revoked by jti").await;
    assert!(!active(&base, &ada.access).await);
    oauth::revoke(&base, env.m2m(), &machine).await;
    assert_refused(p, &machine, "a client_credentials token by jti").await;
    assert!(!active(&base, &machine).await);

    // Only that token: the family refreshes, and its new access token passes.
    let (code, body) = refresh(&base, "web", &ada.refresh).await;
    assert_eq!(code, 200, "{body}");
    let next = Tokens::of(&body);
    assert_eq!(claims_of(&next.access)["family_id"], family);
    assert_eq!(status(p, &next.access).await, 200);
    assert!(active(&base, &next.access).await);
    env.p.kill().await;
}

async fn a_revoked_family_takes_its_access_tokens_along(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let first = env.login().await;
    let (code, body) = refresh(&base, "web", &first.refresh).await;
    assert_eq!(code, 200, "{body}");
    let second = Tokens::of(&body);
    let elsewhere = env.login().await;
    for t in [&first.access, &second.access, &elsewhere.access] {
        assert_eq!(status(p, t).await, 200);
    }

    revoke_as_web(&base, &second.refresh).await;
    assert_refused(p, &first.access, "the family's first access token").await;
    assert_refused(p, &second.access, "the family's latest access token").await;
    for t in [&first.access, &second.access] {
        assert!(!active(&base, t).await);
    }
    let (code, body) = refresh(&base, "web", &second.refresh).await;
    assert_eq!(
        (code.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Another family of the same user lives on.
    assert_eq!(status(p, &elsewhere.access).await, 200);
    assert!(active(&base, &elsewhere.access).await);
    env.p.kill().await;
}

async fn reuse_detection_takes_the_access_tokens_along(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let first = env.login().await;
    let (code, body) = refresh(&base, "web", &first.refresh).await;
    assert_eq!(code, 200, "{body}");
    let second = Tokens::of(&body);
    assert_eq!(status(p, &second.access).await, 200);

    // The replaced refresh token again: reuse.
    let (code, body) = refresh(&base, "web", &first.refresh).await;
    assert_eq!(
        (code.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for (t, what) in [(&first.access, "before"), (&second.access, "after")] {
        assert_refused(
            p,
            t,
            &format!("the access token issued {what} the rotation"),
        )
        .await;
        assert!(!active(&base, t).await);
    }
    env.p.kill().await;
}

async fn a_new_password_ends_the_users_tokens(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let ada = env.login().await;
    let machine = client_credentials(&base, env.m2m()).await;
    assert_eq!(status(p, &ada.access).await, 200);

    let path = format!("/admin/v1/users/{}", sub(&ada.access));
    let change = json!({ "password": "a brand new passphrase for ada" });
    admin_api(&base, "PATCH", &path, Some(change)).await;
    assert_refused(p, &ada.access, "issued before the new password").await;
    assert!(!active(&base, &ada.access).await);
    let (code, body) = refresh(&base, "web", &ada.refresh).await;
    assert_eq!(
        (code.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Someone else's token is not affected.
    assert_eq!(status(p, &machine).await, 200);
    env.p.kill().await;
}

async fn a_deleted_user_s_tokens_end(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let ada = env.login().await;
    let again = env.login().await;
    assert_eq!(status(p, &ada.access).await, 200);
    admin_api(
        &base,
        "DELETE",
        &format!("/admin/v1/users/{}", sub(&ada.access)),
        None,
    )
    .await;
    for t in [&ada.access, &again.access] {
        assert_refused(p, t, "a deleted user's token").await;
        assert!(!active(&base, t).await);
    }
    env.p.kill().await;
}

/// `portcullis admin` runs in a process of its own: the gateway learns of
/// what it revoked from the store (within `sync_interval` on SQLite, by the
/// notice on PostgreSQL).
async fn an_anonymization_by_the_cli_reaches_the_running_gateway(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let ada = env.login().await;
    assert_eq!(status(p, &ada.access).await, 200);
    admin(&env.config, &["user", "anonymize", &sub(&ada.access)]);
    within(SYNC_BOUND, "the gateway to refuse the token", || async {
        status(p, &ada.access).await == 401
    })
    .await;
    assert_refused(p, &ada.access, "an anonymized user's token").await;
    assert!(!active(&base, &ada.access).await);
    env.p.kill().await;
}

async fn a_deleted_client_s_tokens_end(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let machine = client_credentials(&base, env.m2m()).await;
    let ada = env.login().await;
    assert_eq!(status(p, &machine).await, 200);
    let path = format!("/admin/v1/clients/{}", env.seeded.client_id);
    admin_api(&base, "DELETE", &path, None).await;
    assert_refused(p, &machine, "a deleted client's token").await;
    // Tokens of other clients pass.
    assert_eq!(status(p, &ada.access).await, 200);
    env.p.kill().await;
}

async fn revocations_survive_a_restart(db: TestDb) {
    let env = Env::start(&db).await;
    let base = env.base();
    let by_jti = env.login().await;
    let by_family = env.login().await;
    let kept = env.login().await;
    revoke_as_web(&base, &by_jti.access).await;
    revoke_as_web(&base, &by_family.refresh).await;
    let Env {
        p,
        config,
        _dir,
        _up,
        ..
    } = env;
    p.kill().await;

    let p = Portcullis::start(&config).await;
    assert_refused(&p, &by_jti.access, "revoked by jti before the restart").await;
    assert_refused(
        &p,
        &by_family.access,
        "revoked by family before the restart",
    )
    .await;
    assert_eq!(status(&p, &kept.access).await, 200);
    assert_eq!(status(&p, &by_jti.access).await, 401, "and stays so");
    p.kill().await;
}

on_both_databases!(
    a_revoked_access_token_is_refused_on_the_next_request,
    a_revoked_family_takes_its_access_tokens_along,
    reuse_detection_takes_the_access_tokens_along,
    a_new_password_ends_the_users_tokens,
    a_deleted_user_s_tokens_end,
    an_anonymization_by_the_cli_reaches_the_running_gateway,
    a_deleted_client_s_tokens_end,
    revocations_survive_a_restart,
);
