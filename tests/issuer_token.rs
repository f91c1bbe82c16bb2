//! The built-in issuer end to end: discovery, JWKS, the token endpoint with
//! `client_credentials`, its RFC 6749 errors, and the gateway verifying the
//! issued tokens in process. Runs on a temporary SQLite database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::sync::Arc;

use portcullis::clock::ManualClock;
use serde_json::Value;
use support::*;

const API: &str = "https://api.example.test";

struct Env {
    _dir: tempfile::TempDir,
    db: String,
    up: Upstream,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    Env {
        _dir: dir,
        db,
        up: Upstream::start().await,
    }
}

fn yaml(env: &Env) -> String {
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
  resources:
    - identifier: "{API}"
      scopes: [read:data, write:data]
    - identifier: "https://other.example.test"
      scopes: [other]
  clients:
    - client_id: billing
      client_secret: "billing-secret-0123456789"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data] }}
    - client_id: multi
      client_secret: "multi-secret-0123456789"
      grant_types: [client_credentials]
      scopes: {{ "{API}": [read:data, write:data], "https://other.example.test": [other] }}
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
        db = env.db,
        up = env.up.url(),
    )
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

async fn token_request(
    gw: &Gateway,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let (status, headers, body) =
        send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, headers, json)
}

#[tokio::test]
async fn client_credentials_tokens_verify_at_the_gateway() {
    let env = env().await;
    let gw = Gateway::start(&yaml(&env)).await;

    let (status, headers, body) = token_request(
        &gw,
        Some(&basic("billing", "billing-secret-0123456789")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "read:data");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], "http://issuer.test");
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["sub"], "billing");
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 20));
    let header = header_of(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");

    // The JWKS publishes the signing key; the gateway verifies the token in process.
    let (status, _, jwks) = get(&gw.url("/.well-known/jwks.json"), None).await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(kids.contains(&header["kid"].as_str().unwrap()), "{kids:?}");
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none()),
        "no private parts"
    );

    let (status, _, body) = get(&gw.url("/api/items"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.up.last().headers["x-auth-subject"], "billing");
    assert_eq!(env.up.last().headers["x-auth-scopes"], "read:data");
    gw.shutdown().await;
}

#[tokio::test]
async fn scopes_narrow_and_resources_select() {
    let env = env().await;
    let gw = Gateway::start(&yaml(&env)).await;
    let auth = basic("multi", "multi-secret-0123456789");

    // Two APIs: the client must say which.
    let (status, _, body) = token_request(&gw, Some(&auth), "grant_type=client_credentials").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );

    let form = format!(
        "grant_type=client_credentials&resource={}&scope=write:data+admin",
        urlencode(API)
    );
    let (status, _, body) = token_request(&gw, Some(&auth), &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "write:data");

    let form = "grant_type=client_credentials&audience=https%3A%2F%2Fother.example.test";
    let (status, _, body) = token_request(&gw, Some(&auth), form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["aud"],
        "https://other.example.test"
    );

    let form = format!(
        "grant_type=client_credentials&resource={}&scope=admin",
        urlencode(API)
    );
    let (status, _, body) = token_request(&gw, Some(&auth), &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    let form = "grant_type=client_credentials&resource=https%3A%2F%2Funknown.example.test";
    let (status, _, body) = token_request(&gw, Some(&auth), form).await;
    assert_eq!(body["error"], "invalid_target", "{status}");
    gw.shutdown().await;
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let env = env().await;
    let gw = Gateway::start(&yaml(&env)).await;

    // Wrong secret, unknown client, no credentials: 401 invalid_client with a challenge.
    for auth in [
        Some(basic("billing", "wrong")),
        Some(basic("nobody", "x")),
        None,
    ] {
        let (status, headers, body) =
            token_request(&gw, auth.as_deref(), "grant_type=client_credentials").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"portcullis\"");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(!body.to_string().contains("wrong"));
    }
    // client_secret_post works; both methods at once do not.
    let (status, _, body) = token_request(
        &gw,
        None,
        "grant_type=client_credentials&client_id=billing&client_secret=billing-secret-0123456789",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = token_request(
        &gw,
        Some(&basic("billing", "billing-secret-0123456789")),
        "grant_type=client_credentials&client_secret=billing-secret-0123456789",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let good = basic("billing", "billing-secret-0123456789");
    let cases = [
        (
            "grant_type=password&username=a&password=b",
            "unsupported_grant_type",
        ),
        ("scope=read:data", "invalid_request"),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            "invalid_request",
        ),
    ];
    for (form, want) in cases {
        let (status, headers, body) = token_request(&gw, Some(&good), form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(want)),
            "{form}"
        );
        assert_eq!(headers["cache-control"], "no-store");
    }
    // Not a form; not a POST.
    let req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/json")
        .header("authorization", &good)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, headers, _) = get(&gw.url("/oauth/token"), None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    gw.shutdown().await;
}

/// The token endpoint from the source address `from`.
async fn token_request_from(
    gw: &Gateway,
    from: Option<std::net::IpAddr>,
    auth: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let (status, headers, body) = send_from(from, req).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, headers, json)
}

/// A gateway (or two, on one database) on a manual clock.
async fn on_clock(env: &Env, clock: &Arc<ManualClock>) -> Gateway {
    let options = portcullis::server::Options {
        clock: clock.clone(),
        ..portcullis::server::Options::default()
    };
    Gateway::start_with(&yaml(env), options).await
}

fn retry_after(headers: &http::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn failed_client_authentications_slow_down_their_source_only() {
    let env = env().await;
    let clock = Arc::new(ManualClock::new(now()));
    let gw = on_clock(&env, &clock).await;
    let (attacker, owner) = (loopback(2), loopback(3));
    let (wrong, right) = (
        basic("billing", "wrong"),
        basic("billing", "billing-secret-0123456789"),
    );
    // Ten tries, each checked (401); the tenth sets a delay of 1 s.
    for n in 0..10 {
        let (status, _, _) = token_request_from(&gw, attacker, &wrong).await;
        assert_eq!(status, 401, "try {n}");
    }
    // During the delay the source is answered at once, nothing checked:
    // 429 slow_down with Retry-After (RFC 6585), not invalid_client.
    let (status, headers, body) = token_request_from(&gw, attacker, &wrong).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "slow_down");
    assert_eq!(retry_after(&headers), 1);
    assert_eq!(headers["cache-control"], "no-store");
    // Even the right secret waits at that source ...
    let (status, _, _) = token_request_from(&gw, attacker, &right).await;
    assert_eq!(status, 429);
    // ... but the client itself, elsewhere, is never refused: a correct
    // secret always works.
    let (status, _, body) = token_request_from(&gw, owner, &right).await;
    assert_eq!(status, 200, "{body}");
    // The delay ends on time: attempts during it did not extend it. The next
    // failure doubles it; waiting attempts do not move its end.
    clock.advance(1);
    let (status, _, _) = token_request_from(&gw, attacker, &wrong).await;
    assert_eq!(status, 401, "checked again after the delay");
    let (status, headers, _) = token_request_from(&gw, attacker, &wrong).await;
    assert_eq!((status.as_u16(), retry_after(&headers)), (429, 2));
    clock.advance(1);
    let (status, headers, _) = token_request_from(&gw, attacker, &wrong).await;
    assert_eq!((status.as_u16(), retry_after(&headers)), (429, 1));
    clock.advance(1);
    let (status, _, _) = token_request_from(&gw, attacker, &wrong).await;
    assert_eq!(status, 401);
    // Another client is not slowed down by this client's failures.
    let other = basic("multi", "multi-secret-0123456789");
    let (status, _, body) = token_request(
        &gw,
        Some(&other),
        "grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.test",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_is_throttled() {
    let env = env().await;
    let clock = Arc::new(ManualClock::new(now()));
    let yaml = yaml(&env).replace(
        "  shutdown_grace: 5s\n",
        "  shutdown_grace: 5s\n  trusted_proxies: [\"127.0.0.1\"]\n",
    );
    let options = portcullis::server::Options {
        clock: clock.clone(),
        ..portcullis::server::Options::default()
    };
    let gw = Gateway::start_with(&yaml, options).await;
    let via_proxy = |client: &str, auth: &str| {
        Request::post(gw.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", auth)
            .header("x-forwarded-for", client)
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .unwrap()
    };
    let wrong = basic("billing", "wrong");
    let right = basic("billing", "billing-secret-0123456789");
    // Ten failures of one client behind the proxy delay that client only.
    for _ in 0..10 {
        let (status, _, _) = send(via_proxy("198.51.100.1", &wrong)).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = send(via_proxy("198.51.100.1", &right)).await;
    assert_eq!(status, 429, "the forwarded address waits");
    let (status, _, body) = send(via_proxy("198.51.100.2", &right)).await;
    assert_eq!(status, 200, "another client behind the same proxy: {body}");
    // An address that is no trusted proxy is not believed about the client.
    let (status, _, _) = send_from(loopback(9), via_proxy("198.51.100.1", &wrong)).await;
    assert_eq!(status, 401, "judged as 127.0.0.9, which has no delay");
    gw.shutdown().await;
}

#[tokio::test]
async fn client_failures_count_across_replicas() {
    let env = env().await;
    let clock = Arc::new(ManualClock::new(now()));
    let a = on_clock(&env, &clock).await;
    let b = on_clock(&env, &clock).await;
    let right = basic("billing", "billing-secret-0123456789");
    let from = loopback(4);
    // B has verified the right secret once, A never has.
    let (status, _, _) = token_request_from(&b, loopback(5), &right).await;
    assert_eq!(status, 200);
    for n in 0..10 {
        let gw = if n % 2 == 0 { &a } else { &b };
        let wrong = basic("billing", "wrong");
        let (status, _, _) = token_request_from(gw, from, &wrong).await;
        assert_eq!(status, 401);
    }
    // Neither replica saw ten failures itself; together they did: A, which
    // would have to verify the secret, makes that source wait.
    let (status, _, body) = token_request_from(&a, from, &right).await;
    assert_eq!(status, 429, "{body}");
    // B verified that secret before: it keeps answering it (nothing is being
    // guessed), and A answers it from any other source.
    let (status, _, body) = token_request_from(&b, from, &right).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = token_request_from(&a, loopback(6), &right).await;
    assert_eq!(status, 200, "{body}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_one_clients_connections_is_checked_once() {
    let env = env().await;
    let gw = Arc::new(Gateway::start(&yaml(&env)).await);
    // A pool of twenty connections starting at once, from one address, with
    // a secret this process has not verified yet: one argon2 check answers
    // them all (its per-address share of the budget is four).
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let auth = basic("billing", "billing-secret-0123456789");
                token_request_from(&gw, loopback(11), &auth).await.0
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // The same burst with a wrong secret: one counted failure, not twenty.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let auth = basic("multi", "a wrong guess");
                token_request_from(&gw, loopback(12), &auth).await.0
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    let right = basic("multi", "multi-secret-0123456789");
    let (status, _, body) = token_request_from(&gw, loopback(12), &right).await;
    assert_ne!(status, 429, "{body}");
}

#[tokio::test]
async fn discovery_documents_describe_the_issuer() {
    let env = env().await;
    let gw = Gateway::start(&yaml(&env)).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, headers, body) = get(&gw.url(path), None).await;
        assert_eq!(status, 200);
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age")
        );
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["issuer"], "http://issuer.test");
        assert_eq!(doc["token_endpoint"], "http://issuer.test/oauth/token");
        assert_eq!(doc["jwks_uri"], "http://issuer.test/.well-known/jwks.json");
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert!(
            doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "client_credentials")
        );
        assert!(
            doc["id_token_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "RS256")
        );
        // Only what is implemented: secrets (basic or post) and public
        // clients; no `*_jwt` method, so no signing algorithms for one.
        let methods = serde_json::json!(["client_secret_basic", "client_secret_post", "none"]);
        assert_eq!(doc["token_endpoint_auth_methods_supported"], methods);
        assert_eq!(doc["revocation_endpoint_auth_methods_supported"], methods);
        assert_eq!(
            doc["introspection_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
        assert!(
            doc.get("token_endpoint_auth_signing_alg_values_supported")
                .is_none(),
            "{doc}"
        );
        // Defaults that would claim more than there is are spelt out.
        assert_eq!(
            doc["response_modes_supported"],
            serde_json::json!(["query"])
        );
        for flag in [
            "request_parameter_supported",
            "request_uri_parameter_supported",
            "claims_parameter_supported",
        ] {
            assert_eq!(doc[flag], false, "{flag}");
        }
        // The admin API's scope is not advertised.
        assert!(!body.contains("portcullis:admin"), "{body}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn keys_and_clients_survive_a_restart() {
    let env = env().await;
    let gw = Gateway::start(&yaml(&env)).await;
    let auth = basic("billing", "billing-secret-0123456789");
    let (_, _, body) = token_request(&gw, Some(&auth), "grant_type=client_credentials").await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (_, _, jwks_before) = get(&gw.url("/.well-known/jwks.json"), None).await;
    gw.shutdown().await;

    let gw = Gateway::start(&yaml(&env)).await;
    let (_, _, jwks_after) = get(&gw.url("/.well-known/jwks.json"), None).await;
    assert_eq!(jwks_before, jwks_after, "the same keys after a restart");
    let (status, _, body) = get(&gw.url("/api/items"), Some(&token)).await;
    assert_eq!(
        status, 200,
        "a token issued before the restart still verifies: {body}"
    );
    let (status, _, _) = token_request(&gw, Some(&auth), "grant_type=client_credentials").await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}
