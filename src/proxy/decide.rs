//! The decision, without the forwarding: method, path, route, bearer token,
//! verification, policy — in that order, each a named stage. The proxy runs it
//! for every request before rewriting and forwarding; the forward-auth listener
//! runs exactly the same stages on the request an outer proxy describes, so the
//! two can never disagree.

use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use super::handle::Outcome;
use super::overrides::{self, BadOverride};
use super::respond::Reject;
use crate::auth::Identity;
use crate::auth::bearer::{self, Credentials};
use crate::config::AuthMode;
use crate::routing::{self, NormalPath, PathError, RouteMatch};
use crate::state::Snapshot;

/// What the decision allowed.
#[derive(Debug)]
pub struct Decision {
    /// The route, as an index into the snapshot's routes.
    pub route: usize,
    /// The method a route with `method_override` judged instead of the request's.
    pub overridden: Option<Method>,
    /// The verified identity (none on anonymous routes, or optional ones without
    /// a token).
    pub identity: Option<Arc<Identity>>,
    /// The normalised path re-encoded for the upstream, when that differs from
    /// the decoded path (which the decision moved to `Outcome::path`).
    encoded: Option<String>,
}

impl Decision {
    /// The path for the upstream: re-encoded, or the decoded path in `out`.
    pub fn upstream_path<'a>(&'a self, out: &'a Outcome) -> &'a str {
        self.encoded
            .as_deref()
            .or(out.path.as_deref())
            .unwrap_or("/")
    }
}

/// Judges one request: `method`, `uri` and `headers` as the upstream would
/// receive them (`absolute_allowed`: the request came over HTTP/2, where a
/// target carries scheme and authority). What it found goes to `out`.
pub async fn decide(
    snap: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    absolute_allowed: bool,
    out: &mut Outcome,
) -> Result<Decision, Reject> {
    // 1. The method: what the upstream will dispatch on must be unambiguous.
    if !is_upper_token(method) {
        return Err(Reject::BadMethod);
    }
    // 2. Normalise before anything looks at the path, so that the route, the
    //    policy and the upstream all see the same resource.
    let path = routing::normalize(uri, absolute_allowed).map_err(Reject::BadPath)?;
    let judged = judge(snap, method, uri, headers, &path, out).await;
    // The decoded path goes to the access log, moved rather than copied.
    let (decoded, encoded) = path.into_parts();
    out.path = Some(decoded);
    let (route, overridden, identity) = judged?;
    Ok(Decision {
        route,
        overridden,
        identity,
        encoded,
    })
}

/// Stages 3 and 4 on the normalised path: the route, with the method the
/// upstream will act on; then bearer, verify, authorise (anonymous routes
/// never look at the header).
async fn judge(
    snap: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: &NormalPath,
    out: &mut Outcome,
) -> Result<(usize, Option<Method>, Option<Arc<Identity>>), Reject> {
    let (index, overridden) = route(snap, method, headers, uri.query(), path)?;
    let route = &snap.routes[index];
    out.route = Some(route.name.clone());
    out.route_index = Some(index);
    let identity = authenticate(snap, index, headers, path, out).await?;
    Ok((index, overridden, identity))
}

/// Reads, verifies and authorises the bearer token as the route's `auth` says.
async fn authenticate(
    snap: &Snapshot,
    index: usize,
    headers: &HeaderMap,
    path: &NormalPath,
    out: &mut Outcome,
) -> Result<Option<Arc<Identity>>, Reject> {
    let policy = &snap.routes[index].policy;
    let mode = policy.auth;
    if mode == AuthMode::Anonymous {
        return Ok(None);
    }
    match bearer::read(headers).map_err(Reject::BadAuthorization)? {
        Credentials::Absent if mode == AuthMode::Required => Err(Reject::NoToken),
        Credentials::OtherScheme if mode == AuthMode::Required => Err(Reject::WrongScheme),
        Credentials::Absent | Credentials::OtherScheme => Ok(None),
        Credentials::Bearer(token) => {
            let id = snap.verifier.verify(token).await.map_err(Reject::Token)?;
            out.identity = Some(id.clone());
            policy
                .authorize(&id, path)
                .map_err(|d| Reject::Denied(d, policy.scope_challenge.clone()))?;
            Ok(Some(id))
        }
    }
}

/// Whether the method is an upper-case token (`A-Z`, `-`, `_`). Methods are
/// case-sensitive, but many frameworks upper-case them (Symfony, Laravel): a
/// `get` that no `methods: [GET]` route matches would reach them as a GET
/// through a weaker route. nginx refuses such methods too.
pub fn is_upper_token(m: &Method) -> bool {
    m.as_str()
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Finds the route for a normalised path, and the overridden method when the
/// route honours method overrides.
///
/// A path with matrix parameters is routed without them, and refused unless the
/// route it reaches opts in: a servlet upstream would route it without them too.
/// A method override (headers or `_method`, see [`overrides::method_override`])
/// is judged like the method itself: the route is looked up again with it, and
/// that route must opt in as well (so a `GET`-only route cannot become a
/// `DELETE` through another route's opt-in). A `_method` parameter on a route
/// that does not opt in is refused: it travels in the query, which reaches the
/// upstream untouched (the override headers are removed instead).
fn route(
    snap: &Snapshot,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    path: &NormalPath,
) -> Result<(usize, Option<Method>), Reject> {
    let found = |m: &Method| match snap.table.lookup(m, path) {
        RouteMatch::Found(i) => Ok(i),
        // With matrix parameters, a path that reaches no route is refused for
        // them: the same resource without them may well exist.
        _ if path.has_matrix_params() => Err(Reject::BadPath(PathError::MatrixParams)),
        RouteMatch::MethodNotAllowed(allow) => Err(Reject::MethodNotAllowed(allow)),
        RouteMatch::NotFound => Err(Reject::NotFound),
    };
    let mut index = found(method)?;
    let mut effective = None;
    if snap.routes[index].method_override {
        let asked = overrides::method_override(method, headers, query).map_err(|e| match e {
            BadOverride::Ambiguous => Reject::BadMethodOverride,
            BadOverride::NotAllowed => Reject::MethodOverrideNotAllowed,
        })?;
        if let Some(m) = asked {
            index = found(&m)?;
            if !snap.routes[index].method_override {
                return Err(Reject::MethodOverrideRefused);
            }
            effective = Some(m);
        }
    } else if overrides::has_method_param(query) {
        return Err(Reject::MethodOverrideRefused);
    }
    if path.has_matrix_params() && !snap.routes[index].matrix_params {
        return Err(Reject::BadPath(PathError::MatrixParams));
    }
    Ok((index, effective))
}
