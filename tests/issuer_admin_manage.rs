//! The admin REST API's management of existing records end to end: users
//! (list, show, update, delete), organizations, roles and members (list,
//! remove), webhooks (create, list, delete) and clients' `require_pkce`. What
//! a change does is checked where it shows: a new password at `/login` and at
//! the refresh grant, a deleted user there too, `require_pkce` at
//! `/oauth/authorize`, each event at a real webhook receiver (signed with the
//! secret shown once), each change in the audit log. Runs on a temporary
//! SQLite database; the cases live in `issuer_admin_manage/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis::issuer::authorize::pkce;
use serde_json::{Value, json};
use support::oauth::enc;
use support::*;

const API: &str = "https://api.example.test";
/// The admin API's own resource, which the issuer declares.
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const ADMIN: (&str, &str) = ("ops", "ops-secret-0123456789");
const READER: (&str, &str) = ("reader", "reader-secret-0123456789");
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abcdef";

struct Env {
    _dir: tempfile::TempDir,
    _up: Upstream,
    gw: Gateway,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let up = Upstream::start().await;
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  webhook_address_policy: {{ allow_private: true }}  # receivers on 127.0.0.1
  signing_algs: [ES256, RS256]
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: ops
      client_secret: "{ops}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
    - client_id: reader
      client_secret: "{reader}"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
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
        ops = ADMIN.1,
        reader = READER.1,
        up = up.url(),
    );
    let gw = Gateway::start(&yaml).await;
    Env {
        _dir: dir,
        _up: up,
        gw,
    }
}

// === the admin API ===

async fn client_token(gw: &Gateway, client: (&str, &str), resource: &str) -> String {
    oauth::client_credentials_for(&gw.url(""), client, resource).await
}

async fn admin_token(gw: &Gateway) -> String {
    client_token(gw, ADMIN, ADMIN_API).await
}

/// One admin API call: status, headers and the JSON body.
async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
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

/// Calls and asserts the status; the JSON body.
async fn ok(gw: &Gateway, t: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, _, json) = call(gw, method, path, Some(t), body).await;
    assert!(status.is_success(), "{method} {path}: {status} {json}");
    json
}

/// Creates a user through the API, a member of a new organization with a
/// role granting `read:data` (so that login goes straight to the code):
/// (user id, org id).
async fn member(gw: &Gateway, t: &str, email: &str, password: &str) -> (String, String) {
    let user = ok(
        gw,
        t,
        "POST",
        "/admin/v1/users",
        Some(json!({ "email": email, "password": password, "name": "Ada" })),
    )
    .await;
    let org = ok(
        gw,
        t,
        "POST",
        "/admin/v1/organizations",
        Some(json!({ "name": "Acme" })),
    )
    .await;
    let role = json!({ "name": format!("reader-{email}"), "api": API, "scopes": ["read:data"] });
    ok(gw, t, "POST", "/admin/v1/roles", Some(role.clone())).await;
    let (user_id, org_id) = (user["id"].as_str().unwrap(), org["id"].as_str().unwrap());
    let body = json!({ "user_id": user_id, "roles": [role["name"]] });
    let path = format!("/admin/v1/organizations/{org_id}/members");
    ok(gw, t, "POST", &path, Some(body)).await;
    (user_id.to_owned(), org_id.to_owned())
}

/// The audit log's newest 200 entries.
async fn audit(gw: &Gateway, t: &str) -> Vec<Value> {
    let list = ok(gw, t, "GET", "/admin/v1/audit?limit=200", None).await;
    list.as_array().unwrap().clone()
}

// === logging in and refreshing ===

async fn request(
    url: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let method = if form.is_some() { "POST" } else { "GET" };
    let mut req = Request::builder().method(method).uri(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = Bytes::from(form.unwrap_or_default().to_owned());
    send(req.body(Full::new(body)).unwrap()).await
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Submits `email` and `password` on a fresh login form of the public client
/// `web`: the status, and the code when the login succeeded.
async fn login(gw: &Gateway, email: &str, password: &str) -> (StatusCode, Option<String>) {
    let (status, code, _) = login_session(gw, email, password).await;
    (status, code)
}

/// The authorization request every login here starts with.
fn authorize_query() -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id=web&redirect_uri={}\
         &scope=openid+read:data&state=st&code_challenge={}&code_challenge_method=S256",
        enc(CALLBACK),
        pkce::s256(VERIFIER),
    )
}

/// As [`login`], with the session cookie (`name=value`) the login set.
async fn login_session(
    gw: &Gateway,
    email: &str,
    password: &str,
) -> (StatusCode, Option<String>, Option<String>) {
    let (status, headers, body) = request(&gw.url(&authorize_query()), None, None).await;
    assert_eq!(status, 302, "{body}");
    let login = headers["location"].to_str().unwrap().to_owned();
    let set = headers["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, _, html) = request(&gw.url(&login), Some(&cookie), None).await;
    assert_eq!(status, 200, "{html}");
    let fields = format!(
        "txn={}&csrf={}&email={}&password={}",
        enc(&hidden(&html, "txn")),
        enc(&hidden(&html, "csrf")),
        enc(email),
        enc(password)
    );
    let (status, headers, _) = request(&gw.url("/login"), Some(&cookie), Some(&fields)).await;
    let code = headers.get("location").and_then(|l| {
        let q = l.to_str().unwrap().split_once('?')?.1.to_owned();
        let pairs: HashMap<String, String> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        pairs.get("code").cloned()
    });
    let session = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|c| c.starts_with("portcullis_session="))
        .map(str::to_owned);
    (status, code, session)
}

/// A token request of the public client `web`: status and JSON body.
async fn grant(gw: &Gateway, fields: &str) -> (StatusCode, Value) {
    let (status, _, body) = request(
        &gw.url("/oauth/token"),
        None,
        Some(&format!("client_id=web&{fields}")),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Logs in and exchanges the code: the refresh token.
async fn refresh_token_of(gw: &Gateway, email: &str, password: &str) -> String {
    let (status, code) = login(gw, email, password).await;
    assert_eq!(status, 302);
    let fields = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&code.unwrap()),
        enc(CALLBACK)
    );
    let (status, body) = grant(gw, &fields).await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"].as_str().unwrap().to_owned()
}

/// Presents a refresh token: the status and the `error` or new refresh token.
async fn refresh(gw: &Gateway, token: &str) -> (u16, String) {
    let (status, body) = grant(
        gw,
        &format!("grant_type=refresh_token&refresh_token={}", enc(token)),
    )
    .await;
    let value = body["refresh_token"]
        .as_str()
        .or(body["error"].as_str())
        .unwrap_or_default();
    (status.as_u16(), value.to_owned())
}

// === a webhook receiver ===

/// Records every POST it receives and answers 204.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let sink = got.clone();
        serve(listener, move |req: Request<hyper::body::Incoming>| {
            let sink = sink.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                sink.lock().unwrap().push((parts.headers, body));
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
        });
        Receiver { got, url }
    }

    /// The events received so far, each checked against `secret` (the
    /// `whsec_…` text): their JSON bodies.
    fn events(&self, secret: &str) -> Vec<Value> {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(headers, body)| {
                let h = |n: &str| headers[n].to_str().unwrap().to_owned();
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
                let signed = [
                    h("webhook-id").as_bytes(),
                    b".",
                    h("webhook-timestamp").as_bytes(),
                    b".",
                    body,
                ]
                .concat();
                let expected = format!(
                    "v1,{}",
                    STANDARD.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref())
                );
                assert_eq!(h("webhook-signature"), expected);
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }
}

#[path = "issuer_admin_manage/clients.rs"]
mod clients;
#[path = "issuer_admin_manage/users.rs"]
mod users;
#[path = "issuer_admin_manage/webhooks.rs"]
mod webhooks;
