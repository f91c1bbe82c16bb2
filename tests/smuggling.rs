//! Request smuggling and the other ways a request could mean one thing to the
//! gateway and another to the upstream, over raw sockets (a client library would
//! refuse to send most of these): conflicting framing, malformed headers, `Host`
//! confusion, method case, separators in other encodings, oversized heads, and
//! the HTTP/2 `:authority` / `Host` pair. Each refused request gets a 400 (or
//! 431) and never reaches the upstream; each accepted one reaches it exactly once,
//! re-framed by the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpStream;

const ROUTES: &str = "  - path: /public/*\n    upstream: api\n    auth: anonymous\n  - path: /*\n    upstream: api\n";

async fn setup() -> (JwksServer, Upstream, Gateway) {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&jwks, &up, ROUTES)).await;
    (jwks, up, gw)
}

/// The status lines of every response in a raw answer.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn conflicting_or_malformed_framing_is_refused() {
    let (_jwks, up, gw) = setup().await;
    let refused: [(&str, &[u8]); 14] = [
        (
            "two different Content-Length",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "Content-Length list",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\nab",
        ),
        (
            "signed Content-Length",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab",
        ),
        (
            "chunked not last",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "unknown coding",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two Transfer-Encoding lines",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked in HTTP/1.0",
            b"POST /public/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "space in a header name",
            b"GET /public/a HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n",
        ),
        (
            "control character in a value",
            b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        ),
        (
            "NUL in a value",
            b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "bare CR",
            b"GET /public/a HTTP/1.1\rHost: x\r\n\r\n",
        ),
        (
            "unknown version",
            b"GET /public/a HTTP/1.2\r\nHost: x\r\n\r\n",
        ),
    ];
    for (case, bytes) in refused {
        let answer = raw(gw.addr, bytes).await;
        assert_eq!(statuses(&answer), [400], "{case}: {answer}");
    }
    // A chunk that is not one: the request started upstream, but the client's
    // body is at fault (400, not 502) and no complete request arrived there.
    for (case, bytes) in [
        (
            "oversized chunk",
            &b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk without CRLF",
            &b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n"[..],
        ),
    ] {
        let answer = raw(gw.addr, bytes).await;
        assert_eq!(statuses(&answer), [400], "{case}: {answer}");
        assert!(answer.contains("invalid_request"), "{case}: {answer}");
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    gw.shutdown().await;
}

/// Writes `request` and reads until the gateway closes the connection; panics
/// if it stays open (the bound is a safety net, never a wait).
async fn answer_then_closed(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the connection stayed open")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A request's `Transfer-Encoding` must be exactly `chunked` (one line, any
/// case). hyper takes any list that ends in `chunked` and removes only the
/// chunked framing: the upstream would get a body still gzip-coded (or chunked
/// twice) without being told. Each is refused with 400 and the connection is
/// closed, so the bytes after it are never read as a request.
#[tokio::test]
async fn transfer_encoding_other_than_exactly_chunked_is_refused() {
    let (_jwks, up, gw) = setup().await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // `true`: hyper accepts it and the gateway refuses it (with its JSON
    // body, counted); `false`: hyper's parser refuses it first.
    let cases = [
        (
            "gzip then chunked",
            "Transfer-Encoding: gzip, chunked",
            true,
        ),
        ("chunked twice", "Transfer-Encoding: chunked, chunked", true),
        ("empty list member", "Transfer-Encoding: , chunked", true),
        (
            "two lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            true,
        ),
        (
            "gzip line, chunked line",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            true,
        ),
        (
            "with Content-Length",
            "Content-Length: 8\r\nTransfer-Encoding: gzip, chunked",
            true,
        ),
        ("identity", "Transfer-Encoding: identity", false),
        ("a parameter", "Transfer-Encoding: chunked;x=1", false),
        (
            "chunked then gzip",
            "Transfer-Encoding: chunked, gzip",
            false,
        ),
    ];
    for (case, head, ours) in cases {
        let request = format!(
            "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n3\r\nabc\r\n0\r\n\r\n{smuggled}"
        );
        let answer = answer_then_closed(gw.addr, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [400], "{case}: {answer}");
        if ours {
            assert!(answer.contains("invalid_request"), "{case}: {answer}");
        }
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    assert_eq!(
        gw.metric("portcullis_rejections_total{reason=\"bad_framing\"}")
            .await,
        6.0
    );
    // Exactly `chunked`, in any case and with optional whitespace around the
    // value (not part of it, RFC 9110 §5.5), is read and re-framed.
    for head in [
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: Chunked",
        "transfer-encoding:\tCHUNKED ",
    ] {
        let request = format!(
            "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let answer = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [200], "{head}: {answer}");
        assert_eq!(up.last().body, "abc");
    }
    assert!(up.received().iter().all(|r| r.target != "/public/smuggled"));
    gw.shutdown().await;
}

/// `Content-Length` beside `Transfer-Encoding` (RFC 9112 §6.3): the chunked
/// framing wins, the gateway re-frames the body for the upstream, and the
/// connection is closed after the response, so bytes smuggled after the body are
/// never read as a request.
#[tokio::test]
async fn content_length_with_chunked_is_reframed_and_the_connection_closed() {
    let (_jwks, up, gw) = setup().await;
    for head in [
        "Content-Length: 6\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 6",
    ] {
        let before = up.count();
        let request = format!(
            "POST /public/a HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let answer = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [200], "{head}: {answer}");
        assert_eq!(up.count(), before + 1, "{head}");
        let got = up.last();
        assert_eq!(got.target, "/public/a");
        assert_eq!(got.body, "abc");
        assert_eq!(got.headers.get_all("content-length").iter().count(), 0);
    }
    assert!(up.received().iter().all(|r| r.target != "/secret"));
    gw.shutdown().await;
}

/// RFC 9112 §3.2: exactly one valid `Host` in HTTP/1.1, so that the gateway and a
/// virtual-hosting upstream agree on the site.
#[tokio::test]
async fn host_must_be_present_once_and_valid() {
    let (_jwks, up, gw) = setup().await;
    for (case, head) in [
        ("no Host", ""),
        ("two Hosts", "Host: a.test\r\nHost: b.test\r\n"),
        ("two Hosts, same", "Host: a.test\r\nHost: a.test\r\n"),
        ("space", "Host: a b\r\n"),
        ("userinfo", "Host: user@a.test\r\n"),
        ("path", "Host: a.test/admin\r\n"),
        ("empty", "Host: \r\n"),
    ] {
        let request = format!("GET /public/a HTTP/1.1\r\n{head}Connection: close\r\n\r\n");
        let answer = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [400], "{case}: {answer}");
        assert!(answer.contains("invalid_request"), "{case}: {answer}");
    }
    assert_eq!(up.count(), 0);
    // HTTP/1.0 may leave it out.
    let answer = raw(gw.addr, b"GET /public/a HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let answer = raw(
        gw.addr,
        b"GET /public/a HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().headers["host"], "a.test:8080");
    gw.shutdown().await;
}

/// Methods are case-sensitive, but frameworks such as Symfony upper-case them:
/// a `get` must not slip past a `methods: [GET]` route to a weaker one.
#[tokio::test]
async fn methods_that_are_not_upper_case_tokens_are_refused() {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let up = Upstream::start().await;
    let routes = "  - path: /a/*\n    methods: [GET]\n    upstream: api\n  - path: /*\n    upstream: api\n    auth: anonymous\n";
    let gw = Gateway::start(&config(&jwks, &up, routes)).await;
    for method in ["get", "Get", "gEt", "dElEtE"] {
        let request = format!("{method} /a/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{method}: {answer}");
    }
    assert_eq!(up.count(), 0);
    // Extension methods in upper case still route (WebDAV's VERSION-CONTROL).
    let answer = raw(
        gw.addr,
        b"VERSION-CONTROL /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().method, "VERSION-CONTROL");
    gw.shutdown().await;
}

/// Separators and dots in the encodings other servers decode: overlong UTF-8,
/// IIS's `%u`, backslashes, and whitespace in the target.
#[tokio::test]
async fn other_encodings_of_separators_and_dots_are_refused() {
    let (_jwks, up, gw) = setup().await;
    for target in [
        "/public/%c0%ae%c0%ae/secret",
        "/public/%c0%af..%c0%afsecret",
        "/public/%e0%80%ae/secret",
        "/public/%u002e%u002e/secret",
        "/public/%u2215secret",
        "/public\\..\\secret",
        "/public/..\\secret",
        "/public/a b",
        "/public/a\tb",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{target}: {answer}");
    }
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let (_jwks, up, gw) = setup().await;
    let mut many = String::from("GET /public/a HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    assert_eq!(raw_status(&raw(gw.addr, many.as_bytes()).await), 431);
    let big = format!(
        "GET /public/a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    assert_eq!(raw_status(&raw(gw.addr, big.as_bytes()).await), 431);
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

/// HTTP/2 (h2c): `Host` must agree with `:authority` (RFC 9113 §8.3.1); without
/// one, the upstream gets the authority as `Host`, as an HTTP/1.1 client's `Host`.
#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let (_jwks, up, gw) = setup().await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut send = |req: Request<Full<Bytes>>| {
        let fut = sender.send_request(req);
        async move {
            let resp = fut.await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = send(
        Request::get("http://api.test:8080/public/a")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = up.last();
    assert_eq!(got.headers["host"], "api.test:8080");
    assert_eq!(got.headers["x-forwarded-host"], "api.test:8080");

    let (status, body) = send(
        Request::get("http://api.test:8080/public/a")
            .header("host", "admin.internal")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(up.count(), 1);

    // `:authority` with userinfo is refused as a `Host` with userinfo is, with
    // or without a `Host` beside it.
    for (uri, host) in [
        ("http://user@api.test:8080/public/a", None),
        ("http://user:pw@api.test/public/a", None),
        ("http://user@api.test/public/a", Some("user@api.test")),
    ] {
        let mut req = Request::get(uri);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let (status, body) = send(req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(status, 400, "{uri}: {body}");
        assert!(body.contains("invalid_request"), "{uri}: {body}");
    }
    assert_eq!(
        up.count(),
        1,
        "an authority with userinfo reached the upstream"
    );
    gw.shutdown().await;
}

/// Plain requests (no body) are served by the gateway's own HTTP/1.1 server;
/// the first with a body, in any spelling of its framing fields, moves the
/// connection to hyper's. Pipelined on one connection, every request reaches
/// the upstream once, in order, with its own body, and a body that looks like
/// a request is only ever a body.
#[tokio::test]
async fn pipelined_requests_cross_from_one_server_to_the_other_intact() {
    let (_jwks, up, gw) = setup().await;
    for length in ["Content-Length", "cOnTeNt-LeNgTh", "CONTENT-LENGTH"] {
        let before = up.count();
        let hidden = "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
        let request = format!(
            "GET /public/1 HTTP/1.1\r\nHost: x\r\n\r\n\
             HEAD /public/2 HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /public/3 HTTP/1.1\r\nHost: x\r\n{length}: {}\r\n\r\n{hidden}\
             GET /public/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            hidden.len()
        );
        let answer = answer_then_closed(gw.addr, request.as_bytes()).await;
        assert_eq!(
            statuses(&answer),
            [200, 200, 200, 200],
            "{length}: {answer}"
        );
        let got: Vec<_> = up.received().into_iter().skip(before).collect();
        let targets: Vec<_> = got
            .iter()
            .map(|r| (r.method.as_str(), r.target.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("GET", "/public/1"),
                ("HEAD", "/public/2"),
                ("POST", "/public/3"),
                ("GET", "/public/4")
            ],
            "{length}"
        );
        assert_eq!(got[2].body, hidden, "{length}");
        assert!(got[0].body.is_empty() && got[3].body.is_empty());
        // The HEAD answer states a length and carries no body: the next
        // status line follows its head at once.
        let head_at = answer.match_indices("HTTP/1.1 ").nth(1).unwrap().0;
        let head_end = head_at + answer[head_at..].find("\r\n\r\n").unwrap() + 4;
        assert!(answer[head_end..].starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert!(up.received().iter().all(|r| r.target != "/secret"));
    gw.shutdown().await;
}

/// Fields that change how a request is read, whatever their case, never let a
/// request through as if it had no body, and a field only named like one
/// (`X-Content-Length`, `Content-Lengths`) changes nothing.
#[tokio::test]
async fn framing_fields_are_recognised_in_any_case_and_only_by_their_name() {
    let (_jwks, up, gw) = setup().await;
    // A chunked body in mixed case: read as a body, not as a next request.
    let request = b"POST /public/a HTTP/1.1\r\nHost: x\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\n\r\nGET /public/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let before = up.count();
    let answer = answer_then_closed(gw.addr, request).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    let got: Vec<_> = up.received().into_iter().skip(before).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, "hello");
    assert_eq!(got[1].target, "/public/b");
    // Look-alike names are ordinary fields of a request without a body.
    let request =
        b"GET /public/c HTTP/1.1\r\nHost: x\r\nX-Content-Length: 5\r\nContent-Lengths: 5\r\n\r\n\
        GET /public/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let before = up.count();
    let answer = answer_then_closed(gw.addr, request).await;
    assert_eq!(statuses(&answer), [200, 200], "{answer}");
    let got: Vec<_> = up.received().into_iter().skip(before).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].target, "/public/c");
    assert!(got[0].body.is_empty());
    assert_eq!(got[0].headers["x-content-length"], "5");
    assert_eq!(got[1].target, "/public/d");
    gw.shutdown().await;
}
