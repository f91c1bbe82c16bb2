//! The admin REST API under `/admin/v1/`: the same changes as `portcullis
//! admin …`, as JSON in and out, authorised by an access token of this issuer
//! carrying the `portcullis:admin` scope. Validation, ids, hashing, audit
//! entries and events are [`manage`](super::manage)'s; this file authorises,
//! parses and prints. Errors become responses in [`ApiError::into_response`].

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::json_response;
use super::introspect::verified_access_claims;
use super::keyring::KeyRing;
use super::manage::views::{client_json, keys_json, time};
use super::manage::{self, Actor, ManageError, NewClient, NewUser};
use super::signing::MasterKey;
use super::signing::seal::MASTER_KEY_ENV;
use super::store::{ScopeMap, Store};
use super::token::Minter;
use crate::auth::bearer::{self, Credentials};
use crate::auth::verify::{Window, check_window};
use crate::clock::Clock;
use crate::config::{GrantType, IssuerSection};

/// Every admin API path starts with this.
pub const PREFIX: &str = "/admin/v1/";

/// The scope an access token needs to use the admin API.
pub const ADMIN_SCOPE: &str = "portcullis:admin";

/// The largest JSON body read.
const MAX_BODY: usize = 64 * 1024;

/// The audit entries listed when `limit` is absent, and the most listed.
const AUDIT_DEFAULT: i64 = 50;
const AUDIT_MAX: i64 = 1000;

/// The admin API's state: what `manage` needs, and the keys that verify
/// callers' tokens.
pub struct AdminApi {
    minter: Minter,
    /// The master key's text (`PORTCULLIS_MASTER_KEY`), derived anew for each
    /// rotation since a derived key cannot be shared.
    master: Option<String>,
    clock: Arc<dyn Clock>,
}

/// Why an admin request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable bearer token; `sent` says whether one was presented.
    #[error("no valid access token")]
    Unauthorized { sent: bool },
    /// The token lacks `portcullis:admin`.
    #[error("the token lacks the admin scope")]
    Forbidden,
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not for this method.
    #[error("method not allowed")]
    Method(&'static str),
    /// The body is not JSON of the expected shape, or too large.
    #[error("invalid request: {0}")]
    Request(&'static str),
    /// The body is not `application/json`.
    #[error("the body must be application/json")]
    MediaType,
    /// The service layer refused or failed.
    #[error("the change was not made")]
    Manage(#[source] ManageError),
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").finish_non_exhaustive()
    }
}

// === impl AdminApi ===

impl AdminApi {
    /// The API over `store`, verifying tokens with `keys`; the master key in
    /// `env` (as checked by [`Issuer::start`](super::Issuer::start)) seals the
    /// keys a rotation creates.
    pub fn new(
        section: Arc<IssuerSection>,
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> AdminApi {
        let master = env(MASTER_KEY_ENV);
        AdminApi {
            minter: Minter {
                section,
                keys,
                store,
            },
            master,
            clock,
        }
    }

    /// Whether `path` belongs to the admin API.
    pub fn serves(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// Answers one admin API request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.respond(req).await {
            Ok((status, body)) => json_response(status, body.to_string()),
            Err(e) => e.into_response(),
        }
    }

    async fn respond(&self, req: Request<Incoming>) -> Result<(StatusCode, Value), ApiError> {
        let now = self.clock.now_unix();
        let path = req.uri().path().to_owned();
        let rest = path.strip_prefix(PREFIX).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').collect();
        let allowed = allowed_methods(&segments).ok_or(ApiError::NotFound)?;
        let sub = self.authorise(req.headers(), now).await?;
        let method = req.method().clone();
        if !allowed.split(", ").any(|m| m == method.as_str()) {
            return Err(ApiError::Method(allowed));
        }
        let actor = Actor { name: &sub, now };
        let query = req.uri().query().map(str::to_owned);
        let (parts, body) = req.into_parts();
        let store = self.minter.store.as_ref();
        let created = |v: Value| Ok((StatusCode::CREATED, v));
        match (method, segments.as_slice()) {
            (Method::GET, ["apis"]) => {
                let apis = store.list_api_resources().await.map_err(store_err)?;
                let list = apis
                    .iter()
                    .map(|a| json!({ "identifier": a.identifier, "scopes": a.scopes }));
                Ok((StatusCode::OK, Value::Array(list.collect())))
            }
            (_, ["apis"]) => {
                let b: ApiBody = read_json(&parts.headers, body).await?;
                let api = manage::create_api(store, actor, &b.identifier, b.scopes).await?;
                created(json!({ "identifier": api.identifier, "scopes": api.scopes }))
            }
            (Method::GET, ["clients"]) => {
                let clients = manage::list_clients(store).await?;
                let list = clients.iter().map(client_json).collect();
                Ok((StatusCode::OK, Value::Array(list)))
            }
            (_, ["clients"]) => {
                let b: ClientBody = read_json(&parts.headers, body).await?;
                let new = b.into_new()?;
                let made = manage::create_client(store, actor, new).await?;
                let mut out = client_json(&made.client);
                if let (Some(secret), Some(map)) = (made.secret, out.as_object_mut()) {
                    map.insert("client_secret".into(), Value::String(secret));
                }
                created(out)
            }
            (_, ["clients", id]) => {
                manage::delete_client(store, actor, id).await?;
                Ok((StatusCode::OK, json!({ "client_id": id, "deleted": true })))
            }
            (_, ["organizations"]) => {
                let b: OrgBody = read_json(&parts.headers, body).await?;
                let org = manage::create_organization(store, actor, &b.name).await?;
                created(
                    json!({ "id": org.id, "name": org.name, "created_at": time(org.created_at) }),
                )
            }
            (_, ["users"]) => {
                let b: UserBody = read_json(&parts.headers, body).await?;
                let new = NewUser {
                    email: b.email,
                    password: b.password,
                    name: b.name,
                };
                let user = manage::create_user(store, actor, new).await?;
                created(json!({
                    "id": user.id,
                    "email": user.email,
                    "name": user.name,
                    "created_at": time(user.created_at),
                }))
            }
            (_, ["roles"]) => {
                let b: RoleBody = read_json(&parts.headers, body).await?;
                let role = manage::create_role(store, actor, &b.name, &b.api, b.scopes).await?;
                created(json!({ "name": role.name, "grants": role.grants }))
            }
            (_, ["organizations", org, "members"]) => {
                let b: MemberBody = read_json(&parts.headers, body).await?;
                let m = manage::add_member(store, actor, org, &b.user_id, b.roles).await?;
                created(json!({
                    "org_id": m.org_id,
                    "user_id": m.user_id,
                    "roles": m.roles,
                    "created_at": time(m.created_at),
                }))
            }
            (_, ["keys", "rotate"]) => {
                let text = self.master.clone();
                let master = MasterKey::from_env(&|_| text.clone())
                    .map_err(|_| ApiError::Manage(ManageError::Crypto))?;
                let report = manage::rotate_keys(
                    self.minter.store.clone(),
                    &self.minter.section,
                    master,
                    actor,
                )
                .await?;
                Ok((StatusCode::OK, keys_json(&report)))
            }
            (_, ["audit"]) => {
                let limit = audit_limit(query.as_deref())?;
                let entries = store.list_audit(limit).await.map_err(store_err)?;
                let list = entries.into_iter().map(|e| {
                    let detail = serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null);
                    json!({
                        "id": e.id,
                        "at": time(e.at),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "detail": detail,
                    })
                });
                Ok((StatusCode::OK, Value::Array(list.collect())))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// The `sub` of a valid access token of this issuer carrying the admin
    /// scope: signed by a published key, issued here, inside its validity
    /// window, and not revoked.
    async fn authorise(&self, headers: &HeaderMap, now: i64) -> Result<String, ApiError> {
        let token = match bearer::read(headers) {
            Ok(Credentials::Bearer(t)) => t,
            Ok(Credentials::Absent) => return Err(ApiError::Unauthorized { sent: false }),
            Ok(Credentials::OtherScheme) | Err(_) => {
                return Err(ApiError::Unauthorized { sent: true });
            }
        };
        let invalid = ApiError::Unauthorized { sent: true };
        let claims = verified_access_claims(&self.minter, token).ok_or(invalid)?;
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = number("exp").ok_or(ApiError::Unauthorized { sent: true })?;
        let window = Window {
            exp,
            nbf: number("nbf"),
        };
        check_window(window, now, 0).map_err(|_| ApiError::Unauthorized { sent: true })?;
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .ok_or(ApiError::Unauthorized { sent: true })?;
        if self
            .minter
            .store
            .is_jti_revoked(jti)
            .await
            .map_err(store_err)?
        {
            return Err(ApiError::Unauthorized { sent: true });
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(ApiError::Unauthorized { sent: true })?;
        let scoped = claims
            .get("scope")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(' ').any(|s| s == ADMIN_SCOPE));
        match scoped {
            true => Ok(sub.to_owned()),
            false => Err(ApiError::Forbidden),
        }
    }
}

/// The methods the endpoint at `segments` allows, or `None` for no endpoint.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    let ok = |s: &str| !s.is_empty();
    match segments {
        ["apis"] | ["clients"] => Some("GET, POST"),
        ["clients", id] if ok(id) => Some("DELETE"),
        ["organizations"] | ["users"] | ["roles"] | ["keys", "rotate"] => Some("POST"),
        ["organizations", id, "members"] if ok(id) => Some("POST"),
        ["audit"] => Some("GET"),
        _ => None,
    }
}

fn audit_limit(query: Option<&str>) -> Result<i64, ApiError> {
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

fn store_err(e: super::store::StoreError) -> ApiError {
    ApiError::Manage(ManageError::Store(e))
}

/// Reads a size-capped `application/json` body of shape `T`.
async fn read_json<T: DeserializeOwned>(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiBody {
    identifier: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    name: String,
    grant_types: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    scopes: ScopeMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    email: String,
    password: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    name: String,
    api: String,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    user_id: String,
    roles: Vec<String>,
}

// === impl ClientBody ===

impl ClientBody {
    fn into_new(self) -> Result<NewClient, ApiError> {
        let grant_types = self
            .grant_types
            .iter()
            .map(|g| match g.as_str() {
                "client_credentials" => Ok(GrantType::ClientCredentials),
                "authorization_code" => Ok(GrantType::AuthorizationCode),
                "refresh_token" => Ok(GrantType::RefreshToken),
                _ => Err(ApiError::Manage(ManageError::Invalid {
                    field: "grant types",
                    reason: "each must be client_credentials, authorization_code or refresh_token"
                        .to_owned(),
                })),
            })
            .collect::<Result<_, _>>()?;
        Ok(NewClient {
            name: self.name,
            grant_types,
            redirect_uris: self.redirect_uris,
            public: self.public,
            scopes: self.scopes,
        })
    }
}

// === impl ApiError ===

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        ApiError::Manage(e)
    }
}

impl ApiError {
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
            ApiError::Manage(e) => manage_status(e),
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
        let body = json!({ "error": code, "error_description": description });
        let mut resp = json_response(status, body.to_string());
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
                h.insert(ALLOW, HeaderValue::from_static(allowed));
            }
            ApiError::Manage(ManageError::RotationBusy) => {
                h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::NotFound
            | ApiError::Request(_)
            | ApiError::MediaType
            | ApiError::Manage(_) => {}
        }
        resp
    }
}

/// Status, code and description of a refusal or failure of the service
/// layer. A caller's fault names the caller's own values only.
fn manage_status(e: &ManageError) -> (StatusCode, &'static str, String) {
    let ours = "the server could not complete the request".to_owned();
    match e {
        ManageError::UnknownClient(_) | ManageError::UnknownOrganization(_) => {
            (StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        ManageError::Invalid { .. }
        | ManageError::UnknownApi(_)
        | ManageError::UnknownScope { .. }
        | ManageError::UnknownUser(_)
        | ManageError::UnknownRole(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
        }
        ManageError::Exists(_) => (StatusCode::CONFLICT, "conflict", e.to_string()),
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
