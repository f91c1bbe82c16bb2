//! `portcullis admin user promote` and `admin user anonymize`, and the
//! anonymous grant in `admin client create`, run as the real binary on the
//! database a gateway in this process serves: the JSON printed, the exit
//! codes of refusals, and the user signing in (or no longer) afterwards.

use std::io::Write as _;
use std::process::Stdio;

use serde_json::json;

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    fn refused(&self, code: i32, text: &str) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(self.stderr.contains(text), "{}", self.stderr);
        assert!(self.stdout.is_empty(), "{}", self.stdout);
    }
}

/// Runs `portcullis admin -c <the env's configuration> <args>` with `input`
/// on standard input.
fn admin(config: &std::path::Path, args: &[&str], input: &str) -> Output {
    let mut child = std::process::Command::new(BIN)
        .arg("admin")
        .arg("-c")
        .arg(config)
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

async fn the_cli_promotes_and_anonymizes(db: TestDb) {
    let env = env(db).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, &env.yaml).unwrap();
    let anonymous = env.new_anonymous().await;
    let sub = sub_of(&anonymous);

    let args = [
        "user",
        "promote",
        &sub,
        "--email",
        "cli@example.test",
        "--password-stdin",
        "--name",
        "Cleo",
    ];
    let user = admin(&config, &args, &format!("{PASSWORD}\n")).json();
    assert_eq!(user["id"], sub.as_str());
    assert_eq!(user["email"], "cli@example.test");
    assert_eq!(user["name"], "Cleo");
    assert_eq!(user["anonymous"], false);
    assert!(!user.to_string().contains(PASSWORD));

    // Signs in with the email, as the same sub; the anonymous refresh token
    // goes on without the claim.
    let tokens = support::oauth::code_flow(
        &env.base(),
        "mobile",
        CALLBACK,
        "openid read:data",
        ("cli@example.test", PASSWORD),
    )
    .await;
    assert_eq!(sub_of(&tokens), sub);
    let (status, refreshed) = env
        .refresh(anonymous["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(
        claims_of(refreshed["access_token"].as_str().unwrap())
            .get("anonymous")
            .is_none()
    );

    // Refused, exit 1: promoting again; an email in use; an unknown user.
    let again = [
        "user",
        "promote",
        &sub,
        "--email",
        "new@example.test",
        "--password",
        PASSWORD,
    ];
    admin(&config, &again, "").refused(1, "is not anonymous");
    let other = sub_of(&env.new_anonymous().await);
    let taken = [
        "user",
        "promote",
        &other,
        "--email",
        "CLI@example.test",
        "--password",
        PASSWORD,
    ];
    admin(&config, &taken, "").refused(1, "already exists");
    let nobody = [
        "user",
        "promote",
        "usr_nobody",
        "--email",
        "n@example.test",
        "--password",
        PASSWORD,
    ];
    admin(&config, &nobody, "").refused(1, "unknown user");
    // Without a password: a usage error, exit 2.
    let bare = ["user", "promote", &other, "--email", "n@example.test"];
    assert_eq!(admin(&config, &bare, "").code, Some(2));

    let erased = admin(&config, &["user", "anonymize", &sub], "").json();
    assert_eq!(erased["id"], sub.as_str());
    assert_eq!(
        (erased["email"].clone(), erased["name"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(erased["anonymized_at"].is_string(), "{erased}");
    let (status, body) = env.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let statuses = support::oauth::login_attempts(
        &env.base(),
        "mobile",
        CALLBACK,
        "cli@example.test",
        &[PASSWORD],
    )
    .await;
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED]);
    admin(&config, &["user", "anonymize", &sub], "").refused(1, "anonymized already");
    let shown = admin(&config, &["user", "show", &sub], "").json();
    assert_eq!(shown["id"], sub.as_str());

    // The events went to the outbox with the changes; the audit log names the CLI.
    let events = env
        .db
        .rows(
            "SELECT event FROM event_outbox ORDER BY enqueued_at, id",
            &["event"],
        )
        .await;
    let events: Vec<&str> = events.iter().map(|r| r[0].as_str()).collect();
    for name in [
        "user.anonymous.created",
        "user.anonymous.promoted",
        "user.anonymized",
    ] {
        assert!(events.contains(&name), "{name}: {events:?}");
    }
    let audit = env
        .db
        .rows(
            &format!("SELECT actor, action FROM audit_log WHERE target = '{sub}' ORDER BY seq"),
            &["actor", "action"],
        )
        .await;
    assert!(
        audit.contains(&vec![
            "cli".to_owned(),
            "user.anonymous.promoted".to_owned()
        ]),
        "{audit:?}"
    );
    assert!(
        audit.contains(&vec!["cli".to_owned(), "user.anonymized".to_owned()]),
        "{audit:?}"
    );
    env.gw.shutdown().await;
}

async fn the_cli_creates_clients_with_the_anonymous_grant(db: TestDb) {
    let env = env(db).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, &env.yaml).unwrap();
    let client = |extra: &[&str]| {
        let mut args = vec![
            "client",
            "create",
            "--name",
            "app",
            "--api",
            API,
            "--scope",
            "read:data",
        ];
        args.extend_from_slice(extra);
        admin(&config, &args, "")
    };
    let made = client(&["--public", "--grant-type", "anonymous", "refresh_token"]).json();
    assert_eq!(made["grant_types"], json!(["anonymous", "refresh_token"]));
    client(&["--grant-type", "anonymous", "refresh_token"]).refused(1, "public clients");
    client(&["--public", "--grant-type", "anonymous"]).refused(1, "needs refresh_token");
    // The new client creates anonymous users at once.
    let id = made["client_id"].as_str().unwrap();
    let (status, body) = env.anonymous(id, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["anonymous"],
        true
    );
    env.gw.shutdown().await;
}

on_both_databases!(
    the_cli_promotes_and_anonymizes,
    the_cli_creates_clients_with_the_anonymous_grant,
);
