//! The spec's "Command line" section against the real binary: `check` and its
//! located errors, `${VAR}` expansion, where the configuration is looked for,
//! `--version`, and `run` (or no command at all) serving until SIGTERM / SIGINT,
//! draining in-flight requests, and exiting 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Variables that would change what the binary does, removed from every run.
const AMBIENT: &[&str] = &[
    "PORTCULLIS_CONFIG",
    "PORTCULLIS_LOG_FORMAT",
    "RUST_LOG",
    "PORTCULLIS_TEST_LISTEN",
    "PORTCULLIS_TEST_UNSET",
];

/// A valid file (lines are numbered: the error tests below edit known lines).
const GOOD: &str = r#"server:
  listen: "${PORTCULLIS_TEST_LISTEN:-127.0.0.1:18080}"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "https://issuer.test"
    jwks_uri: "http://127.0.0.1:9/jwks.json"
    audiences: ["https://api.test"]
upstreams:
  api: { url: "http://127.0.0.1:9", connect_timeout: 1s, timeout: 5s }
routes:
  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /orgs/{org}/items/*
    methods: [GET, HEAD]
    upstream: api
    scopes: [read:data]
    org_param: org
    issuers: [main]
  - path: /*
    upstream: api
"#;

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary to completion in `dir` with `env` set (and [`AMBIENT`] unset).
fn portcullis(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for name in AMBIENT {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run portcullis");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `GOOD` with line `n` (1-based) replaced by `line`.
fn good_with_line(n: usize, line: &str) -> String {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[n - 1] = line;
    lines.join("\n") + "\n"
}

/// Checks `text` and expects exit 1 with an error at `file:line:col: key`.
fn assert_refused(text: &str, line: usize, col: usize, key: &str, mentions: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.yaml", text);
    let p = path.to_str().unwrap();
    let out = portcullis(dir.path(), &["check", "-c", p], &[]);
    assert_eq!(
        out.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let located = format!("{p}:{line}:{col}: {key}");
    assert!(
        out.stderr.contains(&located),
        "expected `{located}` in:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains(mentions), "{}", out.stderr);
    assert!(!out.stdout.contains("valid\n"), "{}", out.stdout);
}

// === check ===

#[test]
fn check_accepts_a_good_file_and_prints_the_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "good.yaml", GOOD);
    let p = path.to_str().unwrap();
    let out = portcullis(dir.path(), &["check", "-c", p], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!("{p}: valid\n")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("routes (first match wins):"));
    let routes: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("routes"))
        .skip(1)
        .collect();
    assert_eq!(routes.len(), 3, "{}", out.stdout);
    // In file order, each with its methods, upstream, auth mode and requirements.
    assert!(routes[0].contains("/public/*") && routes[0].contains("auth=anonymous"));
    assert!(routes[1].contains("/orgs/{org}/items/*"));
    assert!(routes[1].contains("GET,HEAD"));
    assert!(routes[1].contains("scopes=read:data"));
    assert!(routes[1].contains("org_param=org"));
    assert!(routes[1].contains("issuers=main"));
    assert!(routes[2].contains("/*") && routes[2].contains("auth=required"));
    assert!(routes.iter().all(|r| r.contains("-> api")), "{routes:?}");
}

#[test]
fn unknown_key_is_refused_with_its_location() {
    let text = good_with_line(16, "    auth: anonymous\n    timeuot: 5s");
    assert_refused(&text, 17, 5, "routes[0]", "unknown field `timeuot`");
    let text = good_with_line(3, "  shutdown_grace: 5s\n  colour: blue");
    assert_refused(&text, 4, 3, "server", "unknown field `colour`");
}

#[test]
fn bad_duration_is_refused_with_its_location() {
    let text = good_with_line(3, "  shutdown_grace: 5 parsecs");
    assert_refused(
        &text,
        3,
        19,
        "server.shutdown_grace",
        "invalid duration `5 parsecs`",
    );
}

#[test]
fn unknown_upstream_is_refused_with_its_location() {
    let text = good_with_line(24, "    upstream: nope");
    assert_refused(
        &text,
        24,
        5,
        "routes[2].upstream",
        "unknown upstream `nope`",
    );
}

#[test]
fn every_cross_reference_error_is_reported_at_once() {
    let text =
        good_with_line(24, "    upstream: nope").replace("issuers: [main]", "issuers: [other]");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.yaml", &text);
    let p = path.to_str().unwrap();
    let out = portcullis(dir.path(), &["check", "-c", p], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains(&format!("{p}:22:")), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("routes[1].issuers[0]: unknown issuer `other`")
    );
    assert!(
        out.stderr
            .contains(&format!("{p}:24:5: routes[2].upstream"))
    );
    assert!(out.stderr.contains("(2 error(s))"), "{}", out.stderr);
}

#[test]
fn unset_variable_is_refused_naming_it() {
    let text = good_with_line(
        12,
        "  api: { url: \"${PORTCULLIS_TEST_UNSET}\", connect_timeout: 1s, timeout: 5s }",
    );
    assert_refused(
        &text,
        12,
        16,
        "upstreams.api.url",
        "environment variable `PORTCULLIS_TEST_UNSET` is not set",
    );
}

#[test]
fn variables_and_defaults_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "good.yaml", GOOD);
    let p = path.to_str().unwrap();
    let out = portcullis(dir.path(), &["check", "-c", p], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("listen 127.0.0.1:18080\n"),
        "{}",
        out.stdout
    );
    let out = portcullis(
        dir.path(),
        &["check", "-c", p],
        &[("PORTCULLIS_TEST_LISTEN", "127.0.0.1:18081")],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("listen 127.0.0.1:18081\n"),
        "{}",
        out.stdout
    );
    // The value is parsed after expansion, with the same located errors.
    let out = portcullis(
        dir.path(),
        &["check", "-c", p],
        &[("PORTCULLIS_TEST_LISTEN", "not an address")],
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains(&format!("{p}:2:")), "{}", out.stderr);
    assert!(out.stderr.contains("server.listen"), "{}", out.stderr);
}

#[test]
fn config_path_comes_from_flag_then_env_then_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", GOOD);
    let bad = write(
        dir.path(),
        "bad.yaml",
        &good_with_line(24, "    upstream: nope"),
    );
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let out = portcullis(dir.path(), &["check"], &[("PORTCULLIS_CONFIG", good)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.starts_with(&format!("{good}: valid")));

    let out = portcullis(dir.path(), &["check"], &[("PORTCULLIS_CONFIG", bad)]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!("{bad}:24:5")),
        "{}",
        out.stderr
    );

    // `-c` wins over the environment.
    let out = portcullis(
        dir.path(),
        &["check", "-c", good],
        &[("PORTCULLIS_CONFIG", bad)],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // Neither: ./gateway.yaml.
    let out = portcullis(dir.path(), &["check"], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("gateway.yaml"), "{}", out.stderr);
    write(dir.path(), "gateway.yaml", GOOD);
    let out = portcullis(dir.path(), &["check"], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("gateway.yaml: valid"),
        "{}",
        out.stdout
    );
}

#[test]
fn version_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(dir.path(), &["--version"], &[]);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout.trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
    // A usage error is not a configuration error.
    let out = portcullis(dir.path(), &["frobnicate"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

// === run ===

/// A gateway binary running in the background, its stdout collected line by line.
struct Process {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Process {
    /// Starts the binary and waits for its `Listening` line.
    async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for name in AMBIENT {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn portcullis");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let all = log.clone();
        let reader = tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let listening = next_message(&mut lines, "Listening").await;
        let addr = |field: &str| -> SocketAddr {
            listening[field]
                .as_str()
                .unwrap_or_else(|| panic!("no `{field}` in {listening}"))
                .parse()
                .unwrap_or_else(|e| panic!("`{field}` in {listening}: {e}"))
        };
        let (proxy, admin) = (addr("proxy"), addr("admin"));
        assert_ne!(proxy.port(), 0);
        assert_ne!(admin.port(), 0);
        Process {
            child,
            lines,
            log,
            reader: Some(reader),
            proxy,
            admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("portcullis did not exit")
            .unwrap()
            .code()
    }

    /// Everything the process wrote to stdout, once it has exited.
    async fn log(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            tokio::time::timeout(Duration::from_secs(20), reader)
                .await
                .expect("stdout was not closed")
                .unwrap();
        }
        self.log.lock().unwrap().clone()
    }
}

/// The next JSON log line whose message is `message` (other lines are skipped).
async fn next_message(lines: &mut mpsc::UnboundedReceiver<String>, message: &str) -> Value {
    let wait = async {
        while let Some(line) = lines.recv().await {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                panic!("not a JSON log line: {line}");
            };
            if v["message"] == message {
                return v;
            }
        }
        panic!("stdout closed before a `{message}` line");
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no `{message}` line"))
}

fn run_config(upstream: &Upstream, jwks: &JwksServer) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 10s
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{AUDIENCE}"]
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 30s }}
routes:
  - path: /public/*
    upstream: api
    auth: anonymous
  - path: /*
    upstream: api
"#,
        jwks = jwks.url(),
        up = upstream.url(),
    )
}

#[tokio::test]
async fn run_serves_logs_and_drains_on_sigterm() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "run.yaml", &run_config(&up, &jwks));
    let mut gw = Process::start(dir.path(), &["run", "-c", path.to_str().unwrap()], &[]).await;

    // The admin listener answers; the keys arrive; requests are served.
    let admin = format!("http://{}", gw.admin);
    assert_eq!(get(&format!("{admin}/healthz"), None).await.0, 200);
    eventually("readiness", || async {
        get(&format!("{admin}/readyz"), None).await.0 == 200
    })
    .await;
    assert_eq!(get(&gw.url("/public/a?x=1"), None).await.0, 200);
    assert_eq!(up.last().target, "/public/a?x=1");
    let good = token(&key, &claims());
    let (status, _, body) = get(&gw.url("/private"), Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    let forged = format!("{}x", &good[..good.len() - 1]);
    assert_eq!(get(&gw.url("/private"), Some(&forged)).await.0, 401);

    // One JSON access-log line per request, without the token.
    let access = next_message(&mut gw.lines, "Request").await;
    assert_eq!(access["path"], "/public/a");
    assert_eq!(access["route"], "/public/*");
    assert_eq!(access["status"], 200);
    assert_eq!(access["method"], "GET");
    let access = next_message(&mut gw.lines, "Request").await;
    assert_eq!(access["sub"], "user-1");
    let access = next_message(&mut gw.lines, "Request").await;
    assert_eq!(access["status"], 401);
    assert_eq!(access["reason"], "bad_signature");

    // A slow request is in flight when SIGTERM arrives: it still completes.
    up.set_delay(Duration::from_secs(2));
    let before = up.count();
    let url = gw.url("/public/slow");
    let slow = tokio::spawn(async move { get(&url, None).await });
    eventually("the slow request to reach the upstream", || async {
        up.count() > before
    })
    .await;
    gw.signal("TERM");
    next_message(&mut gw.lines, "Shutting down: draining in-flight requests").await;
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ok 0\n");
    assert_eq!(gw.exit_code().await, Some(0));

    let log = gw.log().await;
    assert!(log.iter().any(|l| l.contains("\"message\":\"Stopped\"")));
    for line in &log {
        assert!(!line.contains(&good), "a token was logged: {line}");
        assert!(!line.contains(&forged), "a token was logged: {line}");
    }
}

#[tokio::test]
async fn no_subcommand_means_run_and_sigint_stops_it() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gw.yaml", &run_config(&up, &jwks));
    let mut gw = Process::start(
        dir.path(),
        &[],
        &[("PORTCULLIS_CONFIG", path.to_str().unwrap())],
    )
    .await;
    assert_eq!(get(&gw.url("/public/a"), None).await.0, 200);
    assert_eq!(up.count(), 1);
    gw.signal("INT");
    assert_eq!(gw.exit_code().await, Some(0));
}

#[tokio::test]
async fn run_with_a_bad_file_or_a_taken_port_fails_with_distinct_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        &good_with_line(24, "    upstream: nope"),
    );
    let out = portcullis(dir.path(), &["run", "-c", bad.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("routes[2].upstream"), "{}", out.stderr);

    // The address is held by this test: the gateway cannot bind it (a runtime error).
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let text = good_with_line(2, &format!("  listen: \"{addr}\""));
    let path = write(dir.path(), "taken.yaml", &text);
    let out = portcullis(dir.path(), &["run", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains(&addr), "{}", out.stderr);
}

#[tokio::test]
async fn sighup_reloads_the_configuration() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = run_config(&up, &jwks);
    let path = write(dir.path(), "run.yaml", &text);
    let mut gw = Process::start(dir.path(), &["run", "-c", path.to_str().unwrap()], &[]).await;
    assert_eq!(get(&gw.url("/open/a"), None).await.0, 401);
    // The same length, the same modification time and inode: only SIGHUP can
    // tell the process that the file changed.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let edited = text.replace("path: /public/*", "path: /open/*  ");
    assert_eq!(edited.len(), text.len());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, edited.as_bytes()).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    gw.signal("HUP");
    let reloaded = next_message(&mut gw.lines, "Configuration reloaded").await;
    assert_eq!(reloaded["generation"], 2);
    assert_eq!(get(&gw.url("/open/a"), None).await.0, 200);
    // A broken file on SIGHUP: refused, located, and the process serves on.
    std::fs::write(&path, "routes: [").unwrap();
    gw.signal("HUP");
    let refused = next_message(&mut gw.lines, "Configuration reload refused").await;
    assert!(
        refused["error"].as_str().unwrap().contains("run.yaml"),
        "{refused}"
    );
    assert_eq!(get(&gw.url("/open/a"), None).await.0, 200);
    gw.signal("TERM");
    assert_eq!(gw.exit_code().await, Some(0));
}
