//! CORS end to end (the Fetch standard): preflights answered by the gateway
//! without a token and never forwarded, refused for an origin, method or header
//! the route does not allow; CORS headers on proxied responses and on refusals
//! of a CORS route (so a browser can read a 401), replacing the upstream's own;
//! `Vary: Origin`; credentials never with `*`. A route without `cors:` treats
//! `OPTIONS` like any request — closed by default.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{HeaderMap, Method, Request};
use http_body_util::Full;
use support::*;

const ROUTES: &str = r#"  - path: /api/*
    upstream: api
    methods: [GET, POST]
    cors:
      allow_origins: ["https://app.example.test"]
      allow_methods: [GET, POST]
      allow_headers: [authorization, content-type]
      expose_headers: [x-request-id]
      max_age: 10m
      allow_credentials: true
  - path: /open/*
    upstream: api
    auth: anonymous
    cors:
      allow_origins: ["*"]
  - path: /nocors/*
    upstream: api
"#;

async fn call(
    gw: &Gateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (s, h, b) = send(req.body(Full::default()).unwrap()).await;
    (s.as_u16(), h, b)
}

const APP: &str = "https://app.example.test";

#[tokio::test]
async fn preflights_are_answered_without_a_token_and_never_forwarded() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, ROUTES)).await;
    let (status, h, _) = call(
        &gw,
        Method::OPTIONS,
        "/api/items",
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let vary: Vec<_> = h.get_all("vary").iter().collect();
    assert_eq!(
        vary,
        [
            "origin",
            "access-control-request-method",
            "access-control-request-headers"
        ]
    );
    assert!(h.contains_key("x-request-id"));

    for (case, headers) in [
        (
            "another origin",
            vec![
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET"),
            ],
        ),
        (
            "a method not allowed",
            vec![("origin", APP), ("access-control-request-method", "DELETE")],
        ),
        (
            "a header not allowed",
            vec![
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ],
        ),
    ] {
        let (status, h, body) = call(&gw, Method::OPTIONS, "/api/items", &headers).await;
        // DELETE has no route here at all: an ordinary OPTIONS request, 405.
        if case == "a method not allowed" {
            assert_eq!(status, 405, "{case}: {body}");
        } else {
            assert_eq!(status, 403, "{case}: {body}");
            assert_eq!(error_code(&body), "forbidden");
        }
        assert!(!h.contains_key("access-control-allow-origin"), "{case}");
    }
    assert_eq!(up.count(), 0, "a preflight reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn responses_and_refusals_of_a_cors_route_carry_cors_headers() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, ROUTES)).await;
    let t = format!("Bearer {}", token(&key, &claims()));
    let (status, h, _) = call(
        &gw,
        Method::GET,
        "/api/items",
        &[("origin", APP), ("authorization", &t)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    assert_eq!(h["vary"], "origin");
    // A 401 is readable by the browser too.
    let (status, h, _) = call(&gw, Method::GET, "/api/items", &[("origin", APP)]).await;
    assert_eq!(status, 401);
    assert_eq!(h["access-control-allow-origin"], APP);
    // Another origin: served (CORS is the browser's check), but no CORS headers.
    let (status, h, _) = call(
        &gw,
        Method::GET,
        "/api/items",
        &[("origin", "https://evil.test"), ("authorization", &t)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(h["vary"], "origin");
    // `*` without credentials.
    let (_, h, _) = call(
        &gw,
        Method::GET,
        "/open/x",
        &[("origin", "https://any.test")],
    )
    .await;
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(!h.contains_key("access-control-allow-credentials"));
    gw.shutdown().await;
}

#[tokio::test]
async fn without_cors_options_is_an_ordinary_request() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, ROUTES)).await;
    let (status, h, body) = call(
        &gw,
        Method::OPTIONS,
        "/nocors/items",
        &[("origin", APP), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}
