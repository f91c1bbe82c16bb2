//! Signing keys, the rotation lease, and reopening the database.

use super::*;

pub(crate) async fn signing_keys(t: Ctx) {
    let s = &*t.store;
    let old = key("k-old", NOW - 2000, Some(NOW - 1));
    let current = key("k-cur", NOW - 1000, None);
    let next = key("k-next", NOW + 1000, None);
    let rsa = SigningKeyRecord {
        alg: "RS256".into(),
        ..key("k-rsa", NOW - 1000, Some(NOW + 1))
    };
    for k in [&next, &old, &rsa, &current] {
        s.insert_signing_key(k).await.unwrap();
    }
    // Expired keys are left out; the rest come by activate_at, then kid.
    assert_eq!(
        s.list_signing_keys(NOW).await.unwrap(),
        vec![current.clone(), rsa.clone(), next.clone()]
    );
    assert_eq!(s.list_signing_keys(NOW - 2).await.unwrap().len(), 4);
    assert_eq!(
        s.list_signing_keys(NOW + 1).await.unwrap(),
        vec![current.clone(), next.clone()]
    );

    assert!(
        s.update_signing_key_times("k-cur", Some(NOW + 1000), Some(NOW + 5000))
            .await
            .unwrap()
    );
    assert!(
        !s.update_signing_key_times("k-none", None, None)
            .await
            .unwrap()
    );
    let listed = s.list_signing_keys(NOW).await.unwrap();
    let cur = listed.iter().find(|k| k.kid == "k-cur").unwrap();
    assert_eq!(
        (cur.retire_at, cur.expire_at),
        (Some(NOW + 1000), Some(NOW + 5000))
    );
    assert_eq!(cur.private_key, current.private_key);
    assert_eq!(
        s.list_signing_keys(NOW + 5000).await.unwrap(),
        vec![next.clone()]
    );

    // The shortcut and the transaction write the same way; an uncommitted
    // transaction writes nothing.
    let mut tx = s.begin().await.unwrap();
    tx.insert_signing_key(&key("k-tx", NOW, None))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(s.list_signing_keys(NOW).await.unwrap().len(), 3);
}

pub(crate) async fn rotation_lease_has_one_holder_until_it_lapses(t: Ctx) {
    let a = t.store.clone();
    let b = t.open_another().await; // another replica
    assert!(a.try_rotation_lock("replica-a", NOW, 60).await.unwrap());
    assert!(!b.try_rotation_lock("replica-b", NOW + 1, 60).await.unwrap());
    // The holder renews; the lease now runs to NOW + 30 + 60.
    assert!(
        a.try_rotation_lock("replica-a", NOW + 30, 60)
            .await
            .unwrap()
    );
    assert!(
        !b.try_rotation_lock("replica-b", NOW + 89, 60)
            .await
            .unwrap()
    );
    // Once it lapses the other takes it, and the first is shut out.
    assert!(
        b.try_rotation_lock("replica-b", NOW + 90, 60)
            .await
            .unwrap()
    );
    assert!(
        !a.try_rotation_lock("replica-a", NOW + 91, 60)
            .await
            .unwrap()
    );

    // Many contenders at one instant: exactly one wins.
    let later = NOW + 1000;
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .try_rotation_lock(&format!("replica-{i}"), later, 60)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
    b.close().await;
}

pub(crate) async fn everything_survives_a_restart(t: Ctx) {
    let s = t.store.clone();
    client_and_user(&*s).await;
    s.create_organization(&org("org_a")).await.unwrap();
    s.add_membership(&member("org_a", "usr_a")).await.unwrap();
    s.insert_signing_key(&key("k1", NOW, None)).await.unwrap();
    s.insert_code(&code("h-1")).await.unwrap();
    s.create_family(&family("fam_a", "rt-0")).await.unwrap();
    assert!(
        s.rotate_family("fam_a", 0, "rt-1", NOW, None)
            .await
            .unwrap()
    );
    s.record_revocation(&fact("jti", "jti-1", NOW, NOW + 900))
        .await
        .unwrap();
    s.enqueue_event(&event("evt_1", NOW)).await.unwrap();
    s.insert_audit(&audit("aud_1", NOW)).await.unwrap();
    s.close().await;

    let s = t.open_another().await;
    assert_eq!(s.get_client("cli_a").await.unwrap(), Some(client("cli_a")));
    assert!(
        s.get_user_by_email("ADA@example.test")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.list_memberships_of_user("usr_a").await.unwrap().len(), 1);
    assert_eq!(
        s.list_signing_keys(NOW).await.unwrap(),
        vec![key("k1", NOW, None)]
    );
    assert!(matches!(
        s.find_code("h-1").await.unwrap(),
        Some(CodeState::Unused(_))
    ));
    let found = s.find_family_by_token_hash("rt-0").await.unwrap().unwrap();
    assert_eq!(found.presented, PresentedToken::Previous);
    assert_eq!(found.family.generation, 1);
    assert!(jti_revoked(&*s, "jti-1").await);
    assert_eq!(s.due_events(NOW, NOW + 30, 10).await.unwrap().len(), 1);
    assert_eq!(s.list_audit(10).await.unwrap(), vec![audit("aud_1", NOW)]);
    s.close().await;
}
