//! The built-in issuer's login flow end to end over real HTTP: authorize →
//! hosted login form (CSRF) → code → token exchange with PKCE → access and ID
//! tokens → userinfo, and the ways it must refuse. Cookies are carried by hand;
//! users, organizations and roles are created through the `Store` on the same
//! database the gateway uses. Every case runs on a temporary SQLite file and,
//! when `PORTCULLIS_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use portcullis::clock::ManualClock;
use portcullis::issuer::authorize::pkce;
use portcullis::issuer::clients::hash_secret;
use portcullis::issuer::store::{self, Membership, Organization, Role, Store, User};
use portcullis::server::Options;
use serde_json::Value;
use support::oauth::{enc, hidden, location, query_of, request, request_from, set_cookies};
use support::*;

const API: &str = "https://api.example.test";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abcdef";
const PASSWORD: &str = "correct horse battery staple";

struct Env {
    gw: Gateway,
    store: Arc<dyn Store>,
    up: Upstream,
    /// Last, so that the schema is dropped after everything that uses it.
    _db: TestDb,
}

fn yaml(db: &str, up: &Upstream) -> String {
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
  id_token_ttl: 1h
  refresh_token_ttl: 30d
  refresh_token_idle_ttl: 7d
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data, write:data] }}
    - client_id: portal
      client_secret: "portal-secret-0123456789"
      require_pkce: false
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code]
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
        up = up.url(),
    )
}

/// Starts the gateway on `db`, then creates: alice (one org, role reader), bob
/// (two orgs), in `org_a` "Acme" and `org_b` "Beta".
async fn env(db: TestDb) -> Env {
    env_with(db, Options::default()).await
}

/// As [`env`], with the gateway started with `options`.
async fn env_with(db: TestDb, options: Options) -> Env {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&yaml(db.url(), &up), options).await;
    let store = store::open(db.url()).await.unwrap();
    let t = now();
    let hash = hash_secret(PASSWORD.into()).await.unwrap();
    let mut grants = store::ScopeMap::new();
    grants.insert(API.into(), vec!["read:data".into()]);
    store
        .create_role(&Role {
            name: "reader".into(),
            grants,
            created_at: t,
        })
        .await
        .unwrap();
    for (id, name) in [("org_a", "Acme"), ("org_b", "Beta")] {
        store
            .create_organization(&Organization {
                id: id.into(),
                name: name.into(),
                created_at: t,
            })
            .await
            .unwrap();
    }
    for (id, email, orgs) in [
        ("usr_alice", "alice@example.test", vec!["org_a"]),
        ("usr_bob", "bob@example.test", vec!["org_a", "org_b"]),
    ] {
        store
            .create_user(&User {
                id: id.into(),
                email: Some(email.into()),
                name: Some(format!("{id} name")),
                picture: Some("https://pics.example.test/a.png".into()),
                email_verified: true,
                password_hash: Some(hash.clone()),
                created_at: t,
                updated_at: t,
                anonymous: false,
                anonymized_at: None,
            })
            .await
            .unwrap();
        for org in orgs {
            store
                .add_membership(&Membership {
                    org_id: org.into(),
                    user_id: id.into(),
                    roles: vec!["reader".into()],
                    created_at: t,
                })
                .await
                .unwrap();
        }
    }
    Env {
        gw,
        store,
        up,
        _db: db,
    }
}

// === helpers ===

fn authorize_query(client: &str, extra: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id={client}&redirect_uri={}\
         &scope=openid+profile+email+read:data&state=st-123&nonce=n-456\
         &code_challenge={}&code_challenge_method=S256{extra}",
        enc(CALLBACK),
        pkce::s256(VERIFIER),
    )
}

/// A login form opened by an authorize request: its URL, the CSRF cookie, the
/// transaction and CSRF fields.
struct Form {
    cookie: String,
    txn: String,
    csrf: String,
}

async fn open_form(gw: &Gateway, query: &str, cookies: &[String]) -> (Form, String) {
    let (status, headers, body) = request("GET", &gw.url(query), cookies, None).await;
    assert_eq!(status, 302, "{body}");
    let login = location(&headers);
    assert!(login.starts_with("/login?txn="), "{login}");
    let cookie = set_cookies(&headers).pop().unwrap();
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("SameSite=Strict")
    );
    let (status, headers, html) =
        request("GET", &gw.url(&login), std::slice::from_ref(&cookie), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!html.contains("<script"));
    let form = Form {
        cookie,
        txn: hidden(&html, "txn"),
        csrf: hidden(&html, "csrf"),
    };
    (form, html)
}

async fn submit(gw: &Gateway, form: &Form, fields: &str) -> (StatusCode, HeaderMap, String) {
    let body = format!("txn={}&csrf={}&{fields}", enc(&form.txn), enc(&form.csrf));
    request(
        "POST",
        &gw.url("/login"),
        std::slice::from_ref(&form.cookie),
        Some(&body),
    )
    .await
}

/// As [`submit`], from the local address `from`.
async fn submit_from(
    gw: &Gateway,
    from: Option<std::net::IpAddr>,
    form: &Form,
    fields: &str,
) -> (StatusCode, HeaderMap, String) {
    let body = format!("txn={}&csrf={}&{fields}", enc(&form.txn), enc(&form.csrf));
    let cookies = std::slice::from_ref(&form.cookie);
    request_from(from, "POST", &gw.url("/login"), cookies, Some(&body)).await
}

fn credentials(email: &str, password: &str) -> String {
    format!("email={}&password={}", enc(email), enc(password))
}

/// Logs `email` in through the form: the code redirect and the session cookie.
async fn login(gw: &Gateway, query: &str, email: &str) -> (String, String) {
    let (form, _) = open_form(gw, query, &[]).await;
    let (status, headers, body) = submit(gw, &form, &credentials(email, PASSWORD)).await;
    assert_eq!(status, 302, "{body}");
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    (location(&headers), session)
}

async fn exchange(gw: &Gateway, fields: &str) -> (StatusCode, Value) {
    let (status, headers, body) = request(
        "POST",
        &gw.url("/oauth/token"),
        &[],
        Some(&format!("grant_type=authorization_code&{fields}")),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store");
    (status, serde_json::from_str(&body).unwrap())
}

fn code_fields(code: &str, verifier: &str) -> String {
    format!(
        "client_id=web&code={}&redirect_uri={}&code_verifier={verifier}",
        enc(code),
        enc(CALLBACK)
    )
}

#[path = "issuer_login/budgets.rs"]
mod budgets;
#[path = "issuer_login/flows.rs"]
mod flows;
#[path = "issuer_login/logout.rs"]
mod logout;
#[path = "issuer_login/pages.rs"]
mod pages;
#[path = "issuer_login/sessions.rs"]
mod sessions;
