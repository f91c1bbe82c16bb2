//! `portcullis admin …`: the arguments of each administrative command, and its
//! JSON on stdout. Validation, ids, hashing, audit entries and events are
//! `portcullis::issuer::manage`'s; this module parses and prints. Exit codes:
//! 1 for a refused request (an unknown id or reference, an invalid value, a
//! duplicate, no `issuer:` section), 2 for bad arguments (clap), 3 for a
//! failure of ours. This file holds the command tree's root and the run;
//! [`catalog`] the API, client, webhook and key commands, [`tenancy`] the
//! organization, user, role and member commands.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{Config, IssuerSection};
use portcullis::issuer::hooks::Hooks;
use portcullis::issuer::manage::{self, Actor, ManageError};
use portcullis::issuer::store::{self, Store};

use super::{EXIT_CONFIG, EXIT_RUNTIME};

mod catalog;
mod tenancy;

use catalog::{ApiCommand, ClientCommand, KeysCommand, WebhookCommand};
use tenancy::{MemberCommand, OrgCommand, RoleCommand, UserCommand};

/// The actor recorded in the audit log for every CLI change.
const ACTOR: &str = "cli";

/// Manage the built-in issuer's database (`issuer.database`).
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// API resources: the audiences tokens are issued for, and their scopes.
    #[command(subcommand)]
    Api(ApiCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Organizations (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// Users who log in.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles: names that grant scopes of an API.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Memberships of users in organizations.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Webhooks that receive the issuer's events (besides those of the
    /// configuration's `issuer.webhooks`).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The issuer's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// A secret given as an argument (`--password`, `--secret`). Its `Debug`
/// shows nothing, so printing the parsed arguments never prints it.
#[derive(Clone)]
pub(super) struct SecretArg(String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SecretArg {
    /// The secret itself, to hash or store; never print it.
    pub(super) fn expose(self) -> String {
        self.0
    }
}

/// Why a command did not succeed, and so its exit code.
enum Failure {
    /// The request was refused: exit 1.
    Refused(anyhow::Error),
    /// Our failure: exit 3.
    Runtime(anyhow::Error),
}

// === impl AdminArgs ===

impl AdminArgs {
    /// Runs the command on the database of `config`'s `issuer:` section and
    /// returns the exit code.
    pub fn run(self, config: Config) -> ExitCode {
        let Some(section) = config.issuer else {
            eprintln!(
                "portcullis: {} has no `issuer:` section; admin commands work on the built-in issuer's database",
                config.source.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        };
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .map_err(Failure::Runtime)
            .and_then(|rt| rt.block_on(self.command.execute(&section)));
        match result {
            Ok(out) => {
                use std::io::Write as _;
                // A closed pipe (`| head`) is not a failure of the change made.
                let _ = writeln!(std::io::stdout().lock(), "{out:#}");
                ExitCode::SUCCESS
            }
            Err(Failure::Refused(e)) => {
                eprintln!("portcullis: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(Failure::Runtime(e)) => {
                eprintln!("portcullis: {e:#}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}

impl From<ManageError> for Failure {
    fn from(e: ManageError) -> Self {
        match e.is_caller_fault() {
            true => Failure::Refused(e.into()),
            false => Failure::Runtime(e.into()),
        }
    }
}

// === impl AdminCommand ===

impl AdminCommand {
    async fn execute(self, section: &IssuerSection) -> Result<Value, Failure> {
        let store = store::open(&section.database)
            .await
            .context("cannot open the issuer database")
            .map_err(Failure::Runtime)?;
        manage::apply_declared_resources(store.as_ref(), section).await?;
        let actor = Actor {
            name: ACTOR,
            now: SystemClock.now_unix(),
        };
        let out = self.dispatch(store.clone(), section, actor).await;
        store.close().await;
        out
    }

    async fn dispatch(
        self,
        store: Arc<dyn Store>,
        section: &IssuerSection,
        actor: Actor<'_>,
    ) -> Result<Value, Failure> {
        let db = store.as_ref();
        match self {
            AdminCommand::Api(command) => command.execute(db, actor).await,
            AdminCommand::Client(command) => command.execute(db, actor).await,
            AdminCommand::Org(command) => command.execute(db, actor).await,
            AdminCommand::User(command) => {
                // The `user.pre_create` hooks guard `user create` here as
                // they do the admin API.
                let hooks = Hooks::new(section, Arc::new(SystemClock))
                    .context("cannot set up the blocking hooks' client")
                    .map_err(Failure::Runtime)?;
                command.execute(db, &hooks, actor).await
            }
            AdminCommand::Role(command) => command.execute(db, actor).await,
            AdminCommand::Member(command) => command.execute(db, actor).await,
            AdminCommand::Webhook(command) => command.execute(db, section, actor).await,
            AdminCommand::Keys(command) => command.execute(store, section, actor).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use crate::cli::Cli;

    #[test]
    fn parsed_arguments_never_show_a_secret() {
        for args in [
            &[
                "portcullis",
                "admin",
                "user",
                "create",
                "--email",
                "a@b.test",
                "--password",
                "pw-secret-0123",
                "--name",
                "A",
            ][..],
            &[
                "portcullis",
                "admin",
                "user",
                "update",
                "usr_1",
                "--password",
                "pw-secret-0123",
            ][..],
            &[
                "portcullis",
                "admin",
                "user",
                "promote",
                "usr_1",
                "--email",
                "a@b.test",
                "--password",
                "pw-secret-0123",
            ][..],
            &[
                "portcullis",
                "admin",
                "webhook",
                "create",
                "--url",
                "https://h.test/",
                "--secret",
                "whsec_pw-secret-0123",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let shown = format!("{cli:?} {cli:#?}");
            assert!(!shown.contains("pw-secret-0123"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
