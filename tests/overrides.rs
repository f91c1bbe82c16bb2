//! Method and URL override headers (`X-HTTP-Method-Override`, `X-HTTP-Method`,
//! `X-Method-Override`, `X-Original-URL`, `X-Rewrite-URL`): removed by default in
//! every spelling, so that a `GET` route cannot become a `DELETE` and a path
//! policy cannot be sidestepped on frameworks that honour them; a route may opt
//! in to method overrides, and then the policy judges the overridden method —
//! of a POST only, and only as GET, PUT, PATCH or DELETE. The `_method` query
//! parameter is an override too: refused unless the route opts in.
//! Over raw sockets, so that nothing normalises the header names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

fn overrides_config(jwks: &JwksServer, a: &Upstream, b: &Upstream) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{AUDIENCE}"]
upstreams:
  a: {{ url: "{a}", connect_timeout: 1s, timeout: 5s }}
  b: {{ url: "{b}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /items/{{id}}
    methods: [GET]
    upstream: a
    scopes: [read:data]
  - path: /items/{{id}}
    methods: [DELETE]
    upstream: a
    scopes: [admin]
  - path: /legacy/{{id}}
    methods: [GET, POST]
    upstream: b
    method_override: true
    scopes: [read:data]
  - path: /legacy/{{id}}
    methods: [DELETE]
    upstream: b
    method_override: true
    scopes: [admin]
  - path: /mixed/{{id}}
    methods: [POST]
    upstream: b
    method_override: true
    scopes: [read:data]
  - path: /mixed/{{id}}
    methods: [DELETE]
    upstream: b
    scopes: [read:data]
"#,
        jwks = jwks.url(),
        a = a.url(),
        b = b.url(),
    )
}

struct Fixture {
    gw: Gateway,
    a: Upstream,
    b: Upstream,
    reader: String,
    admin: String,
    _jwks: JwksServer,
}

async fn fixture() -> Fixture {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&overrides_config(&jwks, &a, &b)).await;
    Fixture {
        gw,
        a,
        b,
        reader: token(&key, &claims_with(json!({"scope": "read:data"}))),
        admin: token(&key, &claims_with(json!({"scope": "read:data admin"}))),
        _jwks: jwks,
    }
}

impl Fixture {
    /// Sends `METHOD target` with `token` and the extra header lines, as written.
    async fn send(&self, method: &str, target: &str, token: &str, extra: &[&str]) -> String {
        let mut lines = extra.join("\r\n");
        if !lines.is_empty() {
            lines.push_str("\r\n");
        }
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n{lines}Connection: close\r\n\r\n"
        );
        raw(self.gw.addr, request.as_bytes()).await
    }
}

const ALL_OVERRIDES: [&str; 10] = [
    "X-HTTP-Method-Override: DELETE",
    "X-HTTP-Method: DELETE",
    "X-Method-Override: DELETE",
    "x_http_method_override: DELETE",
    "X_HTTP_METHOD: DELETE",
    "X-Original-URL: /items/1",
    "X-Rewrite-URL: /items/1",
    "x_original_url: /items/1",
    "X-Original-URI: /items/1",
    "X-REWRITE-URL: /admin",
];

fn has_override(headers: &http::HeaderMap) -> Option<String> {
    headers.keys().map(|k| k.as_str().to_owned()).find(|n| {
        let n = n.replace('_', "-");
        [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
        ]
        .contains(&n.as_str())
    })
}

#[tokio::test]
async fn overrides_never_reach_an_upstream_by_default() {
    let f = fixture().await;
    // A reader may GET; with every override header the upstream still sees a GET.
    let resp = f.send("GET", "/items/1", &f.reader, &ALL_OVERRIDES).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = f.a.last();
    assert_eq!(got.method, "GET");
    assert_eq!(has_override(&got.headers), None);
    // And the policy was the GET route's, not the DELETE route's.
    let resp = f.send("DELETE", "/items/1", &f.reader, &[]).await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    assert_eq!(f.a.count(), 1);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn an_opted_in_route_judges_the_overridden_method() {
    let f = fixture().await;
    // POST + override DELETE is a DELETE: the reader lacks `admin`.
    for header in [
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: DELETE",
        "X-Method-Override: DELETE",
        "x-http-method-override: delete",
    ] {
        let resp = f.send("POST", "/legacy/1", &f.reader, &[header]).await;
        assert_eq!(raw_status(&resp), 403, "{header}: {resp}");
        assert!(resp.contains("insufficient_scope"), "{resp}");
    }
    assert_eq!(f.b.count(), 0);

    // The admin may: the upstream gets the POST with the judged method.
    let resp = f
        .send(
            "POST",
            "/legacy/1",
            &f.admin,
            &["x-http-method-override: delete", "X-Original-URL: /items/1"],
        )
        .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = f.b.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.headers["x-http-method-override"], "DELETE");
    assert!(!got.headers.contains_key("x-original-url"));

    // Without an override the route works as usual.
    let resp = f.send("POST", "/legacy/1", &f.reader, &[]).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    // The `_` spelling is never honoured (nor forwarded): this is a POST.
    let resp = f
        .send(
            "POST",
            "/legacy/1",
            &f.reader,
            &["X_HTTP_Method_Override: DELETE"],
        )
        .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(has_override(&f.b.last().headers), None);
    assert_eq!(f.b.count(), 3);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn ambiguous_or_unroutable_overrides_are_refused() {
    let f = fixture().await;
    let cases: [(&[&str], u16); 4] = [
        // Headers that disagree, a list, several lines: frameworks differ.
        (
            &["X-HTTP-Method-Override: GET", "X-HTTP-Method: DELETE"],
            400,
        ),
        (&["X-HTTP-Method-Override: DELETE, GET"], 400),
        (
            &[
                "X-HTTP-Method-Override: DELETE",
                "X-HTTP-Method-Override: GET",
            ],
            400,
        ),
        // No route allows the overridden method.
        (&["X-HTTP-Method-Override: PUT"], 405),
    ];
    for (headers, want) in cases {
        let resp = f.send("POST", "/legacy/1", &f.admin, headers).await;
        assert_eq!(raw_status(&resp), want, "{headers:?}: {resp}");
    }
    // The route of the overridden method does not opt in.
    let resp = f
        .send(
            "POST",
            "/mixed/1",
            &f.admin,
            &["X-HTTP-Method-Override: DELETE"],
        )
        .await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert!(resp.contains("invalid_request"), "{resp}");
    assert_eq!(f.b.count() + f.a.count(), 0);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn only_a_post_is_overridden_and_only_to_get_put_patch_or_delete() {
    let f = fixture().await;
    // A GET (or a DELETE, a PUT) with an override on an opted-in route: the
    // frameworks honour overrides on a POST only, so the two would disagree.
    for (method, header) in [
        ("GET", "X-HTTP-Method-Override: DELETE"),
        ("DELETE", "X-HTTP-Method: GET"),
        ("GET", "X-Method-Override: GET"),
    ] {
        let resp = f.send(method, "/legacy/1", &f.admin, &[header]).await;
        assert_eq!(raw_status(&resp), 400, "{method} {header}: {resp}");
        assert!(resp.contains("only on a POST"), "{resp}");
    }
    // HEAD, OPTIONS, CONNECT, TRACE, POST and custom methods are never targets
    // (HEAD would reach the GET-and-POST route).
    for target in ["HEAD", "OPTIONS", "CONNECT", "TRACE", "POST", "PROPFIND"] {
        let header = format!("X-HTTP-Method-Override: {target}");
        let resp = f.send("POST", "/legacy/1", &f.admin, &[&header]).await;
        assert_eq!(raw_status(&resp), 400, "{target}: {resp}");
        assert!(resp.contains("invalid_request"), "{resp}");
    }
    assert_eq!(f.b.count(), 0);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn a_method_query_parameter_is_an_override() {
    let f = fixture().await;
    // On a route without `method_override` it is refused, in every spelling a
    // framework reads as `_method` (the query reaches the upstream untouched).
    for target in [
        "/items/1?_method=DELETE",
        "/items/1?a=1&_METHOD=delete",
        "/items/1?%5Fmethod=DELETE",
        "/items/1?a=1;_Method=DELETE",
        "/items/1?_method[]=DELETE",
        "/items/1?.method=DELETE",
    ] {
        let resp = f.send("GET", target, &f.reader, &[]).await;
        assert_eq!(raw_status(&resp), 400, "{target}: {resp}");
        assert!(resp.contains("does not accept method overrides"), "{resp}");
    }
    assert_eq!(f.a.count(), 0);
    let resp = f
        .send("GET", "/items/1?method=DELETE", &f.reader, &[])
        .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");

    // On an opted-in route it is judged like the headers: a POST becomes the
    // DELETE it names, which a reader may not do and an admin may.
    let resp = f
        .send("POST", "/legacy/1?_method=DELETE", &f.reader, &[])
        .await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    let resp = f
        .send("POST", "/legacy/1?_method=delete", &f.admin, &[])
        .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = f.b.last();
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", "/legacy/1?_method=delete")
    );
    // Not on a GET; not twice; not against a header that says otherwise; not
    // through a route that does not opt in.
    for (method, target, headers) in [
        ("GET", "/legacy/1?_method=DELETE", &[][..]),
        ("POST", "/legacy/1?_method=DELETE&_method=DELETE", &[][..]),
        (
            "POST",
            "/legacy/1?_method=PUT",
            &["X-HTTP-Method-Override: DELETE"][..],
        ),
        ("POST", "/legacy/1?_method=HEAD", &[][..]),
        ("POST", "/mixed/1?_method=DELETE", &[][..]),
    ] {
        let resp = f.send(method, target, &f.admin, headers).await;
        assert_eq!(raw_status(&resp), 400, "{method} {target}: {resp}");
    }
    assert_eq!(f.b.count(), 1);
    f.gw.shutdown().await;
}
