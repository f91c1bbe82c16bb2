//! argon2 budgets under a flood: logins with made-up emails from many
//! addresses fill the login budget, which then refuses at once (503 with
//! `Retry-After`) instead of queueing without bound, while client
//! authentication, in a budget of its own, keeps working.

use super::*;

async fn a_flood_of_unknown_emails_is_bounded_and_spares_client_authentication(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    // Eighty sign-ins at once, each from its own address (so the per-address
    // share and the throttle do not stop them), each for a fresh email.
    let logins: Vec<_> = (0..80u8)
        .map(|i| {
            let url = gw.url("/login");
            let cookies = [form.cookie.clone()];
            let body = format!(
                "txn={}&csrf={}&{}",
                enc(&form.txn),
                enc(&form.csrf),
                credentials(&format!("nobody{i}@example.test"), "guess")
            );
            tokio::spawn(async move {
                let (status, headers, _) =
                    request_from(loopback(10 + i), "POST", &url, &cookies, Some(&body)).await;
                (status, headers.get("retry-after").cloned())
            })
        })
        .collect();
    // Meanwhile a confidential client authenticates with a secret this
    // process has not verified yet: its own budget has a slot. The grant
    // then fails (no such code), which is after authentication.
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "portal:portal-secret-0123456789"
        )
    );
    let req = http::Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "grant_type=authorization_code&code=nope&redirect_uri={}",
            enc(CALLBACK)
        ))))
        .unwrap();
    let (status, _, body) = send_from(loopback(9), req).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_grant");
    let mut refused = 0;
    for task in logins {
        let (status, retry_after) = task.await.unwrap();
        match status.as_u16() {
            // Answered like a wrong password for a real account.
            401 => {}
            503 => {
                assert_eq!(retry_after.unwrap(), "1");
                refused += 1;
            }
            other => panic!("a flooded login answered {other}"),
        }
    }
    // Two run and sixteen wait at most, each for at most 2 s: the queue did
    // not grow with the flood. (How many were refused depends on how fast
    // the eighty arrive; the bounds themselves are `kdf`'s unit tests.)
    assert!(refused >= 1, "none of 80 at once was refused");
    // Once it passes, sign-in works again.
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let right = credentials("alice@example.test", PASSWORD);
    let (status, _, _) = submit_from(gw, loopback(8), &form, &right).await;
    assert_eq!(status, 302);
    env.gw.shutdown().await;
}

async fn unknown_and_known_emails_are_answered_alike(db: TestDb) {
    let env = env(db).await;
    let gw = &env.gw;
    let (form, _) = open_form(gw, &authorize_query("web", ""), &[]).await;
    let known = submit(gw, &form, &credentials("alice@example.test", "wrong")).await;
    let unknown = submit(gw, &form, &credentials("nobody@example.test", "wrong")).await;
    assert_eq!(known.0, 401);
    assert_eq!(unknown.0, known.0);
    // The same page but for the email typed back into the form.
    let strip = |html: &str, email: &str| html.replace(email, "EMAIL");
    assert_eq!(
        strip(&unknown.2, "nobody@example.test"),
        strip(&known.2, "alice@example.test")
    );
    env.gw.shutdown().await;
}

crate::on_both_databases!(
    a_flood_of_unknown_emails_is_bounded_and_spares_client_authentication,
    unknown_and_known_emails_are_answered_alike,
);
