//! Loading and validating `gateway.yaml`.
//!
//! Text passes through three steps: `${VAR}` expansion ([`env`]), raw serde types
//! that reject unknown keys ([`raw`], with self-parsing value types from [`value`]),
//! then cross-checks over the whole file ([`validate`]) that collect every error.
//! Only the validated types defined here leave this module; every error names the
//! file, line, column and key ([`error`]).

pub mod env;
pub mod error;
mod locate;
pub mod raw;
pub mod validate;
pub mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};

pub use error::{ConfigError, ConfigErrors};
pub use value::{
    Algorithm, GrantType, PathPattern, PatternSegment, Secret, SigningAlg, WebhookAddressPolicy,
    WebhookEvent, WebhookSecret,
};

/// The default file looked for when neither `-c` nor `$PORTCULLIS_CONFIG` is given.
pub const DEFAULT_PATH: &str = "gateway.yaml";

/// A validated configuration: every reference resolved, every value parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub issuers: Vec<IssuerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Claim name → header name, in a stable order.
    pub identity_headers: Vec<(String, HeaderName)>,
    /// The built-in issuer, when the file has an `issuer:` section.
    pub issuer: Option<IssuerSection>,
}

/// The downstream listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Request worker threads (one event loop each); `None`: one per CPU.
    pub workers: Option<usize>,
}

/// The operations listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySourceConfig {
    JwksUri(Uri),
    Discovery(Uri),
    File(PathBuf),
    Builtin,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub id: String,
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    pub keys: KeySourceConfig,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub org_claim: String,
    /// `None`: `roles` (array) or `role` (string).
    pub roles_claim: Option<String>,
    /// Extra roots for an https JWKS or discovery URL.
    pub ca_file: Option<PathBuf>,
}

/// The built-in OAuth 2.0 / OIDC issuer (`issuer:`).
#[derive(Debug, Clone)]
pub struct IssuerSection {
    /// The public base URL exactly as written: the `iss` of every token.
    pub url: String,
    /// `sqlite:…` or `postgres://…`.
    pub database: String,
    /// One active key per algorithm; access tokens use the first. Never empty,
    /// no duplicates.
    pub signing_algs: Vec<SigningAlg>,
    /// How often a new signing key is made.
    pub key_rotation: Duration,
    /// Between 1 minute and 24 hours.
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    /// Absolute lifetime of a refresh-token family.
    pub refresh_token_ttl: Duration,
    /// Optional sliding limit, never longer than `refresh_token_ttl`.
    pub refresh_token_idle_ttl: Option<Duration>,
    /// At most 60 s; zero turns the grace off.
    pub refresh_reuse_grace: Duration,
    /// How often each replica re-reads the signing keys (and, when it takes
    /// the lease, rotates them); between 1 s and 1 h, 60 s by default.
    pub key_sync_interval: Duration,
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
    pub webhooks: Vec<WebhookConfig>,
    /// Which addresses webhooks may be delivered to (private ranges refused
    /// unless `allow_private`).
    pub webhook_address_policy: WebhookAddressPolicy,
}

/// A declarative API resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceConfig {
    /// An absolute URI: the `aud` of tokens for it.
    pub identifier: String,
    /// Valid scope tokens, no duplicates.
    pub scopes: Vec<String>,
}

/// A declarative client. Public clients have no secret and always need PKCE;
/// confidential ones have a secret.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    /// `Some` exactly when the client is confidential.
    pub client_secret: Option<Secret>,
    pub public: bool,
    /// Absolute URIs without fragment; at least one for `authorization_code`.
    pub redirect_uris: Vec<String>,
    /// Never empty; no duplicates.
    pub grant_types: Vec<GrantType>,
    /// Resource identifier → the scopes the client may ask for there.
    pub scopes: Vec<(String, Vec<String>)>,
    /// Always true for public clients; true by default for confidential ones.
    pub require_pkce: bool,
    /// The algorithm of its ID tokens: one of `signing_algs` (default RS256).
    pub id_token_signed_response_alg: SigningAlg,
    /// Resources whose access tokens this (confidential) client may
    /// introspect although issued to other clients; empty by default.
    pub introspection: Vec<String>,
}

/// A webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Uri,
    pub secret: WebhookSecret,
    /// `None`: every event.
    pub events: Option<Vec<WebhookEvent>>,
}

/// A named upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Scheme and authority (and an optional base path) of the upstream.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    pub timeout: Duration,
}

/// How a route treats the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// A valid token is required.
    #[default]
    Required,
    /// A token is verified when present; requests without one pass without identity.
    Optional,
    /// The `Authorization` header is not examined at all.
    Anonymous,
}

/// One route, in file order.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The pattern as written (`/orgs/{org}/items/*`).
    pub path: String,
    /// The compiled pattern.
    pub pattern: PathPattern,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub roles: Vec<String>,
    pub org_param: Option<String>,
    /// Indexes into [`Config::issuers`]; `None`: all issuers.
    pub issuers: Option<Vec<usize>>,
    pub forward_token: bool,
}

// === impl Config ===

impl Config {
    /// Reads, expands, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(ConfigError::io(path, &e)))?;
        Self::from_yaml(&text, path)
    }

    /// Expands `${VAR}` from the process environment, then parses and validates.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        Self::from_yaml_with_env(text, path, &|name| std::env::var(name).ok())
    }

    /// As [`Config::from_yaml`], with the environment injected.
    pub fn from_yaml_with_env(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let expanded = env::expand(text, lookup).map_err(|errs| {
            let locations = locate::Locations::index(text);
            ConfigErrors::new(
                errs.into_iter()
                    .map(|e| {
                        let mut err = e.in_file(path);
                        err.key = locations.key_at(err.line, err.column);
                        err
                    })
                    .collect(),
            )
        })?;
        let raw: raw::RawConfig = serde_yaml_ng::from_str(&expanded)
            .map_err(|e| ConfigErrors::single(ConfigError::parse(path, &e)))?;
        validate::validate(raw, path, &expanded)
    }

    /// The issuer with this exact `iss` value.
    pub fn issuer_index(&self, id: &str) -> Option<usize> {
        self.issuers.iter().position(|i| i.id == id)
    }
}

/// The identity headers used when the file does not name any.
pub fn default_identity_headers() -> Vec<(String, HeaderName)> {
    [
        ("sub", "x-auth-subject"),
        ("iss", "x-auth-issuer"),
        ("org_id", "x-auth-org"),
        ("scope", "x-auth-scopes"),
        ("roles", "x-auth-roles"),
    ]
    .into_iter()
    .map(|(c, h)| (c.to_owned(), HeaderName::from_static(h)))
    .collect()
}

#[cfg(test)]
mod issuer_tests;
#[cfg(test)]
mod tests;
