//! The commands that manage users (list, show, update with
//! `--password-stdin`, delete), organizations, roles and members (list,
//! remove), on SQLite and, all in one go with the webhook commands, on
//! PostgreSQL. Events are read from the outbox and audit entries from the
//! log, through the store on the same database. The helpers here serve
//! `catalog.rs` too.

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;

use portcullis::issuer::clients::verify_secret;
use portcullis::issuer::store::{self, RefreshFamily, Store};
use serde_json::json;

use super::*;

const PASSWORD: &str = "correct horse battery";

/// Runs `portcullis admin -c <config> <args>` with `input` on stdin.
pub(crate) fn admin_stdin(env: &Env, args: &[&str], input: &str) -> Output {
    let mut child = std::process::Command::new(BIN)
        .arg("admin")
        .arg("-c")
        .arg(&env.config)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run portcullis");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) async fn db(env: &Env) -> Arc<dyn Store> {
    store::open(&format!("sqlite://{}/issuer.db", env.dir.path().display()))
        .await
        .unwrap()
}

/// The data of the outbox's events named `name` (nothing delivers them here).
/// Reading claims every due event, so a second read sees only newer ones.
pub(crate) async fn events(db: &dyn Store, name: &str) -> Vec<Value> {
    db.due_events(now() + 3600, now() + 7200, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == name)
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

/// Creates a user with the password on stdin, the API, an org and a role;
/// makes the user a member: (user id, org id). Once per environment.
pub(crate) fn member(env: &Env, email: &str) -> (String, String) {
    let args = [
        "user",
        "create",
        "--email",
        email,
        "--name",
        "Ann",
        "--password-stdin",
    ];
    let user = admin_stdin(env, &args, &format!("{PASSWORD}\n")).json();
    let api = ["api", "create", "--identifier", API, "--scope", "read:data"];
    admin(env, &api).json();
    let org = admin(env, &["org", "create", "--name", "Acme"]).json();
    let role = format!("viewer-{email}");
    admin(
        env,
        &[
            "role",
            "create",
            "--name",
            &role,
            "--api",
            API,
            "--scope",
            "read:data",
        ],
    )
    .json();
    let (user, org) = (user["id"].as_str().unwrap(), org["id"].as_str().unwrap());
    admin(
        env,
        &[
            "member", "add", "--org", org, "--user", user, "--role", &role,
        ],
    )
    .json();
    (user.to_owned(), org.to_owned())
}

/// A live refresh family of `user_id` for a new client: its token hash.
pub(crate) async fn family(env: &Env, db: &dyn Store, user_id: &str) -> String {
    let args = [
        "client",
        "create",
        "--name",
        "session",
        "--grant-type",
        "client_credentials",
    ];
    let client = admin(env, &args).json();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let hash = format!("hash-{user_id}");
    db.create_family(&RefreshFamily {
        id: format!("fam-{user_id}"),
        client_id,
        user_id: user_id.to_owned(),
        org_id: None,
        scope: "read:data".into(),
        resource: None,
        auth_time: now(),
        generation: 0,
        current_hash: hash.clone(),
        previous_hash: None,
        rotated_at: None,
        created_at: now(),
        absolute_expires_at: now() + 86_400,
        idle_expires_at: None,
        revoked_at: None,
    })
    .await
    .unwrap();
    hash
}

#[tokio::test]
async fn users_are_listed_shown_updated_and_deleted() {
    let env = env().await;
    let (id, org) = member(&env, "ann@example.test");
    let db = db(&env).await;
    let stored = db.get_user(&id).await.unwrap().unwrap();
    // One trailing newline is dropped from the password on stdin.
    assert!(verify_secret(PASSWORD.into(), stored.password_hash.unwrap()).await);

    let list = admin(&env, &["user", "list"]);
    assert!(!list.stdout.contains("argon2") && !list.stdout.contains("password"));
    assert_eq!(list.json()[0]["id"], id.as_str());
    let shown = admin(&env, &["user", "show", &id]).json();
    assert_eq!(shown["email"], "ann@example.test");
    assert_eq!(shown["memberships"][0]["org_id"], org.as_str());

    let args = [
        "user",
        "update",
        &id,
        "--name",
        "Ann Smith",
        "--picture",
        "https://pics.example.test/ann.png",
        "--email-verified",
        "true",
    ];
    let updated = admin(&env, &args).json();
    assert_eq!(updated["name"], "Ann Smith");
    assert_eq!(updated["picture"], "https://pics.example.test/ann.png");
    assert_eq!(updated["email_verified"], true);
    let cleared = admin(&env, &["user", "update", &id, "--picture", ""]).json();
    assert_eq!(cleared["picture"], Value::Null);

    let hash = family(&env, db.as_ref(), &id).await;
    let new = "a new password\r\n";
    let out = admin_stdin(&env, &["user", "update", &id, "--password-stdin"], new);
    assert!(!out.json().to_string().contains("new password"));
    let stored = db.get_user(&id).await.unwrap().unwrap();
    let stored_hash = stored.password_hash.unwrap();
    assert!(verify_secret("a new password".into(), stored_hash.clone()).await);
    assert!(!verify_secret(PASSWORD.into(), stored_hash).await);
    let fam = db.find_family_by_token_hash(&hash).await.unwrap().unwrap();
    assert!(fam.family.revoked_at.is_some(), "a new password revokes");

    let updates = events(db.as_ref(), "user.updated").await;
    assert_eq!(updates.len(), 3);
    assert!(updates.iter().any(|d| d["changed"] == json!(["password"])));
    assert!(updates.iter().all(|d| d["id"] == id.as_str()));
    let text = serde_json::to_string(&updates).unwrap();
    assert!(!text.contains("argon2") && !text.contains("new password"));

    let deleted = admin(&env, &["user", "delete", &id]).json();
    assert_eq!(deleted, json!({ "id": id, "deleted": true }));
    assert!(db.find_family_by_token_hash(&hash).await.unwrap().is_none());
    let gone = events(db.as_ref(), "user.deleted").await;
    assert_eq!(gone[0]["email"], "ann@example.test");
    let audit = db.list_audit(100).await.unwrap();
    assert_eq!(audit[0].action, "user.deleted");
    assert_eq!(audit[0].actor, "cli");
    assert_eq!(
        audit.iter().filter(|a| a.action == "user.updated").count(),
        3
    );
    assert!(audit.iter().all(|a| !a.detail.contains("argon2")));

    for args in [
        &["user", "show", id.as_str()][..],
        &["user", "delete", &id],
        &["user", "update", &id, "--name", "Ghost"],
    ] {
        admin(&env, args).refused(1, "unknown user");
    }
    admin(&env, &["user", "update", "usr_nope", "--email", "nope"]).refused(1, "email");
    let args = [
        "user",
        "create",
        "--email",
        "b@x.test",
        "--name",
        "B",
        "--password-stdin",
    ];
    admin_stdin(&env, &args, "short\n").refused(1, "password");
    db.close().await;
}

#[tokio::test]
async fn orgs_roles_and_members_are_listed_and_members_removed() {
    let env = env().await;
    let (id, org) = member(&env, "cy@example.test");
    let orgs = admin(&env, &["org", "list"]).json();
    assert_eq!(orgs[0]["id"], org.as_str());
    let roles = admin(&env, &["role", "list"]).json();
    assert_eq!(roles[0]["grants"][API], json!(["read:data"]));
    let members = admin(&env, &["member", "list", "--org", &org]).json();
    assert_eq!(members[0]["user_id"], id.as_str());

    let remove = ["member", "remove", "--org", &org, "--user", &id];
    let removed = admin(&env, &remove).json();
    assert_eq!(
        removed,
        json!({ "org_id": org, "user_id": id, "deleted": true })
    );
    let members = admin(&env, &["member", "list", "--org", &org]).json();
    assert_eq!(members, json!([]));
    admin(&env, &remove).refused(1, "not a member");
    admin(&env, &["member", "list", "--org", "org_nope"]).refused(1, "unknown organization");

    let db = db(&env).await;
    let data = events(db.as_ref(), "membership.deleted").await;
    assert_eq!(data[0]["org_id"], org.as_str());
    assert_eq!(data[0]["user_id"], id.as_str());
    let last = db.list_audit(1).await.unwrap().remove(0);
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("membership.deleted", "cli")
    );
    db.close().await;
}

/// The new commands in one go, as the PostgreSQL test runs them: a member
/// updated (profile, then password), removed and deleted, and a webhook made,
/// listed and deleted. Returns the user id.
fn lifecycle(env: &Env) -> String {
    let (id, org) = member(env, "pg@example.test");
    let listed = admin(env, &["user", "list"]).json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(admin(env, &["org", "list"]).json()[0]["id"], org.as_str());
    assert_eq!(
        admin(env, &["role", "list"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let updated = admin(env, &["user", "update", &id, "--name", "Pat"]).json();
    assert_eq!(updated["name"], "Pat");
    let args = ["user", "update", &id, "--password-stdin"];
    admin_stdin(env, &args, "another password\n").json();
    let members = admin(env, &["member", "list", "--org", &org]).json();
    assert_eq!(members[0]["user_id"], id.as_str());
    admin(env, &["member", "remove", "--org", &org, "--user", &id]).json();
    admin(env, &["user", "delete", &id]).json();
    admin(env, &["user", "show", &id]).refused(1, "unknown user");
    let hook = admin(env, &["webhook", "create", "--url", "https://h.test/in"]).json();
    let hook_id = hook["id"].as_str().unwrap();
    let list = admin(env, &["webhook", "list"]);
    assert!(list.stdout.contains(hook_id) && !list.stdout.contains("whsec_"));
    admin(env, &["webhook", "delete", hook_id]).json();
    admin(env, &["webhook", "delete", hook_id]).refused(1, "unknown webhook");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_new_commands_work_on_postgres_too() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = db.url().to_owned();
    let env = env_on(Some(&url)).await;
    let outcome = tokio::task::spawn_blocking(move || lifecycle(&env)).await;
    let checked = match outcome {
        Ok(id) => {
            let db = store::open(&url).await.unwrap();
            // One read: reading the outbox claims what it returns.
            let due = db.due_events(now() + 3600, now() + 7200, 1000).await;
            let due = due.unwrap();
            let names = ["user.updated", "membership.deleted", "user.deleted"];
            for name in names {
                let found = due.iter().any(|e| e.event == name && e.data.contains(&id));
                assert!(found, "{name}");
            }
            let audit = db.list_audit(100).await.unwrap();
            for action in names.iter().chain(&["webhook.created", "webhook.deleted"]) {
                assert!(audit.iter().any(|a| a.action == *action), "{action}");
            }
            db.close().await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    drop(db);
    if let Err(e) = checked {
        std::panic::resume_unwind(e.into_panic());
    }
}
