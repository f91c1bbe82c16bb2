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
//! An access token is active when it is a JWT of type `at+jwt` signed by one
//! of the keys this issuer publishes, names this issuer as `iss`, is inside its
//! `exp`/`nbf` window, and no stored revocation matches it (its `jti`, its
//! family, or its user or client since it was issued): the same facts the
//! gateway's revocation set holds, read from the store, so a replica answers
//! alike before its set has caught up. A refresh token is active
//! when it is the current token of a family that is neither revoked nor past
//! its absolute or idle expiry. Anything else is `{"active": false}`, with
//! nothing said about why. Responses carry `Cache-Control: no-store`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::clients::{ClientAuth, Form, read_form};
use super::error::{OAuthError, json_response};
use super::refresh::family_expired;
use super::store::{Client, PresentedToken, Store, StoreError, TokenFacts};
use super::throttle::Source;
use super::token::{Minter, token_hash};
use crate::auth::keys::{KeyLookup, KeySet};
use crate::auth::revocation::FAMILY_CLAIM;
use crate::auth::verify::{Window, check_window, parse, verify_signature};

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
    req: Request<Incoming>,
    source: &Source,
    now: i64,
) -> Response<Full<Bytes>> {
    match introspect(minter, clients, req, source, now).await {
        Ok(body) => json_response(StatusCode::OK, body.to_string()),
        Err(e) => e.into_response(),
    }
}

/// Whether `token` has the form of a compact JWS (three dot-separated parts);
/// refresh tokens are base64url and never contain a dot.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// The claims of `token` when it is an access token (`typ: at+jwt`) signed by
/// a key this issuer publishes and issued by it. Time is not checked here.
pub(super) fn verified_access_claims(minter: &Minter, token: &str) -> Option<Map<String, Value>> {
    if !is_access_token_type(token) {
        return None;
    }
    let unverified = parse(token).ok()?;
    let set = KeySet {
        keys: minter.keys.current().verify_keys.clone(),
        generation: 0,
    };
    let KeyLookup::Found(key) = set.find(unverified.kid.as_deref(), unverified.alg) else {
        return None;
    };
    verify_signature(&unverified, key).ok()?;
    let claims = unverified.claims;
    let ours = claims.get("iss").and_then(Value::as_str) == Some(minter.section.url.as_str());
    ours.then_some(claims)
}

/// Whether a stored revocation matches the access token with `claims` (of
/// this issuer, signature checked). A token without the claims a check needs
/// (`jti`, `sub`, `iat`) counts as revoked: ours always carry them.
pub(super) async fn is_revoked(
    store: &dyn Store,
    claims: &Map<String, Value>,
) -> Result<bool, StoreError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let (Some(jti), Some(sub), Some(iat)) = (
        text("jti"),
        text("sub"),
        claims.get("iat").and_then(Value::as_i64),
    ) else {
        return Ok(true);
    };
    let facts = TokenFacts {
        jti,
        family_id: text(FAMILY_CLAIM),
        sub,
        client_id: text("client_id"),
        iat,
    };
    store.is_revoked(&facts).await
}

/// Whether the JWS header says `typ: at+jwt` (RFC 9068), which sets access
/// tokens apart from this issuer's ID tokens.
fn is_access_token_type(token: &str) -> bool {
    let Some(head) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(head) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Map<String, Value>>(&bytes) else {
        return false;
    };
    header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
}

async fn introspect(
    minter: &Minter,
    clients: &ClientAuth,
    req: Request<Incoming>,
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
    let Some(claims) = verified_access_claims(minter, token) else {
        return Ok(None);
    };
    if !may_see_access(client, &claims) {
        tracing::debug!(client = %client.client_id, "Introspection of another client's token answered inactive");
        return Ok(None);
    }
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let Some(exp) = number("exp") else {
        return Ok(None);
    };
    if check_window(
        Window {
            exp,
            nbf: number("nbf"),
        },
        now,
        0,
    )
    .is_err()
    {
        return Ok(None);
    }
    if is_revoked(minter.store.as_ref(), &claims).await? {
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
        || family_expired(&family, now)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_and_refresh_tokens_are_told_apart_by_form() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("abc_-DEF"));
        assert!(!looks_like_jwt("a.b"));
    }

    #[test]
    fn only_at_jwt_headers_are_access_tokens() {
        let head = |h: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h));
        assert!(is_access_token_type(&head(r#"{"typ":"at+jwt"}"#)));
        assert!(is_access_token_type(&head(r#"{"typ":"AT+JWT"}"#)));
        assert!(!is_access_token_type(&head(r#"{"typ":"JWT"}"#)));
        assert!(!is_access_token_type(&head(r#"{}"#)));
        assert!(!is_access_token_type("!!.e30.sig"));
    }
}
