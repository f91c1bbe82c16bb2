//! The limits that protect the gateway and the upstream, each exceeded on
//! purpose: `max_header_bytes` (431), a route's `max_body` (413, declared, or
//! found while a body of unknown length is read before forwarding: nothing
//! reaches the upstream), `max_connections` (the rest
//! wait), `header_read_timeout` (slowloris, plain and TLS), `idle_timeout`,
//! `body_timeout` (a stalled request body, a response the client does not
//! read), and the HTTP/2 stream limit. Each hit is counted in
//! `portcullis_limit_hits_total{limit}`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn yaml(up: &str, limits: &str, server_extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  workers: 1
{server_extra}  limits:
{limits}
admin:
  listen: "127.0.0.1:0"
upstreams:
  api: {{ url: "{up}", connect_timeout: 1s, timeout: 10s }}
routes:
  - path: /small/*
    upstream: api
    auth: anonymous
    max_body: 1KiB
  - path: /*
    upstream: api
    auth: anonymous
"#
    )
}

async fn hits(gw: &Gateway, limit: &str) -> f64 {
    gw.metric(&format!("portcullis_limit_hits_total{{limit=\"{limit}\"}}"))
        .await
}

/// Reads until the peer closes (or `bound` passes); the bytes read and whether
/// it closed.
/// Asserts a raw answer is the gateway's JSON refusal `code`, with a
/// request id and the connection's end.
fn assert_json_refusal(answer: &str, code: &str) {
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-request-id: "), "{answer}");
    assert!(
        lower.contains("\r\ncontent-type: application/json"),
        "{answer}"
    );
    assert!(lower.contains("\r\nconnection: close"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"));
    assert_eq!(v["error"], code, "{answer}");
    assert!(v["error_description"].is_string(), "{answer}");
}

/// Reads the answer to a stalled request body: 408 `request_timeout` with
/// `Connection: close`, and the connection closed after it.
async fn assert_stall_answer(s: &mut TcpStream) {
    let (answer, closed) = read_until_closed(s, Duration::from_secs(10)).await;
    assert!(closed, "a stalled body kept its connection: {answer}");
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(error_code(body), "request_timeout", "{answer}");
}

async fn read_until_closed(s: &mut TcpStream, bound: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let r = tokio::time::timeout(bound, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), r.is_ok())
}

#[tokio::test]
async fn oversized_heads_and_bodies() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up.url(), "    max_header_bytes: 8192", "")).await;
    // Headers over 8 KiB: 431.
    let big = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = raw(gw.addr, big.as_bytes()).await;
    assert_eq!(raw_status(&answer), 431);
    assert_json_refusal(&answer, "request_header_fields_too_large");
    // Counted when the connection's task ends, which may be just after the
    // client saw the close.
    eventually("the max_header_bytes hit", || async {
        hits(&gw, "max_header_bytes").await >= 1.0
    })
    .await;
    assert_eq!(hits(&gw, "max_header_bytes").await, 1.0);
    // Heads hyper cannot parse are refused in the same JSON, with a request
    // id, never reaching a route.
    for (bad, status) in [
        (&b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n"[..], 400),
        (
            &b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"[..],
            400,
        ),
        (
            &b"GET /x HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n"[..],
            400,
        ),
    ] {
        let answer = raw(gw.addr, bad).await;
        assert_eq!(raw_status(&answer), status, "{answer}");
        assert_json_refusal(&answer, "invalid_request");
    }
    assert_eq!(up.count(), 0, "nothing unparsable reached the upstream");
    // Just under: fine.
    let fits = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(7000)
    );
    assert_eq!(raw_status(&raw(gw.addr, fits.as_bytes()).await), 200);
    assert_eq!(up.count(), 1);

    // A declared body over the route's 1 KiB: 413 before anything is sent.
    let body = "b".repeat(1025);
    let declared = format!(
        "POST /small/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(gw.addr, declared.as_bytes()).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
    assert!(answer.contains("request_too_large"));
    // A chunked body that grows past it: 413, read first, nothing sent upstream.
    let chunked = format!(
        "POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n200\r\n{}\r\n200\r\n{}\r\n200\r\n{}\r\n0\r\n\r\n",
        "c".repeat(512),
        "c".repeat(512),
        "c".repeat(512)
    );
    let answer = raw(gw.addr, chunked.as_bytes()).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
    assert_eq!(up.count(), 1, "a body over the limit reached the upstream");
    // Exactly the limit is fine, both ways.
    let ok = format!(
        "POST /small/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "d".repeat(1024)
    );
    assert_eq!(raw_status(&raw(gw.addr, ok.as_bytes()).await), 200);
    assert_eq!(up.last().body.len(), 1024);
    assert_eq!(hits(&gw, "max_body").await, 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn max_connections_makes_the_rest_wait() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up.url(), "    max_connections: 2", "")).await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    for s in [&mut first, &mut second] {
        s.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
    // A third connection is queued by the kernel but not served...
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    third
        .write_all(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut buf)).await;
    assert!(early.is_err(), "a connection over the limit was served");
    assert!(hits(&gw, "max_connections").await >= 1.0);
    // ...until one of the others closes.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed() {
    let up = Upstream::start().await;
    let pki = support::tls::Pki::new("gw");
    let files = pki.server("api", &["api.example.test"]);
    let gw = Gateway::start(&yaml(&up.url(), "    header_read_timeout: 400ms", "")).await;
    // Slowloris: half a head, then nothing. Answered 408 in the JSON every
    // refusal has, with a request id, then closed.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a slow head kept its connection");
    assert_eq!(raw_status(&answer), 408, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(lower.contains("x-request-id: "), "{answer}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["error"], "request_timeout", "{answer}");
    assert_eq!(hits(&gw, "header_read_timeout").await, 1.0);
    // A head trickled a byte at a time is bounded all the same.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let trickle = async {
        for b in b"GET /x HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a trickled head kept its connection");
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert_eq!(hits(&gw, "header_read_timeout").await, 2.0);
    // A connection that sends nothing at all is closed without an answer.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed && answer.is_empty(), "{answer:?}");
    gw.shutdown().await;

    // Idle after a request: closed, without a request in flight being cut. (An
    // HTTP/1.1 connection waiting for its next head is also bounded by
    // `header_read_timeout`; here that is the longer of the two.)
    let gw = Gateway::start(&yaml(
        &up.url(),
        "    header_read_timeout: 5s\n    idle_timeout: 600ms",
        "",
    ))
    .await;
    up.set_delay(Duration::from_millis(900));
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "an idle connection stayed open");
    assert_eq!(
        raw_status(&answer),
        200,
        "the request in flight was cut: {answer}"
    );
    assert!(hits(&gw, "idle_timeout").await >= 1.0);
    up.set_delay(Duration::ZERO);
    gw.shutdown().await;

    // A TLS listener: a client that never finishes its handshake is cut too.
    let tls = format!(
        "  tls: {{ cert: \"{}\", key: \"{}\" }}\n",
        files.cert.display(),
        files.key.display()
    );
    let gw = Gateway::start(&yaml(&up.url(), "    header_read_timeout: 400ms", &tls)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a stalled handshake kept its connection");
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_streams_per_connection_are_bounded() {
    // An upstream that reports how many requests it holds at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    serve(listener, move |_req: Request<hyper::body::Incoming>| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    });
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    max_concurrent_streams: 2",
        "",
    ))
    .await;
    let sender = h2_client(gw.addr).await;
    // One exchange first, so that the server's SETTINGS are in force (before
    // them a client may open more streams, and the extra are refused).
    let mut first = sender.clone();
    let req = Request::get("http://api.test/s/first")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(first.send_request(req).await.unwrap().status(), 200);
    let mut all = Vec::new();
    for i in 0..6 {
        let mut tx = sender.clone();
        let uri = format!("http://api.test/s/{i}");
        all.push(tokio::spawn(async move {
            tx.ready().await.unwrap();
            let req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
            tx.send_request(req).await.map(|r| r.status().as_u16())
        }));
    }
    for h in all {
        assert_eq!(h.await.unwrap().unwrap(), 200);
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "more than 2 streams at once"
    );
    gw.shutdown().await;
}

/// The cleartext listener reads a client's first bytes until it is decided
/// whether they are the HTTP/2 preface: half a preface held open is closed at
/// `header_read_timeout` (and counted); a preface, or an HTTP/1.1 request
/// whose first byte could begin one, sent a byte at a time is served, every
/// byte read while deciding handed to the protocol chosen.
#[tokio::test]
async fn protocol_detection_waits_for_the_preface_to_be_decided() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up.url(), "    header_read_timeout: 400ms", "")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "half a preface kept its connection");
    assert!(hits(&gw, "header_read_timeout").await >= 1.0);

    // An HTTP/1.1 request a byte at a time ("P" could begin the preface).
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi" {
        s.write_all(&[*b]).await.unwrap();
    }
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().body, "hi");

    // HTTP/2 whose every write (the preface first) goes a byte at a time.
    let s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(OneByte(s)))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://api.test/h2")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(up.last().target, "/h2");
    gw.shutdown().await;
}

/// A stream whose writes go out at most one byte at a time.
struct OneByte(TcpStream);

impl tokio::io::AsyncRead for OneByte {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for OneByte {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = buf.len().min(1);
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, &buf[..n])
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// An HTTP/2 frame header and payload on stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// HTTP/2 connections are closed after `idle_timeout` like HTTP/1.1 ones: a
/// client that only keeps the connection busy with PING, SETTINGS and
/// WINDOW_UPDATE frames, and one that says nothing at all (and acknowledges
/// nothing, not even the graceful GOAWAY's PING), both lose it.
#[tokio::test]
async fn http2_connections_without_requests_are_closed_when_idle() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up.url(), "    idle_timeout: 600ms", "")).await;
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(frame(0x4, 0, &[]));

    // Only control frames, every 100 ms, for as long as the connection lives.
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(&preface).await.unwrap();
    let chatter = tokio::spawn(async move {
        let frames = [
            frame(0x6, 0, b"12345678"),
            frame(0x4, 0, &[]),
            frame(0x8, 0, &1u32.to_be_bytes()),
        ];
        for f in frames.iter().cycle() {
            if wr.write_all(f).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut sink)).await;
    assert!(
        closed.is_ok(),
        "PING/SETTINGS/WINDOW_UPDATE kept an idle connection"
    );
    chatter.abort();

    // Nothing after the preface, and nothing acknowledged.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&preface).await.unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "a silent HTTP/2 connection stayed open");
    assert!(hits(&gw, "idle_timeout").await >= 2.0);
    gw.shutdown().await;
}

/// `max_connections` counts each listener apart: the public listener full does
/// not keep the forward-auth listener from answering.
#[tokio::test]
async fn connection_permits_are_per_listener() {
    let up = Upstream::start().await;
    let config = yaml(&up.url(), "    max_connections: 1", "")
        + "forward_auth:\n  listen: \"127.0.0.1:0\"\n";
    let gw = Gateway::start(&config).await;
    // The public listener's one slot, held by a keep-alive connection.
    let mut held = TcpStream::connect(gw.addr).await.unwrap();
    held.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    held.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut fa = TcpStream::connect(gw.forward_auth_addr()).await.unwrap();
    fa.write_all(
        b"GET /auth HTTP/1.1\r\nHost: fa\r\nX-Forwarded-Uri: /x\r\nX-Forwarded-Method: GET\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (answer, closed) = read_until_closed(&mut fa, Duration::from_secs(5)).await;
    assert!(closed, "the forward-auth listener waited for a public slot");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    drop(held);
    gw.shutdown().await;
}

/// An upstream that reads each request body to its end and counts how many
/// arrived whole and how many broke off.
fn counting_upstream(listener: TcpListener) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (whole, broken) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (w, b) = (whole.clone(), broken.clone());
    serve(listener, move |req: Request<hyper::body::Incoming>| {
        let (w, b) = (w.clone(), b.clone());
        async move {
            match req.into_body().collect().await {
                Ok(body) => {
                    w.fetch_add(1, Ordering::SeqCst);
                    let len = body.to_bytes().len();
                    Response::new(Full::new(Bytes::from(format!("got {len}\n"))))
                }
                Err(_) => {
                    b.fetch_add(1, Ordering::SeqCst);
                    Response::new(Full::default())
                }
            }
        }
    });
    (whole, broken)
}

/// A request body that stops arriving (10 of 1000 declared bytes, then
/// nothing) is cut at `body_timeout`: the upstream never sees it whole, the
/// client gets a JSON 408 with `Connection: close`, the connection closes and
/// its permit of `max_connections` comes back.
#[tokio::test]
async fn stalled_request_bodies_are_cut_and_free_their_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let (whole, broken) = counting_upstream(listener);
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    max_connections: 1\n    body_timeout: 300ms",
        "",
    ))
    .await;
    assert_eq!(hits(&gw, "body_timeout").await, 0.0);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    assert_stall_answer(&mut s).await;
    assert_eq!(hits(&gw, "body_timeout").await, 1.0);
    assert_eq!(
        whole.load(Ordering::SeqCst),
        0,
        "the upstream got a whole body"
    );
    within(
        Duration::from_secs(5),
        "the upstream to see the body break off",
        || {
            let b = broken.clone();
            async move { b.load(Ordering::SeqCst) == 1 }
        },
    )
    .await;

    // The one permit is free again: a new connection is served.
    let answer = raw(
        gw.addr,
        b"POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.ends_with("got 2\n"), "{answer}");

    // A chunked body that stops between two chunks: the same.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a stalled chunked body kept its connection: {answer}"
    );
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert_eq!(hits(&gw, "body_timeout").await, 2.0);
    assert_eq!(whole.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

/// A request body on an HTTP/2 stream that stops arriving: the stream gets the
/// 408, and the connection goes on serving other streams.
#[tokio::test]
async fn stalled_http2_request_bodies_are_cut() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let (whole, _broken) = counting_upstream(listener);
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    body_timeout: 300ms",
        "",
    ))
    .await;
    let mut sender = h2_client(gw.addr).await;
    let (req, tx) = held_post(
        "http://api.test/upload",
        [Bytes::from_static(b"0123456789")],
    );
    let refused = refusal(&mut sender, req, "a stalled HTTP/2 body").await;
    assert_eq!(refused, (408, "request_timeout".to_owned()));
    assert_eq!(hits(&gw, "body_timeout").await, 1.0);
    assert_eq!(whole.load(Ordering::SeqCst), 0);
    drop(tx);
    // The connection itself still serves.
    sender.ready().await.unwrap();
    let (req, _) = held_post("http://api.test/next", [Bytes::from_static(b"hi")]);
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

/// An HTTP/2 connection to `addr`, driven in the background.
async fn h2_client<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A POST to `uri` whose body is `pieces`, then, while the returned sender
/// lives, nothing more.
fn held_post(
    uri: &str,
    pieces: impl IntoIterator<Item = Bytes>,
) -> (Request<Held>, tokio::sync::mpsc::Sender<Bytes>) {
    let pieces: Vec<Bytes> = pieces.into_iter().collect();
    let (tx, rx) = tokio::sync::mpsc::channel(pieces.len().max(1));
    for piece in pieces {
        tx.try_send(piece).unwrap();
    }
    (Request::post(uri).body(Held(rx)).unwrap(), tx)
}

/// Sends `req` (`what` it is, should no answer come) and reads the refusal:
/// its status and JSON `error`.
async fn refusal(
    sender: &mut hyper::client::conn::http2::SendRequest<Held>,
    req: Request<Held>,
    what: &str,
) -> (u16, String) {
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap_or_else(|_| panic!("{what} was never answered"))
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, error_code(&String::from_utf8_lossy(&body)))
}

/// A request body fed from a channel: what the test sends, then (while the
/// sender lives) nothing.
struct Held(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// A body that keeps coming, a piece at a time with pauses shorter than
/// `body_timeout`, is served however long it takes in all: the limit is on the
/// silence between two pieces, not on the whole body.
#[tokio::test]
async fn trickled_bodies_that_keep_moving_are_served() {
    // The upstream reports every piece as it arrives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<usize>();
    serve(listener, move |req: Request<hyper::body::Incoming>| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Response::new(Full::new(Bytes::from_static(b"broken\n")));
                };
                if let Some(d) = frame.data_ref() {
                    total += d.len();
                    let _ = seen_tx.send(d.len());
                }
            }
            Response::new(Full::new(Bytes::from(format!("got {total}\n"))))
        }
    });
    let timeout = Duration::from_millis(500);
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    body_timeout: 500ms",
        "",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"POST /trickle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // A piece, its arrival upstream, a pause of a fifth of the timeout; on
    // until the body has taken three timeouts in all.
    let start = std::time::Instant::now();
    let mut sent = 0;
    while start.elapsed() < 3 * timeout {
        s.write_all(b"1\r\nx\r\n").await.unwrap();
        sent += 1;
        let n = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("a piece did not reach the upstream");
        assert_eq!(n, Some(1));
        tokio::time::sleep(timeout / 5).await;
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.ends_with(&format!("got {sent}\n")), "{answer}");
    assert_eq!(hits(&gw, "body_timeout").await, 0.0);
    gw.shutdown().await;
}

/// A client that reads the head of a large response and then nothing: once
/// it has accepted nothing for `body_timeout`, its connection is closed (and
/// its permit comes back), and the upstream connection that was carrying the
/// response is not reused.
#[tokio::test]
async fn responses_the_client_does_not_read_are_cut() {
    const BIG: usize = 64 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    tokio::spawn(async move {
        let big = Bytes::from(vec![b'x'; BIG]);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let big = big.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/big" {
                        big.clone()
                    } else {
                        Bytes::from_static(b"small\n")
                    };
                    async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    max_connections: 1\n    body_timeout: 300ms",
        "",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Then nothing more is read.
    eventually("the unread response to be cut", || async {
        hits(&gw, "body_timeout").await >= 1.0
    })
    .await;
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the connection stayed open");
    assert!(
        answer.len() + 12 < BIG,
        "the whole response went out ({} bytes)",
        answer.len()
    );
    // The permit is back, and the next request takes a new upstream connection.
    let answer = raw(
        gw.addr,
        b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.ends_with("small\n"), "{answer}");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(hits(&gw, "body_timeout").await, 1.0);
    gw.shutdown().await;
}

// === max_body on bodies of unknown length ===

/// What an upstream saw: the connections it accepted, the request heads that
/// reached it, and each body it read whole (the request's headers, the data,
/// the trailers).
#[derive(Clone, Default)]
struct Watched {
    connections: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<WholeBody>>>,
}

struct WholeBody {
    headers: http::HeaderMap,
    data: Bytes,
    trailers: Option<http::HeaderMap>,
}

impl Watched {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    /// The last body read whole: its headers, data and trailers.
    fn last(&self) -> (http::HeaderMap, Bytes, Option<http::HeaderMap>) {
        let bodies = self.bodies.lock().unwrap();
        let b = bodies.last().expect("no body reached the upstream whole");
        (b.headers.clone(), b.data.clone(), b.trailers.clone())
    }
}

/// An upstream (HTTP/1.1 and h2c) that counts what reaches it ([`Watched`]),
/// and answers `200 ok` once it has read a body.
fn watched_upstream(listener: TcpListener) -> Watched {
    let watched = Watched::default();
    let w = watched.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            w.connections.fetch_add(1, Ordering::SeqCst);
            let w = w.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let w = w.clone();
                async move {
                    w.heads.fetch_add(1, Ordering::SeqCst);
                    let (parts, body) = req.into_parts();
                    if let Ok(collected) = body.collect().await {
                        let trailers = collected.trailers().cloned();
                        w.bodies.lock().unwrap().push(WholeBody {
                            headers: parts.headers,
                            data: collected.to_bytes(),
                            trailers,
                        });
                    }
                    let ok = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    Ok::<_, std::convert::Infallible>(ok)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    watched
}

/// A gateway (`/small/*` with `max_body: 1KiB`, `body_timeout: 300ms`) in
/// front of a [`watched_upstream`].
async fn watched_gateway() -> (Gateway, Watched) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let watched = watched_upstream(listener);
    let gw = Gateway::start(&yaml(
        &format!("http://{up_addr}"),
        "    body_timeout: 300ms",
        "",
    ))
    .await;
    (gw, watched)
}

/// An HTTP/1.1 chunked request to `path` carrying `pieces`, one chunk each.
fn chunked(path: &str, pieces: &[String], extra_head: &str, trailers: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{extra_head}Connection: close\r\n\r\n"
    );
    for p in pieces {
        req.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    req.push_str(&format!("0\r\n{trailers}\r\n"));
    req.into_bytes()
}

/// On a route with `max_body`, a chunked body is read before anything is
/// sent: over the limit (in several chunks, or in one) it gets 413 and the
/// upstream never hears of the request, not even a connection; within it
/// (to the byte) the upstream gets the whole body, its length declared.
#[tokio::test]
async fn chunked_bodies_over_max_body_never_reach_the_upstream() {
    let (gw, watched) = watched_gateway().await;
    for pieces in [vec!["c".repeat(512); 3], vec!["c".repeat(1025)]] {
        let answer = raw(gw.addr, &chunked("/small/x", &pieces, "", "")).await;
        assert_eq!(raw_status(&answer), 413, "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(error_code(body), "request_too_large", "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert_eq!(hits(&gw, "max_body").await, 2.0);
    assert_eq!(watched.connections(), 0, "the upstream was contacted");

    // Within the limit, and exactly at it: forwarded whole, with its length.
    for total in [700, 1024] {
        let pieces = vec!["a".repeat(300), "b".repeat(total - 300)];
        let answer = raw(gw.addr, &chunked("/small/x", &pieces, "", "")).await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        let (headers, data, _) = watched.last();
        assert_eq!(data, pieces.concat());
        assert_eq!(headers["content-length"], total.to_string());
        assert!(!headers.contains_key("transfer-encoding"), "{headers:?}");
    }
    assert_eq!(watched.heads(), 2);
    assert_eq!(hits(&gw, "max_body").await, 2.0);
    gw.shutdown().await;
}

/// A chunked body read before forwarding keeps its trailers (the upstream
/// gets them after the data, client-controlled names removed as always).
#[tokio::test]
async fn chunked_bodies_read_first_keep_their_trailers() {
    let (gw, watched) = watched_gateway().await;
    let pieces = vec!["hello ".to_owned(), "world".to_owned()];
    let req = chunked(
        "/small/x",
        &pieces,
        "Trailer: X-Checksum, X-Auth-Subject\r\n",
        "X-Checksum: c0ffee\r\nX-Auth-Subject: admin\r\n",
    );
    let answer = raw(gw.addr, &req).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let (_, data, trailers) = watched.last();
    assert_eq!(data, "hello world");
    let trailers = trailers.expect("the trailers were dropped");
    assert_eq!(trailers["x-checksum"], "c0ffee");
    assert!(!trailers.contains_key("x-auth-subject"), "{trailers:?}");
    gw.shutdown().await;
}

/// A chunked body that stops arriving before it reaches `max_body` gets the
/// stall answer (408, `Connection: close`) at `body_timeout`, and the upstream
/// never hears of it.
#[tokio::test]
async fn chunked_bodies_that_stall_while_read_first_get_408() {
    let (gw, watched) = watched_gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert_stall_answer(&mut s).await;
    assert_eq!(hits(&gw, "body_timeout").await, 1.0);
    assert_eq!(hits(&gw, "max_body").await, 0.0);
    assert_eq!(watched.connections(), 0, "the upstream was contacted");
    gw.shutdown().await;
}

/// A chunked body whose framing breaks while it is read first: 400, and the
/// upstream never hears of it.
#[tokio::test]
async fn chunked_bodies_that_break_while_read_first_get_400() {
    let (gw, watched) = watched_gateway().await;
    let answer = raw(
        gw.addr,
        b"POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(error_code(body), "invalid_request", "{answer}");
    assert_eq!(watched.connections(), 0, "the upstream was contacted");
    gw.shutdown().await;
}

/// A body with a declared length on a route with `max_body` is not read
/// first: it streams, so the upstream has the request's head before the
/// client has sent the whole body.
#[tokio::test]
async fn declared_bodies_within_max_body_still_stream() {
    let (gw, watched) = watched_gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /small/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
        .await
        .unwrap();
    eventually(
        "the head to reach the upstream before the body's end",
        || {
            let w = watched.clone();
            async move { w.heads() == 1 }
        },
    )
    .await;
    s.write_all(b"56789").await.unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(watched.last().1, "0123456789");
    gw.shutdown().await;
}

/// HTTP/2 requests without `content-length` are read first too: over
/// `max_body`, 413 on that stream and nothing upstream (the connection goes
/// on); within it, the upstream gets the whole body with its length.
#[tokio::test]
async fn http2_bodies_without_a_length_are_held_to_max_body() {
    let (gw, watched) = watched_gateway().await;
    let mut sender = h2_client(gw.addr).await;
    // Two pieces over the limit, and the stream kept open after them.
    let pieces = [Bytes::from(vec![b'x'; 600]), Bytes::from(vec![b'y'; 600])];
    let (req, tx) = held_post("http://api.test/small/x", pieces);
    let refused = refusal(&mut sender, req, "an HTTP/2 body over max_body").await;
    assert_eq!(refused, (413, "request_too_large".to_owned()));
    assert_eq!(hits(&gw, "max_body").await, 1.0);
    assert_eq!(watched.connections(), 0, "the upstream was contacted");
    drop(tx);

    // Within the limit, on the same connection.
    sender.ready().await.unwrap();
    let pieces = [Bytes::from_static(b"over "), Bytes::from_static(b"h2")];
    let (req, _) = held_post("http://api.test/small/x", pieces);
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (headers, data, _) = watched.last();
    assert_eq!(data, "over h2");
    assert_eq!(headers["content-length"], "7");
    gw.shutdown().await;
}
