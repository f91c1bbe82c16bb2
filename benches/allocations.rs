//! Heap allocations per request: the gateway's own, without the client's and
//! the upstream's. Counts every allocation in the process (dhat's global
//! allocator) over N keep-alive requests through the gateway in process, and
//! subtracts N requests sent by the same client straight to the same upstream.
//!
//! Run: `cargo bench --bench allocations`. Prints one line per case; not timed.
//! `ALLOCATIONS_PROFILE=dhat.json cargo bench --bench allocations` also writes
//! where each allocation came from.
//! The difference still holds what the upstream allocates for the headers the
//! gateway adds (identity and forwarding headers grow its header map).
//! The JSON access log is not on here (no subscriber is installed): in the
//! binary it formats into a per-thread buffer that is reused, so it adds no
//! allocation per line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/shared.rs"]
mod support;
use support::{Client, signers, token, write_jwks};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const WARM_UP: u64 = 500;
const N: u64 = 5_000;

async fn requests(client: &Client, url: &str, auth: Option<&str>, n: u64) {
    for _ in 0..n {
        support::get_ok(client, url, auth).await;
    }
}

/// Allocations and bytes per request over `N` requests, after a warm-up.
async fn count(client: &Client, url: &str, auth: Option<&str>) -> (f64, f64) {
    requests(client, url, auth, WARM_UP).await;
    let before = dhat::HeapStats::get();
    requests(client, url, auth, N).await;
    let after = dhat::HeapStats::get();
    (
        (after.total_blocks - before.total_blocks) as f64 / N as f64,
        (after.total_bytes - before.total_bytes) as f64 / N as f64,
    )
}

fn main() {
    // With ALLOCATIONS_PROFILE=FILE, every allocation site is written to FILE
    // (dhat's JSON, for its viewer or a script) as well.
    let _profiler = match std::env::var_os("ALLOCATIONS_PROFILE") {
        Some(file) => dhat::Profiler::builder()
            .file_name(file)
            .trim_backtraces(Some(30))
            .build(),
        None => dhat::Profiler::builder().testing().build(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signers = signers();
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path(), &signers);
    rt.block_on(async {
        let up = support::upstream().await;
        let gw = support::gateway(&support::gateway_yaml(&jwks, &format!("http://{up}"), Some(1))).await;
        let client = support::client();

        let mut cases = vec![(
            "anonymous route".to_owned(),
            format!("http://{}/public/x", gw.proxy_addr),
            None,
        )];
        for s in &signers {
            cases.push((
                format!("{} token (cached)", s.name),
                format!("http://{}/orgs/org-1/items/1", gw.proxy_addr),
                Some(format!("Bearer {}", token(s, 1))),
            ));
        }
        for (name, url, auth) in cases {
            // The same request straight to the upstream: what the client and
            // the upstream allocate for it, subtracted.
            let (base, base_bytes) = count(&client, &format!("http://{up}/x"), auth.as_deref()).await;
            let (n, bytes) = count(&client, &url, auth.as_deref()).await;
            println!(
                "gateway, {name}: {:.1} allocations, {:.0} bytes per request (client + upstream alone: {base:.1}, {base_bytes:.0} bytes)",
                n - base,
                bytes - base_bytes
            );
        }
        // What one verified token keeps in the cache: heap in use after
        // verifying 1,000 distinct tokens (within the default budget), per token.
        let verifier = gw.snapshot().verifier.clone();
        let mint = |from: u64, n: u64| -> Vec<String> {
            (from..from + n).map(|i| token(&signers[1], i)).collect()
        };
        let tokens = mint(1_000, 1_000);
        let before = dhat::HeapStats::get();
        for t in &tokens {
            verifier.verify(t).await.unwrap();
        }
        verifier.run_pending_tasks();
        let after = dhat::HeapStats::get();
        println!(
            "verified-token cache: {:.0} bytes, {:.1} blocks kept per token",
            (after.curr_bytes as f64 - before.curr_bytes as f64) / tokens.len() as f64,
            (after.curr_blocks as f64 - before.curr_blocks as f64) / tokens.len() as f64,
        );
        // Then 20,000 more: the cache stays within its budget.
        for t in mint(10_000, 20_000) {
            verifier.verify(&t).await.unwrap();
        }
        verifier.run_pending_tasks();
        let (entries, weight) = verifier.cache_usage();
        let end = dhat::HeapStats::get();
        println!(
            "after 21,000 distinct tokens: {entries} cached, weighing {weight} bytes; heap in use grew {:.1} MiB since the first 1,000",
            (end.curr_bytes as f64 - after.curr_bytes as f64) / f64::from(1 << 20),
        );
        gw.shutdown().await;
    });
}
