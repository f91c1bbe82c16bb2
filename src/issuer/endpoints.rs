//! The issuer's HTTP surface, served on the gateway's listener before any
//! route: discovery (OpenID Connect Discovery and RFC 8414), the JWKS, and the
//! token endpoint. [`Issuer::start`] opens the store, applies the declarative
//! resources and clients, and brings the signing keys up to date.

use std::sync::Arc;
use std::time::Duration;

use crate::net::Inbound;
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::watch;

use super::body::{RequestBody, StallWatch, Stalled};
use super::clients::{ClientAuth, read_form};
use super::error::{OAuthError, json_response};
use super::hooks::Hooks;
use super::kdf::{Budget, LOGIN_LIMITS};
use super::keyring::{JWKS_MAX_AGE, KeyRing, KeyRingError};
use super::revocation::Revocations;
use super::signing::{MasterKey, RotationPolicy};
use super::store::{self, Store, StoreError};
use super::throttle::{ClientIp, Source};
use super::token::Minter;
use crate::auth::revocation::RevocationSet;
use crate::clock::Clock;
use crate::config::IssuerSection;
use crate::config::value::ANONYMOUS_GRANT;

mod discovery;
mod startup;

use discovery::discovery_documents;
use startup::{apply_declarations, seal_stored_secrets, warn_on_unsafe_role_names};

/// Paths the issuer answers (everything else goes to the routes).
pub use crate::config::value::ISSUER_PATHS as PATHS;

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot open the issuer database")]
    Store(#[from] StoreError),
    #[error("cannot prepare the signing keys")]
    Keys(#[from] KeyRingError),
    #[error("the master key is unusable")]
    MasterKey(#[source] super::signing::SigningError),
    #[error("cannot apply declarative client `{0}`")]
    Client(String),
    #[error("cannot apply the declared resources")]
    Resources(#[source] super::manage::ManageError),
    #[error("cannot seal the stored webhook secrets")]
    Seal(#[source] super::signing::seal::SecretError),
    #[error("cannot set up the blocking hooks' client")]
    Hooks(#[source] rustls::Error),
}

/// The running issuer.
pub struct Issuer {
    section: Arc<IssuerSection>,
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    clients: ClientAuth,
    minter: Minter,
    login: super::authorize::Flow,
    admin: super::admin_api::AdminApi,
    clock: Arc<dyn Clock>,
    discovery: Bytes,
    metadata: Bytes,
    /// Opens the stored webhooks' sealed secrets for delivery.
    secrets: Option<Arc<MasterKey>>,
    /// The revocation set and what keeps it fed.
    revocations: Arc<Revocations>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.section.url)
            .finish_non_exhaustive()
    }
}

// === impl Issuer ===

impl Issuer {
    /// Opens the database, upserts the declared resources and clients, and syncs
    /// the signing keys (creating the first ones on a new database).
    /// `revocations` is the gateway's revocation set, which the issuer loads
    /// and keeps fed ([`Issuer::revocations`]).
    pub async fn start(
        section: IssuerSection,
        revocations: Arc<RevocationSet>,
        clock: Arc<dyn Clock>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<Issuer>, IssuerError> {
        let section = Arc::new(section);
        let store = store::open(&section.database).await?;
        let now = clock.now_unix();
        apply_declarations(&section, store.as_ref(), now).await?;
        warn_on_unsafe_role_names(store.as_ref()).await?;
        let master = MasterKey::from_env(env).map_err(IssuerError::MasterKey)?;
        // A second derivation: a derived key cannot be shared with the ring.
        let secrets = MasterKey::from_env(env)
            .map_err(IssuerError::MasterKey)?
            .map(Arc::new);
        seal_stored_secrets(store.as_ref(), secrets.as_deref()).await?;
        let policy = RotationPolicy::from_section(&section, JWKS_MAX_AGE);
        let keys = Arc::new(KeyRing::new(
            store.clone(),
            section.signing_algs.clone(),
            policy,
            master,
        ));
        keys.sync_at_start(clock.as_ref()).await?;
        let revocations = Revocations::start(
            store.clone(),
            revocations,
            clock.clone(),
            section.revocation.sync_interval,
        )
        .await?;
        let (discovery, metadata) = discovery_documents(&section);
        let hooks = Arc::new(Hooks::new(&section, clock.clone()).map_err(IssuerError::Hooks)?);
        // Unknown emails at /login replay real verification times: one is
        // measured now, so that there is one before the first login.
        let login_budget = Arc::new(Budget::new("login", LOGIN_LIMITS));
        tokio::spawn({
            let budget = login_budget.clone();
            async move { budget.prepare().await }
        });
        Ok(Arc::new(Issuer {
            clients: ClientAuth::new(store.clone(), clock.clone()),
            admin: super::admin_api::AdminApi::new(
                section.clone(),
                store.clone(),
                keys.clone(),
                hooks.clone(),
                revocations.clone(),
                clock.clone(),
                env,
            ),
            login: super::authorize::Flow::new(
                section.clone(),
                store.clone(),
                keys.clone(),
                hooks.clone(),
                revocations.clone(),
                clock.clone(),
                login_budget,
            ),
            minter: Minter {
                section: section.clone(),
                keys: keys.clone(),
                store: store.clone(),
                hooks,
                revocations: revocations.clone(),
            },
            revocations,
            section,
            store,
            keys,
            clock,
            discovery,
            metadata,
            secrets,
        }))
    }

    /// The webhook deliverer for this issuer: the configuration's webhooks
    /// and the stored ones (their secrets opened with the master key).
    /// Fails only if TLS cannot be set up.
    pub fn deliverer(
        &self,
        clock: Arc<dyn Clock>,
        metrics: crate::telemetry::Metrics,
    ) -> Result<super::events::Deliverer, rustls::Error> {
        super::events::Deliverer::new(
            self.store.clone(),
            &self.section.webhooks,
            clock,
            metrics,
            self.secrets.clone(),
            self.section.webhook_address_policy.clone(),
        )
    }

    /// The signing keys (for the gateway's in-process verification).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The database.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The revocation set's feed: run [`Revocations::run`] beside the issuer.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Whether the issuer answers `path`.
    pub fn serves(path: &str) -> bool {
        PATHS.contains(&path) || super::admin_api::AdminApi::serves(path)
    }

    /// Keeps the keys rotating until `shutdown`; `published` is called with the
    /// JWKS whenever the published set changes (the caller installs the first).
    pub async fn run_key_sync(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        published: impl Fn(&[u8]) + Send + 'static,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.section.key_sync_interval) => {}
                _ = shutdown.changed() => return,
            }
            match self.keys.sync(self.clock.now_unix()).await {
                Ok(true) => published(&self.keys.current().jwks),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::events::chain(&e), "Signing key sync failed")
                }
            }
        }
    }

    /// Answers one issuer request. The server puts the client's address in
    /// the request's extensions ([`ClientIp`]); failed authentications
    /// are throttled per source address. A read of the request body waits
    /// at most `body_timeout` (`server.limits.body_timeout` in force) for
    /// each piece of it; the answer to a request whose body stalled is the
    /// endpoint's own (a 408) and carries [`Stalled`] in its extensions, so
    /// that the server closes the connection and counts the limit's hit.
    pub async fn handle(
        &self,
        req: Request<Inbound>,
        body_timeout: Duration,
    ) -> Response<Full<Bytes>> {
        let watch = StallWatch::default();
        let req = req.map(|body| RequestBody::new(body, body_timeout, watch.clone()));
        let mut resp = self.answer(req).await;
        if watch.stalled() {
            tracing::debug!(
                status = resp.status().as_u16(),
                reason = "body_timeout",
                "Issuer request body stalled"
            );
            resp.extensions_mut().insert(Stalled);
        }
        resp
    }

    async fn answer(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        let source = Source::of(req.extensions().get::<ClientIp>().copied());
        let path = req.uri().path();
        if super::authorize::Flow::serves(path) {
            return self.login.handle(req).await;
        }
        if super::admin_api::AdminApi::serves(path) {
            return self.admin.handle(req).await;
        }
        let (allowed, doc): (&'static str, Option<&Bytes>) = match path {
            "/.well-known/openid-configuration" => ("GET, HEAD", Some(&self.discovery)),
            "/.well-known/oauth-authorization-server" => ("GET, HEAD", Some(&self.metadata)),
            "/.well-known/jwks.json" => ("GET, HEAD", None),
            _ => ("POST", None),
        };
        let method_ok = match allowed {
            "POST" => req.method() == Method::POST,
            _ => req.method() == Method::GET || req.method() == Method::HEAD,
        };
        if !method_ok {
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method_not_allowed","error_description":"the endpoint does not allow this method"}"#.to_owned(),
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allowed));
            return resp;
        }
        match (path, doc) {
            (_, Some(doc)) => public_json(doc.clone(), "public, max-age=300"),
            ("/.well-known/jwks.json", None) => {
                let jwks = self.keys.current().jwks.clone();
                let mut resp = public_json(jwks, "public, max-age=300");
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/jwk-set+json"),
                );
                resp
            }
            ("/oauth/revoke", None) => {
                let now = self.clock.now_unix();
                super::revoke::handle(&self.minter, &self.clients, req, &source, now).await
            }
            ("/oauth/introspect", None) => {
                let now = self.clock.now_unix();
                super::introspect::handle(&self.minter, &self.clients, req, &source, now).await
            }
            _ => match self.token(req, &source).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            },
        }
    }

    async fn token(
        &self,
        req: Request<RequestBody>,
        source: &Source,
    ) -> Result<Response<Full<Bytes>>, OAuthError> {
        let (parts, body) = req.into_parts();
        let form = read_form(&parts.headers, body).await?;
        let grant = form
            .get("grant_type")
            .ok_or(OAuthError::InvalidRequest("grant_type is required"))?;
        let now = self.clock.now_unix();
        let response = match grant.as_str() {
            "client_credentials" => {
                let client = self
                    .clients
                    .authenticate(&parts.headers, &form, false, source)
                    .await?;
                self.minter.client_credentials(&client, &form, now).await?
            }
            "authorization_code" => {
                let client = self
                    .clients
                    .authenticate(&parts.headers, &form, true, source)
                    .await?;
                self.login.exchange(&client, &form, now).await?
            }
            "refresh_token" => {
                let client = self
                    .clients
                    .authenticate(&parts.headers, &form, true, source)
                    .await?;
                self.minter.refresh(&client, &form, now).await?
            }
            ANONYMOUS_GRANT => {
                let client = self
                    .clients
                    .authenticate(&parts.headers, &form, true, source)
                    .await?;
                self.minter.anonymous(&client, &form, source, now).await?
            }
            _ => return Err(OAuthError::UnsupportedGrantType),
        };
        let body = serde_json::to_string(&response).map_err(|_| OAuthError::Server)?;
        Ok(json_response(StatusCode::OK, body))
    }
}

fn public_json(body: Bytes, cache: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}
