//! TLS termination end to end, with certificates made in the test (rcgen): ALPN
//! `h2` and `http/1.1` on one port, TLS 1.0 and 1.1 refused, certificates chosen
//! by SNI, client certificates (required, optional, from the wrong CA) and what
//! the upstream learns of them, and certificate rotation while a connection
//! stays open — a broken new file refused while the old certificate serves on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::tls::{CertFiles, ClientOpts, Pki, alpn, connect, served_for};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A gateway config with `server_tls` (YAML lines under `server:`) in front of
/// `up`, anonymous routes only.
fn yaml(server_tls: &str, up: &Upstream) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
  shutdown_grace: 5s
{server_tls}
admin:
  listen: "127.0.0.1:0"
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /*
    upstream: api
    auth: anonymous
"#,
        up = up.url(),
    )
}

fn one_cert(files: &CertFiles) -> String {
    format!(
        "  tls: {{ cert: \"{}\", key: \"{}\" }}",
        files.cert.display(),
        files.key.display()
    )
}

/// GET `path` over an established TLS stream, with the HTTP version ALPN chose.
async fn get_over(stream: TlsStream<TcpStream>, path: &str) -> (StatusCode, Version, String) {
    let h2 = alpn(&stream).as_deref() == Some(b"h2");
    let req = Request::get(path)
        .header("host", "api.example.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let io = TokioIo::new(stream);
    let resp = if h2 {
        let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = format!("https://api.example.test{path}").parse().unwrap();
        parts.headers.remove("host");
        tx.send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    };
    let (status, version) = (resp.status(), resp.version());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn alpn_offers_h2_and_http1_on_one_port() {
    let pki = Pki::new("gw");
    let files = pki.server("api", &["api.example.test"]);
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&one_cert(&files), &up)).await;
    let roots = [pki.ca_der()];
    for (offer, want, version) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"h2"[..], Version::HTTP_2),
        (&[&b"http/1.1"[..]][..], &b"http/1.1"[..], Version::HTTP_11),
    ] {
        let opts = ClientOpts {
            alpn: offer,
            ..ClientOpts::new("api.example.test", &roots)
        };
        let stream = connect(gw.addr, &opts).await.unwrap();
        assert_eq!(alpn(&stream).as_deref(), Some(want));
        let (status, got_version, body) = get_over(stream, "/hello").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(got_version, version);
        let seen = up.last();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.headers["host"], "api.example.test");
        assert!(
            seen.headers["forwarded"]
                .to_str()
                .unwrap()
                .ends_with("proto=https")
        );
    }
    // Without ALPN at all: HTTP/1.1.
    let opts = ClientOpts {
        alpn: &[],
        ..ClientOpts::new("api.example.test", &roots)
    };
    let (status, version, _) = get_over(connect(gw.addr, &opts).await.unwrap(), "/x").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11));
    // Cleartext to a TLS port gets nowhere.
    let answer = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    gw.shutdown().await;
}

/// A bare ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1).
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[1, 0]); // null compression
    let mut hs = vec![1u8, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused() {
    let pki = Pki::new("gw");
    let files = pki.server("api", &["api.example.test"]);
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&one_cert(&files), &up)).await;
    for version in [[3u8, 1], [3, 2]] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(&legacy_client_hello(version)).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.read_to_end(&mut answer),
        )
        .await;
        // A fatal alert (record 0x15, level 2: protocol_version or
        // handshake_failure), never a ServerHello (a handshake record, 0x16).
        assert_eq!(answer.first(), Some(&0x15), "{version:?}: {answer:?}");
        assert_eq!(answer.get(5), Some(&2), "fatal: {answer:?}");
        assert!(matches!(answer.get(6), Some(&(40 | 70))), "{answer:?}");
    }
    // TLS 1.2 alone is fine.
    let roots = [pki.ca_der()];
    let opts = ClientOpts {
        versions: &[&rustls::version::TLS12],
        ..ClientOpts::new("api.example.test", &roots)
    };
    let (status, _, _) = get_over(connect(gw.addr, &opts).await.unwrap(), "/x").await;
    assert_eq!(status, 200);
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_the_first_is_the_default() {
    let pki = Pki::new("gw");
    let default = pki.server("default", &["default.example.test"]);
    let a = pki.server("a", &["a.example.test"]);
    let b = pki.server("b", &["b.example.test", "*.b.example.test"]);
    let up = Upstream::start().await;
    let list = format!(
        "  tls:\n    - {{ cert: \"{}\", key: \"{}\" }}\n    - {{ cert: \"{}\", key: \"{}\", server_names: [a.example.test] }}\n    - {{ cert: \"{}\", key: \"{}\", server_names: [b.example.test, \"*.b.example.test\"] }}",
        default.cert.display(),
        default.key.display(),
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display(),
    );
    let gw = Gateway::start(&yaml(&list, &up)).await;
    let roots = [pki.ca_der()];
    for (sni, expected) in [
        ("a.example.test", "a.example.test"),
        ("b.example.test", "b.example.test"),
        ("x.b.example.test", "b.example.test"),
        ("A.EXAMPLE.TEST", "a.example.test"),
    ] {
        let stream = connect(gw.addr, &ClientOpts::new(sni, &roots))
            .await
            .unwrap();
        assert!(served_for(&stream, expected), "{sni} should get {expected}");
    }
    // A name no certificate lists gets the default, which then fails to verify.
    let err = connect(gw.addr, &ClientOpts::new("c.example.test", &roots)).await;
    assert!(
        err.is_err(),
        "the default certificate is not for c.example.test"
    );
    let err = connect(gw.addr, &ClientOpts::new("x.y.b.example.test", &roots)).await;
    assert!(err.is_err(), "a wildcard covers one label only");
    gw.shutdown().await;
}

fn with_client_ca(files: &CertFiles, ca: &std::path::Path, mode: &str) -> String {
    format!(
        "{}\n  client_ca: \"{}\"\n  client_auth: {mode}",
        one_cert(files),
        ca.display()
    )
}

#[tokio::test]
async fn client_certificates_required() {
    let server_pki = Pki::new("gw");
    let clients = Pki::new("clients");
    let strangers = Pki::new("strangers");
    let files = server_pki.server("api", &["api.example.test"]);
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(
        &with_client_ca(&files, &clients.ca_file, "required"),
        &up,
    ))
    .await;
    let roots = [server_pki.ca_der()];
    let good = clients.client("svc-a");
    let foreign = strangers.client("svc-b");

    // No certificate, or one from another CA: no handshake, nothing upstream.
    for client in [None, Some(&foreign)] {
        let opts = ClientOpts {
            client,
            alpn: &[b"http/1.1"],
            ..ClientOpts::new("api.example.test", &roots)
        };
        let outcome = match connect(gw.addr, &opts).await {
            Err(_) => None,
            // TLS 1.3: the client learns of the refusal at its first read.
            Ok(stream) => {
                let r = tokio::spawn(async move { get_over_checked(stream).await }).await;
                r.ok().flatten()
            }
        };
        assert!(
            outcome.is_none(),
            "a request got through without a valid certificate"
        );
    }
    assert_eq!(up.count(), 0);

    let opts = ClientOpts {
        client: Some(&good),
        alpn: &[b"http/1.1"],
        ..ClientOpts::new("api.example.test", &roots)
    };
    // The same probe that failed above succeeds with a good certificate.
    let stream = connect(gw.addr, &opts).await.unwrap();
    assert_eq!(get_over_checked(stream).await, Some(200));
    // The verified certificate reaches the upstream (RFC 9440).
    let seen = up.last();
    let cert = seen.headers["client-cert"].to_str().unwrap();
    assert!(cert.starts_with(':') && cert.ends_with(':'), "{cert}");
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(cert.trim_matches(':'))
        .unwrap();
    assert_eq!(der, support::tls::certs(&good.cert)[0].as_ref());
    assert!(seen.headers.contains_key("client-cert-chain"));
    gw.shutdown().await;
}

/// One request; `None` when the connection fails at any point.
async fn get_over_checked(stream: TlsStream<TcpStream>) -> Option<u16> {
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get("/x")
        .header("host", "api.example.test")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tx.send_request(req).await.ok()?;
    Some(resp.status().as_u16())
}

#[tokio::test]
async fn client_certificates_optional_and_spoofed_headers() {
    let server_pki = Pki::new("gw");
    let clients = Pki::new("clients");
    let files = server_pki.server("api", &["api.example.test"]);
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(
        &with_client_ca(&files, &clients.ca_file, "optional"),
        &up,
    ))
    .await;
    let roots = [server_pki.ca_der()];
    // Without a certificate the request passes, and a Client-Cert the client
    // wrote itself never reaches the upstream.
    let opts = ClientOpts {
        alpn: &[b"http/1.1"],
        ..ClientOpts::new("api.example.test", &roots)
    };
    let stream = connect(gw.addr, &opts).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/x")
        .header("host", "api.example.test")
        .header("client-cert", ":AAAA:")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), 200);
    assert!(!up.last().headers.contains_key("client-cert"));
    let good = clients.client("svc-a");
    let opts = ClientOpts {
        client: Some(&good),
        ..ClientOpts::new("api.example.test", &roots)
    };
    let (status, _, _) = get_over(connect(gw.addr, &opts).await.unwrap(), "/x").await;
    assert_eq!(status, 200);
    assert!(up.last().headers.contains_key("client-cert"));
    gw.shutdown().await;
}

async fn serving_name(
    addr: SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    name: &str,
) -> bool {
    match connect(addr, &ClientOpts::new("api.example.test", roots)).await {
        Ok(s) => served_for(&s, name),
        Err(_) => false,
    }
}

#[tokio::test]
async fn certificates_rotate_without_dropping_open_connections() {
    let pki = Pki::new("gw");
    let old = pki.server("old", &["api.example.test", "old.example.test"]);
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The gateway reads fixed paths; the test swaps what is in them.
    let cert = dir.path().join("tls.pem");
    let key = dir.path().join("tls.key");
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    let files = CertFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let config = dir.path().join("gateway.yaml");
    let gw = Gateway::start_file(&config, &yaml(&one_cert(&files), &up), true).await;
    let roots = [pki.ca_der()];
    assert!(serving_name(gw.addr, &roots, "old.example.test").await);

    // A connection opened with the old certificate, kept open across the swap.
    let stream = connect(
        gw.addr,
        &ClientOpts {
            alpn: &[b"http/1.1"],
            ..ClientOpts::new("api.example.test", &roots)
        },
    )
    .await
    .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let one = |tx: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        tx.send_request(
            Request::get("/open")
                .header("host", "api.example.test")
                .body(Empty::new())
                .unwrap(),
        )
    };
    assert_eq!(one(&mut tx).await.unwrap().status(), 200);

    // A broken key: refused, logged, counted; the old certificate serves on.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    eventually("the broken key to be refused", || async {
        gw.metric("portcullis_config_reload_failures_total").await >= 1.0
    })
    .await;
    assert!(serving_name(gw.addr, &roots, "old.example.test").await);
    assert_eq!(gw.metric("portcullis_config_generation").await, 1.0);

    // The new pair, written whole: new handshakes get it.
    let new = pki.server("new", &["api.example.test", "new.example.test"]);
    std::fs::copy(&new.key, &key).unwrap();
    std::fs::copy(&new.cert, &cert).unwrap();
    eventually("the new certificate", || async {
        serving_name(gw.addr, &roots, "new.example.test").await
    })
    .await;
    assert!(gw.metric("portcullis_config_generation").await >= 2.0);
    // The connection from before the swap still works.
    tx.ready().await.unwrap();
    assert_eq!(one(&mut tx).await.unwrap().status(), 200);
    gw.shutdown().await;
}
