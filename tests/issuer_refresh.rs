//! The built-in issuer's refresh tokens, revocation and introspection end to
//! end: rotation, reuse detection, concurrent refresh (one winner, also across
//! two replicas on PostgreSQL), the reuse grace, absolute and idle expiry,
//! scope narrowing, current roles, RFC 7009 revocation and RFC 7662
//! introspection. Refresh families are seeded through the store, as the
//! authorization-code grant would create them; token time runs on a manual
//! clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::clock::{Clock, ManualClock};
use portcullis::issuer::store::{self, Membership, Organization, RefreshFamily, Role, Store, User};
use portcullis::issuer::token::{random_token, token_hash};
use serde_json::{Value, json};
use sqlx::Connection;
use support::oauth::{basic, enc};
use support::*;

const API: &str = "https://api.example.test";
const APP: (&str, &str) = ("app", "app-secret-0123456789");
const OTHER: (&str, &str) = ("other", "other-secret-0123456789");
const BILLING: (&str, &str) = ("billing", "billing-secret-0123456789");
/// A resource server's client: may introspect access tokens for `API`.
const GATEKEEPER: (&str, &str) = ("gatekeeper", "gatekeeper-secret-0123456789");
const POSTGRES_URL: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// A gateway with the issuer on a temp SQLite file (or `database`), a manual
/// clock and a second handle on the same database.
struct Env {
    _dir: tempfile::TempDir,
    gw: Gateway,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    user: String,
}

/// The issuer settings a test varies.
#[derive(Clone, Copy)]
struct Lifetimes {
    ttl: &'static str,
    idle: Option<&'static str>,
    grace: &'static str,
}

const DEFAULT: Lifetimes = Lifetimes {
    ttl: "30d",
    idle: None,
    grace: "0s",
};

fn yaml(db: &str, up: &str, l: Lifetimes) -> String {
    let idle = l
        .idle
        .map(|i| format!("  refresh_token_idle_ttl: {i}\n"))
        .unwrap_or_default();
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  signing_algs: [ES256, RS256]
  access_token_ttl: 15m
  refresh_token_ttl: {ttl}
{idle}  refresh_reuse_grace: {grace}
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: app
      client_secret: "{app}"
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data, write:data] }}
    - client_id: other
      client_secret: "{other}"
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token, client_credentials]
      scopes: {{ "{API}": [read:data, write:data] }}
    - client_id: web-app
      public: true
      redirect_uris: ["http://127.0.0.1:3000/callback"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data, write:data] }}
    - client_id: billing
      client_secret: "{billing}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: gatekeeper
      client_secret: "{gatekeeper}"
      grant_types: [client_credentials]
      introspection: ["{API}"]
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
        ttl = l.ttl,
        grace = l.grace,
        app = APP.1,
        other = OTHER.1,
        billing = BILLING.1,
        gatekeeper = GATEKEEPER.1,
    )
}

async fn env(l: Lifetimes) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let up = Upstream::start().await;
    let clock = Arc::new(ManualClock::new(now()));
    let gw = Gateway::start_with_clock(&yaml(&db, &up.url(), l), clock.clone()).await;
    let store = store::open(&db).await.unwrap();
    let user = seed_tenancy(store.as_ref(), clock.now_unix()).await;
    Env {
        _dir: dir,
        gw,
        clock,
        store,
        user,
    }
}

/// An organization `org_acme`, roles `editor` (read and write) and `viewer`
/// (read), and a user who is an editor there. Returns the user's id.
async fn seed_tenancy(s: &dyn Store, now: i64) -> String {
    let user = store::new_id("usr");
    s.create_organization(&Organization {
        id: "org_acme".into(),
        name: "Acme".into(),
        created_at: now,
    })
    .await
    .unwrap();
    s.create_user(&User {
        id: user.clone(),
        email: Some(format!("{user}@example.test")),
        name: Some("Ada".into()),
        picture: None,
        email_verified: true,
        password_hash: None,
        created_at: now,
        updated_at: now,
        anonymous: false,
        anonymized_at: None,
    })
    .await
    .unwrap();
    for (name, scopes) in [
        ("editor", vec!["read:data", "write:data"]),
        ("viewer", vec!["read:data"]),
    ] {
        let grants = [(
            API.to_owned(),
            scopes.iter().map(|s| s.to_string()).collect(),
        )];
        s.create_role(&Role {
            name: name.into(),
            grants: grants.into_iter().collect(),
            created_at: now,
        })
        .await
        .unwrap();
    }
    set_roles(s, &user, &["editor"]).await;
    user
}

async fn set_roles(s: &dyn Store, user: &str, roles: &[&str]) {
    s.add_membership(&Membership {
        org_id: "org_acme".into(),
        user_id: user.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at: 0,
    })
    .await
    .unwrap();
}

/// A new family for `client`, as the authorization-code grant makes it; its
/// first refresh token.
async fn family(env: &Env, client: &str, l: Lifetimes) -> String {
    seed_family(
        env.store.as_ref(),
        &env.user,
        client,
        env.clock.now_unix(),
        l,
    )
    .await
}

async fn seed_family(s: &dyn Store, user: &str, client: &str, now: i64, l: Lifetimes) -> String {
    let secs = |d: &str| -> i64 {
        let (n, unit) = d.split_at(d.len() - 1);
        let n: i64 = n.parse().unwrap();
        n * match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => panic!("unit {unit}"),
        }
    };
    let token = random_token(32);
    s.create_family(&RefreshFamily {
        id: store::new_id("fam"),
        client_id: client.into(),
        user_id: user.into(),
        org_id: Some("org_acme".into()),
        scope: "openid offline_access read:data write:data".into(),
        resource: Some(API.into()),
        auth_time: now,
        generation: 0,
        current_hash: token_hash(&token),
        previous_hash: None,
        rotated_at: None,
        created_at: now,
        absolute_expires_at: now + secs(l.ttl),
        idle_expires_at: l.idle.map(|i| now + secs(i)),
        revoked_at: None,
    })
    .await
    .unwrap();
    token
}

/// POSTs a form to `path`: status, headers, body as JSON (`null` when empty).
async fn post(
    gw: &Gateway,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req =
        Request::post(gw.url(path)).header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        req = req.header("authorization", basic(a));
    }
    let (status, headers, body) =
        send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await;
    let json = match body.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    };
    (status, headers, json)
}

async fn refresh(gw: &Gateway, client: (&str, &str), token: &str) -> (StatusCode, Value) {
    let body = format!("grant_type=refresh_token&refresh_token={}", enc(token));
    let (status, _, json) = post(gw, "/oauth/token", Some(client), &body).await;
    (status, json)
}

/// Refreshes and expects success; the new refresh token and the response.
async fn rotate(gw: &Gateway, token: &str) -> (String, Value) {
    let (status, body) = refresh(gw, APP, token).await;
    assert_eq!(status, 200, "{body}");
    (body["refresh_token"].as_str().unwrap().to_owned(), body)
}

async fn refused(gw: &Gateway, token: &str, code: &str) {
    let (status, body) = refresh(gw, APP, token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], code, "{body}");
}

async fn introspect(gw: &Gateway, client: (&str, &str), token: &str) -> Value {
    let (status, headers, body) = post(
        gw,
        "/oauth/introspect",
        Some(client),
        &format!("token={}", enc(token)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    body
}

async fn revoke(gw: &Gateway, client: (&str, &str), body: &str) {
    let (status, _, json) = post(gw, "/oauth/revoke", Some(client), body).await;
    assert_eq!(status, 200, "{json}");
}

async fn audit_actions(s: &dyn Store) -> Vec<String> {
    s.list_audit(100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect()
}

#[path = "issuer_refresh/cases.rs"]
mod cases;
#[path = "issuer_refresh/endpoints.rs"]
mod endpoints;
