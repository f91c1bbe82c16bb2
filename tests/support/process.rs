//! The real `portcullis` binary, run in the background on a configuration
//! file; its JSON log on stdout is read for the `Listening` line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Variables of the test's own environment that would change the binary.
const AMBIENT: &[&str] = &[
    "PORTCULLIS_CONFIG",
    "PORTCULLIS_LOG_FORMAT",
    "PORTCULLIS_MASTER_KEY",
    "RUST_LOG",
];

/// A configuration file (`gateway.yaml`) in a temporary directory of its
/// own, with the upstream its routes send to; both live as long as it does.
pub struct ConfigFile {
    pub dir: tempfile::TempDir,
    /// The file, for `portcullis run -c` and `portcullis admin -c`.
    pub config: PathBuf,
    pub up: super::Upstream,
}

impl ConfigFile {
    /// Starts an upstream, then writes `yaml(its URL)` to the file.
    pub async fn write(yaml: impl FnOnce(&str) -> String) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let up = super::Upstream::start().await;
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml(&up.url())).unwrap();
        ConfigFile { dir, config, up }
    }
}

pub struct Portcullis {
    child: tokio::process::Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// Every JSON line of its log so far.
    logs: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Portcullis {
    /// Runs `portcullis run -c <config>` and waits for its `Listening` line
    /// and for `/readyz` to answer 200.
    pub async fn start(config: &Path) -> Portcullis {
        Portcullis::start_with_env(config, &[]).await
    }

    /// As [`Portcullis::start`], with `vars` added to its environment.
    pub async fn start_with_env(config: &Path, vars: &[(&str, &str)]) -> Portcullis {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // The test's own environment out first, then what the test gives.
        for name in AMBIENT {
            cmd.env_remove(name);
        }
        cmd.envs(vars.iter().copied());
        let mut child = cmd.spawn().expect("spawn portcullis");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // Keeps reading (and keeping) the log, so that the pipe never fills.
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["message"] == "Listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(v.clone());
                    }
                }
                kept.lock().unwrap().push(v);
            }
        });
        let listening = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("no `Listening` line within 30 s")
            .expect("portcullis exited before listening");
        let addr = |field: &str| -> SocketAddr {
            listening[field]
                .as_str()
                .unwrap_or_else(|| panic!("no `{field}` in {listening}"))
                .parse()
                .unwrap()
        };
        let p = Portcullis {
            child,
            proxy: addr("proxy"),
            admin: addr("admin"),
            logs,
        };
        let readyz = format!("http://{}/readyz", p.admin);
        super::eventually("/readyz to answer 200", || {
            let readyz = readyz.clone();
            async move { super::get(&readyz, None).await.0 == 200 }
        })
        .await;
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// The log lines so far whose `message` contains `text`.
    pub fn logged(&self, text: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned()
            .collect()
    }

    /// Every log line so far, as written.
    pub fn log_text(&self) -> String {
        let logs = self.logs.lock().unwrap();
        logs.iter().map(|v| v.to_string() + "\n").collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL (`kill -9`): no drain, no shutdown hook; waits for the exit.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill portcullis");
    }
}

/// Runs `portcullis admin -c <config> <args>`; asserts exit 0 and returns
/// the JSON it printed.
pub fn admin(config: &Path, args: &[&str]) -> Value {
    admin_with_env(config, args, &[])
}

/// As [`admin`], with `vars` added to its environment.
pub fn admin_with_env(config: &Path, args: &[&str], vars: &[(&str, &str)]) -> Value {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("admin").arg("-c").arg(config).args(args);
    for name in AMBIENT {
        cmd.env_remove(name);
    }
    cmd.envs(vars.iter().copied());
    let out = cmd.output().expect("run portcullis admin");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "admin {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("admin {args:?}: {e}: {stdout}"))
}

/// What [`seed`] created.
pub struct Seeded {
    pub client_id: String,
    pub client_secret: String,
    pub org_id: String,
}

/// Creates, with `portcullis admin`, a client_credentials client for
/// `api`'s `read:data`, and the user `email` ("Ada"), a `reader` (of
/// `api`'s `read:data`) in the organization Acme.
pub fn seed(config: &Path, api: &str, email: &str, password: &str) -> Seeded {
    let m2m = ["--name", "m2m", "--grant-type", "client_credentials"];
    let api_scope = ["--api", api, "--scope", "read:data"];
    let client = admin(
        config,
        &[&["client", "create"][..], &m2m, &api_scope].concat(),
    );
    let org = admin(config, &["org", "create", "--name", "Acme"]);
    let user = admin(
        config,
        &[
            "user",
            "create",
            "--email",
            email,
            "--password",
            password,
            "--name",
            "Ada",
        ],
    );
    admin(
        config,
        &[&["role", "create", "--name", "reader"][..], &api_scope].concat(),
    );
    let text = |v: &Value, key: &str| v[key].as_str().expect(key).to_owned();
    let org_id = text(&org, "id");
    let user_id = text(&user, "id");
    admin(
        config,
        &[
            "member", "add", "--org", &org_id, "--user", &user_id, "--role", "reader",
        ],
    );
    Seeded {
        client_id: text(&client, "client_id"),
        client_secret: text(&client, "client_secret"),
        org_id,
    }
}
