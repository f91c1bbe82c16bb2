//! The administration service layer shared by `portcullis admin …` and the
//! admin REST API: it validates what an operator asks for, generates ids and
//! client and webhook secrets, hashes client secrets and passwords
//! (argon2id), and writes each
//! change together with its audit entry and webhook event in one
//! [`StoreTx`](super::store::StoreTx). Key rotation is the exception: the key
//! ring writes its keys itself (under the rotation lease), and the audit entry
//! and `key.rotated` event follow in a transaction of their own. No argument
//! parsing and no HTTP live here: callers pass plain values and get records
//! back.

use std::collections::BTreeSet;

use serde_json::json;

use super::hooks::Refusal;
use super::keyring::KeyRingError;
use super::reserved::{ADMIN_SCOPE, admin_resource};
use super::store::{ApiResource, AuditEntry, NewEvent, ScopeMap, Store, StoreError, new_id};
use crate::config::IssuerSection;
use crate::config::value::{absolute_uri, scope_token};

mod anonymous;
mod clients;
mod keys;
mod outbox;
mod tenancy;
mod users;
pub mod views;
mod webhooks;

pub use anonymous::{Promotion, REDACTED_DETAIL, anonymize_user, promote_user};
pub use clients::{CreatedClient, NewClient, create_client, delete_client, list_clients};
pub use keys::{KeyReport, ReportedKey, rotate_keys};
pub use outbox::{event_cursor, get_event, list_events, parse_event_cursor, redeliver_event};
pub use tenancy::{
    MAX_ROLE_NAME_LEN, MIN_PASSWORD_LEN, NewUser, add_member, create_organization, create_role,
    create_user, is_role_name, list_members, list_organizations, list_roles, remove_member,
};
pub use users::{UserChanges, delete_user, get_user, list_users, update_user};
pub use webhooks::{
    DEFAULT_OVERLAP_SECS, MAX_OVERLAP_SECS, NewWebhook, RotatedSecret, WebhookEntry,
    configured_webhook_id, create_webhook, delete_webhook, generate_webhook_secret, get_webhook,
    list_webhooks, list_webhooks_page, rotate_webhook_secret, webhook_secret_context,
};

/// Why an administrative change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// A value is malformed (the caller's fault).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument at fault (`email`, `grant types`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No API resource has this identifier (the caller's fault).
    #[error("unknown api `{0}`")]
    UnknownApi(String),
    /// The API resource does not define this scope (the caller's fault).
    #[error("api `{api}` has no scope `{scope}`")]
    UnknownScope {
        /// The API resource identifier.
        api: String,
        /// The scope it lacks.
        scope: String,
    },
    /// No client has this id (the caller's fault).
    #[error("unknown client `{0}`")]
    UnknownClient(String),
    /// No organization has this id (the caller's fault).
    #[error("unknown organization `{0}`")]
    UnknownOrganization(String),
    /// No user has this id (the caller's fault).
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// No role has this name (the caller's fault).
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    /// No webhook has this id (the caller's fault).
    #[error("unknown webhook `{0}`")]
    UnknownWebhook(String),
    /// The webhook comes from the configuration, and changes there only
    /// (the caller's fault).
    #[error(
        "webhook `{0}` is configured in the configuration file; change it there (a rotation sets `previous_secret`)"
    )]
    ConfiguredWebhook(String),
    /// No event has this id (the caller's fault).
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// The event is not in the state the change needs: redelivering an event
    /// that is not failed, to a webhook that has it (the caller's fault).
    #[error("event `{id}` {state}")]
    EventState {
        /// The event id.
        id: String,
        /// What is in the way.
        state: String,
    },
    /// The user is not a member of the organization (the caller's fault).
    #[error("user `{user}` is not a member of organization `{org}`")]
    NotMember {
        /// The organization id.
        org: String,
        /// The user id.
        user: String,
    },
    /// A record with the same unique key exists (the caller's fault).
    #[error("{0} already exists")]
    Exists(&'static str),
    /// The user is not of the kind the change needs: promoting a user who
    /// is not anonymous, changing an anonymized one (the caller's fault).
    #[error("user `{id}` {state}")]
    UserState {
        /// The user id.
        id: String,
        /// What is in the way (`is not anonymous`, …).
        state: &'static str,
    },
    /// A `user.pre_create` hook denied the user's creation or promotion (the
    /// caller's fault: the reason is for them), or could not be asked and
    /// fails closed (ours).
    #[error("the user was not {what}")]
    UserRefused {
        /// `created` or `promoted`.
        what: &'static str,
        #[source]
        refusal: Refusal,
    },
    /// Another replica holds the key-rotation lease (try again shortly).
    #[error("another replica is rotating the signing keys")]
    RotationBusy,
    /// Hashing a secret or drawing random bytes failed (ours).
    #[error("cannot generate or hash a secret")]
    Crypto,
    /// The signing keys could not be rotated (ours).
    #[error("cannot rotate the signing keys")]
    Keys(#[source] KeyRingError),
    /// The database failed (ours).
    #[error("the issuer database failed")]
    Store(#[source] StoreError),
}

/// Who makes a change, and when: recorded in the audit log and the events.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// `cli`, or the client id of an admin API caller.
    pub name: &'a str,
    /// The time of the change, seconds since the Unix epoch.
    pub now: i64,
}

// === impl ManageError ===

impl ManageError {
    /// Whether the caller asked for something wrong (as opposed to a failure
    /// of ours): the CLI exits 1 for these, the admin API answers 4xx.
    pub fn is_caller_fault(&self) -> bool {
        match self {
            ManageError::Invalid { .. }
            | ManageError::UnknownApi(_)
            | ManageError::UnknownScope { .. }
            | ManageError::UnknownClient(_)
            | ManageError::UnknownOrganization(_)
            | ManageError::UnknownUser(_)
            | ManageError::UnknownRole(_)
            | ManageError::UnknownWebhook(_)
            | ManageError::ConfiguredWebhook(_)
            | ManageError::UnknownEvent(_)
            | ManageError::EventState { .. }
            | ManageError::NotMember { .. }
            | ManageError::Exists(_)
            | ManageError::UserState { .. }
            | ManageError::UserRefused {
                refusal: Refusal::Denied { .. },
                ..
            } => true,
            ManageError::UserRefused {
                refusal: Refusal::Failed { .. },
                ..
            }
            | ManageError::RotationBusy
            | ManageError::Crypto
            | ManageError::Keys(_)
            | ManageError::Store(_) => false,
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ManageError::Exists(what),
            other => ManageError::Store(other),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManageError {
    ManageError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// An audit entry for `action` on `target` by `actor`.
pub(crate) fn audit(
    actor: Actor<'_>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        id: new_id("aud"),
        at: actor.now,
        actor: actor.name.to_owned(),
        action: action.to_owned(),
        target: Some(target.to_owned()),
        detail: detail.to_string(),
    }
}

/// A webhook event named `event`, due now, with `data` as its payload's `data`.
pub fn event(event: &str, now: i64, data: serde_json::Value) -> NewEvent {
    let mut created_at = String::with_capacity(27);
    crate::telemetry::access::rfc3339(&mut created_at, now, 0);
    NewEvent {
        id: new_id("evt"),
        event: event.to_owned(),
        created_at,
        data: data.to_string(),
        due_at: now,
    }
}

/// Checks a list of scopes: valid tokens, no duplicates, at least one.
fn check_scopes(scopes: &[String]) -> Result<(), ManageError> {
    if scopes.is_empty() {
        return Err(invalid("scopes", "at least one scope is required"));
    }
    if let Some(bad) = scopes.iter().find(|s| !scope_token(s)) {
        return Err(invalid(
            "scopes",
            format!("`{bad}` is not a valid scope (printable ASCII without spaces, `\"` or `\\`)"),
        ));
    }
    if scopes.iter().collect::<BTreeSet<_>>().len() != scopes.len() {
        return Err(invalid("scopes", "a scope is listed twice"));
    }
    Ok(())
}

/// Checks that every API in `scopes` exists and defines the scopes named.
async fn check_grants(store: &dyn Store, scopes: &ScopeMap) -> Result<(), ManageError> {
    for (api, wanted) in scopes {
        check_scopes(wanted)?;
        let resource = store
            .get_api_resource(api)
            .await?
            .ok_or_else(|| ManageError::UnknownApi(api.clone()))?;
        if let Some(missing) = wanted.iter().find(|s| !resource.scopes.contains(s)) {
            return Err(ManageError::UnknownScope {
                api: api.clone(),
                scope: missing.clone(),
            });
        }
    }
    Ok(())
}

fn check_name(field: &'static str, name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Creates an API resource (an audience) with its scopes. An existing
/// identifier is refused; the check reads before the transaction (the store
/// only upserts resources), so two creations racing for one identifier may
/// both succeed, the later one's scopes winning.
pub async fn create_api(
    store: &dyn Store,
    actor: Actor<'_>,
    identifier: &str,
    scopes: Vec<String>,
) -> Result<ApiResource, ManageError> {
    absolute_uri(identifier).map_err(|e| invalid("api identifier", e))?;
    check_scopes(&scopes)?;
    if scopes.iter().any(|s| s == ADMIN_SCOPE) {
        return Err(invalid(
            "scopes",
            format!(
                "`{ADMIN_SCOPE}` belongs to the admin API's own resource ({{issuer.url}}/admin/v1), \
                 which the issuer declares itself; no other API may define it"
            ),
        ));
    }
    if store.get_api_resource(identifier).await?.is_some() {
        return Err(ManageError::Exists("api"));
    }
    let resource = ApiResource {
        identifier: identifier.to_owned(),
        scopes,
    };
    let mut tx = store.begin().await?;
    tx.upsert_api_resource(&resource).await?;
    let detail = json!({ "scopes": resource.scopes });
    tx.insert_audit(&audit(actor, "api.created", identifier, detail))
        .await?;
    tx.commit().await?;
    Ok(resource)
}

/// Upserts the `resources:` the configuration declares and the admin API's
/// own resource (`{issuer.url}/admin/v1` with `portcullis:admin`), and takes
/// `portcullis:admin` off any other stored resource (a database from before
/// the admin scope was confined to its resource; logged at `warn`). The
/// issuer does this at start, the CLI before each command, so that commands
/// naming these resources work before any gateway has run on the database.
pub async fn apply_declared_resources(
    store: &dyn Store,
    section: &IssuerSection,
) -> Result<(), ManageError> {
    let admin = admin_resource(&section.url);
    for mut stored in store.list_api_resources().await? {
        if stored.identifier == admin.identifier || !stored.scopes.iter().any(|s| s == ADMIN_SCOPE)
        {
            continue;
        }
        tracing::warn!(
            api = %stored.identifier,
            admin_api = %admin.identifier,
            "An API defined the admin scope; it now belongs to the admin API's resource only and was removed"
        );
        stored.scopes.retain(|s| s != ADMIN_SCOPE);
        store.upsert_api_resource(&stored).await?;
    }
    for r in &section.resources {
        store
            .upsert_api_resource(&ApiResource {
                identifier: r.identifier.clone(),
                scopes: r.scopes.clone(),
            })
            .await?;
    }
    store.upsert_api_resource(&admin).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
