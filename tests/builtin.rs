//! The gateway verifying the built-in issuer's tokens with in-process keys: a
//! `builtin: true` issuer is never fetched, becomes ready once the issuer installs
//! its published JWKS, and follows key rotation through reinstalls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::*;

use portcullis::config::SigningAlg;
use portcullis::issuer::signing::{KeyRecord, SigningKey, generate, jwks_json};

const URL: &str = "http://127.0.0.1:8080";
const FETCHES: &str = "portcullis_jwks_fetches_total{issuer=\"local\"}";

fn yaml(upstream: &Upstream) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "{URL}"
  database: "sqlite::memory:"
  signing_algs: [ES256, RS256, EdDSA]
issuers:
  - id: local
    builtin: true
    audiences: ["{AUDIENCE}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
    scopes: [read:data]
"#,
        up = upstream.url(),
    )
}

fn record(alg: SigningAlg) -> KeyRecord {
    generate(alg)
        .expect("generate")
        .into_record(None, now(), now(), now())
        .expect("record")
}

fn access_token(record: &KeyRecord, claims: &Value) -> String {
    SigningKey::from_record(record, None)
        .expect("key")
        .sign(claims, "at+jwt")
        .expect("sign")
}

fn claims() -> Value {
    json!({
        "iss": URL,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": "web-app",
        "iat": now(),
        "nbf": now(),
        "exp": now() + 900,
        "jti": "t1",
        "scope": "read:data",
    })
}

#[tokio::test]
async fn builtin_tokens_verify_with_installed_keys_and_nothing_is_fetched() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start_unready(&yaml(&upstream)).await;
    let keys = gw.running().builtin_keys().expect("a builtin issuer");
    assert!(keys.is_builtin());
    // The running issuer installed its own keys at start: ready at once. A key
    // it never published is unknown (401), and nothing is fetched to find it.
    assert_eq!(gw.readyz().await, StatusCode::OK);
    let es = record(SigningAlg::ES256);
    let token = access_token(&es, &claims());
    assert_eq!(gw_get(&gw, &token).await, StatusCode::UNAUTHORIZED);

    let (rs, ed) = (record(SigningAlg::RS256), record(SigningAlg::EdDSA));
    keys.install_jwks(jwks_json([&es, &rs, &ed]).as_bytes())
        .expect("install");
    assert_eq!(gw.readyz().await, StatusCode::OK);
    for r in [&es, &rs, &ed] {
        let token = access_token(r, &claims());
        assert_eq!(gw_get(&gw, &token).await, StatusCode::OK, "{}", r.alg);
    }
    let seen = upstream.last();
    assert_eq!(seen.headers["x-auth-subject"], "user-1");
    assert_eq!(seen.headers["x-auth-issuer"], URL);

    // Wrong issuer, audience or scope are still refused.
    let mut c = claims();
    c["scope"] = json!("write:data");
    assert_eq!(
        gw_get(&gw, &access_token(&es, &c)).await,
        StatusCode::FORBIDDEN
    );
    let mut c = claims();
    c["aud"] = json!("https://elsewhere.test");
    assert_eq!(
        gw_get(&gw, &access_token(&es, &c)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw.metric(FETCHES).await, 0.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn rotation_is_followed_through_reinstalls() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start_unready(&yaml(&upstream)).await;
    let keys = gw.running().builtin_keys().expect("a builtin issuer");
    let old = record(SigningAlg::ES256);
    keys.install_jwks(jwks_json([&old]).as_bytes())
        .expect("install");
    let old_token = access_token(&old, &claims());
    assert_eq!(gw_get(&gw, &old_token).await, StatusCode::OK);

    // A key not yet published is unknown, and no fetch is tried for it.
    let new = record(SigningAlg::ES256);
    let new_token = access_token(&new, &claims());
    assert_eq!(gw_get(&gw, &new_token).await, StatusCode::UNAUTHORIZED);
    // Published beside the old one: both verify.
    let generation = keys.generation();
    keys.install_jwks(jwks_json([&old, &new]).as_bytes())
        .expect("install");
    assert!(keys.generation() > generation);
    assert_eq!(gw_get(&gw, &new_token).await, StatusCode::OK);
    assert_eq!(gw_get(&gw, &old_token).await, StatusCode::OK);
    // Once the old key leaves the JWKS, its (cached) verdicts go with it.
    keys.install_jwks(jwks_json([&new]).as_bytes())
        .expect("install");
    assert_eq!(gw_get(&gw, &old_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(gw_get(&gw, &new_token).await, StatusCode::OK);

    // A broken document changes nothing.
    assert!(keys.install_jwks(b"{not json").is_err());
    assert_eq!(gw_get(&gw, &new_token).await, StatusCode::OK);
    assert_eq!(gw.metric(FETCHES).await, 0.0);
    // Asked to refresh, it refuses: there is nothing to fetch, and no task runs.
    assert!(matches!(
        keys.refresh().await,
        Err(portcullis::auth::jwks::FetchError::Builtin)
    ));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    keys.clone().run_refresher(rx).await;
    assert_eq!(gw.metric(FETCHES).await, 0.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn gateways_without_a_builtin_issuer_have_no_builtin_keys() {
    let jwks = JwksServer::start(&[&ec()]).await;
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&config(
        &jwks,
        &upstream,
        "  - path: /*\n    upstream: api\n",
    ))
    .await;
    assert!(gw.running().builtin_keys().is_none());
    gw.shutdown().await;
}

async fn gw_get(gw: &Gateway, token: &str) -> StatusCode {
    get(&gw.url("/anything"), Some(token)).await.0
}

/// An ID token of the built-in issuer never passes a route, even where the
/// operator listed the client id among the audiences: the gateway wants
/// `typ: at+jwt` from the built-in issuer. The tokens come from a real sign-in.
#[tokio::test]
async fn builtin_id_tokens_never_pass_a_route() {
    use portcullis::issuer::clients::hash_secret;
    use portcullis::issuer::store::{self, User};
    const API: &str = "https://api.example.test";
    const CALLBACK: &str = "http://127.0.0.1:3000/callback";
    let db = TestDb::sqlite();
    let upstream = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  signing_algs: [ES256, RS256]
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code]
      scopes: {{ "{API}": [read:data] }}
issuers:
  - id: local
    builtin: true
    audiences: ["{API}", "web"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
"#,
        db = db.url(),
        up = upstream.url(),
    );
    let gw = Gateway::start(&yaml).await;
    let store = store::open(db.url()).await.unwrap();
    store
        .create_user(&User {
            id: "usr_alice".into(),
            email: Some("alice@example.test".into()),
            name: Some("Alice".into()),
            picture: None,
            email_verified: true,
            password_hash: Some(hash_secret("a long enough password".into()).await.unwrap()),
            created_at: now(),
            updated_at: now(),
            anonymous: false,
            anonymized_at: None,
        })
        .await
        .unwrap();
    let tokens = support::oauth::code_flow(
        &gw.url(""),
        "web",
        CALLBACK,
        "openid email read:data",
        ("alice@example.test", "a long enough password"),
    )
    .await;
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    assert_eq!(claims_of(id_token)["aud"], "web");
    let (status, headers, body) = get(&gw.url("/anything"), Some(id_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "invalid_token");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // The access token of the same sign-in passes.
    let access = tokens["access_token"].as_str().expect("an access token");
    assert_eq!(header_of(access)["typ"], "at+jwt");
    assert_eq!(gw_get(&gw, access).await, StatusCode::OK);
    assert_eq!(upstream.count(), 1);

    // Signed by the issuer's own key but without `typ: at+jwt`: refused too.
    let keys = gw.running().builtin_keys().expect("builtin keys");
    let es = record(SigningAlg::ES256);
    keys.install_jwks(jwks_json([&es]).as_bytes())
        .expect("install");
    let mut c = claims();
    c["iss"] = json!("http://issuer.test");
    c["aud"] = json!(API);
    for typ in ["JWT", "application/jwt"] {
        let t = SigningKey::from_record(&es, None)
            .expect("key")
            .sign(&c, typ)
            .expect("sign");
        assert_eq!(gw_get(&gw, &t).await, StatusCode::UNAUTHORIZED, "{typ}");
    }
    let t = SigningKey::from_record(&es, None)
        .expect("key")
        .sign(&c, "at+jwt")
        .expect("sign");
    assert_eq!(gw_get(&gw, &t).await, StatusCode::OK);
    gw.shutdown().await;
}

/// The issuer's paths are matched on the normalised path, as routes are: an
/// issuer path written another way (`//`, percent-encoded) is the issuer's and
/// never reaches an upstream through the catch-all; one with matrix
/// parameters is refused; a neighbour that is no issuer path is a route's.
#[tokio::test]
async fn issuer_paths_are_matched_after_normalisation() {
    let upstream = Upstream::start().await;
    let text = yaml(&upstream).replace(
        "routes:\n",
        "routes:\n  - path: /oauth/callback\n    upstream: api\n    auth: anonymous\n",
    );
    let gw = Gateway::start(&text).await;
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    };
    for target in [
        "/.well-known//jwks.json",
        "//.well-known/jwks.json",
        "/%2Ewell-known/jwks.json",
        "/.well-known/jwks%2Ejson",
        "/.well-known/jwks.json?x=1",
    ] {
        let resp = raw(gw.addr, get(target).as_bytes()).await;
        assert_eq!(raw_status(&resp), 200, "{target}: {resp}");
        assert!(
            resp.contains("\"keys\""),
            "{target}: the issuer's JWKS: {resp}"
        );
    }
    // The token endpoint answers a form it cannot use as the issuer does.
    for target in ["/oauth//token", "/oauth/%74oken", "//oauth/token"] {
        let body = "grant_type=client_credentials";
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert!(
            matches!(raw_status(&resp), 400 | 401) && resp.contains("\"error\":\"invalid_"),
            "{target}: the token endpoint's OAuth error: {resp}"
        );
    }
    // The admin API: a token is required, whatever the spelling.
    for target in ["/admin//v1/users", "/admin/%761/users"] {
        let resp = raw(gw.addr, get(target).as_bytes()).await;
        assert_eq!(raw_status(&resp), 401, "{target}: {resp}");
    }
    // Matrix parameters on an issuer path: refused, not forwarded.
    for target in ["/oauth/token;x=1", "/.well-known/jwks.json;v=2"] {
        let resp = raw(gw.addr, get(target).as_bytes()).await;
        assert_eq!(raw_status(&resp), 400, "{target}: {resp}");
        assert!(
            resp.contains("bad_path") || resp.contains("invalid_request"),
            "{resp}"
        );
    }
    assert_eq!(upstream.count(), 0, "no issuer path reached the upstream");
    // A neighbour of the issuer's paths is a route's.
    let resp = raw(gw.addr, get("/oauth//callback").as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}
