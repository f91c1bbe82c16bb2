//! The admin API's errors and the one place they become responses: status,
//! `WWW-Authenticate` or `Allow`, and a JSON body [`ErrorBody`]
//! (`{"error", "error_description"}`) whose descriptions of our own failures
//! are fixed phrases.

use bytes::Bytes;
use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use utoipa::ToSchema;

use super::ADMIN_SCOPE;
use crate::issuer::body::{BodyError, JsonError};
use crate::issuer::error::json_response;
use crate::issuer::hooks::Refusal;
use crate::issuer::manage::ManageError;
use crate::issuer::store::StoreError;

/// Why an admin request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable bearer token; `sent` says whether one was presented.
    #[error("no valid access token")]
    Unauthorized {
        /// Whether the request carried credentials at all.
        sent: bool,
    },
    /// The token lacks `portcullis:admin`.
    #[error("the token lacks the admin scope")]
    Forbidden,
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not for this method; the value is `Allow`.
    #[error("method not allowed")]
    Method(String),
    /// The body or query is not of the expected shape, or too large.
    #[error("invalid request: {0}")]
    Request(&'static str),
    /// The body is not `application/json`.
    #[error("the body must be application/json")]
    MediaType,
    /// Nothing more of the body arrived for `server.limits.body_timeout`.
    #[error("the request body stalled")]
    BodyStalled,
    /// The record the path names does not exist (the caller's fault).
    #[error("no such record")]
    Missing(#[source] ManageError),
    /// The service layer refused or failed.
    #[error("the change was not made")]
    Manage(#[source] ManageError),
    /// The response could not be written as JSON (ours).
    #[error("cannot encode the response")]
    Encode(#[source] serde_json::Error),
}

/// The body of every error response of the admin API.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, as a code: `invalid_token`, `insufficient_scope`,
    /// `invalid_request`, `not_found`, `method_not_allowed`, `conflict`,
    /// `access_denied`, `temporarily_unavailable`, `server_error`.
    pub error: &'static str,
    /// A sentence for people: which value is wrong and why, or a fixed
    /// phrase for failures of the server.
    pub error_description: String,
}

// === impl ApiError ===

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        ApiError::Manage(e)
    }
}

impl From<JsonError> for ApiError {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Body(BodyError::MediaType) => ApiError::MediaType,
            JsonError::Body(BodyError::Unreadable) => {
                ApiError::Request("the request body is too large or unreadable")
            }
            JsonError::Body(BodyError::Stalled) => ApiError::BodyStalled,
            JsonError::Shape => ApiError::Request("the body is not JSON of the expected shape"),
            JsonError::Nul => ApiError::Request("the body holds a NUL character"),
        }
    }
}

impl ApiError {
    /// For a request whose path names the record: an unknown id there is a
    /// 404, not a 400 as an unknown id in the body is.
    pub(super) fn in_path(e: ManageError) -> ApiError {
        match e {
            ManageError::UnknownUser(_)
            | ManageError::UnknownOrganization(_)
            | ManageError::UnknownClient(_)
            | ManageError::UnknownWebhook(_)
            | ManageError::UnknownEvent(_)
            | ManageError::NotMember { .. } => ApiError::Missing(e),
            other => ApiError::Manage(other),
        }
    }

    /// A failure of the store outside the service layer (ours).
    pub(super) fn store(e: StoreError) -> ApiError {
        ApiError::Manage(ManageError::Store(e))
    }

    /// The response: status, challenge, JSON body. Descriptions of our own
    /// failures are fixed phrases; the cause is logged here.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, code, description) = match &self {
            ApiError::Unauthorized { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a valid access token of this issuer is required".to_owned(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("the token lacks the {ADMIN_SCOPE} scope"),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".to_owned(),
            ),
            ApiError::Method(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the endpoint does not allow this method".to_owned(),
            ),
            ApiError::Request(d) => (StatusCode::BAD_REQUEST, "invalid_request", (*d).to_owned()),
            ApiError::MediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "the body must be application/json".to_owned(),
            ),
            ApiError::BodyStalled => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body did not arrive in time".to_owned(),
            ),
            ApiError::Missing(e) => (StatusCode::NOT_FOUND, "not_found", e.to_string()),
            ApiError::Manage(e) => manage_status(e),
            ApiError::Encode(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not complete the request".to_owned(),
            ),
        };
        if status.is_server_error() {
            tracing::error!(error = %crate::telemetry::events::chain(&self), "Admin API request failed");
        } else {
            tracing::debug!(
                status = status.as_u16(),
                reason = code,
                "Admin API request refused"
            );
        }
        let body = ErrorBody {
            error: code,
            error_description: description,
        };
        // Two strings always serialize.
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut resp = json_response(status, text);
        let h = resp.headers_mut();
        match self {
            ApiError::Unauthorized { sent: false } => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"portcullis\""),
                );
            }
            ApiError::Unauthorized { sent: true } => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"portcullis\", error=\"invalid_token\"",
                    ),
                );
            }
            ApiError::Forbidden => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"portcullis:admin\"",
                    ),
                );
            }
            ApiError::Method(allowed) => {
                if let Ok(v) = HeaderValue::from_str(&allowed) {
                    h.insert(ALLOW, v);
                }
            }
            ApiError::Manage(ManageError::RotationBusy) => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::NotFound
            | ApiError::Request(_)
            | ApiError::MediaType
            | ApiError::BodyStalled
            | ApiError::Missing(_)
            | ApiError::Manage(_)
            | ApiError::Encode(_) => {}
        }
        resp
    }
}

/// Status, code and description of a refusal or failure of the service
/// layer. A caller's fault names the caller's own values only.
fn manage_status(e: &ManageError) -> (StatusCode, &'static str, String) {
    let ours = "the server could not complete the request".to_owned();
    match e {
        ManageError::UnknownClient(_)
        | ManageError::UnknownOrganization(_)
        | ManageError::UnknownWebhook(_)
        | ManageError::UnknownEvent(_)
        | ManageError::NotMember { .. } => (StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ManageError::Invalid { .. }
        | ManageError::UnknownApi(_)
        | ManageError::UnknownScope { .. }
        | ManageError::UnknownUser(_)
        | ManageError::UnknownRole(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
        }
        ManageError::Exists(_)
        | ManageError::UserState { .. }
        | ManageError::ConfiguredWebhook(_)
        | ManageError::EventState { .. } => (StatusCode::CONFLICT, "conflict", e.to_string()),
        ManageError::UserRefused {
            refusal: Refusal::Denied { reason, .. },
            ..
        } => (StatusCode::FORBIDDEN, "access_denied", reason.to_string()),
        ManageError::UserRefused {
            refusal: Refusal::Failed { .. },
            ..
        } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "a check required to create the user is unavailable; try again later".to_owned(),
        ),
        ManageError::RotationBusy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.to_string(),
        ),
        ManageError::Crypto | ManageError::Keys(_) | ManageError::Store(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error", ours)
        }
    }
}
