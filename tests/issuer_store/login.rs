//! The login flow's state: sign-in transactions, sessions, throttled attempts.

use super::*;

fn txn(id_hash: &str, user: Option<(&str, i64)>) -> LoginTransaction {
    LoginTransaction {
        id_hash: id_hash.into(),
        csrf: "csrf-token".into(),
        request: r#"{"client_id":"web"}"#.into(),
        user: user.map(|(u, at)| (u.to_owned(), at)),
        expires_at: NOW + 600,
    }
}

fn session(id_hash: &str, user: &str) -> LoginSession {
    LoginSession {
        id_hash: id_hash.into(),
        user_id: user.into(),
        auth_time: NOW - 5,
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

pub(crate) async fn login_transactions_are_replaced_expire_and_finish_once(t: Ctx) {
    let s = &*t.store;
    s.create_user(&user("usr_a", "a@example.test"))
        .await
        .unwrap();
    s.put_login_transaction(&txn("h1", None)).await.unwrap();
    assert_eq!(
        s.get_login_transaction("h1", NOW).await.unwrap(),
        Some(txn("h1", None))
    );
    // The user becomes known (the organization chooser): same id, replaced.
    let known = txn("h1", Some(("usr_a", NOW - 1)));
    s.put_login_transaction(&known).await.unwrap();
    assert_eq!(
        s.get_login_transaction("h1", NOW).await.unwrap(),
        Some(known)
    );
    // Expired at its expiry, not before; an unknown hash is nothing.
    assert!(
        s.get_login_transaction("h1", NOW + 600)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.get_login_transaction("h9", NOW).await.unwrap().is_none());
    assert!(!s.take_login_transaction("h1", NOW + 600).await.unwrap());

    // Finishing is single-use, also when many replicas try at once.
    let others = [t.open_another().await, t.open_another().await];
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = match i % 3 {
            0 => t.store.clone(),
            n => others[n - 1].clone(),
        };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.take_login_transaction("h1", NOW).await.unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(s.get_login_transaction("h1", NOW).await.unwrap().is_none());
    // A deleted user takes their pending transactions along.
    s.put_login_transaction(&txn("h2", Some(("usr_a", NOW))))
        .await
        .unwrap();
    s.delete_user("usr_a").await.unwrap();
    assert!(s.get_login_transaction("h2", NOW).await.unwrap().is_none());
    for other in others {
        other.close().await;
    }
}

pub(crate) async fn login_sessions_end_alone_per_user_or_at_expiry(t: Ctx) {
    let s = &*t.store;
    for (id, email) in [("usr_a", "a@example.test"), ("usr_b", "b@example.test")] {
        s.create_user(&user(id, email)).await.unwrap();
    }
    for (h, u) in [("s1", "usr_a"), ("s2", "usr_a"), ("s3", "usr_b")] {
        s.create_login_session(&session(h, u)).await.unwrap();
    }
    assert!(matches!(
        s.create_login_session(&session("s1", "usr_b")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_login_session(&session("s4", "usr_z")).await,
        Err(StoreError::MissingReference(_))
    ));
    assert_eq!(
        s.get_login_session("s1", NOW).await.unwrap(),
        Some(session("s1", "usr_a"))
    );
    assert!(
        s.get_login_session("s1", NOW + 3600)
            .await
            .unwrap()
            .is_none()
    );
    // Another replica sees the same sessions.
    let other = t.open_another().await;
    assert!(other.get_login_session("s3", NOW).await.unwrap().is_some());
    assert!(other.delete_login_session("s3").await.unwrap());
    assert!(!other.delete_login_session("s3").await.unwrap());
    assert!(s.get_login_session("s3", NOW).await.unwrap().is_none());
    // Every session of one user ends at once, with the sign-ins pending for
    // them (an organization chooser); the other user's stay.
    s.create_login_session(&session("s5", "usr_b"))
        .await
        .unwrap();
    s.put_login_transaction(&txn("ta", Some(("usr_a", NOW))))
        .await
        .unwrap();
    s.put_login_transaction(&txn("tb", Some(("usr_b", NOW))))
        .await
        .unwrap();
    assert_eq!(s.delete_login_sessions_of_user("usr_a").await.unwrap(), 2);
    assert!(s.get_login_transaction("ta", NOW).await.unwrap().is_none());
    assert!(s.get_login_transaction("tb", NOW).await.unwrap().is_some());
    assert!(s.get_login_session("s2", NOW).await.unwrap().is_none());
    assert!(s.get_login_session("s5", NOW).await.unwrap().is_some());
    // And a deleted user's sessions go with them.
    s.delete_user("usr_b").await.unwrap();
    assert!(s.get_login_session("s5", NOW).await.unwrap().is_none());
    other.close().await;
}

/// Three free attempts, then 2 s doubling to 10 s; remembered 60 s.
const RULE: AttemptRule = AttemptRule {
    free: 3,
    first_delay: 2,
    max_delay: 10,
    memory: 60,
};

pub(crate) async fn attempts_are_delayed_growing_and_forgiven(t: Ctx) {
    let s = &*t.store;
    let counted = |failures, delayed_until| Attempt::Counted {
        failures,
        delayed_until,
    };
    let take = |now| s.take_attempt("k", now, &RULE);
    assert_eq!(take(NOW).await.unwrap(), counted(1, NOW));
    assert_eq!(take(NOW).await.unwrap(), counted(2, NOW));
    assert_eq!(take(NOW).await.unwrap(), counted(3, NOW + 2));
    // During the delay: refused, not counted, not extended.
    assert_eq!(
        take(NOW + 1).await.unwrap(),
        Attempt::Delayed { until: NOW + 2 }
    );
    assert_eq!(
        take(NOW + 1).await.unwrap(),
        Attempt::Delayed { until: NOW + 2 }
    );
    // Doubling up to the cap.
    assert_eq!(take(NOW + 2).await.unwrap(), counted(4, NOW + 6));
    assert_eq!(take(NOW + 6).await.unwrap(), counted(5, NOW + 14));
    assert_eq!(take(NOW + 14).await.unwrap(), counted(6, NOW + 24));
    // Another key is unaffected.
    assert_eq!(
        s.take_attempt("other", NOW + 14, &RULE).await.unwrap(),
        counted(1, NOW + 14)
    );
    // Forgiving below the free attempts ends the delay it set.
    s.forgive_attempt("k", NOW + 20, &RULE).await.unwrap();
    assert_eq!(
        take(NOW + 20).await.unwrap(),
        Attempt::Delayed { until: NOW + 24 }
    );
    for _ in 0..3 {
        s.forgive_attempt("k", NOW + 20, &RULE).await.unwrap();
    }
    // Now at two: the next counts (third, delay begins again at 2 s).
    assert_eq!(take(NOW + 20).await.unwrap(), counted(3, NOW + 22));
    // Cleared: starts over.
    s.clear_attempts("k").await.unwrap();
    assert_eq!(take(NOW + 20).await.unwrap(), counted(1, NOW + 20));
    // Forgotten `memory` seconds after its last delay: starts over.
    assert_eq!(take(NOW + 20 + 60).await.unwrap(), counted(1, NOW + 80));
    // Forgiving an absent key changes nothing.
    s.forgive_attempt("absent", NOW, &RULE).await.unwrap();
    assert_eq!(
        s.take_attempt("absent", NOW, &RULE).await.unwrap(),
        counted(1, NOW)
    );
}

pub(crate) async fn attempts_at_once_across_replicas_count_once_each(t: Ctx) {
    // Ten at once through two replicas: exactly the free three are counted
    // before the delay; the other seven are refused.
    let other = t.open_another().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.take_attempt("c", NOW, &RULE).await.unwrap()
        }));
    }
    let mut counted = Vec::new();
    let mut delayed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Attempt::Counted { failures, .. } => counted.push(failures),
            Attempt::Delayed { until } => {
                assert_eq!(until, NOW + 2);
                delayed += 1;
            }
        }
    }
    counted.sort_unstable();
    assert_eq!((counted, delayed), (vec![1, 2, 3], 7));
    other.close().await;
}

pub(crate) async fn purging_ends_finished_login_state(t: Ctx) {
    let s = &*t.store;
    s.create_user(&user("usr_a", "a@example.test"))
        .await
        .unwrap();
    s.put_login_transaction(&txn("h1", None)).await.unwrap();
    s.create_login_session(&session("s1", "usr_a"))
        .await
        .unwrap();
    s.take_attempt("a", NOW, &RULE).await.unwrap();
    // Nothing has ended yet.
    s.purge_expired(NOW).await.unwrap();
    assert!(s.get_login_transaction("h1", NOW).await.unwrap().is_some());
    assert!(s.get_login_session("s1", NOW).await.unwrap().is_some());
    assert_eq!(
        s.take_attempt("a", NOW, &RULE).await.unwrap(),
        Attempt::Counted {
            failures: 2,
            delayed_until: NOW
        }
    );
    // Past every expiry, all three go.
    assert_eq!(s.purge_expired(NOW + 3600).await.unwrap(), 3);
}
