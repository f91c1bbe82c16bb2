//! Users after creation, member removal and stored webhooks: each change's
//! event and audit entry, a password change revoking refresh families, a
//! deletion cascading, and secrets kept out of every record but the webhook's.

use super::*;
use crate::issuer::manage::views::{user_json, webhook_entry_json};
use crate::issuer::store::RefreshFamily;

const PASSWORD: &str = "correct horse";

async fn ann(db: &dyn Store) -> crate::issuer::store::User {
    let new = NewUser {
        email: "ann@example.test".into(),
        password: PASSWORD.into(),
        name: "Ann".into(),
    };
    create_user(db, &no_hooks(), cli(), new).await.unwrap()
}

/// A live refresh family of `user_id` for a new client; its id.
async fn family(db: &dyn Store, user_id: &str) -> String {
    let client = create_client(db, cli(), m2m(&["read"])).await.unwrap();
    let id = crate::issuer::store::new_id("fam");
    db.create_family(&RefreshFamily {
        id: id.clone(),
        client_id: client.client.client_id,
        user_id: user_id.to_owned(),
        org_id: None,
        scope: "read".into(),
        resource: None,
        auth_time: NOW,
        generation: 0,
        current_hash: format!("hash-{id}"),
        previous_hash: None,
        rotated_at: None,
        created_at: NOW,
        absolute_expires_at: NOW + 86_400,
        idle_expires_at: None,
        revoked_at: None,
    })
    .await
    .unwrap();
    id
}

async fn family_state(db: &dyn Store, id: &str) -> Option<RefreshFamily> {
    db.find_family_by_token_hash(&format!("hash-{id}"))
        .await
        .unwrap()
        .map(|m| m.family)
}

/// The outbox's events named `name`, as JSON data.
async fn data_of(db: &dyn Store, name: &str) -> Vec<serde_json::Value> {
    events(db)
        .await
        .into_iter()
        .filter(|e| e.event == name)
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

#[tokio::test]
async fn an_update_changes_only_what_it_names_and_a_password_revokes_refresh() {
    let store = db().await;
    let db = store.as_ref();
    let ann = ann(db).await;
    let fam = family(db, &ann.id).await;
    let later = Actor {
        name: "ops",
        now: NOW + 60,
    };
    let changes = UserChanges {
        name: Some("Ann Smith".into()),
        picture: Some(Some("https://img.example.test/ann.png".into())),
        email_verified: Some(true),
        ..UserChanges::default()
    };
    let user = update_user(db, later, &ann.id, changes).await.unwrap();
    assert_eq!(user.name.as_deref(), Some("Ann Smith"));
    assert_eq!(user.email.as_deref(), Some("ann@example.test"));
    assert!(user.email_verified && user.updated_at == NOW + 60 && user.created_at == NOW);
    assert_eq!(user.password_hash, ann.password_hash);
    assert!(family_state(db, &fam).await.unwrap().revoked_at.is_none());

    // A new address is unverified again; a new password revokes the families.
    let changes = UserChanges {
        email: Some("ann.smith@example.test".into()),
        password: Some("a much better password".into()),
        ..UserChanges::default()
    };
    let user = update_user(db, later, &ann.id, changes).await.unwrap();
    assert!(!user.email_verified);
    let stored = db.get_user(&ann.id).await.unwrap().unwrap();
    let hash = stored.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify_secret("a much better password".into(), hash.clone()).await);
    assert!(!verify_secret(PASSWORD.into(), hash).await);
    assert_eq!(
        family_state(db, &fam).await.unwrap().revoked_at,
        Some(NOW + 60)
    );

    let updates = data_of(db, "user.updated").await;
    assert_eq!(updates.len(), 2);
    let last = updates
        .iter()
        .find(|d| d["changed"] == json!(["email", "password"]))
        .unwrap();
    assert_eq!(last["id"], ann.id.as_str());
    assert_eq!(last["email"], "ann.smith@example.test");
    assert!(!last.to_string().contains("argon2") && !last.to_string().contains("better"));
    let audit = db.list_audit(1).await.unwrap().remove(0);
    assert_eq!(
        (audit.action.as_str(), audit.actor.as_str()),
        ("user.updated", "ops")
    );
    assert!(
        audit.detail.contains("\"revoked_refresh_families\":1"),
        "{}",
        audit.detail
    );
    assert!(!audit.detail.contains("argon2") && !audit.detail.contains("better"));
    assert!(user_json(&user).get("password_hash").is_none());
}

#[tokio::test]
async fn bad_updates_are_refused_and_change_nothing() {
    let store = db().await;
    let db = store.as_ref();
    let ann = ann(db).await;
    let other = NewUser {
        email: "bo@example.test".into(),
        password: PASSWORD.into(),
        name: "Bo".into(),
    };
    create_user(db, &no_hooks(), cli(), other).await.unwrap();
    let refused = |changes: UserChanges| update_user(db, cli(), &ann.id, changes);
    let err = refused(UserChanges::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ManageError::Invalid {
                field: "changes",
                ..
            }
        ),
        "{err}"
    );
    let taken = UserChanges {
        email: Some("BO@example.test".into()),
        ..UserChanges::default()
    };
    assert!(matches!(refused(taken).await, Err(ManageError::Exists(_))));
    for (field, changes) in [
        (
            "password",
            UserChanges {
                password: Some("short".into()),
                ..UserChanges::default()
            },
        ),
        (
            "email",
            UserChanges {
                email: Some("nope".into()),
                ..UserChanges::default()
            },
        ),
        (
            "name",
            UserChanges {
                name: Some(" ".into()),
                ..UserChanges::default()
            },
        ),
        (
            "picture",
            UserChanges {
                picture: Some(Some("ftp://x.test/p".into())),
                ..UserChanges::default()
            },
        ),
    ] {
        let err = refused(changes).await.unwrap_err();
        assert!(
            matches!(err, ManageError::Invalid { field: f, .. } if f == field),
            "{err}"
        );
    }
    // The same address in another case is no change of address.
    let case = UserChanges {
        email: Some("ANN@example.test".into()),
        email_verified: None,
        ..UserChanges::default()
    };
    update_user(db, cli(), &ann.id, case).await.unwrap();
    let unknown = update_user(
        db,
        cli(),
        "usr_nope",
        UserChanges {
            name: Some("X".into()),
            ..UserChanges::default()
        },
    )
    .await;
    assert!(matches!(unknown, Err(ManageError::UnknownUser(_))));
    assert_eq!(data_of(db, "user.updated").await.len(), 1);
}

#[tokio::test]
async fn a_deleted_user_takes_memberships_and_families_along() {
    let store = db().await;
    let db = store.as_ref();
    let ann = ann(db).await;
    let org = create_organization(db, cli(), "Acme").await.unwrap();
    create_role(db, cli(), "viewer", API, vec!["read".into()])
        .await
        .unwrap();
    add_member(db, cli(), &org.id, &ann.id, vec!["viewer".into()])
        .await
        .unwrap();
    let fam = family(db, &ann.id).await;

    let gone = delete_user(db, cli(), &ann.id).await.unwrap();
    assert_eq!(gone.id, ann.id);
    assert!(db.get_user(&ann.id).await.unwrap().is_none());
    assert!(family_state(db, &fam).await.is_none());
    assert!(list_members(db, &org.id).await.unwrap().is_empty());
    let deleted = data_of(db, "user.deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["id"], ann.id.as_str());
    assert_eq!(deleted[0]["email"], "ann@example.test");
    assert!(!deleted[0].to_string().contains("argon2"));
    assert_eq!(db.list_audit(1).await.unwrap()[0].action, "user.deleted");
    assert!(matches!(
        delete_user(db, cli(), &ann.id).await,
        Err(ManageError::UnknownUser(_))
    ));
    assert!(matches!(
        get_user(db, &ann.id).await,
        Err(ManageError::UnknownUser(_))
    ));
}

#[tokio::test]
async fn removing_a_member_emits_membership_deleted() {
    let store = db().await;
    let db = store.as_ref();
    let ann = ann(db).await;
    let org = create_organization(db, cli(), "Acme").await.unwrap();
    create_role(db, cli(), "viewer", API, vec!["read".into()])
        .await
        .unwrap();
    add_member(db, cli(), &org.id, &ann.id, vec!["viewer".into()])
        .await
        .unwrap();
    assert_eq!(list_members(db, &org.id).await.unwrap().len(), 1);
    assert_eq!(list_organizations(db).await.unwrap().len(), 1);
    assert_eq!(list_roles(db).await.unwrap()[0].name, "viewer");

    let m = remove_member(db, cli(), &org.id, &ann.id).await.unwrap();
    assert_eq!(m.roles, ["viewer"]);
    assert!(list_members(db, &org.id).await.unwrap().is_empty());
    let data = data_of(db, "membership.deleted").await;
    assert_eq!(
        data,
        [json!({ "org_id": org.id, "user_id": ann.id, "roles": ["viewer"] })]
    );
    let again = remove_member(db, cli(), &org.id, &ann.id).await;
    assert!(matches!(again, Err(ManageError::NotMember { .. })));
    let no_org = remove_member(db, cli(), "org_nope", &ann.id).await;
    assert!(matches!(no_org, Err(ManageError::UnknownOrganization(_))));
    assert!(matches!(
        list_members(db, "org_nope").await,
        Err(ManageError::UnknownOrganization(_))
    ));
}

/// The address policy for development: receivers on private addresses too.
fn dev() -> crate::config::WebhookAddressPolicy {
    crate::config::WebhookAddressPolicy {
        allow_private: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn webhooks_are_created_listed_and_deleted_without_leaking_secrets() {
    let store = db().await;
    let db = store.as_ref();
    let new = NewWebhook {
        url: "https://hooks.example.test/in".into(),
        events: Some(vec!["user.created".into(), "user.deleted".into()]),
        secret: None,
    };
    let hook = create_webhook(db, cli(), &[], new.clone(), None, &dev())
        .await
        .unwrap();
    assert!(hook.id.starts_with("whk_") && hook.secret.starts_with("whsec_"));
    let again = create_webhook(db, cli(), &[], new.clone(), None, &dev()).await;
    assert!(matches!(again, Err(ManageError::Exists(_))));
    let given = NewWebhook {
        url: "http://127.0.0.1:9/hook".into(),
        events: None,
        secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
    };
    let second = create_webhook(db, cli(), &[], given, None, &dev())
        .await
        .unwrap();
    assert_eq!(second.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let listed = list_webhooks(db, &[], NOW).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(webhook_entry_json(&listed[0]).get("secret").is_none());

    let bad_secret = NewWebhook {
        url: "https://other.example.test/".into(),
        secret: Some("whsec_!!!".into()),
        ..new.clone()
    };
    let err = create_webhook(db, cli(), &[], bad_secret, None, &dev())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ManageError::Invalid {
            field: "secret",
            ..
        }
    ));
    assert!(!err.to_string().contains("!!!"), "{err}");
    let bad_event = NewWebhook {
        url: "https://other.example.test/".into(),
        events: Some(vec!["user.exploded".into()]),
        ..new.clone()
    };
    let err = create_webhook(db, cli(), &[], bad_event, None, &dev())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ManageError::Invalid {
            field: "events",
            ..
        }
    ));
    let bad_url = NewWebhook {
        url: "hooks.example.test/in".into(),
        ..new
    };
    let err = create_webhook(db, cli(), &[], bad_url, None, &dev())
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Invalid { field: "url", .. }));

    delete_webhook(db, cli(), &[], &hook.id).await.unwrap();
    assert_eq!(list_webhooks(db, &[], NOW).await.unwrap().len(), 1);
    assert!(matches!(
        delete_webhook(db, cli(), &[], &hook.id).await,
        Err(ManageError::UnknownWebhook(_))
    ));
    let audit = db.list_audit(10).await.unwrap();
    let created = audit
        .iter()
        .filter(|a| a.action == "webhook.created")
        .count();
    assert_eq!(created, 2);
    assert_eq!(audit[0].action, "webhook.deleted");
    assert!(audit.iter().all(|a| !a.detail.contains("whsec_")));
}

#[tokio::test]
async fn webhook_secrets_are_stored_sealed_under_the_master_key() {
    use crate::issuer::signing::MasterKey;
    use crate::issuer::signing::seal::open_secret;
    let store = db().await;
    let db = store.as_ref();
    let master = MasterKey::derive("correct horse battery staple").unwrap();
    let new = NewWebhook {
        url: "https://hooks.example.test/sealed".into(),
        events: None,
        secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
    };
    let hook = create_webhook(db, cli(), &[], new, Some(&master), &dev())
        .await
        .unwrap();
    // The caller gets the secret in the clear, once; the store, sealed.
    assert_eq!(hook.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let stored = db.list_webhooks().await.unwrap().remove(0);
    assert!(stored.secret.starts_with("pcws1:"), "{}", stored.secret);
    assert!(!stored.secret.contains("MfKQ9r8"));
    let context = webhook_secret_context(&hook.id);
    let opened = open_secret(Some(&master), &context, &stored.secret, "w").unwrap();
    assert_eq!(opened, hook.secret);
}

#[tokio::test]
async fn obviously_private_webhook_urls_are_refused_at_creation() {
    let store = db().await;
    let db = store.as_ref();
    let closed = crate::config::WebhookAddressPolicy::default();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://localhost:8080/",
        "https://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/",
    ] {
        let new = NewWebhook {
            url: url.into(),
            events: None,
            secret: None,
        };
        let err = create_webhook(db, cli(), &[], new, None, &closed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ManageError::Invalid { field: "url", reason } if reason.contains("webhook_address_policy")),
            "{url}: {err}"
        );
    }
    assert!(list_webhooks(db, &[], NOW).await.unwrap().is_empty());
    // A name is checked at delivery, once resolved.
    let named = NewWebhook {
        url: "https://hooks.example.test/in".into(),
        events: None,
        secret: None,
    };
    create_webhook(db, cli(), &[], named, None, &closed)
        .await
        .unwrap();
}
