//! Webhooks through the admin API, and the events the new changes emit.

use super::*;

/// Polls until `receiver` has seen `n` events (the deliverer polls each second).
async fn wait_for(receiver: &Receiver, n: usize) {
    eventually(&format!("{n} webhook deliveries"), || {
        let got = receiver.got.lock().unwrap().len();
        async move { got >= n }
    })
    .await;
}

#[tokio::test]
async fn a_created_webhook_receives_the_events_of_updates_and_deletions() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let receiver = Receiver::start().await;
    let events = ["user.updated", "user.deleted", "membership.deleted"];
    let body = json!({ "url": receiver.url, "events": events });
    let (status, _, hook) = call(gw, "POST", "/admin/v1/webhooks", Some(&t), Some(body)).await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("whk_") && secret.starts_with("whsec_"),
        "{hook}"
    );
    assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
    assert_eq!(hook["url"], receiver.url.as_str());
    assert_eq!(hook["events"], json!(events));

    // Another, with its own secret and every event; the list shows no secret.
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let other = Receiver::start().await;
    let body = json!({ "url": other.url, "secret": given });
    let made = ok(gw, &t, "POST", "/admin/v1/webhooks", Some(body)).await;
    assert_eq!(
        (&made["secret"], &made["events"]),
        (&json!(given), &Value::Null)
    );
    let list = ok(gw, &t, "GET", "/admin/v1/webhooks", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("whsec_"), "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|w| w.get("secret").is_none())
    );

    let (user, org) = member(gw, &t, "fay@example.test", "fay's password 123").await;
    ok(
        gw,
        &t,
        "PATCH",
        &format!("/admin/v1/users/{user}"),
        Some(json!({ "name": "Fay" })),
    )
    .await;
    ok(
        gw,
        &t,
        "DELETE",
        &format!("/admin/v1/organizations/{org}/members/{user}"),
        None,
    )
    .await;
    ok(gw, &t, "DELETE", &format!("/admin/v1/users/{user}"), None).await;

    wait_for(&receiver, 3).await;
    let got = receiver.events(&secret);
    let named = |name: &str| {
        got.iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("{name} in {got:?}"))
    };
    let updated = named("user.updated");
    assert_eq!(updated["data"]["id"], user.as_str());
    assert_eq!(updated["data"]["name"], "Fay");
    assert_eq!(updated["data"]["changed"], json!(["name"]));
    assert!(updated["id"].as_str().unwrap().starts_with("evt_"));
    let removed = named("membership.deleted");
    assert_eq!(removed["data"]["org_id"], org.as_str());
    assert_eq!(removed["data"]["user_id"], user.as_str());
    let deleted = named("user.deleted");
    assert_eq!(deleted["data"]["email"], "fay@example.test");
    assert!(
        got.iter().all(|e| e["event"] != "user.created"),
        "filtered out"
    );
    assert!(!Value::Array(got.clone()).to_string().contains("argon2"));
    // The webhook for every event got them too, and the creations before:
    // user, organization and membership created, and the three above.
    wait_for(&other, 6).await;
    let all = other.events(given);
    let created = all
        .iter()
        .find(|e| e["event"] == "user.created")
        .expect("user.created delivered");
    // The user events carry the same profile fields.
    for field in ["id", "email", "name", "picture", "email_verified"] {
        assert!(created["data"].get(field).is_some(), "{field}: {created}");
    }
    assert_eq!(created["data"]["email_verified"], false, "{created}");

    let path = format!("/admin/v1/webhooks/{id}");
    assert_eq!(
        ok(gw, &t, "DELETE", &path, None).await,
        json!({ "id": id, "deleted": true })
    );
    let (status, _, body) = call(gw, "DELETE", &path, Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (404, &json!("not_found"))
    );
    assert_eq!(
        ok(gw, &t, "GET", "/admin/v1/webhooks", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let entries = audit(gw, &t).await;
    for action in [
        "webhook.created",
        "webhook.deleted",
        "user.updated",
        "user.deleted",
        "membership.deleted",
    ] {
        let entry = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action}"));
        assert_eq!(entry["actor"], "ops");
    }
    assert!(!Value::Array(entries).to_string().contains("whsec_"));
    env.gw.shutdown().await;
}

#[tokio::test]
async fn bad_webhooks_are_refused() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let url = "https://hooks.example.test/in";
    ok(
        gw,
        &t,
        "POST",
        "/admin/v1/webhooks",
        Some(json!({ "url": url })),
    )
    .await;

    let secret = "whsec_not base64!";
    for (body, status, field) in [
        (json!({ "url": url }), 409, "url"),
        (json!({ "url": "ftp://hooks.example.test/in" }), 400, "url"),
        (json!({ "url": "/relative/hook" }), 400, "url"),
        (
            json!({ "url": "https://hooks.example.test/x#frag" }),
            400,
            "url",
        ),
        (
            json!({ "url": "https://h.test/1", "events": ["user.exploded"] }),
            400,
            "user.exploded",
        ),
        (
            json!({ "url": "https://h.test/2", "events": [] }),
            400,
            "events",
        ),
        (
            json!({ "url": "https://h.test/3", "secret": secret }),
            400,
            "secret",
        ),
        (
            json!({ "url": "https://h.test/4", "secret": "no-prefix" }),
            400,
            "secret",
        ),
        (json!({ "events": ["user.created"] }), 400, "shape"),
    ] {
        let (got, _, json) = call(
            gw,
            "POST",
            "/admin/v1/webhooks",
            Some(&t),
            Some(body.clone()),
        )
        .await;
        assert_eq!(got.as_u16(), status, "{body}: {json}");
        let description = json["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body}: {description}");
        assert!(!description.contains("not base64") && !description.contains("no-prefix"));
    }
    let (status, headers, _) = call(gw, "PATCH", "/admin/v1/webhooks/whk_x", Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), headers["allow"].to_str().unwrap()),
        (405, "GET, DELETE")
    );
    let (status, _, _) = call(gw, "DELETE", "/admin/v1/webhooks/whk_nope", Some(&t), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        gw,
        "POST",
        "/admin/v1/webhooks",
        None,
        Some(json!({ "url": url })),
    )
    .await;
    assert_eq!(status, 401);
    env.gw.shutdown().await;
}
