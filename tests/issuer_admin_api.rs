//! The admin REST API under `/admin/v1/` end to end: authorisation by an
//! access token of the built-in issuer with the `portcullis:admin` scope, each
//! endpoint's happy path, its errors, and the audit log. Runs on a temporary
//! SQLite database. Lists by pages and their filters are in
//! `issuer_admin_api/lists.rs` (also on PostgreSQL), the OpenAPI document in
//! `issuer_admin_api/openapi.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::oauth::basic;
use support::*;

const API: &str = "https://api.example.test";
/// The admin API's own resource, which the issuer declares.
const ADMIN_API: &str = "http://issuer.test/admin/v1";
const ADMIN: (&str, &str) = ("ops", "ops-secret-0123456789");
const READER: (&str, &str) = ("reader", "reader-secret-0123456789");

struct Env {
    _dir: tempfile::TempDir,
    _up: Upstream,
    gw: Gateway,
    /// The issuer database's URL.
    db: String,
    /// The configuration the gateway runs.
    yaml: String,
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
  signing_algs: [ES256]
  access_token_ttl: 15m
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
        db,
        yaml,
    }
}

async fn form(gw: &Gateway, path: &str, client: (&str, &str), body: &str) -> (StatusCode, Value) {
    let req = Request::post(gw.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(client))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let (status, _, body) = send(req).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn token(gw: &Gateway, client: (&str, &str), resource: &str) -> String {
    oauth::client_credentials_for(&gw.url(""), client, resource).await
}

async fn admin_token(gw: &Gateway) -> String {
    token(gw, ADMIN, ADMIN_API).await
}

async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
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

#[tokio::test]
async fn requests_without_a_valid_admin_token_are_refused() {
    let env = env().await;
    let gw = &env.gw;

    let (status, headers, body) = call(gw, "GET", "/admin/v1/clients", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="portcullis""#);
    assert_eq!(body["error"], "invalid_token");

    let invalid = r#"Bearer realm="portcullis", error="invalid_token""#;
    let (status, headers, _) = call(gw, "GET", "/admin/v1/clients", Some("garbage"), None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], invalid);

    // Signed by a key this issuer does not publish, with claims it would issue.
    let now = now();
    let claims = json!({
        "iss": "http://issuer.test", "sub": "ops", "aud": ADMIN_API, "client_id": "ops",
        "scope": "portcullis:admin", "iat": now, "exp": now + 600, "jti": "foreign-jti-0123456789",
    });
    let foreign = token_with_header(
        &ec(),
        &json!({ "alg": "ES256", "kid": ec().kid, "typ": "at+jwt" }),
        &claims,
    );
    let (status, headers, _) = call(gw, "GET", "/admin/v1/clients", Some(&foreign), None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], invalid);

    // A real token of the reader, its payload swapped for one with the scope.
    let reader = token(gw, READER, API).await;
    let parts: Vec<&str> = reader.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("read:data portcullis:admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    let (status, _, _) = call(gw, "GET", "/admin/v1/clients", Some(&tampered), None).await;
    assert_eq!(status, 401);

    // Valid, but for another API (RFC 6750: a token for another audience is
    // not a valid token here). A token for the admin API without the scope
    // is a 403: `audience.rs`.
    let (status, headers, body) = call(gw, "GET", "/admin/v1/clients", Some(&reader), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(headers["www-authenticate"], invalid);

    // A revoked admin token.
    let admin = admin_token(gw).await;
    let (status, _, _) = call(gw, "GET", "/admin/v1/clients", Some(&admin), None).await;
    assert_eq!(status, 200);
    let (status, _) = form(gw, "/oauth/revoke", ADMIN, &format!("token={admin}")).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(gw, "GET", "/admin/v1/clients", Some(&admin), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn every_endpoint_works_and_is_audited() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let t = Some(t.as_str());

    let new_api = "https://reports.example.test";
    let (status, _, api) = call(
        gw,
        "POST",
        "/admin/v1/apis",
        t,
        Some(json!({ "identifier": new_api, "scopes": ["reports:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{api}");
    assert_eq!(
        api,
        json!({ "identifier": new_api, "scopes": ["reports:read"] })
    );
    let (status, _, apis) = call(gw, "GET", "/admin/v1/apis", t, None).await;
    assert_eq!(status, 200);
    assert!(
        apis.as_array()
            .unwrap()
            .iter()
            .any(|a| a["identifier"] == new_api)
    );

    let (status, headers, client) = call(
        gw,
        "POST",
        "/admin/v1/clients",
        t,
        Some(json!({
            "name": "Reports job",
            "grant_types": ["client_credentials"],
            "scopes": { new_api: ["reports:read"] },
            "introspection": [new_api],
        })),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["introspection"], json!([new_api]));
    assert_eq!(headers["cache-control"], "no-store");
    let id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let minted = token(gw, (&id, &secret), new_api).await;
    assert_eq!(minted.split('.').count(), 3);

    let (status, _, list) = call(gw, "GET", "/admin/v1/clients", t, None).await;
    assert_eq!(status, 200);
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["name"], "Reports job");
    assert!(listed.get("client_secret").is_none() && listed.get("secret_hash").is_none());

    let (status, _, org) = call(
        gw,
        "POST",
        "/admin/v1/organizations",
        t,
        Some(json!({ "name": "Acme" })),
    )
    .await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let (status, _, user) = call(
        gw,
        "POST",
        "/admin/v1/users",
        t,
        Some(json!({ "email": "ada@example.test", "password": "long enough pw", "name": "Ada" })),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let user_id = user["id"].as_str().unwrap().to_owned();
    let (status, _, role) = call(
        gw,
        "POST",
        "/admin/v1/roles",
        t,
        Some(json!({ "name": "analyst", "api": new_api, "scopes": ["reports:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{role}");
    assert_eq!(role["grants"][new_api], json!(["reports:read"]));
    // A comma would make one role two in X-Auth-Roles; such names are refused.
    for bad in ["analyst,admin", "two words", "quo\"te", "ctl\u{7}", "ünï"] {
        let body = json!({ "name": bad, "api": new_api, "scopes": ["reports:read"] });
        let (status, _, refused) = call(gw, "POST", "/admin/v1/roles", t, Some(body)).await;
        assert_eq!(status, 400, "{bad:?}: {refused}");
        assert_eq!(refused["error"], "invalid_request");
        let text = refused["error_description"].as_str().unwrap();
        assert!(text.contains("no commas, spaces, quotes"), "{text}");
    }
    let (_, _, roles) = call(gw, "GET", "/admin/v1/roles", t, None).await;
    assert_eq!(roles.as_array().unwrap().len(), 1, "{roles}");
    let (status, _, member) = call(
        gw,
        "POST",
        &format!("/admin/v1/organizations/{org_id}/members"),
        t,
        Some(json!({ "user_id": user_id, "roles": ["analyst"] })),
    )
    .await;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["org_id"], org_id.as_str());
    assert_eq!(member["roles"], json!(["analyst"]));

    let (status, _, keys) = call(gw, "POST", "/admin/v1/keys/rotate", t, None).await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["rotated"], true);
    assert_eq!(keys["published"].as_array().unwrap().len(), 2);

    let path = format!("/admin/v1/clients/{id}");
    let (status, _, deleted) = call(gw, "DELETE", &path, t, None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted, json!({ "client_id": id, "deleted": true }));
    let (status, _, body) = call(gw, "DELETE", &path, t, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");

    let (status, _, audit) = call(gw, "GET", "/admin/v1/audit?limit=100", t, None).await;
    assert_eq!(status, 200);
    let entries = audit.as_array().unwrap();
    for action in [
        "api.created",
        "client.created",
        "organization.created",
        "user.created",
        "role.created",
        "membership.created",
        "key.rotated",
        "client.deleted",
    ] {
        let entry = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {audit}"));
        assert_eq!(entry["actor"], "ops", "{entry}");
    }
    assert_eq!(entries[0]["action"], "client.deleted");
    let (_, _, one) = call(gw, "GET", "/admin/v1/audit?limit=1", t, None).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let env = env().await;
    let gw = &env.gw;
    let token = admin_token(gw).await;
    let t = Some(token.as_str());

    let (status, _, body) = call(
        gw,
        "POST",
        "/admin/v1/users",
        t,
        Some(json!({ "email": "not-an-email", "password": "long enough pw", "name": "Bob" })),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("email")
    );

    let (status, _, body) = call(
        gw,
        "POST",
        "/admin/v1/clients",
        t,
        Some(json!({ "name": "x", "grant_types": ["password"] })),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = call(
        gw,
        "POST",
        "/admin/v1/organizations/org_nope/members",
        t,
        Some(json!({ "user_id": "usr_nope", "roles": ["analyst"] })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");

    let (status, _, body) = call(
        gw,
        "POST",
        "/admin/v1/apis",
        t,
        Some(json!({ "identifier": API, "scopes": ["read:data"] })),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");

    let (status, _, _) = call(
        gw,
        "POST",
        "/admin/v1/organizations",
        t,
        Some(json!({ "name": "Acme", "extra": 1 })),
    )
    .await;
    assert_eq!(status, 400);

    // Not JSON, wrong media type, too large.
    let post = |content_type: &str, body: Vec<u8>| {
        Request::post(gw.url("/admin/v1/organizations"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let (status, _, body) = send(post("application/json", b"{".to_vec())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_request");
    let (status, _, _) = send(post("text/plain", b"{\"name\":\"x\"}".to_vec())).await;
    assert_eq!(status, 415);
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(70 * 1024));
    let (status, _, _) = send(post("application/json", big.into_bytes())).await;
    assert_eq!(status, 400);

    let (status, headers, body) = call(gw, "PUT", "/admin/v1/clients", t, None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, POST");
    assert_eq!(body["error"], "method_not_allowed");
    let (status, _, _) = call(gw, "GET", "/admin/v1/nothing", t, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(gw, "GET", "/admin/v1/audit?limit=0", t, None).await;
    assert_eq!(status, 400);

    // The default address policy: a webhook at an obviously private address
    // is refused at creation (deliveries check every resolved address).
    for url in [
        "http://10.0.0.5/hook",
        "http://localhost:8080/",
        "http://[fd00::1]/",
    ] {
        let (status, _, body) = call(
            gw,
            "POST",
            "/admin/v1/webhooks",
            t,
            Some(json!({ "url": url })),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        let text = body["error_description"].as_str().unwrap();
        assert!(text.contains("webhook_address_policy"), "{text}");
    }
    let (_, _, hooks) = call(gw, "GET", "/admin/v1/webhooks", t, None).await;
    assert_eq!(hooks, json!([]));
}

#[path = "issuer_admin_api/audience.rs"]
mod audience;
#[path = "issuer_admin_api/lists.rs"]
mod lists;
#[path = "issuer_admin_api/openapi.rs"]
mod openapi;
