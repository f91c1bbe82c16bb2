//! Hot reload: a new configuration is built completely, then swapped in one
//! step; a bad file is refused with its location and the old configuration
//! serves on; no request fails because of a reload, even under load; requests
//! in flight finish on the configuration they started with; unchanged issuers
//! keep their key sets (no refetch); SIGHUP reloads the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;

fn yaml(jwks: &JwksServer, a: &Upstream, b: &Upstream, target: &str, extra_route: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 2
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{AUDIENCE}"]
upstreams:
  a: {{ url: "{a}", connect_timeout: 1s, timeout: 10s }}
  b: {{ url: "{b}", connect_timeout: 1s, timeout: 10s }}
routes:
{extra_route}  - path: /*
    upstream: {target}
    auth: anonymous
"#,
        jwks = jwks.url(),
        a = a.url(),
        b = b.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_never_fail_a_request() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&path, &yaml(&jwks, &a, &b, "a", ""), true).await;
    let fetches = jwks.fetches();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), gw.url("/load"));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(&url, None).await.0.as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Good and bad files, one after another, while the clients run.
    let bad_files = [
        "server:\n  listen: [not, an, address]\n".to_owned(),
        yaml(&jwks, &a, &b, "a", "").replace("auth: anonymous", "auth: sometimes"),
        yaml(&jwks, &a, &b, "nowhere", ""),
        yaml(&jwks, &a, &b, "a", "").replace("routes:", "routes:\n  - unknown_key: 1"),
    ];
    for (round, bad) in bad_files.iter().enumerate() {
        let target = if round % 2 == 0 { "b" } else { "a" };
        std::fs::write(&path, yaml(&jwks, &a, &b, target, "")).unwrap();
        let want = round as f64 * 2.0 + 2.0;
        eventually("the good file to load", || async {
            gw.metric("portcullis_config_generation").await >= want
        })
        .await;
        let failures = gw.metric("portcullis_config_reload_failures_total").await;
        std::fs::write(&path, bad).unwrap();
        eventually("the bad file to be refused", || async {
            gw.metric("portcullis_config_reload_failures_total").await > failures
        })
        .await;
        // The same good file again (a new generation, nothing else changes).
        std::fs::write(&path, yaml(&jwks, &a, &b, target, "")).unwrap();
        eventually("the good file again", || async {
            gw.metric("portcullis_config_generation").await >= want + 1.0
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 50, "the clients barely ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request failed during a reload"
    );
    assert!(a.count() > 0 && b.count() > 0, "both configurations served");
    // The unchanged issuer kept its key set: nothing was fetched again.
    assert_eq!(jwks.fetches(), fetches);
    assert!(
        gw.metric("portcullis_config_last_load_timestamp_seconds")
            .await
            > 1.0e9
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_its_configuration() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&path, &yaml(&jwks, &a, &b, "a", ""), false).await;
    a.set_delay(Duration::from_millis(800));
    let url = gw.url("/slow");
    let slow = tokio::spawn(async move { get(&url, None).await });
    eventually("the slow request to arrive", || async { a.count() == 1 }).await;
    std::fs::write(&path, yaml(&jwks, &a, &b, "b", "")).unwrap();
    let reloaded = gw.running().reload().await.expect("a good file");
    assert_eq!(reloaded.generation, 2);
    // New requests go to the new upstream at once; the slow one completes at A.
    assert_eq!(get(&gw.url("/new"), None).await.0, 200);
    assert_eq!(b.count(), 1);
    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok 0\n"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_is_refused_with_its_location_and_the_old_one_serves() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&path, &yaml(&jwks, &a, &b, "a", ""), false).await;
    std::fs::write(&path, yaml(&jwks, &a, &b, "nowhere", "")).unwrap();
    let err = gw
        .running()
        .reload()
        .await
        .expect_err("an unknown upstream");
    let shown = format!("{err}: {}", portcullis::telemetry::events::chain(&err));
    match err {
        portcullis::server::ReloadError::Config(errors) => {
            let e = &errors.errors()[0];
            assert_eq!(e.key.as_deref(), Some("routes[0].upstream"), "{shown}");
            assert_eq!(e.line, 17, "{shown}");
            assert!(e.file.ends_with("gateway.yaml"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        gw.metric("portcullis_config_reload_failures_total").await,
        1.0
    );
    assert_eq!(gw.metric("portcullis_config_generation").await, 1.0);
    assert_eq!(get(&gw.url("/still"), None).await.0, 200);
    assert_eq!(a.count(), 1);
    // A file that parses but names a TLS file that is not there is refused too.
    std::fs::write(
        &path,
        yaml(&jwks, &a, &b, "a", "").replace(
            "  shutdown_grace: 5s\n",
            "  shutdown_grace: 5s\n  tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }\n",
        ),
    )
    .unwrap();
    assert!(matches!(
        gw.running().reload().await,
        Err(portcullis::server::ReloadError::Tls(_))
    ));
    assert_eq!(get(&gw.url("/still"), None).await.0, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_changed_issuer_gets_new_keys_and_an_unchanged_one_keeps_them() {
    let main_jwks = JwksServer::start(&[&rsa()]).await;
    let other_jwks = JwksServer::start(&[&ec()]).await;
    let up = Upstream::start().await;
    let two = |other_aud: &str| {
        format!(
            r#"server:
  listen: "127.0.0.1:0"
  workers: 1
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{}"
    audiences: ["{AUDIENCE}"]
  - id: other
    issuer: "https://other.test"
    jwks_uri: "{}"
    audiences: ["{other_aud}"]
upstreams:
  api: {{ url: "{}" }}
routes:
  - path: /*
    upstream: api
"#,
            main_jwks.url(),
            other_jwks.url(),
            up.url()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&path, &two("aud-1"), false).await;
    let main_keys = gw.issuer(0);
    let (main_before, other_before) = (main_jwks.fetches(), other_jwks.fetches());
    std::fs::write(&path, two("aud-2")).unwrap();
    gw.running().reload().await.expect("reload");
    assert!(
        Arc::ptr_eq(&main_keys, &gw.issuer(0)),
        "the unchanged issuer was rebuilt"
    );
    eventually("the changed issuer's keys", || async {
        gw.readyz().await == http::StatusCode::OK
    })
    .await;
    assert_eq!(main_jwks.fetches(), main_before);
    assert!(other_jwks.fetches() > other_before);
    // The new audience applies at once.
    let t = token(
        &ec(),
        &claims_with(serde_json::json!({"iss": "https://other.test", "aud": "aud-2"})),
    );
    assert_eq!(get(&gw.url("/x"), Some(&t)).await.0, 200);
    gw.shutdown().await;
}
