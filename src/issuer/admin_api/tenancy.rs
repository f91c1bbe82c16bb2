//! The endpoints of tenancy: `/organizations` and their `/members`,
//! `/users` (with the promotion of anonymous users and anonymization) and
//! `/roles`. Passwords go in (creation, `PATCH`) but never come
//! out: users are shown through [`UserView`], which has no hash.

use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::body::{MemberBody, OrgBody, PromoteBody, RoleBody, UserBody, UserPatch, read_json};
use super::catalog::Deleted;
use super::query::{Cut, DEFAULT_LIMIT, Listing, PageQuery, Params, UserQuery};
use super::{Answer, ApiError, Call, Reply};
use crate::issuer::manage::views::{
    MembershipView, OrganizationView, RoleView, UserDetailView, UserView,
};
use crate::issuer::manage::{self, ManageError, UserChanges};

/// The answer to the removal of a member.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MemberRemoved {
    /// The organization.
    org_id: String,
    /// The user who is no longer a member.
    user_id: String,
    /// Always true.
    deleted: bool,
}

/// `GET /organizations`.
#[utoipa::path(
    get,
    path = "/admin/v1/organizations",
    tag = "organizations",
    params(PageQuery),
    responses((status = 200, description = "One page of the organizations, by id.",
        body = Vec<OrganizationView>)),
)]
pub(super) async fn list_organizations(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(
        Listing::Organizations,
        PageQuery::take(&mut params)?,
        DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let orgs = call
        .store
        .list_organizations_page(cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(orgs, |o| o.id.clone());
    Reply::page(paged, |r| OrganizationView::from(r))
}

/// `POST /organizations`.
#[utoipa::path(
    post,
    path = "/admin/v1/organizations",
    tag = "organizations",
    request_body = OrgBody,
    responses((status = 201, description = "The organization created.",
        body = OrganizationView, links(
            ("ListMembers" = (operation_id = "list_members",
                parameters(("id" = "$response.body#/id")))),
            ("AddMember" = (operation_id = "add_member",
                parameters(("id" = "$response.body#/id")))),
        ))),
)]
pub(super) async fn create_organization(call: Call<'_>) -> Answer {
    let b: OrgBody = read_json(&call.headers, call.body).await?;
    let org = manage::create_organization(call.store, call.actor, &b.name).await?;
    Reply::json(StatusCode::CREATED, &OrganizationView::from(&org))
}

/// `GET /organizations/{id}/members`.
#[utoipa::path(
    get,
    path = "/admin/v1/organizations/{id}/members",
    tag = "organizations",
    params(("id" = String, Path, description = "The organization id.", min_length = 1),
        PageQuery),
    responses(
        (status = 200, description = "One page of the organization's memberships, by user id.",
            body = Vec<MembershipView>),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn list_members(call: Call<'_>) -> Answer {
    let org = call.param("id");
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(
        Listing::Members,
        PageQuery::take(&mut params)?,
        DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let store = call.store;
    if store
        .get_organization(org)
        .await
        .map_err(ApiError::store)?
        .is_none()
    {
        return Err(ApiError::Missing(ManageError::UnknownOrganization(
            org.to_owned(),
        )));
    }
    let members = store
        .list_memberships_of_org_page(org, cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(members, |m| m.user_id.clone());
    Reply::page(paged, |r| MembershipView::from(r))
}

/// `POST /organizations/{id}/members`: adds a member, or replaces the roles
/// of one. An unknown organization is a 404, an unknown user or role a 400.
#[utoipa::path(
    post,
    path = "/admin/v1/organizations/{id}/members",
    tag = "organizations",
    params(("id" = String, Path, description = "The organization id.", min_length = 1)),
    request_body = MemberBody,
    responses(
        (status = 201, description = "The membership, created or with its roles replaced.",
            body = MembershipView, links(
                ("RemoveMember" = (operation_id = "remove_member", parameters(
                    ("id" = "$response.body#/org_id"),
                    ("user_id" = "$response.body#/user_id"),
                ))),
                ("GetUser" = (operation_id = "get_user",
                    parameters(("id" = "$response.body#/user_id")))),
            )),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn add_member(call: Call<'_>) -> Answer {
    let org = call.param("id").to_owned();
    let b: MemberBody = read_json(&call.headers, call.body).await?;
    let m = manage::add_member(call.store, call.actor, &org, &b.user_id, b.roles).await?;
    Reply::json(StatusCode::CREATED, &MembershipView::from(&m))
}

/// `DELETE /organizations/{id}/members/{user_id}`.
#[utoipa::path(
    delete,
    path = "/admin/v1/organizations/{id}/members/{user_id}",
    tag = "organizations",
    params(
        ("id" = String, Path, description = "The organization id.", min_length = 1),
        ("user_id" = String, Path, description = "The member's user id.", min_length = 1),
    ),
    responses(
        (status = 200, description = "The user is no longer a member.", body = MemberRemoved),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn remove_member(call: Call<'_>) -> Answer {
    let (org, user) = (call.param("id"), call.param("user_id"));
    manage::remove_member(call.store, call.actor, org, user)
        .await
        .map_err(ApiError::in_path)?;
    let out = MemberRemoved {
        org_id: org.to_owned(),
        user_id: user.to_owned(),
        deleted: true,
    };
    Reply::json(StatusCode::OK, &out)
}

/// `GET /users`: by id, or the one with an email address.
#[utoipa::path(
    get,
    path = "/admin/v1/users",
    tag = "users",
    params(UserQuery, PageQuery),
    responses((status = 200, description = "One page of the users, by id.",
        body = Vec<UserView>)),
)]
pub(super) async fn list_users(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let filter = UserQuery::take(&mut params);
    let cut = Cut::new(Listing::Users, PageQuery::take(&mut params)?, DEFAULT_LIMIT)?;
    params.finish()?;
    let users = call
        .store
        .list_users_page(filter.email.as_deref(), cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(users, |u| u.id.clone());
    Reply::page(paged, |r| UserView::from(r))
}

/// `POST /users`.
#[utoipa::path(
    post,
    path = "/admin/v1/users",
    tag = "users",
    request_body = UserBody,
    responses(
        (status = 201, description = "The user created.", body = UserView, links(
            ("GetUser" = (operation_id = "get_user",
                parameters(("id" = "$response.body#/id")))),
            ("UpdateUser" = (operation_id = "update_user",
                parameters(("id" = "$response.body#/id")))),
            ("AnonymizeUser" = (operation_id = "anonymize_user",
                parameters(("id" = "$response.body#/id")))),
            ("PromoteUser" = (operation_id = "promote_user",
                parameters(("id" = "$response.body#/id")))),
            ("DeleteUser" = (operation_id = "delete_user",
                parameters(("id" = "$response.body#/id")))),
        )),
        (status = 403, response = super::openapi::responses::Forbidden),
        (status = 409, response = super::openapi::responses::Conflict),
        (status = 503, response = super::openapi::responses::Unavailable),
    ),
)]
pub(super) async fn create_user(call: Call<'_>) -> Answer {
    let b: UserBody = read_json(&call.headers, call.body).await?;
    let user = manage::create_user(call.store, call.hooks, call.actor, b.into()).await?;
    Reply::json(StatusCode::CREATED, &UserView::from(&user))
}

/// `GET /users/{id}`: the user with their memberships.
#[utoipa::path(
    get,
    path = "/admin/v1/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user id.", min_length = 1)),
    responses(
        (status = 200, description = "The user and their memberships.", body = UserDetailView),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn get_user(call: Call<'_>) -> Answer {
    let id = call.param("id");
    let user = manage::get_user(call.store, id)
        .await
        .map_err(ApiError::in_path)?;
    let memberships = call
        .store
        .list_memberships_of_user(id)
        .await
        .map_err(ApiError::store)?;
    let out = UserDetailView {
        user: UserView::from(&user),
        memberships: memberships.iter().map(MembershipView::from).collect(),
    };
    Reply::json(StatusCode::OK, &out)
}

/// `PATCH /users/{id}`: any of `name`, `email`, `picture`, `email_verified`,
/// `password`; a new password revokes the user's refresh tokens.
#[utoipa::path(
    patch,
    path = "/admin/v1/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user id.", min_length = 1)),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user as changed.", body = UserView),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn update_user(call: Call<'_>) -> Answer {
    let id = call.param("id").to_owned();
    let b: UserPatch = read_json(&call.headers, call.body).await?;
    let changes: UserChanges = b.into();
    let user = manage::update_user(call.store, call.actor, &id, changes)
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &UserView::from(&user))
}

/// `DELETE /users/{id}`: the user with their memberships, codes and refresh
/// tokens.
#[utoipa::path(
    delete,
    path = "/admin/v1/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user id.", min_length = 1)),
    responses(
        (status = 200, description = "The user was deleted.", body = Deleted),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn delete_user(call: Call<'_>) -> Answer {
    let id = call.param("id");
    manage::delete_user(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &Deleted::new(id))
}

/// `POST /users/{id}/promote`: `email`, `password` and optionally `name`
/// make the anonymous user a normal one with the same id. A user who is not
/// anonymous, or an email in use, is a 409.
#[utoipa::path(
    post,
    path = "/admin/v1/users/{id}/promote",
    tag = "users",
    params(("id" = String, Path, description = "The anonymous user's id.", min_length = 1)),
    request_body = PromoteBody,
    responses(
        (status = 200, description = "The user, no longer anonymous, with the same id.",
            body = UserView),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn promote_user(call: Call<'_>) -> Answer {
    let id = call.param("id").to_owned();
    let b: PromoteBody = read_json(&call.headers, call.body).await?;
    let user = manage::promote_user(call.store, call.hooks, call.actor, &id, b.into())
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &UserView::from(&user))
}

/// `POST /users/{id}/anonymize` (no body): the user's personal data is
/// erased, the id kept, their refresh tokens revoked. A user anonymized
/// already is a 409.
#[utoipa::path(
    post,
    path = "/admin/v1/users/{id}/anonymize",
    tag = "users",
    params(("id" = String, Path, description = "The user id.", min_length = 1)),
    responses(
        (status = 200, description = "The user, anonymized.", body = UserView, links(
            ("GetUser" = (operation_id = "get_user",
                parameters(("id" = "$response.body#/id")))),
            ("UpdateUser" = (operation_id = "update_user",
                parameters(("id" = "$response.body#/id")))),
        )),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn anonymize_user(call: Call<'_>) -> Answer {
    let id = call.param("id");
    let user = manage::anonymize_user(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &UserView::from(&user))
}

/// `GET /roles`.
#[utoipa::path(
    get,
    path = "/admin/v1/roles",
    tag = "roles",
    params(PageQuery),
    responses((status = 200, description = "One page of the roles, by name.",
        body = Vec<RoleView>)),
)]
pub(super) async fn list_roles(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(Listing::Roles, PageQuery::take(&mut params)?, DEFAULT_LIMIT)?;
    params.finish()?;
    let roles = call
        .store
        .list_roles_page(cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(roles, |r| r.name.clone());
    Reply::page(paged, |r| RoleView::from(r))
}

/// `POST /roles`.
#[utoipa::path(
    post,
    path = "/admin/v1/roles",
    tag = "roles",
    request_body = RoleBody,
    responses(
        (status = 201, description = "The role created.", body = RoleView),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn create_role(call: Call<'_>) -> Answer {
    let b: RoleBody = read_json(&call.headers, call.body).await?;
    let role = manage::create_role(call.store, call.actor, &b.name, &b.api, b.scopes).await?;
    Reply::json(StatusCode::CREATED, &RoleView::from(&role))
}
