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
    Algorithm, GrantType, HookEvent, OnFailure, PathPattern, PatternSegment, Secret, SigningAlg,
    WebhookAddressPolicy, WebhookEvent, WebhookSecret,
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
    /// The forward-auth listener (decisions without proxying), when configured.
    pub forward_auth: Option<ForwardAuthConfig>,
}

/// The downstream listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Request worker threads (one event loop each); `None`: one per CPU.
    pub workers: Option<usize>,
    /// TLS certificates; empty: cleartext. The first is the default, the others
    /// are chosen by SNI.
    pub tls: Vec<TlsCert>,
    /// Client certificates are asked for (and verified against this PEM bundle).
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Peers whose forwarding headers are kept and extended.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub limits: Limits,
}

/// A certificate chain and key (PEM files) for the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SNI names (exact, or `*.example.test`); empty for the default certificate.
    pub server_names: Vec<String>,
}

/// A client certificate and key (PEM files) presented to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether a TLS client must present a certificate (with `client_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A certificate is asked for; without one the handshake still succeeds.
    #[default]
    Optional,
    /// No valid certificate, no handshake.
    Required,
}

/// Limits that protect the gateway and the upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line and headers; over it: 431.
    pub max_header_bytes: usize,
    /// Open downstream connections; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Time allowed for a request head (and a TLS handshake) to arrive.
    pub header_read_timeout: Duration,
    /// A connection with nothing to do for this long is closed.
    pub idle_timeout: Duration,
    /// Longest wait between two pieces of a request body arriving, and for a
    /// client to accept the next piece of a response.
    pub body_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Memory for the verified-token cache, in bytes (the rejected-token cache
    /// gets a quarter as much on top).
    pub token_cache: u64,
}

/// The verified-token cache's default memory budget (1.5 MiB: about 1,300
/// typical tokens), `server.limits.token_cache`.
pub const DEFAULT_TOKEN_CACHE: u64 = 3 << 19;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_concurrent_streams: 100,
            token_cache: DEFAULT_TOKEN_CACHE,
        }
    }
}

/// The forward-auth listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    pub listen: SocketAddr,
    /// The auth request's own method and target are the original request's
    /// (Envoy `ext_authz` HTTP). Off: a request without `X-Forwarded-Method` +
    /// `-Uri` or `X-Original-Method` + `-URI` is refused.
    pub trust_request_line: bool,
}

/// The operations listener.
#[derive(Debug, Clone, PartialEq)]
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
    /// No signing keys: the issuer's tokens are opaque, checked only by
    /// introspection.
    None,
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq)]
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
    /// Extra roots for an https JWKS, discovery or introspection URL.
    pub ca_file: Option<PathBuf>,
    /// RFC 7662 introspection for tokens that are not JWTs.
    pub introspection: Option<IntrospectionConfig>,
    /// Whether plain `http://` URLs to hosts other than loopback are allowed
    /// (keys, discovery, introspection); off, they are refused.
    pub allow_plain_http: bool,
}

/// Whether `uri` may be used to fetch keys or ask about tokens: https, or
/// plain http to a loopback host (or anywhere, when the issuer allows it).
/// Over plain http anyone on the path could hand the gateway their own keys,
/// or read every token sent for introspection.
pub fn transport_ok(uri: &Uri, allow_plain_http: bool) -> bool {
    uri.scheme_str() == Some("https") || allow_plain_http || is_loopback(uri)
}

fn is_loopback(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How opaque tokens of an issuer are checked (RFC 7662).
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionConfig {
    pub url: Uri,
    pub client_id: String,
    pub client_secret: Secret,
    /// A positive answer is kept no longer than this (nor than the token's `exp`).
    pub cache: Duration,
    /// Calls to the endpoint in flight at once.
    pub max_concurrent: usize,
}

/// The built-in OAuth 2.0 / OIDC issuer (`issuer:`).
#[derive(Debug, Clone, PartialEq)]
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
    /// Blocking hooks, in the order written; they reach only the addresses
    /// `webhook_address_policy` allows.
    pub hooks: Vec<HookConfig>,
    /// The gateway's in-memory revocation set (`issuer.revocation`).
    pub revocation: RevocationConfig,
}

/// `issuer.revocation`: how the gateway holds and refreshes what the built-in
/// issuer revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The set's hard cap; beyond it the oldest entries are dropped and every
    /// built-in token issued before them is refused (between 100 and
    /// 10,000,000; 100,000 by default).
    pub max_entries: usize,
    /// How often each process re-reads the revocation table whatever it was
    /// notified of (between 1 s and 1 h; 5 s by default): the bound on the
    /// delay when a notification is lost, and on SQLite the delay for
    /// revocations made by `portcullis admin` in another process.
    pub sync_interval: Duration,
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
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Uri,
    pub secret: WebhookSecret,
    /// The secret being rotated out: while it is configured, each delivery
    /// carries a signature with it too, after the one with `secret`.
    pub previous_secret: Option<WebhookSecret>,
    /// `None`: every event.
    pub events: Option<Vec<WebhookEvent>>,
}

/// A blocking hook (`issuer.hooks[i]`): an endpoint the issuer calls and
/// waits for before the operation of `event`.
#[derive(Debug, Clone, PartialEq)]
pub struct HookConfig {
    pub event: HookEvent,
    /// http(s); at an address `issuer.webhook_address_policy` allows.
    pub url: Uri,
    /// Signs each call as a webhook is signed.
    pub secret: WebhookSecret,
    /// For the whole call (connection, request, answer); 5 s by default, at
    /// most 30 s.
    pub timeout: Duration,
    /// What a failed call means; deny by default.
    pub on_failure: OnFailure,
}

/// A named upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Scheme and authority (and an optional base path) of the upstream.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive.
    pub timeout: Duration,
    pub protocol: UpstreamProtocol,
    /// Extra roots for an `https://` upstream (the system roots always apply).
    pub ca_file: Option<PathBuf>,
    /// A client certificate for mTLS to an `https://` upstream.
    pub client_cert: Option<CertPair>,
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2: by ALPN over TLS, with prior knowledge over cleartext.
    H2,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Paths with matrix parameters (`/a;v=1`) are accepted; the route and the
    /// policy judge the path without them. Off: such paths get 400.
    pub matrix_params: bool,
    /// `X-HTTP-Method-Override`, `X-HTTP-Method` and `X-Method-Override` reach the
    /// upstream, and the route and policy judge the overridden method. Off: they
    /// are removed.
    pub method_override: bool,
    /// Request bodies larger than this get 413.
    pub max_body: Option<u64>,
    /// `Upgrade: websocket` is allowed (the token is checked once, at the upgrade).
    pub websocket: bool,
    /// The route answers CORS preflights itself and adds CORS response headers.
    pub cors: Option<CorsConfig>,
}

/// A route's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.test`), or `*` for any.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<Method>,
    pub allow_headers: Vec<HeaderName>,
    pub expose_headers: Vec<HeaderName>,
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
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

/// Whether `item` can travel as one element of a `sep`-separated header list
/// (`X-Auth-Scopes` with spaces, `X-Auth-Roles` with commas) and be read back
/// unchanged: not empty, no control character, no separator, no quote or
/// backslash (RFC 9110 list parsers treat them specially), no space at either
/// end. UTF-8 is fine: no byte of a multi-byte character is a separator. Route
/// requirements are checked with it, and so are a token's scopes and roles.
pub fn is_list_item(item: &str, sep: u8) -> bool {
    !item.is_empty()
        && item.trim_matches(' ') == item
        && item.bytes().all(|b| {
            (b >= 0x80 || b.is_ascii_graphic() || b == b' ') && b != sep && b != b'"' && b != b'\\'
        })
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
