//! `POST /oauth/revoke` (RFC 7009). The client authenticates (a public client
//! by `client_id`) and names a `token`, optionally with a `token_type_hint`,
//! which is accepted and not needed: access tokens are JWTs and refresh tokens
//! are opaque, so the token's form tells them apart.
//!
//! Revoking a refresh token revokes its whole family, and with it every access
//! token issued from the family; revoking an access token records its `jti`
//! as revoked until its `exp`. Either fact is recorded in the transaction of
//! the revocation and applied to this process's revocation set before the
//! answer (`revocation`): the gateway refuses the token on the next request,
//! introspection answers `active: false`, and other replicas follow.
//!
//! Only the client the token was issued to can revoke it: another client's
//! token is left as it is. Every well-formed request is answered 200 — a
//! token that is unknown, expired, already revoked, not ours, or another
//! client's alike (RFC 7009 §2.2) — so that the answer says nothing about
//! which tokens are live or whose they are (RFC 7009 §2.1 would allow
//! refusing another client's live token, but that answer would tell a
//! client holding a stolen token that it is live). Each revocation emits
//! `token.revoked` and an audit entry in the same transaction.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::access::{OwnTokens, Purpose, looks_like_jwt};
use super::body::RequestBody;
use super::clients::{ClientAuth, Form, read_form};
use super::error::{OAuthError, json_response};
use super::family::{expired, reported, revoke_reported};
use super::revocation;
use super::store::Client;
use super::throttle::Source;
use super::token::{Minter, token_hash};

/// Answers one revocation request.
pub async fn handle(
    minter: &Minter,
    clients: &ClientAuth,
    req: Request<RequestBody>,
    source: &Source,
    now: i64,
) -> Response<Full<Bytes>> {
    match revoke(minter, clients, req, source, now).await {
        Ok(()) => json_response(StatusCode::OK, String::new()),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    minter: &Minter,
    clients: &ClientAuth,
    req: Request<RequestBody>,
    source: &Source,
    now: i64,
) -> Result<(), OAuthError> {
    let (parts, body) = req.into_parts();
    let form: Form = read_form(&parts.headers, body).await?;
    let client = clients
        .authenticate(&parts.headers, &form, true, source)
        .await?;
    let token = form
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or(OAuthError::InvalidRequest("token is required"))?;
    if looks_like_jwt(token) {
        revoke_access(minter, &client, token, now).await
    } else {
        revoke_refresh(minter, &client, token, now).await
    }
}

/// Records the `jti` of one of this issuer's access tokens, issued to `client`
/// and not yet expired, as revoked until its `exp`.
async fn revoke_access(
    minter: &Minter,
    client: &Client,
    token: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let store = minter.store.as_ref();
    let own = OwnTokens::new(&minter.keys, &minter.section.url, store);
    let Some(claims) = own.live_access(token, now, Purpose::Revoke).await? else {
        return Ok(());
    };
    let field = |name: &str| claims.get(name);
    let (Some(jti), Some(exp), Some(iat), Some(owner)) = (
        field("jti").and_then(Value::as_str),
        field("exp").and_then(Value::as_i64),
        field("iat").and_then(Value::as_i64),
        field("client_id").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    if owner != client.client_id {
        foreign(client);
        return Ok(());
    }
    let data = json!({
        "token_type": "access_token",
        "jti": jti,
        "client_id": owner,
        "sub": field("sub").and_then(Value::as_str),
    });
    let fact = revocation::jti(jti, iat, exp, now);
    let mut tx = store.begin().await?;
    tx.record_revocation(&fact).await?;
    let (event, audit) = reported("token.revoked", &client.client_id, jti, data, now);
    tx.enqueue_event(&event).await?;
    tx.insert_audit(&audit).await?;
    tx.commit().await?;
    minter.revocations.applied(&[fact]);
    tracing::debug!(client = %client.client_id, jti, "Access token revoked");
    Ok(())
}

/// Revokes the family of a refresh token issued to `client`.
async fn revoke_refresh(
    minter: &Minter,
    client: &Client,
    token: &str,
    now: i64,
) -> Result<(), OAuthError> {
    let found = minter
        .store
        .find_family_by_token_hash(&token_hash(token))
        .await?;
    let Some(found) = found else {
        return Ok(());
    };
    let family = &found.family;
    let live = family.revoked_at.is_none() && !expired(family, now);
    if !live {
        return Ok(());
    }
    if family.client_id != client.client_id {
        foreign(client);
        return Ok(());
    }
    if revoke_reported(
        minter,
        &found.family,
        &client.client_id,
        "token.revoked",
        now,
    )
    .await?
    {
        tracing::debug!(client = %client.client_id, family = %found.family.id, "Refresh token family revoked");
    }
    Ok(())
}

/// Notes a live token issued to another client, which is not revoked.
fn foreign(client: &Client) {
    tracing::debug!(client = %client.client_id, reason = "foreign_token", "Revocation ignored");
}
