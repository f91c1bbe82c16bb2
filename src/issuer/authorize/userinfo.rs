//! `/oauth/userinfo` (OIDC Core §5.3): the bearer access token is verified with
//! the issuer's own published keys (`auth::verify`), its `iss`, `exp`/`nbf` and
//! revocation checked, and the subject's claims returned. Failures answer 401
//! with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use super::Flow;
use super::exchange::Profile;
use crate::auth::bearer::{self, Credentials};
use crate::auth::keys::{KeyLookup, KeySet, parse_jwks};
use crate::auth::verify::{self, Window};
use crate::issuer::error::json_response;
use crate::issuer::introspect::is_revoked;

/// Why a userinfo request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum UserinfoError {
    /// No or a malformed `Authorization` header (the client's fault).
    #[error("the request carries no usable bearer token")]
    InvalidRequest,
    /// The token is not one of ours, is expired or revoked (the client's).
    #[error("the access token is invalid")]
    InvalidToken,
    /// The token lacks the `openid` scope (the client's).
    #[error("the access token lacks the openid scope")]
    InsufficientScope,
    /// Storage or key trouble (ours; logged where it happened).
    #[error("the userinfo lookup failed")]
    Server,
}

// === impl UserinfoError ===

impl UserinfoError {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, challenge, code) = match self {
            UserinfoError::InvalidRequest => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"portcullis\"",
                "invalid_request",
            ),
            UserinfoError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"portcullis\", error=\"invalid_token\"",
                "invalid_token",
            ),
            UserinfoError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"openid\"",
                "insufficient_scope",
            ),
            UserinfoError::Server => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Bearer realm=\"portcullis\"",
                "server_error",
            ),
        };
        let body = serde_json::json!({ "error": code, "error_description": self.to_string() });
        let mut resp = json_response(status, body.to_string());
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        resp
    }
}

// === impl Flow ===

impl Flow {
    /// `GET` or `POST /oauth/userinfo`.
    pub(super) async fn userinfo(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match self.userinfo_claims(req).await {
            Ok(body) => json_response(StatusCode::OK, body.to_string()),
            Err(e) => {
                tracing::debug!(reason = %e, "Userinfo refused");
                e.into_response()
            }
        }
    }

    async fn userinfo_claims(&self, req: &Request<Incoming>) -> Result<Value, UserinfoError> {
        let token = match bearer::read(req.headers()) {
            Ok(Credentials::Bearer(t)) => t,
            Ok(_) | Err(_) => return Err(UserinfoError::InvalidRequest),
        };
        let claims = self.verify_access(token).await?;
        let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(UserinfoError::InsufficientScope);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(UserinfoError::InvalidToken)?;
        let store_failed = |e: crate::issuer::store::StoreError| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Userinfo lookup failed");
            UserinfoError::Server
        };
        let user = self
            .store
            .get_user(sub)
            .await
            .map_err(store_failed)?
            .ok_or(UserinfoError::InvalidToken)?;
        let org_id = claims.get("org_id").and_then(Value::as_str);
        let (org, membership) = self
            .tenancy(&user.id, org_id)
            .await
            .map_err(|_| UserinfoError::InvalidToken)?;
        let mut body = serde_json::to_value(Profile::of(&user, org.as_ref(), membership.as_ref()))
            .map_err(|_| UserinfoError::Server)?;
        body["sub"] = Value::String(user.id);
        Ok(body)
    }

    /// The claims of a JWT this issuer signed (with a key it still publishes)
    /// and whose `iss` is this issuer, and whether its `typ` is `at+jwt` (one
    /// of our access tokens); nothing about its time.
    pub(super) fn signed_by_us(
        &self,
        token: &str,
    ) -> Result<(serde_json::Map<String, Value>, bool), UserinfoError> {
        let parsed = verify::parse(token).map_err(|_| UserinfoError::InvalidToken)?;
        let keys = parse_jwks(&self.keys.current().jwks).map_err(|_| UserinfoError::Server)?;
        let set = KeySet {
            keys,
            generation: 0,
        };
        let KeyLookup::Found(key) = set.find(parsed.kid.as_deref(), parsed.alg) else {
            return Err(UserinfoError::InvalidToken);
        };
        verify::verify_signature(&parsed, key).map_err(|_| UserinfoError::InvalidToken)?;
        let at_jwt = parsed.at_jwt;
        let claims = parsed.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.section.url.as_str()) {
            return Err(UserinfoError::InvalidToken);
        }
        Ok((claims, at_jwt))
    }

    /// Verifies one of our access tokens: signature with a published key,
    /// `iss`, `typ`, the time window, and that no stored revocation matches it.
    async fn verify_access(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, Value>, UserinfoError> {
        let (claims, at_jwt) = self.signed_by_us(token)?;
        // An ID token (typ JWT) is not an access token, whatever its claims.
        if !at_jwt {
            return Err(UserinfoError::InvalidToken);
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(UserinfoError::InvalidToken)?;
        let window = Window {
            exp,
            nbf: claims.get("nbf").and_then(Value::as_i64),
        };
        verify::check_window(window, self.clock.now_unix(), 0)
            .map_err(|_| UserinfoError::InvalidToken)?;
        let revoked = is_revoked(self.store.as_ref(), &claims).await.map_err(|e| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Revocation lookup failed");
            UserinfoError::Server
        })?;
        if revoked {
            return Err(UserinfoError::InvalidToken);
        }
        Ok(claims)
    }
}
