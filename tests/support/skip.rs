//! Tests that cannot run on this machine say so — never silently: one line on
//! stderr, written past libtest's output capture so that it shows in a plain
//! `cargo test`, and one line in a log that `tests/zz_skipped.rs` (the last
//! suite cargo runs) sums up in one summary line.

use std::io::Write as _;

/// The log of this build's skips (one line each: cargo's pid, suite, test,
/// reason), read by the summary.
pub const LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped.log");

/// Records that the current test cannot run here, and why.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_owned();
    let suite = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .map(|n| n.rsplit_once('-').map_or(n.clone(), |(s, _)| s.to_owned()))
        .unwrap_or_default();
    // Each line in one write: tests run in parallel threads, and appends of
    // whole small lines do not interleave.
    let shown = format!("portcullis tests: SKIPPED {suite}::{test}: {reason}\n");
    let _ = std::io::stderr().write_all(shown.as_bytes());
    let logged = format!(
        "{}\t{suite}\t{test}\t{reason}\n",
        std::os::unix::process::parent_id()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG)
    {
        let _ = f.write_all(logged.as_bytes());
    }
}
