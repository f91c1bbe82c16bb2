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

/// The built-in issuer's URL in [`builtin_config`].
const BUILTIN: &str = "https://builtin.bench";

/// A gateway configuration with the built-in issuer and a foreign issuer
/// ([`support::ISSUER`], keys from `jwks`).
fn builtin_config(jwks: &Path) -> Config {
    let yaml = format!(
        r#"issuer:
  url: "{BUILTIN}"
  database: "sqlite::memory:"
  signing_algs: [ES256]
issuers:
  - id: local
    builtin: true
    audiences: ["{aud}"]
  - id: foreign
    issuer: "{foreign}"
    jwks_file: "{jwks}"
    audiences: ["{aud}"]
upstreams:
  api: {{ url: "http://127.0.0.1:1" }}
routes:
  - path: /*
    upstream: api
"#,
        aud = support::AUDIENCE,
        foreign = support::ISSUER,
        jwks = jwks.display(),
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

/// Polls a verification once: a cache hit completes without waiting, so
/// this measures the hit itself, without a runtime's `block_on` around it.
fn hit(verifier: &Verifier, token: &str) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(verifier.verify(token));
    let polled = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(polled, Poll::Ready(Ok(_))));
}

/// A verified-token cache hit (ES256), polled directly: a foreign issuer's
/// token (which never consults the revocation set), and a built-in token
/// with the set empty and holding 100,000 entries; then the built-in hit
/// right after the set changed (the insert and the re-check: four lookups).
fn bench_revocations(c: &mut Criterion) {
    let signers = signers();
    let es256 = signers.iter().find(|s| s.name == "ES256").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = builtin_config(&write_jwks(dir.path(), &signers));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = support::now();
    let claims: Vec<String> = cfg
        .identity_headers
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let mut g = c.benchmark_group("verify_cached_builtin");
    g.throughput(Throughput::Elements(1));
    for (name, entries) in [
        ("no_set", None),
        ("empty", Some(0)),
        ("100k_revocations", Some(100_000)),
    ] {
        let keys = |i: usize| {
            Arc::new(IssuerKeys::new(
                Arc::new(cfg.issuers[i].clone()),
                http_client(None).unwrap(),
                Metrics::new(),
            ))
        };
        let (builtin, foreign) = (keys(0), keys(1));
        let jwks = serde_json::json!({ "keys": [es256.jwk.clone()] }).to_string();
        builtin.install_jwks(jwks.as_bytes()).unwrap();
        rt.block_on(foreign.refresh()).unwrap();
        let set = Arc::new(RevocationSet::new(1_000_000));
        set.insert(&revocations(entries.unwrap_or(0), now), now);
        let verifier = Verifier::new(
            vec![builtin, foreign],
            claims.clone(),
            Arc::new(SystemClock),
            Metrics::new(),
        );
        // `no_set`: as a gateway without revocation checks would verify.
        let verifier = match entries {
            Some(_) => verifier.with_revocations(set.clone()),
            None => verifier,
        };
        let ours = support::builtin_token(es256, BUILTIN, 1);
        let theirs = token(es256, 2);
        for t in [&ours, &theirs] {
            rt.block_on(verifier.verify(t)).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("foreign", name), &theirs, |b, t| {
            b.iter(|| hit(&verifier, t))
        });
        g.bench_with_input(BenchmarkId::new("builtin", name), &ours, |b, t| {
            b.iter(|| hit(&verifier, t))
        });
        if entries.is_some_and(|n| n > 0) {
            // Each iteration changes the set first: the hit then checks the
            // token against it again (the insert is measured with it).
            let mut n = 0u64;
            g.bench_with_input(BenchmarkId::new("builtin_changed", name), &ours, |b, t| {
                b.iter(|| {
                    n += 1;
                    let r = Revocation {
                        kind: Kind::Jti,
                        value: format!("more-{n}"),
                        issued_before: now,
                        until: now + 3600,
                    };
                    set.insert(&[r], now);
                    hit(&verifier, t)
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
