//! What happens to users who are not (or no longer) normal users: the
//! promotion of an anonymous user to a normal one, and the anonymization of
//! any user (erasure of their personal data, their id kept). Each change
//! commits with its audit entry and its event (`user.anonymous.promoted`,
//! `user.anonymized`). Anonymous users are created by the anonymous grant
//! (`issuer::anonymous`), not here.

use serde_json::json;

use super::tenancy::{check_email, check_password};
use super::users::get_user;
use super::{Actor, ManageError, audit, check_name, event};
use crate::issuer::clients::hash_secret;
use crate::issuer::hooks::{Hooks, PreCreate};
use crate::issuer::store::{Redacted, Store, User};

/// What the audit entries about an anonymized user say instead of their
/// detail.
pub const REDACTED_DETAIL: &str = r#"{"redacted":"user.anonymized"}"#;

/// What an anonymous user becomes: a normal user with this email and
/// password (and name). Its `Debug` hides the password.
#[derive(Clone)]
pub struct Promotion {
    /// The email address, unique regardless of letter case.
    pub email: String,
    /// The password in the clear; stored only as an argon2id hash.
    pub password: String,
    /// The full name, if one is given.
    pub name: Option<String>,
}

impl std::fmt::Debug for Promotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promotion")
            .field("email", &self.email)
            .field("password", &Redacted)
            .field("name", &self.name)
            .finish()
    }
}

/// Turns the anonymous user `id` into a normal user with the promotion's
/// email, password (argon2id) and name; the id, and so the `sub`, stays, and
/// so do the user's refresh tokens: their next access tokens no longer say
/// `"anonymous": true`. The user can then sign in with the email. Refused
/// for a user who is not anonymous and for an email already in use (in any
/// letter case; also when another promotion or creation takes it at the same
/// moment). The user is read before the transaction, like `update_user`.
/// The `user.pre_create` hooks are asked (with `user_id`) once the values are
/// valid, before anything is written, as for a creation: a promotion gives a
/// user an email and a password, so a hook that guards sign-ups must see it.
pub async fn promote_user(
    store: &dyn Store,
    hooks: &Hooks,
    actor: Actor<'_>,
    id: &str,
    promotion: Promotion,
) -> Result<User, ManageError> {
    check_email(&promotion.email)?;
    if let Some(name) = &promotion.name {
        check_name("name", name)?;
    }
    check_password(&promotion.password)?;
    let mut user = get_user(store, id).await?;
    if !user.anonymous {
        return Err(ManageError::UserState {
            id: user.id,
            state: "is not anonymous",
        });
    }
    if store.get_user_by_email(&promotion.email).await?.is_some() {
        return Err(ManageError::Exists("a user with this email"));
    }
    let about = PreCreate {
        email: Some(&promotion.email),
        name: promotion.name.as_deref(),
        anonymous: false,
        user_id: Some(&user.id),
    };
    hooks
        .pre_create(&about)
        .await
        .map_err(|refusal| ManageError::UserRefused {
            what: "promoted",
            refusal,
        })?;
    let hash = hash_secret(promotion.password)
        .await
        .ok_or(ManageError::Crypto)?;
    user.email = Some(promotion.email);
    user.email_verified = false;
    user.password_hash = Some(hash);
    if let Some(name) = promotion.name {
        user.name = Some(name);
    }
    user.anonymous = false;
    user.updated_at = actor.now;
    let data = json!({ "id": user.id, "email": user.email, "name": user.name });
    let mut tx = store.begin().await?;
    if !tx.update_user(&user).await? {
        return Err(ManageError::UnknownUser(id.to_owned()));
    }
    tx.insert_audit(&audit(actor, "user.anonymous.promoted", id, data.clone()))
        .await?;
    tx.enqueue_event(&event("user.anonymous.promoted", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(user)
}

/// Erases the personal data of user `id` and keeps the id, for what refers
/// to it elsewhere. In one transaction: the email, name, picture and password
/// hash are removed (`email_verified` false, no longer anonymous, anonymized
/// now); every refresh-token family is revoked, every browser session and
/// pending sign-in ended, every membership removed; the details of the audit
/// entries about the user are replaced by [`REDACTED_DETAIL`]; then the
/// `user.anonymized` entry and event (which carry the id only) are added.
/// The user can never sign in or refresh again, and a code issued before is
/// refused; access tokens already issued stay valid until they expire.
/// Refused for a user anonymized already.
pub async fn anonymize_user(
    store: &dyn Store,
    actor: Actor<'_>,
    id: &str,
) -> Result<User, ManageError> {
    let mut user = get_user(store, id).await?;
    if user.anonymized_at.is_some() {
        return Err(ManageError::UserState {
            id: user.id,
            state: "was anonymized already",
        });
    }
    user.email = None;
    user.name = None;
    user.picture = None;
    user.email_verified = false;
    user.password_hash = None;
    user.anonymous = false;
    user.anonymized_at = Some(actor.now);
    user.updated_at = actor.now;
    let mut tx = store.begin().await?;
    if !tx.update_user(&user).await? {
        return Err(ManageError::UnknownUser(id.to_owned()));
    }
    let revoked = tx.revoke_families_of_user(id, actor.now).await?;
    let ended = tx.delete_login_sessions_of_user(id).await?;
    let removed = tx.remove_memberships_of_user(id).await?;
    let redacted = tx.redact_audit(id, REDACTED_DETAIL).await?;
    let detail = json!({
        "revoked_refresh_families": revoked,
        "ended_sessions": ended,
        "removed_memberships": removed,
        "redacted_audit_entries": redacted,
    });
    tx.insert_audit(&audit(actor, "user.anonymized", id, detail))
        .await?;
    tx.enqueue_event(&event("user.anonymized", actor.now, json!({ "id": id })))
        .await?;
    tx.commit().await?;
    Ok(user)
}
