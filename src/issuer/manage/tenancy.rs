//! Tenancy: organizations, users (argon2id passwords), roles and
//! memberships, each with its audit entry and, where the spec names one, its
//! webhook event.

use serde_json::json;

use super::{Actor, ManageError, audit, check_grants, check_name, event, invalid};
use crate::issuer::clients::hash_secret;
use crate::issuer::hooks::{Hooks, PreCreate};
use crate::issuer::store::{
    Membership, Organization, Redacted, Role, ScopeMap, Store, User, new_id,
};

/// The shortest password a user may be given.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A user to create. Its `Debug` hides the password.
#[derive(Clone)]
pub struct NewUser {
    /// The email address, unique regardless of letter case.
    pub email: String,
    /// The password in the clear; stored only as an argon2id hash.
    pub password: String,
    /// The full name.
    pub name: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("password", &Redacted)
            .field("name", &self.name)
            .finish()
    }
}

/// Creates an organization with a fresh `org_…` id.
pub async fn create_organization(
    store: &dyn Store,
    actor: Actor<'_>,
    name: &str,
) -> Result<Organization, ManageError> {
    check_name("organization name", name)?;
    let org = Organization {
        id: new_id("org"),
        name: name.to_owned(),
        created_at: actor.now,
    };
    let data = json!({ "id": org.id, "name": org.name });
    let mut tx = store.begin().await?;
    tx.create_organization(&org).await?;
    tx.insert_audit(&audit(actor, "organization.created", &org.id, data.clone()))
        .await?;
    tx.enqueue_event(&event("organization.created", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(org)
}

/// Checks that `email` looks like an address: one `@` with text on both
/// sides, no spaces or control characters.
pub(super) fn check_email(email: &str) -> Result<(), ManageError> {
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    match ok {
        true => Ok(()),
        false => Err(invalid(
            "email",
            format!("`{email}` is not an email address"),
        )),
    }
}

/// Checks a new password's length (never echoing it).
pub(super) fn check_password(password: &str) -> Result<(), ManageError> {
    match password.chars().count() >= MIN_PASSWORD_LEN {
        true => Ok(()),
        false => Err(invalid(
            "password",
            format!("must have at least {MIN_PASSWORD_LEN} characters"),
        )),
    }
}

/// Creates a user with a fresh `usr_…` id and an argon2id password hash. An
/// email already in use (in any letter case) is refused. The
/// `user.pre_create` hooks are asked once the values are valid, before
/// anything is written: a denial, or a failure of a hook that fails closed,
/// creates nothing.
pub async fn create_user(
    store: &dyn Store,
    hooks: &Hooks,
    actor: Actor<'_>,
    new: NewUser,
) -> Result<User, ManageError> {
    check_email(&new.email)?;
    check_name("name", &new.name)?;
    check_password(&new.password)?;
    if store.get_user_by_email(&new.email).await?.is_some() {
        return Err(ManageError::Exists("a user with this email"));
    }
    let about = PreCreate {
        email: Some(&new.email),
        name: Some(&new.name),
        anonymous: false,
        user_id: None,
    };
    hooks
        .pre_create(&about)
        .await
        .map_err(|refusal| ManageError::UserRefused {
            what: "created",
            refusal,
        })?;
    let hash = hash_secret(new.password).await.ok_or(ManageError::Crypto)?;
    let user = User {
        id: new_id("usr"),
        email: Some(new.email),
        name: Some(new.name),
        picture: None,
        email_verified: false,
        password_hash: Some(hash),
        created_at: actor.now,
        updated_at: actor.now,
        anonymous: false,
        anonymized_at: None,
    };
    // The user events all carry the same profile fields.
    let data = json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "picture": user.picture,
        "email_verified": user.email_verified,
    });
    let mut tx = store.begin().await?;
    tx.create_user(&user).await?;
    tx.insert_audit(&audit(actor, "user.created", &user.id, data.clone()))
        .await?;
    tx.enqueue_event(&event("user.created", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(user)
}

/// The longest role name.
pub const MAX_ROLE_NAME_LEN: usize = 64;

/// Whether `name` may name a role: 1 to [`MAX_ROLE_NAME_LEN`] of the ASCII
/// letters, digits and `. _ : @ / + -`. Role names travel in the `roles` claim
/// and, joined by commas, in the gateway's `X-Auth-Roles` header: a comma
/// would split one role into two upstream, and spaces, quotes, semicolons,
/// non-ASCII and control characters have other meanings in headers and
/// logs, so none of them is allowed.
pub fn is_role_name(name: &str) -> bool {
    (1..=MAX_ROLE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@/+-".contains(&b))
}

fn check_role_name(name: &str) -> Result<(), ManageError> {
    match is_role_name(name) {
        true => Ok(()),
        // The name is not echoed: it may hold control characters.
        false => Err(invalid(
            "role name",
            format!(
                "use 1 to {MAX_ROLE_NAME_LEN} of the characters A-Z a-z 0-9 . _ : @ / + - \
                 (no commas, spaces, quotes or control characters: role names are joined \
                 by commas in X-Auth-Roles)"
            ),
        )),
    }
}

/// Creates a role granting `scopes` of the API resource `api`. The name must
/// pass [`is_role_name`].
pub async fn create_role(
    store: &dyn Store,
    actor: Actor<'_>,
    name: &str,
    api: &str,
    scopes: Vec<String>,
) -> Result<Role, ManageError> {
    check_role_name(name)?;
    let grants = ScopeMap::from([(api.to_owned(), scopes)]);
    check_grants(store, &grants).await?;
    let role = Role {
        name: name.to_owned(),
        grants,
        created_at: actor.now,
    };
    let mut tx = store.begin().await?;
    tx.create_role(&role).await?;
    let detail = json!({ "grants": role.grants });
    tx.insert_audit(&audit(actor, "role.created", name, detail))
        .await?;
    tx.commit().await?;
    Ok(role)
}

/// Makes the user a member of the organization with `roles` (each must
/// exist), or replaces the roles of an existing membership. The
/// `membership.created` event is sent only for a new membership.
pub async fn add_member(
    store: &dyn Store,
    actor: Actor<'_>,
    org_id: &str,
    user_id: &str,
    roles: Vec<String>,
) -> Result<Membership, ManageError> {
    if store.get_organization(org_id).await?.is_none() {
        return Err(ManageError::UnknownOrganization(org_id.to_owned()));
    }
    if store.get_user(user_id).await?.is_none() {
        return Err(ManageError::UnknownUser(user_id.to_owned()));
    }
    let mut unique = Vec::with_capacity(roles.len());
    for role in roles {
        if store.get_role(&role).await?.is_none() {
            return Err(ManageError::UnknownRole(role));
        }
        if !unique.contains(&role) {
            unique.push(role);
        }
    }
    let membership = Membership {
        org_id: org_id.to_owned(),
        user_id: user_id.to_owned(),
        roles: unique,
        created_at: actor.now,
    };
    let data = json!({
        "org_id": membership.org_id,
        "user_id": membership.user_id,
        "roles": membership.roles,
    });
    let mut tx = store.begin().await?;
    let created = tx.add_membership(&membership).await?;
    let action = match created {
        true => "membership.created",
        false => "membership.updated",
    };
    let target = format!("{org_id}/{user_id}");
    tx.insert_audit(&audit(actor, action, &target, data.clone()))
        .await?;
    if created {
        tx.enqueue_event(&event("membership.created", actor.now, data))
            .await?;
    }
    tx.commit().await?;
    // An existing membership keeps its first `created_at`.
    let stored = store
        .list_memberships_of_user(user_id)
        .await?
        .into_iter()
        .find(|m| m.org_id == org_id);
    Ok(stored.unwrap_or(membership))
}

/// Every organization, by id.
pub async fn list_organizations(store: &dyn Store) -> Result<Vec<Organization>, ManageError> {
    Ok(store.list_organizations().await?)
}

/// Every role, by name.
pub async fn list_roles(store: &dyn Store) -> Result<Vec<Role>, ManageError> {
    Ok(store.list_roles().await?)
}

/// The organization's memberships, by user id.
pub async fn list_members(store: &dyn Store, org_id: &str) -> Result<Vec<Membership>, ManageError> {
    if store.get_organization(org_id).await?.is_none() {
        return Err(ManageError::UnknownOrganization(org_id.to_owned()));
    }
    Ok(store.list_memberships_of_org(org_id).await?)
}

/// Removes the user from the organization and returns the membership that
/// was; the `membership.deleted` event and the audit entry commit with it.
pub async fn remove_member(
    store: &dyn Store,
    actor: Actor<'_>,
    org_id: &str,
    user_id: &str,
) -> Result<Membership, ManageError> {
    let not_member = || ManageError::NotMember {
        org: org_id.to_owned(),
        user: user_id.to_owned(),
    };
    let membership = list_members(store, org_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(not_member)?;
    let data = json!({
        "org_id": membership.org_id,
        "user_id": membership.user_id,
        "roles": membership.roles,
    });
    let mut tx = store.begin().await?;
    if !tx.remove_membership(org_id, user_id).await? {
        return Err(not_member());
    }
    let target = format!("{org_id}/{user_id}");
    tx.insert_audit(&audit(actor, "membership.deleted", &target, data.clone()))
        .await?;
    tx.enqueue_event(&event("membership.deleted", actor.now, data))
        .await?;
    tx.commit().await?;
    Ok(membership)
}
