//! Criterion benchmarks of the request hot path: JWS verification cold (RS256,
//! ES256, EdDSA), the verified-token cache hit, route matching, and one whole
//! request through the gateway in process (loopback upstream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::Method;

use portcullis::auth::jwks::{IssuerKeys, http_client};
use portcullis::auth::{Verifier, verify};
use portcullis::clock::SystemClock;
use portcullis::config::Config;
use portcullis::routing::{RouteTable, normalize};
use portcullis::telemetry::Metrics;

#[path = "support/shared.rs"]
mod support;
use support::{signers, token, write_jwks};

fn config(jwks_path: &Path, upstream: &str) -> Config {
    Config::from_yaml(
        &support::gateway_yaml(jwks_path, upstream, None),
        Path::new("bench.yaml"),
    )
    .unwrap()
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
        let up = support::upstream().await;
        let yaml = support::gateway_yaml(&jwks, &format!("http://{up}"), None);
        (support::gateway(&yaml).await, support::client())
    });
    let url = format!("http://{}/orgs/org-1/items/1", gw.proxy_addr);
    let mut g = c.benchmark_group("request_in_process");
    g.throughput(Throughput::Elements(1));
    for s in &signers {
        let auth = format!("Bearer {}", token(s, 3));
        g.bench_function(BenchmarkId::from_parameter(s.name), |b| {
            b.iter(|| rt.block_on(support::get_ok(&client, &url, Some(&auth))))
        });
    }
    g.finish();
    rt.block_on(gw.shutdown());
}

criterion_group!(benches, bench_verify, bench_routes, bench_request);
criterion_main!(benches);
