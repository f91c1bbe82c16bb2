//! `POST /oauth/introspect` (RFC 7662), for authenticated clients only (a
//! public client, or none, gets 401 `invalid_client`).
//!
//! A client learns about its own tokens only (RFC 7662 §4: the server
//! decides which clients may see which tokens): an access token is described
//! to the client it was issued to (`client_id`), or to a client whose
//! `introspection` list holds the token's audience (a resource server's
//! client, checking the tokens its API receives); a refresh token only to the
//! client it was issued to (no resource server ever holds one). To anyone
//! else a live token is `{"active": false}`, as an unknown one is.
//!
//! An access token is active when it is one of this issuer's live access
//! tokens (`access`: `typ: at+jwt`, signed by a key this issuer publishes,
//! our `iss`, inside its `exp`/`nbf` window, and no stored revocation matches
//! it — the same facts the gateway's revocation set holds, read from the
//! store, so a replica answers alike before its set has caught up). A refresh
//! token is active
//! when it is the current token of a family that is neither revoked nor past
//! its absolute or idle expiry. Anything else is `{"active": false}`, with
//! nothing said about why. Responses carry `Cache-Control: no-store`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use super::access::{OwnTokens, Purpose, looks_like_jwt};
use super::body::RequestBody;
use super::clients::{ClientAuth, Form, read_form};
use super::error::{OAuthError, json_response};
use super::family;
use super::store::{Client, PresentedToken};
use super::throttle::Source;
use super::token::{Minter, token_hash};

/// The claims of an active access token that introspection repeats.
const ACCESS_FIELDS: &[&str] = &[
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "jti",
    "org_id",
    "anonymous",
];

/// Answers one introspection request.
pub async fn handle(
    minter: &Minter,
    clients: &ClientAuth,
    req: Request<RequestBody>,
    source: &Source,
    now: i64,
) -> Response<Full<Bytes>> {
    match introspect(minter, clients, req, source, now).await {
        Ok(body) => json_response(StatusCode::OK, body.to_string()),
        Err(e) => e.into_response(),
    }
}

async fn introspect(
    minter: &Minter,
    clients: &ClientAuth,
    req: Request<RequestBody>,
    source: &Source,
    now: i64,
) -> Result<Value, OAuthError> {
    let (parts, body) = req.into_parts();
    let form: Form = read_form(&parts.headers, body).await?;
    let client = clients
        .authenticate(&parts.headers, &form, false, source)
        .await?;
    let token = form
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or(OAuthError::InvalidRequest("token is required"))?;
    let answer = if looks_like_jwt(token) {
        access(minter, &client, token, now).await?
    } else {
        refresh(minter, &client, token, now).await?
    };
    Ok(answer.unwrap_or_else(|| json!({ "active": false })))
}

/// Whether `client` may learn about the access token with `claims`: it was
/// issued to `client`, or is for an API `client` may introspect.
fn may_see_access(client: &Client, claims: &Map<String, Value>) -> bool {
    if claims.get("client_id").and_then(Value::as_str) == Some(client.client_id.as_str()) {
        return true;
    }
    let allowed = |aud: &Value| {
        aud.as_str()
            .is_some_and(|a| client.introspection.iter().any(|i| i == a))
    };
    match claims.get("aud") {
        Some(Value::Array(auds)) => auds.iter().any(allowed),
        Some(aud) => allowed(aud),
        None => false,
    }
}

async fn access(
    minter: &Minter,
    client: &Client,
    token: &str,
    now: i64,
) -> Result<Option<Value>, OAuthError> {
    let own = OwnTokens::new(&minter.keys, &minter.section.url, minter.store.as_ref());
    let Some(claims) = own.live_access(token, now, Purpose::Use).await? else {
        return Ok(None);
    };
    if !may_see_access(client, &claims) {
        tracing::debug!(client = %client.client_id, "Introspection of another client's token answered inactive");
        return Ok(None);
    }
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    for &name in ACCESS_FIELDS {
        if let Some(v) = claims.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    out.insert("token_type".into(), Value::from("Bearer"));
    Ok(Some(Value::Object(out)))
}

async fn refresh(
    minter: &Minter,
    client: &Client,
    token: &str,
    now: i64,
) -> Result<Option<Value>, OAuthError> {
    let found = minter
        .store
        .find_family_by_token_hash(&token_hash(token))
        .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let family = found.family;
    if family.client_id != client.client_id {
        tracing::debug!(client = %client.client_id, "Introspection of another client's refresh token answered inactive");
        return Ok(None);
    }
    if found.presented != PresentedToken::Current
        || family.revoked_at.is_some()
        || family::expired(&family, now)
    {
        return Ok(None);
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "client_id": family.client_id,
        "sub": family.user_id,
        "scope": family.scope,
        "exp": family.absolute_expires_at,
    })))
}
