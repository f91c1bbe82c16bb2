//! The admin API takes tokens for its own audience only
//! (`{issuer.url}/admin/v1`), and `portcullis:admin` exists on that resource
//! only: a token for another API carrying the scope (signed with the
//! issuer's own key, as a resource that defined the scope would have had it
//! minted) is refused, and no other resource can define or grant it.

use portcullis::config::SigningAlg;
use portcullis::issuer::signing::SigningKey;
use portcullis::issuer::store::{self, ApiResource, ScopeMap};

use super::*;

/// Claims the issuer would sign for `ops` with the admin scope, for `aud`.
fn admin_claims(aud: Value) -> Value {
    let now = now();
    json!({
        "iss": "http://issuer.test", "sub": "ops", "aud": aud, "client_id": "ops",
        "scope": "portcullis:admin", "iat": now, "nbf": now, "exp": now + 600,
        "jti": portcullis::issuer::token::random_token(16),
    })
}

/// Signs `claims` as an access token with the issuer's current ES256 key,
/// read from its database (stored unsealed: no master key in this test).
async fn sign_as_issuer(db: &str, claims: &Value) -> String {
    let store = store::open(db).await.unwrap();
    let record = store
        .list_signing_keys(now())
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.alg == "ES256" && k.activate_at <= now())
        .expect("an active ES256 key");
    store.close().await;
    let key = SigningKey::from_pkcs8(SigningAlg::ES256, &record.private_key).unwrap();
    assert_eq!(key.kid(), record.kid);
    key.sign(claims, "at+jwt").unwrap()
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_whatever_its_scope() {
    let env = env().await;
    let gw = &env.gw;
    let invalid = r#"Bearer realm="portcullis", error="invalid_token""#;
    // The issuer's own signature on the issuer's own claims, for the API
    // behind the gateway: its upstreams receive such a token.
    for aud in [json!(API), json!([API]), json!("http://issuer.test/admin")] {
        let foreign = sign_as_issuer(&env.db, &admin_claims(aud.clone())).await;
        let (status, headers, body) =
            call(gw, "GET", "/admin/v1/clients", Some(&foreign), None).await;
        assert_eq!(status, 401, "{aud}: {body}");
        assert_eq!(headers["www-authenticate"], invalid);
        assert_eq!(body["error"], "invalid_token");
    }
    // The same claims for the admin audience pass: only `aud` differed.
    for aud in [json!(ADMIN_API), json!([API, ADMIN_API])] {
        let own = sign_as_issuer(&env.db, &admin_claims(aud.clone())).await;
        let (status, _, body) = call(gw, "GET", "/admin/v1/clients", Some(&own), None).await;
        assert_eq!(status, 200, "{aud}: {body}");
    }
    // The admin audience without the scope: 403, as before.
    let mut claims = admin_claims(json!(ADMIN_API));
    claims["scope"] = json!("read:data");
    let unscoped = sign_as_issuer(&env.db, &claims).await;
    let (status, _, body) = call(gw, "GET", "/admin/v1/clients", Some(&unscoped), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert!(
        headers_of(&call(gw, "GET", "/admin/v1/clients", Some(&unscoped), None).await)
            .contains(r#"error="insufficient_scope""#)
    );
}

fn headers_of((_, headers, _): &(StatusCode, http::HeaderMap, Value)) -> String {
    headers["www-authenticate"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn no_other_api_can_define_or_grant_the_admin_scope() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let t = Some(t.as_str());
    // The admin API exists from the start, declared by the issuer.
    let (_, _, apis) = call(gw, "GET", "/admin/v1/apis", t, None).await;
    assert!(
        apis.as_array()
            .unwrap()
            .iter()
            .any(|a| a == &json!({ "identifier": ADMIN_API, "scopes": ["portcullis:admin"] })),
        "{apis}"
    );
    // Creating an API with the scope, or the admin API again, is refused.
    let body = json!({ "identifier": "https://x.example.test", "scopes": ["portcullis:admin"] });
    let (status, _, refused) = call(gw, "POST", "/admin/v1/apis", t, Some(body)).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("admin API's own resource"),
        "{refused}"
    );
    let body = json!({ "identifier": ADMIN_API, "scopes": ["other"] });
    let (status, _, _) = call(gw, "POST", "/admin/v1/apis", t, Some(body)).await;
    assert_eq!(status, 409);
    // A client cannot be given the scope on another API either.
    let body = json!({
        "name": "sneaky", "grant_types": ["client_credentials"],
        "scopes": { API: ["read:data", "portcullis:admin"] },
    });
    let (status, _, refused) = call(gw, "POST", "/admin/v1/clients", t, Some(body)).await;
    assert_eq!(status, 400, "{refused}");

    // A database from before: an API defining the scope and a client
    // allowed it there, written behind the service layer's back.
    let legacy = "https://legacy-admin.example.test";
    let db = store::open(&env.db).await.unwrap();
    db.upsert_api_resource(&ApiResource {
        identifier: legacy.into(),
        scopes: vec!["portcullis:admin".into(), "read".into()],
    })
    .await
    .unwrap();
    let mut client = db.get_client("reader").await.unwrap().unwrap();
    client.scopes = ScopeMap::from([(
        legacy.to_owned(),
        vec!["portcullis:admin".to_owned(), "read".to_owned()],
    )]);
    db.upsert_client(&client).await.unwrap();
    // Its tokens never carry the scope, and would not be taken anyway.
    let (status, body) = form(
        gw,
        "/oauth/token",
        READER,
        &format!("grant_type=client_credentials&resource={legacy}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["scope"], "read");
    let (status, _, _) = call(gw, "GET", "/admin/v1/clients", Some(access), None).await;
    assert_eq!(status, 401);
    // The next start takes the scope off that API.
    let again = Gateway::start(&env.yaml).await;
    let stored = db.get_api_resource(legacy).await.unwrap().unwrap();
    assert_eq!(stored.scopes, ["read"]);
    db.close().await;
    again.shutdown().await;
}
