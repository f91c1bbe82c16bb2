//! API resources, clients and roles; unique keys and foreign keys.

use super::*;

pub(crate) async fn api_resources(t: Ctx) {
    let s = &*t.store;
    assert_eq!(s.get_api_resource("https://api.test").await.unwrap(), None);
    let mut api = ApiResource {
        identifier: "https://api.test".into(),
        scopes: strings(&["read:data", "write:data"]),
    };
    s.upsert_api_resource(&api).await.unwrap();
    let other = ApiResource {
        identifier: "https://billing.test".into(),
        scopes: vec![],
    };
    s.upsert_api_resource(&other).await.unwrap();
    assert_eq!(
        s.get_api_resource("https://api.test").await.unwrap(),
        Some(api.clone())
    );

    api.scopes.push("admin".into());
    s.upsert_api_resource(&api).await.unwrap();
    assert_eq!(s.list_api_resources().await.unwrap(), vec![api, other]);
}

pub(crate) async fn clients(t: Ctx) {
    let s = &*t.store;
    let mut web = client("web-app");
    web.secret_hash = None;
    web.public = true;
    web.id_token_signed_response_alg = None;
    web.scopes = BTreeMap::new();
    s.create_client(&web).await.unwrap();
    s.create_client(&client("billing")).await.unwrap();
    assert_eq!(s.get_client("web-app").await.unwrap(), Some(web.clone()));
    assert_eq!(s.get_client("nobody").await.unwrap(), None);

    let err = s.create_client(&client("billing")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("client")), "{err:?}");

    // An upsert replaces everything but created_at.
    let mut billing = client("billing");
    billing.name = "Billing".into();
    billing.grant_types = strings(&["client_credentials"]);
    billing.redirect_uris = vec![];
    billing.scopes = scopes(&[("https://billing.test", &["invoice:read"])]);
    billing.require_pkce = false;
    billing.created_at = NOW + 999;
    s.upsert_client(&billing).await.unwrap();
    billing.created_at = NOW;
    assert_eq!(
        s.get_client("billing").await.unwrap(),
        Some(billing.clone())
    );

    // An upsert of a new client inserts it.
    s.upsert_client(&client("cron")).await.unwrap();
    let ids: Vec<_> = s
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["billing", "cron", "web-app"]);

    assert!(s.delete_client("cron").await.unwrap());
    assert!(!s.delete_client("cron").await.unwrap());
    assert_eq!(s.get_client("cron").await.unwrap(), None);
    assert_eq!(s.list_clients().await.unwrap(), vec![billing, web]);
}

pub(crate) async fn roles(t: Ctx) {
    let s = &*t.store;
    let admin = Role {
        name: "admin".into(),
        grants: scopes(&[
            ("https://api.test", &["read:data", "write:data"]),
            ("https://billing.test", &["invoice:read"]),
        ]),
        created_at: NOW,
    };
    let viewer = Role {
        name: "viewer".into(),
        grants: scopes(&[("https://api.test", &["read:data"])]),
        created_at: NOW + 1,
    };
    s.create_role(&viewer).await.unwrap();
    s.create_role(&admin).await.unwrap();
    let err = s.create_role(&admin).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("role")), "{err:?}");
    assert_eq!(s.get_role("admin").await.unwrap(), Some(admin.clone()));
    assert_eq!(s.get_role("owner").await.unwrap(), None);
    assert_eq!(s.list_roles().await.unwrap(), vec![admin, viewer]);
}

pub(crate) async fn conflicts_and_missing_references(t: Ctx) {
    let s = &*t.store;
    client_and_user(s).await;
    s.create_organization(&org("org_a")).await.unwrap();

    let err = s.create_organization(&org("org_a")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("organization")),
        "{err:?}"
    );
    let err = s
        .add_membership(&member("org_a", "usr_ghost"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MissingReference("membership")),
        "{err:?}"
    );
    let err = s
        .add_membership(&member("org_ghost", "usr_a"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MissingReference("membership")),
        "{err:?}"
    );

    let mut orphan = code("h-orphan");
    orphan.client_id = "cli_ghost".into();
    let err = s.insert_code(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::MissingReference(_)), "{err:?}");
    s.insert_code(&code("h-1")).await.unwrap();
    let err = s.insert_code(&code("h-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let mut orphan = family("fam_orphan", "rt-orphan");
    orphan.user_id = "usr_ghost".into();
    let err = s.create_family(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::MissingReference(_)), "{err:?}");
    s.create_family(&family("fam_1", "rt-1")).await.unwrap();
    let err = s.create_family(&family("fam_2", "rt-1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    s.insert_signing_key(&key("k1", NOW, None)).await.unwrap();
    let err = s
        .insert_signing_key(&key("k1", NOW, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("signing key")),
        "{err:?}"
    );

    s.enqueue_event(&event("evt_1", NOW)).await.unwrap();
    let err = s.enqueue_event(&event("evt_1", NOW)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("event")), "{err:?}");
}
