//! The end-to-end harness: real servers on 127.0.0.1:0 — a JWKS endpoint (with a
//! discovery document), a recording upstream, and the gateway itself in process —
//! plus key fixtures (made by `tests/fixtures/gen.sh`) and token minting.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use portcullis::config::Config;
use portcullis::server::{self, Options, Running};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://api.test";

// === keys and tokens ===

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: Value,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Loads fixture `name` (`rsa`, `rsa-b`, `rsa-1024`, `ec256`, `ec256-b`, `ec384`,
/// `ed25519`) as a key for `alg`, published under `kid`.
pub fn key(name: &str, alg: Algorithm, kid: &str) -> TestKey {
    let pem = fixture(&format!("{name}.pem"));
    let enc = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(&pem).expect("rsa pem"),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).expect("ec pem"),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).expect("ed pem"),
        _ => panic!("no fixture for {alg:?}"),
    };
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).expect("jwk");
    let mut jwk = serde_json::to_value(jwk).expect("jwk json");
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        kid: kid.to_owned(),
        alg,
        enc,
        jwk,
    }
}

pub fn rsa() -> TestKey {
    key("rsa", Algorithm::RS256, "rsa-1")
}

pub fn ec() -> TestKey {
    key("ec256", Algorithm::ES256, "ec-1")
}

/// The JWKS document for `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

#[allow(clippy::disallowed_methods)] // tokens are minted against the real clock
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for the default issuer and audience, one hour left.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now(),
        "exp": now() + 3600,
        "scope": "read:data write:data",
        "org_id": "org-1",
    })
}

/// Claims with some fields replaced (`Value::Null` removes a field).
pub fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// Signs `claims` with `key` (header: alg, kid, typ JWT).
pub fn token(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.enc).expect("sign")
}

/// Signs with a custom header JSON (for attack tokens); the signature is real.
pub fn token_with_header(key: &TestKey, header: &Value, claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.enc, key.alg).expect("sign");
    format!("{input}.{sig}")
}

// === the JWKS server ===

struct JwksState {
    body: String,
    status: u16,
    cache_control: Option<String>,
    discovery_issuer: String,
    /// The `jwks_uri` the discovery document names; `None`: this server's own.
    discovery_jwks_uri: Option<String>,
}

/// A JWKS endpoint (`/jwks.json`) with a discovery document
/// (`/.well-known/openid-configuration`), whose answers tests can change.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<JwksState>>,
    fetches: Arc<AtomicUsize>,
    /// While true, `/jwks.json` requests are counted, then wait (a slow issuer).
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl JwksServer {
    pub async fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(JwksState {
            body: jwks(keys),
            status: 200,
            cache_control: None,
            discovery_issuer: ISSUER.to_owned(),
            discovery_jwks_uri: None,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(tokio::sync::watch::channel(false).0);
        let (s, f, h) = (state.clone(), fetches.clone(), held.clone());
        serve(listener, move |req: Request<Incoming>| {
            let (s, f, h) = (s.clone(), f.clone(), h.clone());
            async move {
                if req.uri().path() == "/jwks.json" && *h.borrow() {
                    f.fetch_add(1, Ordering::SeqCst);
                    let _ = h.subscribe().wait_for(|held| !*held).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                }
                let st = s.lock().unwrap();
                let mut resp = match req.uri().path() {
                    "/jwks.json" => {
                        f.fetch_add(1, Ordering::SeqCst);
                        let mut r = Response::new(Full::new(Bytes::from(st.body.clone())));
                        *r.status_mut() = StatusCode::from_u16(st.status).unwrap();
                        if let Some(cc) = &st.cache_control {
                            r.headers_mut().insert("cache-control", cc.parse().unwrap());
                        }
                        r
                    }
                    "/.well-known/openid-configuration" => {
                        let doc = json!({
                            "issuer": st.discovery_issuer,
                            "jwks_uri": st
                                .discovery_jwks_uri
                                .clone()
                                .unwrap_or_else(|| format!("http://{addr}/jwks.json")),
                        });
                        Response::new(Full::new(Bytes::from(doc.to_string())))
                    }
                    _ => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                };
                resp.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                resp
            }
        });
        JwksServer {
            addr,
            state,
            fetches,
            held,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn discovery_url(&self) -> String {
        format!("http://{}/.well-known/openid-configuration", self.addr)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.state.lock().unwrap().body = jwks(keys);
    }

    pub fn set_body(&self, body: &str) {
        self.state.lock().unwrap().body = body.to_owned();
    }

    /// Makes `/jwks.json` answer with this status (500 simulates an outage).
    pub fn set_status(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().discovery_issuer = issuer.to_owned();
    }

    pub fn set_discovery_jwks_uri(&self, uri: &str) {
        self.state.lock().unwrap().discovery_jwks_uri = Some(uri.to_owned());
    }

    /// Makes `/jwks.json` requests wait (counted on arrival) until [`release`].
    ///
    /// [`release`]: JwksServer::release
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets every waiting and later `/jwks.json` request through.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

// === the recording upstream ===

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The HTTP version it arrived with.
    pub version: http::Version,
    /// Whether the connection presented a (verified) client certificate.
    pub client_cert: bool,
    /// Path and query, exactly as sent on the wire.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

struct Behaviour {
    status: u16,
    delay: Duration,
}

/// An upstream that records every request and answers `200 ok` (or as told).
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    scheme: &'static str,
}

/// How a test upstream speaks.
#[derive(Clone, Default)]
pub struct UpstreamKind {
    /// HTTPS with this configuration (its ALPN decides HTTP/1.1 or HTTP/2).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 only (prior knowledge in cleartext).
    pub h2_only: bool,
}

/// Marks a request that came with a verified client certificate.
#[derive(Clone, Copy)]
struct ClientCert;

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// As [`Upstream::start`], listening at `addr` (an address a test reserved
    /// earlier with [`closed_port`], say).
    pub async fn start_at(addr: SocketAddr) -> Upstream {
        Self::start_kind(addr, UpstreamKind::default()).await
    }

    /// An HTTPS upstream, or an HTTP/2-only one, as `kind` says.
    pub async fn start_with(kind: UpstreamKind) -> Upstream {
        Self::start_kind("127.0.0.1:0".parse().unwrap(), kind).await
    }

    async fn start_kind(addr: SocketAddr, kind: UpstreamKind) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if kind.tls.is_some() { "https" } else { "http" };
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }));
        let (r, b) = (received.clone(), behaviour.clone());
        serve_kind(listener, kind, move |req: Request<Incoming>| {
            let (r, b) = (r.clone(), b.clone());
            async move {
                let (status, delay) = {
                    let b = b.lock().unwrap();
                    (b.status, b.delay)
                };
                let (parts, body) = req.into_parts();
                let version = parts.version;
                let client_cert = parts.extensions.get::<ClientCert>().is_some();
                let collected = body.collect().await.unwrap();
                let trailers = collected.trailers().cloned();
                let body = collected.to_bytes();
                let len = body.len();
                r.lock().unwrap().push(Received {
                    method: parts.method.to_string(),
                    version,
                    client_cert,
                    target: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    headers: parts.headers,
                    body,
                    trailers,
                });
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut resp = Response::new(Full::new(Bytes::from(format!("ok {len}\n"))));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                resp.headers_mut()
                    .insert("x-upstream", "yes".parse().unwrap());
                resp.headers_mut()
                    .insert("connection", "keep-alive".parse().unwrap());
                resp.headers_mut()
                    .insert("keep-alive", "timeout=60".parse().unwrap());
                resp
            }
        });
        Upstream {
            addr,
            received,
            behaviour,
            scheme,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The URL with `host` instead of the address (for TLS name checks).
    pub fn url_for(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.scheme, self.addr.port())
    }

    pub fn set_delay(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    pub fn set_status(&self, status: u16) {
        self.behaviour.lock().unwrap().status = status;
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received nothing")
    }
}

/// Serves `handler` on `listener` (HTTP/1.1 and h2c) until the test ends.
pub fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// Serves `handler` as `kind` says: TLS (with ALPN), HTTP/2 only, or both
/// HTTP/1.1 and h2c.
pub fn serve_kind<F, Fut>(listener: TcpListener, kind: UpstreamKind, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    if kind.tls.is_none() && !kind.h2_only {
        return serve(listener, handler);
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let kind = kind.clone();
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if kind.h2_only {
                    builder = builder.http2_only();
                }
                match kind.tls {
                    None => {
                        let svc = service_fn(move |req| {
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req).await) }
                        });
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(config) => {
                        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        else {
                            return;
                        };
                        let cert = tls.get_ref().1.peer_certificates().is_some();
                        let svc = service_fn(move |mut req: Request<Incoming>| {
                            if cert {
                                req.extensions_mut().insert(ClientCert);
                            }
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req).await) }
                        });
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
            });
        }
    });
}

/// An address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

// === the gateway ===

/// A gateway started in process.
pub struct Gateway {
    running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

/// A typical configuration: one issuer at `jwks` (by `jwks_uri`), one upstream,
/// admin listener, and the given `routes:` block (YAML, indented by two).
pub fn config(jwks: &JwksServer, upstream: &Upstream, routes: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{AUDIENCE}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
{routes}"#,
        jwks = jwks.url(),
        up = upstream.url(),
    )
}

impl Gateway {
    /// Starts the gateway and waits until `/readyz` answers 200.
    pub async fn start(yaml: &str) -> Gateway {
        Self::start_with(yaml, Options::default()).await
    }

    /// Starts the gateway with `options` (a manual clock, say) and waits until
    /// `/readyz` answers 200.
    pub async fn start_with(yaml: &str, options: Options) -> Gateway {
        let gw = Self::start_unready_with(yaml, options).await;
        for _ in 0..500 {
            let (status, _, _) = get(&format!("http://{}/readyz", gw.admin), None).await;
            if status == StatusCode::OK {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway never became ready");
    }

    /// Starts the gateway without waiting for its issuers' keys.
    pub async fn start_unready(yaml: &str) -> Gateway {
        Self::start_unready_with(yaml, Options::default()).await
    }

    /// As [`Gateway::start_unready`], with `options`.
    pub async fn start_unready_with(yaml: &str, options: Options) -> Gateway {
        let config =
            Config::from_yaml(yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let running = server::start(config, options).await.expect("start");
        let admin = running.admin_addr.expect("admin listener");
        Gateway {
            addr: running.proxy_addr,
            admin,
            running: Some(running),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin), None).await.2
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            let stopped = r.shutdown().await;
            assert_eq!(stopped.panics, 0, "a server task panicked");
        }
    }
}

// === clients ===

/// GET `url` with an optional bearer token: status, headers, body.
pub async fn get(url: &str, bearer: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::get(url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(req.body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends a request over a fresh HTTP/1.1 connection.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    send_from(None, req).await
}

/// As [`send`], from the local address `from` (any of 127.0.0.0/8 on
/// Linux): the server sees another source address, as it would another
/// client's.
pub async fn send_from(
    from: Option<std::net::IpAddr>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_local_address(from);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Full<Bytes>>(http);
    let resp = client.request(req).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The loopback address 127.0.0.`n`, a source address for [`send_from`].
pub fn loopback(n: u8) -> Option<std::net::IpAddr> {
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n)))
}

/// Writes raw bytes to `addr` and reads the whole answer (the request should
/// carry `Connection: close`). For requests a client library would normalise.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Parses a JSON error body.
pub fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"].as_str().unwrap_or_default().to_owned()
}

// === added for tests/proxy_auth.rs: Ed25519 keys, a gateway on a manual clock ===

/// The `ed25519` fixture as an EdDSA key published under `kid`. (`key("ed25519",
/// …)` cannot build the JWK: jsonwebtoken leaves OKP keys unimplemented.)
pub fn ed25519_key(kid: &str) -> TestKey {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    let pem = fixture("ed25519.pem");
    let text = String::from_utf8(pem.clone()).expect("pem text");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pem base64");
    let pair = Ed25519KeyPair::from_pkcs8(&der).expect("ed25519 pkcs8");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        enc: EncodingKey::from_ed_pem(&pem).expect("ed pem"),
        jwk: json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA" }),
    }
}

impl Gateway {
    /// As [`Gateway::start`], but token time (`exp`, `nbf`, `iat`) is read from
    /// `clock`: pass a `portcullis::clock::ManualClock` to move it without sleeping.
    pub async fn start_with_clock(yaml: &str, clock: Arc<dyn portcullis::clock::Clock>) -> Gateway {
        let config =
            Config::from_yaml(yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let running = server::start(
            config,
            Options {
                clock,
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let admin = running.admin_addr.expect("admin listener");
        let gw = Gateway {
            addr: running.proxy_addr,
            admin,
            running: Some(running),
        };
        for _ in 0..500 {
            let (status, _, _) = get(&format!("http://{}/readyz", gw.admin), None).await;
            if status == StatusCode::OK {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway never became ready");
    }
}

// === added for tests/jwks.rs and tests/cli.rs: key sources, internals, metrics, polling ===

/// As [`config`], with the issuer's key source given as YAML (`jwks_uri: "…"`,
/// `discovery_url: "…"` or `jwks_file: "…"`).
pub fn config_with_keys(source: &str, upstream: &Upstream, routes: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    {source}
    audiences: ["{AUDIENCE}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
{routes}"#,
        up = upstream.url(),
    )
}

impl Gateway {
    /// The running server, for tests that drive internals (refreshes, the verifier).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the gateway was shut down")
    }

    /// Writes `yaml` to `path` and starts the gateway from that file (so that it
    /// can be reloaded), watching it every 50 ms when `watch` is set.
    pub async fn start_file(path: &Path, yaml: &str, watch: bool) -> Gateway {
        std::fs::write(path, yaml).unwrap();
        let config = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        let options = Options {
            watch_interval: watch.then(|| Duration::from_millis(50)),
            ..Options::default()
        };
        let running = server::start(config, options).await.expect("start");
        let admin = running.admin_addr.expect("admin listener");
        let gw = Gateway {
            addr: running.proxy_addr,
            admin,
            running: Some(running),
        };
        eventually("the gateway to be ready", || async {
            gw.readyz().await == StatusCode::OK
        })
        .await;
        gw
    }

    /// Where the forward-auth listener listens.
    pub fn forward_auth_addr(&self) -> SocketAddr {
        self.running()
            .forward_auth_addr
            .expect("a forward_auth listener")
    }

    /// The key machinery of the `n`th configured issuer.
    pub fn issuer(&self, n: usize) -> Arc<portcullis::auth::jwks::IssuerKeys> {
        self.running().snapshot().verifier.issuers()[n].clone()
    }

    /// The status of `/readyz`.
    pub async fn readyz(&self) -> StatusCode {
        get(&format!("http://{}/readyz", self.admin), None).await.0
    }

    /// The value of one series in `/metrics` (0 when it is absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series).unwrap_or(0.0)
    }
}

/// The value of `series` (name with its labels as exported, e.g.
/// `portcullis_jwks_fetches_total{issuer="main"}`) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Polls `condition` until it holds; panics naming `what` after 10 s.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(Duration::from_secs(10), what, condition).await;
}

/// Polls `condition` until it holds; panics naming `what` after `bound` (a
/// bound, never a wait: the poll ends as soon as the condition holds).
pub async fn within<F, Fut>(bound: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + bound;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The decoded claims (payload) of a compact JWS, unverified: for assertions.
pub fn claims_of(token: &str) -> Value {
    jws_part(token, 1)
}

/// The decoded protected header of a compact JWS: for assertions.
pub fn header_of(token: &str) -> Value {
    jws_part(token, 0)
}

fn jws_part(token: &str, n: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(n).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON object")
}

// === issuer databases, the real binary, OAuth requests ===

mod db;
#[allow(unused_imports)]
pub use db::*;
pub mod oauth;
pub mod process;
pub mod skip;
pub mod tls;

pub use skip::skip;
