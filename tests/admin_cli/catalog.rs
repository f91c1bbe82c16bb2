//! The commands of webhooks (create with the secret shown once, list,
//! delete) and `client create --require-pkce`, and the usage errors and help
//! of every new command.

use serde_json::json;

use super::manage::db;
use super::*;

#[tokio::test]
async fn webhooks_are_created_once_with_their_secret_listed_and_deleted() {
    let env = env().await;
    let url = "https://hooks.example.test/in";
    let args = [
        "webhook",
        "create",
        "--url",
        url,
        "--event",
        "user.created",
        "user.deleted",
    ];
    let out = admin(&env, &args);
    assert!(out.stderr.contains("not shown again"), "{}", out.stderr);
    let hook = out.json();
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["secret"].as_str().unwrap();
    assert!(
        id.starts_with("whk_") && secret.starts_with("whsec_"),
        "{hook}"
    );
    assert_eq!(hook["events"], json!(["user.created", "user.deleted"]));
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let args = [
        "webhook",
        "create",
        "--url",
        "http://127.0.0.1:9/h",
        "--secret",
        given,
    ];
    let second = admin(&env, &args).json();
    assert_eq!(second["secret"], given);
    assert_eq!(second["events"], Value::Null);

    let list = admin(&env, &["webhook", "list"]);
    assert!(!list.stdout.contains("whsec_"), "{}", list.stdout);
    assert_eq!(list.json().as_array().unwrap().len(), 2);

    admin(&env, &["webhook", "create", "--url", url]).refused(1, "already exists");
    admin(&env, &["webhook", "create", "--url", "hooks.example.test"]).refused(1, "url");
    let args = [
        "webhook",
        "create",
        "--url",
        "https://h.test/",
        "--secret",
        "whsec_not-base64!",
    ];
    let bad = admin(&env, &args);
    bad.refused(1, "secret");
    assert!(!bad.stderr.contains("not-base64"), "{}", bad.stderr);

    let deleted = admin(&env, &["webhook", "delete", &id]).json();
    assert_eq!(deleted, json!({ "id": id, "deleted": true }));
    admin(&env, &["webhook", "delete", &id]).refused(1, "unknown webhook");
    let list = admin(&env, &["webhook", "list"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let db = db(&env).await;
    let audit = db.list_audit(10).await.unwrap();
    assert_eq!(audit[0].action, "webhook.deleted");
    let created = audit.iter().filter(|a| a.action == "webhook.created");
    assert_eq!(created.count(), 2);
    assert!(audit.iter().all(|a| !a.detail.contains("whsec_")));
    db.close().await;
}

#[tokio::test]
async fn require_pkce_is_set_per_confidential_client() {
    let env = env().await;
    m2m_client(&env);
    let create = |extra: &[&str]| {
        let mut args = vec![
            "client",
            "create",
            "--name",
            "portal",
            "--grant-type",
            "authorization_code",
            "--redirect-uri",
            "https://portal.example.test/cb",
        ];
        args.extend_from_slice(extra);
        admin(&env, &args).json()
    };
    let strict = create(&["--require-pkce"]);
    assert_eq!(strict["public"], false);
    assert_eq!(strict["require_pkce"], true);
    assert!(strict["client_secret"].is_string());
    // PKCE by default; leaving it out takes an explicit false.
    assert_eq!(create(&[])["require_pkce"], true);
    let lax = create(&["--require-pkce=false"]);
    assert_eq!(lax["require_pkce"], false);
    let public = create(&["--public"]);
    assert_eq!(
        public["require_pkce"], true,
        "public clients always use PKCE"
    );
    let listed = admin(&env, &["client", "list"]).json();
    let found = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == strict["client_id"])
        .unwrap();
    assert_eq!(found["require_pkce"], true);
}

#[test]
fn bad_arguments_of_the_new_commands_exit_2_and_each_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("none.yaml");
    let both = [
        "user",
        "create",
        "--email",
        "a@b.test",
        "--name",
        "A",
        "--password",
        "long enough",
        "--password-stdin",
    ];
    let event = [
        "webhook",
        "create",
        "--url",
        "https://h.test/",
        "--event",
        "user.exploded",
    ];
    for args in [
        &both[..],
        &["user", "update", "usr_x"],
        &[
            "user",
            "update",
            "usr_x",
            "--password",
            "p",
            "--password-stdin",
        ],
        &["user", "update", "usr_x", "--email-verified", "maybe"],
        &["user", "update", "--name", "A"],
        &["user", "show"],
        &["user", "delete"],
        &["member", "list"],
        &["member", "remove", "--org", "o"],
        &["webhook", "create"],
        &event,
        &["webhook", "delete"],
        &["org", "list", "extra"],
    ] {
        let out = admin_with(&config, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error:"), "{args:?}: {}", out.stderr);
    }
    for args in [
        &["user", "list", "--help"][..],
        &["user", "show", "--help"],
        &["user", "update", "--help"],
        &["user", "delete", "--help"],
        &["org", "list", "--help"],
        &["role", "list", "--help"],
        &["member", "list", "--help"],
        &["member", "remove", "--help"],
        &["webhook", "create", "--help"],
        &["webhook", "list", "--help"],
        &["webhook", "delete", "--help"],
    ] {
        let out = admin_with(&config, args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage: portcullis admin"),
            "{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn webhooks_at_private_addresses_are_refused_by_default() {
    let env = env().await;
    // The configuration without the development opt-out.
    let closed = env.yaml.replace(
        "  webhook_address_policy: { allow_private: true }  # receivers on 127.0.0.1\n",
        "",
    );
    assert_ne!(closed, env.yaml);
    std::fs::write(&env.config, &closed).unwrap();
    for url in [
        "http://127.0.0.1:9/h",
        "http://localhost/h",
        "http://192.168.1.20/h",
    ] {
        admin(&env, &["webhook", "create", "--url", url]).refused(1, "webhook_address_policy");
    }
    let list = admin(&env, &["webhook", "list"]).json();
    assert_eq!(list, json!([]));
}
