//! `/oauth/userinfo` (OIDC Core §5.3): the bearer token must be one of this
//! issuer's live access tokens (`issuer::access`: a published key, `typ:
//! at+jwt`, our `iss`, `exp`/`nbf`, no stored revocation), and the subject's
//! claims are returned. Failures answer 401
//! with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::Flow;
use super::exchange::Profile;
use crate::auth::bearer::{self, Credentials};
use crate::issuer::access::{OwnTokens, Purpose};
use crate::issuer::body::RequestBody;
use crate::issuer::error::{OAuthError, json_response};

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
    pub(super) async fn userinfo(&self, req: &Request<RequestBody>) -> Response<Full<Bytes>> {
        match self.userinfo_claims(req).await {
            Ok(body) => json_response(StatusCode::OK, body.to_string()),
            Err(e) => {
                tracing::debug!(reason = %e, "Userinfo refused");
                e.into_response()
            }
        }
    }

    async fn userinfo_claims(&self, req: &Request<RequestBody>) -> Result<Value, UserinfoError> {
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
        let (org, membership) = match self.tenancy(&user.id, org_id).await {
            Ok(found) => found,
            // Logged where it failed; the token is not at fault.
            Err(OAuthError::Server) => return Err(UserinfoError::Server),
            // The organization or the membership is gone.
            Err(_) => return Err(UserinfoError::InvalidToken),
        };
        let mut body = serde_json::to_value(Profile::of(&user, org.as_ref(), membership.as_ref()))
            .map_err(|_| UserinfoError::Server)?;
        body["sub"] = Value::String(user.id);
        Ok(body)
    }

    /// Which tokens are ours, with the keys in force now.
    pub(super) fn own_tokens(&self) -> OwnTokens<'_> {
        OwnTokens::new(&self.keys, &self.section.url, self.store.as_ref())
    }

    /// The claims of one of our live access tokens (`access`); anything
    /// else, an ID token included, is `InvalidToken`.
    async fn verify_access(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, Value>, UserinfoError> {
        let now = self.clock.now_unix();
        let own = self.own_tokens();
        match own.live_access(token, now, Purpose::Use).await {
            Ok(Some(claims)) => Ok(claims),
            Ok(None) => Err(UserinfoError::InvalidToken),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::events::chain(&e), "Revocation lookup failed");
                Err(UserinfoError::Server)
            }
        }
    }
}
