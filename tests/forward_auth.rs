//! Forward-auth: the decision without the proxying. Asked the way Traefik and
//! Envoy ask (`X-Forwarded-Method` / `-Uri` / `-Host`) and the way nginx
//! `auth_request` asks (`X-Original-Method` / `-URI`), the forward-auth listener
//! answers every case exactly as the proxy would (same status,
//! `WWW-Authenticate` and error code), with the identity headers on a 200, and
//! never contacts an upstream. Then a real nginx with `auth_request` in front of
//! a real upstream (skipped, saying so, where nginx is not installed).

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
            vec![("x-auth-subject", "spoofed".into())],
        ),
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
    assert!(h.contains_key("x-request-id"));
    let (status, h, _) = ask(
        &gw,
        "forwarded",
        "GET",
        "/public/x",
        &[("x-auth-subject", "spoofed".into())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-auth-subject"], "");
    gw.shutdown().await;
}

#[tokio::test]
async fn ambiguous_or_foreign_descriptions_are_refused() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&jwks, &up)).await;
    let url = format!("http://{}/auth", gw.forward_auth_addr());
    for headers in [
        vec![
            ("x-forwarded-uri", "/public/x"),
            ("x-original-uri", "/admin/x"),
        ],
        vec![
            ("x-forwarded-method", "GET"),
            ("x-original-method", "DELETE"),
        ],
        vec![("x-forwarded-uri", "http://evil.test/public/x")],
        vec![
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-host", "a b"),
        ],
    ] {
        let mut req = Request::get(&url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let (status, _, body) = send(req.body(Full::default()).unwrap()).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        assert_eq!(error_code(&body), "invalid_request");
    }
    // Two lines of the same header, over a raw socket.
    let answer = raw(
        gw.forward_auth_addr(),
        b"GET /auth HTTP/1.1\r\nHost: fa\r\nX-Forwarded-Uri: /public/x\r\nX-Forwarded-Uri: /admin/x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    // Envoy ext_authz sends the original request line itself.
    let (status, _, _) = get(
        &format!("http://{}/public/envoy", gw.forward_auth_addr()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = get(
        &format!("http://{}/admin/envoy", gw.forward_auth_addr()),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(up.count(), 0);
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
        eprintln!("skipped: nginx is not installed (.ci/run installs it)");
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
    location / {{
      auth_request /_portcullis;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_org $upstream_http_x_auth_org;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Org $auth_org;
      proxy_set_header X-Auth-Scopes $auth_scopes;
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
    let t = token(&key, &claims_with(json!({"org_id": "acme"})));

    // Allowed: the upstream gets the identity portcullis decided, whatever the
    // client claimed.
    let req = Request::get(format!("{base}/orgs/acme/items/7?q=1"))
        .header("authorization", format!("Bearer {t}"))
        .header("x-auth-subject", "spoofed")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.target, "/orgs/acme/items/7?q=1");
    assert_eq!(seen.headers["x-auth-subject"], "user-1");
    assert_eq!(seen.headers.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(seen.headers["x-auth-org"], "acme");

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
    assert_eq!(up.count(), before);

    // An anonymous route: allowed, and a spoofed identity is removed.
    let req = Request::get(format!("{base}/public/x"))
        .header("x-auth-subject", "spoofed")
        .body(Full::default())
        .unwrap();
    let (status, _, _) = send(req).await;
    assert_eq!(status, 200);
    assert!(!up.last().headers.contains_key("x-auth-subject"));
    drop(nginx);
    gw.shutdown().await;
}
