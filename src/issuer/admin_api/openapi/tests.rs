use std::collections::BTreeSet;

use serde_json::Value;

use super::super::routes::ROUTES;
use super::*;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_slice(&document()).expect("the document is JSON")
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_nothing_else_is() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without documentation: {missing:?}; documented operations without a route: {extra:?}"
    );
    assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
}

#[test]
fn path_parameters_are_the_templates_segments() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let in_path: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_template, in_path, "{method} {path}");
        assert!(
            params
                .iter()
                .all(|p| p["in"] != "path" || p["required"] == true),
            "{method} {path}: path parameters are required"
        );
    }
}

#[test]
fn secured_operations_document_refusals_and_errors() {
    let doc = doc();
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        let has = |status: &str| responses.contains_key(status);
        let public = path == "/admin/v1/openapi.json";
        assert_eq!(public, op.get("security").is_some(), "{method} {path}");
        if !public {
            for status in ["401", "403", "500"] {
                assert!(has(status), "{method} {path} lacks {status}");
            }
        }
        if op.get("requestBody").is_some() {
            assert!(has("400") && has("408") && has("415"), "{method} {path}");
            let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert!(body.is_string(), "{method} {path}: a JSON body schema");
        }
        if path.contains('{') {
            assert!(has("404"), "{method} {path}: an unknown id is a 404");
            assert!(
                has("400"),
                "{method} {path}: a path normalisation refuses is a 400"
            );
        }
        let success = responses.keys().filter(|s| s.starts_with('2')).count();
        assert_eq!(success, 1, "{method} {path}: one success status");
        for (status, response) in responses {
            let response = match response.get("$ref").and_then(Value::as_str) {
                Some(r) => doc.pointer(&r[1..]).expect("resolves").clone(),
                None => response.clone(),
            };
            let content = response["content"].as_object().expect("a body");
            let types: Vec<&String> = content.keys().collect();
            assert_eq!(types, ["application/json"], "{method} {path} {status}");
        }
    }
    // The blocking hook on user creation refuses with 403 and its reason.
    let create_user = &doc["paths"]["/admin/v1/users"]["post"]["responses"];
    assert!(create_user.get("403").is_some() && create_user.get("503").is_some());
}

#[test]
fn lists_document_their_paging() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let takes = |name: &str| {
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query")
        };
        let ok = &op["responses"]["200"];
        let is_list = ok["content"]["application/json"]["schema"]["type"] == "array";
        assert_eq!(
            is_list,
            takes("limit") && takes("cursor"),
            "{method} {path}"
        );
        if is_list {
            assert!(
                ok["headers"].get("Next-Cursor").is_some(),
                "{method} {path}"
            );
            assert!(ok["headers"].get("Link").is_some(), "{method} {path}");
            assert!(op["responses"].get("400").is_some(), "{method} {path}");
        }
    }
    let users = &doc["paths"]["/admin/v1/users"]["get"]["parameters"];
    assert!(
        users
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "email")
    );
    let audit = &doc["paths"]["/admin/v1/audit"]["get"]["parameters"];
    let names: BTreeSet<&str> = audit
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let want = [
        "since", "until", "actor", "action", "org_id", "limit", "cursor",
    ];
    assert_eq!(names, want.into_iter().collect());
}

#[test]
fn every_reference_resolves() {
    fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    refs.push(r);
                }
                map.values().for_each(|v| walk(v, refs));
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let doc = doc();
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(refs.len() > 50, "{}", refs.len());
    for r in refs {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[test]
fn the_document_is_the_same_for_everyone() {
    // Built from types only: no host, no configuration, the same bytes each time.
    assert_eq!(document(), document());
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc.get("servers").is_none());
    let text = String::from_utf8(document().to_vec()).expect("UTF-8");
    for leak in [
        "127.0.0.1",
        "localhost",
        "http://",
        "https://",
        "postgres:",
        "sqlite:",
    ] {
        assert!(!text.contains(leak), "{leak}");
    }
}

#[test]
fn links_name_operations_and_their_parameters() {
    let doc = doc();
    let ops = operations(&doc);
    let mut seen = 0;
    for (method, path, op) in &ops {
        for (status, response) in op["responses"].as_object().expect("responses") {
            let Some(links) = response.get("links").and_then(Value::as_object) else {
                continue;
            };
            for (name, link) in links {
                seen += 1;
                let at = format!("{method} {path} {status} {name}");
                assert!(link.get("operation_id").is_none(), "{at}: snake case");
                let target = link["operationId"].as_str().expect("operationId");
                let (_, _, target_op) = ops
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == target)
                    .unwrap_or_else(|| panic!("{at}: no operation {target}"));
                let params = target_op["parameters"].as_array().expect("parameters");
                for (param, value) in link["parameters"].as_object().expect("parameters") {
                    assert!(
                        params.iter().any(|p| p["name"] == param.as_str()),
                        "{at}: {target} has no parameter {param}"
                    );
                    assert!(
                        value
                            .as_str()
                            .is_some_and(|v| v.starts_with("$response.body#/"))
                    );
                }
            }
        }
    }
    assert!(seen >= 5, "{seen}");
}

#[test]
fn bodies_that_may_be_left_out_are_not_required() {
    let doc = doc();
    for (path, required) in [
        ("/admin/v1/webhooks/{id}/rotate-secret", false),
        ("/admin/v1/events/{id}/redeliver", false),
        ("/admin/v1/webhooks", true),
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_eq!(body["required"] == true, required, "{path}: {body}");
        let schema = &body["content"]["application/json"]["schema"];
        assert!(schema["$ref"].is_string(), "{path}: never null: {schema}");
    }
}
