//! `portcullis admin org|user|role|member …`: organizations, users, roles
//! and memberships. A password comes from `--password` or, kept out of the
//! process list and shell history, from standard input (`--password-stdin`);
//! it is never printed.

use std::io::Read as _;

use anyhow::Context as _;
use clap::{ArgGroup, Subcommand};
use serde_json::{Value, json};

use portcullis::issuer::hooks::Hooks;
use portcullis::issuer::manage::views::{
    membership_json, organization_json, role_json, time, user_detail_json, user_json,
};
use portcullis::issuer::manage::{self, Actor, NewUser, Promotion, UserChanges};
use portcullis::issuer::store::Store;

use super::{Failure, SecretArg};

#[derive(Debug, Subcommand)]
pub(super) enum OrgCommand {
    /// Create an organization; prints its `id`.
    Create {
        /// The display name.
        #[arg(long)]
        name: String,
    },
    /// List the organizations.
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Create a user; prints their `id`.
    #[command(group(ArgGroup::new("secret").required(true).args(["password", "password_stdin"])))]
    Create {
        /// The email address (unique in any letter case).
        #[arg(long)]
        email: String,
        /// The password (stored as an argon2id hash).
        #[arg(long)]
        password: Option<SecretArg>,
        /// Read the password from standard input (one trailing newline is
        /// dropped) instead of `--password`.
        #[arg(long)]
        password_stdin: bool,
        /// The full name.
        #[arg(long)]
        name: String,
    },
    /// List the users (never their password hashes).
    List,
    /// Show a user with their memberships.
    Show {
        /// The user id.
        id: String,
    },
    /// Change a user's profile or password; prints the user. A new password
    /// revokes the user's refresh tokens.
    #[command(group(ArgGroup::new("secret").args(["password", "password_stdin"])))]
    #[command(group(
        ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["name", "email", "picture", "email_verified", "password", "password_stdin"])
    ))]
    Update {
        /// The user id.
        id: String,
        /// A new full name.
        #[arg(long)]
        name: Option<String>,
        /// A new email address; it is unverified unless `--email-verified
        /// true` is given too.
        #[arg(long)]
        email: Option<String>,
        /// A new picture URL (http or https); an empty value removes it.
        #[arg(long)]
        picture: Option<String>,
        /// Whether the email address is verified.
        #[arg(long, value_name = "true|false")]
        email_verified: Option<bool>,
        /// A new password (stored as an argon2id hash).
        #[arg(long)]
        password: Option<SecretArg>,
        /// Read the new password from standard input (one trailing newline
        /// is dropped) instead of `--password`.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user with their memberships and refresh tokens.
    Delete {
        /// The user id.
        id: String,
    },
    /// Turn an anonymous user into a normal user with the same id (and
    /// `sub`), who can then sign in with the email; prints the user.
    #[command(group(ArgGroup::new("secret").required(true).args(["password", "password_stdin"])))]
    Promote {
        /// The id of the anonymous user.
        id: String,
        /// The email address (unique in any letter case).
        #[arg(long)]
        email: String,
        /// The password (stored as an argon2id hash).
        #[arg(long)]
        password: Option<SecretArg>,
        /// Read the password from standard input (one trailing newline is
        /// dropped) instead of `--password`.
        #[arg(long)]
        password_stdin: bool,
        /// The full name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Erase a user's personal data (email, name, picture, password) and
    /// keep the id; revokes their refresh tokens and ends their sessions and
    /// memberships, so they never sign in again. Prints the user.
    Anonymize {
        /// The user id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum RoleCommand {
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
    /// List the roles with the scopes they grant.
    List,
}

#[derive(Debug, Subcommand)]
pub(super) enum MemberCommand {
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
    /// List the members of an organization with their roles.
    List {
        /// The organization id.
        #[arg(long)]
        org: String,
    },
    /// Remove a user from an organization.
    Remove {
        /// The organization id.
        #[arg(long)]
        org: String,
        /// The user id.
        #[arg(long)]
        user: String,
    },
}

/// The password of `--password`, or of standard input with `--password-stdin`
/// (clap lets at most one through).
fn password(flag: Option<SecretArg>, stdin: bool) -> Result<Option<String>, Failure> {
    if !stdin {
        return Ok(flag.map(SecretArg::expose));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from standard input")
        .map_err(Failure::Refused)?;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(Some(trimmed.to_owned()))
}

// === impl OrgCommand ===

impl OrgCommand {
    pub(super) async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            OrgCommand::Create { name } => {
                let org = manage::create_organization(db, actor, &name).await?;
                Ok(organization_json(&org))
            }
            OrgCommand::List => {
                let orgs = manage::list_organizations(db).await?;
                Ok(Value::Array(orgs.iter().map(organization_json).collect()))
            }
        }
    }
}

// === impl UserCommand ===

impl UserCommand {
    pub(super) async fn execute(
        self,
        db: &dyn Store,
        hooks: &Hooks,
        actor: Actor<'_>,
    ) -> Result<Value, Failure> {
        match self {
            UserCommand::Create {
                email,
                password: flag,
                password_stdin,
                name,
            } => {
                let password = password(flag, password_stdin)?.unwrap_or_default();
                let new = NewUser {
                    email,
                    password,
                    name,
                };
                let user = manage::create_user(db, hooks, actor, new).await?;
                Ok(json!({
                    "id": user.id,
                    "email": user.email,
                    "name": user.name,
                    "created_at": time(user.created_at),
                }))
            }
            UserCommand::List => {
                let users = manage::list_users(db).await?;
                Ok(Value::Array(users.iter().map(user_json).collect()))
            }
            UserCommand::Show { id } => {
                let user = manage::get_user(db, &id).await?;
                let memberships = db
                    .list_memberships_of_user(&id)
                    .await
                    .context("cannot read the user's memberships")
                    .map_err(Failure::Runtime)?;
                Ok(user_detail_json(&user, &memberships))
            }
            UserCommand::Update {
                id,
                name,
                email,
                picture,
                email_verified,
                password: flag,
                password_stdin,
            } => {
                let changes = UserChanges {
                    name,
                    email,
                    picture: picture.map(|p| (!p.is_empty()).then_some(p)),
                    email_verified,
                    password: password(flag, password_stdin)?,
                };
                let user = manage::update_user(db, actor, &id, changes).await?;
                Ok(user_json(&user))
            }
            UserCommand::Delete { id } => {
                manage::delete_user(db, actor, &id).await?;
                Ok(json!({ "id": id, "deleted": true }))
            }
            UserCommand::Promote {
                id,
                email,
                password: flag,
                password_stdin,
                name,
            } => {
                let promotion = Promotion {
                    email,
                    password: password(flag, password_stdin)?.unwrap_or_default(),
                    name,
                };
                let user = manage::promote_user(db, hooks, actor, &id, promotion).await?;
                Ok(user_json(&user))
            }
            UserCommand::Anonymize { id } => {
                let user = manage::anonymize_user(db, actor, &id).await?;
                Ok(user_json(&user))
            }
        }
    }
}

// === impl RoleCommand ===

impl RoleCommand {
    pub(super) async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            RoleCommand::Create { name, api, scopes } => {
                let role = manage::create_role(db, actor, &name, &api, scopes).await?;
                Ok(json!({ "name": role.name, "grants": role.grants }))
            }
            RoleCommand::List => {
                let roles = manage::list_roles(db).await?;
                Ok(Value::Array(roles.iter().map(role_json).collect()))
            }
        }
    }
}

// === impl MemberCommand ===

impl MemberCommand {
    pub(super) async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            MemberCommand::Add { org, user, roles } => {
                let m = manage::add_member(db, actor, &org, &user, roles).await?;
                Ok(membership_json(&m))
            }
            MemberCommand::List { org } => {
                let members = manage::list_members(db, &org).await?;
                Ok(Value::Array(members.iter().map(membership_json).collect()))
            }
            MemberCommand::Remove { org, user } => {
                manage::remove_member(db, actor, &org, &user).await?;
                Ok(json!({ "org_id": org, "user_id": user, "deleted": true }))
            }
        }
    }
}
