//! The admin REST API under `/admin/v1/`: the same changes as `portcullis
//! admin …`, as JSON in and out, authorised by an access token of this issuer
//! carrying the `portcullis:admin` scope. Validation, ids, hashing, audit
//! entries and events are [`manage`]'s; this module
//! authorises, routes, parses and prints. This file holds the state, the
//! authorisation and the dispatch; `routes` the route table, `catalog`,
//! `tenancy` and `events` the endpoints, `body` the request shapes, `query` the list
//! parameters and cursors, `openapi` the document that describes them all,
//! and `error` the one mapping of errors to responses.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, LINK};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::Value;

use super::access::{OwnTokens, Purpose};
use super::body::RequestBody;
use super::error::json_response;
use super::hooks::Hooks;
use super::keyring::KeyRing;
use super::manage::{Actor, ManageError};
use super::revocation::Revocations;
use super::signing::MasterKey;
use super::signing::seal::MASTER_KEY_ENV;
use super::store::Store;
use super::token::Minter;
use crate::auth::bearer::{self, Credentials};
use crate::clock::Clock;
use crate::config::IssuerSection;
use query::Paged;
use routes::Endpoint;

mod body;
mod catalog;
mod error;
mod events;
mod openapi;
mod query;
mod routes;
mod tenancy;

pub use error::{ApiError, ErrorBody};

/// Every admin API path starts with this.
pub use crate::config::value::ADMIN_API_PREFIX as PREFIX;

pub use super::reserved::{ADMIN_SCOPE, admin_audience};

/// The header that carries the next page's cursor.
const NEXT_CURSOR: HeaderName = HeaderName::from_static("next-cursor");

/// The admin API's state: what `manage` needs, and the keys that verify
/// callers' tokens.
pub struct AdminApi {
    minter: Minter,
    /// The master key's text (`PORTCULLIS_MASTER_KEY`), derived anew for each
    /// rotation since a derived key cannot be shared.
    master: Option<String>,
    clock: Arc<dyn Clock>,
    /// The OpenAPI document, built once.
    document: Bytes,
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
    /// The values of the path's `{name}` segments.
    path: routes::Matched,
    body: RequestBody,
}

/// What an endpoint answers, or an error.
type Answer = Result<Reply, ApiError>;

/// What an endpoint answers: a status, a JSON body, and for a page of a list
/// the cursor of the next page when one follows.
struct Reply {
    status: StatusCode,
    body: String,
    next: Option<String>,
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
        hooks: Arc<Hooks>,
        revocations: Arc<Revocations>,
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
                revocations,
            },
            master,
            clock,
            document: openapi::document(),
        }
    }

    /// Whether `path` belongs to the admin API.
    pub fn serves(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// Answers one admin API request. After a change, the revocations it
    /// may have recorded (a user deleted or anonymized, a new password, a
    /// client deleted) are read into this process's revocation set before
    /// the answer, so that the gateway here refuses at once what they revoke.
    pub async fn handle(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        let changes = req.method() != http::Method::GET && req.method() != http::Method::HEAD;
        let answer = self.respond(req).await;
        if changes && answer.is_ok() {
            if let Err(e) = self.minter.revocations.catch_up().await {
                // The periodic read applies them within sync_interval.
                tracing::error!(error = %crate::telemetry::events::chain(&e), "Reading new revocations failed");
            }
        }
        match answer {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    /// Finds the path's routes (404 before authorisation, so that probing
    /// learns nothing but the paths of the published document), authorises
    /// unless the path is public, checks the method (405 with `Allow`), and
    /// calls the endpoint.
    async fn respond(&self, req: Request<RequestBody>) -> Result<Response<Full<Bytes>>, ApiError> {
        let now = self.clock.now_unix();
        let matched = routes::lookup(req.uri().path()).ok_or(ApiError::NotFound)?;
        let sub = match matched.is_public() {
            true => None,
            false => Some(self.authorise(req.headers(), now).await?),
        };
        let route = matched
            .route(req.method())
            .ok_or_else(|| ApiError::Method(matched.allow()))?;
        let Some(sub) = sub else {
            return Ok(self.public(route.endpoint));
        };
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
            path: matched,
            body,
        };
        let reply = self.dispatch(route.endpoint, call).await?;
        Ok(reply.into_response(parts.uri.path(), parts.uri.query()))
    }

    /// Calls the endpoint.
    async fn dispatch(&self, endpoint: Endpoint, call: Call<'_>) -> Answer {
        match endpoint {
            Endpoint::OpenApi => Err(ApiError::NotFound),
            Endpoint::ListApis => catalog::list_apis(call).await,
            Endpoint::CreateApi => catalog::create_api(call).await,
            Endpoint::ListClients => catalog::list_clients(call).await,
            Endpoint::CreateClient => catalog::create_client(call).await,
            Endpoint::DeleteClient => catalog::delete_client(call).await,
            Endpoint::ListWebhooks => catalog::list_webhooks(call).await,
            Endpoint::CreateWebhook => catalog::create_webhook(call).await,
            Endpoint::GetWebhook => catalog::get_webhook(call).await,
            Endpoint::DeleteWebhook => catalog::delete_webhook(call).await,
            Endpoint::RotateWebhookSecret => catalog::rotate_webhook_secret(call).await,
            Endpoint::ListEvents => events::list_events(call).await,
            Endpoint::GetEvent => events::get_event(call).await,
            Endpoint::RedeliverEvent => events::redeliver_event(call).await,
            Endpoint::ListAudit => catalog::list_audit(call).await,
            Endpoint::RotateKeys => catalog::rotate_keys(self.minter.store.clone(), call).await,
            Endpoint::ListOrganizations => tenancy::list_organizations(call).await,
            Endpoint::CreateOrganization => tenancy::create_organization(call).await,
            Endpoint::ListMembers => tenancy::list_members(call).await,
            Endpoint::AddMember => tenancy::add_member(call).await,
            Endpoint::RemoveMember => tenancy::remove_member(call).await,
            Endpoint::ListUsers => tenancy::list_users(call).await,
            Endpoint::CreateUser => tenancy::create_user(call).await,
            Endpoint::GetUser => tenancy::get_user(call).await,
            Endpoint::UpdateUser => tenancy::update_user(call).await,
            Endpoint::DeleteUser => tenancy::delete_user(call).await,
            Endpoint::PromoteUser => tenancy::promote_user(call).await,
            Endpoint::AnonymizeUser => tenancy::anonymize_user(call).await,
            Endpoint::ListRoles => tenancy::list_roles(call).await,
            Endpoint::CreateRole => tenancy::create_role(call).await,
        }
    }

    /// Answers a route that needs no token: the OpenAPI document, the same
    /// for every caller and installation, so caches may keep it.
    fn public(&self, endpoint: Endpoint) -> Response<Full<Bytes>> {
        match endpoint {
            Endpoint::OpenApi => {
                let mut resp = Response::new(Full::new(self.document.clone()));
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                resp
            }
            _ => ApiError::NotFound.into_response(),
        }
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
        let minter = &self.minter;
        let own = OwnTokens::new(&minter.keys, &minter.section.url, minter.store.as_ref());
        let claims = own
            .live_access(token, now, Purpose::Use)
            .await
            .map_err(ApiError::store)?
            .ok_or(ApiError::Unauthorized { sent: true })?;
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

    /// The value of the path's `{name}` segment.
    fn param(&self, name: &str) -> &str {
        self.path.param(name)
    }
}

// === impl Reply ===

impl Reply {
    /// `body` as JSON with `status`.
    fn json(status: StatusCode, body: &impl Serialize) -> Answer {
        let body = serde_json::to_string(body).map_err(ApiError::Encode)?;
        Ok(Reply {
            status,
            body,
            next: None,
        })
    }

    /// A page of a list: its records shown by `view`, and the next cursor.
    fn page<T, V: Serialize>(paged: Paged<T>, view: impl Fn(&T) -> V) -> Answer {
        let rows: Vec<V> = paged.rows.iter().map(view).collect();
        let mut reply = Reply::json(StatusCode::OK, &rows)?;
        reply.next = paged.next;
        Ok(reply)
    }

    /// The response; for a page with a successor, `Next-Cursor` and a `Link`
    /// to the next page at `path` with the request's `query`, its cursor
    /// replaced.
    fn into_response(self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        let mut resp = json_response(self.status, self.body);
        let Some(next) = self.next else {
            return resp;
        };
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if k != "cursor" {
                out.append_pair(&k, &v);
            }
        }
        out.append_pair("cursor", &next);
        let link = format!("<{path}?{}>; rel=\"next\"", out.finish());
        let h = resp.headers_mut();
        if let (Ok(cursor), Ok(link)) = (HeaderValue::from_str(&next), HeaderValue::from_str(&link))
        {
            h.insert(NEXT_CURSOR, cursor);
            h.insert(LINK, link);
        }
        resp
    }
}
