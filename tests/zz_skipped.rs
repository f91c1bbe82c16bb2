//! The one summary line of what this `cargo test` could not run here. Cargo
//! runs the integration suites one after another in name order, so this one
//! runs last; it sums up the skips the others recorded in this run (their
//! parent, cargo, is the same process) and prints them past libtest's capture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;

#[test]
fn summary_of_skipped_tests() {
    let me = std::os::unix::process::parent_id().to_string();
    let log = std::fs::read_to_string(support::skip::LOG).unwrap_or_default();
    let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stale = 0usize;
    for line in log.lines() {
        let mut f = line.splitn(4, '\t');
        let (Some(pid), Some(suite), Some(test), Some(reason)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if pid != me {
            stale += 1;
            continue;
        }
        by_reason
            .entry(reason.to_owned())
            .or_default()
            .push(format!("{suite}::{test}"));
    }
    // Earlier runs' lines are of no use any more.
    if stale > 0 {
        let current: String = log
            .lines()
            .filter(|l| l.starts_with(&format!("{me}\t")))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = std::fs::write(support::skip::LOG, current);
    }
    let total: usize = by_reason.values().map(Vec::len).sum();
    let line = if total == 0 {
        "portcullis tests: summary — nothing was skipped".to_owned()
    } else {
        let parts: Vec<String> = by_reason
            .iter()
            .map(|(reason, tests)| format!("{} {reason}", tests.len()))
            .collect();
        format!(
            "portcullis tests: summary — {total} skipped ({})",
            parts.join("; ")
        )
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}
