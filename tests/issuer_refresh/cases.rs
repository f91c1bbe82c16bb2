//! `grant_type=refresh_token`: rotation, reuse, concurrency, grace, expiry,
//! scope and roles.

use super::*;

#[tokio::test]
async fn rotation_issues_new_tokens_and_a_replay_revokes_the_family() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;

    let (t1, body) = rotate(&env.gw, &t0).await;
    assert_ne!(t1, t0);
    // 256 random bits, base64url.
    assert_eq!(t1.len(), 43, "{t1}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "openid offline_access read:data write:data");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], env.user.as_str());
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["client_id"], "app");
    assert_eq!(claims["org_id"], "org_acme");
    assert_eq!(claims["roles"], json!(["editor"]));
    assert_eq!(claims["iss"], "http://issuer.test");
    // The gateway accepts the refreshed access token.
    let access = body["access_token"].as_str().unwrap();
    let (status, _, _) = get(&env.gw.url("/data"), Some(access)).await;
    assert_eq!(status, 200);

    // The new token rotates again; the first one is now a replay.
    let (t2, _) = rotate(&env.gw, &t1).await;
    refused(&env.gw, &t0, "invalid_grant").await;
    // Reuse revoked the whole family: the newest token is dead too.
    refused(&env.gw, &t2, "invalid_grant").await;
    assert!(
        audit_actions(env.store.as_ref())
            .await
            .contains(&"token.reuse_detected".to_owned())
    );
    let now = env.clock.now_unix();
    let events = env.store.due_events(now, now + 60, 100).await.unwrap();
    let reuse = events
        .iter()
        .find(|e| e.event == "token.reuse_detected")
        .expect("reuse event");
    let data: Value = serde_json::from_str(&reuse.data).unwrap();
    assert_eq!(data["client_id"], "app");
    assert!(!reuse.data.contains(&t0) && !reuse.data.contains(&t2));
}

#[tokio::test]
async fn replaying_the_previous_token_right_after_rotation_is_reuse_without_grace() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let (t1, _) = rotate(&env.gw, &t0).await;
    refused(&env.gw, &t0, "invalid_grant").await;
    refused(&env.gw, &t1, "invalid_grant").await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_have_exactly_one_winner() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let gw = Arc::new(env.gw);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (gw, t0) = (gw.clone(), t0.clone());
            tokio::spawn(async move { refresh(&gw, APP, &t0).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status.as_u16() {
            200 => wins += 1,
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn a_replay_inside_the_grace_gets_the_same_successor() {
    let l = Lifetimes {
        grace: "10s",
        ..DEFAULT
    };
    let env = env(l).await;
    let t0 = family(&env, "app", l).await;
    let (t1, first) = rotate(&env.gw, &t0).await;

    env.clock.advance(5);
    let (again, second) = rotate(&env.gw, &t0).await;
    assert_eq!(again, t1, "the lost response's refresh token comes back");
    assert_ne!(first["access_token"], second["access_token"]);
    // The successor still works, and rotates normally.
    let (t2, _) = rotate(&env.gw, &t1).await;

    // t0 is now two generations old: a replay even inside the grace.
    refused(&env.gw, &t0, "invalid_grant").await;
    refused(&env.gw, &t2, "invalid_grant").await;
}

#[tokio::test]
async fn a_replay_after_the_grace_revokes_the_family() {
    let l = Lifetimes {
        grace: "10s",
        ..DEFAULT
    };
    let env = env(l).await;
    let t0 = family(&env, "app", l).await;
    let (t1, _) = rotate(&env.gw, &t0).await;
    env.clock.advance(11);
    refused(&env.gw, &t0, "invalid_grant").await;
    refused(&env.gw, &t1, "invalid_grant").await;
}

#[tokio::test]
async fn families_end_at_their_idle_and_absolute_expiry() {
    let l = Lifetimes {
        ttl: "1h",
        idle: Some("10m"),
        grace: "0s",
    };
    let env = env(l).await;

    // Idle: each rotation moves the sliding limit; a pause longer than it ends
    // the family.
    let t0 = family(&env, "app", l).await;
    env.clock.advance(599);
    let (t1, _) = rotate(&env.gw, &t0).await;
    env.clock.advance(599);
    let (t2, _) = rotate(&env.gw, &t1).await;
    env.clock.advance(600);
    refused(&env.gw, &t2, "invalid_grant").await;

    // Absolute: steady use does not outlive the family.
    let mut t = family(&env, "app", l).await;
    for _ in 0..7 {
        env.clock.advance(500);
        t = rotate(&env.gw, &t).await.0;
    }
    env.clock.advance(100); // 3600 s after the family began
    refused(&env.gw, &t, "invalid_grant").await;
    // Expiry is not reuse: nothing was revoked.
    assert!(
        !audit_actions(env.store.as_ref())
            .await
            .contains(&"token.reuse_detected".to_owned())
    );
}

#[tokio::test]
async fn openid_families_get_a_fresh_id_token_for_the_same_sign_in() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let signed_in = env.clock.now_unix();
    env.clock.advance(600);
    env.store
        .update_user(&User {
            id: env.user.clone(),
            email: Some(format!("{}@example.test", env.user)),
            name: Some("Ada Lovelace".into()),
            picture: None,
            email_verified: true,
            password_hash: None,
            created_at: signed_in,
            updated_at: signed_in,
            anonymous: false,
            anonymized_at: None,
        })
        .await
        .unwrap();
    let (_, body) = rotate(&env.gw, &t0).await;
    let id_token = body["id_token"].as_str().expect("an ID token");
    assert_eq!(header_of(id_token)["typ"], "JWT");
    let id = claims_of(id_token);
    assert_eq!(id["iss"], "http://issuer.test");
    assert_eq!(id["sub"], env.user.as_str());
    assert_eq!(id["aud"], "app");
    // Issued now, about the original sign-in, with the profile as it is now.
    assert_eq!(id["iat"], env.clock.now_unix());
    assert_eq!(id["auth_time"], signed_in);
    assert!(id.get("nonce").is_none());
    assert_eq!(id["name"], "Ada Lovelace");
    assert_eq!(id["org_id"], "org_acme");
    assert_eq!(id["org_name"], "Acme");
    assert_eq!(id["role"], "editor");

    // Narrowed to API scopes only (no openid): no ID token.
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&scope=read%3Adata",
        enc(body["refresh_token"].as_str().unwrap())
    );
    let (status, _, json) = post(&env.gw, "/oauth/token", Some(APP), &form).await;
    assert_eq!(status, 200, "{json}");
    assert!(json.get("id_token").is_none(), "{json}");
}

#[tokio::test]
async fn scope_may_narrow_but_never_widen() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;

    let body = format!(
        "grant_type=refresh_token&refresh_token={}&scope=read%3Adata%20admin",
        enc(&t0)
    );
    let (status, _, json) = post(&env.gw, "/oauth/token", Some(APP), &body).await;
    assert_eq!(status, 400);
    assert_eq!(json["error"], "invalid_scope");

    // The refusal cost nothing: t0 is still current.
    let body = format!(
        "grant_type=refresh_token&refresh_token={}&scope=read%3Adata",
        enc(&t0)
    );
    let (status, _, json) = post(&env.gw, "/oauth/token", Some(APP), &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["scope"], "read:data");
    assert_eq!(
        claims_of(json["access_token"].as_str().unwrap())["scope"],
        "read:data"
    );
    // Narrowing one access token leaves the family's grant as it was.
    let (_, full) = rotate(&env.gw, json["refresh_token"].as_str().unwrap()).await;
    assert_eq!(full["scope"], "openid offline_access read:data write:data");
}

#[tokio::test]
async fn refreshed_tokens_carry_the_users_current_roles() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    set_roles(env.store.as_ref(), &env.user, &["viewer"]).await;
    let (t1, body) = rotate(&env.gw, &t0).await;
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"], json!(["viewer"]));
    // write:data is no longer granted by any of the user's roles.
    assert_eq!(claims["scope"], "openid offline_access read:data");

    // A user who left the organization gets no token, and keeps the refresh
    // token (nothing was rotated).
    env.store
        .remove_membership("org_acme", &env.user)
        .await
        .unwrap();
    refused(&env.gw, &t1, "invalid_grant").await;
    set_roles(env.store.as_ref(), &env.user, &["editor"]).await;
    rotate(&env.gw, &t1).await;
}

#[tokio::test]
async fn tokens_belong_to_their_client() {
    let env = env(DEFAULT).await;
    let t0 = family(&env, "app", DEFAULT).await;
    let (status, body) = refresh(&env.gw, OTHER, &t0).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    // Another client's attempt is not reuse: the owner still refreshes.
    rotate(&env.gw, &t0).await;

    // A public client refreshes with its client_id alone.
    let p0 = family(&env, "web-app", DEFAULT).await;
    let body = format!(
        "grant_type=refresh_token&client_id=web-app&refresh_token={}",
        enc(&p0)
    );
    let (status, _, json) = post(&env.gw, "/oauth/token", None, &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        claims_of(json["access_token"].as_str().unwrap())["client_id"],
        "web-app"
    );

    // A client without the grant type is refused.
    let (status, body) = refresh(&env.gw, BILLING, &t0).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unauthorized_client");
    // So are unknown and missing tokens.
    refused(&env.gw, "not-a-token", "invalid_grant").await;
    let (status, _, json) = post(
        &env.gw,
        "/oauth/token",
        Some(APP),
        "grant_type=refresh_token",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(json["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_let_exactly_one_concurrent_refresh_win() {
    let Ok(base) = std::env::var(POSTGRES_URL) else {
        println!("skipped: {POSTGRES_URL} is not set");
        return;
    };
    let schema = Schema::create(base).await;
    two_replicas(schema.url()).await;
}

/// A fresh PostgreSQL schema, dropped when the test ends (passed or panicked).
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    async fn create(base: String) -> Schema {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        Schema { base, name }
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs outside async: drop the schema on a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
            })
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop schema {}", self.name);
        }
    }
}

/// Two gateways (replicas) on one PostgreSQL schema; 20 concurrent refreshes
/// with one token, split between them.
async fn two_replicas(db: String) {
    let up = Upstream::start().await;
    let clock = Arc::new(ManualClock::new(now()));
    let config = yaml(&db, &up.url(), DEFAULT);
    let a = Arc::new(Gateway::start_with_clock(&config, clock.clone()).await);
    let b = Arc::new(Gateway::start_with_clock(&config, clock.clone()).await);
    let s = store::open(&db).await.unwrap();
    let user = seed_tenancy(s.as_ref(), clock.now_unix()).await;
    let t0 = seed_family(s.as_ref(), &user, "app", clock.now_unix(), DEFAULT).await;

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
            let t0 = t0.clone();
            tokio::spawn(async move { refresh(&gw, APP, &t0).await })
        })
        .collect();
    let mut winner = None;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status.as_u16() {
            200 => {
                assert!(winner.is_none(), "a second winner");
                winner = Some(body["refresh_token"].as_str().unwrap().to_owned());
            }
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert!(winner.is_some(), "no winner");

    // A token rotated through one replica and replayed through the other is
    // detected as reuse.
    let t = seed_family(s.as_ref(), &user, "app", clock.now_unix(), DEFAULT).await;
    let (t1, _) = rotate(&a, &t).await;
    let (status, _) = refresh(&b, APP, &t).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&a, APP, &t1).await;
    assert_eq!(status, 400);
    s.close().await;
}
