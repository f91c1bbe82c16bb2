//! The `portcullis` binary: parse arguments, run, exit.

#![forbid(unsafe_code)]

mod cli;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc::tune();
    cli::Cli::parse().run()
}
