//! Authorization codes, refresh-token families and revocation facts.

use super::*;

pub(crate) async fn codes_are_single_use(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    let mut bare = code("h-bare");
    bare.org_id = None;
    bare.resource = None;
    bare.code_challenge = None;
    bare.nonce = None;
    s.insert_code(&code("h-1")).await.unwrap();
    s.insert_code(&bare).await.unwrap();

    assert_eq!(s.find_code("h-unknown").await.unwrap(), None);
    assert_eq!(
        s.find_code("h-1").await.unwrap(),
        Some(CodeState::Unused(code("h-1")))
    );
    assert!(redeem(s, "h-1", "fam_1", NOW).await);
    // Once: a second redemption changes nothing, and the code keeps the
    // family of the first.
    assert!(!redeem(s, "h-1", "fam_2", NOW + 1).await);
    assert!(!redeem(s, "h-unknown", "fam_1", NOW).await);
    assert_eq!(
        s.find_code("h-1").await.unwrap(),
        Some(CodeState::Used {
            code: code("h-1"),
            family_id: Some("fam_1".into())
        })
    );
    // A redemption rolled back leaves the code unused; a failed attempt
    // spends it without a family.
    let mut tx = s.begin().await.unwrap();
    assert!(tx.redeem_code("h-bare", Some("fam_3"), NOW).await.unwrap());
    drop(tx);
    assert_eq!(
        s.find_code("h-bare").await.unwrap(),
        Some(CodeState::Unused(bare.clone()))
    );
    let mut tx = s.begin().await.unwrap();
    assert!(tx.redeem_code("h-bare", None, NOW).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        s.find_code("h-bare").await.unwrap(),
        Some(CodeState::Used {
            code: bare,
            family_id: None
        })
    );
}

pub(crate) async fn concurrent_code_redemption_has_one_winner(t: Ctx) {
    client_and_user(&*t.store).await;
    t.store.insert_code(&code("h-race")).await.unwrap();
    let other = t.open_another().await;
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 {
                t.store.clone()
            } else {
                other.clone()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let family = format!("fam_{i}");
                redeem(&*store, "h-race", &family, NOW)
                    .await
                    .then_some(family)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    // Every loser, reading the code after losing, finds the winner's family.
    assert_eq!(
        t.store.find_code("h-race").await.unwrap(),
        Some(CodeState::Used {
            code: code("h-race"),
            family_id: winners.pop()
        })
    );
    other.close().await;
}

pub(crate) async fn refresh_rotation_recognises_every_replayed_token(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    let created = family("fam_a", "rt-0");
    s.create_family(&created).await.unwrap();
    assert_eq!(s.find_family_by_token_hash("rt-none").await.unwrap(), None);
    let found = s.find_family_by_token_hash("rt-0").await.unwrap().unwrap();
    assert_eq!(
        (found.family, found.presented),
        (created, PresentedToken::Current)
    );

    assert!(
        s.rotate_family("fam_a", 0, "rt-1", NOW + 10, Some(NOW + 99))
            .await
            .unwrap()
    );
    assert!(
        s.rotate_family("fam_a", 1, "rt-2", NOW + 20, None)
            .await
            .unwrap()
    );

    let now = s.find_family_by_token_hash("rt-2").await.unwrap().unwrap();
    assert_eq!(now.presented, PresentedToken::Current);
    let f = &now.family;
    assert_eq!(f.generation, 2);
    assert_eq!(f.current_hash, "rt-2");
    assert_eq!(f.previous_hash.as_deref(), Some("rt-1"));
    assert_eq!(
        (f.rotated_at, f.idle_expires_at, f.revoked_at),
        (Some(NOW + 20), None, None)
    );

    // The token the last rotation replaced, and any older one, still lead to
    // the family, marked as replays.
    let prev = s.find_family_by_token_hash("rt-1").await.unwrap().unwrap();
    assert_eq!(
        (prev.presented, prev.family.id.as_str()),
        (PresentedToken::Previous, "fam_a")
    );
    let old = s.find_family_by_token_hash("rt-0").await.unwrap().unwrap();
    assert_eq!(
        (old.presented, old.family.generation),
        (PresentedToken::Retired, 2)
    );

    // So does every token of a revoked family.
    assert!(s.revoke_family("fam_a", NOW + 30).await.unwrap());
    let revoked = s.find_family_by_token_hash("rt-0").await.unwrap().unwrap();
    assert_eq!(revoked.family.revoked_at, Some(NOW + 30));
    let current = s.find_family_by_token_hash("rt-2").await.unwrap().unwrap();
    assert_eq!(current.presented, PresentedToken::Current);
}

pub(crate) async fn concurrent_rotation_has_one_winner(t: Ctx) {
    client_and_user(&*t.store).await;
    t.store
        .create_family(&family("fam_race", "rt-0"))
        .await
        .unwrap();
    // Two pools on one database stand for two replicas.
    let other = t.open_another().await;
    let barrier = Arc::new(Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = if i % 2 == 0 {
                t.store.clone()
            } else {
                other.clone()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let new_hash = format!("rt-1-{i}");
                let won = store
                    .rotate_family("fam_race", 0, &new_hash, NOW + 1, Some(NOW + 100))
                    .await
                    .unwrap();
                won.then_some(new_hash)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let found = t
        .store
        .find_family_by_token_hash(&winners[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.presented, PresentedToken::Current);
    assert_eq!(found.family.generation, 1);
    assert_eq!(found.family.previous_hash.as_deref(), Some("rt-0"));
    other.close().await;
}

pub(crate) async fn rotation_refuses_stale_revoked_and_expired_families(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.create_family(&family("fam_a", "a-0")).await.unwrap();
    assert!(!s.rotate_family("fam_a", 1, "a-1", NOW, None).await.unwrap());
    assert!(
        !s.rotate_family("fam_none", 0, "a-1", NOW, None)
            .await
            .unwrap()
    );
    let unchanged = s.find_family_by_token_hash("a-0").await.unwrap().unwrap();
    assert_eq!(unchanged.family, family("fam_a", "a-0"));

    s.create_family(&family("fam_r", "r-0")).await.unwrap();
    assert!(s.revoke_family("fam_r", NOW).await.unwrap());
    assert!(!s.rotate_family("fam_r", 0, "r-1", NOW, None).await.unwrap());

    // Past the idle limit, then past the absolute limit.
    s.create_family(&family("fam_i", "i-0")).await.unwrap();
    let idle = NOW + 7 * 86_400;
    assert!(
        !s.rotate_family("fam_i", 0, "i-1", idle, None)
            .await
            .unwrap()
    );
    assert!(
        s.rotate_family("fam_i", 0, "i-1", idle - 1, None)
            .await
            .unwrap()
    );
    let absolute = NOW + 30 * 86_400;
    assert!(
        !s.rotate_family("fam_i", 1, "i-2", absolute, None)
            .await
            .unwrap()
    );
    assert!(
        s.rotate_family("fam_i", 1, "i-2", absolute - 1, None)
            .await
            .unwrap()
    );
}

pub(crate) async fn revocation_by_family_user_and_client(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.create_client(&client("cli_b")).await.unwrap();
    s.create_user(&user("usr_b", "b@example.test"))
        .await
        .unwrap();
    let fam = |id: &str, client_id: &str, user_id: &str| {
        let mut f = family(id, &format!("rt-{id}"));
        f.client_id = client_id.into();
        f.user_id = user_id.into();
        f
    };
    for f in [
        fam("aa1", "cli_a", "usr_a"),
        fam("aa2", "cli_a", "usr_a"),
        fam("ab", "cli_a", "usr_b"),
        fam("ba", "cli_b", "usr_a"),
        fam("bb", "cli_b", "usr_b"),
    ] {
        s.create_family(&f).await.unwrap();
    }
    assert!(s.revoke_family("aa1", NOW).await.unwrap());
    assert!(!s.revoke_family("aa1", NOW + 1).await.unwrap());
    assert!(!s.revoke_family("nope", NOW).await.unwrap());
    assert_eq!(
        s.revoke_families_of_user("usr_a", NOW + 2).await.unwrap(),
        2
    );
    assert_eq!(
        s.revoke_families_of_client("cli_b", NOW + 3).await.unwrap(),
        1
    );
    assert_eq!(
        s.revoke_families_of_client("cli_b", NOW + 4).await.unwrap(),
        0
    );

    let revoked_at = |hash: &'static str| async move {
        let found = s.find_family_by_token_hash(hash).await.unwrap().unwrap();
        found.family.revoked_at
    };
    assert_eq!(revoked_at("rt-aa1").await, Some(NOW));
    assert_eq!(revoked_at("rt-aa2").await, Some(NOW + 2));
    assert_eq!(revoked_at("rt-ba").await, Some(NOW + 2));
    assert_eq!(revoked_at("rt-bb").await, Some(NOW + 3));
    assert_eq!(revoked_at("rt-ab").await, None);
}

pub(crate) async fn revocation_facts_match_their_tokens(t: Ctx) {
    let s = &*t.store;
    s.record_revocation(&fact("jti", "jti-1", NOW, NOW + 900))
        .await
        .unwrap();
    s.record_revocation(&fact("family", "fam_1", NOW + 60, NOW + 960))
        .await
        .unwrap();
    let by = |jti, family, iat| async move {
        s.is_revoked(&token_facts(jti, family, iat)).await.unwrap()
    };
    assert!(by("jti-1", None, NOW).await, "by jti");
    assert!(
        by("jti-2", Some("fam_1"), NOW + 100).await,
        "by family, any iat"
    );
    assert!(!by("jti-2", Some("fam_2"), NOW).await);
    assert!(!by("jti-2", None, NOW).await);
    // A user's or a client's tokens up to the cutoff, not after it.
    s.record_revocation(&fact("subject", "usr_a", NOW + 10, NOW + 999))
        .await
        .unwrap();
    assert!(by("jti-3", None, NOW + 10).await);
    assert!(!by("jti-3", None, NOW + 11).await);
    s.record_revocation(&fact("client", "cli_a", NOW + 20, NOW + 999))
        .await
        .unwrap();
    assert!(by("jti-3", None, NOW + 20).await);
    assert!(!by("jti-3", None, NOW + 21).await);
    // The user id of one kind is no value of another.
    let other = TokenFacts {
        jti: "usr_a",
        family_id: Some("usr_a"),
        sub: "usr_b",
        client_id: None,
        iat: NOW,
    };
    assert!(!s.is_revoked(&other).await.unwrap());
}

pub(crate) async fn revocation_facts_are_read_in_commit_order(t: Ctx) {
    let s = &*t.store;
    assert_eq!(s.last_revocation_id().await.unwrap(), 0);
    assert!(s.revocations_after(0, NOW, 10).await.unwrap().is_empty());
    let expired = s
        .record_revocation(&fact("jti", "old", NOW - 900, NOW - 1))
        .await
        .unwrap();
    let a = s
        .record_revocation(&fact("jti", "a", NOW, NOW + 900))
        .await
        .unwrap();
    // One written by another replica, and one that rolled back.
    let other = t.open_another().await;
    let b = other
        .record_revocation(&fact("family", "fam_b", NOW, NOW + 900))
        .await
        .unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.record_revocation(&fact("jti", "gone", NOW, NOW + 900))
        .await
        .unwrap();
    drop(tx);
    let c = s
        .record_revocation(&fact("subject", "usr_c", NOW, NOW + 900))
        .await
        .unwrap();
    assert!(expired < a && a < b && b < c, "{expired} {a} {b} {c}");
    assert_eq!(s.last_revocation_id().await.unwrap(), c);
    let values = |rows: Vec<RevocationRecord>| -> Vec<String> {
        rows.into_iter().map(|r| r.value).collect()
    };
    // Live facts only, by id; then the page above the last one read.
    assert_eq!(
        values(s.revocations_after(0, NOW, 10).await.unwrap()),
        ["a", "fam_b", "usr_c"]
    );
    assert_eq!(
        values(s.revocations_after(0, i64::MIN, 2).await.unwrap()),
        ["old", "a"]
    );
    let rows = s.revocations_after(a, NOW, 10).await.unwrap();
    assert_eq!(
        rows[0],
        RevocationRecord {
            id: b,
            ..fact("family", "fam_b", NOW, NOW + 900)
        }
    );
    assert_eq!(rows.len(), 2);
    other.close().await;
}

pub(crate) async fn revocations_and_purging(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.record_revocation(&fact("jti", "jti-short", NOW, NOW + 10))
        .await
        .unwrap();
    s.record_revocation(&fact("jti", "jti-long", NOW, NOW + 900))
        .await
        .unwrap();
    assert!(jti_revoked(s, "jti-short").await);
    assert!(!jti_revoked(s, "jti-other").await);

    s.insert_code(&code("h-1")).await.unwrap(); // expires at NOW + 60
    let mut short = family("fam_short", "rt-s0");
    short.absolute_expires_at = NOW + 20;
    s.create_family(&short).await.unwrap();
    assert!(
        s.rotate_family("fam_short", 0, "rt-s1", NOW, None)
            .await
            .unwrap()
    );
    s.create_family(&family("fam_long", "rt-l0")).await.unwrap();
    s.enqueue_event(&event("evt_1", NOW)).await.unwrap();
    s.enqueue_event(&event("evt_2", NOW)).await.unwrap();
    assert!(s.mark_delivered("evt_1", NOW + 5).await.unwrap());

    assert_eq!(s.purge_expired(NOW).await.unwrap(), 0);
    // jti-short, fam_short and evt_1.
    assert_eq!(s.purge_expired(NOW + 30).await.unwrap(), 3);
    assert!(!jti_revoked(s, "jti-short").await);
    assert!(jti_revoked(s, "jti-long").await);
    assert_eq!(s.find_family_by_token_hash("rt-s0").await.unwrap(), None);
    assert_eq!(s.find_family_by_token_hash("rt-s1").await.unwrap(), None);
    assert!(
        s.find_family_by_token_hash("rt-l0")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.find_code("h-1").await.unwrap().is_some());
    let due: Vec<_> = s.due_events(NOW + 30, NOW + 60, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["evt_2"]
    );

    assert_eq!(s.purge_expired(NOW + 60).await.unwrap(), 1); // the code
    assert_eq!(s.find_code("h-1").await.unwrap(), None);
}

pub(crate) async fn rotation_keeps_the_sealed_successor_with_its_generation(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.create_family(&family("fam_s", "s-0")).await.unwrap();
    assert_eq!(s.family_successor("fam_s").await.unwrap(), None);
    assert_eq!(s.family_successor("fam_none").await.unwrap(), None);

    let sealed = vec![0u8, 1, 2, 255];
    assert!(
        s.rotate_family_with_successor("fam_s", 0, "s-1", NOW, None, &sealed)
            .await
            .unwrap()
    );
    assert_eq!(
        s.family_successor("fam_s").await.unwrap(),
        Some(sealed.clone())
    );
    // A losing rotation writes nothing.
    assert!(
        !s.rotate_family_with_successor("fam_s", 0, "s-x", NOW, None, &[9])
            .await
            .unwrap()
    );
    assert_eq!(s.family_successor("fam_s").await.unwrap(), Some(sealed));
    // A rotation without a successor clears the last one.
    assert!(s.rotate_family("fam_s", 1, "s-2", NOW, None).await.unwrap());
    assert_eq!(s.family_successor("fam_s").await.unwrap(), None);
    // Another replica sees what was written.
    let other = t.open_another().await;
    assert!(
        other
            .rotate_family_with_successor("fam_s", 2, "s-3", NOW, None, &[7])
            .await
            .unwrap()
    );
    assert_eq!(s.family_successor("fam_s").await.unwrap(), Some(vec![7]));
    other.close().await;
}
