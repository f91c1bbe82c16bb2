//! `require_pkce` on clients created through the admin API, as the
//! authorization endpoint applies it.

use super::*;

/// Where `/oauth/authorize` without PKCE sends the client's user: the login
/// page, or back to the redirect URI with an error.
async fn authorize_without_pkce(gw: &Gateway, client_id: &str) -> String {
    let query = format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=openid+read:data&state=st",
        enc(CALLBACK),
    );
    let (status, headers, body) = request(&gw.url(&query), None, None).await;
    assert_eq!(status, 302, "{body}");
    headers["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_client_created_with_require_pkce_must_use_it() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let create = |require: bool| {
        let body = json!({
            "name": "portal",
            "grant_types": ["authorization_code"],
            "redirect_uris": [CALLBACK],
            "require_pkce": require,
            "scopes": { API: ["read:data"] },
        });
        let t = t.clone();
        async move { ok(gw, &t, "POST", "/admin/v1/clients", Some(body)).await }
    };
    let strict = create(true).await;
    assert_eq!(strict["require_pkce"], true);
    assert!(strict["client_secret"].is_string());
    let lax = create(false).await;
    assert_eq!(lax["require_pkce"], false);
    // Without the field, PKCE is required.
    let body = json!({
        "name": "default",
        "grant_types": ["authorization_code"],
        "redirect_uris": [CALLBACK],
    });
    let default = ok(gw, &t, "POST", "/admin/v1/clients", Some(body)).await;
    assert_eq!(default["require_pkce"], true);

    let refused = authorize_without_pkce(gw, strict["client_id"].as_str().unwrap()).await;
    assert!(refused.starts_with(CALLBACK), "{refused}");
    assert!(refused.contains("error=invalid_request"), "{refused}");
    let allowed = authorize_without_pkce(gw, lax["client_id"].as_str().unwrap()).await;
    assert!(allowed.starts_with("/login?txn="), "{allowed}");
    env.gw.shutdown().await;
}
