//! Forward-auth: the decision without the proxying. Asked the way Traefik and
//! Envoy ask (`X-Forwarded-Method` / `-Uri` / `-Host`) and the way nginx
//! `auth_request` asks (`X-Original-Method` / `-URI`), the forward-auth listener
//! answers every case exactly as the proxy would (same status,
//! `WWW-Authenticate` and error code), with the identity headers on a 200, and
//! never contacts an upstream — except where the proxy would strip something
//! from the request (identity headers, URL and method overrides) or answer a
//! CORS preflight itself: the outer proxy forwards the client's request as it
//! came, so forward-auth refuses those instead. Then a real nginx with
//! `auth_request` in front of a real upstream (skipped, saying so, where nginx
//! is not installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::*;

const ROUTES: &str = r#"  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /orgs/{org}/items/*
    methods: [GET, HEAD]
    upstream: api
    scopes: [read:data]
    org_param: org
  - path: /admin/*
    upstream: api
    roles: [admin]
  - path: /ws/*
    upstream: api
    websocket: true
  - path: /app/*
    upstream: api
    cors:
      allow_origins: ["https://app.example.test"]
      allow_methods: [GET, POST, DELETE]
  - path: /spa/*
    upstream: api
    cors:
      allow_origins: ["https://app.example.test"]
  - path: /legacy/{id}
    methods: [GET, POST]
    upstream: api
    method_override: true
  - path: /legacy/{id}
    methods: [DELETE]
    upstream: api
    method_override: true
    roles: [admin]
"#;

fn yaml(jwks: &JwksServer, up: &Upstream) -> String {
    config(jwks, up, ROUTES).replace(
        "admin:\n",
        "forward_auth:\n  listen: \"127.0.0.1:0\"\nadmin:\n",
    )
}

/// Asks the forward-auth listener about `method target` with `headers`, in
/// the Traefik style (`style` = "forwarded") or the nginx style ("original").
async fn ask(
    gw: &Gateway,
    style: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
) -> (u16, http::HeaderMap, String) {
    let mut req = Request::get(format!("http://{}/auth", gw.forward_auth_addr()));
    match style {
        "forwarded" => {
            req = req
                .header("x-forwarded-method", method)
                .header("x-forwarded-uri", target)
                .header("x-forwarded-host", "api.example.test");
        }
        _ => {
            req = req
                .header("x-original-method", method)
                .header("x-original-uri", target);
        }
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let (status, h, body) = send(req.body(Full::default()).unwrap()).await;
    (status.as_u16(), h, body)
}

/// The same request through the proxy.
async fn proxied(
    gw: &Gateway,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
) -> (u16, http::HeaderMap, String) {
    let mut lines = String::new();
    for (k, v) in headers {
        lines.push_str(&format!("{k}: {v}\r\n"));
    }
    let answer = raw(
        gw.addr,
        format!("{method} {target} HTTP/1.1\r\nHost: api.example.test\r\n{lines}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut h = http::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            h.append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    (raw_status(&answer), h, body.to_owned())
}

#[tokio::test]
async fn every_decision_matches_the_proxy_s() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    let bearer = |c: serde_json::Value| ("authorization", format!("Bearer {}", token(&key, &c)));
    let good = bearer(claims_with(json!({"org_id": "acme", "roles": ["admin"]})));
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/orgs/acme/items/1?x=1", vec![good.clone()]),
        ("GET", "/orgs/acme/items/1", vec![]),
        (
            "GET",
            "/orgs/acme/items/1",
            vec![("authorization", "Basic Zm9vOmJhcg==".into())],
        ),
        (
            "GET",
            "/orgs/acme/items/1",
            vec![("authorization", "Bearer not.a.token".into())],
        ),
        ("GET", "/orgs/globex/items/1", vec![good.clone()]),
        (
            "GET",
            "/orgs/acme/items/1",
            vec![bearer(claims_with(json!({"org_id": "acme", "scope": "x"})))],
        ),
        ("DELETE", "/orgs/acme/items/1", vec![good.clone()]),
        ("GET", "/admin/users", vec![bearer(claims())]),
        ("GET", "/admin/users", vec![good.clone()]),
        ("GET", "/nowhere", vec![good.clone()]),
        ("GET", "/public/../admin/users", vec![]),
        ("GET", "/public/a%2Fb", vec![]),
        ("GET", "/admin;x/users", vec![]),
        ("get", "/public/x", vec![]),
        (
            "GET",
            "/public/x",
            vec![
                ("connection", "upgrade".into()),
                ("upgrade", "websocket".into()),
            ],
        ),
    ];
    for (method, target, headers) in &cases {
        let before = up.count();
        let decided = ask(&gw, "forwarded", method, target, headers).await;
        let nginx_style = ask(&gw, "original", method, target, headers).await;
        assert_eq!(up.count(), before, "forward-auth contacted the upstream");
        let via_proxy = proxied(&gw, method, target, headers).await;
        for (style, got) in [("forwarded", &decided), ("original", &nginx_style)] {
            let case = format!("{style}: {method} {target} {headers:?}");
            assert_eq!(got.0, via_proxy.0, "{case}: {}", got.2);
            assert_eq!(
                got.1.get("www-authenticate"),
                via_proxy.1.get("www-authenticate"),
                "{case}"
            );
            if got.0 != 200 {
                assert_eq!(error_code(&got.2), error_code(&via_proxy.2), "{case}");
                assert!(!got.2.contains("not.a.token"));
            }
        }
    }
    // A 200 carries every identity header, empty where the token has none, so
    // that an outer proxy copying them overwrites what a client sent.
    let (status, h, _) = ask(
        &gw,
        "forwarded",
        "GET",
        "/orgs/acme/items/1",
        std::slice::from_ref(&good),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-auth-subject"], "user-1");
    assert_eq!(h["x-auth-org"], "acme");
    assert_eq!(h["x-auth-roles"], "admin");
    assert_eq!(h["x-auth-scopes"], "read:data write:data");
    assert_eq!(h["x-auth-issuer"], ISSUER);
    assert!(h.contains_key("x-request-id"));
    let (status, h, _) = ask(&gw, "forwarded", "GET", "/public/x", &[]).await;
    assert_eq!(status, 200);
    for name in [
        "x-auth-subject",
        "x-auth-issuer",
        "x-auth-org",
        "x-auth-scopes",
        "x-auth-roles",
    ] {
        assert_eq!(h[name], "", "{name}");
    }
    gw.shutdown().await;
}

/// Sends `lines` (header lines, as written) to the forward-auth listener in a
/// raw `GET /auth` request, so that nothing normalises their names.
async fn ask_raw(gw: &Gateway, lines: &[&str]) -> String {
    let mut request = String::from("GET /auth HTTP/1.1\r\nHost: fa\r\n");
    for line in lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    raw(gw.forward_auth_addr(), request.as_bytes()).await
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn ambiguous_or_foreign_descriptions_are_refused() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    for lines in [
        // Two descriptions that disagree, on the URI or the method.
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: /public/x",
            "X-Original-Method: GET",
            "X-Original-URI: /admin/x",
        ][..],
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: /public/x",
            "X-Original-Method: DELETE",
            "X-Original-URI: /public/x",
        ][..],
        // Not origin-form; a bad host.
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: http://evil.test/public/x",
        ][..],
        // What the outer proxy forwards as written, and an upstream may read
        // as another path: a network-path reference, a fragment.
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: //public/admin/x",
        ][..],
        &[
            "X-Original-Method: GET",
            "X-Original-URI: /public/x#/../../admin/x",
        ][..],
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: /public/x",
            "X-Forwarded-Host: a b",
        ][..],
        // Two lines of the same header.
        &[
            "X-Forwarded-Method: GET",
            "X-Forwarded-Uri: /public/x",
            "X-Forwarded-Uri: /admin/x",
        ][..],
    ] {
        let answer = ask_raw(&gw, lines).await;
        assert_eq!(raw_status(&answer), 400, "{lines:?}: {answer}");
        assert_eq!(error_code(body_of(&answer)), "invalid_request", "{lines:?}");
    }
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_original_request_must_be_described() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    // Without a description the auth request's own request line is not taken
    // for the original: `GET /public/...` would be allowed for any request.
    let answer = raw(
        gw.forward_auth_addr(),
        b"GET /public/envoy HTTP/1.1\r\nHost: fa\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    assert!(body_of(&answer).contains("not described"), "{answer}");
    // Half a description is no description (nginx without X-Original-Method,
    // and a client that sends X-Forwarded-Method itself).
    for lines in [
        &["X-Original-URI: /public/x"][..],
        &["X-Forwarded-Method: GET"][..],
        &["X-Forwarded-Uri: /public/x"][..],
        &["X-Original-URI: /public/x", "X-Forwarded-Method: GET"][..],
        &[
            "X-Original-Method: DELETE",
            "X-Original-URI: /public/x",
            "X-Forwarded-Method: GET",
        ][..],
    ] {
        let answer = ask_raw(&gw, lines).await;
        assert_eq!(raw_status(&answer), 400, "{lines:?}: {answer}");
        assert_eq!(error_code(body_of(&answer)), "invalid_request");
    }
    gw.shutdown().await;

    // `trust_request_line: true` (Envoy ext_authz sends the original request
    // line): the request line is the description, and another must agree.
    let gw = Gateway::start(&yaml(&jwks, &up).replace(
        "forward_auth:\n  listen: \"127.0.0.1:0\"\n",
        "forward_auth:\n  listen: \"127.0.0.1:0\"\n  trust_request_line: true\n",
    ))
    .await;
    let fa = gw.forward_auth_addr();
    let (status, _, _) = get(&format!("http://{fa}/public/envoy"), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&format!("http://{fa}/admin/envoy"), None).await;
    assert_eq!(status, 401);
    let answer = raw(
        fa,
        b"GET /admin/envoy HTTP/1.1\r\nHost: fa\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: /public/x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_cors_preflight_is_judged_like_any_request_of_its_route() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    // The proxy answers this preflight itself (204) and never forwards it.
    let preflight = "Origin: https://app.example.test\r\nAccess-Control-Request-Method: DELETE";
    let answer = raw(
        gw.addr,
        format!("OPTIONS /app/x HTTP/1.1\r\nHost: api.example.test\r\n{preflight}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 204, "{answer}");
    // Forward-auth cannot answer it: a 200 would make the outer proxy forward
    // the OPTIONS to the upstream without a token. The route requires one.
    for description in [
        "X-Forwarded-Method: OPTIONS\r\nX-Forwarded-Uri: /app/x\r\nX-Forwarded-Host: api.example.test",
        "X-Original-Method: OPTIONS\r\nX-Original-URI: /app/x",
    ] {
        let answer = ask_raw(&gw, &[description, preflight]).await;
        assert_eq!(raw_status(&answer), 401, "{description}: {answer}");
        assert!(answer.contains("Bearer realm=\"portcullis\""), "{answer}");
        // With a token it is an ordinary OPTIONS request of the route.
        let t = format!("Authorization: Bearer {}", token(&key, &claims()));
        let answer = ask_raw(&gw, &[description, preflight, &t]).await;
        assert_eq!(raw_status(&answer), 200, "{description}: {answer}");
    }
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn headers_the_proxy_would_strip_are_refused() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    let admin = format!(
        "Authorization: Bearer {}",
        token(&key, &claims_with(json!({"roles": ["admin"]})))
    );
    let reader = format!("Authorization: Bearer {}", token(&key, &claims()));
    let get = |uri: &'static str| format!("X-Forwarded-Method: GET\r\nX-Forwarded-Uri: {uri}");
    let post = |uri: &'static str| format!("X-Original-Method: POST\r\nX-Original-URI: {uri}");
    // (description, extra lines, status, what the proxy answers for the same)
    let refused: Vec<(String, &str)> = vec![
        // Identity headers, every one of them, in any case and `_` spelling.
        (get("/public/x"), "X-Auth-Subject: root"),
        (get("/public/x"), "x-auth-issuer: https://issuer.test"),
        (get("/public/x"), "X-AUTH-ORG: acme"),
        (get("/public/x"), "X-Auth-Scopes: admin"),
        (get("/public/x"), "X-Auth-Roles: admin"),
        (get("/public/x"), "X_Auth_Roles: admin"),
        (get("/public/x"), "x_auth_SUBJECT: root"),
        (get("/public/x"), "X-Auth-Subject:"),
        // URL overrides (X-Original-URI is nginx's description, not one).
        (get("/public/x"), "X-Original-URL: /admin/x"),
        (get("/public/x"), "X-Rewrite-URL: /admin/x"),
        (get("/public/x"), "x_original_url: /admin/x"),
        (post("/public/x"), "X_Original_URI: /admin/x"),
        // Method overrides on a route without `method_override`, and the `_`
        // spelling everywhere.
        (get("/public/x"), "X-HTTP-Method-Override: DELETE"),
        (get("/public/x"), "X-HTTP-Method: DELETE"),
        (get("/public/x"), "x-method-override: DELETE"),
        (post("/legacy/1"), "X_HTTP_Method_Override: DELETE"),
        // The description or the forwarded family spelt with `_`.
        (get("/public/x"), "X_Forwarded_Uri: /admin/x"),
        (get("/public/x"), "X_Forwarded_For: 10.0.0.1"),
    ];
    for (description, extra) in &refused {
        let answer = ask_raw(&gw, &[description, extra, &admin]).await;
        assert_eq!(raw_status(&answer), 400, "{description} {extra}: {answer}");
        assert_eq!(error_code(body_of(&answer)), "invalid_request", "{extra}");
    }
    // The proxy strips the same headers and forwards the request.
    let answer = raw(
        gw.addr,
        b"GET /public/x HTTP/1.1\r\nHost: api.example.test\r\nX-Auth-Subject: root\r\nX-Original-URL: /admin/x\r\nX-HTTP-Method-Override: DELETE\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.count(), 1);

    // What the outer proxy itself sends is not refused.
    let answer = ask_raw(
        &gw,
        &[
            &get("/public/x"),
            "X-Forwarded-Host: api.example.test",
            "X-Forwarded-Proto: https",
            "X-Forwarded-For: 203.0.113.7",
            "X-Real-IP: 203.0.113.7",
            "Forwarded: for=203.0.113.7",
            "X-Original-URI: /public/x",
            "X-Original-Method: GET",
        ],
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");

    // An opted-in route: method overrides (headers or `_method`) are judged,
    // on a POST only, as GET, PUT, PATCH or DELETE.
    let cases: Vec<(String, &str, &str, u16)> = vec![
        (
            post("/legacy/1"),
            "X-HTTP-Method-Override: DELETE",
            &admin,
            200,
        ),
        (
            post("/legacy/1"),
            "X-HTTP-Method-Override: DELETE",
            &reader,
            403,
        ),
        (post("/legacy/1?_method=DELETE"), "Accept: */*", &admin, 200),
        (
            post("/legacy/1?_method=delete"),
            "Accept: */*",
            &reader,
            403,
        ),
        (
            get("/legacy/1"),
            "X-HTTP-Method-Override: DELETE",
            &admin,
            400,
        ),
        (get("/legacy/1?_method=DELETE"), "Accept: */*", &admin, 400),
        (post("/legacy/1"), "X-HTTP-Method: TRACE", &admin, 400),
        (post("/legacy/1"), "X-HTTP-Method: HEAD", &admin, 400),
        (
            post("/legacy/1?_method=PUT"),
            "X-HTTP-Method-Override: DELETE",
            &admin,
            400,
        ),
        // `_method` on a route without `method_override`, in any spelling.
        (get("/public/x?_method=DELETE"), "Accept: */*", &admin, 400),
        (
            get("/public/x?a=1&%5FMETHOD=DELETE"),
            "Accept: */*",
            &admin,
            400,
        ),
    ];
    for (description, extra, token, want) in &cases {
        let answer = ask_raw(&gw, &[description, extra, token]).await;
        assert_eq!(
            raw_status(&answer),
            *want,
            "{description} {extra}: {answer}"
        );
    }
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

// === a real nginx with auth_request ===

/// An nginx started for one test; killed (by its PID) when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers (SIGKILL would orphan them).
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

async fn start_nginx(auth: SocketAddr, upstream: SocketAddr) -> Option<Nginx> {
    let Some(bin) = nginx_binary() else {
        skip("needs nginx (.ci/run installs it from Debian's packages)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port().await;
    let p = dir.path().display();
    let conf = format!(
        r#"user root;
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  server {{
    listen {addr};
    location = /_portcullis {{
      internal;
      proxy_pass http://{auth}/;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
    }}
    location /spa/ {{
      if ($request_method = OPTIONS) {{
        add_header Access-Control-Allow-Origin "https://app.example.test" always;
        add_header Access-Control-Allow-Methods "GET, POST, DELETE" always;
        add_header Vary "Origin" always;
        return 204;
      }}
      auth_request /_portcullis;
      proxy_pass http://{upstream};
    }}
    location / {{
      auth_request /_portcullis;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_issuer $upstream_http_x_auth_issuer;
      auth_request_set $auth_org $upstream_http_x_auth_org;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      auth_request_set $auth_roles $upstream_http_x_auth_roles;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Issuer $auth_issuer;
      proxy_set_header X-Auth-Org $auth_org;
      proxy_set_header X-Auth-Scopes $auth_scopes;
      proxy_set_header X-Auth-Roles $auth_roles;
      proxy_set_header X-Original-URI "";
      proxy_pass http://{upstream};
    }}
  }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx {
        child,
        addr,
        _dir: dir,
    };
    within(Duration::from_secs(10), "nginx to listen", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    Some(nginx)
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_a_real_upstream() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    let Some(nginx) = start_nginx(gw.forward_auth_addr(), up.addr).await else {
        gw.shutdown().await;
        return;
    };
    let base = format!("http://{}", nginx.addr);
    let t = token(
        &key,
        &claims_with(json!({"org_id": "acme", "roles": ["admin"]})),
    );

    // Allowed: the upstream gets every identity header portcullis decided.
    let req = Request::get(format!("{base}/orgs/acme/items/7?q=1"))
        .header("authorization", format!("Bearer {t}"))
        .header("x-original-uri", "/admin/x")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.target, "/orgs/acme/items/7?q=1");
    assert_eq!(seen.headers["x-auth-subject"], "user-1");
    assert_eq!(seen.headers.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(seen.headers["x-auth-issuer"], ISSUER);
    assert_eq!(seen.headers["x-auth-org"], "acme");
    assert_eq!(seen.headers["x-auth-scopes"], "read:data write:data");
    assert_eq!(seen.headers["x-auth-roles"], "admin");
    // nginx replaced the client's X-Original-URI in the auth request; the
    // example's `proxy_set_header X-Original-URI ""` keeps it from the upstream.
    assert!(!seen.headers.contains_key("x-original-uri"));

    // Refused: nginx answers 401 (with portcullis's challenge) or 403, and the
    // upstream sees nothing.
    let before = up.count();
    let (status, headers, _) = get(&format!("{base}/orgs/acme/items/7"), None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"portcullis\"");
    let (status, _, _) = get(&format!("{base}/orgs/globex/items/7"), Some(&t)).await;
    assert_eq!(status, 403);
    // The path rules apply to the URI nginx forwards.
    let answer = raw(
        nginx.addr,
        b"GET /public/%2e%2e/admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(raw_status(&answer), 200, "{answer}");
    // A CORS preflight without a token is not let through to the upstream.
    let answer = raw(
        nginx.addr,
        b"OPTIONS /app/x HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.test\r\nAccess-Control-Request-Method: DELETE\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 401, "{answer}");
    // The documented way: nginx answers preflights itself, before auth_request.
    let answer = raw(
        nginx.addr,
        b"OPTIONS /spa/x HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.test\r\nAccess-Control-Request-Method: DELETE\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 204, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example.test"),
        "{answer}"
    );
    let (status, _, _) = get(&format!("{base}/spa/x"), None).await;
    assert_eq!(status, 401);
    // Headers nginx would forward to the upstream as the client sent them,
    // on an anonymous route: refused (portcullis's 400 is nginx's 500).
    for line in [
        "X-Auth-Subject: spoofed",
        "X-Auth-Roles: admin",
        "X-Original-URL: /admin/x",
        "X-HTTP-Method-Override: DELETE",
    ] {
        let answer = raw(
            nginx.addr,
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{line}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(raw_status(&answer), 500, "{line}: {answer}");
    }
    assert_eq!(up.count(), before);

    // An anonymous route: allowed, with empty identity headers (which nginx
    // does not send).
    let (status, _, _) = get(&format!("{base}/public/x"), None).await;
    assert_eq!(status, 200);
    assert!(!up.last().headers.contains_key("x-auth-subject"));
    drop(nginx);
    gw.shutdown().await;
}
