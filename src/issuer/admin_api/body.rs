//! What admin requests carry in their bodies: the JSON body readers
//! ([`issuer::body`](crate::issuer::body)'s, with this API's limit and
//! errors) and the body shapes of each endpoint (unknown fields refused),
//! which describe themselves to the OpenAPI document. Values are only parsed here;
//! [`manage`](crate::issuer::manage) validates them.

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use super::ApiError;
use crate::config::GrantType;
use crate::config::value::ParseValue;
use crate::issuer::body::{self, RequestBody};
use crate::issuer::manage::{
    DEFAULT_OVERLAP_SECS, ManageError, NewClient, NewUser, NewWebhook, Promotion, UserChanges,
};
use crate::issuer::store::ScopeMap;

/// The largest JSON body read.
const MAX_BODY: usize = 64 * 1024;

/// What `manage` takes for an email address (`check_email`): one `@` with
/// text on both sides, no white space or control character (the characters
/// Rust's `char::is_whitespace` and `char::is_control` name, spelled out,
/// since a pattern's `\s` is not quite the same set).
const EMAIL_PATTERN: &str = "^[^@\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+@[^@\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]+$";

/// `POST /apis`: an API resource (an audience) and its scopes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApi)]
pub(super) struct ApiBody {
    /// The audience URL (absolute), unique.
    #[schema(min_length = 1)]
    pub identifier: String,
    /// The scopes it defines: at least one, no duplicates, no spaces.
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
}

/// `POST /clients`: a client; a confidential one (not `public`) gets a
/// generated secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewClient)]
pub(super) struct ClientBody {
    /// A human-readable name.
    #[schema(min_length = 1)]
    name: String,
    /// `client_credentials`, `authorization_code`, `refresh_token` or
    /// `anonymous`.
    #[schema(min_items = 1)]
    grant_types: Vec<String>,
    /// Redirect URIs, matched exactly (authorization code grant).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// A public client has no secret and must use PKCE.
    #[serde(default)]
    public: bool,
    /// Whether the authorization-code grant requires PKCE.
    #[serde(default = "yes")]
    #[schema(default = true)]
    require_pkce: bool,
    /// The scopes the client may obtain, per API identifier.
    #[serde(default)]
    #[schema(inline)]
    scopes: ScopeMap,
    /// The APIs whose access tokens the client may introspect besides its own.
    #[serde(default)]
    introspection: Vec<String>,
}

/// `POST /organizations`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrganization)]
pub(super) struct OrgBody {
    /// The display name.
    #[schema(min_length = 1)]
    pub name: String,
}

/// `POST /users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
pub(super) struct UserBody {
    /// The email address, unique regardless of letter case.
    #[schema(schema_with = email_schema)]
    email: String,
    /// The password (at least 8 characters).
    #[schema(min_length = 8)]
    password: String,
    /// The full name.
    #[schema(min_length = 1)]
    name: String,
}

/// `PATCH /users/{id}`: absent fields stay; `"picture": null` removes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserChanges)]
pub(super) struct UserPatch {
    /// A new full name.
    #[serde(default)]
    name: Option<String>,
    /// A new email address.
    #[serde(default)]
    #[schema(schema_with = optional_email_schema)]
    email: Option<String>,
    /// A new picture URL; null removes it.
    #[serde(default, deserialize_with = "present")]
    picture: Option<Option<String>>,
    /// Whether the email address is verified.
    #[serde(default)]
    email_verified: Option<bool>,
    /// A new password (at least 8 characters); revokes the user's refresh
    /// tokens.
    #[serde(default)]
    #[schema(min_length = 8)]
    password: Option<String>,
}

/// `POST /users/{id}/promote`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Promotion)]
pub(super) struct PromoteBody {
    /// The user's email address from now on.
    #[schema(schema_with = email_schema)]
    email: String,
    /// The user's password (at least 8 characters).
    #[schema(min_length = 8)]
    password: String,
    /// The full name.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /roles`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewRole)]
pub(super) struct RoleBody {
    /// The name: 1 to 64 of the characters A-Z a-z 0-9 . _ : @ / + -
    /// (role names are joined by commas in `X-Auth-Roles`).
    #[schema(pattern = "^[A-Za-z0-9._:@/+-]{1,64}$")]
    pub name: String,
    /// The identifier of the API whose scopes the role grants.
    pub api: String,
    /// The scopes of that API the role grants.
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
}

/// `POST /organizations/{id}/members`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewMember)]
pub(super) struct MemberBody {
    /// The user to add (or whose roles to replace).
    pub user_id: String,
    /// The role names the user has in the organization.
    pub roles: Vec<String>,
}

/// `POST /webhooks`: `events` absent for every event, `secret` absent to
/// have one generated.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhook)]
pub(super) struct WebhookBody {
    /// Where events are delivered (http or https).
    #[schema(min_length = 1)]
    url: String,
    /// The events to deliver; absent or null for every event.
    #[serde(default)]
    events: Option<Vec<String>>,
    /// A Standard Webhooks secret (`whsec_…`); absent to have one generated.
    #[serde(default)]
    secret: Option<String>,
}

/// `POST /webhooks/{id}/rotate-secret`; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SecretRotation)]
pub(super) struct RotateBody {
    /// How long the previous secret still signs deliveries beside the new
    /// one: a duration such as `90s`, `30m`, `24h` or `7d`, from `0s` (not
    /// at all) to `30d`; `24h` when absent.
    #[serde(default)]
    #[schema(pattern = "^[0-9]+(ms|s|m|h|d)$")]
    pub overlap: Option<String>,
}

/// `POST /events/{id}/redeliver`; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Redelivery)]
pub(super) struct RedeliverBody {
    /// Redeliver to this webhook only (`whk_…` or `cfg_…`); absent for
    /// every webhook that takes the event and has not got it.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub webhook_id: Option<String>,
}

/// Reads a body as [`read_json`] does; a request with no `Content-Type` and
/// an empty body is `T::default()` (for bodies whose fields are all
/// optional).
pub(super) async fn read_optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: RequestBody,
) -> Result<T, ApiError> {
    Ok(body::read_optional_json(headers, body, MAX_BODY).await?)
}

// === impl RotateBody ===

impl RotateBody {
    /// The overlap in seconds; [`DEFAULT_OVERLAP_SECS`] when absent.
    pub(super) fn overlap_secs(&self) -> Result<i64, ManageError> {
        let Some(text) = &self.overlap else {
            return Ok(DEFAULT_OVERLAP_SECS);
        };
        crate::config::value::parse_duration(text)
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| ManageError::Invalid {
                field: "overlap",
                reason: "must be a duration such as `90s`, `30m`, `24h` or `7d`".to_owned(),
            })
    }
}

/// An email address's schema.
fn email_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(EMAIL_PATTERN))
        .build()
}

/// An email address's schema, or null.
fn optional_email_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(EMAIL_PATTERN))
        .build()
}

/// A field that is present (`null` included) becomes `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Reads a size-capped `application/json` body of shape `T`; a string with
/// a NUL character anywhere in it is refused.
pub(super) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: RequestBody,
) -> Result<T, ApiError> {
    Ok(body::read_json(headers, body, MAX_BODY).await?)
}

// === impl ClientBody ===

impl ClientBody {
    /// The client to create; an unknown grant type is the caller's fault.
    pub(super) fn into_new(self) -> Result<NewClient, ApiError> {
        let grant_types = self
            .grant_types
            .iter()
            .map(|g| {
                GrantType::parse_value(g).map_err(|_| {
                    ApiError::Manage(ManageError::Invalid {
                        field: "grant types",
                        reason: "each must be client_credentials, authorization_code, \
                                 refresh_token or anonymous"
                            .to_owned(),
                    })
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(NewClient {
            name: self.name,
            grant_types,
            redirect_uris: self.redirect_uris,
            public: self.public,
            require_pkce: self.require_pkce,
            scopes: self.scopes,
            introspection: self.introspection,
        })
    }
}

// === impl UserBody ===

impl From<UserBody> for NewUser {
    fn from(b: UserBody) -> Self {
        NewUser {
            email: b.email,
            password: b.password,
            name: b.name,
        }
    }
}

// === impl PromoteBody ===

impl From<PromoteBody> for Promotion {
    fn from(b: PromoteBody) -> Self {
        Promotion {
            email: b.email,
            password: b.password,
            name: b.name,
        }
    }
}

// === impl UserPatch ===

impl From<UserPatch> for UserChanges {
    fn from(b: UserPatch) -> Self {
        UserChanges {
            name: b.name,
            email: b.email,
            picture: b.picture,
            email_verified: b.email_verified,
            password: b.password,
        }
    }
}

// === impl WebhookBody ===

impl From<WebhookBody> for NewWebhook {
    fn from(b: WebhookBody) -> Self {
        NewWebhook {
            url: b.url,
            events: b.events,
            secret: b.secret,
        }
    }
}

/// PKCE is required unless a client is created without it explicitly.
fn yes() -> bool {
    true
}
