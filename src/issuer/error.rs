//! OAuth 2.0 errors (RFC 6749 §5.2, RFC 8707 `invalid_target`, `slow_down`,
//! `temporarily_unavailable`, and `access_denied` for a token a blocking hook
//! refused) and the one place they become responses: JSON,
//! `Cache-Control: no-store`, for `invalid_client` a 401 with a
//! `WWW-Authenticate` challenge, `Retry-After` when the client should wait,
//! and 408 for a request body that stopped arriving.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::body::{BodyError, FormFault};
use super::hooks::{Reason, Refusal};
use super::store::StoreError;

/// A refused token request. Descriptions are fixed phrases (never a secret,
/// never a token, never an internal error text), except a blocking hook's
/// reason, which is made plain text of bounded length ([`Reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Nothing more of the request body arrived for
    /// `server.limits.body_timeout`: 408, `invalid_request`.
    #[error("invalid_request: the request body stalled")]
    BodyStalled,
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    #[error("unauthorized_client")]
    UnauthorizedClient,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope")]
    InvalidScope,
    #[error("invalid_target")]
    InvalidTarget,
    /// This source must wait before its next attempt: failed
    /// authentications are being slowed down (`throttle`), or it holds its
    /// share of the argon2 budget. 429 with `Retry-After`.
    #[error("slow_down")]
    SlowDown {
        /// Seconds until an attempt is taken again.
        retry_after: u64,
    },
    /// Every argon2 slot is busy and the wait for one is over (`kdf`). 503
    /// with `Retry-After`.
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable {
        /// Seconds after which to try again.
        retry_after: u64,
    },
    /// A `token.pre_issue` hook denied the token, for this reason (shown to
    /// the client). 403.
    #[error("access_denied")]
    AccessDenied(Reason),
    /// A `token.pre_issue` hook with `on_failure: deny` could not be asked
    /// (logged where it happened): 503, as a dependency of ours is down and a
    /// later try may pass; never the hook's address.
    #[error("temporarily_unavailable: a hook failed")]
    HookUnavailable,
    /// Our fault (storage, signing); logged where it happened (a
    /// [`StoreError`] by its conversion).
    #[error("server_error")]
    Server,
}

impl From<Refusal> for OAuthError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Denied { reason, .. } => OAuthError::AccessDenied(reason),
            Refusal::Failed { .. } => OAuthError::HookUnavailable,
        }
    }
}

impl From<StoreError> for OAuthError {
    /// A storage failure is ours: it is logged here, with the place the
    /// conversion was made (the `?`), and the client learns only
    /// `server_error`, never the store's text.
    #[track_caller]
    fn from(e: StoreError) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(error = %crate::telemetry::events::chain(&e), %at, "Issuer storage failed");
        OAuthError::Server
    }
}

impl From<BodyError> for OAuthError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::MediaType => {
                OAuthError::InvalidRequest("the body must be application/x-www-form-urlencoded")
            }
            BodyError::Unreadable => {
                OAuthError::InvalidRequest("the request body is too large or unreadable")
            }
            BodyError::Stalled => OAuthError::BodyStalled,
        }
    }
}

impl From<FormFault> for OAuthError {
    fn from(f: FormFault) -> Self {
        match f {
            FormFault::Nul => OAuthError::InvalidRequest("a parameter holds a NUL character"),
            FormFault::Repeated => OAuthError::InvalidRequest("a parameter is repeated"),
        }
    }
}

impl OAuthError {
    /// The `error` code: RFC 6749 §5.2, RFC 8707 `invalid_target`, and two
    /// codes for "not now": `slow_down` (registered for the token endpoint by
    /// RFC 8628) with 429, and `temporarily_unavailable` (RFC 6749 §4.1.2.1)
    /// with 503 — both with `Retry-After`, which generic HTTP clients honour.
    /// `invalid_client` would be wrong: the credentials were not checked.
    /// A body that stopped arriving is `invalid_request` (the request is
    /// incomplete, the client's fault) with 408: RFC 6749 §5.2 has no code
    /// for it, and a client looks at the `error` codes it knows.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::BodyStalled => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::SlowDown { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable { .. } | OAuthError::HookUnavailable => {
                "temporarily_unavailable"
            }
            OAuthError::AccessDenied(_) => "access_denied",
            OAuthError::Server => "server_error",
        }
    }

    fn description(&self) -> &str {
        match self {
            OAuthError::InvalidRequest(d) | OAuthError::InvalidGrant(d) => d,
            OAuthError::BodyStalled => "the request body did not arrive in time",
            OAuthError::AccessDenied(reason) => reason.as_str(),
            OAuthError::HookUnavailable => {
                "a check required to issue the token is unavailable; try again later"
            }
            OAuthError::InvalidClient => "client authentication failed",
            OAuthError::SlowDown { .. } => {
                "too many attempts from this address; try again after the delay"
            }
            OAuthError::TemporarilyUnavailable { .. } => {
                "the server is busy checking credentials; try again shortly"
            }
            OAuthError::UnauthorizedClient => "the client may not use this grant type",
            OAuthError::UnsupportedGrantType => "the grant type is not supported",
            OAuthError::InvalidScope => "the requested scope is not allowed",
            OAuthError::InvalidTarget => "the requested resource is unknown or not allowed",
            OAuthError::Server => "the server could not complete the request",
        }
    }

    /// The response: status, challenge, JSON body, no caching.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = match self {
            OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable { .. } | OAuthError::HookUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            OAuthError::AccessDenied(_) => StatusCode::FORBIDDEN,
            OAuthError::BodyStalled => StatusCode::REQUEST_TIMEOUT,
            OAuthError::Server => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::InvalidRequest(_)
            | OAuthError::InvalidGrant(_)
            | OAuthError::UnauthorizedClient
            | OAuthError::UnsupportedGrantType
            | OAuthError::InvalidScope
            | OAuthError::InvalidTarget => StatusCode::BAD_REQUEST,
        };
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.description() });
        let mut resp = json_response(status, body.to_string());
        match self {
            OAuthError::InvalidClient => {
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"portcullis\""),
                );
            }
            OAuthError::SlowDown { retry_after }
            | OAuthError::TemporarilyUnavailable { retry_after } => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            OAuthError::InvalidRequest(_)
            | OAuthError::BodyStalled
            | OAuthError::InvalidGrant(_)
            | OAuthError::UnauthorizedClient
            | OAuthError::UnsupportedGrantType
            | OAuthError::InvalidScope
            | OAuthError::InvalidTarget
            | OAuthError::AccessDenied(_)
            | OAuthError::HookUnavailable
            | OAuthError::Server => {}
        }
        resp
    }
}

/// A JSON response that no cache may store (RFC 6749 §5.1).
pub fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_stalled_body_is_a_408_invalid_request() {
        let e = OAuthError::from(BodyError::Stalled);
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "invalid_request",
                "error_description": "the request body did not arrive in time"
            })
        );
    }

    #[tokio::test]
    async fn a_store_error_is_a_server_error_that_says_nothing_of_it() {
        let e: OAuthError = StoreError::Conflict("private table").into();
        assert_eq!(e, OAuthError::Server);
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "server_error",
                "error_description": "the server could not complete the request"
            })
        );
    }
}
