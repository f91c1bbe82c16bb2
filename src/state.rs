//! The configuration in force, compiled for the request path: routes and their
//! policies, the route table, the verifier. Each request takes one snapshot and
//! sees one consistent view for its whole life.

use std::sync::Arc;

use http::HeaderName;

use crate::auth::Verifier;
use crate::config::Config;
use crate::policy::Policy;
use crate::routing::RouteTable;

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
}

/// Everything a request needs, built completely before it is used.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: Vec<Route>,
    pub table: RouteTable,
    pub verifier: Arc<Verifier>,
    /// The identity header names, in the order of the verifier's values.
    pub identity_headers: Arc<[HeaderName]>,
}

impl Snapshot {
    /// Compiles `config` with an already-built verifier.
    pub fn new(config: Arc<Config>, verifier: Arc<Verifier>) -> Snapshot {
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                name: Arc::from(r.path.as_str()),
                upstream: r.upstream,
                policy: Policy::new(r),
                matrix_params: r.matrix_params,
                method_override: r.method_override,
            })
            .collect();
        Snapshot {
            table: RouteTable::new(&config.routes),
            identity_headers: config
                .identity_headers
                .iter()
                .map(|(_, h)| h.clone())
                .collect(),
            routes,
            verifier,
            config,
        }
    }
}
