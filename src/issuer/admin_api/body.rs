//! What admin requests carry: the size-capped JSON body reader, the body
//! shapes of each endpoint (unknown fields refused), and the `limit` query of
//! `/audit`. Values are only parsed here; [`manage`](crate::issuer::manage)
//! validates them.

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::ApiError;
use crate::config::GrantType;
use crate::config::value::ParseValue;
use crate::issuer::manage::{ManageError, NewClient, NewUser, NewWebhook, Promotion, UserChanges};
use crate::issuer::store::ScopeMap;

/// The largest JSON body read.
const MAX_BODY: usize = 64 * 1024;

/// The audit entries listed when `limit` is absent, and the most listed.
const AUDIT_DEFAULT: i64 = 50;
const AUDIT_MAX: i64 = 1000;

/// `POST /apis`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiBody {
    pub identifier: String,
    pub scopes: Vec<String>,
}

/// `POST /clients`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientBody {
    name: String,
    grant_types: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default = "yes")]
    require_pkce: bool,
    #[serde(default)]
    scopes: ScopeMap,
    #[serde(default)]
    introspection: Vec<String>,
}

/// `POST /organizations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrgBody {
    pub name: String,
}

/// `POST /users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserBody {
    email: String,
    password: String,
    name: String,
}

/// `PATCH /users/{id}`: absent fields stay; `"picture": null` removes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    picture: Option<Option<String>>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /users/{id}/promote`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /roles`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleBody {
    pub name: String,
    pub api: String,
    pub scopes: Vec<String>,
}

/// `POST /organizations/{id}/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberBody {
    pub user_id: String,
    pub roles: Vec<String>,
}

/// `POST /webhooks`: `events` absent for every event, `secret` absent to
/// have one generated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookBody {
    url: String,
    #[serde(default)]
    events: Option<Vec<String>>,
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

/// The `limit` of `GET /audit`: 1 to 1000, 50 when absent.
pub(super) fn audit_limit(query: Option<&str>) -> Result<i64, ApiError> {
    let mut limit = AUDIT_DEFAULT;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k == "limit" {
            limit = v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=AUDIT_MAX).contains(n))
                .ok_or(ApiError::Request("limit must be a number from 1 to 1000"))?;
        }
    }
    Ok(limit)
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
