//! The one "is this one of our access tokens" check, end to end on the real
//! binary: userinfo, introspection, revocation and the admin API each honour
//! an access token signed with the issuer's own key, and each refuses the
//! same claims as an ID token, under another `typ`, or signed by a foreign
//! key (under our `kid` or its own). The tokens are made here with the key
//! read from the issuer's database, so that only the property under test
//! differs from a token the issuer would accept. Every case runs on a SQLite
//! file and, when `PORTCULLIS_TEST_POSTGRES_URL` is set, on a fresh
//! PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jsonwebtoken::Algorithm;
use portcullis::issuer::signing::{KeyRecord, SigningKey};
use portcullis::issuer::store::{self, SigningKeyRecord};
use serde_json::{Value, json};
use support::oauth::{enc, post};
use support::process::{ConfigFile, Portcullis, admin};
use support::*;

const ISSUER_URL: &str = "http://issuer.test";
const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const WEB: (&str, &str) = ("web", "web-secret-0123456789");
const OTHER: (&str, &str) = ("other", "other-secret-0123456789");

async fn setup(db: &TestDb) -> ConfigFile {
    ConfigFile::write(|up| {
        format!(
            r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 1s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "{ISSUER_URL}"
  database: "{db}"
  signing_algs: [ES256]
  access_token_ttl: 15m
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: web
      client_secret: "{web}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: other
      client_secret: "{other}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
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
            web = WEB.1,
            other = OTHER.1,
        )
    })
    .await
}

/// The issuer's signing key, read from its database (no master key is set,
/// so the private key is stored unsealed).
async fn our_key(db: &TestDb) -> SigningKey {
    let store = store::open(db.url()).await.unwrap();
    let records = store.list_signing_keys(now()).await.unwrap();
    let r: SigningKeyRecord = records.into_iter().next().expect("a signing key");
    let record = KeyRecord {
        kid: r.kid,
        alg: r.alg,
        private_key: r.private_key,
        public_jwk: r.public_jwk,
        created_at: r.created_at,
        publish_at: r.publish_at,
        activate_at: r.activate_at,
        retire_at: r.retire_at,
        expire_at: r.expire_at,
    };
    SigningKey::from_record(&record, None).unwrap()
}

/// Access-token claims of this issuer for `sub`, `aud` and `scope`, issued
/// to `web`, under `jti`.
fn access_claims(sub: &str, aud: &str, scope: &str, jti: &str) -> Value {
    let t = now();
    json!({
        "iss": ISSUER_URL, "sub": sub, "aud": aud, "client_id": WEB.0,
        "scope": scope, "jti": jti, "iat": t, "nbf": t, "exp": t + 600,
    })
}

/// The same claims as tokens that are not our access tokens, each named.
fn impostors(ours: &SigningKey, claims: &Value) -> Vec<(&'static str, String)> {
    let kid = ours.kid();
    let foreign_as_ours = key("ec256", Algorithm::ES256, kid);
    let foreign = key("ec256-b", Algorithm::ES256, "foreign-1");
    let header = |k: &TestKey| json!({"alg": "ES256", "kid": k.kid, "typ": "at+jwt"});
    vec![
        ("an ID token", ours.sign(claims, "JWT").unwrap()),
        ("another typ", ours.sign(claims, "dpop+jwt").unwrap()),
        (
            "a foreign key under our kid",
            token_with_header(&foreign_as_ours, &header(&foreign_as_ours), claims),
        ),
        (
            "a foreign key",
            token_with_header(&foreign, &header(&foreign), claims),
        ),
    ]
}

async fn userinfo(p: &Portcullis, token: &str) -> (u16, Option<String>) {
    let (status, headers, _) = get(&p.url("/oauth/userinfo"), Some(token)).await;
    let challenge = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status.as_u16(), challenge)
}

async fn introspect(p: &Portcullis, token: &str) -> Value {
    let body = format!("token={}", enc(token));
    let (status, json) = post(&p.url(""), "/oauth/introspect", Some(WEB), &body).await;
    assert_eq!(status, 200, "{json}");
    json
}

async fn revoke(p: &Portcullis, client: (&str, &str), token: &str) -> (u16, Value) {
    let body = format!("token={}", enc(token));
    let (status, json) = post(&p.url(""), "/oauth/revoke", Some(client), &body).await;
    (status.as_u16(), json)
}

async fn admin_api(p: &Portcullis, token: &str) -> u16 {
    get(&p.url("/admin/v1/clients"), Some(token))
        .await
        .0
        .as_u16()
}

const INVALID_TOKEN: &str = "Bearer realm=\"portcullis\", error=\"invalid_token\"";

async fn only_our_access_tokens_pass_userinfo_introspection_revocation_and_the_admin_api(
    db: TestDb,
) {
    let s = setup(&db).await;
    let p = Portcullis::start(&s.config).await;
    let user = admin(
        &s.config,
        &[
            "user",
            "create",
            "--email",
            "ada@example.test",
            "--password",
            "correct horse battery staple",
            "--name",
            "Ada",
        ],
    );
    let sub = user["id"].as_str().unwrap();
    let ours = our_key(&db).await;

    // Userinfo: ours is honoured, each impostor is invalid_token.
    let claims = access_claims(sub, API, "openid read:data", "jti-userinfo");
    let (status, _) = userinfo(&p, &ours.sign(&claims, "at+jwt").unwrap()).await;
    assert_eq!(status, 200, "our own access token");
    for (what, token) in impostors(&ours, &claims) {
        let (status, challenge) = userinfo(&p, &token).await;
        assert_eq!(status, 401, "userinfo, {what}");
        assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN), "{what}");
    }

    // Introspection: active, or inactive with nothing said.
    let claims = access_claims(sub, API, "read:data", "jti-introspect");
    let live = introspect(&p, &ours.sign(&claims, "at+jwt").unwrap()).await;
    assert_eq!(live["active"], true, "{live}");
    for (what, token) in impostors(&ours, &claims) {
        let answer = introspect(&p, &token).await;
        assert_eq!(answer, json!({"active": false}), "introspection, {what}");
    }

    // The admin API: a token for it with the admin scope.
    let claims = access_claims(sub, ADMIN_API, "portcullis:admin", "jti-admin");
    assert_eq!(
        admin_api(&p, &ours.sign(&claims, "at+jwt").unwrap()).await,
        200
    );
    for (what, token) in impostors(&ours, &claims) {
        assert_eq!(admin_api(&p, &token).await, 401, "admin API, {what}");
    }

    // Revocation: our live token, issued to web, is not revoked by another
    // client (answered 200 all the same: the answer does not say it is
    // live); an impostor is not a token of ours at all (200, RFC 7009
    // §2.2), and revoking one revokes nothing: our token with the same jti
    // stays active.
    let claims = access_claims(sub, API, "read:data", "jti-revoke");
    let genuine = ours.sign(&claims, "at+jwt").unwrap();
    let (status, body) = revoke(&p, OTHER, &genuine).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(introspect(&p, &genuine).await["active"], true);
    for (what, token) in impostors(&ours, &claims) {
        assert_eq!(revoke(&p, OTHER, &token).await.0, 200, "{what}");
        assert_eq!(revoke(&p, WEB, &token).await.0, 200, "{what}");
        let answer = introspect(&p, &genuine).await;
        assert_eq!(answer["active"], true, "revocation of {what} revoked ours");
    }
    assert_eq!(revoke(&p, WEB, &genuine).await.0, 200);
    assert_eq!(introspect(&p, &genuine).await, json!({"active": false}));
    p.kill().await;
}

on_both_databases!(only_our_access_tokens_pass_userinfo_introspection_revocation_and_the_admin_api);
