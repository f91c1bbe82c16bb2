//! `GET /admin/v1/openapi.json`: served without a token, the same for every
//! installation, and describing what the API answers. (The unit tests in
//! `src/issuer/admin_api/openapi/tests.rs` compare it with the route table;
//! `tests/interop/schemathesis.sh` runs schemathesis against it.)

use super::*;

async fn document(gw: &Gateway) -> (http::HeaderMap, Value) {
    let (status, headers, body) = get(&gw.url("/admin/v1/openapi.json"), None).await;
    assert_eq!(status, 200, "{body}");
    (headers, serde_json::from_str(&body).expect("JSON"))
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let env = env().await;
    let (headers, doc) = document(&env.gw).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "portcullis admin API");
    // A token is ignored there, even a bad one; other methods are a 405.
    let (status, _, _) = get(&env.gw.url("/admin/v1/openapi.json"), Some("garbage")).await;
    assert_eq!(status, 200);
    let (status, headers, body) = call(&env.gw, "POST", "/admin/v1/openapi.json", None, None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET");
    assert_eq!(body["error"], "method_not_allowed");
    // Every other path still needs a token.
    let (status, _, _) = call(&env.gw, "GET", "/admin/v1/users", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_document_is_the_same_for_every_installation() {
    let env = env().await;
    let (_, doc) = document(&env.gw).await;
    // Another issuer URL, database and set of clients.
    let dir = tempfile::tempdir().unwrap();
    let other = Gateway::start(&format!(
        r#"server:
  listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "https://login.other.test"
  database: "sqlite://{}/other.db"
  signing_algs: [RS256]
issuers:
  - id: local
    builtin: true
    audiences: ["https://login.other.test/admin/v1"]
"#,
        dir.path().display()
    ))
    .await;
    let (_, again) = document(&other).await;
    assert_eq!(doc, again);
    let text = doc.to_string();
    for configured in [
        "issuer.test",
        "api.example.test",
        "other.test",
        "ops-secret",
    ] {
        assert!(!text.contains(configured), "{configured}");
    }
}

#[tokio::test]
async fn the_document_describes_the_endpoints_and_their_answers() {
    let env = env().await;
    let (_, doc) = document(&env.gw).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/admin/v1/users", &["get", "post"][..]),
        ("/admin/v1/users/{id}", &["get", "patch", "delete"]),
        (
            "/admin/v1/organizations/{id}/members/{user_id}",
            &["delete"],
        ),
        ("/admin/v1/audit", &["get"]),
        ("/admin/v1/keys/rotate", &["post"]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{m} {path}");
        }
    }
    let create_user = &paths["/admin/v1/users"]["post"];
    assert_eq!(
        create_user["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewUser"
    );
    for status in ["201", "400", "401", "403", "408", "409", "415", "500"] {
        assert!(create_user["responses"].get(status).is_some(), "{status}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error", "error_description"]));

    // What the API answers has what the document requires: a user as listed
    // and a refusal.
    let t = admin_token(&env.gw).await;
    let body = json!({ "email": "doc@example.test", "password": "long enough pw", "name": "D" });
    let (status, _, _) = call(&env.gw, "POST", "/admin/v1/users", Some(&t), Some(body)).await;
    assert_eq!(status, 201);
    let (_, _, users) = call(&env.gw, "GET", "/admin/v1/users", Some(&t), None).await;
    let user = &users[0];
    let schema = &doc["components"]["schemas"]["User"];
    for name in schema["required"].as_array().unwrap() {
        assert!(
            user.get(name.as_str().unwrap()).is_some(),
            "{name} in {user}"
        );
    }
    let documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let sent: Vec<&String> = user.as_object().unwrap().keys().collect();
    assert_eq!(sorted_refs(documented), sorted_refs(sent));
    let (status, _, refusal) =
        call(&env.gw, "GET", "/admin/v1/users/usr_nope", Some(&t), None).await;
    assert_eq!(status, 404);
    let mut keys: Vec<&String> = refusal.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["error", "error_description"]);
}

fn sorted_refs(mut v: Vec<&String>) -> Vec<&String> {
    v.sort();
    v
}
