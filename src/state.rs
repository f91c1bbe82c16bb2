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
}

/// What building a snapshot needs besides the configuration.
#[derive(Debug, Clone)]
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
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
        for i in &config.issuers {
            let kept = previous.and_then(|p| {
                p.verifier
                    .issuers()
                    .iter()
                    .find(|k| *k.config == *i)
                    .cloned()
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
        let verifier = Arc::new(Verifier::new(
            issuers,
            header_claims,
            deps.clock.clone(),
            deps.metrics.clone(),
        ));
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let kept = previous.and_then(|p| p.upstreams.iter().find(|t| t.same_config(u)));
                match kept {
                    Some(t) => Ok(t.clone()),
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
