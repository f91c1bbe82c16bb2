//! Opaque tokens by RFC 7662 introspection, against an introspection endpoint
//! on 127.0.0.1 that checks the gateway's client credentials and answers per
//! token: `active`, `iss`, `aud`, `exp`, `scope` checked like JWT claims; the
//! answer cached (positive no longer than `exp`, negative a few seconds); one
//! call for concurrent requests with the same token; and a clear 503 — never an
//! "allow" — when the endpoint is down or answers nonsense.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use portcullis::clock::ManualClock;
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const IDP: &str = "https://idp.example.test";
const SECRET: &str = "s3cret:with/odd&chars";

/// An introspection endpoint: answers by token, counts calls, can be held.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<AtomicUsize>,
    status: Arc<Mutex<u16>>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = Endpoint {
            addr: listener.local_addr().unwrap(),
            answers: Arc::default(),
            calls: Arc::default(),
            status: Arc::new(Mutex::new(200)),
            held: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let me = e.clone();
        serve(listener, move |req: Request<Incoming>| {
            let me = me.clone();
            async move { me.answer(req).await }
        });
        e
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.held.subscribe().wait_for(|h| !*h).await;
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let form = req.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = form_urlencoded::parse(&form).into_owned().collect();
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "gateway:{}",
                form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>()
            ))
        );
        let status = *self.status.lock().unwrap();
        let (status, body) = if auth != expected {
            (401, json!({"error": "invalid_client"}))
        } else if status != 200 {
            (status, json!({"error": "down"}))
        } else {
            let token = form.get("token").cloned().unwrap_or_default();
            let answer = self
                .answers
                .lock()
                .unwrap()
                .get(&token)
                .cloned()
                .unwrap_or(json!({"active": false}));
            (200, answer)
        };
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp
    }

    fn set(&self, token: &str, answer: Value) {
        self.answers.lock().unwrap().insert(token.into(), answer);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn yaml(endpoint: &Endpoint, up: &Upstream) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: idp
    issuer: "{IDP}"
    audiences: ["{AUDIENCE}"]
    introspection:
      url: "http://{addr}/oauth/introspect"
      client_id: gateway
      client_secret: "{SECRET}"
      cache: 60s
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /read/*
    upstream: api
    scopes: [read:data]
  - path: /*
    upstream: api
"#,
        addr = endpoint.addr,
        up = up.url(),
    )
}

fn active(exp: i64) -> Value {
    json!({
        "active": true,
        "iss": IDP,
        "aud": [AUDIENCE, "other"],
        "exp": exp,
        "iat": now(),
        "sub": "user-7",
        "client_id": "web",
        "scope": "read:data profile",
        "org_id": "acme",
    })
}

#[tokio::test]
async fn an_active_opaque_token_passes_with_its_claims_and_is_cached() {
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&endpoint, &up)).await;
    endpoint.set("opaque-1", active(now() + 600));
    let (status, _, body) = get(&gw.url("/read/x"), Some("opaque-1")).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.headers["x-auth-subject"], "user-7");
    assert_eq!(seen.headers["x-auth-issuer"], IDP);
    assert_eq!(seen.headers["x-auth-org"], "acme");
    assert_eq!(seen.headers["x-auth-scopes"], "read:data profile");
    assert_eq!(endpoint.calls(), 1);
    // Answers that say it is an access token, in each IdP's words, pass.
    for (i, (member, value)) in [
        ("token_type", "Bearer"),
        ("token_type", "access_token"),
        ("token_use", "access_token"),
        ("typ", "Bearer"),
    ]
    .into_iter()
    .enumerate()
    {
        let t = format!("opaque-typed-{i}");
        let mut answer = active(now() + 600);
        answer[member] = json!(value);
        endpoint.set(&t, answer);
        assert_eq!(
            get(&gw.url("/read/x"), Some(&t)).await.0,
            200,
            "{member}={value}"
        );
    }
    assert_eq!(endpoint.calls(), 5);
    // Cached: no second call.
    assert_eq!(get(&gw.url("/read/y"), Some("opaque-1")).await.0, 200);
    assert_eq!(endpoint.calls(), 5);
    // A JWT-shaped token of an issuer that has no keys is introspected too.
    let jwt_like = token(&rsa(), &claims_with(json!({"iss": IDP})));
    endpoint.set(&jwt_like, active(now() + 600));
    assert_eq!(get(&gw.url("/read/z"), Some(&jwt_like)).await.0, 200);
    assert_eq!(
        gw.metric("portcullis_introspections_total{issuer=\"idp\",outcome=\"active\"}")
            .await,
        6.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn claims_are_checked_like_a_jwt_s() {
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&endpoint, &up)).await;
    let mut cases = vec![("inactive", json!({"active": false}), 401, "invalid_token")];
    let mut wrong_aud = active(now() + 600);
    wrong_aud["aud"] = json!("https://elsewhere.test");
    cases.push(("wrong aud", wrong_aud, 401, "invalid_token"));
    let mut wrong_iss = active(now() + 600);
    wrong_iss["iss"] = json!("https://evil.test");
    cases.push(("wrong iss", wrong_iss, 401, "invalid_token"));
    cases.push(("expired", active(now() - 600), 401, "invalid_token"));
    let mut no_exp = active(now() + 600);
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", no_exp, 401, "invalid_token"));
    let mut weak = active(now() + 600);
    weak["scope"] = json!("profile");
    cases.push(("missing scope", weak, 403, "insufficient_scope"));
    // A refresh (or ID) token that the IdP calls active is not an access token:
    // Ory Hydra's, RFC 7662's and Keycloak's ways of saying so.
    for (member, value) in [
        ("token_use", "refresh_token"),
        ("token_type", "refresh_token"),
        (
            "token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
        ("typ", "Refresh"),
        ("typ", "ID"),
        ("typ", "Offline"),
    ] {
        let mut refresh = active(now() + 600);
        refresh[member] = json!(value);
        cases.push(("not an access token", refresh, 401, "invalid_token"));
    }
    let mut odd = active(now() + 600);
    odd["token_type"] = json!(["Bearer"]);
    cases.push(("token_type not a string", odd, 401, "invalid_token"));
    cases.push((
        "not an answer",
        json!({"active": "yes"}),
        503,
        "temporarily_unavailable",
    ));
    for (i, (case, answer, status, code)) in cases.into_iter().enumerate() {
        let t = format!("opaque-case-{i}");
        endpoint.set(&t, answer);
        let (got, headers, body) = get(&gw.url("/read/x"), Some(&t)).await;
        assert_eq!(got.as_u16(), status, "{case}: {body}");
        assert_eq!(error_code(&body), code, "{case}");
        assert!(!body.contains(&t), "{case}: the token is echoed");
        if status == 503 {
            assert!(headers.contains_key("retry-after"));
        }
    }
    assert_eq!(up.count(), 0);
    // An inactive answer is kept a few seconds: no second call.
    let before = endpoint.calls();
    assert_eq!(get(&gw.url("/read/x"), Some("opaque-case-0")).await.0, 401);
    assert_eq!(endpoint.calls(), before);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_a_503_never_an_allow() {
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&endpoint, &up)).await;
    endpoint.set("opaque-down", active(now() + 600));
    *endpoint.status.lock().unwrap() = 500;
    let (status, headers, body) = get(&gw.url("/x"), Some("opaque-down")).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    // The failure is not cached: once the endpoint is back, the token works.
    *endpoint.status.lock().unwrap() = 200;
    assert_eq!(get(&gw.url("/x"), Some("opaque-down")).await.0, 200);
    gw.shutdown().await;

    // Nothing listening at all.
    let closed = closed_port().await;
    let gone = Endpoint {
        addr: closed,
        ..endpoint.clone()
    };
    let gw = Gateway::start(&yaml(&gone, &up)).await;
    let (status, _, _) = get(&gw.url("/x"), Some("opaque-anything")).await;
    assert_eq!(status, 503);
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_token_share_one_call() {
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&endpoint, &up)).await;
    endpoint.set("opaque-flight", active(now() + 600));
    endpoint.held.send_replace(true);
    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let url = gw.url("/x");
        requests.spawn(async move { get(&url, Some("opaque-flight")).await.0 });
    }
    eventually("the call to arrive", || async { endpoint.calls() >= 1 }).await;
    endpoint.held.send_replace(false);
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(endpoint.calls(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_cached_answer_never_outlives_the_token() {
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let clock = Arc::new(ManualClock::new(now()));
    let gw = Gateway::start_with_clock(&yaml(&endpoint, &up), clock.clone()).await;
    endpoint.set("opaque-short", active(now() + 20));
    assert_eq!(get(&gw.url("/x"), Some("opaque-short")).await.0, 200);
    clock.advance(20 + 31); // past exp and the 30 s leeway
    let (status, _, body) = get(&gw.url("/x"), Some("opaque-short")).await;
    assert_eq!(status, 401, "{body}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_tokens_cannot_flood_the_endpoint() {
    // Every request with a new token would be one call to the issuer: at most
    // `max_concurrent` are in flight, the rest wait a moment, then get 503.
    let endpoint = Endpoint::start().await;
    let up = Upstream::start().await;
    let yaml = yaml(&endpoint, &up).replace("cache: 60s", "cache: 60s\n      max_concurrent: 2");
    let gw = Gateway::start(&yaml).await;
    endpoint.held.send_replace(true);
    let mut requests = JoinSet::new();
    for i in 0..6 {
        let url = gw.url("/x");
        requests.spawn(async move { get(&url, Some(&format!("made-up-{i}"))).await.0 });
    }
    let mut refused = 0;
    while refused < 4 {
        let status = requests.join_next().await.expect("a request").unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        refused += 1;
    }
    // Only the two with a turn reached the endpoint.
    assert_eq!(endpoint.calls(), 2);
    assert_eq!(
        gw.metric("portcullis_limit_hits_total{limit=\"introspection_max_concurrent\"}")
            .await,
        4.0
    );
    endpoint.held.send_replace(false);
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // The refused ones are asked now; then every inactive answer is kept
    // (in the cache for inactive answers): no new call.
    for round in 0..2 {
        for i in 0..6 {
            let t = format!("made-up-{i}");
            assert_eq!(get(&gw.url("/x"), Some(&t)).await.0, 401, "round {round}");
        }
        assert_eq!(endpoint.calls(), 6);
    }
    gw.shutdown().await;
}
