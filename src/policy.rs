//! Route requirements checked against a verified identity, and the route's CORS
//! policy ([`cors`]). Pure.

pub mod cors;

use http::HeaderValue;

use crate::auth::Identity;
use crate::config::{AuthMode, RouteConfig};
use crate::routing::NormalPath;
use crate::routing::table::param_position;

/// What a route requires of a token, compiled once per configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The path segment whose value the token's org claim must equal.
    pub org_segment: Option<usize>,
    /// Accepted issuer indexes; `None`: all.
    pub issuers: Option<Vec<usize>>,
    pub forward_token: bool,
    /// The `scope="…"` of an `insufficient_scope` challenge.
    pub scope_challenge: HeaderValue,
}

/// Why an authenticated request is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("the token's issuer is not accepted on this route")]
    IssuerNotAllowed,
    #[error("the token lacks a required scope")]
    InsufficientScope,
    #[error("the token's organization does not match the path")]
    OrgMismatch,
    #[error("the token lacks a required role")]
    MissingRole,
}

impl Denial {
    /// The fixed `error_description` sent to the client: part of the API, so it
    /// does not follow `Display`, which may change for logs.
    pub fn description(self) -> &'static str {
        match self {
            Denial::IssuerNotAllowed => "the token's issuer is not accepted on this route",
            Denial::InsufficientScope => "the token lacks a required scope",
            Denial::OrgMismatch => "the token's organization does not match the path",
            Denial::MissingRole => "the token lacks a required role",
        }
    }

    /// A stable, low-cardinality name for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::IssuerNotAllowed => "issuer_not_allowed",
            Denial::InsufficientScope => "insufficient_scope",
            Denial::OrgMismatch => "org_mismatch",
            Denial::MissingRole => "missing_role",
        }
    }
}

// === impl Policy ===

impl Policy {
    /// Compiles a route's requirements.
    pub fn new(route: &RouteConfig) -> Policy {
        let challenge = if route.scopes.is_empty() {
            route.any_scopes.join(" ")
        } else {
            route.scopes.join(" ")
        };
        Policy {
            auth: route.auth,
            scopes: route.scopes.clone(),
            any_scopes: route.any_scopes.clone(),
            roles: route.roles.clone(),
            org_segment: route
                .org_param
                .as_deref()
                .and_then(|p| param_position(&route.pattern, p)),
            issuers: route.issuers.clone(),
            forward_token: route.forward_token,
            scope_challenge: HeaderValue::from_str(&challenge)
                .unwrap_or(HeaderValue::from_static("")),
        }
    }

    /// Checks the identity against the route: issuer, then every scope, then one
    /// of `any_scopes`, then the organization, then one of the roles.
    pub fn authorize(&self, id: &Identity, path: &NormalPath) -> Result<(), Denial> {
        if let Some(allowed) = &self.issuers {
            if !allowed.contains(&id.issuer) {
                return Err(Denial::IssuerNotAllowed);
            }
        }
        if !self.scopes.iter().all(|s| id.has_scope(s)) {
            return Err(Denial::InsufficientScope);
        }
        if !self.any_scopes.is_empty() && !self.any_scopes.iter().any(|s| id.has_scope(s)) {
            return Err(Denial::InsufficientScope);
        }
        if let Some(seg) = self.org_segment {
            let matches = match (path.segment(seg), id.org.as_deref()) {
                (Some(want), Some(have)) => want == have,
                _ => false,
            };
            if !matches {
                return Err(Denial::OrgMismatch);
            }
        }
        if !self.roles.is_empty() && !self.roles.iter().any(|r| id.has_role(r)) {
            return Err(Denial::MissingRole);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::ParseValue;
    use crate::config::{PathPattern, RouteConfig};

    fn route(path: &str) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            pattern: PathPattern::parse_value(path).expect("pattern"),
            methods: None,
            upstream: 0,
            auth: AuthMode::Required,
            scopes: vec![],
            any_scopes: vec![],
            roles: vec![],
            org_param: None,
            issuers: None,
            forward_token: true,
            matrix_params: false,
            method_override: false,
            max_body: None,
            websocket: false,
            cors: None,
        }
    }

    fn identity(scopes: &[&str], roles: &[&str], org: Option<&str>) -> Identity {
        Identity {
            issuer: 0,
            generation: 1,
            exp: i64::MAX,
            nbf: None,
            sub: Some("u1".into()),
            org: org.map(str::to_owned),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            headers: vec![],
            revocation: None,
        }
    }

    fn path(p: &str) -> NormalPath {
        crate::routing::normalize(&p.parse().expect("uri"), false).expect("path")
    }

    #[test]
    fn scopes_all_and_any() {
        let mut r = route("/*");
        r.scopes = vec!["read".into(), "write".into()];
        r.any_scopes = vec!["admin".into(), "support".into()];
        let p = Policy::new(&r);
        assert_eq!(p.scope_challenge, "read write");
        let ok = identity(&["read", "write", "support"], &[], None);
        assert_eq!(p.authorize(&ok, &path("/x")), Ok(()));
        let missing = identity(&["read", "support"], &[], None);
        assert_eq!(
            p.authorize(&missing, &path("/x")),
            Err(Denial::InsufficientScope)
        );
        let no_any = identity(&["read", "write"], &[], None);
        assert_eq!(
            p.authorize(&no_any, &path("/x")),
            Err(Denial::InsufficientScope)
        );
    }

    #[test]
    fn org_param_must_equal_claim() {
        let mut r = route("/orgs/{org}/items/*");
        r.org_param = Some("org".into());
        let p = Policy::new(&r);
        assert_eq!(
            p.authorize(
                &identity(&[], &[], Some("acme")),
                &path("/orgs/acme/items/1")
            ),
            Ok(())
        );
        assert_eq!(
            p.authorize(
                &identity(&[], &[], Some("acme")),
                &path("/orgs/evil/items/1")
            ),
            Err(Denial::OrgMismatch)
        );
        assert_eq!(
            p.authorize(&identity(&[], &[], None), &path("/orgs/acme/items")),
            Err(Denial::OrgMismatch)
        );
    }

    #[test]
    fn roles_and_issuers() {
        let mut r = route("/*");
        r.roles = vec!["admin".into()];
        r.issuers = Some(vec![1]);
        let p = Policy::new(&r);
        let mut id = identity(&[], &["admin"], None);
        assert_eq!(p.authorize(&id, &path("/")), Err(Denial::IssuerNotAllowed));
        id.issuer = 1;
        assert_eq!(p.authorize(&id, &path("/")), Ok(()));
        let mut viewer = identity(&[], &["viewer"], None);
        viewer.issuer = 1;
        assert_eq!(p.authorize(&viewer, &path("/")), Err(Denial::MissingRole));
    }
}
