//! The cases of `tests/issuer_login.rs`.

use super::*;

async fn full_flow_issues_tokens_with_the_users_claims(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (back, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    assert!(session.len() > 40);
    assert!(back.starts_with(CALLBACK), "{back}");
    let q = query_of(&back);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], "http://issuer.test");
    let code = q["code"].clone();
    assert!(code.len() >= 43);

    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid profile email read:data");
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);

    let access = body["access_token"].as_str().unwrap();
    let at = claims_of(access);
    assert_eq!(header_of(access)["typ"], "at+jwt");
    assert_eq!(at["iss"], "http://issuer.test");
    assert_eq!(at["sub"], "usr_alice");
    assert_eq!(at["aud"], API);
    assert_eq!(at["client_id"], "web");
    assert_eq!(at["org_id"], "org_a");
    assert_eq!(at["roles"], serde_json::json!(["reader"]));

    let id = body["id_token"].as_str().unwrap();
    assert_eq!(header_of(id)["alg"], "RS256");
    let idc = claims_of(id);
    assert_eq!(idc["iss"], "http://issuer.test");
    assert_eq!(idc["sub"], "usr_alice");
    assert_eq!(idc["aud"], "web");
    assert_eq!(idc["nonce"], "n-456");
    assert_eq!(idc["email"], "alice@example.test");
    assert_eq!(idc["email_verified"], true);
    assert_eq!(idc["name"], "usr_alice name");
    assert_eq!(idc["picture"], "https://pics.example.test/a.png");
    assert_eq!(idc["org_id"], "org_a");
    assert_eq!(idc["org_name"], "Acme");
    assert_eq!(idc["role"], "reader");
    assert_eq!(
        idc["exp"].as_i64().unwrap() - idc["iat"].as_i64().unwrap(),
        3600
    );
    assert!(idc["auth_time"].as_i64().unwrap() <= idc["iat"].as_i64().unwrap());

    // The access token works at the gateway and at userinfo.
    let (status, _, _) = get(&gw.url("/api/items"), Some(access)).await;
    assert_eq!(status, 200);
    assert_eq!(env.up.last().headers["x-auth-subject"], "usr_alice");
    assert_eq!(env.up.last().headers["x-auth-org"], "org_a");
    let (status, _, body) = get(&gw.url("/oauth/userinfo"), Some(access)).await;
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["sub"], "usr_alice");
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["org_name"], "Acme");
    assert_eq!(info["role"], "reader");

    // Userinfo refuses anything else; an ID token is not an access token,
    // whatever scopes it might carry.
    for bad in [None, Some("garbage"), Some(id)] {
        let (status, headers, _) = get(&gw.url("/oauth/userinfo"), bad).await;
        assert!(status == 401 || status == 403, "{bad:?}: {status}");
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, headers, _) = get(&gw.url("/oauth/userinfo"), Some(id)).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"portcullis\", error=\"invalid_token\""
    );
    let (status, headers, _) = get(&gw.url("/oauth/userinfo"), Some("a.b.c")).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"portcullis\", error=\"invalid_token\""
    );
    // A revoked jti is refused.
    let jti = at["jti"].as_str().unwrap();
    let (iat, exp) = (at["iat"].as_i64().unwrap(), at["exp"].as_i64().unwrap());
    let fact = portcullis::issuer::revocation::jti(jti, iat, exp, iat);
    env.store.record_revocation(&fact).await.unwrap();
    let (status, _, _) = get(&gw.url("/oauth/userinfo"), Some(access)).await;
    assert_eq!(status, 401);
    env.gw.shutdown().await;
}

async fn discovery_lists_the_login_endpoints(db: TestDb) {
    let env = env(db).await;
    let (_, _, body) = get(&env.gw.url("/.well-known/openid-configuration"), None).await;
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["authorization_endpoint"],
        "http://issuer.test/oauth/authorize"
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        "http://issuer.test/oauth/userinfo"
    );
    assert_eq!(doc["end_session_endpoint"], "http://issuer.test/logout");
    let grants = doc["grant_types_supported"].to_string();
    assert!(grants.contains("authorization_code") && grants.contains("refresh_token"));
    let scopes = doc["scopes_supported"].to_string();
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(scopes.contains(s), "{scopes}");
    }
    assert!(doc["claims_supported"].to_string().contains("org_name"));
    env.gw.shutdown().await;
}

async fn pkce_downgrades_are_refused(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    // `plain`, or no method (which means plain), or no challenge for a public client.
    let plain = format!(
        "/oauth/authorize?response_type=code&client_id=web&redirect_uri={}&state=s1\
         &code_challenge={VERIFIER}",
        enc(CALLBACK)
    );
    for query in [
        format!("{plain}&code_challenge_method=plain"),
        plain.clone(),
        format!(
            "/oauth/authorize?response_type=code&client_id=web&redirect_uri={}&state=s1",
            enc(CALLBACK)
        ),
    ] {
        let (status, headers, _) = request("GET", &gw.url(&query), &[], None).await;
        assert_eq!(status, 302, "{query}");
        let q = query_of(&location(&headers));
        assert_eq!(q["error"], "invalid_request", "{query}");
        assert_eq!(q["state"], "s1");
        assert_eq!(q["iss"], "http://issuer.test");
    }

    // A missing or wrong verifier fails; each try burns the code.
    for verifier in ["", "wrong-verifier-0123456789-0123456789-0123456789"] {
        let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
        let code = query_of(&back)["code"].clone();
        let fields = if verifier.is_empty() {
            format!(
                "client_id=web&code={}&redirect_uri={}",
                enc(&code),
                enc(CALLBACK)
            )
        } else {
            code_fields(&code, verifier)
        };
        let (status, body) = exchange(gw, &fields).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, _) = exchange(gw, &code_fields(&code, VERIFIER)).await;
        assert_eq!(status, 400, "a failed code is spent");
    }

    // A confidential client without PKCE may not smuggle a verifier in later.
    let query = format!(
        "/oauth/authorize?response_type=code&client_id=portal&redirect_uri={}&scope=openid",
        enc(CALLBACK)
    );
    let (back, _) = login(gw, &query, "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let fields = format!(
        "client_id=portal&client_secret=portal-secret-0123456789&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&code),
        enc(CALLBACK)
    );
    let (status, body) = exchange(gw, &fields).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    env.gw.shutdown().await;
}

async fn confidential_clients_authenticate_and_codes_stay_with_their_client(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let query = format!(
        "/oauth/authorize?response_type=code&client_id=portal&redirect_uri={}&scope=openid+read:data",
        enc(CALLBACK)
    );
    let (back, _) = login(gw, &query, "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let base = format!("code={}&redirect_uri={}", enc(&code), enc(CALLBACK));
    // Without the secret: invalid_client (the code is not consumed).
    let (status, body) = exchange(gw, &format!("client_id=portal&{base}")).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = exchange(
        gw,
        &format!("client_id=portal&client_secret=portal-secret-0123456789&{base}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "no refresh grant");

    // A code of `portal` redeemed by `web` is refused.
    let (back, _) = login(gw, &query, "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    env.gw.shutdown().await;
}

async fn code_reuse_is_refused_and_revokes_its_refresh_family(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let hash = portcullis::issuer::token::token_hash(&refresh);
    let family = env
        .store
        .find_family_by_token_hash(&hash)
        .await
        .unwrap()
        .unwrap();
    assert!(family.family.revoked_at.is_none());
    assert_eq!(family.family.user_id, "usr_alice");
    assert_eq!(
        family.family.absolute_expires_at - family.family.created_at,
        30 * 86400
    );
    assert_eq!(
        family.family.idle_expires_at.unwrap() - family.family.created_at,
        7 * 86400
    );

    // The family rotates through the refresh grant.
    let refresh_form = |token: &str| {
        format!(
            "grant_type=refresh_token&client_id=web&refresh_token={}",
            enc(token)
        )
    };
    let (status, _, body) = request(
        "POST",
        &gw.url("/oauth/token"),
        &[],
        Some(&refresh_form(&refresh)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rotated: Value = serde_json::from_str(&body).unwrap();
    let rotated = rotated["refresh_token"].as_str().unwrap().to_owned();

    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _, body) = request(
        "POST",
        &gw.url("/oauth/token"),
        &[],
        Some(&refresh_form(&rotated)),
    )
    .await;
    assert_eq!(
        status, 400,
        "the rotated token died with the family: {body}"
    );
    let family = env
        .store
        .find_family_by_token_hash(&hash)
        .await
        .unwrap()
        .unwrap();
    assert!(
        family.family.revoked_at.is_some(),
        "the replay revoked the family"
    );

    // Unknown codes and a mismatched redirect_uri are invalid_grant too.
    let (status, body) = exchange(gw, &code_fields("nope", VERIFIER)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let fields = format!(
        "client_id=web&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(&code),
        enc("http://127.0.0.1:3000/other")
    );
    let (status, body) = exchange(gw, &fields).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    env.gw.shutdown().await;
}

async fn bad_clients_and_redirect_uris_get_a_page_never_a_redirect(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let challenge = pkce::s256(VERIFIER);
    for query in [
        format!(
            "/oauth/authorize?response_type=code&client_id=web&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
            enc("http://evil.test/callback")
        ),
        format!(
            "/oauth/authorize?response_type=code&client_id=web&code_challenge={challenge}&code_challenge_method=S256"
        ),
        format!(
            "/oauth/authorize?response_type=code&client_id=ghost&redirect_uri={}",
            enc(CALLBACK)
        ),
        format!(
            "/oauth/authorize?response_type=code&client_id=web&redirect_uri={}&redirect_uri={}",
            enc(CALLBACK),
            enc("http://evil.test/")
        ),
    ] {
        let (status, headers, body) = request("GET", &gw.url(&query), &[], None).await;
        assert_eq!(status, 400, "{query}");
        assert!(!headers.contains_key("location"));
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(!body.contains("evil.test"));
    }
    // Other errors go back to the client with state and iss.
    let query = authorize_query("web", "").replace("response_type=code", "response_type=token");
    let (status, headers, _) = request("GET", &gw.url(&query), &[], None).await;
    assert_eq!(status, 302);
    let q = query_of(&location(&headers));
    assert_eq!(q["error"], "unsupported_response_type");
    assert_eq!(q["state"], "st-123");
    // Parameters that would change the protocol are refused, not ignored.
    for (param, error) in [
        ("response_mode=form_post", "invalid_request"),
        ("response_mode=fragment", "invalid_request"),
        ("request=eyJhbGciOiJub25lIn0.e30.", "request_not_supported"),
        (
            "request_uri=https%3A%2F%2Fclient.test%2Fr",
            "request_uri_not_supported",
        ),
        ("registration=%7B%7D", "registration_not_supported"),
    ] {
        let query = format!("{}&{param}", authorize_query("web", ""));
        let (status, headers, _) = request("GET", &gw.url(&query), &[], None).await;
        assert_eq!(status, 302, "{param}");
        let q = query_of(&location(&headers));
        assert_eq!(q["error"], error, "{param}");
        assert_eq!(q["state"], "st-123");
    }
    // The default mode, named, is fine.
    let query = format!("{}&response_mode=query", authorize_query("web", ""));
    let (status, headers, _) = request("GET", &gw.url(&query), &[], None).await;
    assert_eq!(status, 302, "{headers:?}");
    assert!(location(&headers).starts_with("/login?txn="), "{headers:?}");
    env.gw.shutdown().await;
}

async fn login_forms_need_their_csrf_token(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let creds = credentials("alice@example.test", PASSWORD);
    let forged = Form {
        cookie: form.cookie.clone(),
        txn: form.txn.clone(),
        csrf: "forged".into(),
    };
    let (status, headers, _) = submit(gw, &forged, &creds).await;
    assert_eq!(status, 403);
    assert!(!headers.contains_key("location"));
    // No cookie at all (a cross-site post).
    let body = format!("txn={}&csrf={}&{creds}", enc(&form.txn), enc(&form.csrf));
    let (status, _, _) = request("POST", &gw.url("/login"), &[], Some(&body)).await;
    assert_eq!(status, 403);
    // Another transaction's cookie.
    let (other, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let mixed = Form {
        cookie: other.cookie.clone(),
        txn: form.txn.clone(),
        csrf: form.csrf.clone(),
    };
    let (status, _, _) = submit(gw, &mixed, &creds).await;
    assert_eq!(status, 403);
    // The genuine form still works.
    let (status, headers, _) = submit(gw, &form, &creds).await;
    assert_eq!(status, 302);
    assert!(query_of(&location(&headers)).contains_key("code"));
    env.gw.shutdown().await;
}

async fn wrong_passwords_slow_down_the_account_at_that_source(db: TestDb) {
    let clock = Arc::new(ManualClock::new(now()));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let env = env_with(db, options).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let (stranger, alice) = (loopback(2), loopback(3));
    for _ in 0..3 {
        let (status, _, html) = submit_from(
            gw,
            stranger,
            &form,
            &credentials("Alice@Example.test", "wrong"),
        )
        .await;
        assert_eq!(status, 401);
        assert!(html.contains("wrong email or password"));
    }
    // That source now waits 2 s for this account, whatever it sends; the
    // password is not checked meanwhile.
    for password in ["wrong", PASSWORD] {
        let (status, headers, html) = submit_from(
            gw,
            stranger,
            &form,
            &credentials("alice@example.test", password),
        )
        .await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "2");
        assert!(html.contains("wait a moment"), "{html}");
    }
    // Alice herself, elsewhere, is never refused: a correct password works.
    let (status, headers, _) = submit_from(
        gw,
        alice,
        &form,
        &credentials("alice@example.test", PASSWORD),
    )
    .await;
    assert_eq!(status, 302);
    assert!(query_of(&location(&headers)).contains_key("code"));
    // Another account from the stranger's address is not slowed down.
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let bob = credentials("bob@example.test", PASSWORD);
    let (status, _, _) = submit_from(gw, stranger, &form, &bob).await;
    assert_eq!(status, 200, "bob is asked to choose an organization");
    // The delay ends on time, and the right password then works there too.
    clock.advance(2);
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let right = credentials("alice@example.test", PASSWORD);
    let (status, _, _) = submit_from(gw, stranger, &form, &right).await;
    assert_eq!(status, 302);
    env.gw.shutdown().await;
}

async fn multi_org_users_choose_or_name_their_organization(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let (status, _, html) = submit(gw, &form, &credentials("bob@example.test", PASSWORD)).await;
    assert_eq!(status, 200);
    assert!(html.contains("Acme") && html.contains("Beta"), "{html}");
    let (status, headers, _) = submit(gw, &form, "organization=org_b").await;
    assert_eq!(status, 302);
    let code = query_of(&location(&headers))["code"].clone();
    let (_, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    let idc = claims_of(body["id_token"].as_str().unwrap());
    assert_eq!(
        (idc["org_id"].as_str(), idc["org_name"].as_str()),
        (Some("org_b"), Some("Beta"))
    );

    // `organization=` picks one directly; a non-member's is refused.
    let (back, _) = login(
        gw,
        &authorize_query("web", "&organization=org_a"),
        "bob@example.test",
    )
    .await;
    let code = query_of(&back)["code"].clone();
    let (_, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["org_id"],
        "org_a"
    );

    // With a session but no organization named, the chooser comes back, no password.
    let (_, session) = login(
        gw,
        &authorize_query("web", "&organization=org_a"),
        "bob@example.test",
    )
    .await;
    let (form, html) = open_form(gw, &authorize_query("web", ""), &[session]).await;
    assert!(
        html.contains("Beta") && !html.contains("password"),
        "{html}"
    );
    let (status, headers, _) = submit(gw, &form, "organization=org_b").await;
    assert_eq!(status, 302);
    assert!(query_of(&location(&headers)).contains_key("code"));
    let (form, _) = open_form(gw, &authorize_query("web", "&organization=org_b"), &[]).await;
    let (status, headers, _) =
        submit(gw, &form, &credentials("alice@example.test", PASSWORD)).await;
    assert_eq!(status, 302);
    assert_eq!(query_of(&location(&headers))["error"], "access_denied");
    env.gw.shutdown().await;
}

async fn a_session_skips_the_form_until_logout(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (_, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let cookies = [session.clone()];
    let (status, headers, _) =
        request("GET", &gw.url(&authorize_query("web", "")), &cookies, None).await;
    assert_eq!(status, 302);
    let back = location(&headers);
    assert!(back.starts_with(CALLBACK), "no form: {back}");
    let code = query_of(&back)["code"].clone();
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");

    // Logout (confirmed; `logout.rs`) ends it: the form again.
    let (status, _, html) = request("GET", &gw.url("/logout"), &cookies, None).await;
    assert_eq!(status, 200);
    let csrf = hidden(&html, "csrf");
    let form = format!("csrf={}", enc(&csrf));
    let (status, _, _) = request("POST", &gw.url("/logout"), &cookies, Some(&form)).await;
    assert_eq!(status, 200);
    let (status, headers, _) =
        request("GET", &gw.url(&authorize_query("web", "")), &cookies, None).await;
    assert_eq!(status, 302);
    assert!(location(&headers).starts_with("/login"), "the form again");
    env.gw.shutdown().await;
}

async fn codes_expire_after_sixty_seconds(db: TestDb) {
    let clock = Arc::new(portcullis::clock::ManualClock::new(now()));
    let env = env_with(
        db,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let gw = &env.gw;
    let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    clock.advance(60);
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    clock.advance(59);
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    env.gw.shutdown().await;
}

/// A NUL character, which no stored value holds and PostgreSQL refuses
/// outright, is the caller's mistake (400, or 401 for client credentials),
/// never a server error, wherever it arrives.
async fn nul_characters_are_refused_not_server_errors(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    // The authorization endpoint: a page, never a redirect.
    let query = format!(
        "/oauth/authorize?response_type=code&client_id=web%00x&redirect_uri={}",
        enc(CALLBACK)
    );
    let (status, headers, _) = request("GET", &gw.url(&query), &[], None).await;
    assert_eq!(status, 400);
    assert!(!headers.contains_key("location"));
    // Form bodies of the token, revocation and introspection endpoints.
    for (path, form) in [
        (
            "/oauth/token",
            "grant_type=authorization_code&client_id=web%00x&code=c",
        ),
        (
            "/oauth/token",
            "grant_type=client_credentials&client_id=web&scope=a%00b",
        ),
        ("/oauth/revoke", "client_id=web&token=t%00"),
        ("/oauth/introspect", "token%00=x"),
    ] {
        let (status, _, body) = request("POST", &gw.url(path), &[], Some(form)).await;
        assert_eq!(status, 400, "{path} {form}: {body}");
        assert!(body.contains("invalid_request"), "{body}");
    }
    // The sign-in form: an expired-transaction page, as for any unknown one.
    let (status, _, _) = request("GET", &gw.url("/login?txn=t%00"), &[], None).await;
    assert_eq!(status, 400);
    let (status, _, _) = request("POST", &gw.url("/login"), &[], Some("txn=t%00&csrf=c")).await;
    assert_eq!(status, 400);
    // Client credentials in `Authorization: Basic`.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("web%00x:secret");
    let req = http::Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {basic}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    env.gw.shutdown().await;
}

/// A storage failure while userinfo reads the token's organization is ours
/// (500 `server_error`), not the token's: a client told `invalid_token`
/// would throw away a good token during an outage.
async fn userinfo_answers_a_storage_failure_as_a_server_error(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (back, _) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let (status, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["org_id"], "org_a");
    let (status, _, body) = get(&gw.url("/oauth/userinfo"), Some(access)).await;
    assert_eq!(status, 200, "{body}");
    // The users are still readable; the memberships are not.
    env._db
        .execute("ALTER TABLE memberships RENAME TO memberships_away")
        .await;
    let (status, headers, body) = get(&gw.url("/oauth/userinfo"), Some(access)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(error_code(&body), "server_error");
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"portcullis\"");
    assert!(!body.contains("memberships"), "{body}");
    env._db
        .execute("ALTER TABLE memberships_away RENAME TO memberships")
        .await;
    env.gw.shutdown().await;
}

crate::on_both_databases!(
    nul_characters_are_refused_not_server_errors,
    userinfo_answers_a_storage_failure_as_a_server_error,
    full_flow_issues_tokens_with_the_users_claims,
    discovery_lists_the_login_endpoints,
    pkce_downgrades_are_refused,
    confidential_clients_authenticate_and_codes_stay_with_their_client,
    code_reuse_is_refused_and_revokes_its_refresh_family,
    bad_clients_and_redirect_uris_get_a_page_never_a_redirect,
    login_forms_need_their_csrf_token,
    wrong_passwords_slow_down_the_account_at_that_source,
    multi_org_users_choose_or_name_their_organization,
    a_session_skips_the_form_until_logout,
    codes_expire_after_sixty_seconds,
);
