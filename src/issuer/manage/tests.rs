use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::{Config, GrantType, IssuerSection};
use crate::issuer::clients::verify_secret;
use crate::issuer::store::{self, OutboxEvent};

const API: &str = "https://api.test";
const NOW: i64 = 1_800_000_000;

/// No blocking hooks: `create_user` goes on at once.
fn no_hooks() -> crate::issuer::hooks::Hooks {
    crate::issuer::hooks::Hooks::none(Arc::new(crate::clock::ManualClock::new(NOW)))
}

fn cli() -> Actor<'static> {
    Actor {
        name: "cli",
        now: NOW,
    }
}

async fn db() -> Arc<dyn Store> {
    let store = store::open("sqlite::memory:").await.unwrap();
    create_api(
        store.as_ref(),
        cli(),
        API,
        vec!["read".into(), "write".into()],
    )
    .await
    .unwrap();
    store
}

async fn events(store: &dyn Store) -> Vec<OutboxEvent> {
    store
        .due_events(NOW + 10_000, NOW + 20_000, 100)
        .await
        .unwrap()
}

fn m2m(scopes: &[&str]) -> NewClient {
    NewClient {
        name: "billing".into(),
        grant_types: vec![GrantType::ClientCredentials],
        redirect_uris: vec![],
        public: false,
        require_pkce: false,
        scopes: ScopeMap::from([(API.into(), scopes.iter().map(|s| s.to_string()).collect())]),
        introspection: vec![],
    }
}

#[tokio::test]
async fn a_confidential_client_gets_a_secret_stored_only_as_argon2id() {
    let store = db().await;
    let created = create_client(store.as_ref(), cli(), m2m(&["read"]))
        .await
        .unwrap();
    let secret = created.secret.unwrap();
    // 256 bits as base64url without padding.
    assert_eq!(secret.len(), 43, "{secret}");
    let stored = store
        .get_client(&created.client.client_id)
        .await
        .unwrap()
        .unwrap();
    let hash = stored.secret_hash.unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&secret));
    assert!(verify_secret(secret, hash).await);
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit[0].action, "client.created");
    assert_eq!(audit[0].actor, "cli");
    assert!(!audit[0].detail.contains("argon2"), "{}", audit[0].detail);

    let public = NewClient {
        public: true,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        redirect_uris: vec!["http://127.0.0.1:3000/cb".into()],
        ..m2m(&["read"])
    };
    let created = create_client(store.as_ref(), cli(), public).await.unwrap();
    assert!(created.secret.is_none() && created.client.secret_hash.is_none());
    assert!(created.client.require_pkce);
}

#[tokio::test]
async fn client_rules_and_references_are_checked() {
    let store = db().await;
    let refused = |new: NewClient| {
        let store = store.clone();
        async move { create_client(store.as_ref(), cli(), new).await.err() }
    };
    let public_m2m = NewClient {
        public: true,
        ..m2m(&["read"])
    };
    assert!(matches!(
        refused(public_m2m).await,
        Some(ManageError::Invalid { .. })
    ));
    let refresh_only = NewClient {
        grant_types: vec![GrantType::RefreshToken],
        ..m2m(&["read"])
    };
    assert!(matches!(
        refused(refresh_only).await,
        Some(ManageError::Invalid { .. })
    ));
    let code_without_redirect = NewClient {
        grant_types: vec![GrantType::AuthorizationCode],
        ..m2m(&["read"])
    };
    assert!(matches!(
        refused(code_without_redirect).await,
        Some(ManageError::Invalid { .. })
    ));
    let err = refused(m2m(&["delete"])).await.unwrap();
    assert!(matches!(err, ManageError::UnknownScope { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "api `https://api.test` has no scope `delete`"
    );
    let elsewhere = NewClient {
        scopes: ScopeMap::from([("https://other.test".into(), vec!["read".into()])]),
        ..m2m(&["read"])
    };
    let err = refused(elsewhere).await.unwrap();
    assert!(matches!(err, ManageError::UnknownApi(_)) && err.is_caller_fault());
    // Introspection of other clients' tokens: existing APIs, confidential
    // clients, each once.
    let introspect = |list: &[&str]| NewClient {
        introspection: list.iter().map(|s| s.to_string()).collect(),
        ..m2m(&["read"])
    };
    let err = refused(introspect(&["https://other.test"])).await.unwrap();
    assert!(matches!(err, ManageError::UnknownApi(_)), "{err}");
    let err = refused(introspect(&[API, API])).await.unwrap();
    assert!(
        matches!(
            err,
            ManageError::Invalid {
                field: "introspection",
                ..
            }
        ),
        "{err}"
    );
    let public = NewClient {
        public: true,
        grant_types: vec![GrantType::AuthorizationCode],
        redirect_uris: vec!["https://app.test/cb".into()],
        ..introspect(&[API])
    };
    let err = refused(public).await.unwrap();
    assert!(
        matches!(
            err,
            ManageError::Invalid {
                field: "introspection",
                ..
            }
        ),
        "{err}"
    );
    assert!(store.list_clients().await.unwrap().is_empty());
    let made = create_client(store.as_ref(), cli(), introspect(&[API]))
        .await
        .unwrap();
    let stored = store.get_client(&made.client.client_id).await.unwrap();
    assert_eq!(stored.unwrap().introspection, [API]);

    let err = delete_client(store.as_ref(), cli(), "client_nope").await;
    assert!(matches!(err, Err(ManageError::UnknownClient(_))));
}

#[tokio::test]
async fn apis_are_validated_and_never_replaced() {
    let store = db().await;
    let again = create_api(store.as_ref(), cli(), API, vec!["x".into()]).await;
    assert!(matches!(again, Err(ManageError::Exists("api"))));
    let relative = create_api(store.as_ref(), cli(), "/api", vec!["x".into()]).await;
    assert!(matches!(relative, Err(ManageError::Invalid { .. })));
    let spaced = create_api(store.as_ref(), cli(), "urn:x", vec!["a b".into()]).await;
    assert!(matches!(spaced, Err(ManageError::Invalid { .. })));
    let api = store.get_api_resource(API).await.unwrap().unwrap();
    assert_eq!(api.scopes, ["read", "write"]);
}

#[tokio::test]
async fn users_orgs_and_memberships_emit_their_events() {
    let store = db().await;
    let db = store.as_ref();
    let user = NewUser {
        email: "Ann@Example.test".into(),
        password: "correct horse".into(),
        name: "Ann".into(),
    };
    let ann = create_user(db, &no_hooks(), cli(), user.clone())
        .await
        .unwrap();
    assert!(ann.id.starts_with("usr_"));
    let hash = ann.password_hash.clone().unwrap();
    assert!(verify_secret("correct horse".into(), hash).await);
    let lower = NewUser {
        email: "ann@example.test".into(),
        ..user.clone()
    };
    assert!(matches!(
        create_user(db, &no_hooks(), cli(), lower).await,
        Err(ManageError::Exists(_))
    ));
    let short = NewUser {
        email: "bo@example.test".into(),
        password: "short".into(),
        ..user
    };
    assert!(matches!(
        create_user(db, &no_hooks(), cli(), short).await,
        Err(ManageError::Invalid {
            field: "password",
            ..
        })
    ));

    let org = create_organization(db, cli(), "Acme").await.unwrap();
    assert!(org.id.starts_with("org_"));
    create_role(db, cli(), "viewer", API, vec!["read".into()])
        .await
        .unwrap();
    for bad in [
        "viewer,admin",
        "a b",
        "a\"b",
        "a'b",
        "a;b",
        "a\\b",
        "a\nb",
        "é",
        "",
    ] {
        let refused = create_role(db, cli(), bad, API, vec!["read".into()]).await;
        assert!(
            matches!(
                refused,
                Err(ManageError::Invalid {
                    field: "role name",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    for good in [
        "team-lead",
        "billing.admin",
        "org:owner",
        "viewer-ann+x@example.test",
        "a/b_c",
    ] {
        assert!(is_role_name(good), "{good}");
    }
    assert!(!is_role_name(&"r".repeat(MAX_ROLE_NAME_LEN + 1)));
    let unknown_role = add_member(db, cli(), &org.id, &ann.id, vec!["admin".into()]).await;
    assert!(matches!(unknown_role, Err(ManageError::UnknownRole(r)) if r == "admin"));
    let unknown_org = add_member(db, cli(), "org_x", &ann.id, vec!["viewer".into()]).await;
    assert!(matches!(
        unknown_org,
        Err(ManageError::UnknownOrganization(_))
    ));
    let unknown_user = add_member(db, cli(), &org.id, "usr_x", vec!["viewer".into()]).await;
    assert!(matches!(unknown_user, Err(ManageError::UnknownUser(_))));

    let roles = vec!["viewer".to_owned(), "viewer".to_owned()];
    let m = add_member(db, cli(), &org.id, &ann.id, roles)
        .await
        .unwrap();
    assert_eq!(m.roles, ["viewer"]);
    // Adding again replaces the roles, keeps the first time, and is no new event.
    let later = Actor {
        name: "cli",
        now: NOW + 60,
    };
    let m = add_member(db, later, &org.id, &ann.id, vec!["viewer".into()])
        .await
        .unwrap();
    assert_eq!(m.created_at, NOW);

    // Events due at the same second come in any order.
    let mut events = events(db).await;
    events.sort_by(|a, b| a.event.cmp(&b.event));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        ["membership.created", "organization.created", "user.created"]
    );
    assert!(events.iter().all(|e| e.id.starts_with("evt_")));
    let user_created = &events[2];
    assert_eq!(user_created.created_at, "2027-01-15T08:00:00.000000Z");
    let data: serde_json::Value = serde_json::from_str(&user_created.data).unwrap();
    assert_eq!(data["id"], ann.id.as_str());
    assert!(!user_created.data.contains("argon2"));
    let actions: Vec<String> = store
        .list_audit(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(
        actions.contains(&"membership.updated".to_owned()),
        "{actions:?}"
    );
}

fn section(db_url: &str) -> IssuerSection {
    let yaml = format!(
        "issuer:\n  url: \"http://issuer.test\"\n  database: \"{db_url}\"\n  signing_algs: [ES256, RS256]\n\
         upstreams:\n  api: {{ url: \"http://127.0.0.1:9\" }}\nroutes:\n  - path: /*\n    upstream: api\n    auth: anonymous\n"
    );
    let config = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"));
    config.issuer.unwrap()
}

#[tokio::test]
async fn keys_rotate_to_a_published_successor_once() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let section = section("sqlite::memory:");
    // A new database: a key per algorithm that signs at once.
    let first = rotate_keys(store.clone(), &section, None, cli())
        .await
        .unwrap();
    assert!(first.rotated);
    assert_eq!(first.keys.len(), 2);
    assert!(
        first
            .keys
            .iter()
            .all(|k| k.signing && k.new && k.activate_at == NOW)
    );

    let second = rotate_keys(store.clone(), &section, None, cli())
        .await
        .unwrap();
    assert_eq!(second.keys.len(), 4);
    let (new, old): (Vec<_>, Vec<_>) = second.keys.iter().partition(|k| k.new);
    assert_eq!(new.len(), 2);
    assert!(
        new.iter()
            .all(|k| !k.signing && k.publish_at == NOW && k.activate_at > NOW)
    );
    assert!(
        old.iter()
            .all(|k| k.signing && k.retire_at.is_some() && k.expire_at.is_some())
    );

    // Successors are waiting: nothing to do, and no event.
    let third = rotate_keys(store.clone(), &section, None, cli())
        .await
        .unwrap();
    assert!(!third.rotated);
    assert_eq!(third.keys.len(), 4);
    let events = events(store.as_ref()).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.event == "key.rotated"));
}

#[tokio::test]
async fn a_scheduled_rotation_is_reported_like_a_manual_one() {
    use crate::issuer::keyring::{JWKS_MAX_AGE, KeyRing};
    use crate::issuer::signing::RotationPolicy;
    let store = store::open("sqlite::memory:").await.unwrap();
    let section = section("sqlite::memory:");
    let policy = RotationPolicy::from_section(&section, JWKS_MAX_AGE);
    let ring = KeyRing::new(store.clone(), section.signing_algs.clone(), policy, None);
    let due = |at: i64| {
        let store = store.clone();
        // Claimed once each: a second call sees only new events.
        async move { store.due_events(at + 10, at + 20, 100).await.unwrap() }
    };
    // The first keys of a new database are no rotation.
    ring.sync(NOW).await.unwrap();
    assert!(due(NOW).await.is_empty());
    // Days later the schedule makes successors: one event for both
    // algorithms, as `admin keys rotate` reports it, and an audit entry.
    let period = i64::try_from(section.key_rotation.as_secs()).unwrap();
    let later = NOW + period;
    ring.sync(later).await.unwrap();
    let events = due(later).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "key.rotated");
    let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(data["created"].as_array().map(Vec::len), Some(2), "{data}");
    assert_eq!(
        data["published"].as_array().map(Vec::len),
        Some(4),
        "{data}"
    );
    let audit = store.list_audit(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "key.rotated" && a.actor == "schedule"),
        "{audit:?}"
    );
    // Nothing more to do at the same time: no second event.
    ring.sync(later).await.unwrap();
    assert!(due(later + 5).await.is_empty());
}

#[tokio::test]
async fn a_held_lease_is_reported_not_ignored() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let section = section("sqlite::memory:");
    assert!(
        store
            .try_rotation_lock("replica_other", NOW, 30)
            .await
            .unwrap()
    );
    let err = rotate_keys(store.clone(), &section, None, cli())
        .await
        .err();
    assert!(matches!(err, Some(ManageError::RotationBusy)), "{err:?}");
    assert!(!ManageError::RotationBusy.is_caller_fault());
}

mod anonymous;
mod lifecycle;
