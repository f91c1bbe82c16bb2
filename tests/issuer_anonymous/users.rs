//! The promotion of anonymous users and the anonymization of users through
//! the admin API (`POST /admin/v1/users/{id}/promote`, `…/anonymize`): the
//! `sub` kept and the sign-in that follows, what is erased and revoked, the
//! refusals as JSON errors, the audit log, and the three events delivered to
//! a real webhook receiver, signed.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;

/// A Standard Webhooks secret's base64 part.
const HOOK_SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An admin API token (client_credentials of `ops`).
pub(crate) async fn admin_token(env: &Env) -> String {
    let form = format!("grant_type=client_credentials&resource={}", enc(ADMIN_API));
    let (status, body) = post(&env.base(), "/oauth/token", Some(OPS), &form).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Calls the admin API: status, headers, JSON.
pub(crate) async fn call(
    env: &Env,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let token = admin_token(env).await;
    let mut req = Request::builder()
        .method(method)
        .uri(env.gw.url(path))
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let (status, headers, text) = send(req.body(Full::new(bytes)).unwrap()).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, headers, json)
}

/// Promotes user `id` to `email` with [`PASSWORD`] and the name Pat.
pub(crate) async fn promote(env: &Env, id: &str, email: &str) -> (StatusCode, HeaderMap, Value) {
    let body = json!({ "email": email, "password": PASSWORD, "name": "Pat" });
    call(
        env,
        "POST",
        &format!("/admin/v1/users/{id}/promote"),
        Some(body),
    )
    .await
}

fn refused(answer: (StatusCode, HeaderMap, Value), status: StatusCode, code: &str) {
    let (got, headers, body) = answer;
    assert_eq!(
        (got, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

async fn promotion_keeps_the_sub_and_lets_the_user_sign_in(db: TestDb) {
    let env = env(db).await;
    let anonymous = env.new_anonymous().await;
    let sub = sub_of(&anonymous);
    let user_path = format!("/admin/v1/users/{sub}");
    let (status, _, shown) = call(&env, "GET", &user_path, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (shown["anonymous"].clone(), shown["email"].clone()),
        (json!(true), Value::Null)
    );

    let (status, _, user) = promote(&env, &sub, "pat@example.test").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["id"], sub.as_str());
    assert_eq!(user["email"], "pat@example.test");
    assert_eq!(user["name"], "Pat");
    assert_eq!(user["anonymous"], false);
    assert!(!user.to_string().contains("argon2") && !user.to_string().contains(PASSWORD));

    // The anonymous session goes on as the promoted user: same sub, no
    // longer anonymous.
    let (status, refreshed) = env
        .refresh(anonymous["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let claims = claims_of(refreshed["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], sub.as_str());
    assert!(claims.get("anonymous").is_none(), "{claims}");

    // The email signs in at the login page, as the same user.
    let tokens = support::oauth::code_flow(
        &env.base(),
        "mobile",
        CALLBACK,
        "openid read:data",
        ("pat@example.test", PASSWORD),
    )
    .await;
    assert_eq!(sub_of(&tokens), sub);
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        (id["sub"].as_str(), id["email"].as_str()),
        (Some(sub.as_str()), Some("pat@example.test"))
    );
    assert!(
        claims_of(tokens["access_token"].as_str().unwrap())
            .get("anonymous")
            .is_none()
    );

    // Refusals, as JSON: not anonymous (any more), an email in use in any
    // letter case, an unknown user, a body of the wrong shape or values.
    refused(
        promote(&env, &sub, "pat2@example.test").await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let other = sub_of(&env.new_anonymous().await);
    refused(
        promote(&env, &other, "PAT@example.test").await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        promote(&env, "usr_nobody", "x@example.test").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let path = format!("/admin/v1/users/{other}/promote");
    let short = json!({ "email": "o@example.test", "password": "short" });
    refused(
        call(&env, "POST", &path, Some(short)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let unknown_field = json!({ "email": "o@example.test", "password": PASSWORD, "admin": true });
    refused(
        call(&env, "POST", &path, Some(unknown_field)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        call(&env, "GET", &path, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // An anonymous user gets an email and a password by promotion only.
    let patch = json!({ "email": "o@example.test" });
    refused(
        call(
            &env,
            "PATCH",
            &format!("/admin/v1/users/{other}"),
            Some(patch),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let (status, _, still) = call(&env, "GET", &format!("/admin/v1/users/{other}"), None).await;
    assert_eq!(
        (status, still["anonymous"].clone()),
        (StatusCode::OK, json!(true))
    );

    // The audit log names the change and who made it.
    let (_, _, audit) = call(&env, "GET", "/admin/v1/audit", None).await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.anonymous.promoted")
        .unwrap();
    assert_eq!(
        (entry["actor"].as_str(), entry["target"].as_str()),
        (Some("ops"), Some(sub.as_str()))
    );
    env.gw.shutdown().await;
}

async fn anonymization_erases_the_user_and_revokes_their_tokens(db: TestDb) {
    let env = env(db).await;
    let made = json!({ "email": "ann@example.test", "password": PASSWORD, "name": "Ann" });
    let (status, _, user) = call(&env, "POST", "/admin/v1/users", Some(made)).await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/users/{id}");
    let patch = json!({ "picture": "https://pics.example.test/ann.png" });
    assert_eq!(call(&env, "PATCH", &path, Some(patch)).await.0, 200);
    let tokens = support::oauth::code_flow(
        &env.base(),
        "mobile",
        CALLBACK,
        "openid read:data",
        ("ann@example.test", PASSWORD),
    )
    .await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let (status, _, erased) = call(&env, "POST", &format!("{path}/anonymize"), None).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["id"], id.as_str());
    for field in ["email", "name", "picture"] {
        assert_eq!(erased[field], Value::Null, "{field}: {erased}");
    }
    assert_eq!(erased["email_verified"], false);
    assert!(erased["anonymized_at"].as_str().is_some(), "{erased}");

    // The refresh token is revoked.
    let (status, body) = env.refresh(refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );

    // The id is kept, with nothing personal; the database has no trace of
    // the email or the name, the audit log none either.
    let (status, _, shown) = call(&env, "GET", &path, None).await;
    assert_eq!(
        (status, shown["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let row = env
        .db
        .rows(
            &format!("SELECT email, name, picture, password_hash FROM users WHERE id = '{id}'"),
            &["email", "name", "picture", "password_hash"],
        )
        .await;
    assert_eq!(row, [["", "NULL", "NULL", "NULL"]]);
    let (_, _, audit) = call(&env, "GET", "/admin/v1/audit?limit=1000", None).await;
    let text = audit.to_string();
    assert!(
        !text.contains("ann@example.test") && !text.contains("ann.png"),
        "{text}"
    );
    let about: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .collect();
    let actions: Vec<&str> = about
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"user.created") && actions.contains(&"user.anonymized"),
        "{actions:?}"
    );
    let erasure = about
        .iter()
        .find(|e| e["action"] == "user.anonymized")
        .unwrap();
    assert_eq!(
        erasure["detail"]["revoked_refresh_families"], 1,
        "{erasure}"
    );
    let created = about
        .iter()
        .find(|e| e["action"] == "user.created")
        .unwrap();
    assert_eq!(created["detail"], json!({ "redacted": "user.anonymized" }));

    // The email no longer signs in (the failure is audited under the
    // address typed, as for any unknown one).
    let statuses = support::oauth::login_attempts(
        &env.base(),
        "mobile",
        CALLBACK,
        "ann@example.test",
        &[PASSWORD],
    )
    .await;
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED]);

    // It stays erased: no second anonymization, no changes, no promotion.
    refused(
        call(&env, "POST", &format!("{path}/anonymize"), None).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let patch = json!({ "email": "ann@example.test", "password": PASSWORD });
    refused(
        call(&env, "PATCH", &path, Some(patch)).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        promote(&env, &id, "ann@example.test").await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        call(&env, "POST", "/admin/v1/users/usr_nobody/anonymize", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // The address is free for a new user.
    let again = json!({ "email": "ann@example.test", "password": PASSWORD, "name": "Ann" });
    assert_eq!(
        call(&env, "POST", "/admin/v1/users", Some(again)).await.0,
        201
    );
    env.gw.shutdown().await;
}

fn expected_signature(id: &str, ts: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &STANDARD.decode(HOOK_SECRET).unwrap());
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()))
}

async fn the_three_events_reach_a_webhook(db: TestDb) {
    let receiver = Upstream::start().await;
    let hooks = format!(
        "    - url: \"{}/hook\"\n      secret: \"whsec_{HOOK_SECRET}\"\n      events: [user.anonymous.created, user.anonymous.promoted, user.anonymized]\n",
        receiver.url()
    );
    let env = env_with_hooks(db, &hooks).await;
    let sub = sub_of(&env.new_anonymous().await);
    assert_eq!(promote(&env, &sub, "pat@example.test").await.0, 200);
    let path = format!("/admin/v1/users/{sub}/anonymize");
    assert_eq!(call(&env, "POST", &path, None).await.0, 200);

    // The deliverer polls each second of the real clock; the manual one moves
    // any retry forward.
    for _ in 0..400 {
        if receiver.count() >= 3 {
            break;
        }
        env.clock.advance(10);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let received = receiver.received();
    let mut seen: Vec<(String, Value)> = Vec::new();
    for r in &received {
        let header = |name: &str| r.headers[name].to_str().unwrap().to_owned();
        let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
        assert_eq!(
            header("webhook-signature"),
            expected_signature(&id, &ts, &r.body)
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["id"], id.as_str());
        seen.push((
            body["event"].as_str().unwrap().to_owned(),
            body["data"].clone(),
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("user.anonymized".to_owned(), json!({ "id": sub })),
            (
                "user.anonymous.created".to_owned(),
                json!({ "id": sub, "client_id": "mobile" })
            ),
            (
                "user.anonymous.promoted".to_owned(),
                json!({ "id": sub, "email": "pat@example.test", "name": "Pat" })
            ),
        ],
        "{received:?}"
    );
    env.gw.shutdown().await;
}

on_both_databases!(
    promotion_keeps_the_sub_and_lets_the_user_sign_in,
    anonymization_erases_the_user_and_revokes_their_tokens,
    the_three_events_reach_a_webhook,
);
