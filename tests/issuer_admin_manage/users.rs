//! Users, organizations, roles and members through the admin API.

use super::*;

const OLD: &str = "first password 0123";
const NEW: &str = "second password 4567";

#[tokio::test]
async fn users_are_listed_shown_and_updated_and_a_new_password_ends_old_sessions() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let (id, org) = member(gw, &t, "ada@example.test", OLD).await;
    let path = format!("/admin/v1/users/{id}");

    let list = ok(gw, &t, "GET", "/admin/v1/users", None).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["email"], "ada@example.test");
    assert_eq!(listed["email_verified"], false);
    assert!(!list.to_string().contains("argon2") && !list.to_string().contains("password"));
    let shown = ok(gw, &t, "GET", &path, None).await;
    assert_eq!(shown["name"], "Ada");
    assert_eq!(shown["memberships"][0]["org_id"], org.as_str());
    assert!(!shown.to_string().contains("argon2"));

    let changes = json!({
        "name": "Ada Lovelace",
        "picture": "https://pics.example.test/ada.png",
        "email_verified": true,
    });
    let updated = ok(gw, &t, "PATCH", &path, Some(changes)).await;
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(updated["picture"], "https://pics.example.test/ada.png");
    assert_eq!(updated["email_verified"], true);
    assert_eq!(updated["email"], "ada@example.test");
    let cleared = ok(gw, &t, "PATCH", &path, Some(json!({ "picture": null }))).await;
    assert_eq!(cleared["picture"], Value::Null);
    assert_eq!(cleared["name"], "Ada Lovelace");

    // A session from the old password, rotated once.
    let first = refresh_token_of(gw, "ada@example.test", OLD).await;
    let (status, rotated) = refresh(gw, &first).await;
    assert_eq!(status, 200, "{rotated}");

    // And a browser session from the old password, which skips the form.
    let (_, _, session) = login_session(gw, "ada@example.test", OLD).await;
    let session = session.expect("a session cookie");
    let goes_to = |session: String| async move {
        let (status, headers, _) = request(&gw.url(&authorize_query()), Some(&session), None).await;
        assert_eq!(status, 302);
        headers["location"].to_str().unwrap().to_owned()
    };
    assert!(goes_to(session.clone()).await.starts_with(CALLBACK));

    let updated = ok(gw, &t, "PATCH", &path, Some(json!({ "password": NEW }))).await;
    assert!(
        goes_to(session).await.starts_with("/login"),
        "the new password ended the session"
    );
    assert!(!updated.to_string().contains(NEW));
    assert_eq!(
        refresh(gw, &rotated).await,
        (400, "invalid_grant".to_owned())
    );
    let (status, code) = login(gw, "ada@example.test", OLD).await;
    assert_eq!((status.as_u16(), code), (401, None));
    let fresh = refresh_token_of(gw, "ada@example.test", NEW).await;
    assert_eq!(refresh(gw, &fresh).await.0, 200);

    let entries = audit(gw, &t).await;
    let updates: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "user.updated")
        .collect();
    assert_eq!(updates.len(), 3, "{entries:?}");
    assert!(
        updates
            .iter()
            .all(|e| e["actor"] == "ops" && e["target"] == id.as_str())
    );
    assert_eq!(updates[0]["detail"]["changed"], json!(["password"]));
    assert_eq!(updates[0]["detail"]["revoked_refresh_families"], 1);
    assert_eq!(updates[0]["detail"]["ended_sessions"], 2);
    let text = Value::Array(entries).to_string();
    assert!(!text.contains(NEW) && !text.contains("argon2"));
    env.gw.shutdown().await;
}

#[tokio::test]
async fn a_deleted_user_can_neither_log_in_nor_refresh() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let (id, org) = member(gw, &t, "bo@example.test", OLD).await;
    let refresh_token = refresh_token_of(gw, "bo@example.test", OLD).await;
    let path = format!("/admin/v1/users/{id}");

    let deleted = ok(gw, &t, "DELETE", &path, None).await;
    assert_eq!(deleted, json!({ "id": id, "deleted": true }));
    assert_eq!(
        refresh(gw, &refresh_token).await,
        (400, "invalid_grant".to_owned())
    );
    assert_eq!(
        login(gw, "bo@example.test", OLD).await,
        (StatusCode::UNAUTHORIZED, None)
    );
    let members = ok(
        gw,
        &t,
        "GET",
        &format!("/admin/v1/organizations/{org}/members"),
        None,
    )
    .await;
    assert_eq!(members, json!([]));
    for method in ["GET", "PATCH", "DELETE"] {
        let body = (method == "PATCH").then(|| json!({ "name": "Ghost" }));
        let (status, _, json) = call(gw, method, &path, Some(&t), body).await;
        assert_eq!(status, 404, "{method}: {json}");
        assert_eq!(json["error"], "not_found");
    }
    let entries = audit(gw, &t).await;
    let entry = entries
        .iter()
        .find(|e| e["action"] == "user.deleted")
        .unwrap();
    assert_eq!(
        (&entry["actor"], &entry["target"]),
        (&json!("ops"), &json!(id))
    );
    env.gw.shutdown().await;
}

#[tokio::test]
async fn organizations_roles_and_members_are_listed_and_members_removed() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let (id, org) = member(gw, &t, "cy@example.test", OLD).await;

    let orgs = ok(gw, &t, "GET", "/admin/v1/organizations", None).await;
    assert_eq!(orgs[0]["id"], org.as_str());
    assert_eq!(orgs[0]["name"], "Acme");
    let roles = ok(gw, &t, "GET", "/admin/v1/roles", None).await;
    assert_eq!(roles[0]["name"], "reader-cy@example.test");
    assert_eq!(roles[0]["grants"][API], json!(["read:data"]));
    let members_path = format!("/admin/v1/organizations/{org}/members");
    let members = ok(gw, &t, "GET", &members_path, None).await;
    assert_eq!(members[0]["user_id"], id.as_str());
    assert_eq!(members[0]["roles"], json!(["reader-cy@example.test"]));

    let path = format!("{members_path}/{id}");
    let removed = ok(gw, &t, "DELETE", &path, None).await;
    assert_eq!(
        removed,
        json!({ "org_id": org, "user_id": id, "deleted": true })
    );
    assert_eq!(ok(gw, &t, "GET", &members_path, None).await, json!([]));
    let (status, _, body) = call(gw, "DELETE", &path, Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (404, &json!("not_found"))
    );
    let (status, _, _) = call(
        gw,
        "GET",
        "/admin/v1/organizations/org_nope/members",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        gw,
        "DELETE",
        &format!("/admin/v1/organizations/org_nope/members/{id}"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let entries = audit(gw, &t).await;
    let entry = entries
        .iter()
        .find(|e| e["action"] == "membership.deleted")
        .unwrap();
    assert_eq!(entry["target"], format!("{org}/{id}"));
    assert_eq!(entry["actor"], "ops");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn bad_user_changes_and_callers_are_refused() {
    let env = env().await;
    let gw = &env.gw;
    let t = admin_token(gw).await;
    let (id, _) = member(gw, &t, "di@example.test", OLD).await;
    member(gw, &t, "eve@example.test", OLD).await;
    let path = format!("/admin/v1/users/{id}");

    for body in [
        json!({}),
        json!({ "password": "short" }),
        json!({ "email": "not-an-email" }),
        json!({ "picture": "javascript:alert(1)" }),
        json!({ "password_hash": "$argon2id$x" }),
        json!({ "email_verified": "yes" }),
    ] {
        let (status, _, json) = call(gw, "PATCH", &path, Some(&t), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"], "invalid_request");
    }
    let (status, _, json) = call(
        gw,
        "PATCH",
        &path,
        Some(&t),
        Some(json!({ "email": "EVE@example.test" })),
    )
    .await;
    assert_eq!((status.as_u16(), &json["error"]), (409, &json!("conflict")));

    let (status, headers, _) = call(gw, "PUT", &path, Some(&t), None).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, PATCH, DELETE");
    let (status, headers, _) = call(
        gw,
        "POST",
        "/admin/v1/organizations/o/members/u",
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), headers["allow"].to_str().unwrap()),
        (405, "DELETE")
    );
    let (_, headers, _) = call(gw, "DELETE", "/admin/v1/organizations", Some(&t), None).await;
    assert_eq!(headers["allow"], "GET, POST");

    let reader = client_token(gw, READER, API).await;
    for (method, path) in [
        ("GET", "/admin/v1/users"),
        ("GET", path.as_str()),
        ("DELETE", path.as_str()),
        ("GET", "/admin/v1/roles"),
        ("GET", "/admin/v1/webhooks"),
    ] {
        let (status, headers, json) = call(gw, method, path, None, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(headers["www-authenticate"], r#"Bearer realm="portcullis""#);
        assert_eq!(json["error"], "invalid_token");
        // A token for another API is no token for the admin API.
        let (status, _, json) = call(gw, method, path, Some(&reader), None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(json["error"], "invalid_token");
    }
    // Nothing changed.
    assert_eq!(ok(gw, &t, "GET", &path, None).await["name"], "Ada");
    env.gw.shutdown().await;
}
