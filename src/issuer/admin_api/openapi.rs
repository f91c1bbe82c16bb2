//! The admin API described by its own code: the OpenAPI 3.1 document served
//! at `GET /admin/v1/openapi.json`, built by utoipa from the endpoints'
//! `#[utoipa::path]` attributes, the request body types (`body`), the list
//! parameters (`query`), the response views
//! ([`manage::views`](crate::issuer::manage::views)) and the error body
//! ([`ErrorBody`]).
//!
//! What holds for every endpoint is added here once, from what the code does
//! everywhere ([`Common`]): the bearer scheme; 401, 403 and 500 on every
//! operation that needs a token (`authorise` runs before each of them); 400,
//! 408 and 415 on every operation with a body (`read_json`); 400 on every
//! operation with a path parameter (a path the gateway refuses, such as one
//! with an encoded NUL or `/`, never reaches an endpoint); 400, `Link` and
//! `Next-Cursor` on every list (`query`). The document names no host, secret or
//! configured value: it is the same for every installation, and is built
//! once, when the issuer starts.

use bytes::Bytes;
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{HeaderBuilder, ObjectBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{catalog, events, tenancy};
use responses::{
    BadRequest, Conflict, Forbidden, NotFound, RequestTimeout, ServerError, Unauthorized,
    Unavailable, UnsupportedMediaType,
};

pub(super) mod responses;

/// The name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// The document, as served.
pub(super) fn document() -> Bytes {
    let mut doc = serde_json::to_value(AdminDoc::openapi()).unwrap_or_default();
    camel_case_links(&mut doc);
    optional_bodies(&mut doc);
    Bytes::from(doc.to_string())
}

/// Gives each optional request body (an `Option<T>` in `request_body`,
/// which utoipa writes as "null or T") the schema of `T`: the body may be
/// left out (it is not `required`), but when sent it is a `T`, never JSON
/// `null`, which `read_optional_json` refuses.
fn optional_bodies(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let bodies = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("requestBody"))
        .filter(|body| body.get("required") != Some(&Value::Bool(true)))
        .filter_map(|body| body.get_mut("content").and_then(Value::as_object_mut))
        .flat_map(|content| content.values_mut())
        .filter_map(|media| media.get_mut("schema"));
    for schema in bodies {
        let Some(Value::Array(choices)) = schema.get("oneOf") else {
            continue;
        };
        let null = serde_json::json!({ "type": "null" });
        if let [a, b] = choices.as_slice() {
            let other = match (a == &null, b == &null) {
                (true, false) => b.clone(),
                (false, true) => a.clone(),
                _ => continue,
            };
            *schema = other;
        }
    }
}

/// Renames the fields of every Link object to OpenAPI's spelling
/// (`operationId`, `operationRef`, `requestBody`): utoipa 5 writes them in
/// snake case, which validators refuse (fixed in utoipa 6, whose minimum Rust
/// is above ours).
fn camel_case_links(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|r| r.get_mut("links").and_then(Value::as_object_mut))
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_owned(), v);
            }
        }
    }
}

/// This document: the admin API's OpenAPI description.
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "openapi",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of the admin API (this one).",
         content_type = "application/json", body = Object),
    ),
)]
#[allow(dead_code)] // documents the route `respond` answers itself
fn openapi_json() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portcullis admin API",
        description = "Administration of portcullis's built-in OAuth 2.0 / OpenID Connect \
            issuer: API resources, clients, organizations and their members, users, roles, \
            webhooks and their events, signing keys and the audit log. Every operation but this document's \
            needs an access token of the issuer for the audience `{issuer.url}/admin/v1` \
            carrying the `portcullis:admin` scope (client credentials). Lists answer one \
            page, a JSON array; when more follow, the `Next-Cursor` header holds the \
            `cursor` of the next page and `Link` its URL (`rel=\"next\"`). Errors answer \
            `{\"error\", \"error_description\"}`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        openapi_json,
        catalog::list_apis,
        catalog::create_api,
        catalog::list_clients,
        catalog::create_client,
        catalog::delete_client,
        catalog::list_webhooks,
        catalog::create_webhook,
        catalog::get_webhook,
        catalog::delete_webhook,
        catalog::rotate_webhook_secret,
        events::list_events,
        events::get_event,
        events::redeliver_event,
        catalog::list_audit,
        catalog::rotate_keys,
        tenancy::list_organizations,
        tenancy::create_organization,
        tenancy::list_members,
        tenancy::add_member,
        tenancy::remove_member,
        tenancy::list_users,
        tenancy::create_user,
        tenancy::get_user,
        tenancy::update_user,
        tenancy::delete_user,
        tenancy::promote_user,
        tenancy::anonymize_user,
        tenancy::list_roles,
        tenancy::create_role,
    ),
    components(schemas(ErrorBody), responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        UnsupportedMediaType,
        RequestTimeout,
        ServerError,
        Unavailable,
    )),
    modifiers(&Common),
    security(("bearer" = [])),
)]
struct AdminDoc;

/// What every operation shares, added from what the code does for each (see
/// the module's header).
struct Common;

// === impl Common ===

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token of this issuer for `{issuer.url}/admin/v1` with the \
                 `portcullis:admin` scope",
            ))
            .build();
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .security_schemes
            .insert(BEARER.to_owned(), SecurityScheme::Http(scheme));
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ];
            for op in operations.into_iter().flatten() {
                add_common(op);
            }
        }
    }
}

/// Adds the responses and headers `op` has because of what it is: secured,
/// with a body, a list.
fn add_common(op: &mut Operation) {
    let secured = op.security.is_none();
    let has_body = op.request_body.is_some();
    let is_list = op.parameters.iter().flatten().any(|p| p.name == "cursor");
    // A path parameter can carry what no path may (a NUL, an encoded `/`, a
    // dot segment): the gateway refuses such paths with 400 before any
    // endpoint, as it does for every route.
    let in_path = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let mut add = |status: &str, name: &str| {
        let reference = RefOr::Ref(Ref::from_response_name(name));
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert(reference);
    };
    if has_body || is_list || in_path {
        add("400", "BadRequest");
    }
    if has_body {
        add("408", "RequestTimeout");
        add("415", "UnsupportedMediaType");
    }
    if secured {
        add("401", "Unauthorized");
        add("403", "Forbidden");
        add("500", "ServerError");
    }
    if is_list {
        if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
            let text = || ObjectBuilder::new().schema_type(Type::String);
            ok.headers.insert(
                "Next-Cursor".to_owned(),
                HeaderBuilder::new()
                    .schema(text())
                    .description(Some(
                        "The `cursor` of the next page; absent on the last page",
                    ))
                    .build(),
            );
            ok.headers.insert(
                "Link".to_owned(),
                HeaderBuilder::new()
                    .schema(text())
                    .description(Some(
                        "`<URL of the next page>; rel=\"next\"` (this request's path and \
                         query with the next cursor); absent on the last page",
                    ))
                    .build(),
            );
        }
    }
}

#[cfg(test)]
mod tests;
