//! The endpoints of what tokens are issued for and to, and of what the
//! issuer reports: `/apis`, `/clients`, `/webhooks` and `/audit`. Secrets
//! (a client's, a webhook's) appear in their creation's response only.

use http::StatusCode;
use serde_json::{Value, json};

use super::body::{ApiBody, ClientBody, WebhookBody, audit_limit, read_json};
use super::{Answer, ApiError, Call};
use crate::issuer::manage::views::{client_json, time, webhook_json};
use crate::issuer::manage::{self};

/// `GET /apis`: every API resource with its scopes.
pub(super) async fn list_apis(call: Call<'_>) -> Answer {
    let apis = call
        .store
        .list_api_resources()
        .await
        .map_err(ApiError::store)?;
    let list = apis
        .iter()
        .map(|a| json!({ "identifier": a.identifier, "scopes": a.scopes }));
    Ok((StatusCode::OK, Value::Array(list.collect())))
}

/// `POST /apis`: creates an API resource.
pub(super) async fn create_api(call: Call<'_>) -> Answer {
    let b: ApiBody = read_json(&call.headers, call.body).await?;
    let api = manage::create_api(call.store, call.actor, &b.identifier, b.scopes).await?;
    let out = json!({ "identifier": api.identifier, "scopes": api.scopes });
    Ok((StatusCode::CREATED, out))
}

/// `GET /clients`: every client, never a secret or its hash.
pub(super) async fn list_clients(call: Call<'_>) -> Answer {
    let clients = manage::list_clients(call.store).await?;
    let list = clients.iter().map(client_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /clients`: creates a client; the response carries its secret, once.
pub(super) async fn create_client(call: Call<'_>) -> Answer {
    let b: ClientBody = read_json(&call.headers, call.body).await?;
    let made = manage::create_client(call.store, call.actor, b.into_new()?).await?;
    let mut out = client_json(&made.client);
    if let (Some(secret), Some(map)) = (made.secret, out.as_object_mut()) {
        map.insert("client_secret".into(), Value::String(secret));
    }
    Ok((StatusCode::CREATED, out))
}

/// `DELETE /clients/{id}`.
pub(super) async fn delete_client(call: Call<'_>, id: &str) -> Answer {
    manage::delete_client(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, json!({ "client_id": id, "deleted": true })))
}

/// `GET /webhooks`: the stored webhooks, never their secrets.
pub(super) async fn list_webhooks(call: Call<'_>) -> Answer {
    let hooks = manage::list_webhooks(call.store).await?;
    let list = hooks.iter().map(webhook_json).collect();
    Ok((StatusCode::OK, Value::Array(list)))
}

/// `POST /webhooks`: creates a webhook; the response carries its secret
/// (given or generated), the only time it is shown.
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
    let mut out = webhook_json(&hook);
    if let Some(map) = out.as_object_mut() {
        map.insert("secret".into(), Value::String(hook.secret));
    }
    Ok((StatusCode::CREATED, out))
}

/// `DELETE /webhooks/{id}`.
pub(super) async fn delete_webhook(call: Call<'_>, id: &str) -> Answer {
    manage::delete_webhook(call.store, call.actor, id)
        .await
        .map_err(ApiError::in_path)?;
    Ok((StatusCode::OK, json!({ "id": id, "deleted": true })))
}

/// `GET /audit?limit=N`: the newest entries, newest first.
pub(super) async fn list_audit(call: Call<'_>) -> Answer {
    let limit = audit_limit(call.query.as_deref())?;
    let entries = call
        .store
        .list_audit(limit)
        .await
        .map_err(ApiError::store)?;
    let list = entries.into_iter().map(|e| {
        let detail = serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null);
        json!({
            "id": e.id,
            "at": time(e.at),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": detail,
        })
    });
    Ok((StatusCode::OK, Value::Array(list.collect())))
}
