//! Blocking hooks end to end against the real binary: a hook server on
//! 127.0.0.1 that allows and adds claims (they reach the access token of
//! every grant, reserved ones never do), denies with a reason (403
//! `access_denied`), hangs past the timeout or answers garbage (refused
//! unless `on_failure: allow`); `user.pre_create` guarding `admin user
//! create` and `POST /admin/v1/users`. Every hook request's signature is
//! checked with an HMAC computed here. Runs on a temporary SQLite database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::oauth::{self, refresh};
use support::process::{BIN, Portcullis, Seeded, seed};
use support::*;

const API: &str = "https://api.example.test";
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const EMAIL: &str = "ada@example.test";
const PASSWORD: &str = "correct horse battery staple";
const SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OPS: (&str, &str) = ("ops", "ops-secret-0123456789");

// === the hook server ===

/// What the hook server answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON.
    Json(Value),
    /// This status and body.
    Raw(u16, String),
    /// Never answers (the connection stays open).
    Hang,
}

/// One request the hook server received.
#[derive(Clone)]
struct Call {
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A hook endpoint on 127.0.0.1 that records every call and answers as told.
#[derive(Clone)]
struct HookServer {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    reply: Arc<Mutex<Reply>>,
}

impl HookServer {
    async fn start(reply: Reply) -> HookServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let (c, r) = (calls.clone(), reply.clone());
        serve(listener, move |req: Request<Incoming>| {
            let (c, r) = (c.clone(), r.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                c.lock().unwrap().push(Call {
                    target: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                let reply = r.lock().unwrap().clone();
                let (status, text) = match reply {
                    Reply::Json(v) => (200, v.to_string()),
                    Reply::Raw(status, text) => (status, text),
                    Reply::Hang => std::future::pending().await,
                };
                let mut resp = Response::new(Full::new(Bytes::from(text)));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                resp
            }
        });
        HookServer { addr, calls, reply }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The last call, its signature checked; its JSON body.
    fn last_verified(&self) -> Value {
        let call = self.calls().pop().expect("the hook was called");
        verify(&call)
    }
}

/// Checks a call's Standard Webhooks signature with an HMAC computed here,
/// and returns its body.
fn verify(call: &Call) -> Value {
    let header = |name: &str| call.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    let id = header("webhook-id");
    let ts = header("webhook-timestamp");
    assert!(ts.parse::<i64>().unwrap() >= now() - 60, "{ts}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &STANDARD.decode(SECRET).unwrap());
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &call.body].concat();
    let expected = format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()));
    assert_eq!(header("webhook-signature"), expected);
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert!(id.starts_with("evt_"), "{id}");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    body
}

// === the gateway ===

struct Setup {
    _dir: tempfile::TempDir,
    db: TestDb,
    config: PathBuf,
    _up: Upstream,
}

/// A configuration file with `hooks` (YAML items under `issuer.hooks`).
async fn setup(hooks: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
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
  webhook_address_policy: {{ allow_private: true }}  # hooks on 127.0.0.1
  signing_algs: [ES256, RS256]
  access_token_ttl: 15m
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
  clients:
    - client_id: web
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token]
      scopes: {{ "{API}": [read:data] }}
    - client_id: mobile
      public: true
      redirect_uris: ["{CALLBACK}"]
      grant_types: [authorization_code, refresh_token, anonymous]
      scopes: {{ "{API}": [read:data] }}
    - client_id: {ops}
      client_secret: "{ops_secret}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
  hooks:
{hooks}issuers:
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
        ops = OPS.0,
        ops_secret = OPS.1,
        up = up.url(),
    );
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    Setup {
        _dir: dir,
        db,
        config,
        _up: up,
    }
}

/// One `issuer.hooks` item.
fn hook(event: &str, url: &str, extra: &str) -> String {
    format!("    - event: {event}\n      url: \"{url}\"\n      secret: \"whsec_{SECRET}\"\n{extra}")
}

/// `grant_type=client_credentials` for the seeded client (status and JSON).
async fn client_credentials(p: &Portcullis, seeded: &Seeded) -> (StatusCode, Value) {
    oauth::post(
        &p.url(""),
        "/oauth/token",
        Some((&seeded.client_id, &seeded.client_secret)),
        "grant_type=client_credentials",
    )
    .await
}

/// As [`oauth::post`], with the response headers.
async fn post_with_headers(
    url: &str,
    client: (&str, &str),
    form: &str,
) -> (StatusCode, HeaderMap, Value) {
    let basic = STANDARD.encode(format!("{}:{}", client.0, client.1));
    let req = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    let (status, headers, body) = send(req).await;
    (status, headers, serde_json::from_str(&body).unwrap())
}

async fn through_gateway(p: &Portcullis, token: &str) -> u16 {
    get(&p.url("/api/items"), Some(token)).await.0.as_u16()
}

/// The log lines whose message contains `text`, once there is one (the log
/// is read as the process writes it).
async fn logged(p: &Portcullis, text: &str) -> Vec<Value> {
    eventually(&format!("a log line with {text:?}"), || async {
        !p.logged(text).is_empty()
    })
    .await;
    p.logged(text)
}

fn assert_refused(status: StatusCode, body: &Value, code: u16, error: &str) {
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (code, Some(error)),
        "{body}"
    );
}

// === token.pre_issue ===

#[tokio::test]
async fn added_claims_reach_the_access_token_of_every_grant_and_reserved_ones_never_do() {
    let server = HookServer::start(Reply::Json(json!({
        "allow": true,
        "claims": {
            "plan": "gold",
            "limits": {"rps": 10},
            // Reserved: never applied.
            "iss": "https://evil.test", "sub": "root", "aud": "https://evil.test",
            "exp": 9_999_999_999_i64, "iat": 1, "nbf": 1, "jti": "fixed",
            "client_id": "other", "scope": "read:data write:data admin",
            "org_id": "org_evil", "roles": ["admin"], "typ": "id_token"
        }
    })))
    .await;
    let s = setup(&hook("token.pre_issue", &server.url("/pre-issue"), "")).await;
    let seeded = seed(&s.config, API, EMAIL, PASSWORD);
    assert!(server.calls().is_empty(), "no hook on user creation");
    let p = Portcullis::start(&s.config).await;

    // client_credentials.
    let (status, body) = client_credentials(&p, &seeded).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["plan"], "gold");
    assert_eq!(claims["limits"], json!({"rps": 10}));
    assert_eq!(claims["iss"], "http://issuer.test");
    assert_eq!(claims["sub"], seeded.client_id.as_str());
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["client_id"], seeded.client_id.as_str());
    assert_eq!(claims["scope"], "read:data");
    assert_eq!(body["scope"], "read:data");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(claims["iat"], claims["nbf"]);
    assert_ne!(claims["jti"], "fixed");
    for absent in ["org_id", "roles", "typ"] {
        assert!(claims.get(absent).is_none(), "{absent} in {claims}");
    }
    assert_eq!(header_of(token)["typ"], "at+jwt");
    assert_eq!(through_gateway(&p, token).await, 200);
    let call = server.calls().pop().unwrap();
    assert_eq!(call.target, "/pre-issue");
    let sent = server.last_verified();
    assert_eq!(sent["event"], "token.pre_issue");
    assert_eq!(
        sent["data"],
        json!({
            "grant_type": "client_credentials",
            "client_id": seeded.client_id,
            "sub": seeded.client_id,
            "aud": API,
            "scope": "read:data",
        })
    );

    // authorization_code: the user's organization and roles are the issuer's.
    let issued = oauth::code_flow(
        &p.url(""),
        "web",
        CALLBACK,
        "openid read:data",
        (EMAIL, PASSWORD),
    )
    .await;
    let access = issued["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    assert_eq!(claims["plan"], "gold");
    assert_eq!(claims["org_id"], seeded.org_id.as_str());
    assert_eq!(claims["roles"], json!(["reader"]));
    assert_eq!(claims["client_id"], "web");
    assert_eq!(claims["scope"], "openid read:data");
    let user = claims["sub"].as_str().unwrap().to_owned();
    assert!(user.starts_with("usr_"), "{user}");
    // The ID token is not the hook's to change.
    let id_token = claims_of(issued["id_token"].as_str().unwrap());
    assert!(id_token.get("plan").is_none(), "{id_token}");
    let sent = server.last_verified();
    assert_eq!(
        sent["data"],
        json!({
            "grant_type": "authorization_code",
            "client_id": "web",
            "sub": user,
            "aud": API,
            "scope": "openid read:data",
            "org_id": seeded.org_id,
        })
    );
    assert_eq!(through_gateway(&p, access).await, 200);

    // refresh_token.
    let (status, body) =
        refresh(&p.url(""), "web", issued["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&claims["plan"], &claims["sub"]),
        (&json!("gold"), &json!(user))
    );
    assert_eq!(claims["roles"], json!(["reader"]));
    assert_eq!(
        server.last_verified()["data"]["grant_type"],
        "refresh_token"
    );
    assert_eq!(server.calls().len(), 3, "one call per token");

    // The reserved claims were logged as ignored, never the secret.
    logged(&p, "reserved claims").await;
    assert!(!p.log_text().contains(SECRET));
    p.kill().await;
}

#[tokio::test]
async fn a_denial_is_403_access_denied_with_the_reason_as_plain_text() {
    let server = HookServer::start(Reply::Json(json!({"allow": true}))).await;
    let s = setup(&hook("token.pre_issue", &server.url("/pre-issue"), "")).await;
    let seeded = seed(&s.config, API, EMAIL, PASSWORD);
    let p = Portcullis::start(&s.config).await;
    // A refresh token obtained while the hook allows.
    let issued = oauth::code_flow(
        &p.url(""),
        "web",
        CALLBACK,
        "openid read:data",
        (EMAIL, PASSWORD),
    )
    .await;
    let refresh_token = issued["refresh_token"].as_str().unwrap().to_owned();

    let long = "x".repeat(500);
    server.set(Reply::Json(json!({
        "allow": false,
        "reason": format!("over quota\r\n\u{1b}[31mcall sales\u{202e} {long}"),
    })));
    let (status, headers, body) = post_with_headers(
        &p.url("/oauth/token"),
        (&seeded.client_id, &seeded.client_secret),
        "grant_type=client_credentials",
    )
    .await;
    assert_refused(status, &body, 403, "access_denied");
    assert_eq!(headers["cache-control"], "no-store");
    let reason = body["error_description"].as_str().unwrap();
    assert!(
        reason.starts_with("over quota [31mcall sales x"),
        "{reason}"
    );
    assert!(
        !reason.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{reason:?}"
    );
    assert_eq!(reason.chars().count(), 201, "cut to 200 characters and …");
    assert!(body.get("access_token").is_none());

    // A denied refresh leaves the refresh token as it was; a denied code
    // exchange starts no refresh family.
    let (status, body) = refresh(&p.url(""), "web", &refresh_token).await;
    assert_refused(status, &body, 403, "access_denied");
    let (code, verifier) = oauth::login_for_code(
        &p.url(""),
        "web",
        CALLBACK,
        "openid read:data",
        (EMAIL, PASSWORD),
    )
    .await;
    let (status, body) = oauth::redeem_code(&p.url(""), "web", CALLBACK, &code, &verifier).await;
    assert_refused(status, &body, 403, "access_denied");
    assert!(body.get("refresh_token").is_none());
    let families = s.db.rows("SELECT id FROM refresh_families", &["id"]).await;
    assert_eq!(families.len(), 1, "only the family of the first code");

    server.set(Reply::Json(json!({"allow": true})));
    let (status, body) = refresh(&p.url(""), "web", &refresh_token).await;
    assert_eq!(status, 200, "the refresh token still works: {body}");
    p.kill().await;
}

#[tokio::test]
async fn a_hook_past_its_timeout_denies_by_default_and_allows_when_told() {
    let server = HookServer::start(Reply::Hang).await;
    let timeout = "      timeout: 300ms\n";
    let s = setup(&hook("token.pre_issue", &server.url("/pre-issue"), timeout)).await;
    let seeded = seed(&s.config, API, EMAIL, PASSWORD);
    let p = Portcullis::start(&s.config).await;
    let (status, body) = client_credentials(&p, &seeded).await;
    assert_refused(status, &body, 503, "temporarily_unavailable");
    let text = body.to_string();
    assert!(
        !text.contains(&server.addr.port().to_string()) && !text.contains(SECRET),
        "{text}"
    );
    assert_eq!(server.calls().len(), 1);
    let failed = logged(&p, "Blocking hook failed").await;
    assert_eq!(failed.len(), 1, "{}", p.log_text());
    assert!(failed[0].to_string().contains("timed out"), "{}", failed[0]);
    assert!(!p.log_text().contains(SECRET));
    p.kill().await;

    // The same hook with `on_failure: allow`: the token, without added claims.
    let allow = format!("{timeout}      on_failure: allow\n");
    let s = setup(&hook("token.pre_issue", &server.url("/pre-issue"), &allow)).await;
    let seeded = seed(&s.config, API, EMAIL, PASSWORD);
    let p = Portcullis::start(&s.config).await;
    let (status, body) = client_credentials(&p, &seeded).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], seeded.client_id.as_str());
    assert_eq!(server.calls().len(), 2);
    assert_eq!(
        logged(&p, "operation allowed (on_failure: allow)")
            .await
            .len(),
        1
    );
    p.kill().await;
}

#[tokio::test]
async fn garbage_and_non_2xx_answers_fail_closed() {
    let server = HookServer::start(Reply::Json(json!({"allow": true}))).await;
    // A second hook, after the first: asked only when the first allows.
    let second = HookServer::start(Reply::Json(json!({"allow": true, "claims": {"b": 2}}))).await;
    let hooks = format!(
        "{}{}",
        hook("token.pre_issue", &server.url("/first"), ""),
        hook("token.pre_issue", &second.url("/second"), "")
    );
    let s = setup(&hooks).await;
    let seeded = seed(&s.config, API, EMAIL, PASSWORD);
    let p = Portcullis::start(&s.config).await;
    let (status, body) = client_credentials(&p, &seeded).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims_of(body["access_token"].as_str().unwrap())["b"], 2);
    // Both hooks got the same signed message.
    assert_eq!(server.last_verified(), second.last_verified());

    let allow = json!({"allow": true}).to_string();
    for reply in [
        Reply::Raw(200, "<html>ok</html>".into()),
        Reply::Raw(200, String::new()),
        Reply::Raw(500, allow.clone()),
        Reply::Raw(302, allow.clone()),
        Reply::Raw(204, String::new()),
        Reply::Json(json!({"allow": "yes"})),
        Reply::Json(json!({"allowed": true})),
        Reply::Json(json!({"allow": true, "claims": ["plan"]})),
        Reply::Json(json!({"allow": true, "claims": {"pad": "x".repeat(20_000)}})),
    ] {
        server.set(reply);
        let (status, body) = client_credentials(&p, &seeded).await;
        assert_refused(status, &body, 503, "temporarily_unavailable");
    }
    assert_eq!(second.calls().len(), 1, "a failed first hook ends the call");
    assert!(!p.log_text().contains(SECRET));
    p.kill().await;
}

// === user.pre_create ===

/// `portcullis admin -c config args…` without blocking the runtime (the hook
/// server runs on it): exit code, stdout, stderr.
async fn admin_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("admin")
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn create_by_cli(config: &Path, email: &str) -> (i32, String, String) {
    let args = [
        "user",
        "create",
        "--email",
        email,
        "--password",
        PASSWORD,
        "--name",
        "Eve",
    ];
    admin_cli(config, &args).await
}

async fn users(config: &Path) -> Vec<String> {
    let (code, out, err) = admin_cli(config, &["user", "list"]).await;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let emails = list.as_array().unwrap().iter();
    emails
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn create_by_api(p: &Portcullis, email: &str) -> (StatusCode, Value) {
    let body = json!({"email": email, "password": PASSWORD, "name": "Eve"});
    admin_api(p, "/admin/v1/users", body).await
}

/// POSTs `body` to the admin API at `path` with an admin token.
async fn admin_api(p: &Portcullis, path: &str, body: Value) -> (StatusCode, Value) {
    let form = format!(
        "grant_type=client_credentials&resource={}",
        oauth::enc(ADMIN_API)
    );
    let (status, token) = oauth::post(&p.url(""), "/oauth/token", Some(OPS), &form).await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap();
    let req = Request::post(p.url(path))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _, body) = send(req).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn a_user_pre_create_hook_guards_the_cli_and_the_admin_api() {
    let server = HookServer::start(Reply::Json(json!({
        "allow": false,
        "reason": "sign-ups from example.test are closed\n",
    })))
    .await;
    let timeout = "      timeout: 300ms\n";
    let s = setup(&hook(
        "user.pre_create",
        &server.url("/pre-create"),
        timeout,
    ))
    .await;

    // The CLI: exit 1 with the reason, nothing created.
    let (code, out, err) = create_by_cli(&s.config, "eve@example.test").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("sign-ups from example.test are closed"),
        "{err}"
    );
    assert!(err.contains("user.pre_create"), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(users(&s.config).await.is_empty());
    let sent = server.last_verified();
    assert_eq!(sent["event"], "user.pre_create");
    assert_eq!(
        sent["data"],
        json!({"email": "eve@example.test", "name": "Eve"})
    );
    // An invalid request is refused before the hook is asked.
    let calls = server.calls().len();
    let (code, _, _) = create_by_cli(&s.config, "not-an-address").await;
    assert_eq!(code, 1);
    assert_eq!(server.calls().len(), calls);

    // The admin API: 403 access_denied with the reason, nothing created.
    let p = Portcullis::start(&s.config).await;
    let (status, body) = create_by_api(&p, "eve@example.test").await;
    assert_refused(status, &body, 403, "access_denied");
    assert_eq!(
        body["error_description"],
        "sign-ups from example.test are closed"
    );
    assert!(users(&s.config).await.is_empty());
    assert_eq!(server.last_verified()["data"]["email"], "eve@example.test");

    // A hook that fails: exit 3 and 503, nothing created, never the URL.
    server.set(Reply::Hang);
    let (code, _, err) = create_by_cli(&s.config, "eve@example.test").await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the user.pre_create hook failed: timed out"),
        "{err}"
    );
    assert!(!err.contains(&server.addr.port().to_string()), "{err}");
    let (status, body) = create_by_api(&p, "eve@example.test").await;
    assert_refused(status, &body, 503, "temporarily_unavailable");
    assert!(!body.to_string().contains(&server.addr.port().to_string()));
    assert!(users(&s.config).await.is_empty());

    // Allowed: created both ways.
    server.set(Reply::Json(
        json!({"allow": true, "claims": {"ignored": true}}),
    ));
    let (code, out, err) = create_by_cli(&s.config, "eve@example.test").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("eve@example.test"));
    let (status, body) = create_by_api(&p, "mallory@example.test").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(users(&s.config).await.len(), 2);
    p.kill().await;
}

// === the anonymous grant and promotion ===

const ANONYMOUS_GRANT: &str = "urn:portcullis:params:oauth:grant-type:anonymous";

async fn anonymous_grant(p: &Portcullis) -> (StatusCode, Value) {
    let form = format!(
        "grant_type={}&client_id=mobile",
        oauth::enc(ANONYMOUS_GRANT)
    );
    oauth::post(&p.url(""), "/oauth/token", None, &form).await
}

/// The ids of the users in the database.
async fn users_in(db: &TestDb) -> Vec<String> {
    let rows = db.rows("SELECT id FROM users", &["id"]).await;
    rows.into_iter().map(|mut r| r.remove(0)).collect()
}

#[tokio::test]
async fn the_anonymous_grant_and_promotion_ask_both_hooks() {
    let issue = HookServer::start(Reply::Json(json!({
        "allow": true,
        "claims": {"plan": "trial", "anonymous": false}
    })))
    .await;
    let create = HookServer::start(Reply::Json(json!({
        "allow": false,
        "reason": "no guests today"
    })))
    .await;
    let hooks = format!(
        "{}{}",
        hook("token.pre_issue", &issue.url("/pre-issue"), ""),
        hook("user.pre_create", &create.url("/pre-create"), "")
    );
    let s = setup(&hooks).await;
    let p = Portcullis::start(&s.config).await;

    // An anonymous user is a user: user.pre_create is asked first, and its
    // denial leaves nothing behind (and no token hook call).
    let (status, body) = anonymous_grant(&p).await;
    assert_refused(status, &body, 403, "access_denied");
    assert_eq!(body["error_description"], "no guests today");
    let sent = create.last_verified();
    assert_eq!(sent["event"], "user.pre_create");
    assert_eq!(
        sent["data"],
        json!({"email": null, "name": null, "anonymous": true})
    );
    assert!(issue.calls().is_empty());
    assert!(users_in(&s.db).await.is_empty());

    // Allowed: the token hook sees the grant; its claims are added, but the
    // issuer alone says who is anonymous.
    create.set(Reply::Json(json!({"allow": true})));
    let (status, body) = anonymous_grant(&p).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&claims["plan"], &claims["anonymous"]),
        (&json!("trial"), &json!(true))
    );
    let guest = claims["sub"].as_str().unwrap().to_owned();
    let sent = issue.last_verified();
    assert_eq!(sent["data"]["grant_type"], ANONYMOUS_GRANT);
    assert_eq!(sent["data"]["sub"], guest.as_str());
    assert_eq!(users_in(&s.db).await, std::slice::from_ref(&guest));

    // Promotion gives the user an email and a password: the sign-up guard
    // sees it (with the user's id), by the admin API and by the CLI.
    create.set(Reply::Json(
        json!({"allow": false, "reason": "use your work address"}),
    ));
    let promotion = json!({"email": "pat@example.test", "password": PASSWORD, "name": "Pat"});
    let path = format!("/admin/v1/users/{guest}/promote");
    let (status, body) = admin_api(&p, &path, promotion.clone()).await;
    assert_refused(status, &body, 403, "access_denied");
    assert_eq!(body["error_description"], "use your work address");
    assert_eq!(
        create.last_verified()["data"],
        json!({"email": "pat@example.test", "name": "Pat", "user_id": guest})
    );
    let args = [
        "user",
        "promote",
        &guest,
        "--email",
        "pat@example.test",
        "--password",
        PASSWORD,
    ];
    let (code, _, err) = admin_cli(&s.config, &args).await;
    assert_eq!(code, 1, "{err}");
    let expected =
        "the user was not promoted: denied by the user.pre_create hook: use your work address";
    assert!(err.contains(expected), "{err}");
    let rows = s.db.rows("SELECT email FROM users", &["email"]).await;
    assert_eq!(rows, [[""]], "still anonymous, without an email");

    create.set(Reply::Json(json!({"allow": true})));
    let (status, body) = admin_api(&p, &path, promotion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "pat@example.test");
    p.kill().await;
}
