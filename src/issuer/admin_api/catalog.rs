//! The endpoints of what tokens are issued for and to, and of what the
//! issuer reports: `/apis`, `/clients`, `/webhooks`, `/keys/rotate` and
//! `/audit`. Secrets (a client's, a webhook's) appear in the response of
//! the creation or rotation that made them only.

use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::body::{ApiBody, ClientBody, RotateBody, WebhookBody, read_json, read_optional_json};
use super::query::{
    AUDIT_DEFAULT_LIMIT, AuditQuery, Cut, DEFAULT_LIMIT, Listing, PageQuery, Params, audit_key,
};
use super::{Answer, ApiError, Call, Reply};
use crate::issuer::manage::views::{
    ApiView, ClientView, CreatedClientView, CreatedWebhookView, KeysView, RotatedWebhookView,
    WebhookView, time,
};
use crate::issuer::manage::{self, ManageError};
use crate::issuer::signing::MasterKey;
use crate::issuer::store::Store;

/// The answer to a deletion of a client.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClientDeleted {
    /// The client deleted.
    client_id: String,
    /// Always true.
    deleted: bool,
}

/// The answer to a deletion of a record with an `id` (a webhook, a user).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Deleted {
    /// The record deleted.
    id: String,
    /// Always true.
    deleted: bool,
}

/// An entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub(super) struct AuditView {
    /// The identifier, `aud_…`.
    id: String,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    at: String,
    /// Who did it: a client id (admin API), `cli`, a user id, `anonymous`,
    /// `system`.
    actor: String,
    /// What was done: `client.created`, `login.failed`, …
    action: String,
    /// What it was done to: an id, `org_…/usr_…` for a membership, or null.
    target: Option<String>,
    /// Further detail, a JSON value of the action's own shape.
    detail: Value,
}

// === impl Deleted ===

impl Deleted {
    /// The answer to the deletion of record `id`.
    pub(super) fn new(id: &str) -> Deleted {
        Deleted {
            id: id.to_owned(),
            deleted: true,
        }
    }
}

/// `GET /apis`: every API resource with its scopes, by identifier.
#[utoipa::path(
    get,
    path = "/admin/v1/apis",
    tag = "apis",
    params(PageQuery),
    responses((status = 200, description = "One page of the API resources, by identifier.",
        body = Vec<ApiView>)),
)]
pub(super) async fn list_apis(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(Listing::Apis, PageQuery::take(&mut params)?, DEFAULT_LIMIT)?;
    params.finish()?;
    let apis = call
        .store
        .list_api_resources_page(cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(apis, |a| a.identifier.clone());
    Reply::page(paged, |r| ApiView::from(r))
}

/// `POST /apis`: creates an API resource.
#[utoipa::path(
    post,
    path = "/admin/v1/apis",
    tag = "apis",
    request_body = ApiBody,
    responses(
        (status = 201, description = "The API resource created.", body = ApiView),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn create_api(call: Call<'_>) -> Answer {
    let b: ApiBody = read_json(&call.headers, call.body).await?;
    let api = manage::create_api(call.store, call.actor, &b.identifier, b.scopes).await?;
    Reply::json(StatusCode::CREATED, &ApiView::from(&api))
}

/// `GET /clients`: every client, never a secret or its hash.
#[utoipa::path(
    get,
    path = "/admin/v1/clients",
    tag = "clients",
    params(PageQuery),
    responses((status = 200, description = "One page of the clients, by client id.",
        body = Vec<ClientView>)),
)]
pub(super) async fn list_clients(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(
        Listing::Clients,
        PageQuery::take(&mut params)?,
        DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let clients = call
        .store
        .list_clients_page(cut.page())
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(clients, |c| c.client_id.clone());
    Reply::page(paged, |r| ClientView::from(r))
}

/// `POST /clients`: creates a client; the response carries its secret, once.
#[utoipa::path(
    post,
    path = "/admin/v1/clients",
    tag = "clients",
    request_body = ClientBody,
    responses(
        (status = 201, description = "The client created, with its secret (confidential \
            clients), shown this once.", body = CreatedClientView, links(
            ("DeleteClient" = (operation_id = "delete_client",
                parameters(("id" = "$response.body#/client_id")))),
        )),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn create_client(call: Call<'_>) -> Answer {
    let b: ClientBody = read_json(&call.headers, call.body).await?;
    let made = manage::create_client(call.store, call.actor, b.into_new()?).await?;
    let out = CreatedClientView {
        client: ClientView::from(&made.client),
        client_secret: made.secret,
    };
    Reply::json(StatusCode::CREATED, &out)
}

/// `DELETE /clients/{id}`: the client with its codes and refresh tokens.
#[utoipa::path(
    delete,
    path = "/admin/v1/clients/{id}",
    tag = "clients",
    params(("id" = String, Path, description = "The client id.", min_length = 1)),
    responses(
        (status = 200, description = "The client was deleted.", body = ClientDeleted),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn delete_client(call: Call<'_>) -> Answer {
    let id = call.param("id");
    manage::delete_client(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    let out = ClientDeleted {
        client_id: id.to_owned(),
        deleted: true,
    };
    Reply::json(StatusCode::OK, &out)
}

/// `GET /webhooks`: the configured and the stored webhooks with their
/// delivery status, never their secrets.
#[utoipa::path(
    get,
    path = "/admin/v1/webhooks",
    tag = "webhooks",
    params(PageQuery),
    responses((status = 200, description = "One page of the webhooks, by id: those of the \
        configuration (`cfg_…`, read-only) and those created through the API or the CLI \
        (`whk_…`), each with its delivery status.", body = Vec<WebhookView>)),
)]
pub(super) async fn list_webhooks(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let cut = Cut::new(
        Listing::Webhooks,
        PageQuery::take(&mut params)?,
        DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let configured = &call.section.webhooks;
    let now = call.actor.now;
    let hooks = manage::list_webhooks_page(call.store, configured, cut.page(), now).await?;
    let paged = cut.finish(hooks, |w| w.id.clone());
    Reply::page(paged, |r| WebhookView::from(r))
}

/// `GET /webhooks/{id}`: one webhook, configured or stored, with its
/// delivery status.
#[utoipa::path(
    get,
    path = "/admin/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook id (`whk_…` or `cfg_…`).",
        min_length = 1)),
    responses(
        (status = 200, description = "The webhook and its delivery status.", body = WebhookView),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn get_webhook(call: Call<'_>) -> Answer {
    let id = call.param("id");
    let hook = manage::get_webhook(call.store, &call.section.webhooks, id, call.actor.now)
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &WebhookView::from(&hook))
}

/// `POST /webhooks/{id}/rotate-secret`: a new secret for a stored webhook,
/// shown once; the previous one signs deliveries too for the overlap.
#[utoipa::path(
    post,
    path = "/admin/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook id (`whk_…`).", min_length = 1)),
    request_body(content = Option<RotateBody>, description = "The overlap; the body may be \
        left out for 24 hours."),
    responses(
        (status = 200, description = "The webhook with its new secret, shown this once. \
            Until `previous_secret_until`, each delivery carries two signatures in \
            `webhook-signature`: the new secret's, then the previous one's.",
            body = RotatedWebhookView),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn rotate_webhook_secret(call: Call<'_>) -> Answer {
    let master = call.master()?;
    let id = call.param("id").to_owned();
    let b: RotateBody = read_optional_json(&call.headers, call.body).await?;
    let overlap = b.overlap_secs()?;
    let rotated = manage::rotate_webhook_secret(
        call.store,
        call.actor,
        &call.section.webhooks,
        &id,
        overlap,
        master.as_ref(),
    )
    .await
    .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &RotatedWebhookView::from(&rotated))
}

/// `POST /webhooks`: creates a webhook; the response carries its secret
/// (given or generated), the only time it is shown.
#[utoipa::path(
    post,
    path = "/admin/v1/webhooks",
    tag = "webhooks",
    request_body = WebhookBody,
    responses(
        (status = 201, description = "The webhook created, with its secret, shown this once.",
            body = CreatedWebhookView, links(
                ("DeleteWebhook" = (operation_id = "delete_webhook",
                    parameters(("id" = "$response.body#/id")))),
            )),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn create_webhook(call: Call<'_>) -> Answer {
    let master = call.master()?;
    let b: WebhookBody = read_json(&call.headers, call.body).await?;
    let configured = &call.section.webhooks;
    let hook = manage::create_webhook(
        call.store,
        call.actor,
        configured,
        b.into(),
        master.as_ref(),
        &call.section.webhook_address_policy,
    )
    .await?;
    let out = CreatedWebhookView {
        webhook: WebhookView::from(&hook),
        secret: hook.secret,
    };
    Reply::json(StatusCode::CREATED, &out)
}

/// `DELETE /webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/admin/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook id.", min_length = 1)),
    responses(
        (status = 200, description = "The webhook was deleted.", body = Deleted),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn delete_webhook(call: Call<'_>) -> Answer {
    let id = call.param("id");
    manage::delete_webhook(call.store, call.actor, &call.section.webhooks, id)
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &Deleted::new(id))
}

/// `POST /keys/rotate`: new signing keys, published before they sign.
#[utoipa::path(
    post,
    path = "/admin/v1/keys/rotate",
    tag = "keys",
    responses(
        (status = 200, description = "The keys published now and their schedules; \
            `rotated` is false when successors were already waiting.", body = KeysView),
        (status = 503, response = super::openapi::responses::Unavailable),
    ),
)]
pub(super) async fn rotate_keys(store: Arc<dyn Store>, call: Call<'_>) -> Answer {
    let text = call.master.map(str::to_owned);
    let master = MasterKey::from_env(&|_| text.clone())
        .map_err(|_| ApiError::Manage(ManageError::Crypto))?;
    let report = manage::rotate_keys(store, call.section, master, call.actor).await?;
    Reply::json(StatusCode::OK, &KeysView::from(&report))
}

/// `GET /audit`: the entries, newest first, filtered.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    params(AuditQuery, PageQuery),
    responses((status = 200, description = "One page of the audit entries the filters keep, \
        newest first.", body = Vec<AuditView>)),
)]
pub(super) async fn list_audit(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let filters = AuditQuery::take(&mut params)?;
    let cut = Cut::new(
        Listing::Audit,
        PageQuery::take(&mut params)?,
        AUDIT_DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let entries = call
        .store
        .list_audit_page(&filters.filter(), cut.audit_after(), cut.page().limit)
        .await
        .map_err(ApiError::store)?;
    let paged = cut.finish(entries, |(position, _)| audit_key(position));
    Reply::page(paged, |(_, e)| AuditView {
        id: e.id.clone(),
        at: time(e.at),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
    })
}
