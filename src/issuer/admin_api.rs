//! The admin REST API under `/admin/v1/`: the same changes as `portcullis
//! admin …`, as JSON in and out, authorised by an access token of this issuer
//! carrying the `portcullis:admin` scope. Validation, ids, hashing, audit
//! entries and events are [`manage`]'s; this module
//! authorises, routes, parses and prints. This file holds the state, the
//! authorisation and the route table; `catalog` and `tenancy` the
//! endpoints, `body` the request shapes, and `error` the one mapping of
//! errors to responses.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use super::error::json_response;
use super::hooks::Hooks;
use super::introspect::verified_access_claims;
use super::keyring::KeyRing;
use super::manage::views::keys_json;
use super::manage::{self, Actor, ManageError};
use super::signing::MasterKey;
use super::signing::seal::MASTER_KEY_ENV;
use super::store::Store;
use super::token::Minter;
use crate::auth::bearer::{self, Credentials};
use crate::auth::verify::{Window, check_window};
use crate::clock::Clock;
use crate::config::IssuerSection;

mod body;
mod catalog;
mod error;
mod tenancy;

pub use error::ApiError;

/// Every admin API path starts with this.
pub use crate::config::value::ADMIN_API_PREFIX as PREFIX;

pub use super::reserved::{ADMIN_SCOPE, admin_audience};

/// The admin API's state: what `manage` needs, and the keys that verify
/// callers' tokens.
pub struct AdminApi {
    minter: Minter,
    /// The master key's text (`PORTCULLIS_MASTER_KEY`), derived anew for each
    /// rotation since a derived key cannot be shared.
    master: Option<String>,
    clock: Arc<dyn Clock>,
}

/// One authorised request on its way to an endpoint.
struct Call<'a> {
    store: &'a dyn Store,
    section: &'a IssuerSection,
    /// The master key's text, for endpoints that seal secrets.
    master: Option<&'a str>,
    /// The blocking hooks, for the changes they guard.
    hooks: &'a Hooks,
    actor: Actor<'a>,
    headers: HeaderMap,
    query: Option<String>,
    body: Incoming,
}

/// What an endpoint answers: a status and a JSON body, or an error.
type Answer = Result<(StatusCode, Value), ApiError>;

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
        hooks: Arc<Hooks>,
        clock: Arc<dyn Clock>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> AdminApi {
        let master = env(MASTER_KEY_ENV);
        AdminApi {
            minter: Minter {
                section,
                keys,
                store,
                hooks,
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

    /// Finds the endpoint (404 before authorisation, so that probing learns
    /// nothing but the path list of the documentation), authorises, checks
    /// the method (405 with `Allow`), and calls the endpoint.
    async fn respond(&self, req: Request<Incoming>) -> Answer {
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
        let query = req.uri().query().map(str::to_owned);
        let (parts, body) = req.into_parts();
        let call = Call {
            store: self.minter.store.as_ref(),
            section: &self.minter.section,
            master: self.master.as_deref(),
            hooks: &self.minter.hooks,
            actor: Actor { name: &sub, now },
            headers: parts.headers,
            query,
            body,
        };
        match (method, segments.as_slice()) {
            (Method::GET, ["apis"]) => catalog::list_apis(call).await,
            (Method::POST, ["apis"]) => catalog::create_api(call).await,
            (Method::GET, ["clients"]) => catalog::list_clients(call).await,
            (Method::POST, ["clients"]) => catalog::create_client(call).await,
            (Method::DELETE, ["clients", id]) => catalog::delete_client(call, id).await,
            (Method::GET, ["webhooks"]) => catalog::list_webhooks(call).await,
            (Method::POST, ["webhooks"]) => catalog::create_webhook(call).await,
            (Method::DELETE, ["webhooks", id]) => catalog::delete_webhook(call, id).await,
            (Method::GET, ["audit"]) => catalog::list_audit(call).await,
            (Method::POST, ["keys", "rotate"]) => self.rotate_keys(call.actor).await,
            (Method::GET, ["organizations"]) => tenancy::list_organizations(call).await,
            (Method::POST, ["organizations"]) => tenancy::create_organization(call).await,
            (Method::GET, ["organizations", org, "members"]) => {
                tenancy::list_members(call, org).await
            }
            (Method::POST, ["organizations", org, "members"]) => {
                tenancy::add_member(call, org).await
            }
            (Method::DELETE, ["organizations", org, "members", user]) => {
                tenancy::remove_member(call, org, user).await
            }
            (Method::GET, ["users"]) => tenancy::list_users(call).await,
            (Method::POST, ["users"]) => tenancy::create_user(call).await,
            (Method::GET, ["users", id]) => tenancy::get_user(call, id).await,
            (Method::PATCH, ["users", id]) => tenancy::update_user(call, id).await,
            (Method::DELETE, ["users", id]) => tenancy::delete_user(call, id).await,
            (Method::POST, ["users", id, "promote"]) => tenancy::promote_user(call, id).await,
            (Method::POST, ["users", id, "anonymize"]) => tenancy::anonymize_user(call, id).await,
            (Method::GET, ["roles"]) => tenancy::list_roles(call).await,
            (Method::POST, ["roles"]) => tenancy::create_role(call).await,
            _ => Err(ApiError::NotFound),
        }
    }

    async fn rotate_keys(&self, actor: Actor<'_>) -> Answer {
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

    /// The `sub` of a valid access token of this issuer for the admin API
    /// carrying the admin scope: signed by a published key, issued here, for
    /// the audience `{issuer.url}/admin/v1`, inside its validity window, and
    /// not revoked. Following RFC 6750 §3.1, a token that fails any of these
    /// is `invalid_token` (401), a wrong audience included; a valid admin
    /// token without the scope is `insufficient_scope` (403).
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
            .map_err(ApiError::store)?
        {
            return Err(ApiError::Unauthorized { sent: true });
        }
        // A token for another API is not for us, whatever its scope says:
        // the upstreams behind that API receive it and could replay it here.
        let audience = admin_audience(&self.minter.section.url);
        let ours = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&audience)),
            _ => false,
        };
        if !ours {
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

// === impl Call ===

impl Call<'_> {
    /// The master key, derived for this call (a derived key cannot be
    /// shared); `None` when unset.
    fn master(&self) -> Result<Option<MasterKey>, ApiError> {
        let text = self.master.map(str::to_owned);
        MasterKey::from_env(&|_| text.clone()).map_err(|_| ApiError::Manage(ManageError::Crypto))
    }
}

/// The methods the endpoint at `segments` allows (the `Allow` value), or
/// `None` for no endpoint.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    let ok = |s: &str| !s.is_empty();
    match segments {
        ["apis"] | ["clients"] | ["organizations"] | ["users"] | ["roles"] | ["webhooks"] => {
            Some("GET, POST")
        }
        ["clients", id] | ["webhooks", id] if ok(id) => Some("DELETE"),
        ["users", id] if ok(id) => Some("GET, PATCH, DELETE"),
        ["users", id, "promote" | "anonymize"] if ok(id) => Some("POST"),
        ["keys", "rotate"] => Some("POST"),
        ["organizations", id, "members"] if ok(id) => Some("GET, POST"),
        ["organizations", id, "members", user] if ok(id) && ok(user) => Some("DELETE"),
        ["audit"] => Some("GET"),
        _ => None,
    }
}
