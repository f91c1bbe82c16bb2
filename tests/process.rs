//! The running binary's process: on glibc it runs with a fixed
//! `MALLOC_MMAP_THRESHOLD_` (it re-executes itself once at start when the
//! variable is unset), and an operator's value is kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::process::Portcullis;
use support::*;

/// `NAME=value` entries of the process's environment.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

async fn config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let up = closed_port().await;
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n\
             upstreams:\n  api: {{ url: \"http://{up}\" }}\n\
             routes:\n  - path: /*\n    upstream: api\n    auth: anonymous\n"
        ),
    )
    .unwrap();
    path
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_binary_runs_with_a_fixed_mmap_threshold_unless_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir).await;
    let tuned = Portcullis::start(&cfg).await;
    let env = environ(tuned.pid());
    assert!(
        env.contains(&"MALLOC_MMAP_THRESHOLD_=1048576".to_owned()),
        "{env:?}"
    );
    tuned.kill().await;

    let own = Portcullis::start_with_env(&cfg, &[("MALLOC_MMAP_THRESHOLD_", "262144")]).await;
    let env = environ(own.pid());
    assert!(
        env.contains(&"MALLOC_MMAP_THRESHOLD_=262144".to_owned()),
        "{env:?}"
    );
    assert!(!env.contains(&"MALLOC_MMAP_THRESHOLD_=1048576".to_owned()));
    own.kill().await;
}
