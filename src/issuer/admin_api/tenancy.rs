//! The endpoints of tenancy: `/organizations` and their `/members`,
//! `/users` (with the promotion of anonymous users and anonymization) and
//! `/roles`. Passwords go in (creation, `PATCH`) but never come
//! out: users are shown through [`user_json`], which has no hash.

use http::StatusCode;
use serde_json::{Value, json};

use super::body::{MemberBody, OrgBody, PromoteBody, RoleBody, UserBody, UserPatch, read_json};
use super::{Answer, ApiError, Call};
use crate::issuer::manage::views::{
    membership_json, organization_json, role_json, time, user_detail_json, user_json,
};
use crate::issuer::manage::{self, UserChanges};

/// `GET /organizations`.
pub(super) async fn list_organizations(call: Call<'_>) -> Answer {
    let orgs = manage::list_organizations(call.store).await?;
    let list = orgs.iter().map(organization_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /organizations`.
pub(super) async fn create_organization(call: Call<'_>) -> Answer {
    let b: OrgBody = read_json(&call.headers, call.body).await?;
    let org = manage::create_organization(call.store, call.actor, &b.name).await?;
    Ok((StatusCode::CREATED, organization_json(&org)))
}

/// `GET /organizations/{id}/members`.
pub(super) async fn list_members(call: Call<'_>, org: &str) -> Answer {
    let members = manage::list_members(call.store, org)
        .await
        .map_err(ApiError::in_path)?;
    let list = members.iter().map(membership_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /organizations/{id}/members`: adds a member, or replaces the roles
/// of one. An unknown organization is a 404, an unknown user or role a 400.
pub(super) async fn add_member(call: Call<'_>, org: &str) -> Answer {
    let b: MemberBody = read_json(&call.headers, call.body).await?;
    let m = manage::add_member(call.store, call.actor, org, &b.user_id, b.roles).await?;
    Ok((StatusCode::CREATED, membership_json(&m)))
}

/// `DELETE /organizations/{id}/members/{user_id}`.
pub(super) async fn remove_member(call: Call<'_>, org: &str, user: &str) -> Answer {
    manage::remove_member(call.store, call.actor, org, user)
        .await
        .map_err(ApiError::in_path)?;
    let out = json!({ "org_id": org, "user_id": user, "deleted": true });
    Ok((StatusCode::OK, out))
}

/// `GET /users`.
pub(super) async fn list_users(call: Call<'_>) -> Answer {
    let users = manage::list_users(call.store).await?;
    let list = users.iter().map(user_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /users`.
pub(super) async fn create_user(call: Call<'_>) -> Answer {
    let b: UserBody = read_json(&call.headers, call.body).await?;
    let user = manage::create_user(call.store, call.hooks, call.actor, b.into()).await?;
    let out = json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": time(user.created_at),
    });
    Ok((StatusCode::CREATED, out))
}

/// `GET /users/{id}`: the user with their memberships.
pub(super) async fn get_user(call: Call<'_>, id: &str) -> Answer {
    let user = manage::get_user(call.store, id)
        .await
        .map_err(ApiError::in_path)?;
    let memberships = call
        .store
        .list_memberships_of_user(id)
        .await
        .map_err(ApiError::store)?;
    Ok((StatusCode::OK, user_detail_json(&user, &memberships)))
}

/// `PATCH /users/{id}`: any of `name`, `email`, `picture`, `email_verified`,
/// `password`; a new password revokes the user's refresh tokens.
pub(super) async fn update_user(call: Call<'_>, id: &str) -> Answer {
    let b: UserPatch = read_json(&call.headers, call.body).await?;
    let changes: UserChanges = b.into();
    let user = manage::update_user(call.store, call.actor, id, changes)
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, user_json(&user)))
}

/// `DELETE /users/{id}`: the user with their memberships, codes and refresh
/// tokens.
pub(super) async fn delete_user(call: Call<'_>, id: &str) -> Answer {
    manage::delete_user(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, json!({ "id": id, "deleted": true })))
}

/// `POST /users/{id}/promote`: `email`, `password` and optionally `name`
/// make the anonymous user a normal one with the same id. A user who is not
/// anonymous, or an email in use, is a 409.
pub(super) async fn promote_user(call: Call<'_>, id: &str) -> Answer {
    let b: PromoteBody = read_json(&call.headers, call.body).await?;
    let user = manage::promote_user(call.store, call.hooks, call.actor, id, b.into())
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, user_json(&user)))
}

/// `POST /users/{id}/anonymize` (no body): the user's personal data is
/// erased, the id kept, their refresh tokens revoked. A user anonymized
/// already is a 409.
pub(super) async fn anonymize_user(call: Call<'_>, id: &str) -> Answer {
    let user = manage::anonymize_user(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, user_json(&user)))
}

/// `GET /roles`.
pub(super) async fn list_roles(call: Call<'_>) -> Answer {
    let roles = manage::list_roles(call.store).await?;
    let list = roles.iter().map(role_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /roles`.
pub(super) async fn create_role(call: Call<'_>) -> Answer {
    let b: RoleBody = read_json(&call.headers, call.body).await?;
    let role = manage::create_role(call.store, call.actor, &b.name, &b.api, b.scopes).await?;
    Ok((
        StatusCode::CREATED,
        json!({ "name": role.name, "grants": role.grants }),
    ))
}
