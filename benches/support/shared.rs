//! What the gateway benches share: signing keys and tokens, a key set on disk,
//! a minimal upstream, and the gateway itself started in process.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

pub const ISSUER: &str = "https://issuer.bench";
pub const AUDIENCE: &str = "https://api.bench";

pub struct Signer {
    pub name: &'static str,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: serde_json::Value,
}

fn signer(name: &'static str, file: &str, alg: Algorithm) -> Signer {
    let pem = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file),
    )
    .unwrap();
    let enc = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_ed_pem(&pem).unwrap(),
    };
    let mut jwk = if alg == Algorithm::EdDSA {
        // jsonwebtoken cannot derive an Ed25519 JWK: take the public key from the PKCS#8.
        use aws_lc_rs::signature::KeyPair;
        use base64::Engine;
        let b64: String = std::str::from_utf8(&pem)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&der).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA"})
    } else {
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap()).unwrap()
    };
    jwk["kid"] = json!(name);
    Signer {
        name,
        alg,
        enc,
        jwk,
    }
}

/// RS256, ES256 and EdDSA keys from `tests/fixtures`.
pub fn signers() -> Vec<Signer> {
    vec![
        signer("RS256", "rsa.pem", Algorithm::RS256),
        signer("ES256", "ec256.pem", Algorithm::ES256),
        signer("EdDSA", "ed25519.pem", Algorithm::EdDSA),
    ]
}

/// A token of `issuer` for user `sub`, valid for an hour.
#[allow(clippy::disallowed_methods)] // tokens are minted against the real clock
pub fn token_of(s: &Signer, issuer: &str, sub: u64) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.name.to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": format!("user-{sub}"), "exp": now + 3600,
        "iat": now, "scope": "read:data write:data", "org_id": "org-1"});
    jsonwebtoken::encode(&h, &claims, &s.enc).unwrap()
}

/// A token of [`ISSUER`].
pub fn token(s: &Signer, sub: u64) -> String {
    token_of(s, ISSUER, sub)
}

/// Now, in seconds since the epoch.
#[allow(clippy::disallowed_methods)] // tokens are minted against the real clock
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An access token as the built-in issuer at `issuer` signs one for user
/// `sub` (`typ: at+jwt`, with `jti`, `client_id` and `family_id`), valid
/// for an hour.
pub fn builtin_token(s: &Signer, issuer: &str, sub: u64) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.name.to_owned());
    h.typ = Some("at+jwt".to_owned());
    let now = now();
    let claims = json!({"iss": issuer, "aud": AUDIENCE, "sub": format!("user-{sub}"),
        "exp": now + 3600, "iat": now, "nbf": now, "jti": format!("jti-{sub}"),
        "client_id": "bench", "scope": "read:data", "family_id": format!("rfam_{sub}")});
    jsonwebtoken::encode(&h, &claims, &s.enc).unwrap()
}

/// Writes the signers' public keys as `jwks.json` in `dir`.
pub fn write_jwks(dir: &Path, signers: &[Signer]) -> PathBuf {
    let path = dir.join("jwks.json");
    let keys: Vec<_> = signers.iter().map(|s| s.jwk.clone()).collect();
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}

/// An upstream on 127.0.0.1 that answers every request `200 ok`.
pub async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// Starts the gateway from `yaml` and fetches every issuer's keys.
pub async fn gateway(yaml: &str) -> portcullis::server::Running {
    let config = portcullis::config::Config::from_yaml(yaml, Path::new("bench.yaml")).unwrap();
    let running = portcullis::server::start(config, Default::default())
        .await
        .unwrap();
    let issuers = running.snapshot().verifier.issuers().to_vec();
    for i in issuers {
        i.refresh().await.unwrap();
    }
    running
}

/// The benches' HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>()
}

/// One GET of `url` (with `authorization` when given) that must answer 200;
/// the body is read to its end.
pub async fn get_ok(client: &Client, url: &str, authorization: Option<&str>) {
    use http_body_util::BodyExt;
    let mut req = http::Request::get(url);
    if let Some(auth) = authorization {
        req = req.header("authorization", auth);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
}

/// The gateway the request benches use: one issuer reading `jwks`, one
/// upstream, an anonymous route, an org-scoped route and a catch-all
/// (`workers`: `server.workers`, default one per CPU).
pub fn gateway_yaml(jwks: &Path, upstream: &str, workers: Option<usize>) -> String {
    let workers = workers
        .map(|n| format!(", workers: {n}"))
        .unwrap_or_default();
    format!(
        r#"server: {{ listen: "127.0.0.1:0"{workers} }}
admin: {{ listen: "127.0.0.1:0" }}
issuers:
  - id: bench
    issuer: "{ISSUER}"
    jwks_file: "{}"
    audiences: ["{AUDIENCE}"]
upstreams:
  api: {{ url: "{upstream}" }}
routes:
  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /orgs/{{org}}/items/*
    methods: [GET, HEAD]
    upstream: api
    scopes: [read:data]
    org_param: org
  - path: /*
    upstream: api
    scopes: [read:data]
"#,
        jwks.display()
    )
}
