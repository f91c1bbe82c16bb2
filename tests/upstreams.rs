//! Upstreams over TLS and HTTP/2, end to end: an HTTPS upstream behind a private
//! CA (`ca_file`), the certificate checks that turn an untrusted or wrong-name
//! upstream into a 502 with a log line that says why, mTLS to the upstream
//! (`client_cert`), and `protocol: h2` by ALPN over TLS and by prior knowledge in
//! cleartext.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex, OnceLock};

use http::Version;
use support::tls::{Pki, server_config};
use support::*;

/// Log lines of this test binary (the gateway's workers log on their own
/// threads, so the subscriber is global).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

fn yaml(upstream: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
admin:
  listen: "127.0.0.1:0"
upstreams:
{upstream}
routes:
  - path: /*
    upstream: api
    auth: anonymous
"#
    )
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_its_ca_file() {
    logs();
    let pki = Pki::new("upstream");
    let files = pki.server("api", &["localhost"]);
    let up = Upstream::start_with(UpstreamKind {
        tls: Some(server_config(&files, &[b"http/1.1"], None)),
        h2_only: false,
    })
    .await;
    let url = up.url_for("localhost");
    let trusted = format!(
        "  api: {{ url: \"{url}\", ca_file: \"{}\", connect_timeout: 2s, timeout: 5s }}",
        pki.ca_file.display()
    );
    let gw = Gateway::start(&yaml(&trusted)).await;
    let (status, _, body) = get(&gw.url("/hello?x=1"), None).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.target, "/hello?x=1");
    assert_eq!(seen.version, Version::HTTP_11);
    // Kept alive: the second request goes over the pooled connection.
    assert_eq!(get(&gw.url("/again"), None).await.0, 200);
    gw.shutdown().await;

    // Without the CA, the upstream is not trusted: 502, and the log says why.
    let untrusted = format!("  api: {{ url: \"{url}\", connect_timeout: 2s, timeout: 5s }}");
    let gw = Gateway::start(&yaml(&untrusted)).await;
    let before = up.count();
    let (status, _, body) = get(&gw.url("/hello"), None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "bad_gateway");
    assert_eq!(up.count(), before);
    eventually("the log line", || async {
        logged("Upstream request failed") && logged("UnknownIssuer")
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_502() {
    logs();
    let pki = Pki::new("upstream");
    let files = pki.server("other", &["other.example.test"]);
    let up = Upstream::start_with(UpstreamKind {
        tls: Some(server_config(&files, &[b"http/1.1"], None)),
        h2_only: false,
    })
    .await;
    let cfg = format!(
        "  api: {{ url: \"{}\", ca_file: \"{}\", connect_timeout: 2s, timeout: 5s }}",
        up.url_for("localhost"),
        pki.ca_file.display()
    );
    let gw = Gateway::start(&yaml(&cfg)).await;
    let (status, _, body) = get(&gw.url("/x"), None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.count(), 0);
    eventually("the log line", || async {
        logged("certificate not valid for name")
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn mtls_to_the_upstream_with_client_cert() {
    let pki = Pki::new("upstream");
    let clients = Pki::new("gateways");
    let files = pki.server("api", &["localhost"]);
    let up = Upstream::start_with(UpstreamKind {
        tls: Some(server_config(
            &files,
            &[b"http/1.1"],
            Some(&clients.ca_file),
        )),
        h2_only: false,
    })
    .await;
    let client = clients.client("portcullis");
    let with_cert = format!(
        "  api:\n    url: \"{}\"\n    ca_file: \"{}\"\n    client_cert: {{ cert: \"{}\", key: \"{}\" }}\n    connect_timeout: 2s",
        up.url_for("localhost"),
        pki.ca_file.display(),
        client.cert.display(),
        client.key.display(),
    );
    let gw = Gateway::start(&yaml(&with_cert)).await;
    let (status, _, body) = get(&gw.url("/m"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(up.last().client_cert);
    gw.shutdown().await;

    let without = format!(
        "  api: {{ url: \"{}\", ca_file: \"{}\", connect_timeout: 2s }}",
        up.url_for("localhost"),
        pki.ca_file.display(),
    );
    let gw = Gateway::start(&yaml(&without)).await;
    let (status, _, _) = get(&gw.url("/m"), None).await;
    assert_eq!(status, 502);
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_changed_ca_file_or_client_certificate_is_read_again() {
    // The CA bundle and the client certificate keep their paths and change
    // their contents (a compromised root removed, a certificate rotated): the
    // watcher reloads, and the upstream is compiled anew from the new files.
    let pki = Pki::new("upstream");
    let clients = Pki::new("gateways");
    let up = Upstream::start_with(UpstreamKind {
        tls: Some(server_config(
            &pki.server("api", &["localhost"]),
            &[b"http/1.1"],
            Some(&clients.ca_file),
        )),
        h2_only: false,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("client.pem"),
        dir.path().join("client.key"),
    );
    let install = |from: &support::tls::CertFiles| {
        std::fs::copy(&from.cert, &cert).unwrap();
        std::fs::copy(&from.key, &key).unwrap();
    };
    std::fs::copy(&pki.ca_file, &ca).unwrap();
    install(&clients.client("portcullis"));
    let upstream = format!(
        "  api:\n    url: \"{}\"\n    ca_file: \"{}\"\n    client_cert: {{ cert: \"{}\", key: \"{}\" }}\n    connect_timeout: 2s",
        up.url_for("localhost"),
        ca.display(),
        cert.display(),
        key.display(),
    );
    let path = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&path, &yaml(&upstream), true).await;
    assert_eq!(get(&gw.url("/a"), None).await.0, 200);

    // A client certificate from a CA the upstream does not trust: refused by
    // the upstream once the new one is in use.
    let strangers = Pki::new("strangers");
    install(&strangers.client("portcullis"));
    eventually("the reload", || async {
        gw.metric("portcullis_config_generation").await == 2.0
    })
    .await;
    assert_eq!(get(&gw.url("/b"), None).await.0, 502);
    install(&clients.client("portcullis"));
    eventually("the reload", || async {
        gw.metric("portcullis_config_generation").await == 3.0
    })
    .await;
    assert_eq!(get(&gw.url("/c"), None).await.0, 200);

    // The upstream's CA taken out of the bundle: no longer trusted.
    std::fs::copy(&strangers.ca_file, &ca).unwrap();
    eventually("the reload", || async {
        gw.metric("portcullis_config_generation").await == 4.0
    })
    .await;
    assert_eq!(get(&gw.url("/d"), None).await.0, 502);
    assert_eq!(up.count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_broken_client_key_fails_the_start() {
    let pki = Pki::new("upstream");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.key");
    std::fs::write(&key, "not a key").unwrap();
    let client = pki.client("portcullis");
    let cfg = format!(
        "  api:\n    url: \"https://localhost:1\"\n    client_cert: {{ cert: \"{}\", key: \"{}\" }}",
        client.cert.display(),
        key.display(),
    );
    let config =
        portcullis::config::Config::from_yaml(&yaml(&cfg), std::path::Path::new("t.yaml")).unwrap();
    let err = portcullis::server::start(config, Default::default())
        .await
        .expect_err("a broken key must not start");
    let shown = portcullis::telemetry::events::chain(&err);
    assert!(shown.contains("client.key"), "{shown}");
}

#[tokio::test]
async fn protocol_h2_over_tls_and_in_cleartext() {
    let pki = Pki::new("upstream");
    let files = pki.server("api", &["localhost"]);
    let tls_h2 = Upstream::start_with(UpstreamKind {
        tls: Some(server_config(&files, &[b"h2"], None)),
        h2_only: true,
    })
    .await;
    let h2c = Upstream::start_with(UpstreamKind {
        tls: None,
        h2_only: true,
    })
    .await;
    for (up, extra) in [
        (&tls_h2, format!(", ca_file: \"{}\"", pki.ca_file.display())),
        (&h2c, String::new()),
    ] {
        let url = if up.url().starts_with("https") {
            up.url_for("localhost")
        } else {
            up.url()
        };
        let cfg = format!("  api: {{ url: \"{url}\", protocol: h2{extra} }}");
        let gw = Gateway::start(&yaml(&cfg)).await;
        for i in 0..3 {
            let req = http::Request::post(gw.url(&format!("/h2/{i}?q=1")))
                .header("host", "api.example.test")
                .body(http_body_util::Full::new(bytes::Bytes::from("over h2")))
                .unwrap();
            let (status, _, body) = send(req).await;
            assert_eq!(status, 200, "{body}");
            let seen = up.last();
            assert_eq!(seen.version, Version::HTTP_2);
            assert_eq!(seen.target, format!("/h2/{i}?q=1"));
            assert_eq!(seen.body, "over h2");
            // The client's host travels as :authority.
            assert_eq!(seen.headers.get("host").map(|h| h.to_str().unwrap()), None);
            assert_eq!(seen.headers["x-forwarded-host"], "api.example.test");
        }
        gw.shutdown().await;
    }
}
