//! WebSockets through the gateway against a real tokio-tungstenite echo server:
//! the token and policy checked once at the upgrade, identity headers on the
//! upgrade request, text and a 10 MB binary message both ways, an upgrade
//! refused on a route without `websocket: true` (it never reaches the upstream),
//! the idle timeout on an upgraded connection, and the same over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use support::tls::{ClientOpts, Pki};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// An echo server that records the headers of every upgrade request.
struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback signature
                    let callback = |req: &Request, resp: Response| {
                        record.lock().unwrap().push(req.headers().clone());
                        Ok(resp)
                    };
                    let config =
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                            .max_message_size(Some(64 << 20))
                            .max_frame_size(Some(64 << 20));
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(
                        stream,
                        callback,
                        Some(config),
                    )
                    .await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Echo { addr, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn yaml(jwks: &JwksServer, echo: &Echo, server_extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
{server_extra}
admin:
  listen: "127.0.0.1:0"
issuers:
  - id: main
    issuer: "{ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{AUDIENCE}"]
upstreams:
  echo: {{ url: "http://{echo}", connect_timeout: 1s, timeout: 5s }}
routes:
  - path: /ws/*
    upstream: echo
    websocket: true
    scopes: [read:data]
  - path: /plain/*
    upstream: echo
"#,
        jwks = jwks.url(),
        echo = echo.addr,
    )
}

fn request(
    url: &str,
    token: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req.headers_mut()
        .insert("x-auth-subject", "spoofed".parse().unwrap());
    req
}

fn big_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

#[tokio::test]
async fn a_checked_upgrade_carries_messages_both_ways() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let gw = Gateway::start(&yaml(&jwks, &echo, "")).await;
    let token = token(&key, &claims());
    let url = format!("ws://{}/ws/chat?room=1", gw.addr);
    let (mut ws, resp) = tokio_tungstenite::connect_async_with_config(
        request(&url, Some(&token)),
        Some(big_config()),
        false,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    // The upgrade request reached the echo server with the gateway's identity.
    let seen = echo.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["x-auth-subject"], "user-1");
    assert_eq!(seen.get_all("x-auth-subject").iter().count(), 1);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_data().as_ref(), &big[..]);
    ws.close(None).await.unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn upgrades_are_refused_without_a_token_or_on_other_routes() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let gw = Gateway::start(&yaml(&jwks, &echo, "")).await;
    let token = token(&key, &claims());
    // No token: 401 at the upgrade.
    let err = tokio_tungstenite::connect_async(request(&format!("ws://{}/ws/x", gw.addr), None))
        .await
        .expect_err("no token");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("{other}"),
    }
    // Without the scope: 403.
    let weak = support::token(&key, &claims_with(serde_json::json!({"scope": "other"})));
    let err =
        tokio_tungstenite::connect_async(request(&format!("ws://{}/ws/x", gw.addr), Some(&weak)))
            .await
            .expect_err("no scope");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("{other}"),
    }
    // A route without `websocket: true`, even with a good token: 400.
    let err = tokio_tungstenite::connect_async(request(
        &format!("ws://{}/plain/x", gw.addr),
        Some(&token),
    ))
    .await
    .expect_err("not a websocket route");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("{other}"),
    }
    // Over a raw socket, other protocols too.
    let answer = raw(
        gw.addr,
        format!(
            "GET /ws/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: TLS/1.3\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    assert_eq!(echo.count(), 0, "a refused upgrade reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_idle_upgraded_connection_is_closed_after_idle_timeout() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let gw = Gateway::start(&yaml(&jwks, &echo, "  limits: { idle_timeout: 800ms }")).await;
    let token = token(&key, &claims());
    let url = format!("ws://{}/ws/idle", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, Some(&token)))
        .await
        .unwrap();
    // Traffic keeps it open past the timeout.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
    // Silence closes it (between 0.8 and 1 s later).
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    match closed {
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("still open after its idle timeout: {other:?}"),
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn websockets_over_the_tls_listener() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let pki = Pki::new("gw");
    let files = pki.server("api", &["api.example.test"]);
    let tls = format!(
        "  tls: {{ cert: \"{}\", key: \"{}\" }}",
        files.cert.display(),
        files.key.display()
    );
    let gw = Gateway::start(&yaml(&jwks, &echo, &tls)).await;
    let roots = [pki.ca_der()];
    let opts = ClientOpts {
        alpn: &[b"http/1.1"],
        ..ClientOpts::new("api.example.test", &roots)
    };
    let stream = support::tls::connect(gw.addr, &opts).await.unwrap();
    let token = token(&key, &claims());
    let (mut ws, resp) = tokio_tungstenite::client_async(
        request("wss://api.example.test/ws/secure", Some(&token)),
        stream,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    let seen = echo.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["x-forwarded-proto"], "https");
    let _ = TcpStream::connect(gw.addr).await;
    gw.shutdown().await;
}

/// An upstream that counts the connections it accepts and refuses every
/// upgrade with a keep-alive 403.
async fn refusing_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let status = if req.headers().contains_key("upgrade") {
                            403
                        } else {
                            200
                        };
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"no"),
                        ));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// An upgrade the upstream answers with anything but 101 leaves its upstream
/// connection in an unknown state: it is closed, never reused for the next
/// request.
#[tokio::test]
async fn a_refused_upgrade_s_upstream_connection_is_not_reused() {
    use std::sync::atomic::Ordering;
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let (up, accepted) = refusing_upstream().await;
    let echo = Echo {
        addr: up,
        seen: Arc::default(),
    };
    let gw = Gateway::start(&yaml(&jwks, &echo, "")).await;
    let token = token(&key, &claims());
    let upgrade = format!(
        "GET /ws/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let answer = raw(gw.addr, upgrade.as_bytes()).await;
    assert_eq!(raw_status(&answer), 403, "{answer}");
    let plain = format!(
        "GET /ws/y HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..2 {
        let answer = raw(gw.addr, plain.as_bytes()).await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
    }
    // The refused upgrade's connection, then one that the plain requests share.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}

/// A tunnel keeps its downstream connection's permit: with `max_connections:
/// 1`, a second client waits until the tunnel closes.
#[tokio::test]
async fn a_tunnel_holds_its_connection_permit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let gw = Gateway::start(&yaml(&jwks, &echo, "  limits: { max_connections: 1 }")).await;
    let token = token(&key, &claims());
    let url = format!("ws://{}/ws/held", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, Some(&token)))
        .await
        .unwrap();
    ws.send(Message::text("up")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("up"));
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second
        .write_all(b"GET /plain/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read_exact(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection over the limit was served beside a tunnel"
    );
    // The tunnel still works, and closing it frees the slot.
    ws.send(Message::text("still")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("still"));
    drop(ws);
    tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut buf))
        .await
        .expect("served once the tunnel closed")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 401");
    gw.shutdown().await;
}

/// A shutdown drains tunnels like requests: the tunnel carries messages after
/// the listener has closed, until the grace period ends; then it is closed.
#[tokio::test]
async fn a_shutdown_drains_a_tunnel_then_closes_it() {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let echo = Echo::start().await;
    let gw = Gateway::start(&yaml(&jwks, &echo, "  shutdown_grace: 2s")).await;
    let addr = gw.addr;
    let token = token(&key, &claims());
    let url = format!("ws://{addr}/ws/drain");
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&url, Some(&token)))
        .await
        .unwrap();
    let stopping = tokio::spawn(gw.shutdown());
    eventually("the listener to close", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    ws.send(Message::text("during")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("during"));
    assert!(
        !stopping.is_finished(),
        "shutdown did not wait for the tunnel"
    );
    // At the end of the grace period the tunnel is closed and shutdown ends.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the tunnel outlived the grace period");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown ended")
        .unwrap();
}
