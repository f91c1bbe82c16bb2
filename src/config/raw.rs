//! The file as written: serde types that reject unknown keys. Values parse
//! themselves ([`Parsed`]); references between sections are checked later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;

use super::value::{
    Algorithm, ByteSize, GrantType, HookEvent, HttpUrl, IssuerUrl, OnFailure, OneOrMany, Parsed,
    PathPattern, SigningAlg, WebhookEvent, WebhookSecret,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub identity_headers: Option<BTreeMap<String, Parsed<HeaderName>>>,
    pub issuer: Option<RawIssuerSection>,
    pub forward_auth: Option<RawForwardAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Parsed<SocketAddr>>,
    pub shutdown_grace: Option<Parsed<Duration>>,
    pub workers: Option<usize>,
    pub tls: Option<OneOrMany<RawCert>>,
    pub client_ca: Option<String>,
    pub client_auth: Option<RawClientAuth>,
    pub trusted_proxies: Option<Vec<Parsed<ipnet::IpNet>>>,
    pub limits: Option<RawLimits>,
}

/// A certificate chain and its key, PEM files; `server_names` for SNI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: String,
    pub key: String,
    pub server_names: Option<Vec<String>>,
}

/// A client certificate for mTLS to an upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<Parsed<Duration>>,
    pub idle_timeout: Option<Parsed<Duration>>,
    pub body_timeout: Option<Parsed<Duration>>,
    pub max_concurrent_streams: Option<u32>,
    pub token_cache: Option<Parsed<ByteSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub listen: Parsed<SocketAddr>,
    pub trust_request_line: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Parsed<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub id: String,
    pub issuer: Option<String>,
    pub jwks_uri: Option<Parsed<HttpUrl>>,
    pub discovery_url: Option<Parsed<HttpUrl>>,
    pub jwks_file: Option<String>,
    pub builtin: Option<bool>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<Parsed<Algorithm>>>,
    pub leeway: Option<Parsed<Duration>>,
    pub org_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub ca_file: Option<String>,
    pub introspection: Option<RawIntrospection>,
    pub allow_plain_http: Option<bool>,
}

/// RFC 7662 introspection for opaque tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub url: Parsed<HttpUrl>,
    pub client_id: String,
    pub client_secret: String,
    pub cache: Option<Parsed<Duration>>,
    pub max_concurrent: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Parsed<HttpUrl>,
    pub connect_timeout: Option<Parsed<Duration>>,
    pub timeout: Option<Parsed<Duration>>,
    pub protocol: Option<RawProtocol>,
    pub ca_file: Option<String>,
    pub client_cert: Option<RawCertPair>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProtocol {
    Http1,
    H2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Parsed<PathPattern>,
    pub methods: Option<Vec<Parsed<Method>>>,
    pub upstream: String,
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub any_scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub org_param: Option<String>,
    pub issuers: Option<Vec<String>>,
    pub forward_token: Option<bool>,
    pub matrix_params: Option<bool>,
    pub method_override: Option<bool>,
    pub max_body: Option<Parsed<ByteSize>>,
    pub websocket: Option<bool>,
    pub cors: Option<RawCors>,
}

/// CORS for one route (the Fetch standard's response headers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Option<Vec<Parsed<Method>>>,
    pub allow_headers: Option<Vec<Parsed<HeaderName>>>,
    pub expose_headers: Option<Vec<Parsed<HeaderName>>>,
    pub max_age: Option<Parsed<Duration>>,
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    Required,
    Optional,
    Anonymous,
}

/// The built-in issuer's `issuer:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuerSection {
    pub url: Parsed<IssuerUrl>,
    pub database: Option<String>,
    pub signing_algs: Option<Vec<Parsed<SigningAlg>>>,
    pub key_rotation: Option<Parsed<Duration>>,
    pub access_token_ttl: Option<Parsed<Duration>>,
    pub id_token_ttl: Option<Parsed<Duration>>,
    pub refresh_token_ttl: Option<Parsed<Duration>>,
    pub refresh_token_idle_ttl: Option<Parsed<Duration>>,
    pub refresh_reuse_grace: Option<Parsed<Duration>>,
    pub key_sync_interval: Option<Parsed<Duration>>,
    #[serde(default)]
    pub resources: Vec<RawResource>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    pub webhook_address_policy: Option<RawWebhookAddressPolicy>,
    #[serde(default)]
    pub hooks: Vec<RawHook>,
    pub revocation: Option<RawRevocation>,
}

/// `issuer.revocation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    pub max_entries: Option<usize>,
    pub sync_interval: Option<Parsed<Duration>>,
}

/// `issuer.webhook_address_policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhookAddressPolicy {
    pub allow_private: Option<bool>,
    #[serde(default)]
    pub allow: Vec<Parsed<ipnet::IpNet>>,
    #[serde(default)]
    pub deny: Vec<Parsed<ipnet::IpNet>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One declarative API resource.
pub struct RawResource {
    pub identifier: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One declarative client. Its `Debug` hides the secret.
pub struct RawClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub public: Option<bool>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<Parsed<GrantType>>>,
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<String>>,
    pub require_pkce: Option<bool>,
    pub id_token_signed_response_alg: Option<Parsed<SigningAlg>>,
    /// Resources whose access tokens this client may introspect.
    #[serde(default)]
    pub introspection: Vec<String>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public", &self.public)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("require_pkce", &self.require_pkce)
            .field(
                "id_token_signed_response_alg",
                &self.id_token_signed_response_alg,
            )
            .field("introspection", &self.introspection)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One webhook endpoint.
pub struct RawWebhook {
    pub url: Parsed<HttpUrl>,
    pub secret: Parsed<WebhookSecret>,
    pub previous_secret: Option<Parsed<WebhookSecret>>,
    pub events: Option<Vec<Parsed<WebhookEvent>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// One blocking hook.
pub struct RawHook {
    pub event: Parsed<HookEvent>,
    pub url: Parsed<HttpUrl>,
    pub secret: Parsed<WebhookSecret>,
    pub timeout: Option<Parsed<Duration>>,
    pub on_failure: Option<Parsed<OnFailure>>,
}
