//! Webhooks, the event outbox with its transactions, and the audit log.

use super::*;

fn ids(events: Vec<store::OutboxEvent>) -> Vec<String> {
    events.into_iter().map(|e| e.id).collect()
}

pub(crate) async fn webhooks(t: Ctx) {
    let s = &*t.store;
    let mut all = Webhook {
        id: "whk_a".into(),
        url: "https://hooks.test/a".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        events: None,
        created_at: NOW,
        previous_secret: None,
        previous_secret_until: None,
    };
    let some = Webhook {
        id: "whk_b".into(),
        url: "https://hooks.test/b".into(),
        events: Some(strings(&["user.created", "token.revoked"])),
        ..all.clone()
    };
    s.upsert_webhook(&all).await.unwrap();
    s.upsert_webhook(&some).await.unwrap();
    assert_eq!(
        s.list_webhooks().await.unwrap(),
        vec![all.clone(), some.clone()]
    );

    all.url = "https://hooks.test/a2".into();
    all.events = Some(vec![]);
    s.upsert_webhook(&all).await.unwrap();
    assert_eq!(s.list_webhooks().await.unwrap(), vec![all, some.clone()]);
    // A secret is replaced only while it is still the one expected (sealing
    // at start races nothing: a changed or deleted webhook stays as it is).
    let plain = some.secret.clone();
    assert!(
        s.replace_webhook_secret("whk_b", &plain, "pcws1:sealed")
            .await
            .unwrap()
    );
    assert!(
        !s.replace_webhook_secret("whk_b", &plain, "pcws1:again")
            .await
            .unwrap()
    );
    assert!(
        !s.replace_webhook_secret("whk_x", &plain, "pcws1:none")
            .await
            .unwrap()
    );
    let some = Webhook {
        secret: "pcws1:sealed".into(),
        ..some
    };
    assert!(s.delete_webhook("whk_a").await.unwrap());
    assert!(!s.delete_webhook("whk_a").await.unwrap());
    assert_eq!(s.list_webhooks().await.unwrap(), vec![some]);
}

pub(crate) async fn outbox_claims_retries_and_delivery(t: Ctx) {
    let s = &*t.store;
    for (id, due) in [
        ("evt_3", NOW + 1),
        ("evt_1", NOW),
        ("evt_2", NOW),
        ("evt_4", NOW + 50),
    ] {
        s.enqueue_event(&event(id, due)).await.unwrap();
    }
    assert_eq!(
        ids(s.due_events(NOW - 1, NOW + 30, 10).await.unwrap()),
        Vec::<String>::new()
    );
    // Oldest first, at most `limit`; what one caller claimed, no other gets.
    let claimed = s.due_events(NOW + 1, NOW + 30, 2).await.unwrap();
    assert_eq!(
        claimed[0],
        store::OutboxEvent {
            id: "evt_1".into(),
            event: "user.created".into(),
            created_at: "2023-11-14T22:13:20Z".into(),
            data: r#"{"id":"usr_a"}"#.into(),
            attempts: 0,
            delivered_to: Vec::new(),
            only_to: None,
        }
    );
    assert_eq!(ids(claimed), ["evt_1", "evt_2"]);
    assert_eq!(
        ids(s.due_events(NOW + 1, NOW + 30, 10).await.unwrap()),
        ["evt_3"]
    );
    assert_eq!(
        ids(s.due_events(NOW + 2, NOW + 30, 10).await.unwrap()),
        Vec::<String>::new()
    );

    // evt_1 is delivered; evt_2 fails and is retried later; evt_3's claim
    // lapses, so it is claimed again (and lapses again).
    assert!(s.mark_delivered("evt_1", NOW + 2).await.unwrap());
    assert!(!s.mark_delivered("evt_1", NOW + 3).await.unwrap());
    let reached = vec!["hook-a".to_owned()];
    assert!(
        s.schedule_retry("evt_2", 1, NOW + 40, &reached, "hook-b: timed out")
            .await
            .unwrap()
    );
    assert!(
        !s.schedule_retry("evt_1", 1, NOW + 40, &[], "x")
            .await
            .unwrap()
    );
    assert!(
        !s.schedule_retry("evt_none", 1, NOW + 40, &[], "x")
            .await
            .unwrap()
    );
    assert_eq!(
        ids(s.due_events(NOW + 30, NOW + 60, 10).await.unwrap()),
        ["evt_3"]
    );
    let retried = s.due_events(NOW + 60, NOW + 90, 10).await.unwrap();
    assert_eq!(ids(retried.clone()), ["evt_2", "evt_3", "evt_4"]);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].delivered_to, reached);
    assert!(retried[1].delivered_to.is_empty());

    // Concurrent claimers never share an event, and between them claim all.
    for id in ["evt_2", "evt_3", "evt_4"] {
        assert!(s.mark_delivered(id, NOW + 60).await.unwrap());
    }
    for i in 0..20 {
        s.enqueue_event(&event(&format!("evt_c{i:02}"), NOW + 100))
            .await
            .unwrap();
    }
    let other = t.open_another().await;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 {
                t.store.clone()
            } else {
                other.clone()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.due_events(NOW + 100, NOW + 200, 3).await.unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(ids(task.await.unwrap()));
    }
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "an event was claimed twice");
    assert_eq!(seen.len(), 20);
    other.close().await;
}

/// Events whose attempts ran out are failed: never claimed, listed by
/// status newest first in pages, redelivered (to one receiver or all) only
/// while failed — of two redeliveries at once, one wins — and purged after
/// their own retention.
pub(crate) async fn failed_events_are_listed_redelivered_once_and_purged(t: Ctx) {
    let s = &*t.store;
    for (id, at) in [("evt_1", NOW), ("evt_2", NOW + 1), ("evt_3", NOW + 1)] {
        s.enqueue_event(&event(id, at)).await.unwrap();
    }
    let reached = strings(&["cfg_a"]);
    assert_eq!(
        ids(s.due_events(NOW + 1, NOW + 30, 10).await.unwrap()).len(),
        3
    );
    assert!(
        s.mark_failed("evt_1", 10, NOW + 2, &reached, Some("whk_b: timed out"))
            .await
            .unwrap()
    );
    assert!(
        s.mark_failed("evt_2", 10, NOW + 2, &[], Some("x"))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_failed("evt_1", 10, NOW + 3, &[], None)
            .await
            .unwrap()
    );
    assert!(s.mark_delivered("evt_3", NOW + 2).await.unwrap());
    assert!(!s.mark_failed("evt_3", 1, NOW + 3, &[], None).await.unwrap());
    // Failed events are never due again.
    assert!(
        s.due_events(NOW + 5000, NOW + 5030, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let listed = |status, after: Option<store::EventPosition>, limit| async move {
        s.list_events_page(status, after.as_ref(), limit)
            .await
            .unwrap()
    };
    let all = listed(None, None, 10).await;
    // Newest first: enqueued at NOW + 1 (by id, descending), then NOW.
    assert_eq!(
        all.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(),
        ["evt_3", "evt_2", "evt_1"]
    );
    let one = all.iter().find(|e| e.event.id == "evt_1").unwrap();
    assert_eq!(one.status(), store::EventStatus::Failed);
    assert_eq!(
        (one.failed_at, one.event.attempts, &one.event.delivered_to),
        (Some(NOW + 2), 10, &reached)
    );
    assert_eq!(one.last_error.as_deref(), Some("whk_b: timed out"));
    let failed = listed(Some(store::EventStatus::Failed), None, 1).await;
    assert_eq!(failed[0].event.id, "evt_2");
    let after = store::EventPosition {
        enqueued_at: failed[0].enqueued_at,
        id: failed[0].event.id.clone(),
    };
    let next = listed(Some(store::EventStatus::Failed), Some(after), 1).await;
    assert_eq!(next[0].event.id, "evt_1");
    assert_eq!(
        listed(Some(store::EventStatus::Delivered), None, 10).await[0]
            .event
            .id,
        "evt_3"
    );
    assert!(
        listed(Some(store::EventStatus::Pending), None, 10)
            .await
            .is_empty()
    );
    assert_eq!(s.get_event("evt_none").await.unwrap(), None);

    // Redelivery: only a failed event, once.
    let mut tx = s.begin().await.unwrap();
    assert!(!tx.redeliver_event("evt_3", NOW + 10, None).await.unwrap());
    assert!(
        !tx.redeliver_event("evt_none", NOW + 10, None)
            .await
            .unwrap()
    );
    assert!(
        tx.redeliver_event("evt_1", NOW + 10, Some("whk_b"))
            .await
            .unwrap()
    );
    assert!(!tx.redeliver_event("evt_1", NOW + 10, None).await.unwrap());
    tx.commit().await.unwrap();
    let other = t.open_another().await;
    let redeliver = |store: Arc<dyn Store>| async move {
        let mut tx = store.begin().await.unwrap();
        let won = tx.redeliver_event("evt_2", NOW + 10, None).await.unwrap();
        tx.commit().await.unwrap();
        won
    };
    let (won_a, won_b) = tokio::join!(
        tokio::spawn(redeliver(t.store.clone())),
        tokio::spawn(redeliver(other.clone()))
    );
    let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
    assert!(won_a ^ won_b, "exactly one redelivery wins");
    other.close().await;
    let again = s.get_event("evt_1").await.unwrap().unwrap();
    assert_eq!(again.status(), store::EventStatus::Pending);
    assert_eq!(
        (
            again.event.attempts,
            again.failed_at,
            again.last_error.as_deref()
        ),
        (0, None, None)
    );
    assert_eq!(again.event.only_to.as_deref(), Some("whk_b"));
    assert_eq!(again.event.delivered_to, reached, "what it reached stays");
    let due = s.due_events(NOW + 10, NOW + 40, 10).await.unwrap();
    assert_eq!(ids(due.clone()), ["evt_1", "evt_2"]);
    assert_eq!(due[0].only_to.as_deref(), Some("whk_b"));
    // Failed again after the redelivery: one receiver no longer restricts.
    assert!(
        s.mark_failed("evt_1", 0, NOW + 50, &reached, None)
            .await
            .unwrap()
    );
    let failed = s.get_event("evt_1").await.unwrap().unwrap();
    assert_eq!(failed.event.only_to, None);

    // Failed events go after their own retention, pending ones never.
    assert_eq!(s.purge_failed_events(NOW + 49).await.unwrap(), 0);
    assert_eq!(s.purge_failed_events(NOW + 50).await.unwrap(), 1);
    assert_eq!(s.get_event("evt_1").await.unwrap(), None);
    assert!(s.get_event("evt_2").await.unwrap().is_some());
}

/// A rotation keeps the replaced secret as the previous one (or none),
/// only while the secret is the one expected; deliveries are counted per
/// receiver, failures in a row reset by a success; a deleted webhook's
/// status goes with it.
pub(crate) async fn secret_rotation_and_delivery_status(t: Ctx) {
    let s = &*t.store;
    let hook = Webhook {
        id: "whk_a".into(),
        url: "https://hooks.test/a".into(),
        secret: "pcws1:first".into(),
        events: None,
        created_at: NOW,
        previous_secret: None,
        previous_secret_until: None,
    };
    s.upsert_webhook(&hook).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    assert!(
        !tx.rotate_webhook_secret("whk_a", "pcws1:other", "pcws1:second", Some(NOW + 60))
            .await
            .unwrap()
    );
    assert!(
        tx.rotate_webhook_secret("whk_a", "pcws1:first", "pcws1:second", Some(NOW + 60))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let got = s.get_webhook("whk_a").await.unwrap().unwrap();
    assert_eq!(
        (
            got.secret.as_str(),
            got.previous_secret.as_deref(),
            got.previous_secret_until
        ),
        ("pcws1:second", Some("pcws1:first"), Some(NOW + 60))
    );
    assert!(
        s.replace_webhook_previous_secret("whk_a", "pcws1:first", "pcws1:sealed")
            .await
            .unwrap()
    );
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.rotate_webhook_secret("whk_a", "pcws1:second", "pcws1:third", None)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let got = s.get_webhook("whk_a").await.unwrap().unwrap();
    assert_eq!(
        (
            got.secret.as_str(),
            got.previous_secret,
            got.previous_secret_until
        ),
        ("pcws1:third", None, None)
    );
    assert_eq!(s.get_webhook("whk_none").await.unwrap(), None);

    for (at, error) in [
        (1, Some("a: timed out")),
        (2, Some("a: answered 503")),
        (3, None),
    ] {
        s.record_webhook_delivery("whk_a", NOW + at, error)
            .await
            .unwrap();
    }
    s.record_webhook_delivery("cfg_b", NOW + 4, Some("b: refused"))
        .await
        .unwrap();
    s.record_webhook_delivery("cfg_b", NOW + 5, Some("b: timed out"))
        .await
        .unwrap();
    let status = s.list_webhook_status().await.unwrap();
    assert_eq!(
        status,
        vec![
            store::WebhookStatus {
                receiver: "cfg_b".into(),
                last_success_at: None,
                last_failure_at: Some(NOW + 5),
                last_error: Some("b: timed out".into()),
                consecutive_failures: 2,
            },
            store::WebhookStatus {
                receiver: "whk_a".into(),
                last_success_at: Some(NOW + 3),
                last_failure_at: Some(NOW + 2),
                last_error: Some("a: answered 503".into()),
                consecutive_failures: 0,
            },
        ]
    );
    assert!(s.delete_webhook("whk_a").await.unwrap());
    let status = s.list_webhook_status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].receiver, "cfg_b");
}

pub(crate) async fn events_commit_or_roll_back_with_their_change(t: Ctx) {
    let s = &*t.store;
    // Dropped without commit: neither the user nor its event nor the audit entry.
    let mut tx = s.begin().await.unwrap();
    tx.create_user(&user("usr_a", "a@example.test"))
        .await
        .unwrap();
    tx.enqueue_event(&event("evt_a", NOW)).await.unwrap();
    tx.insert_audit(&audit("aud_a", NOW)).await.unwrap();
    drop(tx);
    assert_eq!(s.get_user("usr_a").await.unwrap(), None);
    assert!(s.due_events(NOW, NOW + 30, 10).await.unwrap().is_empty());
    assert!(s.list_audit(10).await.unwrap().is_empty());

    // Committed: all three, at once.
    let mut tx = s.begin().await.unwrap();
    tx.create_user(&user("usr_a", "a@example.test"))
        .await
        .unwrap();
    tx.create_organization(&org("org_a")).await.unwrap();
    tx.add_membership(&member("org_a", "usr_a")).await.unwrap();
    tx.enqueue_event(&event("evt_a", NOW)).await.unwrap();
    tx.insert_audit(&audit("aud_a", NOW)).await.unwrap();
    assert_eq!(
        s.get_user("usr_a").await.unwrap(),
        None,
        "visible before commit"
    );
    tx.commit().await.unwrap();
    assert!(s.get_user("usr_a").await.unwrap().is_some());
    assert_eq!(s.list_memberships_of_org("org_a").await.unwrap().len(), 1);
    assert_eq!(s.due_events(NOW, NOW + 30, 10).await.unwrap().len(), 1);
    assert_eq!(s.list_audit(10).await.unwrap(), vec![audit("aud_a", NOW)]);

    // A failing write leaves the transaction to be dropped: nothing of it lands.
    let mut tx = s.begin().await.unwrap();
    tx.enqueue_event(&event("evt_b", NOW)).await.unwrap();
    let err = tx
        .create_user(&user("usr_b", "A@example.test"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");
    drop(tx);
    let due = ids(s.due_events(NOW + 100, NOW + 130, 10).await.unwrap());
    assert_eq!(due, ["evt_a"], "only the committed event, its claim lapsed");

    // Every reported write is available in a transaction.
    let mut tx = s.begin().await.unwrap();
    tx.create_client(&client("cli_a")).await.unwrap();
    tx.upsert_client(&client("cli_a")).await.unwrap();
    tx.upsert_api_resource(&ApiResource {
        identifier: "https://api.test".into(),
        scopes: vec![],
    })
    .await
    .unwrap();
    tx.create_role(&Role {
        name: "admin".into(),
        grants: BTreeMap::new(),
        created_at: NOW,
    })
    .await
    .unwrap();
    tx.upsert_webhook(&Webhook {
        id: "whk_a".into(),
        url: "https://hooks.test".into(),
        secret: "whsec_x".into(),
        events: None,
        created_at: NOW,
        previous_secret: None,
        previous_secret_until: None,
    })
    .await
    .unwrap();
    tx.update_user(&user("usr_a", "a2@example.test"))
        .await
        .unwrap();
    tx.record_revocation(&fact("jti", "jti-a", NOW, NOW + 60))
        .await
        .unwrap();
    tx.insert_signing_key(&key("k1", NOW, None)).await.unwrap();
    assert!(
        tx.update_signing_key_times("k1", Some(NOW + 1), None)
            .await
            .unwrap()
    );
    assert!(!tx.revoke_family("fam_none", NOW).await.unwrap());
    assert_eq!(tx.revoke_families_of_user("usr_a", NOW).await.unwrap(), 0);
    assert_eq!(tx.revoke_families_of_client("cli_a", NOW).await.unwrap(), 0);
    assert!(tx.remove_membership("org_a", "usr_a").await.unwrap());
    assert!(tx.delete_webhook("whk_a").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.get_client("cli_a").await.unwrap().is_some());
    assert!(s.get_role("admin").await.unwrap().is_some());
    assert!(jti_revoked(s, "jti-a").await);
    assert!(s.list_webhooks().await.unwrap().is_empty());
    assert!(s.list_memberships_of_org("org_a").await.unwrap().is_empty());

    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_user("usr_a").await.unwrap());
    assert!(tx.delete_client("cli_a").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.get_user("usr_a").await.unwrap(), None);
}

pub(crate) async fn audit_log_lists_newest_first(t: Ctx) {
    let s = &*t.store;
    assert!(s.list_audit(10).await.unwrap().is_empty());
    s.insert_audit(&audit("aud_1", NOW)).await.unwrap();
    s.insert_audit(&audit("aud_3", NOW + 5)).await.unwrap();
    // Same second as aud_3 but later: insertion order breaks the tie.
    let mut later = audit("aud_2", NOW + 5);
    later.target = None;
    later.actor = "usr_a".into();
    later.action = "token.reuse_detected".into();
    s.insert_audit(&later).await.unwrap();
    assert_eq!(
        s.list_audit(2).await.unwrap(),
        vec![later.clone(), audit("aud_3", NOW + 5)]
    );
    let all: Vec<_> = s
        .list_audit(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(all, ["aud_2", "aud_3", "aud_1"]);
}
