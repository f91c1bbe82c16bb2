//! Forwarding end to end: hop-by-hop headers both ways, `X-Forwarded-*`, request
//! ids, the request as the upstream sees it, upstream failures (502, 504),
//! keep-alive, h2c, streaming bodies in both directions, request trailers, and
//! graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;

/// Routes used by most tests: an anonymous prefix and a token-protected rest.
const ROUTES: &str = "  - path: /public/*\n    upstream: api\n    auth: anonymous\n  - path: /private/*\n    upstream: api\n";

/// The large-body tests run one at a time, so that one's memory does not show up
/// in the other's measurement.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The size of the streamed upload and download.
const LARGE: u64 = 1 << 30;

/// Memory growth allowed while [`LARGE`] bytes pass through.
const MAX_GROWTH: u64 = 200 << 20;

// === helpers ===

/// A fresh JWKS server, recording upstream and gateway with [`ROUTES`].
async fn setup() -> (TestKey, JwksServer, Upstream, Gateway) {
    setup_with(|yaml| yaml).await
}

/// Like [`setup`], with the configuration text edited first.
async fn setup_with(
    edit: impl FnOnce(String) -> String,
) -> (TestKey, JwksServer, Upstream, Gateway) {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&edit(config(&jwks, &up, ROUTES))).await;
    (key, jwks, up, gw)
}

/// A gateway with [`ROUTES`] whose upstream is at `url` (not a recording one),
/// its configuration text edited by `edit`.
async fn gateway_to(url: &str, edit: impl FnOnce(String) -> String) -> (JwksServer, Gateway) {
    let key = rsa();
    let jwks = JwksServer::start(&[&key]).await;
    let placeholder = Upstream::start().await;
    let yaml = config(&jwks, &placeholder, ROUTES).replace(&placeholder.url(), url);
    let gw = Gateway::start(&edit(yaml)).await;
    (jwks, gw)
}

/// An HTTP/1.1 connection to `addr`, driven in the background.
async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `req` on `sender` and reads the whole answer.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    sender.ready().await.unwrap();
    read(sender.send_request(req).await.unwrap()).await
}

async fn read(resp: Response<Incoming>) -> (StatusCode, HeaderMap, String) {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `cond` until it holds (or fails the test after a generous bound).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every value of header `name` in a raw HTTP/1.1 head, lower-cased.
fn raw_header_values(response: &str, name: &str) -> Vec<String> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect()
}

/// This process's resident set size, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// A body of `remaining` bytes made on the fly from one shared chunk: nothing is
/// buffered, whatever its length.
struct Generated {
    remaining: u64,
    chunk: Bytes,
    exact: bool,
}

impl Generated {
    /// `len` bytes; `exact` announces the length (Content-Length), otherwise the
    /// body goes chunked.
    fn new(len: u64, exact: bool) -> Generated {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        Generated {
            remaining: len,
            chunk: Bytes::from(chunk),
            exact,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// A body made of the given frames, in order (data, then perhaps trailers).
struct Frames(Vec<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(self.0.remove(0))))
    }
}

/// Reads a body to its end, counting bytes and keeping none.
async fn count_body<B>(mut body: B) -> u64
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    n
}

/// An upstream for large bodies that never holds one: a POST is answered with
/// the number of bytes it carried, `GET /public/download?n=N` with N generated
/// bytes.
struct CountingUpstream {
    addr: SocketAddr,
    uploaded: Arc<AtomicU64>,
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let uploaded = Arc::new(AtomicU64::new(0));
        let counter = uploaded.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let body = if req.method() == http::Method::POST {
                            let n = count_body(req.into_body()).await;
                            counter.fetch_add(n, Ordering::SeqCst);
                            Either::Left(Full::new(Bytes::from(n.to_string())))
                        } else {
                            let n = req
                                .uri()
                                .query()
                                .and_then(|q| q.strip_prefix("n="))
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(0);
                            Either::Right(Generated::new(n, true))
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CountingUpstream { addr, uploaded }
    }
}

// === hop-by-hop headers ===

#[tokio::test]
async fn hop_by_hop_request_headers_are_dropped_and_end_to_end_kept() {
    let (_key, _jwks, up, gw) = setup().await;
    let mut conn = h1(gw.addr).await;
    let req = Request::get("/public/hop")
        .header("host", "api.example.test")
        .header("connection", "keep-alive, X-Private, x-other-private")
        .header("x-private", "secret")
        .header("x-other-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip")
        .header("upgrade", "websocket")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("proxy-connection", "keep-alive")
        .header("accept", "text/plain")
        .header("x-end-to-end", "kept")
        .header("cache-control", "no-cache")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = exchange(&mut conn, req).await;
    assert_eq!(status, 200, "{body}");
    let got = up.last().headers;
    for gone in [
        "connection",
        "x-private",
        "x-other-private",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!got.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(got["accept"], "text/plain");
    assert_eq!(got["x-end-to-end"], "kept");
    assert_eq!(got["cache-control"], "no-cache");

    // `TE: trailers` is the one TE value that goes through.
    let req = Request::get("/public/te")
        .header("host", "api.example.test")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, _) = exchange(&mut conn, req).await;
    assert_eq!(status, 200);
    assert_eq!(up.last().headers["te"], "trailers");
    gw.shutdown().await;
}

#[tokio::test]
async fn client_transfer_encoding_is_not_forwarded_but_the_body_is() {
    let (_key, _jwks, up, gw) = setup().await;
    // Each hop frames the body itself: the upstream sees at most the framing of
    // the gateway's own connection, never the client's header passed along.
    let resp = raw(
        gw.addr,
        b"POST /public/te HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = up.last();
    assert_eq!(got.body, "hello world");
    let te: Vec<_> = got.headers.get_all("transfer-encoding").iter().collect();
    assert!(
        te.is_empty() || te == ["chunked"],
        "transfer-encoding at the upstream: {te:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_dropped_and_end_to_end_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    serve(listener, |_req: Request<Incoming>| async {
        let mut resp = Response::new(Full::new(Bytes::from("hop")));
        let h = resp.headers_mut();
        h.insert("connection", "keep-alive, X-Up-Private".parse().unwrap());
        h.insert("x-up-private", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=60".parse().unwrap());
        h.insert("proxy-authenticate", "Basic realm=\"up\"".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        h.insert("cache-control", "max-age=5".parse().unwrap());
        resp
    });
    let (_jwks, gw) = gateway_to(&format!("http://{up_addr}"), |yaml| yaml).await;

    let mut conn = h1(gw.addr).await;
    let req = Request::get("/public/hop")
        .header("host", "api.example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = exchange(&mut conn, req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hop");
    for gone in [
        "connection",
        "x-up-private",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(!headers.contains_key(gone), "{gone} reached the client");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(headers["cache-control"], "max-age=5");
    gw.shutdown().await;
}

// === X-Forwarded-* and X-Request-Id ===

#[tokio::test]
async fn forwarded_headers_are_replaced_with_what_the_gateway_saw() {
    let (_key, _jwks, up, gw) = setup().await;
    let req = Request::get(gw.url("/public/fwd"))
        .header("host", "api.example.test")
        .header("x-forwarded-for", "10.0.0.1, 10.0.0.2")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "spoofed.example.test")
        .header("forwarded", "for=10.0.0.9;proto=https;host=evil.test")
        .header("x-real-ip", "10.0.0.8")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200, "{body}");
    let got = up.last().headers;
    // No trusted proxy is configured: the client's own claims are dropped.
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["x-real-ip"], "127.0.0.1");
    assert_eq!(got["x-forwarded-proto"], "http");
    assert_eq!(got["x-forwarded-host"], "api.example.test");
    assert_eq!(
        got["forwarded"],
        "for=127.0.0.1;host=\"api.example.test\";proto=http"
    );

    let (status, _, _) = get(&gw.url("/public/fwd"), None).await;
    assert_eq!(status, 200);
    let got = up.last().headers;
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["x-forwarded-host"], gw.addr.to_string());
    gw.shutdown().await;
}

/// Over a raw socket, so that nothing normalises the names: every member of the
/// forwarded family, in any case and with `_` for `-`, several lines each, is
/// replaced or removed.
#[tokio::test]
async fn the_whole_forwarded_family_is_replaced_in_every_spelling() {
    let (_key, _jwks, up, gw) = setup().await;
    let spoofed = [
        "X-Forwarded-For: 10.0.0.1",
        "x-forwarded-for: 10.0.0.2, 10.0.0.3",
        "X_Forwarded_For: 10.0.0.4",
        "X-FORWARDED-PROTO: https",
        "x_forwarded_proto: https",
        "X-Forwarded-Host: evil.test",
        "X-Forwarded-Port: 443",
        "X-Forwarded-Prefix: /admin",
        "X-Forwarded-Ssl: on",
        "X-Forwarded-Uri: /admin",
        "Forwarded: for=10.0.0.5;proto=https",
        "forwarded: for=10.0.0.6",
        "X-Real-IP: 10.0.0.7",
        "X_Real_IP: 10.0.0.7",
        "True-Client-IP: 10.0.0.8",
        "X-Client-IP: 10.0.0.8",
        "CF-Connecting-IP: 10.0.0.8",
        "X-Original-Forwarded-For: 10.0.0.8",
        "Client-Cert: :MIIB:",
        "X-Forwarded-Client-Cert: Hash=abc",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
    ];
    let request = format!(
        "GET /public/fwd HTTP/1.1\r\nHost: api.example.test\r\n{}\r\nConnection: close\r\n\r\n",
        spoofed.join("\r\n")
    );
    let resp = raw(gw.addr, request.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = up.last().headers;
    let xff: Vec<_> = got.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["127.0.0.1"]);
    let real: Vec<_> = got.get_all("x-real-ip").iter().collect();
    assert_eq!(real, ["127.0.0.1"]);
    let fwd: Vec<_> = got.get_all("forwarded").iter().collect();
    assert_eq!(fwd, ["for=127.0.0.1;host=\"api.example.test\";proto=http"]);
    assert_eq!(got["x-forwarded-proto"], "http");
    assert_eq!(got["x-forwarded-host"], "api.example.test");
    for (name, _) in got.iter() {
        let n = name.as_str();
        assert!(!n.contains('_'), "{n} reached the upstream");
        assert!(
            ![
                "x-forwarded-port",
                "x-forwarded-prefix",
                "x-forwarded-ssl",
                "x-forwarded-uri",
                "true-client-ip",
                "x-client-ip",
                "cf-connecting-ip",
                "x-original-forwarded-for",
                "client-cert",
                "x-forwarded-client-cert",
                "x-original-url",
                "x-rewrite-url",
            ]
            .contains(&n),
            "{n} reached the upstream"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn http_1_0_clients_are_forwarded() {
    let (_key, _jwks, up, gw) = setup().await;
    let resp = raw(
        gw.addr,
        b"GET /public/old?v=1 HTTP/1.0\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(resp.ends_with("ok 0\n"), "{resp}");
    let got = up.last();
    assert_eq!(got.target, "/public/old?v=1");
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");
    // No Host and no authority: nothing to report, nothing invented.
    assert!(!got.headers.contains_key("x-forwarded-host"));
    assert_eq!(got.headers["forwarded"], "for=127.0.0.1;proto=http");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_returned() {
    let (key, _jwks, up, gw) = setup().await;
    let id = "req-42_a.b:c+d/e=";
    let req = Request::get(gw.url("/private/x"))
        .header("x-request-id", id)
        // Read as the same field by CGI-style upstreams: never a second id.
        .header("x_request_id", "forged")
        .header("X-Request_Id", "forged")
        .header(
            "authorization",
            format!("Bearer {}", token(&key, &claims())),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-request-id"], id);
    // Once: the gateway's field, never the client's beside it.
    let seen = up.last().headers;
    assert_eq!(
        seen.get_all("x-request-id").iter().collect::<Vec<_>>(),
        [id]
    );
    assert!(!seen.contains_key("x_request_id") && !seen.contains_key("x-request_id"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_insane_request_id_is_generated_and_reaches_the_upstream() {
    let (_key, _jwks, up, gw) = setup().await;
    let (status, headers, _) = get(&gw.url("/public/a"), None).await;
    assert_eq!(status, 200);
    let first = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(first.len(), 36, "not a UUID: {first}");
    assert_eq!(up.last().headers["x-request-id"], first.as_str());

    for insane in ["with spaces", "semi;colon", &"x".repeat(300)] {
        let req = Request::get(gw.url("/public/b"))
            .header("x-request-id", insane)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, _) = send(req).await;
        assert_eq!(status, 200);
        let id = headers["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, insane);
        assert_ne!(id, first, "request ids must be fresh");
        assert_eq!(id.len(), 36, "not a UUID: {id}");
        let seen = up.last().headers;
        assert_eq!(
            seen.get_all("x-request-id").iter().collect::<Vec<_>>(),
            [id.as_str()]
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn rejections_carry_the_request_id() {
    let (_key, _jwks, up, gw) = setup().await;
    // No token on a protected route: 401, with the client's id.
    let req = Request::get(gw.url("/private/x"))
        .header("x-request-id", "rejected-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["x-request-id"], "rejected-1");

    // No route: 404, with a generated id.
    let (status, headers, body) = get(&gw.url("/nowhere"), None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "not_found");
    assert_eq!(headers["x-request-id"].len(), 36);

    // A bad path: 400.
    let resp = raw(
        gw.addr,
        b"GET /public/../x HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: bad-path\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert_eq!(raw_header_values(&resp, "x-request-id"), ["bad-path"]);
    assert_eq!(up.count(), 0, "a rejection reached the upstream");
    gw.shutdown().await;
}

// === the request as the upstream sees it ===

#[tokio::test]
async fn upstream_receives_method_normalised_path_query_and_body() {
    let (_key, _jwks, up, gw) = setup().await;
    let body = "{\"name\":\"widget\",\"tags\":[\"a\",\"b\"]}";
    let req = Request::post(gw.url("/public//items/%41bc%20d?b=2&a=%2F1&flag"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, answer) = send(req).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, format!("ok {}\n", body.len()));
    let got = up.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.target, "/public/items/Abc%20d?b=2&a=%2F1&flag");
    assert_eq!(got.body, body);
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["content-length"], body.len().to_string());

    let req = Request::head(gw.url("/public/h"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, answer) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(answer, "");
    assert_eq!(headers["x-upstream"], "yes");
    assert_eq!(up.last().method, "HEAD");

    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let req = Request::builder()
            .method(method)
            .uri(gw.url("/public/m"))
            .body(Full::new(Bytes::from(method)))
            .unwrap();
        let (status, _, _) = send(req).await;
        assert_eq!(status, 200);
        let got = up.last();
        assert_eq!(got.method, method);
        assert_eq!(got.body, method);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_status_and_body_come_back() {
    let (_key, _jwks, up, gw) = setup().await;
    up.set_status(418);
    let (status, headers, body) = get(&gw.url("/public/teapot"), None).await;
    assert_eq!(status, 418);
    assert_eq!(body, "ok 0\n");
    assert_eq!(headers["x-upstream"], "yes");
    assert!(headers.contains_key("x-request-id"));
    gw.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_uploads_go_through() {
    let (_key, _jwks, up, gw) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /public/expect HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    // The body goes only once the gateway has asked for it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "connection closed early"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_eq!(raw_status(&head), 100, "{head}");
    s.write_all(b"hello world").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let rest = String::from_utf8_lossy(&rest).into_owned();
    assert_eq!(raw_status(&rest), 200, "{rest}");
    assert!(rest.ends_with("ok 11\n"), "{rest}");
    assert_eq!(up.last().body, "hello world");
    gw.shutdown().await;
}

// === upstream failures ===

#[tokio::test]
async fn closed_upstream_port_is_a_502() {
    let closed = closed_port().await;
    let (_jwks, gw) = gateway_to(&format!("http://{closed}"), |yaml| yaml).await;

    let req = Request::get(gw.url("/public/x"))
        .header("x-request-id", "to-nowhere")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_code(&body), "bad_gateway");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"], "to-nowhere");
    assert!(
        !body.contains(&closed.to_string()),
        "internal detail leaked: {body}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_a_504() {
    let (_key, _jwks, up, gw) =
        setup_with(|yaml| yaml.replace("timeout: 5s", "timeout: 200ms")).await;
    up.set_delay(Duration::from_secs(2));
    let req = Request::get(gw.url("/public/slow"))
        .header("x-request-id", "too-slow")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "gateway_timeout");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"], "too-slow");
    gw.shutdown().await;
}

/// The response timeout starts once the request body is sent in full: a slow
/// upload to a healthy upstream is not cut short, and a slow answer after it is.
#[tokio::test]
async fn the_response_timeout_starts_after_the_upload() {
    let (_key, _jwks, up, gw) =
        setup_with(|yaml| yaml.replace("timeout: 5s", "timeout: 300ms")).await;
    let chunks = futures_chunks(4, Duration::from_millis(150));
    let req = Request::post(gw.url("/public/upload"))
        .body(chunks)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    let (status, _, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last().body.len(), 4 * 1024);

    up.set_delay(Duration::from_secs(2));
    let chunks = futures_chunks(2, Duration::from_millis(10));
    let req = Request::post(gw.url("/public/upload"))
        .body(chunks)
        .unwrap();
    let (status, _, body) = read(client.request(req).await.unwrap()).await;
    assert_eq!(status, 504, "{body}");
    gw.shutdown().await;
}

/// `n` chunks of 1 KiB, each sent after `gap` (a real upload pace, not a sync point).
fn futures_chunks(n: usize, gap: Duration) -> PacedBody {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for _ in 0..n {
            tokio::time::sleep(gap).await;
            if tx.send(Bytes::from(vec![b'x'; 1024])).await.is_err() {
                return;
            }
        }
    });
    PacedBody(rx)
}

/// A request body fed by a channel: it ends when the sender is dropped.
struct PacedBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for PacedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

// === connections ===

#[tokio::test]
async fn one_client_connection_carries_many_requests() {
    let (key, _jwks, up, gw) = setup().await;
    let t = token(&key, &claims());
    let mut conn = h1(gw.addr).await;
    for i in 0..6 {
        let builder = Request::builder()
            .header("host", "api.example.test")
            .header("authorization", format!("Bearer {t}"));
        // Mix bodies, methods and routes; the connection must survive them all.
        let req = match i % 3 {
            0 => builder.uri(format!("/public/ka/{i}")).method("GET"),
            1 => builder.uri(format!("/private/ka/{i}")).method("POST"),
            _ => builder.uri(format!("/private/ka/{i}?q={i}")).method("PUT"),
        }
        .body(Full::new(Bytes::from(format!("body {i}"))))
        .unwrap();
        let (status, headers, body) = exchange(&mut conn, req).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(
            !headers.contains_key("connection"),
            "request {i} closed the connection"
        );
        assert_eq!(up.last().body, format!("body {i}"));
    }
    // A rejection without a body leaves the connection usable too.
    let req = Request::get("/nowhere")
        .header("host", "api.example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(exchange(&mut conn, req).await.0, 404);
    let req = Request::get("/public/after-404")
        .header("host", "api.example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(exchange(&mut conn, req).await.0, 200);
    assert_eq!(up.count(), 7);
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let (key, _jwks, up, gw) = setup().await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let authority = format!("localhost:{}", gw.addr.port());

    let req = Request::get(format!("http://{authority}/public/h2?x=1"))
        .header("x-request-id", "h2-request")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let (status, headers, body) = read(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ok 0\n");
    assert_eq!(headers["x-request-id"], "h2-request");
    assert_eq!(headers["x-upstream"], "yes");
    let got = up.last();
    assert_eq!(got.method, "GET");
    assert_eq!(got.target, "/public/h2?x=1");
    assert_eq!(got.headers["x-forwarded-host"], authority.as_str());
    assert_eq!(got.headers["x-forwarded-proto"], "http");
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got.headers["x-request-id"], "h2-request");

    // A protected POST with a body on the same connection.
    let req = Request::post(format!("http://{authority}/private/h2"))
        .header(
            "authorization",
            format!("Bearer {}", token(&key, &claims())),
        )
        .body(Full::new(Bytes::from("over h2")))
        .unwrap();
    let (status, _, body) = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let got = up.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, "over h2");
    assert_eq!(got.headers["x-auth-subject"], "user-1");

    // And a rejection, still with its id.
    let req = Request::get(format!("http://{authority}/private/h2"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("x-request-id"));
    gw.shutdown().await;
}

/// An HTTP/2 client may split `cookie` into several fields (RFC 9113
/// §8.2.3): an HTTP/1.1 upstream gets them as one line joined with `; `, an
/// HTTP/2 upstream as they came.
#[tokio::test]
async fn h2_cookie_crumbs_are_joined_for_http1_upstreams() {
    async fn crumbs_to(gw: &Gateway, path: &str) {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = Request::get(format!("http://localhost:{}{path}", gw.addr.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.headers_mut().append("cookie", "a=1".parse().unwrap());
        req.headers_mut().append("cookie", "b=2".parse().unwrap());
        let (status, _, body) = read(sender.send_request(req).await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_key, _jwks, up, gw) = setup().await;
    crumbs_to(&gw, "/public/cookies").await;
    let got = up.last();
    assert_eq!(got.version, Version::HTTP_11);
    let lines: Vec<_> = got.headers.get_all("cookie").iter().collect();
    assert_eq!(lines, ["a=1; b=2"]);
    // A single line from an HTTP/1.1 client is left as it is.
    let mut conn = h1(gw.addr).await;
    let req = Request::get("/public/one")
        .header("host", "api.example.test")
        .header("cookie", "c=3; d=4")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(exchange(&mut conn, req).await.0, 200);
    let got = up.last();
    let lines: Vec<_> = got.headers.get_all("cookie").iter().collect();
    assert_eq!(lines, ["c=3; d=4"]);
    gw.shutdown().await;

    let h2 = Upstream::start_with(UpstreamKind {
        tls: None,
        h2_only: true,
    })
    .await;
    let (_jwks, gw) = gateway_to(&h2.url(), |yaml| {
        yaml.replace("connect_timeout: 1s", "protocol: h2, connect_timeout: 1s")
    })
    .await;
    crumbs_to(&gw, "/public/cookies").await;
    let got = h2.last();
    assert_eq!(got.version, Version::HTTP_2);
    let lines: Vec<_> = got.headers.get_all("cookie").iter().collect();
    assert_eq!(lines, ["a=1", "b=2"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_through_the_pooled_client() {
    let (_key, _jwks, up, gw) = setup().await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for i in 0..3 {
        let resp = client
            .request(
                Request::get(gw.url(&format!("/public/pooled/{i}")))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        let (status, _, body) = read(resp).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(up.last().headers["x-forwarded-host"], gw.addr.to_string());
    }
    gw.shutdown().await;
}

// === streaming ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_through_without_buffering() {
    let _heavy = HEAVY.lock().await;
    let up = CountingUpstream::start().await;
    // The response timeout runs while the upload is sent: give it room.
    let (_jwks, gw) = gateway_to(&format!("http://{}", up.addr), |yaml| {
        yaml.replace("timeout: 5s", "timeout: 10m")
    })
    .await;
    let client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Generated>();

    // Warm up every component once, so that the measurement sees only growth.
    let warm = client
        .request(
            Request::post(gw.url("/public/upload"))
                .body(Generated::new(1 << 20, false))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(read(warm).await.2, (1u64 << 20).to_string());

    let before = rss_bytes();
    let resp = client
        .request(
            Request::post(gw.url("/public/upload"))
                .body(Generated::new(LARGE, false))
                .unwrap(),
        )
        .await
        .unwrap();
    let (status, _, body) = read(resp).await;
    let after = rss_bytes();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, LARGE.to_string());
    assert_eq!(up.uploaded.load(Ordering::SeqCst), LARGE + (1 << 20));
    let growth = after.saturating_sub(before);
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB for a {} MiB upload",
        growth >> 20,
        LARGE >> 20
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_streams_back_without_buffering() {
    let _heavy = HEAVY.lock().await;
    let up = CountingUpstream::start().await;
    // The default 5 s timeout stays: it covers the wait for the response head only.
    let (_jwks, gw) = gateway_to(&format!("http://{}", up.addr), |yaml| yaml).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let download = |n: u64| {
        client.request(
            Request::get(gw.url(&format!("/public/download?n={n}")))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };

    let warm = download(1 << 20).await.unwrap();
    assert_eq!(count_body(warm.into_body()).await, 1 << 20);

    let before = rss_bytes();
    let resp = download(LARGE).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], LARGE.to_string());
    assert_eq!(count_body(resp.into_body()).await, LARGE);
    let growth = rss_bytes().saturating_sub(before);
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {} MiB for a {} MiB download",
        growth >> 20,
        LARGE >> 20
    );
    gw.shutdown().await;
}

// === trailers ===

#[tokio::test]
async fn identity_names_are_stripped_from_request_trailers() {
    let (key, _jwks, up, gw) = setup().await;
    let t = token(&key, &claims());
    for (path, auth) in [
        ("/public/trailers", String::new()),
        (
            "/private/trailers",
            format!("Authorization: Bearer {t}\r\n"),
        ),
    ] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: a.test\r\n{auth}Transfer-Encoding: chunked\r\n\
             Trailer: X-Auth-Subject, X-Auth-Org, X-Checksum\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\nX-AUTH-Subject: mallory\r\nx-auth-org: evil-org\r\n\
             X-Checksum: abc123\r\n\r\n"
        );
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(raw_status(&resp), 200, "{resp}");
        let got = up.last();
        assert_eq!(got.body, "hello");
        let trailers = got.trailers.unwrap_or_default();
        assert!(
            !trailers.contains_key("x-auth-subject"),
            "{path}: {trailers:?}"
        );
        assert!(!trailers.contains_key("x-auth-org"), "{path}: {trailers:?}");
        assert_eq!(
            trailers.get("x-checksum").map(|v| v.as_bytes()),
            Some(&b"abc123"[..]),
            "{path}: other trailers must reach the upstream"
        );
        if !auth.is_empty() {
            // The identity comes from the token, in the header section only.
            assert_eq!(got.headers["x-auth-subject"], "user-1");
            assert_eq!(got.headers["x-auth-org"], "org-1");
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn response_trailers_reach_a_client_that_accepts_them() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(|_req: Request<Incoming>| async {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-checksum", "c0ffee".parse().unwrap());
                let body = Frames(vec![
                    Frame::data(Bytes::from("streamed")),
                    Frame::trailers(trailers),
                ]);
                let mut resp = Response::new(body);
                resp.headers_mut()
                    .insert("trailer", "x-checksum".parse().unwrap());
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let (_jwks, gw) = gateway_to(&format!("http://{up_addr}"), |yaml| yaml).await;
    let mut conn = h1(gw.addr).await;
    let req = Request::get("/public/trailers")
        .header("host", "a.test")
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    conn.ready().await.unwrap();
    let resp = conn.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(collected.to_bytes(), "streamed");
    assert_eq!(
        trailers.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"c0ffee"[..])
    );
    gw.shutdown().await;
}

// === graceful shutdown ===

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let (_key, _jwks, up, gw) = setup().await;
    let addr = gw.addr;
    let url = gw.url("/public/slow");
    // An idle keep-alive connection, which the drain must close.
    let mut idle = h1(addr).await;
    let req = Request::get("/public/idle")
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(exchange(&mut idle, req).await.0, 200);
    up.set_delay(Duration::from_secs(1));
    let in_flight = tokio::spawn(async move { get(&url, None).await });
    let seen = up.clone();
    eventually("the slow request to reach the upstream", || {
        seen.count() == 2
    })
    .await;

    let shutdown = tokio::spawn(gw.shutdown());
    // New connections are refused while the in-flight request drains.
    let mut refused = false;
    for _ in 0..2000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "the listener kept accepting after shutdown");

    let (status, headers, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ok 0\n");
    assert!(headers.contains_key("x-request-id"));
    shutdown.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
    eventually("the idle connection to be closed", || idle.is_closed()).await;
    assert_eq!(up.count(), 2);
}

/// From a peer in `server.trusted_proxies`, the forwarded family is kept and
/// extended; the identity headers are still the gateway's alone.
#[tokio::test]
async fn a_trusted_proxy_s_forwarding_headers_are_kept_and_extended() {
    let (_key, _jwks, up, gw) = setup_with(|yaml| {
        yaml.replace(
            "  shutdown_grace: 5s\n",
            "  shutdown_grace: 5s\n  trusted_proxies: [\"127.0.0.0/8\", \"::1\"]\n",
        )
    })
    .await;
    let request = "GET /public/t HTTP/1.1\r\nHost: internal:8080\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: api.example.test\r\nForwarded: for=203.0.113.7;proto=https\r\nX-Real-IP: 203.0.113.7\r\nX-Auth-Subject: spoofed\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, request.as_bytes()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let got = up.last().headers;
    assert_eq!(got["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(got["x-forwarded-proto"], "https");
    assert_eq!(got["x-forwarded-host"], "api.example.test");
    assert_eq!(got["x-real-ip"], "203.0.113.7");
    assert_eq!(
        got["forwarded"],
        "for=203.0.113.7;proto=https, for=127.0.0.1;host=\"internal:8080\";proto=http"
    );
    assert!(!got.contains_key("x-auth-subject"));
    gw.shutdown().await;
}
