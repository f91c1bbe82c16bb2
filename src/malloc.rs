//! glibc's allocator keeps a large block that was freed (an argon2
//! verification takes 7 MiB, for every client secret or password it checks)
//! in the arena of the thread that freed it, once its dynamic mmap threshold
//! has grown past that size: the issuer's resident memory then grew by 7 MiB
//! per thread that ever ran argon2. A fixed `MALLOC_MMAP_THRESHOLD_` makes such
//! blocks their own mappings, returned to the system when freed (measured: the
//! issuer's peak 35 → 22 MiB, same throughput; benches/RESULTS.md).
//!
//! glibc reads the variable only when the process starts, so when it is unset
//! the binary executes itself once more with it set: same PID, arguments,
//! descriptors and environment otherwise. A value set by the operator (any
//! value) is left alone; if re-executing fails, the process carries on as it
//! is.

use std::os::unix::process::CommandExt as _;

/// The glibc tunable, and the value used when the operator sets none.
const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
const THRESHOLD: &str = "1048576";

/// Re-executes the binary with [`VAR`] set, unless it is set already.
pub fn tune() {
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).env(VAR, THRESHOLD);
    // Returns only when the exec failed: carry on untuned.
    let _failed = cmd.exec();
}
