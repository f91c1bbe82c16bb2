//! `/oauth/revoke` (RFC 7009) and `/oauth/introspect` (RFC 7662).

use super::*;

async fn client_credentials(gw: &Gateway, client: (&str, &str)) -> String {
    let (status, _, body) = post(
        gw,
        "/oauth/token",
        Some(client),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_access_token_introspects_active_until_revoked() {
    let env = env(DEFAULT).await;
    let at = client_credentials(&env.gw, BILLING).await;
    let claims = claims_of(&at);

    // The client it was issued to, and a resource server's client allowed
    // the token's audience, learn about it; any other client does not.
    assert_eq!(introspect(&env.gw, BILLING, &at).await["active"], true);
    assert_eq!(
        introspect(&env.gw, APP, &at).await,
        json!({"active": false})
    );
    let info = introspect(&env.gw, GATEKEEPER, &at).await;
    assert_eq!(info["active"], true, "{info}");
    for field in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "nbf",
        "jti",
    ] {
        assert_eq!(info[field], claims[field], "{field}");
    }
    assert_eq!(info["token_type"], "Bearer");
    assert!(info.get("org_id").is_none());

    // Only the client it was issued to can revoke it: others are answered
    // 200 like any well-formed request, and nothing is revoked.
    for other in [APP, GATEKEEPER] {
        let (status, _, body) = post(
            &env.gw,
            "/oauth/revoke",
            Some(other),
            &format!("token={}", enc(&at)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(introspect(&env.gw, GATEKEEPER, &at).await["active"], true);

    revoke(
        &env.gw,
        BILLING,
        &format!("token={}&token_type_hint=access_token", enc(&at)),
    )
    .await;
    assert_eq!(
        introspect(&env.gw, GATEKEEPER, &at).await,
        json!({"active": false})
    );
    // Revoking again is still 200, and so is a revoked token from another
    // client: it is not live any more.
    revoke(&env.gw, APP, &format!("token={}", enc(&at))).await;
    revoke(&env.gw, BILLING, &format!("token={}", enc(&at))).await;
    let actions = audit_actions(env.store.as_ref()).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "token.revoked").count(),
        1,
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_user_access_token_introspects_with_its_organization() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let (_, body) = rotate(&env.gw, &t0).await;
    let at = body["access_token"].as_str().unwrap();
    // Another client that is no resource server learns nothing.
    assert_eq!(
        introspect(&env.gw, OTHER, at).await,
        json!({"active": false})
    );
    let info = introspect(&env.gw, GATEKEEPER, at).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["org_id"], "org_acme");
    assert_eq!(info["sub"], env.user.as_str());

    // Expired tokens are inactive.
    env.clock.advance(15 * 60);
    assert_eq!(introspect(&env.gw, GATEKEEPER, at).await["active"], false);
}

#[tokio::test]
async fn a_refresh_token_introspects_active_until_revoked() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let (t1, _) = rotate(&env.gw, &t0).await;

    let info = introspect(&env.gw, APP, &t1).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "app");
    assert_eq!(info["sub"], env.user.as_str());
    assert_eq!(info["scope"], "openid offline_access read:data write:data");
    assert_eq!(info["token_type"], "refresh_token");
    let started = env.clock.now_unix();
    assert_eq!(info["exp"], started + 30 * 86_400);
    // A rotated-away token is inactive.
    assert_eq!(introspect(&env.gw, APP, &t0).await["active"], false);
    // Refresh tokens are described to their own client only: not to another
    // client, not to a resource server (which never holds one).
    for other in [OTHER, GATEKEEPER, BILLING] {
        assert_eq!(
            introspect(&env.gw, other, &t1).await,
            json!({"active": false})
        );
    }

    // Another client cannot revoke it: answered 200 like any well-formed
    // request (the answer does not tell it the token is live), and nothing
    // is revoked.
    let (status, _, body) = post(
        &env.gw,
        "/oauth/revoke",
        Some(OTHER),
        &format!("token={}", enc(&t1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(introspect(&env.gw, APP, &t1).await["active"], true);
    let (status, _, body) = post(
        &env.gw,
        "/oauth/revoke",
        None,
        &format!("client_id=web-app&token={}", enc(&t1)),
    )
    .await;
    assert_eq!(status, 200, "a public client neither: {body}");
    assert_eq!(introspect(&env.gw, APP, &t1).await["active"], true);

    revoke(
        &env.gw,
        APP,
        &format!("token={}&token_type_hint=refresh_token", enc(&t1)),
    )
    .await;
    assert_eq!(
        introspect(&env.gw, APP, &t1).await,
        json!({"active": false})
    );
    refused(&env.gw, &t1, "invalid_grant").await;
    assert!(
        audit_actions(env.store.as_ref())
            .await
            .contains(&"token.revoked".to_owned())
    );
    let now = env.clock.now_unix();
    let events = env.store.due_events(now, now + 60, 100).await.unwrap();
    assert!(events.iter().any(|e| e.event == "token.revoked"));
}

#[tokio::test]
async fn revocation_answers_200_for_any_token_that_is_not_live() {
    let env = env(DEFAULT).await;
    for body in [
        "token=unknown-token",
        "token=a.b.c&token_type_hint=access_token",
        "token=unknown&token_type_hint=something_else",
    ] {
        revoke(&env.gw, APP, body).await;
    }
    // A public client revokes with its client_id.
    let (status, _, _) = post(
        &env.gw,
        "/oauth/revoke",
        None,
        "client_id=web-app&token=unknown",
    )
    .await;
    assert_eq!(status, 200);

    // Not well formed, or not authenticated.
    let (status, _, body) = post(&env.gw, "/oauth/revoke", Some(APP), "").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    let (status, headers, body) =
        post(&env.gw, "/oauth/revoke", Some(("app", "wrong")), "token=x").await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(body["error"], "invalid_client");
    let (status, _, _) = get(&env.gw.url("/oauth/revoke"), None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let env = env(DEFAULT).await;
    let at = client_credentials(&env.gw, BILLING).await;
    let body = format!("token={}", enc(&at));
    for (auth, form) in [
        (None, body.clone()),
        (Some(("app", "wrong-secret")), body.clone()),
        // A public client has nothing to authenticate with.
        (None, format!("client_id=web-app&{body}")),
    ] {
        let (status, headers, json) = post(&env.gw, "/oauth/introspect", auth, &form).await;
        assert_eq!(status, 401, "{json}");
        assert_eq!(json["error"], "invalid_client");
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, _, json) = post(&env.gw, "/oauth/introspect", Some(APP), "").await;
    assert_eq!(status, 400);
    assert_eq!(json["error"], "invalid_request");
}

#[tokio::test]
async fn foreign_and_malformed_tokens_are_inactive() {
    let env = env(DEFAULT).await;
    // Signed by a key this issuer never published, with its `iss`.
    let key = ec();
    let forged = token_with_header(
        &key,
        &json!({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}),
        &claims_with(json!({"iss": "http://issuer.test", "jti": "forged"})),
    );
    for token in [forged.as_str(), "a.b.c", "unknown-refresh-token"] {
        assert_eq!(
            introspect(&env.gw, APP, token).await,
            json!({"active": false}),
            "{token}"
        );
    }
}
