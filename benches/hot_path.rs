//! Criterion benchmarks of the request hot path: JWS verification cold (RS256,
//! ES256, EdDSA), the verified-token cache hit, route matching, and one whole
//! request through the gateway in process (loopback upstream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use portcullis::auth::jwks::{IssuerKeys, http_client};
use portcullis::auth::{Verifier, verify};
use portcullis::clock::SystemClock;
use portcullis::config::Config;
use portcullis::routing::{RouteTable, normalize};
use portcullis::telemetry::Metrics;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "https://api.bench";

struct Signer {
    name: &'static str,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: serde_json::Value,
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

fn signers() -> Vec<Signer> {
    vec![
        signer("RS256", "rsa.pem", Algorithm::RS256),
        signer("ES256", "ec256.pem", Algorithm::ES256),
        signer("EdDSA", "ed25519.pem", Algorithm::EdDSA),
    ]
}

#[allow(clippy::disallowed_methods)] // tokens are minted against the real clock
fn token(s: &Signer, sub: u64) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.name.to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{sub}"), "exp": now + 3600,
        "iat": now, "scope": "read:data write:data", "org_id": "org-1"});
    jsonwebtoken::encode(&h, &claims, &s.enc).unwrap()
}

fn config(jwks_path: &Path, upstream: &str) -> Config {
    let yaml = format!(
        r#"server: {{ listen: "127.0.0.1:0" }}
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
        jwks_path.display()
    );
    Config::from_yaml(&yaml, Path::new("bench.yaml")).unwrap()
}

fn write_jwks(dir: &Path, signers: &[Signer]) -> std::path::PathBuf {
    let path = dir.join("jwks.json");
    let keys: Vec<_> = signers.iter().map(|s| s.jwk.clone()).collect();
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}

fn bench_verify(c: &mut Criterion) {
    let signers = signers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&write_jwks(dir.path(), &signers), "http://127.0.0.1:1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuer = Arc::new(IssuerKeys::new(
        Arc::new(cfg.issuers[0].clone()),
        http_client(None).unwrap(),
        Metrics::new(),
    ));
    rt.block_on(issuer.refresh()).unwrap();
    let keys = issuer.current().unwrap();

    let mut cold = c.benchmark_group("verify_cold");
    cold.throughput(Throughput::Elements(1));
    for s in &signers {
        let t = token(s, 1);
        cold.bench_with_input(BenchmarkId::from_parameter(s.name), &t, |b, t| {
            b.iter(|| {
                let parsed = verify::parse(t).unwrap();
                let key = match keys.find(parsed.kid.as_deref(), parsed.alg) {
                    portcullis::auth::keys::KeyLookup::Found(k) => k,
                    _ => panic!("key"),
                };
                verify::verify_signature(&parsed, key).unwrap();
                verify::check_claims(&parsed.claims, &cfg.issuers[0], 1).ok();
            })
        });
    }
    cold.finish();

    let claims: Vec<String> = cfg
        .identity_headers
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let verifier = Verifier::new(vec![issuer], claims, Arc::new(SystemClock), Metrics::new());
    let mut cached = c.benchmark_group("verify_cached");
    cached.throughput(Throughput::Elements(1));
    for s in &signers {
        let t = token(s, 2);
        rt.block_on(verifier.verify(&t)).unwrap();
        cached.bench_with_input(BenchmarkId::from_parameter(s.name), &t, |b, t| {
            b.iter(|| rt.block_on(verifier.verify(t)).unwrap())
        });
    }
    cached.finish();
}

fn bench_routes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&write_jwks(dir.path(), &signers()), "http://127.0.0.1:1");
    let table = RouteTable::new(&cfg.routes);
    let mut g = c.benchmark_group("route_match");
    g.throughput(Throughput::Elements(1));
    for path in ["/public/a/b", "/orgs/org-1/items/42", "/anything/else?x=1"] {
        let uri: http::Uri = path.parse().unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(path), &uri, |b, uri| {
            b.iter(|| {
                let p = normalize(uri, false).unwrap();
                table.lookup(&Method::GET, &p)
            })
        });
    }
    g.finish();
}

fn bench_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signers = signers();
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path(), &signers);
    let (gw, client) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok\n"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let running =
            portcullis::server::start(config(&jwks, &format!("http://{up}")), Default::default())
                .await
                .unwrap();
        let issuers = running.snapshot().verifier.issuers().to_vec();
        for i in issuers {
            i.refresh().await.unwrap();
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        (running, client)
    });
    let url = format!("http://{}/orgs/org-1/items/1", gw.proxy_addr);
    let mut g = c.benchmark_group("request_in_process");
    g.throughput(Throughput::Elements(1));
    for s in &signers {
        let auth = format!("Bearer {}", token(s, 3));
        g.bench_function(BenchmarkId::from_parameter(s.name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = Request::get(&url)
                        .header("authorization", &auth)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let resp = client.request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                })
            })
        });
    }
    g.finish();
    rt.block_on(gw.shutdown());
}

criterion_group!(benches, bench_verify, bench_routes, bench_request);
criterion_main!(benches);
