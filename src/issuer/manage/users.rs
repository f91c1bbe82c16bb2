//! Users after their creation: listing, reading one, changing their profile or
//! password, and deleting them. A change commits with its audit entry and its
//! `user.updated` / `user.deleted` event; neither ever carries a password or
//! its hash. Creation lives in [`tenancy`](super::tenancy).

use serde_json::{Value, json};

use super::tenancy::{check_email, check_password};
use super::{Actor, ManageError, audit, check_name, event, invalid};
use crate::config::value::{HttpUrl, ParseValue};
use crate::issuer::clients::hash_secret;
use crate::issuer::revocation;
use crate::issuer::store::{Store, User, redacted};

/// What to change about a user; `None` leaves a field as it is. Its `Debug`
/// hides the password.
#[derive(Clone, Default)]
pub struct UserChanges {
    /// A new full name.
    pub name: Option<String>,
    /// A new email address (unique in any letter case). Unless
    /// `email_verified` is given too, a changed address is unverified.
    pub email: Option<String>,
    /// A new picture URL (absolute http or https), or `Some(None)` to remove it.
    pub picture: Option<Option<String>>,
    /// Whether the email address is verified.
    pub email_verified: Option<bool>,
    /// A new password in the clear: stored as an argon2id hash, and every
    /// refresh-token family of the user, and every access token issued to
    /// them until then, is revoked with the change.
    pub password: Option<String>,
}

impl std::fmt::Debug for UserChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChanges")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("picture", &self.picture)
            .field("email_verified", &self.email_verified)
            .field("password", &redacted(&self.password))
            .finish()
    }
}

/// Every user, by id (with their password hashes: callers never print those).
pub async fn list_users(store: &dyn Store) -> Result<Vec<User>, ManageError> {
    Ok(store.list_users().await?)
}

/// The user with this id.
pub async fn get_user(store: &dyn Store, id: &str) -> Result<User, ManageError> {
    store
        .get_user(id)
        .await?
        .ok_or_else(|| ManageError::UnknownUser(id.to_owned()))
}

/// Applies `changes` to the user and returns the user as stored. The change,
/// its `user.updated` audit entry and event, and (for a new password) the
/// revocation of the user's refresh-token families commit together. The user
/// is read before the transaction, so of two updates racing on one user the
/// later one's untouched fields win; a user deleted in between is unknown.
pub async fn update_user(
    store: &dyn Store,
    actor: Actor<'_>,
    id: &str,
    changes: UserChanges,
) -> Result<User, ManageError> {
    check_changes(&changes)?;
    let mut user = get_user(store, id).await?;
    check_kind(&user, &changes)?;
    let same_email = |email: &str| {
        user.email
            .as_deref()
            .is_some_and(|e| email.eq_ignore_ascii_case(e))
    };
    if let Some(email) = &changes.email
        && !same_email(email)
        && store.get_user_by_email(email).await?.is_some()
    {
        return Err(ManageError::Exists("a user with this email"));
    }
    let hash = match changes.password {
        Some(password) => Some(hash_secret(password).await.ok_or(ManageError::Crypto)?),
        None => None,
    };
    let mut changed: Vec<&str> = Vec::new();
    if let Some(name) = changes.name {
        user.name = Some(name);
        changed.push("name");
    }
    if let Some(email) = changes.email {
        if !same_email(&email) {
            // A new address has not been verified, unless the caller says so.
            user.email_verified = false;
        }
        user.email = Some(email);
        changed.push("email");
    }
    if let Some(picture) = changes.picture {
        user.picture = picture;
        changed.push("picture");
    }
    if let Some(verified) = changes.email_verified {
        user.email_verified = verified;
        changed.push("email_verified");
    }
    if hash.is_some() {
        user.password_hash = hash;
        changed.push("password");
    }
    user.updated_at = actor.now;
    let mut data = user_event_data(&user);
    if let Some(map) = data.as_object_mut() {
        map.insert("changed".into(), json!(changed));
    }
    let mut tx = store.begin().await?;
    if !tx.update_user(&user).await? {
        return Err(ManageError::UnknownUser(id.to_owned()));
    }
    let mut detail = data.clone();
    if changed.contains(&"password") {
        // A new password signs the user out everywhere: refresh tokens,
        // access tokens issued until now, and browser sessions alike.
        let revoked = tx.revoke_families_of_user(id, actor.now).await?;
        tx.record_revocation(&revocation::subject(id, actor.now))
            .await?;
        let ended = tx.delete_login_sessions_of_user(id).await?;
        if let Some(map) = detail.as_object_mut() {
            map.insert("revoked_refresh_families".into(), json!(revoked));
            map.insert("ended_sessions".into(), json!(ended));
        }
    }
    tx.insert_audit(&audit(actor, "user.updated", id, detail))
        .await?;
    tx.enqueue_event(&event("user.updated", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(user)
}

/// Deletes the user; their memberships, pending codes and refresh-token
/// families go with them (foreign-key cascades), so they can neither log in
/// nor refresh, and the access tokens issued to them stop working (a
/// revocation of the user's tokens until now, in the same transaction).
pub async fn delete_user(
    store: &dyn Store,
    actor: Actor<'_>,
    id: &str,
) -> Result<User, ManageError> {
    let user = get_user(store, id).await?;
    let data = user_event_data(&user);
    let mut tx = store.begin().await?;
    if !tx.delete_user(id).await? {
        return Err(ManageError::UnknownUser(id.to_owned()));
    }
    tx.record_revocation(&revocation::subject(id, actor.now))
        .await?;
    tx.insert_audit(&audit(actor, "user.deleted", id, data.clone()))
        .await?;
    tx.enqueue_event(&event("user.deleted", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(user)
}

/// An anonymized user is never changed again; an anonymous one gets an
/// email and a password by its promotion only (`promote_user`).
fn check_kind(user: &User, changes: &UserChanges) -> Result<(), ManageError> {
    if user.anonymized_at.is_some() {
        return Err(ManageError::UserState {
            id: user.id.clone(),
            state: "was anonymized and cannot be changed",
        });
    }
    if user.anonymous && (changes.email.is_some() || changes.password.is_some()) {
        return Err(ManageError::UserState {
            id: user.id.clone(),
            state: "is anonymous: promote the user to give them an email and a password",
        });
    }
    Ok(())
}

/// The fields of `user.created`'s data, and the profile around them: never
/// the password hash.
fn user_event_data(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "picture": user.picture,
        "email_verified": user.email_verified,
    })
}

fn check_changes(changes: &UserChanges) -> Result<(), ManageError> {
    let UserChanges {
        name,
        email,
        picture,
        email_verified,
        password,
    } = changes;
    if name.is_none()
        && email.is_none()
        && picture.is_none()
        && email_verified.is_none()
        && password.is_none()
    {
        return Err(invalid(
            "changes",
            "name, email, picture, email_verified or password is required",
        ));
    }
    if let Some(name) = name {
        check_name("name", name)?;
    }
    if let Some(email) = email {
        check_email(email)?;
    }
    if let Some(Some(url)) = picture {
        check_picture(url)?;
    }
    if let Some(password) = password {
        check_password(password)?;
    }
    Ok(())
}

/// A picture is an absolute http(s) URL without a fragment.
fn check_picture(url: &str) -> Result<(), ManageError> {
    HttpUrl::parse_value(url).map_err(|e| invalid("picture", e))?;
    if url.contains('#') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "picture",
            "must not carry a fragment, spaces or control characters",
        ));
    }
    Ok(())
}
