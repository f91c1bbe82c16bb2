//! The error responses of the admin API's OpenAPI document, each a
//! [`ToResponse`] whose body is [`ErrorBody`], the type every error is
//! written from. They exist for the document only and are never built.
#![allow(dead_code)]

use utoipa::ToResponse;

use super::super::error::ErrorBody;

/// The request is malformed: a body that is not JSON of the expected shape
/// or too large (64 KiB), a value the API refuses (the description names
/// it), or a query parameter that is unknown, repeated or out of range (a
/// `cursor` this list did not give).
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct BadRequest(ErrorBody);

/// No valid access token (`invalid_token`): none, not ours, expired,
/// revoked, or for another audience than `{issuer.url}/admin/v1`.
#[derive(ToResponse)]
#[response(headers(
    ("WWW-Authenticate" = String, description = "`Bearer realm=\"portcullis\"`, with \
        `error=\"invalid_token\"` when a token was presented")
))]
pub(in crate::issuer::admin_api) struct Unauthorized(ErrorBody);

/// The token lacks the `portcullis:admin` scope (`insufficient_scope`), or
/// a blocking hook denied the change (`access_denied`, with its reason).
#[derive(ToResponse)]
#[response(headers(
    ("WWW-Authenticate" = String, description = "`Bearer realm=\"portcullis\", \
        error=\"insufficient_scope\", scope=\"portcullis:admin\"` for a token without the scope")
))]
pub(in crate::issuer::admin_api) struct Forbidden(ErrorBody);

/// No record has the id the path names (`not_found`).
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct NotFound(ErrorBody);

/// The change conflicts with what exists (`conflict`): the id, identifier,
/// name, email or URL is taken, or the user is not in the state the change
/// needs.
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct Conflict(ErrorBody);

/// The body is not `application/json` (`invalid_request`).
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct UnsupportedMediaType(ErrorBody);

/// Nothing more of the body arrived for the gateway's
/// `server.limits.body_timeout` (`invalid_request`); the connection is
/// closed.
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct RequestTimeout(ErrorBody);

/// The server failed (`server_error`, a fixed description; the cause is
/// logged).
#[derive(ToResponse)]
pub(in crate::issuer::admin_api) struct ServerError(ErrorBody);

/// Another replica is rotating the keys, or a check the change needs is
/// unavailable (`temporarily_unavailable`); try again later.
#[derive(ToResponse)]
#[response(headers(
    ("Retry-After" = String, description = "Seconds to wait before trying again")
))]
pub(in crate::issuer::admin_api) struct Unavailable(ErrorBody);
