//! Organizations, users and memberships.

use super::*;

pub(crate) async fn organizations(t: Ctx) {
    let s = &*t.store;
    s.create_organization(&org("org_b")).await.unwrap();
    s.create_organization(&org("org_a")).await.unwrap();
    assert_eq!(
        s.get_organization("org_a").await.unwrap(),
        Some(org("org_a"))
    );
    assert_eq!(s.get_organization("org_z").await.unwrap(), None);
    assert_eq!(
        s.list_organizations().await.unwrap(),
        vec![org("org_a"), org("org_b")]
    );
}

pub(crate) async fn users(t: Ctx) {
    let s = &*t.store;
    let ada = user("usr_a", "Ada@Example.test");
    s.create_user(&ada).await.unwrap();
    let mut bob = user("usr_b", "bob@example.test");
    bob.name = None;
    bob.email_verified = false;
    bob.password_hash = None;
    bob.picture = Some("https://img.test/bob.png".into());
    s.create_user(&bob).await.unwrap();

    assert_eq!(s.get_user("usr_a").await.unwrap(), Some(ada.clone()));
    assert_eq!(s.get_user("usr_z").await.unwrap(), None);
    // Emails are unique and found regardless of case (Unicode included).
    for email in ["ada@example.test", "ADA@EXAMPLE.TEST", "Ada@Example.test"] {
        assert_eq!(s.get_user_by_email(email).await.unwrap(), Some(ada.clone()));
    }
    let err = s
        .create_user(&user("usr_c", "ADA@example.TEST"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");
    s.create_user(&user("usr_d", "Ölaf@example.test"))
        .await
        .unwrap();
    let found = s.get_user_by_email("ölaf@EXAMPLE.test").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some("usr_d".to_string()));

    // An update replaces every field but created_at.
    let mut renamed = ada.clone();
    renamed.email = Some("ada@lovelace.test".into());
    renamed.name = Some("Ada King".into());
    renamed.email_verified = false;
    renamed.updated_at = NOW + 60;
    renamed.created_at = NOW + 60;
    assert!(s.update_user(&renamed).await.unwrap());
    renamed.created_at = NOW;
    assert_eq!(s.get_user("usr_a").await.unwrap(), Some(renamed.clone()));
    assert_eq!(s.get_user_by_email("ada@example.test").await.unwrap(), None);
    assert!(
        !s.update_user(&user("usr_z", "z@example.test"))
            .await
            .unwrap()
    );
    // An update into someone else's email clashes.
    let mut clash = bob.clone();
    clash.email = Some("ADA@lovelace.test".into());
    let err = s.update_user(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");

    let ids: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["usr_a", "usr_b", "usr_d"]);
    assert!(s.delete_user("usr_b").await.unwrap());
    assert!(!s.delete_user("usr_b").await.unwrap());
    assert_eq!(s.get_user("usr_b").await.unwrap(), None);
}

pub(crate) async fn memberships(t: Ctx) {
    let s = &*t.store;
    for id in ["org_a", "org_b"] {
        s.create_organization(&org(id)).await.unwrap();
    }
    for (id, email) in [("usr_a", "a@example.test"), ("usr_b", "b@example.test")] {
        s.create_user(&user(id, email)).await.unwrap();
    }
    assert!(s.add_membership(&member("org_a", "usr_a")).await.unwrap());
    assert!(s.add_membership(&member("org_b", "usr_a")).await.unwrap());
    assert!(s.add_membership(&member("org_a", "usr_b")).await.unwrap());

    // Adding again replaces the roles and keeps created_at.
    let mut changed = member("org_a", "usr_b");
    changed.roles = strings(&["viewer", "billing"]);
    changed.created_at = NOW + 5;
    assert!(!s.add_membership(&changed).await.unwrap());
    changed.created_at = NOW;

    assert_eq!(
        s.list_memberships_of_user("usr_a").await.unwrap(),
        vec![member("org_a", "usr_a"), member("org_b", "usr_a")]
    );
    assert_eq!(
        s.list_memberships_of_org("org_a").await.unwrap(),
        vec![member("org_a", "usr_a"), changed]
    );
    assert!(s.remove_membership("org_a", "usr_a").await.unwrap());
    assert!(!s.remove_membership("org_a", "usr_a").await.unwrap());
    assert_eq!(
        s.list_memberships_of_user("usr_a").await.unwrap(),
        vec![member("org_b", "usr_a")]
    );
    assert_eq!(s.list_memberships_of_user("usr_z").await.unwrap(), vec![]);
}

pub(crate) async fn deleting_users_and_clients_cascades(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.create_client(&client("cli_b")).await.unwrap();
    s.create_organization(&org("org_a")).await.unwrap();
    s.add_membership(&member("org_a", "usr_a")).await.unwrap();
    s.insert_code(&code("h-a")).await.unwrap();
    s.create_family(&family("fam_a", "rt-a")).await.unwrap();
    s.rotate_family("fam_a", 0, "rt-a2", NOW, None)
        .await
        .unwrap();
    let mut other = family("fam_b", "rt-b");
    other.client_id = "cli_b".into();
    s.create_family(&other).await.unwrap();

    // The client goes with its codes and families, and their old hashes.
    assert!(s.delete_client("cli_a").await.unwrap());
    assert_eq!(s.find_code("h-a").await.unwrap(), None);
    assert_eq!(s.find_family_by_token_hash("rt-a2").await.unwrap(), None);
    assert_eq!(s.find_family_by_token_hash("rt-a").await.unwrap(), None);
    assert!(s.find_family_by_token_hash("rt-b").await.unwrap().is_some());

    // The user goes with memberships and families.
    assert!(s.delete_user("usr_a").await.unwrap());
    assert_eq!(s.list_memberships_of_org("org_a").await.unwrap(), vec![]);
    assert_eq!(s.find_family_by_token_hash("rt-b").await.unwrap(), None);
}
