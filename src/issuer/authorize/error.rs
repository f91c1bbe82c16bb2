//! Why an authorization request failed, and the `error` code and fixed
//! description each failure carries back to the client (RFC 6749 §4.1.2.1).

use super::session::StateError;
use crate::issuer::store::StoreError;

/// Why an authorization request failed. The first two are shown on a page
/// (the redirect URI cannot be trusted); the others go back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    #[error("the client is unknown")]
    UnknownClient,
    #[error("the redirect uri is not registered for the client")]
    BadRedirectUri,
    #[error("the authorization request is invalid")]
    InvalidRequest(&'static str),
    #[error("the response type is not supported")]
    UnsupportedResponseType,
    #[error("the client may not use the authorization code grant")]
    UnauthorizedClient,
    #[error("the requested scope is invalid")]
    InvalidScope,
    #[error("the requested resource is unknown or not allowed")]
    InvalidTarget,
    #[error("the user may not authorize this request")]
    AccessDenied(&'static str),
    #[error("prompt=none, and the user is not signed in or must sign in again")]
    LoginRequired,
    #[error("prompt=none, and the user must choose an organization")]
    AccountSelectionRequired,
    #[error("the request uses a parameter the issuer does not implement")]
    NotSupported {
        code: &'static str,
        description: &'static str,
    },
    #[error("the issuer could not complete the request")]
    Server,
}

// === impl AuthorizeError ===

impl AuthorizeError {
    /// Logs a store failure (ours) and names it.
    pub(super) fn store(err: &StoreError) -> AuthorizeError {
        tracing::error!(error = %crate::telemetry::events::chain(err), "Login flow storage failed");
        AuthorizeError::Server
    }

    /// Logs a failure of the login state (ours) and names it.
    pub(super) fn state(err: &StateError) -> AuthorizeError {
        tracing::error!(error = %crate::telemetry::events::chain(err), "Login flow state failed");
        AuthorizeError::Server
    }

    /// The `error` code and a fixed description.
    pub(super) fn code(self) -> (&'static str, &'static str) {
        match self {
            AuthorizeError::UnknownClient => ("invalid_request", "the client is unknown"),
            AuthorizeError::BadRedirectUri => (
                "invalid_request",
                "the redirect_uri is missing or not registered for this client",
            ),
            AuthorizeError::InvalidRequest(d) => ("invalid_request", d),
            AuthorizeError::UnsupportedResponseType => (
                "unsupported_response_type",
                "only response_type=code is supported",
            ),
            AuthorizeError::UnauthorizedClient => (
                "unauthorized_client",
                "the client may not use the authorization code grant",
            ),
            AuthorizeError::InvalidScope => ("invalid_scope", "the requested scope is invalid"),
            AuthorizeError::InvalidTarget => (
                "invalid_target",
                "the requested resource is unknown or not allowed",
            ),
            AuthorizeError::AccessDenied(d) => ("access_denied", d),
            AuthorizeError::LoginRequired => (
                "login_required",
                "the user must sign in, and prompt=none forbids asking",
            ),
            AuthorizeError::AccountSelectionRequired => (
                "account_selection_required",
                "the user must choose an organization, and prompt=none forbids asking",
            ),
            AuthorizeError::NotSupported { code, description } => (code, description),
            AuthorizeError::Server => ("server_error", "the server could not complete the request"),
        }
    }
}
