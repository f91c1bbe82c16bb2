//! OAuth 2.0 errors (RFC 6749 §5.2, RFC 8707 `invalid_target`) and the one place
//! they become responses: JSON, `Cache-Control: no-store`, and for
//! `invalid_client` a 401 with a `WWW-Authenticate` challenge.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A refused token request. Descriptions are fixed phrases: never a secret,
/// never a token, never an internal error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
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
    /// Too many failed authentications for this client: try again later.
    #[error("too many failed attempts")]
    SlowDown,
    /// Our fault (storage, signing); logged where it happened.
    #[error("server_error")]
    Server,
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient | OAuthError::SlowDown => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::Server => "server_error",
        }
    }

    fn description(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(d) | OAuthError::InvalidGrant(d) => d,
            OAuthError::InvalidClient => "client authentication failed",
            OAuthError::SlowDown => "too many failed client authentications; try again later",
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
            OAuthError::SlowDown => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::Server => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.description() });
        let mut resp = json_response(status, body.to_string());
        if self == OAuthError::InvalidClient {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\""),
            );
        }
        if self == OAuthError::SlowDown {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("60"));
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
