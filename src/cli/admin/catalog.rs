//! `portcullis admin api|client|webhook|keys …`: what tokens are issued for
//! and to, where events go (and the events themselves: listed, failed ones
//! redelivered), and the signing keys. A client's or a webhook's secret is
//! printed by the creation or rotation that made it only.

use std::sync::Arc;

use anyhow::Context as _;
use clap::builder::PossibleValuesParser;
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use portcullis::config::value::ParseValue;
use portcullis::config::value::WebhookEvent;
use portcullis::config::{GrantType, IssuerSection};
use portcullis::issuer::manage::views::{
    client_json, event_json, keys_json, rotated_webhook_json, webhook_entry_json, webhook_json,
};
use portcullis::issuer::manage::{self, Actor, ManageError, NewClient, NewWebhook};
use portcullis::issuer::signing::MasterKey;
use portcullis::issuer::store::{EventPosition, EventStatus, ScopeMap, Store};

use super::{Failure, SecretArg};

#[derive(Debug, Subcommand)]
pub(super) enum ApiCommand {
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
pub(super) enum ClientCommand {
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
        /// Whether a confidential client must use PKCE (S256) in the
        /// authorization-code grant (default true; `--require-pkce=false` to
        /// allow codes without it). Public clients always must.
        #[arg(
            long,
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_value_t = true,
            default_missing_value = "true",
            action = clap::ArgAction::Set
        )]
        require_pkce: bool,
        /// The API whose scopes the client may obtain.
        #[arg(long, requires = "scopes")]
        api: Option<String>,
        /// Scopes of `--api` the client may obtain.
        #[arg(long = "scope", num_args = 1.., requires = "api")]
        scopes: Vec<String>,
        /// An API whose access tokens this confidential client may
        /// introspect although issued to other clients (a resource
        /// server's client); repeat for several. Without it, a client
        /// introspects its own tokens only.
        #[arg(long = "introspect", value_name = "API")]
        introspection: Vec<String>,
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
pub(super) enum Grant {
    #[value(name = "client_credentials")]
    ClientCredentials,
    #[value(name = "authorization_code")]
    AuthorizationCode,
    #[value(name = "refresh_token")]
    RefreshToken,
    /// Anonymous users (public clients, with refresh_token).
    #[value(name = "anonymous")]
    Anonymous,
}

#[derive(Debug, Subcommand)]
pub(super) enum WebhookCommand {
    /// Create a webhook; prints its `id` and, this once only, its `secret`.
    Create {
        /// Where events are POSTed (an absolute http:// or https:// URL).
        #[arg(long)]
        url: String,
        /// The events to deliver (repeat the flag or list several); every
        /// event when absent.
        #[arg(long = "event", value_name = "EVENT", num_args = 1.., value_parser = event_names())]
        events: Vec<String>,
        /// A Standard Webhooks secret (`whsec_` and base64 of 24 to 64
        /// bytes); one is generated when absent.
        #[arg(long)]
        secret: Option<SecretArg>,
    },
    /// List the webhooks, those of the configuration (`cfg_…`) and those
    /// created here or through the admin API (`whk_…`), each with its
    /// delivery status (never their secrets).
    List,
    /// Show one webhook and its delivery status.
    Show {
        /// The webhook id (`whk_…` or `cfg_…`).
        id: String,
    },
    /// Delete a webhook: no event is delivered to it any more.
    Delete {
        /// The webhook id.
        id: String,
    },
    /// Give a webhook a new secret; prints it, this once only. The previous
    /// secret signs deliveries too (a second `v1,` signature) for the
    /// overlap, while receivers switch.
    RotateSecret {
        /// The webhook id (`whk_…`; a configured webhook rotates in the
        /// configuration, with `previous_secret`).
        id: String,
        /// How long the previous secret still signs: `0s` (not at all) to
        /// `30d`.
        #[arg(long, default_value = "24h", value_parser = overlap)]
        overlap: i64,
    },
    /// List the events of the outbox, newest first (JSON array); when more
    /// follow, the `--cursor` of the next page is printed on stderr.
    Events {
        /// Only the failed events (dead letters: their attempts ran out).
        #[arg(long, conflicts_with = "status")]
        failed: bool,
        /// Only the events in this state.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// The most events to print (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Where to start: the cursor a previous page named.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Deliver a failed event again to the webhooks it did not reach (or to
    /// one of them); no webhook gets it twice. Prints the event, pending
    /// again.
    Redeliver {
        /// The event id (`evt_…`).
        event_id: String,
        /// Only to this webhook (`whk_…` or `cfg_…`).
        #[arg(long)]
        webhook: Option<String>,
    },
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Status {
    /// Waiting for a delivery or a retry.
    Pending,
    /// Every webhook that takes it got it.
    Delivered,
    /// Its attempts ran out (a dead letter).
    Failed,
}

/// An overlap as seconds: a duration such as `24h`.
fn overlap(text: &str) -> Result<i64, String> {
    let d = std::time::Duration::parse_value(text)?;
    i64::try_from(d.as_secs()).map_err(|_| "the duration is too long".to_owned())
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Publish a successor for each signing algorithm now; it signs after the
    /// JWKS cache age, and the old key stays published until its tokens expire.
    Rotate,
}

fn event_names() -> PossibleValuesParser {
    PossibleValuesParser::new(WebhookEvent::ALL.map(WebhookEvent::as_str))
}

// === impl ApiCommand ===

impl ApiCommand {
    pub(super) async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            ApiCommand::Create { identifier, scopes } => {
                let api = manage::create_api(db, actor, &identifier, scopes).await?;
                Ok(json!({ "identifier": api.identifier, "scopes": api.scopes }))
            }
        }
    }
}

// === impl ClientCommand ===

impl ClientCommand {
    pub(super) async fn execute(self, db: &dyn Store, actor: Actor<'_>) -> Result<Value, Failure> {
        match self {
            ClientCommand::Create {
                name,
                grant_types,
                redirect_uris,
                public,
                require_pkce,
                api,
                scopes,
                introspection,
            } => {
                let scopes: ScopeMap = api.into_iter().map(|a| (a, scopes.clone())).collect();
                let new = NewClient {
                    name,
                    grant_types: grant_types.into_iter().map(Grant::into_config).collect(),
                    redirect_uris,
                    public,
                    require_pkce,
                    scopes,
                    introspection,
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
            Grant::Anonymous => GrantType::Anonymous,
        }
    }
}

// === impl WebhookCommand ===

impl WebhookCommand {
    pub(super) async fn execute(
        self,
        db: &dyn Store,
        section: &IssuerSection,
        actor: Actor<'_>,
    ) -> Result<Value, Failure> {
        match self {
            WebhookCommand::Create {
                url,
                events,
                secret,
            } => {
                let new = NewWebhook {
                    url,
                    events: (!events.is_empty()).then_some(events),
                    secret: secret.map(SecretArg::expose),
                };
                let master = MasterKey::from_env(&|name| std::env::var(name).ok())
                    .context("PORTCULLIS_MASTER_KEY is unusable")
                    .map_err(Failure::Refused)?;
                if master.is_none() {
                    eprintln!(
                        "portcullis: PORTCULLIS_MASTER_KEY is not set: the webhook secret is stored unencrypted (a gateway started with it set seals it)"
                    );
                }
                let hook = manage::create_webhook(
                    db,
                    actor,
                    &section.webhooks,
                    new,
                    master.as_ref(),
                    &section.webhook_address_policy,
                )
                .await?;
                let mut out = webhook_json(&hook);
                if let Some(map) = out.as_object_mut() {
                    map.insert("secret".into(), Value::String(hook.secret));
                    eprintln!("portcullis: store the webhook secret now: it is not shown again");
                }
                Ok(out)
            }
            WebhookCommand::List => {
                let hooks = manage::list_webhooks(db, &section.webhooks, actor.now).await?;
                Ok(Value::Array(hooks.iter().map(webhook_entry_json).collect()))
            }
            WebhookCommand::Show { id } => {
                let hook = manage::get_webhook(db, &section.webhooks, &id, actor.now).await?;
                Ok(webhook_entry_json(&hook))
            }
            WebhookCommand::Delete { id } => {
                manage::delete_webhook(db, actor, &section.webhooks, &id).await?;
                Ok(json!({ "id": id, "deleted": true }))
            }
            WebhookCommand::RotateSecret { id, overlap } => {
                let master = MasterKey::from_env(&|name| std::env::var(name).ok())
                    .context("PORTCULLIS_MASTER_KEY is unusable")
                    .map_err(Failure::Refused)?;
                let rotated = manage::rotate_webhook_secret(
                    db,
                    actor,
                    &section.webhooks,
                    &id,
                    overlap,
                    master.as_ref(),
                )
                .await?;
                eprintln!("portcullis: store the webhook secret now: it is not shown again");
                Ok(rotated_webhook_json(&rotated))
            }
            WebhookCommand::Events {
                failed,
                status,
                limit,
                cursor,
            } => {
                let status = match (failed, status) {
                    (true, _) => Some(EventStatus::Failed),
                    (false, s) => s.map(EventStatus::from),
                };
                let after = cursor
                    .map(|c| {
                        manage::parse_event_cursor(&c).ok_or_else(|| ManageError::Invalid {
                            field: "cursor",
                            reason: "is not one a previous page named".to_owned(),
                        })
                    })
                    .transpose()?;
                let mut events = manage::list_events(db, status, after.as_ref(), limit + 1).await?;
                if events.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
                    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    if let Some(last) = events.last() {
                        let next = manage::event_cursor(&EventPosition {
                            enqueued_at: last.enqueued_at,
                            id: last.event.id.clone(),
                        });
                        eprintln!("portcullis: more events follow: --cursor {next}");
                    }
                }
                Ok(Value::Array(events.iter().map(event_json).collect()))
            }
            WebhookCommand::Redeliver { event_id, webhook } => {
                let event = manage::redeliver_event(
                    db,
                    actor,
                    &section.webhooks,
                    &event_id,
                    webhook.as_deref(),
                )
                .await?;
                Ok(event_json(&event))
            }
        }
    }
}

// === impl Status ===

impl From<Status> for EventStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => EventStatus::Pending,
            Status::Delivered => EventStatus::Delivered,
            Status::Failed => EventStatus::Failed,
        }
    }
}

// === impl KeysCommand ===

impl KeysCommand {
    pub(super) async fn execute(
        self,
        store: Arc<dyn Store>,
        section: &IssuerSection,
        actor: Actor<'_>,
    ) -> Result<Value, Failure> {
        match self {
            KeysCommand::Rotate => {
                let master = MasterKey::from_env(&|name| std::env::var(name).ok())
                    .context("PORTCULLIS_MASTER_KEY is unusable")
                    .map_err(Failure::Refused)?;
                let report = manage::rotate_keys(store, section, master, actor).await?;
                Ok(keys_json(&report))
            }
        }
    }
}
