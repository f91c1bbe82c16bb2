//! The file as written: serde types that reject unknown keys. Values parse
//! themselves ([`Parsed`]); references between sections are checked later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;

use super::value::{Algorithm, HttpUrl, Parsed, PathPattern};

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Parsed<SocketAddr>>,
    pub shutdown_grace: Option<Parsed<Duration>>,
    pub workers: Option<usize>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Parsed<HttpUrl>,
    pub connect_timeout: Option<Parsed<Duration>>,
    pub timeout: Option<Parsed<Duration>>,
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
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    Required,
    Optional,
    Anonymous,
}
