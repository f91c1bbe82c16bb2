//! What admin requests carry in their bodies: the size-capped JSON body
//! reader and the body shapes of each endpoint (unknown fields refused), which
//! describe themselves to the OpenAPI document. Values are only parsed here;
//! [`manage`](crate::issuer::manage) validates them.

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::ApiError;
use crate::config::GrantType;
use crate::config::value::ParseValue;
use crate::issuer::manage::{ManageError, NewClient, NewUser, NewWebhook, Promotion, UserChanges};
use crate::issuer::store::ScopeMap;

/// The largest JSON body read.
const MAX_BODY: usize = 64 * 1024;

/// `POST /apis`: an API resource (an audience) and its scopes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewApi)]
pub(super) struct ApiBody {
    /// The audience URL (absolute), unique.
    pub identifier: String,
    /// The scopes it defines: at least one, no duplicates, no spaces.
    pub scopes: Vec<String>,
}

/// `POST /clients`: a client; a confidential one (not `public`) gets a
/// generated secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewClient)]
pub(super) struct ClientBody {
    /// A human-readable name.
    name: String,
    /// `client_credentials`, `authorization_code`, `refresh_token` or
    /// `anonymous`.
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
    pub name: String,
}

/// `POST /users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUser)]
pub(super) struct UserBody {
    /// The email address, unique regardless of letter case.
    email: String,
    /// The password (at least 8 characters).
    password: String,
    /// The full name.
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
    email: Option<String>,
    /// A new picture URL; null removes it.
    #[serde(default, deserialize_with = "present")]
    picture: Option<Option<String>>,
    /// Whether the email address is verified.
    #[serde(default)]
    email_verified: Option<bool>,
    /// A new password; revokes the user's refresh tokens.
    #[serde(default)]
    password: Option<String>,
}

/// `POST /users/{id}/promote`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Promotion)]
pub(super) struct PromoteBody {
    /// The user's email address from now on.
    email: String,
    /// The user's password (at least 8 characters).
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
    /// The name: printable ASCII without commas, spaces or quotes.
    pub name: String,
    /// The identifier of the API whose scopes the role grants.
    pub api: String,
    /// The scopes of that API the role grants.
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
    url: String,
    /// The events to deliver; absent or null for every event.
    #[serde(default)]
    events: Option<Vec<String>>,
    /// A Standard Webhooks secret (`whsec_…`); absent to have one generated.
    #[serde(default)]
    secret: Option<String>,
}

/// A field that is present (`null` included) becomes `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Reads a size-capped `application/json` body of shape `T`.
pub(super) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
) -> Result<T, ApiError> {
    let json_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::MediaType);
    }
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::Request("the request body is too large or unreadable"))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::Request("the body is not JSON of the expected shape"))
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
