//! `portcullis admin …`: the arguments of each administrative command, and its
//! JSON on stdout. Validation, ids, hashing, audit entries and events are
//! `portcullis::issuer::manage`'s; this file parses and prints. Exit codes: 1
//! for a refused request (an unknown reference, an invalid value, a duplicate,
//! no `issuer:` section), 2 for bad arguments (clap), 3 for a failure of ours.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{Config, GrantType, IssuerSection};
use portcullis::issuer::manage::views::{client_json, keys_json, time};
use portcullis::issuer::manage::{self, Actor, ManageError, NewClient, NewUser};
use portcullis::issuer::signing::MasterKey;
use portcullis::issuer::store::{self, ScopeMap, Store};

use super::{EXIT_CONFIG, EXIT_RUNTIME};

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
    /// The issuer's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Create an API resource; prints it.
    Create {
        /// The audience URL (an absolute URI); becomes `aud`.
        #[arg(long)]
        identifier: String,
        /// The scopes the API defines (repeat the flag or list several).
        #[arg(long = "scope", required = true, num_args = 1..)]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Create a client; prints its `client_id` and, this once only, its
    /// `client_secret`.
    Create {
        /// A human-readable name.
        #[arg(long)]
        name: String,
        /// The grants the client may use.
        #[arg(long = "grant-type", required = true, num_args = 1..)]
        grant_types: Vec<Grant>,
        /// Redirect URIs, matched exactly (needed for authorization_code).
        #[arg(long = "redirect-uri", num_args = 1..)]
        redirect_uris: Vec<String>,
        /// A public client: no secret, PKCE always.
        #[arg(long)]
        public: bool,
        /// The API whose scopes the client may obtain.
        #[arg(long, requires = "scopes")]
        api: Option<String>,
        /// Scopes of `--api` the client may obtain.
        #[arg(long = "scope", num_args = 1.., requires = "api")]
        scopes: Vec<String>,
    },
    /// List the clients (never their secrets or hashes).
    List,
    /// Delete a client with its codes and refresh tokens.
    Delete {
        /// The client id.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Grant {
    #[value(name = "client_credentials")]
    ClientCredentials,
    #[value(name = "authorization_code")]
    AuthorizationCode,
    #[value(name = "refresh_token")]
    RefreshToken,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization; prints its `id`.
    Create {
        /// The display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; prints their `id`.
    Create {
        /// The email address (unique in any letter case).
        #[arg(long)]
        email: String,
        /// The password (stored as an argon2id hash).
        #[arg(long)]
        password: String,
        /// The full name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Create a role granting scopes of one API.
    Create {
        /// The role name, as it appears in `roles`.
        #[arg(long)]
        name: String,
        /// The API whose scopes the role grants.
        #[arg(long)]
        api: String,
        /// The scopes granted.
        #[arg(long = "scope", required = true, num_args = 1..)]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Add a user to an organization with roles (or replace their roles).
    Add {
        /// The organization id.
        #[arg(long)]
        org: String,
        /// The user id.
        #[arg(long)]
        user: String,
        /// Role names.
        #[arg(long = "role", required = true, num_args = 1..)]
        roles: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Publish a successor for each signing algorithm now; it signs after the
    /// JWKS cache age, and the old key stays published until its tokens expire.
    Rotate,
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
            AdminCommand::Api(ApiCommand::Create { identifier, scopes }) => {
                let api = manage::create_api(db, actor, &identifier, scopes).await?;
                Ok(json!({ "identifier": api.identifier, "scopes": api.scopes }))
            }
            AdminCommand::Client(command) => command.execute(db, actor).await,
            AdminCommand::Org(OrgCommand::Create { name }) => {
                let org = manage::create_organization(db, actor, &name).await?;
                Ok(json!({ "id": org.id, "name": org.name, "created_at": time(org.created_at) }))
            }
            AdminCommand::User(UserCommand::Create {
                email,
                password,
                name,
            }) => {
                let new = NewUser {
                    email,
                    password,
                    name,
                };
                let user = manage::create_user(db, actor, new).await?;
                Ok(json!({
                    "id": user.id,
                    "email": user.email,
                    "name": user.name,
                    "created_at": time(user.created_at),
                }))
            }
            AdminCommand::Role(RoleCommand::Create { name, api, scopes }) => {
                let role = manage::create_role(db, actor, &name, &api, scopes).await?;
                Ok(json!({ "name": role.name, "grants": role.grants }))
            }
            AdminCommand::Member(MemberCommand::Add { org, user, roles }) => {
                let m = manage::add_member(db, actor, &org, &user, roles).await?;
                Ok(json!({
                    "org_id": m.org_id,
                    "user_id": m.user_id,
                    "roles": m.roles,
                    "created_at": time(m.created_at),
                }))
            }
            AdminCommand::Keys(KeysCommand::Rotate) => {
                let master = MasterKey::from_env(&|name| std::env::var(name).ok())
                    .context("PORTCULLIS_MASTER_KEY is unusable")
                    .map_err(Failure::Refused)?;
                let report = manage::rotate_keys(store.clone(), section, master, actor).await?;
                Ok(keys_json(&report))
            }
        }
    }
}

// === impl ClientCommand ===

impl ClientCommand {
    async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            ClientCommand::Create {
                name,
                grant_types,
                redirect_uris,
                public,
                api,
                scopes,
            } => {
                let scopes: ScopeMap = api.into_iter().map(|a| (a, scopes.clone())).collect();
                let new = NewClient {
                    name,
                    grant_types: grant_types.into_iter().map(Grant::into_config).collect(),
                    redirect_uris,
                    public,
                    scopes,
                };
                let created = manage::create_client(db, actor, new).await?;
                let mut out = client_json(&created.client);
                if let (Some(secret), Some(map)) = (created.secret, out.as_object_mut()) {
                    map.insert("client_secret".into(), Value::String(secret));
                    eprintln!("portcullis: store the client_secret now: it is not shown again");
                }
                Ok(out)
            }
            ClientCommand::List => {
                let clients = manage::list_clients(db).await?;
                Ok(Value::Array(clients.iter().map(client_json).collect()))
            }
            ClientCommand::Delete { id } => {
                manage::delete_client(db, actor, &id).await?;
                Ok(json!({ "client_id": id, "deleted": true }))
            }
        }
    }
}

// === impl Grant ===

impl Grant {
    fn into_config(self) -> GrantType {
        match self {
            Grant::ClientCredentials => GrantType::ClientCredentials,
            Grant::AuthorizationCode => GrantType::AuthorizationCode,
            Grant::RefreshToken => GrantType::RefreshToken,
        }
    }
}
