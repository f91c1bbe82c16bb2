//! A self-contained playground for portcullis: `cargo run --example demo`.
//!
//! It starts the two things a gateway sits between, on the addresses the
//! top-level `gateway.yaml` expects, and prints `curl` commands to try:
//!
//! * an **echo upstream** on `127.0.0.1:9000` that answers every request with
//!   JSON describing what it received (method, path, query, headers, body size),
//!   so you can see exactly what the gateway forwarded, identity headers included;
//! * a **demo token issuer** on `127.0.0.1:9100` that publishes the public half of
//!   an ES256 key (`tests/fixtures/ec256.pem`, `kid` `demo-1`) at
//!   `/.well-known/jwks.json`, plus an OpenID discovery document. It also mints
//!   fresh tokens on `GET /demo/tokens/{read-write,write-only,expired}` so that a
//!   walk-through never runs out of unexpired tokens.
//!
//! Every token has `iss` `http://127.0.0.1:9100` and `aud`
//! `https://api.example.test`. The key is a test fixture: never trust it anywhere
//! else. Stop the demo with Ctrl-C (or `kill` its PID).

// An example: failing loudly at start-up (bad fixture, port taken) is the point,
// and `expect` says why. Nothing a client sends reaches an `expect`.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

// The library's own wall clock: the one place in portcullis that reads it.
use portcullis::clock::{Clock, SystemClock};

/// Where the echo upstream listens (`upstreams.api.url` in gateway.yaml).
const UPSTREAM_ADDR: &str = "127.0.0.1:9000";
/// Where the demo issuer listens.
const ISSUER_ADDR: &str = "127.0.0.1:9100";
/// The `iss` of every demo token (`issuers[0].issuer` in gateway.yaml).
const ISSUER: &str = "http://127.0.0.1:9100";
/// The `aud` of every demo token (`issuers[0].audiences` in gateway.yaml).
const AUDIENCE: &str = "https://api.example.test";
/// The key id published in the JWKS and put in every token header.
const KID: &str = "demo-1";
/// Where `cargo run -- run` with the default gateway.yaml listens.
const GATEWAY: &str = "http://127.0.0.1:8080";
/// The echo upstream reads at most this much of a request body.
const MAX_ECHO_BODY: usize = 1024 * 1024;

/// The demo signing key and the JWKS document that publishes its public half.
struct DemoKey {
    encoding: EncodingKey,
    jwks: String,
}

/// The three tokens the walk-through uses.
#[derive(Debug, Clone, Copy)]
enum TokenKind {
    /// `scope: "read:data write:data"`, `org_id: acme`, valid for an hour.
    ReadWrite,
    /// `scope: "write:data"` only, `org_id: acme`, valid for an hour.
    WriteOnly,
    /// Both scopes, but `exp` an hour ago: always refused.
    Expired,
}

impl TokenKind {
    const ALL: [TokenKind; 3] = [
        TokenKind::ReadWrite,
        TokenKind::WriteOnly,
        TokenKind::Expired,
    ];

    /// The last segment of `/demo/tokens/{name}`.
    fn name(self) -> &'static str {
        match self {
            TokenKind::ReadWrite => "read-write",
            TokenKind::WriteOnly => "write-only",
            TokenKind::Expired => "expired",
        }
    }

    fn from_name(name: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[tokio::main]
async fn main() {
    let key = Arc::new(load_key());

    // Bind both listeners before printing anything, so that a "port in use"
    // error is the first and only thing the user sees.
    let upstream = bind(UPSTREAM_ADDR, "echo upstream").await;
    let issuer = bind(ISSUER_ADDR, "demo issuer").await;

    serve(upstream, |req| async move { echo(req).await });
    let issuer_key = key.clone();
    serve(issuer, move |req| {
        let key = issuer_key.clone();
        async move { issuer_endpoint(&key, &req) }
    });

    print_walkthrough(&key);

    // Serve until Ctrl-C; a plain SIGTERM (`kill PID`) ends the process as well.
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("demo: cannot wait for Ctrl-C ({e}); stopping");
    }
}

// === keys and tokens ===

/// Loads the ES256 fixture key and builds its public JWKS.
fn load_key() -> DemoKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ec256.pem");
    let pem = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read the demo key {}: {e}", path.display()));
    let encoding = EncodingKey::from_ec_pem(&pem).expect("tests/fixtures/ec256.pem is an EC key");
    // jsonwebtoken derives the public JWK (kty EC, crv P-256, x, y, alg ES256)
    // from the private key; we add the key id and say it is for signatures.
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256)
        .expect("the demo key converts to a JWK");
    let mut jwk = serde_json::to_value(jwk).expect("a JWK serialises");
    jwk["kid"] = json!(KID);
    jwk["use"] = json!("sig");
    let jwks = json!({ "keys": [jwk] }).to_string();
    DemoKey { encoding, jwks }
}

/// Signs a fresh token of `kind`, valid from now (or expired an hour ago).
fn mint(key: &DemoKey, kind: TokenKind) -> String {
    let now = SystemClock.now_unix();
    let (scope, iat, exp) = match kind {
        TokenKind::ReadWrite => ("read:data write:data", now, now + 3600),
        TokenKind::WriteOnly => ("write:data", now, now + 3600),
        // Issued two hours ago, expired one hour ago: far outside the 30 s leeway.
        TokenKind::Expired => ("read:data write:data", now - 7200, now - 3600),
    };
    let claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "demo-user",
        "org_id": "acme",
        "scope": scope,
        "iat": iat,
        "exp": exp,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &key.encoding).expect("signing with the demo key")
}

// === the two servers ===

/// The echo upstream: describes the request it received as JSON.
async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Read (and count) the body, capped, so a client cannot make us buffer
    // without bound; a body that fails to arrive is answered, not unwrapped.
    let body_bytes = match Limited::new(body, MAX_ECHO_BODY).collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "the request body could not be read (or is over 1 MiB)" }),
            );
        }
    };
    // Header names arrive lower-cased; a repeated header becomes an array.
    let mut headers: BTreeMap<String, Value> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            None => {
                headers.insert(name.as_str().to_owned(), value);
            }
            Some(Value::Array(list)) => list.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_bytes": body_bytes,
        }),
    )
}

/// The demo issuer: JWKS, discovery, and token minting.
fn issuer_endpoint(key: &DemoKey, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/.well-known/jwks.json" {
        let mut resp = Response::new(Full::new(Bytes::from(key.jwks.clone())));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // portcullis honours max-age (within 1 min and 24 h) for its refreshes.
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        return resp;
    }
    if path == "/.well-known/openid-configuration" {
        // Lets gateway.yaml use `discovery_url` instead of `jwks_uri`.
        let doc = json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
        });
        return json_response(StatusCode::OK, &doc);
    }
    if let Some(kind) = path
        .strip_prefix("/demo/tokens/")
        .and_then(TokenKind::from_name)
    {
        let mut resp = Response::new(Full::new(Bytes::from(mint(key, kind))));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    json_response(StatusCode::NOT_FOUND, &json!({ "error": "not_found" }))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Binds `addr`, or explains which demo server could not start and exits.
async fn bind(addr: &str, what: &str) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot start the {what} on {addr}: {e}");
            eprintln!("demo: is another demo (or something else) already listening there?");
            std::process::exit(1);
        }
    }
}

/// Serves `handler` on every connection `listener` accepts (HTTP/1.1 and h2c).
fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let (stream, _peer): (_, SocketAddr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    eprintln!("demo: accept failed: {e}");
                    continue;
                }
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                // A client that hangs up mid-request is not worth reporting.
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

// === the walk-through ===

/// Prints what is running and `curl` commands with freshly minted tokens.
fn print_walkthrough(key: &DemoKey) {
    let read_write = mint(key, TokenKind::ReadWrite);
    let write_only = mint(key, TokenKind::WriteOnly);
    let expired = mint(key, TokenKind::Expired);
    let auth = |token: &str| format!("-H 'Authorization: Bearer {token}'");

    println!(
        "\
portcullis demo is running:
  echo upstream   http://{UPSTREAM_ADDR}/            (answers with the request it received, as JSON)
  demo issuer     {ISSUER}/.well-known/jwks.json  (ES256 key, kid {KID})
                  {ISSUER}/demo/tokens/{{read-write,write-only,expired}}  (fresh tokens)

Start the gateway with the top-level gateway.yaml in another terminal:
  cargo run --release -- run

Then try (tokens valid for one hour from now; iss {ISSUER}, aud {AUDIENCE}, sub demo-user, org_id acme):
"
    );
    let steps: [(&str, String); 9] = [
        (
            "anonymous route: no token needed -> 200",
            format!("curl -i {GATEWAY}/public/hello"),
        ),
        (
            "no token on a required route -> 401 unauthorized",
            format!("curl -i {GATEWAY}/orgs/acme/items/42"),
        ),
        (
            "scopes read:data write:data, org acme -> 200; the echo shows the x-auth-* headers",
            format!(
                "curl -i {} '{GATEWAY}/orgs/acme/items/42?color=blue'",
                auth(&read_write)
            ),
        ),
        (
            "same token, another organization -> 403 forbidden (org_param)",
            format!(
                "curl -i {} {GATEWAY}/orgs/globex/items/42",
                auth(&read_write)
            ),
        ),
        (
            "only write:data, reading -> 403 insufficient_scope",
            format!("curl -i {} {GATEWAY}/orgs/acme/items/42", auth(&write_only)),
        ),
        (
            "only write:data, writing -> 200",
            format!(
                "curl -i -X POST -d '{{\"name\":\"anvil\"}}' {} {GATEWAY}/orgs/acme/items",
                auth(&write_only)
            ),
        ),
        (
            "expired token -> 401 invalid_token",
            format!("curl -i {} {GATEWAY}/orgs/acme/items/42", auth(&expired)),
        ),
        (
            "optional-auth route, no token -> 200 without identity headers",
            format!("curl -i {GATEWAY}/news/today"),
        ),
        (
            "optional-auth route, with a token -> 200 with identity headers",
            format!("curl -i {} {GATEWAY}/news/today", auth(&read_write)),
        ),
    ];
    for (i, (what, cmd)) in steps.iter().enumerate() {
        println!("# {}. {what}\n{cmd}\n", i + 1);
    }
    println!(
        "\
# Fresh tokens at any time (handy in scripts):
TOKEN=$(curl -s {ISSUER}/demo/tokens/read-write)
curl -i -H \"Authorization: Bearer $TOKEN\" {GATEWAY}/anything

# Operations (the admin listener of gateway.yaml):
curl -s http://127.0.0.1:9901/readyz
curl -s http://127.0.0.1:9901/metrics

Stop the demo with Ctrl-C."
    );
}
