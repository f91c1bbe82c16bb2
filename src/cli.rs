//! Command-line arguments, the `check` report, and exit codes: 0 success, 1 an
//! invalid configuration (or a refused `admin` request), 2 a usage error
//! (clap), 3 a runtime failure. The `admin` commands live in `cli/admin.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use portcullis::config::{AuthMode, Config, DEFAULT_PATH};
use portcullis::server::{self, Options};
use portcullis::telemetry::access::AccessLog;
use portcullis::telemetry::{self, LogFormat};

mod admin;

/// A token-validating reverse proxy and API gateway.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (default: $PORTCULLIS_CONFIG, then ./gateway.yaml).
    #[arg(short, long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stdout.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        default_value = "json"
    )]
    log_format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway (the default when no command is given).
    Run,
    /// Validate the configuration and print the route table.
    Check,
    /// Manage the built-in issuer: APIs, clients, organizations, users,
    /// roles, memberships and signing keys. Prints JSON.
    Admin(admin::AdminArgs),
}

const EXIT_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 3;

impl Cli {
    /// Runs the chosen command and returns the process exit code.
    pub fn run(self) -> ExitCode {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "portcullis: {} is not valid ({} error(s))",
                    path.display(),
                    errors.errors().len()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        match self.command.unwrap_or(Command::Run) {
            Command::Check => {
                print!("{}", route_table(&config));
                ExitCode::SUCCESS
            }
            Command::Admin(args) => args.run(config),
            Command::Run => {
                let format = match self.log_format {
                    Format::Json => LogFormat::Json,
                    Format::Text => LogFormat::Text,
                };
                let logging = telemetry::init(format);
                match serve(config, logging.access.clone()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "Gateway failed");
                        eprintln!("portcullis: {e:#}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                }
            }
        }
    }
}

fn serve(config: Config, access_log: AccessLog) -> anyhow::Result<()> {
    // The control runtime: signals, key refreshes, the admin listener and the
    // built-in issuer's endpoints (database and signing work, spread over its
    // threads). Proxied requests are served by the worker threads that
    // `server::start` creates, each with an event loop of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("portcullis-control")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = server::start(
            config,
            Options {
                access_log,
                // A change of the file (or a TLS file it names) reloads; so does SIGHUP.
                watch_interval: Some(std::time::Duration::from_secs(1)),
                ..Options::default()
            },
        )
        .await
        .context("cannot start")?;
        wait_for_signal().await?;
        tracing::info!("Shutting down: draining in-flight requests");
        running.shutdown().await;
        tracing::info!("Stopped");
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The human-readable route table printed by `check`.
pub fn route_table(c: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}: valid\n", c.source.display());
    let _ = writeln!(out, "listen {}", c.server.listen);
    if let Some(a) = &c.admin {
        let _ = writeln!(out, "admin  {}", a.listen);
    }
    for i in &c.issuers {
        let _ = writeln!(
            out,
            "issuer {} ({}) audiences: {}",
            i.id,
            i.issuer,
            i.audiences.join(", ")
        );
    }
    let _ = writeln!(out, "routes (first match wins):");
    for (n, r) in c.routes.iter().enumerate() {
        let methods = r
            .methods
            .as_ref()
            .map(|m| m.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "*".to_owned());
        let auth = match r.auth {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::Anonymous => "anonymous",
        };
        let mut needs = Vec::new();
        if !r.scopes.is_empty() {
            needs.push(format!("scopes={}", r.scopes.join(" ")));
        }
        if !r.any_scopes.is_empty() {
            needs.push(format!("any_scopes={}", r.any_scopes.join(" ")));
        }
        if !r.roles.is_empty() {
            needs.push(format!("roles={}", r.roles.join(",")));
        }
        if let Some(p) = &r.org_param {
            needs.push(format!("org_param={p}"));
        }
        if let Some(iss) = &r.issuers {
            let ids: Vec<_> = iss.iter().map(|i| c.issuers[*i].id.as_str()).collect();
            needs.push(format!("issuers={}", ids.join(",")));
        }
        let _ = writeln!(
            out,
            "  {n:>2}. {methods:<10} {:<30} -> {:<10} auth={auth} {}",
            r.path,
            c.upstreams[r.upstream].name,
            needs.join(" ")
        );
    }
    out
}
