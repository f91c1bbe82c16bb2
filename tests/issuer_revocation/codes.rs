//! An authorization code presented a second time: everything its redemption
//! issued stops working — the refresh family and its access tokens — also
//! when the second presentation races the first; and only a presentation the
//! code's own client could redeem with counts.

use std::sync::Arc;

use super::*;
use crate::support::oauth::{login_for_code, redeem_code};

/// Asserts `(status, error)` is 400 `invalid_grant`.
fn assert_invalid_grant((status, body): &(http::StatusCode, Value), what: &str) {
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{what}: {body}"
    );
}

async fn a_replayed_code_stops_everything_it_issued(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let scope = "openid read:data";
    let (code, verifier) = login_for_code(&base, "web", CALLBACK, scope, (EMAIL, PASSWORD)).await;
    let (status, body) = redeem_code(&base, "web", CALLBACK, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    let first = Tokens::of(&body);
    let (status, body) = refresh(&base, "web", &first.refresh).await;
    assert_eq!(status, 200, "{body}");
    let second = Tokens::of(&body);
    let unrelated = env.login().await;
    assert_eq!(super::status(p, &second.access).await, 200);

    let replay = redeem_code(&base, "web", CALLBACK, &code, &verifier).await;
    assert_invalid_grant(&replay, "the replay");
    for t in [&first.access, &second.access] {
        assert_refused(p, t, "a token of the replayed code's family").await;
        assert!(!active(&base, t).await);
    }
    assert_invalid_grant(
        &refresh(&base, "web", &second.refresh).await,
        "the family's refresh token",
    );
    assert_eq!(super::status(p, &unrelated.access).await, 200);
    env.p.kill().await;
}

/// A client without the `refresh_token` grant has no refresh family: a
/// replay still stops the access token the code gave.
async fn a_replay_stops_the_access_token_of_a_code_without_refresh(db: TestDb) {
    let env = Env::start(&db).await;
    let base = env.base();
    let created = admin(
        &env.config,
        &[
            "client",
            "create",
            "--name",
            "spa",
            "--public",
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            CALLBACK,
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    );
    let spa = created["client_id"].as_str().unwrap();
    let (code, verifier) =
        login_for_code(&base, spa, CALLBACK, "read:data", (EMAIL, PASSWORD)).await;
    let (status, body) = redeem_code(&base, spa, CALLBACK, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.get("refresh_token"), None);
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(claims_of(&access)["family_id"].is_string());
    assert_eq!(super::status(&env.p, &access).await, 200);
    let replay = redeem_code(&base, spa, CALLBACK, &code, &verifier).await;
    assert_invalid_grant(&replay, "the replay");
    assert_refused(&env.p, &access, "the code's only access token").await;
    env.p.kill().await;
}

async fn a_code_presented_by_another_client_burns_nothing(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let scope = "openid read:data";
    let (code, verifier) = login_for_code(&base, "web", CALLBACK, scope, (EMAIL, PASSWORD)).await;
    // Before the redemption: refused, and the code is not spent.
    let stolen = redeem_code(&base, "other", CALLBACK, &code, &verifier).await;
    assert_invalid_grant(&stolen, "another client's redemption");
    let (status, body) = redeem_code(&base, "web", CALLBACK, &code, &verifier).await;
    assert_eq!(status, 200, "the code's client still redeems it: {body}");
    let tokens = Tokens::of(&body);
    // After it: refused, and nothing is revoked — by another client, nor by
    // the code's own client without the verifier.
    let stolen = redeem_code(&base, "other", CALLBACK, &code, &verifier).await;
    assert_invalid_grant(&stolen, "another client's replay");
    let guessed = redeem_code(
        &base,
        "web",
        CALLBACK,
        &code,
        "a-guess-0123456789-0123456789-0123456789",
    )
    .await;
    assert_invalid_grant(&guessed, "a replay without the verifier");
    assert_eq!(super::status(p, &tokens.access).await, 200);
    assert!(active(&base, &tokens.access).await);
    let (status, body) = refresh(&base, "web", &tokens.refresh).await;
    assert_eq!(status, 200, "the family lives on: {body}");
    env.p.kill().await;
}

/// Redemptions of one code at once: one wins, and whichever order they
/// commit in, the others find its family and revoke it.
async fn racing_redemptions_of_one_code_leave_nothing_working(db: TestDb) {
    let env = Env::start(&db).await;
    let (base, p) = (env.base(), &env.p);
    let scope = "openid read:data";
    let (code, verifier) = login_for_code(&base, "web", CALLBACK, scope, (EMAIL, PASSWORD)).await;
    let (code, verifier) = (Arc::new(code), Arc::new(verifier));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (base, code, verifier, barrier) = (
                base.clone(),
                code.clone(),
                verifier.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                redeem_code(&base, "web", CALLBACK, &code, &verifier).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.0.as_u16() {
            200 => winners.push(Tokens::of(&answer.1)),
            _ => assert_invalid_grant(&answer, "a losing redemption"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    let won = &winners[0];
    assert_refused(p, &won.access, "the winner's access token").await;
    assert!(!active(&base, &won.access).await);
    assert_invalid_grant(
        &refresh(&base, "web", &won.refresh).await,
        "the winner's refresh token",
    );
    env.p.kill().await;
}

on_both_databases!(
    a_replayed_code_stops_everything_it_issued,
    a_replay_stops_the_access_token_of_a_code_without_refresh,
    a_code_presented_by_another_client_burns_nothing,
    racing_redemptions_of_one_code_leave_nothing_working,
);
