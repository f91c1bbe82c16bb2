//! The configuration in force, compiled for the request path: routes and their
//! policies, the route table, the verifier with every issuer's keys, and the
//! upstream targets. One [`Snapshot`] is the whole configuration: a reload
//! builds a new one completely, then swaps it in one step.
//!
//! What in-flight and new requests see: each request loads the snapshot once
//! and keeps it until it is answered, so a request that started before a
//! reload finishes on the old configuration; requests that start after the
//! swap see only the new one. Issuers and upstreams whose settings did not
//! change are carried over, so their key sets (with their JWKS caches) and every
//! worker's pooled connections survive the reload.

use std::sync::Arc;

use http::HeaderName;

use crate::auth::Verifier;
use crate::auth::introspect::Introspector;
use crate::auth::jwks::{FetchError, IssuerKeys, http_client};
use crate::auth::revocation::RevocationSet;
use crate::clock::Clock;
use crate::config::Config;
use crate::policy::Policy;
use crate::policy::cors::Cors;
use crate::routing::RouteTable;
use crate::telemetry::Metrics;
use crate::upstream::{Target, UpstreamError};

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// The pattern as written: the `route` label of logs and metrics.
    pub name: Arc<str>,
    pub upstream: usize,
    pub policy: Policy,
    /// Paths with matrix parameters are accepted (`matrix_params: true`).
    pub matrix_params: bool,
    /// Method overrides are honoured (`method_override: true`).
    pub method_override: bool,
    /// Larger request bodies get 413.
    pub max_body: Option<u64>,
    /// `Upgrade: websocket` is allowed.
    pub websocket: bool,
    /// The route's CORS policy (`cors:`).
    pub cors: Option<Arc<Cors>>,
}

/// Everything a request needs, built completely before it is used.
#[derive(Debug)]
pub struct Snapshot {
    /// Which configuration this is: 1 at start, one more per successful reload.
    pub generation: u64,
    pub config: Arc<Config>,
    pub routes: Vec<Route>,
    pub table: RouteTable,
    pub verifier: Arc<Verifier>,
    /// The identity header names, in the order of the verifier's values.
    pub identity_headers: Arc<[HeaderName]>,
    /// The compiled upstreams, indexed as `config.upstreams`.
    pub upstreams: Vec<Arc<Target>>,
    /// What the TLS files of each upstream and issuer held when they were
    /// read, indexed as `config.upstreams` and `config.issuers`: a reload keeps
    /// an upstream or issuer only if its settings and its files are unchanged
    /// (a CA removed from `ca_file`, a rotated `client_cert`, take effect).
    upstream_files: Vec<Option<FileDigest>>,
    issuer_files: Vec<Option<FileDigest>>,
}

/// The SHA-256 of the names and contents of a set of files.
type FileDigest = [u8; 32];

/// `None` when a file cannot be read (then nothing is kept, and the build
/// itself reports the file).
fn file_digest<'a>(paths: impl IntoIterator<Item = &'a std::path::Path>) -> Option<FileDigest> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for path in paths {
        let content = std::fs::read(path).ok()?;
        let name = path.as_os_str().as_encoded_bytes();
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name);
        ctx.update(&(content.len() as u64).to_be_bytes());
        ctx.update(&content);
    }
    ctx.finish().as_ref().try_into().ok()
}

/// The files an upstream reads when it is compiled.
fn upstream_files(u: &crate::config::UpstreamConfig) -> Option<FileDigest> {
    let certs = u
        .client_cert
        .iter()
        .flat_map(|c| [c.cert.as_path(), c.key.as_path()]);
    file_digest(u.ca_file.as_deref().into_iter().chain(certs))
}

/// What building a snapshot needs besides the configuration.
#[derive(Debug, Clone)]
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// The built-in issuer's revocation set, shared by every snapshot's
    /// verifier; `None` without an `issuer:` section.
    pub revocations: Option<Arc<RevocationSet>>,
}

/// Why a configuration could not be compiled (it passed `check`, but a file it
/// names could not be used).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot set up key fetching for issuer `{0}`")]
    Keys(String, #[source] FetchError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Snapshot {
    /// Compiles `config` as generation `generation`. Issuers and upstream targets
    /// of `previous` whose settings are unchanged are kept; new ones read their
    /// TLS files now, so that a broken one fails the build, not a request.
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Snapshot>,
        generation: u64,
        deps: &Deps,
    ) -> Result<Snapshot, BuildError> {
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let issuer_files: Vec<_> = config
            .issuers
            .iter()
            .map(|i| file_digest(i.ca_file.as_deref()))
            .collect();
        for (i, files) in config.issuers.iter().zip(&issuer_files) {
            let kept = previous.and_then(|p| {
                let at = p.verifier.issuers().iter().position(|k| *k.config == *i)?;
                let same_files = files.is_some() && p.issuer_files.get(at) == Some(files);
                same_files.then(|| p.verifier.issuers()[at].clone())
            });
            let keys = match kept {
                Some(k) => k,
                None => {
                    let client = http_client(i.ca_file.as_deref())
                        .map_err(|e| BuildError::Keys(i.id.clone(), e))?;
                    let keys = IssuerKeys::new(Arc::new(i.clone()), client, deps.metrics.clone());
                    let keys = match &i.introspection {
                        Some(intro) => keys.with_introspector(
                            Introspector::new(
                                &i.id,
                                intro,
                                i.ca_file.as_deref(),
                                deps.clock.clone(),
                                deps.metrics.clone(),
                            )
                            .map_err(|e| BuildError::Keys(i.id.clone(), e))?,
                        ),
                        None => keys,
                    };
                    Arc::new(keys)
                }
            };
            issuers.push(keys);
        }
        let header_claims = config
            .identity_headers
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        let verifier = Verifier::new(
            issuers,
            header_claims,
            deps.clock.clone(),
            deps.metrics.clone(),
        )
        .with_cache_budget(config.server.limits.token_cache);
        let verifier = Arc::new(match &deps.revocations {
            Some(set) => verifier.with_revocations(set.clone()),
            None => verifier,
        });
        let upstream_files: Vec<_> = config.upstreams.iter().map(upstream_files).collect();
        let upstreams = config
            .upstreams
            .iter()
            .zip(&upstream_files)
            .map(|(u, files)| {
                let kept = previous.and_then(|p| {
                    let at = p.upstreams.iter().position(|t| t.same_config(u))?;
                    let same_files = files.is_some() && p.upstream_files.get(at) == Some(files);
                    same_files.then(|| p.upstreams[at].clone())
                });
                match kept {
                    Some(t) => Ok(t),
                    None => Target::new(u).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                name: Arc::from(r.path.as_str()),
                upstream: r.upstream,
                policy: Policy::new(r),
                matrix_params: r.matrix_params,
                method_override: r.method_override,
                max_body: r.max_body,
                websocket: r.websocket,
                cors: r
                    .cors
                    .as_ref()
                    .map(|c| Arc::new(Cors::new(c, r.methods.as_deref()))),
            })
            .collect();
        Ok(Snapshot {
            generation,
            upstreams,
            table: RouteTable::new(&config.routes),
            identity_headers: config
                .identity_headers
                .iter()
                .map(|(_, h)| h.clone())
                .collect(),
            routes,
            verifier,
            config,
            upstream_files,
            issuer_files,
        })
    }

    /// The key set of the `builtin: true` issuer, if one is configured.
    pub fn builtin_keys(&self) -> Option<Arc<IssuerKeys>> {
        self.verifier
            .issuers()
            .iter()
            .find(|i| i.is_builtin())
            .cloned()
    }
}
