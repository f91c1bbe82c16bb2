//! Authorization codes, refresh-token families and revoked JTIs.

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

    assert_eq!(s.consume_code("h-unknown", NOW).await.unwrap(), None);
    assert_eq!(
        s.consume_code("h-1", NOW).await.unwrap(),
        Some(CodeRedemption::First(code("h-1")))
    );
    // A replay gets the code back flagged, with the family it produced.
    assert_eq!(
        s.consume_code("h-1", NOW + 1).await.unwrap(),
        Some(CodeRedemption::Reused {
            code: code("h-1"),
            family_id: None
        })
    );
    assert!(s.set_code_family("h-1", "fam_1").await.unwrap());
    assert!(!s.set_code_family("h-unknown", "fam_1").await.unwrap());
    assert_eq!(
        s.consume_code("h-1", NOW + 2).await.unwrap(),
        Some(CodeRedemption::Reused {
            code: code("h-1"),
            family_id: Some("fam_1".into())
        })
    );
    assert_eq!(
        s.consume_code("h-bare", NOW).await.unwrap(),
        Some(CodeRedemption::First(bare))
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
                store.consume_code("h-race", NOW).await.unwrap()
            })
        })
        .collect();
    let (mut first, mut reused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Some(CodeRedemption::First(_)) => first += 1,
            Some(CodeRedemption::Reused { .. }) => reused += 1,
            None => panic!("the code vanished"),
        }
    }
    assert_eq!((first, reused), (1, 15));
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

pub(crate) async fn revoked_jtis_and_purging(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.revoke_jti("jti-short", NOW + 10).await.unwrap();
    s.revoke_jti("jti-long", NOW + 900).await.unwrap();
    s.revoke_jti("jti-long", NOW + 900).await.unwrap(); // again: no change
    assert!(s.is_jti_revoked("jti-short").await.unwrap());
    assert!(!s.is_jti_revoked("jti-other").await.unwrap());

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
    assert!(!s.is_jti_revoked("jti-short").await.unwrap());
    assert!(s.is_jti_revoked("jti-long").await.unwrap());
    assert_eq!(s.find_family_by_token_hash("rt-s0").await.unwrap(), None);
    assert_eq!(s.find_family_by_token_hash("rt-s1").await.unwrap(), None);
    assert!(
        s.find_family_by_token_hash("rt-l0")
            .await
            .unwrap()
            .is_some()
    );
    assert!(s.consume_code("h-1", NOW + 30).await.unwrap().is_some());
    let due: Vec<_> = s.due_events(NOW + 30, NOW + 60, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["evt_2"]
    );

    assert_eq!(s.purge_expired(NOW + 60).await.unwrap(), 1); // the code
    assert_eq!(s.consume_code("h-1", NOW + 61).await.unwrap(), None);
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
