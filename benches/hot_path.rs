//! Criterion benchmarks of the request hot path: JWS verification cold (RS256,
//! ES256, EdDSA), the verified-token cache hit, the cache hit of a built-in
//! issuer's token with the revocation set empty and holding 100,000 entries
//! (and the re-check a change of the set costs), route matching, and one whole
//! request through the gateway in process (loopback upstream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::Method;

use portcullis::auth::jwks::{IssuerKeys, http_client};
use portcullis::auth::revocation::{Kind, Revocation, RevocationSet};
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

/// A gateway configuration whose one issuer is the built-in one.
fn builtin_config() -> Config {
    let yaml = format!(
        r#"issuer:
  url: "{}"
  database: "sqlite::memory:"
  signing_algs: [ES256]
issuers:
  - id: local
    builtin: true
    audiences: ["{}"]
upstreams:
  api: {{ url: "http://127.0.0.1:1" }}
routes:
  - path: /*
    upstream: api
"#,
        support::ISSUER,
        support::AUDIENCE
    );
    Config::from_yaml(&yaml, Path::new("bench.yaml")).unwrap()
}

/// `n` revocations of every kind, none of which matches the benched tokens.
fn revocations(n: usize, now: i64) -> Vec<Revocation> {
    let kinds = [Kind::Jti, Kind::Family, Kind::Subject, Kind::Client];
    (0..n)
        .map(|i| Revocation {
            kind: kinds[i % kinds.len()],
            value: format!("revoked-{i}"),
            issued_before: now,
            until: now + 3600,
        })
        .collect()
}

/// The cached verification of a built-in token (the set consulted on every
/// hit), with the revocation set empty and holding 100,000 entries; and what
/// a hit costs right after the set changed (its re-check: four lookups).
fn bench_revocations(c: &mut Criterion) {
    let signers = signers();
    let es256 = signers.iter().find(|s| s.name == "ES256").unwrap();
    let cfg = builtin_config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = support::now();
    let claims: Vec<String> = cfg
        .identity_headers
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let mut g = c.benchmark_group("verify_cached_builtin");
    g.throughput(Throughput::Elements(1));
    for (name, entries) in [("empty", 0), ("100k_revocations", 100_000)] {
        let issuer = Arc::new(IssuerKeys::new(
            Arc::new(cfg.issuers[0].clone()),
            http_client(None).unwrap(),
            Metrics::new(),
        ));
        let jwks = serde_json::json!({ "keys": [es256.jwk.clone()] }).to_string();
        issuer.install_jwks(jwks.as_bytes()).unwrap();
        let set = Arc::new(RevocationSet::new(1_000_000));
        set.insert(&revocations(entries, now), now);
        assert_eq!(set.len(), entries);
        let verifier = Verifier::new(
            vec![issuer],
            claims.clone(),
            Arc::new(SystemClock),
            Metrics::new(),
        )
        .with_revocations(set.clone());
        let t = support::builtin_token(es256, 1);
        rt.block_on(verifier.verify(&t)).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(name), &t, |b, t| {
            b.iter(|| rt.block_on(verifier.verify(t)).unwrap())
        });
        if entries > 0 {
            // Each iteration changes the set first: the hit then checks the
            // token against it again (and the insert is measured with it).
            let mut n = 0u64;
            g.bench_with_input(BenchmarkId::new("changed", name), &t, |b, t| {
                b.iter(|| {
                    n += 1;
                    let r = Revocation {
                        kind: Kind::Jti,
                        value: format!("more-{n}"),
                        issued_before: now,
                        until: now + 3600,
                    };
                    set.insert(&[r], now);
                    rt.block_on(verifier.verify(t)).unwrap()
                })
            });
        }
    }
    g.finish();
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

criterion_group!(
    benches,
    bench_verify,
    bench_revocations,
    bench_routes,
    bench_request
);
criterion_main!(benches);
