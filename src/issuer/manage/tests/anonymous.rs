//! The anonymous grant's client rules, the promotion of anonymous users and
//! anonymization, at the service layer: what each changes, refuses, audits
//! and reports, on an in-memory SQLite store.

use super::*;
use crate::issuer::store::{Membership, Organization, User};

const PASSWORD: &str = "correct horse";

/// An anonymous user, as the anonymous grant stores them.
async fn anonymous(db: &dyn Store) -> User {
    let user = User {
        id: new_id("usr"),
        email: None,
        name: None,
        picture: None,
        email_verified: false,
        password_hash: None,
        created_at: NOW,
        updated_at: NOW,
        anonymous: true,
        anonymized_at: None,
    };
    db.create_user(&user).await.unwrap();
    user
}

fn promotion(email: &str) -> Promotion {
    Promotion {
        email: email.into(),
        password: PASSWORD.into(),
        name: Some("Pat".into()),
    }
}

fn app(grants: &[GrantType], public: bool) -> NewClient {
    NewClient {
        grant_types: grants.to_vec(),
        public,
        ..m2m(&["read"])
    }
}

#[tokio::test]
async fn the_anonymous_grant_is_for_public_clients_with_refresh_tokens() {
    let store = db().await;
    let db = store.as_ref();
    let (anon, refresh) = (GrantType::Anonymous, GrantType::RefreshToken);
    let made = create_client(db, cli(), app(&[anon, refresh], true))
        .await
        .unwrap();
    assert_eq!(made.client.grant_types, ["anonymous", "refresh_token"]);
    for (new, needle) in [
        (app(&[anon, refresh], false), "public clients"),
        (app(&[anon], true), "needs refresh_token"),
    ] {
        let err = create_client(db, cli(), new).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert!(err.is_caller_fault());
    }
    // Never the admin API's scope.
    let admin = crate::issuer::reserved::admin_resource("https://id.test");
    db.upsert_api_resource(&admin).await.unwrap();
    let scopes = ScopeMap::from([(admin.identifier.clone(), vec![ADMIN_SCOPE.to_owned()])]);
    let new = NewClient {
        scopes,
        ..app(&[anon, refresh], true)
    };
    let err = create_client(db, cli(), new).await.unwrap_err();
    assert!(err.to_string().contains("admin API scopes"), "{err}");
}

#[tokio::test]
async fn promotion_keeps_the_id_and_is_for_anonymous_users_only() {
    let store = db().await;
    let db = store.as_ref();
    let guest = anonymous(db).await;
    let later = Actor {
        name: "ops",
        now: NOW + 60,
    };
    let user = promote_user(
        db,
        &no_hooks(),
        later,
        &guest.id,
        promotion("pat@example.test"),
    )
    .await
    .unwrap();
    assert_eq!(user.id, guest.id);
    assert_eq!(user.email.as_deref(), Some("pat@example.test"));
    assert_eq!(user.name.as_deref(), Some("Pat"));
    assert!(!user.anonymous && !user.email_verified);
    assert_eq!((user.created_at, user.updated_at), (NOW, NOW + 60));
    let hash = user.password_hash.clone().unwrap();
    assert!(verify_secret(PASSWORD.into(), hash).await);
    assert_eq!(db.get_user(&guest.id).await.unwrap(), Some(user));
    let found = db.get_user_by_email("PAT@example.test").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(guest.id.clone()));
    let sent = events(db).await;
    let promoted: Vec<_> = sent
        .iter()
        .filter(|e| e.event == "user.anonymous.promoted")
        .collect();
    assert_eq!(promoted.len(), 1);
    assert!(!promoted[0].data.contains("argon2") && !promoted[0].data.contains(PASSWORD));
    let audit = db.list_audit(1).await.unwrap();
    assert_eq!(audit[0].action, "user.anonymous.promoted");
    assert_eq!(audit[0].actor, "ops");

    // Not anonymous any more; an email in use; a bad password.
    let err = promote_user(
        db,
        &no_hooks(),
        cli(),
        &guest.id,
        promotion("new@example.test"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ManageError::UserState { .. }) && err.is_caller_fault(),
        "{err}"
    );
    let other = anonymous(db).await;
    let err = promote_user(
        db,
        &no_hooks(),
        cli(),
        &other.id,
        promotion("Pat@Example.test"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ManageError::Exists(_)), "{err}");
    let short = Promotion {
        password: "short".into(),
        ..promotion("o@example.test")
    };
    let err = promote_user(db, &no_hooks(), cli(), &other.id, short)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ManageError::Invalid {
                field: "password",
                ..
            }
        ),
        "{err}"
    );
    let err = promote_user(
        db,
        &no_hooks(),
        cli(),
        "usr_nobody",
        promotion("o@example.test"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ManageError::UnknownUser(_)), "{err}");
    // An anonymous user gets an email or a password by promotion only.
    let changes = UserChanges {
        email: Some("o@example.test".into()),
        ..UserChanges::default()
    };
    let err = update_user(db, cli(), &other.id, changes)
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::UserState { .. }), "{err}");
    let named = UserChanges {
        name: Some("Guest".into()),
        ..UserChanges::default()
    };
    let user = update_user(db, cli(), &other.id, named).await.unwrap();
    assert!(user.anonymous && user.email.is_none());
}

#[tokio::test]
async fn anonymization_erases_the_person_and_keeps_the_id() {
    let store = db().await;
    let db = store.as_ref();
    let new = NewUser {
        email: "ann@example.test".into(),
        password: PASSWORD.into(),
        name: "Ann".into(),
    };
    let ann = create_user(db, &no_hooks(), cli(), new).await.unwrap();
    let org = Organization {
        id: "org_1".into(),
        name: "Acme".into(),
        created_at: NOW,
    };
    db.create_organization(&org).await.unwrap();
    let member = Membership {
        org_id: org.id.clone(),
        user_id: ann.id.clone(),
        roles: vec![],
        created_at: NOW,
    };
    db.add_membership(&member).await.unwrap();
    let later = Actor {
        name: "ops",
        now: NOW + 60,
    };
    let erased = anonymize_user(db, later, &ann.id).await.unwrap();
    assert_eq!(erased.id, ann.id);
    assert_eq!(
        (erased.email, erased.name, erased.password_hash),
        (None, None, None)
    );
    assert_eq!(erased.anonymized_at, Some(NOW + 60));
    assert!(!erased.anonymous);
    assert!(
        db.get_user_by_email("ann@example.test")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.list_memberships_of_user(&ann.id)
            .await
            .unwrap()
            .is_empty()
    );
    // The audit entries about Ann keep their action but lose their detail.
    let audit = db.list_audit(10).await.unwrap();
    let text = format!("{audit:?}");
    assert!(
        !text.contains("ann@example.test") && !text.contains("Ann"),
        "{text}"
    );
    let created = audit.iter().find(|e| e.action == "user.created").unwrap();
    assert_eq!(created.detail, REDACTED_DETAIL);
    assert_eq!(audit[0].action, "user.anonymized");
    let detail: serde_json::Value = serde_json::from_str(&audit[0].detail).unwrap();
    assert_eq!(detail["removed_memberships"], 1);
    let sent = events(db).await;
    let event = sent.iter().find(|e| e.event == "user.anonymized").unwrap();
    assert_eq!(event.data, format!(r#"{{"id":"{}"}}"#, ann.id));

    // Nothing more happens to an anonymized user.
    for err in [
        anonymize_user(db, cli(), &ann.id).await.unwrap_err(),
        promote_user(
            db,
            &no_hooks(),
            cli(),
            &ann.id,
            promotion("ann@example.test"),
        )
        .await
        .unwrap_err(),
        update_user(
            db,
            cli(),
            &ann.id,
            UserChanges {
                name: Some("Ann".into()),
                ..UserChanges::default()
            },
        )
        .await
        .unwrap_err(),
    ] {
        assert!(matches!(err, ManageError::UserState { .. }), "{err}");
    }
    // An anonymous user can be anonymized too (and stops being anonymous).
    let guest = anonymous(db).await;
    let erased = anonymize_user(db, cli(), &guest.id).await.unwrap();
    assert!(!erased.anonymous && erased.anonymized_at.is_some());
}
