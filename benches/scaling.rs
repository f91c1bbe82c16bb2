//! How the cost of one request grows with the configuration: scenario a)
//! (an RS256 token, cached after the first request) through the gateway in
//! process, with 1, 100 and 10,000 routes, and with 1 and 20 issuers. The
//! figure is the process's CPU time per request (gateway, client and upstream
//! together, 16 requests in flight), so a change in the gateway's own cost
//! shows as a smaller relative change here. The
//! request always matches the last specific route in file order, and its token
//! comes from the last issuer, so neither a short table nor the first issuer
//! is favoured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/shared.rs"]
mod support;
use support::{AUDIENCE, signers, token_of, write_jwks};

/// `routes` routes in all (fillers of three shapes, then the target and a
/// catch-all) and `issuers` issuers sharing one key set.
fn yaml(jwks: &Path, upstream: &str, routes: usize, issuers: usize) -> String {
    let mut y = String::from(
        "server: { listen: \"127.0.0.1:0\" }\nadmin: { listen: \"127.0.0.1:0\" }\nissuers:\n",
    );
    for k in 0..issuers {
        writeln!(
            y,
            "  - id: bench{k}\n    issuer: \"{}\"\n    jwks_file: \"{}\"\n    audiences: [\"{AUDIENCE}\"]",
            issuer(k),
            jwks.display()
        )
        .unwrap();
    }
    writeln!(y, "upstreams:\n  api: {{ url: \"{upstream}\" }}\nroutes:").unwrap();
    for i in 0..routes.saturating_sub(2) {
        let path = match i % 3 {
            0 => format!("/svc-{i}/*"),
            1 => format!("/v1/svc-{i}/{{id}}/detail"),
            _ => format!("/{{tenant}}/reports-{i}/*"),
        };
        writeln!(
            y,
            "  - path: {path}\n    upstream: api\n    scopes: [read:data]"
        )
        .unwrap();
    }
    y.push_str(
        "  - path: /orgs/{org}/items/*\n    methods: [GET, HEAD]\n    upstream: api\n    scopes: [read:data]\n    org_param: org\n",
    );
    if routes > 1 {
        y.push_str("  - path: /*\n    upstream: api\n    scopes: [read:data]\n");
    }
    y
}

/// Requests in flight at once.
const CONCURRENCY: u64 = 16;

/// CPU time this process has used, on every thread.
fn cpu_time() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn issuer(k: usize) -> String {
    format!("https://issuer{k}.bench")
}

fn bench_scaling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let signers = signers();
    let rs256 = &signers[0];
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path(), &signers);
    let (up, client) = rt.block_on(async { (support::upstream().await, support::client()) });

    let mut g = c.benchmark_group("request_scaling");
    g.throughput(Throughput::Elements(1));
    for (routes, issuers) in [(1, 1), (100, 1), (10_000, 1), (1, 20)] {
        let gw = rt.block_on(support::gateway(&yaml(
            &jwks,
            &format!("http://{up}"),
            routes,
            issuers,
        )));
        let url = format!("http://{}/orgs/org-1/items/1", gw.proxy_addr);
        let auth = format!("Bearer {}", token_of(rs256, &issuer(issuers - 1), 3));
        let id = format!("routes={routes}/issuers={issuers}");
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            // Process CPU time, not wall time: a lone request's wall time is
            // mostly threads waking each other. CONCURRENCY keep-alive clients
            // share the iterations.
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = cpu_time();
                    let mut clients = tokio::task::JoinSet::new();
                    for c in 0..CONCURRENCY {
                        let n = iters / CONCURRENCY + u64::from(c < iters % CONCURRENCY);
                        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
                        clients.spawn(async move {
                            for _ in 0..n {
                                support::get_ok(&client, &url, Some(&auth)).await;
                            }
                        });
                    }
                    while let Some(done) = clients.join_next().await {
                        done.unwrap();
                    }
                    cpu_time() - start
                })
            })
        });
        rt.block_on(gw.shutdown());
    }
    g.finish();
}

criterion_group!(benches, bench_scaling);
criterion_main!(benches);
