//! Login state kept in the store: sessions, pending forms and failure counts
//! shared by two gateways on one database (replicas, or one process and its
//! restart), `prompt`, `max_age` and `login_hint`, and the audit trail of logins.

use std::sync::Arc;

use portcullis::clock::{Clock, ManualClock};
use serde_json::json;

use super::*;

/// A second gateway on the environment's database.
async fn replica(env: &Env, options: Options) -> Gateway {
    Gateway::start_with(&yaml(env._db.url(), &env.up), options).await
}

/// The redirect an authorize request with `cookies` answers.
async fn authorize(gw: &Gateway, extra: &str, cookies: &[String]) -> String {
    let (status, headers, body) = request(
        "GET",
        &gw.url(&authorize_query("web", extra)),
        cookies,
        None,
    )
    .await;
    assert_eq!(status, 302, "{body}");
    location(&headers)
}

async fn sessions_and_forms_are_shared_by_replicas_and_survive_a_restart(db: TestDb) {
    let env = env(db).await;
    let other = replica(&env, Options::default()).await;
    // Signed in through one gateway, known to the other: no form.
    let (_, session) = login(&env.gw, &authorize_query("web", ""), "alice@example.test").await;
    let cookies = [session];
    let back = authorize(&other, "", &cookies).await;
    assert!(back.starts_with(CALLBACK), "no form: {back}");
    // A form opened through one gateway can be submitted through the other,
    // once: the second submission of the same form issues nothing.
    let (form, _) = open_form(&env.gw, &authorize_query("web", ""), &[]).await;
    let (status, headers, body) =
        submit(&other, &form, &credentials("alice@example.test", PASSWORD)).await;
    assert_eq!(status, 302, "{body}");
    assert!(location(&headers).starts_with(CALLBACK));
    let (status, _, html) =
        submit(&env.gw, &form, &credentials("alice@example.test", PASSWORD)).await;
    assert_eq!(status, 400);
    assert!(html.contains("expired"), "{html}");
    // The first gateway goes away; a new one on the same database still knows
    // the session, and a logout through it ends the session everywhere.
    let Env { gw, store, up, _db } = env;
    gw.shutdown().await;
    let env = Env {
        gw: other,
        store,
        up,
        _db,
    };
    let restarted = replica(&env, Options::default()).await;
    assert!(
        authorize(&restarted, "", &cookies)
            .await
            .starts_with(CALLBACK)
    );
    let (status, _, html) = request("GET", &restarted.url("/logout"), &cookies, None).await;
    assert_eq!(status, 200);
    let form = format!("csrf={}", enc(&hidden(&html, "csrf")));
    let (status, _, _) = request("POST", &restarted.url("/logout"), &cookies, Some(&form)).await;
    assert_eq!(status, 200);
    assert!(authorize(&env.gw, "", &cookies).await.starts_with("/login"));
    restarted.shutdown().await;
    env.gw.shutdown().await;
}

async fn failed_logins_count_across_replicas(db: TestDb) {
    let clock = Arc::new(ManualClock::new(now()));
    let options = || Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let env = env_with(db, options()).await;
    let other = replica(&env, options()).await;
    let (form, _) = open_form(&env.gw, &authorize_query("web", ""), &[]).await;
    let stranger = loopback(2);
    for n in 0..3 {
        let gw = if n % 2 == 0 { &env.gw } else { &other };
        let nope = credentials("alice@example.test", "nope");
        let (status, _, _) = submit_from(gw, stranger, &form, &nope).await;
        assert_eq!(status, 401);
    }
    // Neither replica saw three failures itself; together they did.
    for gw in [&env.gw, &other] {
        let right = credentials("alice@example.test", PASSWORD);
        let (status, headers, _) = submit_from(gw, stranger, &form, &right).await;
        assert_eq!(status, 429, "delayed on every replica");
        assert_eq!(headers["retry-after"], "2");
    }
    // From anywhere else the right password works, on either replica.
    let right = credentials("alice@example.test", PASSWORD);
    let (status, _, _) = submit_from(&other, loopback(3), &form, &right).await;
    assert_eq!(status, 302);
    // The audit log names the failures and the start of the delays once,
    // never the password, and not the refusals.
    let audit = env.store.list_audit(50).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "login.failed").count(), 3);
    assert_eq!(
        actions.iter().filter(|a| **a == "login.throttled").count(),
        1
    );
    let failed = audit.iter().find(|a| a.action == "login.failed").unwrap();
    assert_eq!(failed.actor, "anonymous");
    let detail: Value = serde_json::from_str(&failed.detail).unwrap();
    assert_eq!(detail["account"], "alice@example.test");
    assert_eq!(detail["client_id"], "web");
    assert!(audit.iter().all(|a| !a.detail.contains("nope")));
    other.shutdown().await;
    env.gw.shutdown().await;
}

async fn guesses_sent_at_once_get_no_more_tries(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let url = gw.url("/login");
            let cookies = [form.cookie.clone()];
            let body = format!(
                "txn={}&csrf={}&{}",
                enc(&form.txn),
                enc(&form.csrf),
                credentials("alice@example.test", &format!("guess {i}"))
            );
            tokio::spawn(async move {
                request_from(loopback(7), "POST", &url, &cookies, Some(&body))
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    // At most the three free tries are checked, however the twelve
    // interleave; every other one is refused unchecked (the address holds one
    // argon2 place at a time, and then the delay).
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!((1..=3).contains(&checked), "{statuses:?}");
    assert_eq!(checked + refused, 12, "{statuses:?}");
    env.gw.shutdown().await;
}

async fn successful_logins_are_audited(db: TestDb) {
    let env = env(db).await;
    login(&env.gw, &authorize_query("web", ""), "alice@example.test").await;
    let audit = env.store.list_audit(10).await.unwrap();
    let entry = audit
        .iter()
        .find(|a| a.action == "login.succeeded")
        .unwrap();
    assert_eq!(entry.actor, "usr_alice");
    assert_eq!(entry.target.as_deref(), Some("usr_alice"));
    assert!(!entry.detail.contains(PASSWORD));
    env.gw.shutdown().await;
}

async fn prompt_none_never_shows_a_page(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    // No session: back to the client with login_required, state and iss.
    let back = authorize(gw, "&prompt=none", &[]).await;
    assert!(back.starts_with(CALLBACK), "{back}");
    let q = query_of(&back);
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], "http://issuer.test");
    assert!(!q.contains_key("code"));
    // A session: the code, silently.
    let (_, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let q = query_of(&authorize(gw, "&prompt=none", &[session]).await);
    assert!(q.contains_key("code"), "{q:?}");
    // A user of two organizations who must choose one: account_selection_required.
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let (_, headers, _) = submit(gw, &form, &credentials("bob@example.test", PASSWORD)).await;
    let bob = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("portcullis_session="))
        .unwrap();
    let q = query_of(&authorize(gw, "&prompt=none", std::slice::from_ref(&bob)).await);
    assert_eq!(q["error"], "account_selection_required");
    let q = query_of(&authorize(gw, "&prompt=none&organization=org_b", &[bob]).await);
    assert!(q.contains_key("code"), "{q:?}");
    // `none` with anything else, or an unknown value, is an invalid request.
    for bad in ["&prompt=none+login", "&prompt=sideways"] {
        let q = query_of(&authorize(gw, bad, &[]).await);
        assert_eq!(q["error"], "invalid_request", "{bad}");
    }
    env.gw.shutdown().await;
}

async fn prompt_login_and_max_age_ask_for_the_password_again(db: TestDb) {
    let clock = Arc::new(ManualClock::new(now()));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let env = env_with(db, options).await;
    let gw = &env.gw;
    let (_, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let cookies = [session];
    assert!(authorize(gw, "", &cookies).await.starts_with(CALLBACK));
    assert!(
        authorize(gw, "&prompt=login", &cookies)
            .await
            .starts_with("/login")
    );
    // max_age: a session younger than it is enough; an older one is not.
    clock.advance(120);
    assert!(
        authorize(gw, "&max_age=300", &cookies)
            .await
            .starts_with(CALLBACK)
    );
    assert!(
        authorize(gw, "&max_age=60", &cookies)
            .await
            .starts_with("/login")
    );
    let q = query_of(&authorize(gw, "&max_age=60&prompt=none", &cookies).await);
    assert_eq!(q["error"], "login_required");
    let q = query_of(&authorize(gw, "&max_age=-1", &cookies).await);
    assert_eq!(q["error"], "invalid_request");
    // Signing in again under max_age gives an ID token with the new auth_time.
    let (form, _) = open_form(gw, &authorize_query("web", "&max_age=60"), &cookies).await;
    let (status, headers, _) =
        submit(gw, &form, &credentials("alice@example.test", PASSWORD)).await;
    assert_eq!(status, 302);
    let code = query_of(&location(&headers))["code"].clone();
    let (_, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    let id = claims_of(body["id_token"].as_str().unwrap());
    assert_eq!(id["auth_time"], clock.now_unix());
    env.gw.shutdown().await;
}

async fn login_hint_fills_in_the_email(db: TestDb) {
    let env = env(db).await;
    let (_, html) = open_form(
        &env.gw,
        &authorize_query("web", "&login_hint=alice%40example.test"),
        &[],
    )
    .await;
    assert!(html.contains("value=\"alice@example.test\""), "{html}");
    // Markup in a hint is escaped, not rendered.
    let (_, html) = open_form(
        &env.gw,
        &authorize_query("web", "&login_hint=%22%3E%3Cb%3Ex"),
        &[],
    )
    .await;
    assert!(!html.contains("\"><b>x"), "{html}");
    env.gw.shutdown().await;
}

async fn logout_names_its_client_by_id_token_hint(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (back, session) = login(gw, &authorize_query("web", ""), "alice@example.test").await;
    let code = query_of(&back)["code"].clone();
    let (_, body) = exchange(gw, &code_fields(&code, VERIFIER)).await;
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    // A hint from another issuer, garbage, an access token of ours, or one that
    // contradicts client_id is refused (no redirect, no page to confirm), and
    // the session stays: a GET changes nothing.
    let foreign = token(&rsa(), &claims_with(json!({ "aud": "web" })));
    let access = body["access_token"].as_str().unwrap();
    let cookies = [session];
    for bad in [
        format!("id_token_hint={}", enc(&foreign)),
        "id_token_hint=not.a.jwt".to_owned(),
        format!("id_token_hint={}", enc(access)),
        format!("id_token_hint={}&client_id=portal", enc(&id_token)),
    ] {
        let url = format!("/logout?{bad}&post_logout_redirect_uri={}", enc(CALLBACK));
        let (status, headers, _) = request("GET", &gw.url(&url), &cookies, None).await;
        assert_eq!(status, 400, "{bad}");
        assert!(!headers.contains_key("location"));
        assert!(!headers.contains_key("set-cookie"));
        assert!(
            authorize(gw, "", &cookies).await.starts_with(CALLBACK),
            "{bad}"
        );
    }
    // Our ID token names the client, whose registered URI is then followed
    // once the user confirms.
    let url = format!(
        "/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        enc(&id_token),
        enc(CALLBACK)
    );
    let (status, _, html) = request("GET", &gw.url(&url), &cookies, None).await;
    assert_eq!(status, 200);
    assert_eq!(hidden(&html, "id_token_hint"), id_token);
    let form = format!(
        "csrf={}&id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        enc(&hidden(&html, "csrf")),
        enc(&id_token),
        enc(CALLBACK)
    );
    let (status, headers, _) = request("POST", &gw.url("/logout"), &cookies, Some(&form)).await;
    assert_eq!(status, 302);
    assert_eq!(location(&headers), format!("{CALLBACK}?state=bye"));
    assert!(authorize(gw, "", &cookies).await.starts_with("/login"));
    env.gw.shutdown().await;
}

crate::on_both_databases!(
    sessions_and_forms_are_shared_by_replicas_and_survive_a_restart,
    failed_logins_count_across_replicas,
    successful_logins_are_audited,
    guesses_sent_at_once_get_no_more_tries,
    prompt_none_never_shows_a_page,
    prompt_login_and_max_age_ask_for_the_password_again,
    login_hint_fills_in_the_email,
    logout_names_its_client_by_id_token_hint,
);
