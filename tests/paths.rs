//! The spec's "Paths" section, end to end over raw TCP (a client library would
//! normalise what these tests need to send as written): refused targets, `//`
//! collapsing, decoding once, case-sensitive first-match routing with 404/405,
//! and what the upstream receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

/// Routes over two upstreams (`a` and `b`), so a test can tell which route won.
fn paths_config(jwks: &JwksServer, a: &Upstream, b: &Upstream) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
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
  - path: /public/*
    upstream: a
    auth: anonymous
  - path: /first/special
    upstream: b
    auth: anonymous
  - path: /first/*
    upstream: a
    auth: anonymous
  - path: /orgs/{{org}}/items/{{id}}
    methods: [GET, HEAD]
    upstream: a
    auth: anonymous
  - path: /orgs/{{org}}/items/{{id}}
    methods: [DELETE]
    upstream: b
    auth: anonymous
  - path: /later/x
    methods: [POST]
    upstream: a
    auth: anonymous
  - path: /later/*
    upstream: b
    auth: anonymous
  - path: /reports/q3
    methods: [GET]
    upstream: a
  - path: /reports/*
    upstream: b
    auth: anonymous
  - path: /secure/*
    upstream: a
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
    _jwks: JwksServer,
}

async fn fixture() -> Fixture {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let a = Upstream::start().await;
    let b = Upstream::start().await;
    let gw = Gateway::start(&paths_config(&jwks, &a, &b)).await;
    Fixture {
        gw,
        a,
        b,
        _jwks: jwks,
    }
}

/// A parsed raw response.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

impl Fixture {
    /// Sends `METHOD target HTTP/1.1` exactly as written.
    async fn send(&self, method: &str, target: &str) -> Answer {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n"
        );
        let text = raw(self.gw.addr, request.as_bytes()).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Answer {
            status: raw_status(&text),
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    async fn get(&self, target: &str) -> Answer {
        self.send("GET", target).await
    }

    fn upstream_count(&self) -> usize {
        self.a.count() + self.b.count()
    }
}

#[tokio::test]
async fn unsafe_targets_get_400_and_never_reach_the_upstream() {
    let f = fixture().await;
    let refused = [
        // dot segments, raw and encoded in either case
        "/public/./a",
        "/public/../a",
        "/public/a/..",
        "/public/a/.",
        "/public/%2e/a",
        "/public/%2E/a",
        "/public/%2e%2e/a",
        "/public/%2E%2E/a",
        "/public/.%2e/a",
        "/public/%2e./a",
        "/secure/../public/a",
        // encoded separators
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/..%2Fsecure",
        "/public/a%5Cb",
        "/public/a%5cb",
        // NUL
        "/public/a%00b",
        "/public/%00",
        // broken escapes
        "/public/a%zz",
        "/public/a%2",
        // not origin-form
        "http://gateway.test/public/a",
        "http://gateway.test/secure/a",
    ];
    for target in refused {
        let got = f.get(target).await;
        assert_eq!(got.status, 400, "{target}: {}{}", got.head, got.body);
        assert_eq!(error_code(&got.body), "invalid_request", "{target}");
        assert!(got.header("x-request-id").is_some(), "{target}");
    }
    // `OPTIONS *` is asterisk-form, not origin-form.
    let got = f.send("OPTIONS", "*").await;
    assert_eq!(got.status, 400, "{}{}", got.head, got.body);
    assert_eq!(error_code(&got.body), "invalid_request");
    // Authority-form belongs to CONNECT, which a reverse proxy does not serve.
    let got = f.send("CONNECT", "gateway.test:443").await;
    assert_eq!(got.status, 400, "{}{}", got.head, got.body);
    // A raw backslash is refused too (by the parser or by the gateway).
    assert_eq!(f.get("/public/a\\b").await.status, 400);
    assert_eq!(
        f.upstream_count(),
        0,
        "a refused request reached an upstream"
    );

    // A 400 is decided before any policy: the required route answers 400, not 401.
    let got = f.get("/secure/%2e%2e/x").await;
    assert_eq!(got.status, 400);
    assert_eq!(got.header("www-authenticate"), None);
    assert_eq!(f.upstream_count(), 0);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn upstream_receives_the_normalised_path_and_the_original_query() {
    let f = fixture().await;
    let cases = [
        ("/public/a", "/public/a"),
        ("//public///a//b", "/public/a/b"),
        ("/public/a/", "/public/a/"),
        ("/public", "/public"),
        // decoded once: `%252e` is the text `%2e`, re-encoded on the way out
        ("/public/%252e", "/public/%252e"),
        ("/public/%252e%252e/a", "/public/%252e%252e/a"),
        ("/public/%252F", "/public/%252F"),
        // unreserved characters are sent decoded, others re-encoded
        ("/public/%41%62c", "/public/Abc"),
        ("/public/a%20b", "/public/a%20b"),
        ("/public/caf%C3%A9", "/public/caf%C3%A9"),
        // matching is on the decoded path: this is `/public/x`
        ("/%70ublic/x", "/public/x"),
        // the query string is passed through untouched, encoded slashes and dots included
        (
            "/public/q?x=%2F..%2f&y=a%20b&y=2&z=%00",
            "/public/q?x=%2F..%2f&y=a%20b&y=2&z=%00",
        ),
        ("//public/q//?a=//b", "/public/q/?a=//b"),
        ("/public/q?", "/public/q?"),
    ];
    for (sent, expected) in cases {
        let before = f.a.count();
        let got = f.get(sent).await;
        assert_eq!(got.status, 200, "{sent}: {}{}", got.head, got.body);
        assert_eq!(f.a.count(), before + 1, "{sent}");
        assert_eq!(f.a.last().target, expected, "{sent}");
    }
    f.gw.shutdown().await;
}

#[tokio::test]
async fn matching_is_case_sensitive_and_404_when_nothing_matches() {
    let f = fixture().await;
    for target in ["/Public/a", "/PUBLIC", "/publicity", "/", "/nothing/here"] {
        let got = f.get(target).await;
        assert_eq!(got.status, 404, "{target}: {}{}", got.head, got.body);
        assert_eq!(error_code(&got.body), "not_found", "{target}");
        assert!(got.header("x-request-id").is_some());
        assert_eq!(got.header("allow"), None);
    }
    // An encoded capital is still a capital.
    assert_eq!(f.get("/%50ublic/a").await.status, 404);
    assert_eq!(f.upstream_count(), 0);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn template_parameters_match_exactly_one_segment() {
    let f = fixture().await;
    for target in [
        "/orgs/acme/items/1",
        "/orgs/a%20b/items/x",
        "//orgs/acme//items/1",
    ] {
        let before = f.a.count();
        let got = f.get(target).await;
        assert_eq!(got.status, 200, "{target}: {}{}", got.head, got.body);
        assert_eq!(f.a.count(), before + 1, "{target}");
    }
    assert_eq!(f.a.last().target, "/orgs/acme/items/1");
    // A parameter is one segment: never empty, never two, never a hidden slash.
    for target in [
        "/orgs/items/1",
        "/orgs/acme/items",
        "/orgs/acme/items/1/2",
        "/orgs/a/b/items/1",
    ] {
        let got = f.get(target).await;
        assert_eq!(got.status, 404, "{target}: {}{}", got.head, got.body);
    }
    assert_eq!(f.get("/orgs/a%2Fb/items/1").await.status, 400);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn first_route_whose_pattern_and_methods_match_wins() {
    let f = fixture().await;
    // `/first/special` is listed before `/first/*`.
    f.get("/first/special").await;
    assert_eq!((f.a.count(), f.b.count()), (0, 1));
    assert_eq!(f.b.last().target, "/first/special");
    f.get("/first/other").await;
    f.get("/first/special/deeper").await;
    f.get("/first").await;
    assert_eq!((f.a.count(), f.b.count()), (3, 1));

    // Same pattern twice with different methods: each method finds its own route.
    let got = f.send("DELETE", "/orgs/acme/items/1").await;
    assert_eq!(got.status, 200, "{}{}", got.head, got.body);
    assert_eq!(f.b.count(), 2);
    assert_eq!(f.b.last().method, "DELETE");
    let got = f.send("HEAD", "/orgs/acme/items/1").await;
    assert_eq!(got.status, 200);
    assert_eq!(f.a.count(), 4);
    assert_eq!(f.a.last().method, "HEAD");

    // `/later/x` allows only POST; a GET falls through to `/later/*`.
    let got = f.get("/later/x").await;
    assert_eq!(got.status, 200);
    assert_eq!(f.b.count(), 3);
    let got = f.send("POST", "/later/x").await;
    assert_eq!(got.status, 200);
    assert_eq!(f.a.count(), 5);
    assert_eq!(f.a.last().method, "POST");

    // A route that takes GET takes HEAD: the upstream answers a HEAD with its
    // GET handler, so it must not fall through to the anonymous `/reports/*`.
    let got = f.send("HEAD", "/reports/q3").await;
    assert_eq!(got.status, 401, "{}", got.head);
    assert_eq!((f.a.count(), f.b.count()), (5, 3));
    assert_eq!(f.send("POST", "/reports/q3").await.status, 200);
    assert_eq!(f.b.count(), 4);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn method_mismatch_gets_405_with_allow() {
    let f = fixture().await;
    let got = f.send("POST", "/orgs/acme/items/1").await;
    assert_eq!(got.status, 405, "{}{}", got.head, got.body);
    assert_eq!(error_code(&got.body), "method_not_allowed");
    assert!(got.header("x-request-id").is_some());
    let allow = got.header("allow").expect("Allow header");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["DELETE", "GET", "HEAD"], "Allow: {allow}");

    // The 405 is about the path after normalisation.
    let got = f.send("PUT", "//orgs/acme/items//1").await;
    assert_eq!(got.status, 405);
    // A path no route matches is 404 whatever the method.
    assert_eq!(f.send("POST", "/orgs/acme").await.status, 404);
    assert_eq!(f.upstream_count(), 0);
    f.gw.shutdown().await;
}

// === matrix parameters (`;`) ===

/// Layouts where a segment with `;` would be a bypass if the gateway and a
/// servlet upstream (which strips `;…` before routing) disagreed: a weaker
/// catch-all after a protected prefix, an anonymous prefix before it, and one
/// route that opts in to matrix parameters.
fn matrix_config(jwks: &JwksServer, a: &Upstream, b: &Upstream) -> String {
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
  - path: /public/*
    upstream: a
    auth: anonymous
  - path: /admin/*
    upstream: b
    roles: [admin]
  - path: /api/{{org}}/*
    upstream: b
    matrix_params: true
    org_param: org
  - path: /*
    upstream: a
    auth: anonymous
"#,
        jwks = jwks.url(),
        a = a.url(),
        b = b.url(),
    )
}

#[tokio::test]
async fn segments_with_semicolons_are_refused_unless_the_route_opts_in() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&matrix_config(&jwks, &a, &b)).await;
    let f = Fixture {
        gw,
        a,
        b,
        _jwks: jwks,
    };
    let refused = [
        // `/admin;x/…` is `/admin/…` to Tomcat: it must not fall through to `/*`.
        "/admin;x/users",
        "/admin;jsessionid=ABC",
        "/ADMIN;x/users/../x",
        // `..;` is `..` to Tomcat: it must not climb out of the anonymous prefix.
        "/public/..;/admin/users",
        "/public/..;x=1/admin/users",
        "/public/.;/admin",
        "/public/a/..;/..;/admin",
        // No route but the opted-in one accepts parameters.
        "/public;x/a",
        "/public/a;x",
        "/anything;x",
        "/;x/admin",
        "/a/;/b",
        // An encoded `;` is refused everywhere, the opted-in route included.
        "/admin%3Bx/users",
        "/public/..%3B/admin",
        "/api/acme/%3B",
        "/api/acme%3bx/items",
        // Opting in never lets a parameter hide a dot segment or a separator.
        "/api/acme/..;/..;/admin/users",
        "/api/acme/x;a%2Fb",
        "/api/acme/x;a%00",
    ];
    for target in refused {
        let got = f.get(target).await;
        assert_eq!(got.status, 400, "{target}: {}{}", got.head, got.body);
        assert_eq!(error_code(&got.body), "invalid_request", "{target}");
        assert_eq!(got.header("www-authenticate"), None, "{target}");
    }
    assert_eq!(
        f.upstream_count(),
        0,
        "a refused request reached an upstream"
    );

    // The opted-in route judges the path without its parameters: it still wants
    // a token, and `org_param` sees `acme`, not `acme;v=1`.
    let got = f.get("/api/acme;v=1/items;page=2").await;
    assert_eq!(got.status, 401, "{}{}", got.head, got.body);
    let tok = token(&key, &claims_with(json!({"org_id": "acme"})));
    let send = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
        )
    };
    let resp = raw(
        f.gw.addr,
        send("/api/acme;v=1/items;page=2?q=;x").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    // The upstream gets the parameters as sent: it is the one that reads them.
    assert_eq!(f.b.last().target, "/api/acme;v=1/items;page=2?q=;x");
    let resp = raw(f.gw.addr, send("/api/globex;v=1/items").as_bytes()).await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    assert_eq!(f.b.count(), 1);

    // A `;` in the query is not a path matter.
    let got = f.get("/public/a?x=;y").await;
    assert_eq!(got.status, 200, "{}{}", got.head, got.body);
    f.gw.shutdown().await;
}
