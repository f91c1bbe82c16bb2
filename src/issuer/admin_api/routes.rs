//! The admin API's route table: every method and path it answers, the one
//! list the dispatcher matches requests against and the OpenAPI document is
//! checked against (see `openapi`'s tests), so that no route exists without
//! its documentation.
//!
//! Paths are written as in the document, `{name}` standing for one non-empty
//! path segment, which reaches the endpoint percent-decoded (UTF-8 without
//! NUL, or the path matches nothing).

use http::Method;
use percent_encoding::percent_decode_str;

/// An endpoint of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    OpenApi,
    ListApis,
    CreateApi,
    ListClients,
    CreateClient,
    DeleteClient,
    ListWebhooks,
    CreateWebhook,
    GetWebhook,
    DeleteWebhook,
    RotateWebhookSecret,
    ListEvents,
    GetEvent,
    RedeliverEvent,
    ListAudit,
    RotateKeys,
    ListOrganizations,
    CreateOrganization,
    ListMembers,
    AddMember,
    RemoveMember,
    ListUsers,
    CreateUser,
    GetUser,
    UpdateUser,
    DeleteUser,
    PromoteUser,
    AnonymizeUser,
    ListRoles,
    CreateRole,
}

/// One route: a method and a path template, and what answers them.
#[derive(Debug)]
pub(super) struct Route {
    /// The method.
    pub method: Method,
    /// The path template, `/admin/v1/…` with `{name}` segments.
    pub path: &'static str,
    /// The endpoint.
    pub endpoint: Endpoint,
}

/// The routes whose template a request path matches, and the values of its
/// `{name}` segments.
#[derive(Debug)]
pub(super) struct Matched {
    routes: Vec<&'static Route>,
    params: Vec<(&'static str, String)>,
}

/// Every route of the admin API. Only `GET /admin/v1/openapi.json` needs no
/// token (see [`Route::is_public`]).
pub(super) static ROUTES: &[Route] = &[
    route(Method::GET, "/admin/v1/openapi.json", Endpoint::OpenApi),
    route(Method::GET, "/admin/v1/apis", Endpoint::ListApis),
    route(Method::POST, "/admin/v1/apis", Endpoint::CreateApi),
    route(Method::GET, "/admin/v1/clients", Endpoint::ListClients),
    route(Method::POST, "/admin/v1/clients", Endpoint::CreateClient),
    route(
        Method::DELETE,
        "/admin/v1/clients/{id}",
        Endpoint::DeleteClient,
    ),
    route(Method::GET, "/admin/v1/webhooks", Endpoint::ListWebhooks),
    route(Method::POST, "/admin/v1/webhooks", Endpoint::CreateWebhook),
    route(Method::GET, "/admin/v1/webhooks/{id}", Endpoint::GetWebhook),
    route(
        Method::DELETE,
        "/admin/v1/webhooks/{id}",
        Endpoint::DeleteWebhook,
    ),
    route(
        Method::POST,
        "/admin/v1/webhooks/{id}/rotate-secret",
        Endpoint::RotateWebhookSecret,
    ),
    route(Method::GET, "/admin/v1/events", Endpoint::ListEvents),
    route(Method::GET, "/admin/v1/events/{id}", Endpoint::GetEvent),
    route(
        Method::POST,
        "/admin/v1/events/{id}/redeliver",
        Endpoint::RedeliverEvent,
    ),
    route(Method::GET, "/admin/v1/audit", Endpoint::ListAudit),
    route(Method::POST, "/admin/v1/keys/rotate", Endpoint::RotateKeys),
    route(
        Method::GET,
        "/admin/v1/organizations",
        Endpoint::ListOrganizations,
    ),
    route(
        Method::POST,
        "/admin/v1/organizations",
        Endpoint::CreateOrganization,
    ),
    route(
        Method::GET,
        "/admin/v1/organizations/{id}/members",
        Endpoint::ListMembers,
    ),
    route(
        Method::POST,
        "/admin/v1/organizations/{id}/members",
        Endpoint::AddMember,
    ),
    route(
        Method::DELETE,
        "/admin/v1/organizations/{id}/members/{user_id}",
        Endpoint::RemoveMember,
    ),
    route(Method::GET, "/admin/v1/users", Endpoint::ListUsers),
    route(Method::POST, "/admin/v1/users", Endpoint::CreateUser),
    route(Method::GET, "/admin/v1/users/{id}", Endpoint::GetUser),
    route(Method::PATCH, "/admin/v1/users/{id}", Endpoint::UpdateUser),
    route(Method::DELETE, "/admin/v1/users/{id}", Endpoint::DeleteUser),
    route(
        Method::POST,
        "/admin/v1/users/{id}/promote",
        Endpoint::PromoteUser,
    ),
    route(
        Method::POST,
        "/admin/v1/users/{id}/anonymize",
        Endpoint::AnonymizeUser,
    ),
    route(Method::GET, "/admin/v1/roles", Endpoint::ListRoles),
    route(Method::POST, "/admin/v1/roles", Endpoint::CreateRole),
];

const fn route(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

// === impl Route ===

impl Route {
    /// Whether the route answers without a token: the OpenAPI document only,
    /// which is the same for every installation.
    pub(super) fn is_public(&self) -> bool {
        self.endpoint == Endpoint::OpenApi
    }
}

/// The routes matching `path`, or `None` when none does.
pub(super) fn lookup(path: &str) -> Option<Matched> {
    let mut found: Option<Matched> = None;
    for route in ROUTES {
        let Some(params) = matches(route.path, path) else {
            continue;
        };
        match &mut found {
            Some(m) => m.routes.push(route),
            None => {
                found = Some(Matched {
                    routes: vec![route],
                    params,
                })
            }
        }
    }
    found
}

/// The values of `template`'s `{name}` segments in `path`, when it matches.
fn matches(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut given = path.split('/');
    for want in template.split('/') {
        let got = given.next()?;
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) => {
                let value = percent_decode_str(got).decode_utf8().ok()?;
                // No record has an empty id, or one with a NUL, which
                // PostgreSQL cannot even compare.
                if value.is_empty() || value.contains('\0') {
                    return None;
                }
                params.push((name, value.into_owned()));
            }
            None if want == got => {}
            None => return None,
        }
    }
    given.next().is_none().then_some(params)
}

// === impl Matched ===

impl Matched {
    /// The route for `method`, if the path has one.
    pub(super) fn route(&self, method: &Method) -> Option<&'static Route> {
        self.routes.iter().copied().find(|r| r.method == *method)
    }

    /// Whether every route of the path answers without a token.
    pub(super) fn is_public(&self) -> bool {
        self.routes.iter().all(|r| r.is_public())
    }

    /// The methods of the path, for `Allow`.
    pub(super) fn allow(&self) -> String {
        let methods: Vec<&str> = self.routes.iter().map(|r| r.method.as_str()).collect();
        methods.join(", ")
    }

    /// The value of the path's `{name}` segment (empty if it has none).
    pub(super) fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_routes_and_segments() {
        let m = lookup("/admin/v1/users/usr_1").expect("matches");
        assert_eq!(m.allow(), "GET, PATCH, DELETE");
        assert_eq!(m.param("id"), "usr_1");
        assert_eq!(
            m.route(&Method::PATCH).map(|r| r.endpoint),
            Some(Endpoint::UpdateUser)
        );
        assert!(m.route(&Method::POST).is_none());
        assert!(!m.is_public());

        let m = lookup("/admin/v1/organizations/org_1/members/a%20b%2Fc").expect("matches");
        assert_eq!(m.param("id"), "org_1");
        assert_eq!(m.param("user_id"), "a b/c");
        assert_eq!(m.allow(), "DELETE");

        assert!(lookup("/admin/v1/openapi.json").is_some_and(|m| m.is_public()));
        assert_eq!(
            lookup("/admin/v1/users").map(|m| m.allow()).as_deref(),
            Some("GET, POST")
        );
    }

    #[test]
    fn other_paths_match_nothing() {
        for path in [
            "/admin/v1/",
            "/admin/v1/users/",
            "/admin/v1/users//promote",
            "/admin/v1/users/usr_1/promote/",
            "/admin/v1/users/usr_1/other",
            "/admin/v1/nothing",
            "/admin/v2/users",
            "/admin/v1/clients/%FF",
            "/admin/v1/users/a%00b",
            "/admin/v1/keys/rotate/now",
        ] {
            assert!(lookup(path).is_none(), "{path}");
        }
    }
}
