//! The upstream leg of requests without a body, which the gateway's own
//! HTTP/1.1 client carries, against an upstream scripted byte by byte over a
//! raw socket (a server library would never send most of these answers):
//! malformed or ambiguous answers are a 502 and never reach a client, bytes
//! beyond an answer never become another request's answer, a connection the
//! upstream closed while idle is not written to (or, for an idempotent
//! request, the request is sent once more on a fresh one), and a request is
//! never sent twice otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

const ROUTES: &str = "  - path: /*\n    upstream: api\n    auth: anonymous\n";

/// What the scripted upstream does after reading one request head.
#[derive(Clone)]
enum Act {
    /// Writes these bytes and reads the next request on the connection.
    Answer(&'static [u8]),
    /// Writes these bytes; then, once the test says so ([`Script::cue`]),
    /// writes the second ones (stray bytes nobody asked for) and closes the
    /// connection if told.
    AnswerThenOnCue(&'static [u8], &'static [u8], bool),
    /// Writes these bytes and closes the connection.
    AnswerThenClose(&'static [u8]),
}

/// A raw upstream: each request head it reads (whatever connection it came
/// on) is answered by the next act of the script. It records the request
/// heads per connection.
struct Script {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<(usize, String)>>>,
    cue: Arc<Notify>,
    done: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

impl Script {
    async fn start(acts: Vec<Act>) -> Script {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acts = Arc::new(Mutex::new(VecDeque::from(acts)));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let cue = Arc::new(Notify::new());
        let (done_tx, done) = mpsc::unbounded_channel();
        let (h, c) = (heads.clone(), cue.clone());
        tokio::spawn(async move {
            for conn in 0.. {
                let (s, _) = listener.accept().await.unwrap();
                let (acts, heads, cue, done) =
                    (acts.clone(), h.clone(), c.clone(), done_tx.clone());
                tokio::spawn(serve(conn, s, acts, heads, cue, done));
            }
        });
        Script {
            addr,
            heads,
            cue,
            done: tokio::sync::Mutex::new(done),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads read so far, with the connection each came on.
    fn heads(&self) -> Vec<(usize, String)> {
        self.heads.lock().unwrap().clone()
    }

    /// Lets the connection waiting on its cue go on, and waits until it did
    /// what it was to do.
    async fn cue(&self) {
        self.cue.notify_one();
        let mut done = self.done.lock().await;
        done.recv().await.unwrap();
    }
}

async fn serve(
    conn: usize,
    mut s: TcpStream,
    acts: Arc<Mutex<VecDeque<Act>>>,
    heads: Arc<Mutex<Vec<(usize, String)>>>,
    cue: Arc<Notify>,
    done: mpsc::UnboundedSender<()>,
) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut piece = [0u8; 4096];
            match s.read(&mut piece).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        // A body by its `Content-Length` (the gateway sends no other kind here).
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < len {
            let mut piece = [0u8; 4096];
            match s.read(&mut piece).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        heads.lock().unwrap().push((
            conn,
            String::from_utf8_lossy(&[head, body].concat()).into_owned(),
        ));
        let act = acts
            .lock()
            .unwrap()
            .pop_front()
            .expect("an act for every request");
        match act {
            Act::Answer(bytes) => s.write_all(bytes).await.unwrap(),
            Act::AnswerThenOnCue(bytes, stray, close) => {
                s.write_all(bytes).await.unwrap();
                cue.notified().await;
                s.write_all(stray).await.unwrap();
                if close {
                    drop(s);
                    done.send(()).unwrap();
                    return;
                }
                done.send(()).unwrap();
            }
            Act::AnswerThenClose(bytes) => {
                s.write_all(bytes).await.unwrap();
                return;
            }
        }
    }
}

async fn gateway(script: &Script) -> (JwksServer, Gateway) {
    let jwks = JwksServer::start(&[&rsa()]).await;
    let placeholder = Upstream::start().await;
    let yaml = config(&jwks, &placeholder, ROUTES).replace(&placeholder.url(), &script.url());
    (jwks, Gateway::start(&yaml).await)
}

async fn request(
    gw: &Gateway,
    method: &str,
    path: &str,
) -> (http::StatusCode, http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(gw.url(path))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(req).await
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond";

#[tokio::test]
async fn malformed_or_ambiguous_answers_are_a_502() {
    let bad: [&[u8]; 9] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nx: folded\r\n line\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r", // then nothing: cut off
        b"",
    ];
    for answer in bad {
        let script = Script::start(vec![Act::AnswerThenClose(answer)]).await;
        let (_jwks, gw) = gateway(&script).await;
        let req = Request::get(gw.url("/x"))
            .header("x-request-id", "bad-answer")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, body) = send(req).await;
        let shown = String::from_utf8_lossy(answer);
        assert_eq!(status, 502, "{shown}: {body}");
        assert_eq!(error_code(&body), "bad_gateway");
        assert_eq!(headers["x-request-id"], "bad-answer");
        // Sent once: a fresh connection's failure is never retried.
        assert_eq!(script.heads().len(), 1, "{shown}");
        gw.shutdown().await;
    }
}

/// Which connection each request head came on, in order.
fn connections(script: &Script) -> Vec<usize> {
    script.heads().iter().map(|(c, _)| *c).collect()
}

#[tokio::test]
async fn bytes_beyond_an_answer_never_answer_another_request() {
    // In the same segment as the answer.
    let script = Script::start(vec![
        Act::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled"),
        Act::Answer(SECOND),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    let (status, _, body) = request(&gw, "GET", "/one").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    let (status, _, body) = request(&gw, "GET", "/two").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "second"));
    assert_eq!(connections(&script), [0, 1]);
    gw.shutdown().await;

    // Later, while the connection is idle in the pool.
    for method in ["GET", "POST"] {
        let stray = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled";
        second_request_on_a_fresh_connection(method, stray, false).await;
    }
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    for method in ["GET", "POST", "DELETE"] {
        second_request_on_a_fresh_connection(method, b"", true).await;
    }
}

/// Two `method` requests; between them, while the first one's connection is
/// idle in the pool, the upstream writes `stray` on it (and closes it if
/// `close`). The second request must reach the upstream once, on a new
/// connection, and get its own answer.
async fn second_request_on_a_fresh_connection(method: &str, stray: &'static [u8], close: bool) {
    let script = Script::start(vec![
        Act::AnswerThenOnCue(OK, stray, close),
        Act::Answer(SECOND),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    let (status, _, body) = request(&gw, method, "/one").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    script.cue().await;
    let (status, _, body) = request(&gw, method, "/two").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "second"),
        "{method}"
    );
    assert_eq!(connections(&script), [0, 1], "{method}");
    gw.shutdown().await;
}

/// An answer, then the kept connection closed on the next request without a
/// word, then an answer on whatever connection comes next.
fn dropped_on_reuse() -> Vec<Act> {
    vec![
        Act::Answer(OK),
        Act::AnswerThenClose(b""),
        Act::Answer(SECOND),
    ]
}

#[tokio::test]
async fn a_request_dropped_unanswered_is_sent_again_only_when_idempotent_and_reused() {
    // Reused connection, idempotent: once more on a fresh connection.
    let script = Script::start(dropped_on_reuse()).await;
    let (_jwks, gw) = gateway(&script).await;
    assert_eq!(request(&gw, "GET", "/one").await.0, 200);
    let (status, _, body) = request(&gw, "GET", "/two").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "second"));
    assert_eq!(connections(&script), [0, 0, 1]);
    gw.shutdown().await;

    // Reused connection, not idempotent: never twice.
    let script = Script::start(dropped_on_reuse()).await;
    let (_jwks, gw) = gateway(&script).await;
    assert_eq!(request(&gw, "POST", "/one").await.0, 200);
    let (status, _, body) = request(&gw, "POST", "/two").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(connections(&script), [0, 0]);
    gw.shutdown().await;
}

#[tokio::test]
async fn answers_without_a_body_keep_the_connection() {
    let script = Script::start(vec![
        Act::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-kind: head\r\n\r\n"),
        Act::Answer(b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"),
        // Status lines without a reason phrase.
        Act::Answer(b"HTTP/1.1 100\r\n\r\nHTTP/1.1 204\r\n\r\n"),
        Act::Answer(
            b"HTTP/1.1 200 Fine\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        Act::Answer(OK),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    let (status, headers, body) = request(&gw, "HEAD", "/head").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, ""));
    assert_eq!(headers["content-length"], "5");
    assert_eq!(headers["x-kind"], "head");
    assert_eq!(request(&gw, "GET", "/cached").await.0, 304);
    assert_eq!(request(&gw, "GET", "/nothing").await.0, 204);
    let (status, _, body) = request(&gw, "GET", "/chunked").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "abc"));
    assert_eq!(request(&gw, "GET", "/last").await.0, 200);
    assert_eq!(connections(&script), [0, 0, 0, 0, 0]);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_request_head_reaches_the_upstream_as_the_gateway_built_it() {
    let script = Script::start(vec![Act::Answer(OK)]).await;
    let (_jwks, gw) = gateway(&script).await;
    let req = Request::get(gw.url("/a/b?q=1&r"))
        .header("x-custom", "kept")
        .header("x-request-id", "head-check")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.0, 200);
    let heads = script.heads();
    let head = &heads[0].1;
    assert!(head.starts_with("GET /a/b?q=1&r HTTP/1.1\r\n"), "{head}");
    for line in [
        "x-custom: kept\r\n",
        "x-request-id: head-check\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
    ] {
        assert!(head.contains(line), "{line} missing in {head}");
    }
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_body_goes_with_its_length_on_a_kept_connection() {
    let script = Script::start(vec![
        Act::Answer(OK),
        Act::Answer(b"HTTP/1.1 201 Created\r\ncontent-length: 6\r\n\r\nsecond"),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    for (path, body, status) in [("/one", "hello", 200), ("/two", "again!", 201)] {
        let req = Request::post(gw.url(path))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        assert_eq!(send(req).await.0, status);
    }
    let heads = script.heads();
    assert_eq!(connections(&script), [0, 0]);
    assert!(
        heads[0].1.ends_with("content-length: 5\r\n\r\nhello"),
        "{}",
        heads[0].1
    );
    assert!(
        heads[1].1.ends_with("content-length: 6\r\n\r\nagain!"),
        "{}",
        heads[1].1
    );
    assert!(
        !heads[0]
            .1
            .to_ascii_lowercase()
            .contains("transfer-encoding")
    );
    gw.shutdown().await;
}

/// A length stated as the same value repeated (`5, 5`, which RFC 9110 §8.6
/// lets a recipient read as one) reaches the client once, as one number, for
/// a body and for a HEAD answer alike.
#[tokio::test]
async fn a_length_repeated_in_a_list_reaches_the_client_as_one_number() {
    let script = Script::start(vec![
        Act::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello"),
        Act::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 7,7\r\n\r\n"),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    let answer = raw(
        gw.addr,
        b"GET /body HTTP/1.1\r\nHost: x\r\n\r\nHEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (first, second) = answer.split_at(answer.rfind("HTTP/1.1 200").unwrap());
    assert!(first.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(first.contains("\r\ncontent-length: 5\r\n"), "{answer}");
    assert!(first.ends_with("\r\n\r\nhello"), "{answer}");
    assert!(second.contains("\r\ncontent-length: 7\r\n"), "{answer}");
    assert!(second.ends_with("\r\n\r\n"), "{answer}");
    assert!(
        !answer.contains("5, 5") && !answer.contains("7,7"),
        "{answer}"
    );
    assert_eq!(connections(&script), [0, 0]);
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_answer_fields_never_reach_the_client_in_any_spelling() {
    // The fields the gateway's client leaves out of the map, and those a
    // `Connection` field names — also when another `Connection` field names
    // none, or names one in another case, or one is chunked.
    let script = Script::start(vec![
        Act::Answer(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKEEP-ALIVE: timeout=5\r\n\
              Proxy-Connection: keep-alive\r\nconnection: close, X-Private\r\n\
              x-private: secret\r\nX-Kept: yes\r\ncontent-length: 2\r\n\r\nok",
        ),
        Act::Answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\
              Connection: x-other\r\nX-Other: secret\r\nX-Kept: yes\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
    ])
    .await;
    let (_jwks, gw) = gateway(&script).await;
    for path in ["/a", "/b"] {
        let answer = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let lower = answer.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 200"), "{answer}");
        assert!(lower.contains("\r\nx-kept: yes\r\n"), "{answer}");
        for gone in [
            "keep-alive",
            "proxy-connection",
            "x-private",
            "x-other",
            "secret",
            "transfer-encoding: chunked\r\nconnection",
        ] {
            assert!(!lower.contains(gone), "{gone} reached the client: {answer}");
        }
        // The gateway's own `Connection: close`, once.
        assert_eq!(lower.matches("connection:").count(), 1, "{answer}");
    }
    gw.shutdown().await;
}
