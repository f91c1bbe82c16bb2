use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::Buf;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, DuplexStream};

use super::*;

const MAX: usize = 8 * 1024;

fn parsed(bytes: &[u8]) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    (parse(&mut buf, MAX), buf)
}

fn taken(bytes: &[u8]) -> (Head, BytesMut) {
    match parsed(bytes) {
        (Parsed::Request(head), rest) => (head, rest),
        (Parsed::Partial, _) => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
        (Parsed::Elsewhere, _) => panic!("elsewhere: {:?}", String::from_utf8_lossy(bytes)),
    }
}

fn elsewhere(bytes: &[u8]) {
    let (found, rest) = parsed(bytes);
    assert!(
        matches!(found, Parsed::Elsewhere),
        "taken: {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(&rest[..], bytes, "bytes for hyper are left as they were");
}

#[test]
fn a_plain_request_is_parsed_into_the_request_and_consumed() {
    let (head, rest) = taken(
        b"GET /a/b?c=d HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next",
    );
    let req = head.request;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/a/b");
    assert_eq!(req.uri().query(), Some("c=d"));
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "api");
    assert_eq!(req.headers()["authorization"], "Bearer x");
    let two: Vec<_> = req.headers().get_all("x-two").iter().collect();
    assert_eq!(two, ["1", "2"]);
    assert!(req.body().is_end_stream());
    assert!(head.keep_alive);
    assert_eq!(&rest[..], b"GET /next", "a pipelined request stays");
}

#[test]
fn connection_close_anywhere_in_the_field_ends_the_connection() {
    for close in [
        "Connection: close",
        "connection: keep-alive, Close",
        "Connection: keep-alive\r\nConnection: x, CLOSE ",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{close}\r\n\r\n");
        assert!(!taken(raw.as_bytes()).0.keep_alive, "{close}");
    }
    let (head, _) = taken(b"GET / HTTP/1.1\r\nConnection: closed, keep-alive\r\n\r\n");
    assert!(head.keep_alive);
}

#[test]
fn part_of_a_head_waits_until_it_is_as_large_as_allowed() {
    assert!(matches!(
        parsed(b"GET /a HTTP/1.1\r\nHost: a\r\n").0,
        Parsed::Partial
    ));
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(MAX - 1, b'a');
    assert!(matches!(parsed(&long).0, Parsed::Partial));
    long.push(b'a');
    elsewhere(&long);
    // A whole head over the limit too (hyper answers 431).
    let mut whole = b"GET / HTTP/1.1\r\nX: ".to_vec();
    whole.resize(MAX, b'a');
    whole.extend_from_slice(b"\r\n\r\n");
    elsewhere(&whole);
}

#[test]
fn requests_with_a_body_or_special_handling_go_to_hyper() {
    for raw in [
        &b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTRANSFER-ENCODING: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
    ] {
        elsewhere(raw);
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    elsewhere(&many);
}

#[test]
fn a_bare_line_feed_ends_a_line_as_hyper_reads_it() {
    // httparse with hyper's settings takes LF for CRLF; the fields are the
    // same either way, and the head goes upstream rewritten with CRLF.
    let (head, rest) = taken(b"GET / HTTP/1.1\nX: a\n\nrest");
    assert_eq!(head.request.headers()["x"], "a");
    assert_eq!(&rest[..], b"rest");
}

#[test]
fn extension_methods_and_obs_text_values_are_taken_as_hyper_takes_them() {
    let (head, _) = taken(b"PURGE /x HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n");
    assert_eq!(head.request.method().as_str(), "PURGE");
    assert_eq!(head.request.headers()["x"].as_bytes(), b"caf\xc3\xa9");
}

fn response(status: u16, fields: &[(&str, &str)]) -> http::response::Parts {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in fields {
        resp.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    resp.into_parts().0
}

/// The head as text with the `date` line's value replaced, its framing and
/// whether the connection ends.
fn encoded(
    parts: &http::response::Parts,
    head_request: bool,
    length: BodyLength,
    keep_alive: bool,
) -> (String, Framing, bool) {
    let mut out = Vec::new();
    let (framing, last) = encode_head(&mut out, parts, head_request, length, keep_alive).unwrap();
    let text = String::from_utf8(out).unwrap();
    let date_at = text.find("date: ").expect("a date");
    let date = &text[date_at + 6..date_at + 6 + HTTP_DATE_LEN];
    assert!(date.ends_with(" GMT"), "{date}");
    (text.replace(date, "D"), framing, last)
}

use crate::clock::HTTP_DATE_LEN;

#[test]
fn a_known_length_is_stated_and_a_date_added() {
    let parts = response(200, &[("content-type", "application/json")]);
    let (text, framing, last) = encoded(&parts, false, BodyLength::Known(12), true);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\ndate: D\r\n\r\n"
    );
    assert_eq!(framing, Framing::Length(12));
    assert!(!last);
}

#[test]
fn status_lines_use_the_canonical_or_the_upstreams_reason() {
    let (text, ..) = encoded(&response(404, &[]), false, BodyLength::None, true);
    assert!(
        text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"),
        "{text}"
    );
    let mut parts = response(200, &[]);
    parts
        .extensions
        .insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
    let (text, ..) = encoded(&parts, false, BodyLength::None, true);
    assert!(text.starts_with("HTTP/1.1 200 Fine\r\n"), "{text}");
    let (text, ..) = encoded(&response(599, &[]), false, BodyLength::None, true);
    assert!(text.starts_with("HTTP/1.1 599 <none>\r\n"), "{text}");
    let mut out = Vec::new();
    assert_eq!(
        encode_head(&mut out, &response(103, &[]), false, BodyLength::None, true),
        Err(Unsendable)
    );
}

#[test]
fn head_204_and_304_answers_carry_no_body() {
    // HEAD: the length the answer states stays, nothing follows.
    let parts = response(200, &[("content-length", "1234")]);
    let (text, framing, _) = encoded(&parts, true, BodyLength::None, true);
    assert!(text.contains("content-length: 1234\r\n"), "{text}");
    assert_eq!(framing, Framing::Length(0));
    let (text, _, _) = encoded(&parts, true, BodyLength::Known(0), true);
    assert!(text.contains("content-length: 1234\r\n"), "{text}");
    let (text, framing, _) = encoded(&response(200, &[]), true, BodyLength::Known(7), true);
    assert!(text.contains("content-length: 7\r\n"), "{text}");
    assert_eq!(framing, Framing::Length(0));
    let (text, framing, _) = encoded(&response(200, &[]), true, BodyLength::None, true);
    assert!(!text.contains("content-length"), "{text}");
    assert_eq!(framing, Framing::Length(0));
    // 204 and 304: no length, no coding.
    for status in [204, 304] {
        let parts = response(
            status,
            &[("content-length", "10"), ("transfer-encoding", "chunked")],
        );
        let (text, framing, _) = encoded(&parts, false, BodyLength::None, true);
        assert!(!text.contains("content-length"), "{text}");
        assert!(!text.contains("transfer-encoding"), "{text}");
        assert_eq!(framing, Framing::Length(0));
        let (_, framing, _) = encoded(&response(status, &[]), false, BodyLength::Unknown, true);
        assert_eq!(framing, Framing::Length(0));
    }
}

#[test]
fn an_unknown_length_is_chunked_unless_a_length_is_stated() {
    let (text, framing, _) = encoded(&response(200, &[]), false, BodyLength::Unknown, true);
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert_eq!(framing, Framing::Chunked);
    let parts = response(200, &[("content-length", "5")]);
    let (text, framing, _) = encoded(&parts, false, BodyLength::Unknown, true);
    assert!(text.contains("content-length: 5\r\n"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert_eq!(framing, Framing::Length(5));
    // An empty body drops a stated length for 0.
    let (text, framing, _) = encoded(&parts, false, BodyLength::None, true);
    assert!(text.contains("content-length: 0\r\n"), "{text}");
    assert!(!text.contains("content-length: 5"), "{text}");
    assert_eq!(framing, Framing::Length(0));
}

#[test]
fn a_transfer_coding_ends_with_chunked_and_wins_over_a_length() {
    let parts = response(
        200,
        &[
            ("transfer-encoding", "gzip"),
            ("content-length", "5"),
            ("x-after", "1"),
        ],
    );
    let (text, framing, _) = encoded(&parts, false, BodyLength::Unknown, true);
    assert!(
        text.contains("transfer-encoding: gzip, chunked\r\nx-after: 1\r\n"),
        "{text}"
    );
    assert!(!text.contains("content-length"), "{text}");
    assert_eq!(framing, Framing::Chunked);
    let parts = response(
        200,
        &[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ],
    );
    let (text, ..) = encoded(&parts, false, BodyLength::Unknown, true);
    assert!(
        text.contains("transfer-encoding: gzip, chunked\r\ndate"),
        "{text}"
    );
}

#[test]
fn unclear_lengths_never_frame_a_body() {
    let unclear = [
        &[("content-length", "1x")][..],
        &[("content-length", "+1")],
        &[("content-length", "")],
        &[("content-length", "1, 2")],
        &[("content-length", "1"), ("content-length", "2")],
    ];
    for fields in unclear {
        let parts = response(200, fields);
        // A body of unknown length cannot be sent by it.
        let mut out = Vec::new();
        assert_eq!(
            encode_head(&mut out, &parts, false, BodyLength::Unknown, true),
            Err(Unsendable),
            "{fields:?}"
        );
        // Elsewhere it is left out: the body's own length, or none.
        let (text, framing, _) = encoded(&parts, false, BodyLength::Known(3), true);
        assert!(text.contains("content-length: 3\r\n"), "{text}");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert_eq!(framing, Framing::Length(3));
        let (text, ..) = encoded(&parts, true, BodyLength::None, true);
        assert!(!text.contains("content-length"), "{fields:?}: {text}");
    }
    // A list of one value repeated is that value, written once.
    let parts = response(200, &[("content-length", "5, 5")]);
    let (text, framing, _) = encoded(&parts, false, BodyLength::Unknown, true);
    assert!(text.contains("content-length: 5\r\n"), "{text}");
    assert_eq!(framing, Framing::Length(5));
    let (text, ..) = encoded(&parts, true, BodyLength::None, true);
    assert!(text.contains("content-length: 5\r\n"), "{text}");
}

#[test]
fn close_is_said_once_by_whichever_side_asked() {
    let (text, _, last) = encoded(&response(200, &[]), false, BodyLength::None, false);
    assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
    assert!(last);
    let parts = response(200, &[("connection", "Close")]);
    let (text, _, last) = encoded(&parts, false, BodyLength::None, true);
    assert_eq!(text.matches("onnection").count(), 1, "{text}");
    assert!(last);
    let (text, _, _) = encoded(&parts, false, BodyLength::None, false);
    assert_eq!(text.matches("onnection").count(), 1, "{text}");
    let parts = response(200, &[("date", "Tue, 01 Dec 2026 00:00:00 GMT")]);
    let mut out = Vec::new();
    encode_head(&mut out, &parts, false, BodyLength::None, true).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().matches("date:").count(), 1);
}

#[test]
fn bodies_are_framed_and_held_to_their_length() {
    let mut out = Vec::new();
    let mut chunked = Framing::Chunked;
    assert!(chunked.encode(b"hello", &mut out));
    assert!(chunked.encode(b"", &mut out));
    assert!(chunked.encode(&[b'x'; 26], &mut out));
    assert!(chunked.finish(&mut out));
    let mut expected = b"5\r\nhello\r\n1A\r\n".to_vec();
    expected.extend_from_slice(&[b'x'; 26]);
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(out, expected);

    let mut length = Framing::Length(4);
    out.clear();
    assert!(length.encode(b"ab", &mut out));
    assert!(!length.finish(&mut Vec::new()), "short");
    assert!(!length.encode(b"cde", &mut out), "long");
    assert!(length.encode(b"cd", &mut out));
    assert!(length.finish(&mut out));
    assert_eq!(out, b"abcd");
    assert_eq!(hex(0, &mut [0; 16]), b"0");
    assert_eq!(hex(usize::MAX, &mut [0; 16]), b"FFFFFFFFFFFFFFFF");
}

#[test]
fn the_end_of_a_head_is_found_in_the_bytes_since_the_last_look() {
    assert!(ends_head(b"GET / HTTP/1.1\r\n\r\n", 0));
    assert!(ends_head(b"GET / HTTP/1.1\n\n", 0));
    assert!(ends_head(b"GET / HTTP/1.1\r\nA: b\n\r\n", 0));
    // The end straddling the last look: the 3 bytes before it count.
    let head = b"GET / HTTP/1.1\r\n\r\n";
    for seen in 0..head.len() {
        assert!(ends_head(head, seen), "{seen}");
    }
    assert!(!ends_head(b"GET / HTTP/1.1\r\nA: b\r\n", 0));
    assert!(!ends_head(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0));
    assert!(!ends_head(b"", 0));
    assert!(!ends_head(b"\r\n", 10));
    // Only the bytes since the last look (and the 3 before them) are read.
    assert!(ends_head(b"\n\nGET / HTTP/1.1\r\nA: b", 0));
    assert!(!ends_head(b"\n\nGET / HTTP/1.1\r\nA: b", 12));
}

#[test]
fn empty_lines_before_a_request_line_are_counted_whole() {
    assert_eq!(leading_empty_lines(b"\r\n\n\r\nGET"), 5);
    assert_eq!(leading_empty_lines(b"\r\n\r"), 2, "a lone CR waits");
    assert_eq!(leading_empty_lines(b"\r\rGET"), 0, "hyper's to refuse");
    assert_eq!(leading_empty_lines(b"GET\r\n"), 0);
    assert_eq!(leading_empty_lines(b""), 0);
}

#[test]
fn field_helpers() {
    assert_eq!(content_length(b"0"), Some(0));
    assert_eq!(
        content_length(b"9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    assert_eq!(content_length(b"18446744073709551616"), None);
    assert_eq!(content_length(b"1,1"), Some(1));
    assert_eq!(content_length(b"1, 2"), None);
    assert_eq!(content_length(b"1,"), None);
    assert_eq!(content_length(b" 1 "), Some(1));
    assert_eq!(content_length(b"1 1"), None);
    assert!(is_chunked(b"gzip, Chunked "));
    assert!(!is_chunked(b"chunked, gzip"));
    assert!(has_close(b"a, close"));
    assert!(!has_close(b"closed"));
}

// === The connection, end to end over an in-memory stream ===

/// A stream that first hands out bytes given back to it.
struct Replay {
    prefix: Bytes,
    inner: DuplexStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

type Answer = Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>>;

/// Serves one side of a duplex stream: fast-path requests are answered
/// `fast <method> <path>`, hyper's `hyper <method> <path> <body>`; both are
/// logged in order.
fn server(
    io: DuplexStream,
    log: Arc<Mutex<Vec<String>>>,
) -> Http1<impl Future<Output = Result<(), hyper::Error>>> {
    let fast_log = log.clone();
    let call = move |req: Request<Inbound>| {
        let line = format!("fast {} {}", req.method(), req.uri());
        fast_log.lock().unwrap().push(line.clone());
        async move {
            let slow = req.uri().path() == "/slow";
            let body: http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible> = if slow {
                // Three pieces, the second after a pause: sent chunked.
                let pieces = futures_util::stream::iter(["a", "b", "c"]).then(|p| async move {
                    tokio::task::yield_now().await;
                    Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(p.as_bytes())))
                });
                BodyExt::boxed_unsync(StreamBody::new(pieces))
            } else {
                BodyExt::boxed_unsync(Full::new(Bytes::from(line)))
            };
            Response::new(body)
        }
    };
    serve(
        Replay {
            prefix: Bytes::new(),
            inner: io,
        },
        call,
        MAX,
        move |mut io, rest| {
            io.prefix = rest;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let head = format!("hyper {} {}", req.method(), req.uri());
                    let body = req.into_body().collect().await?.to_bytes();
                    let line = format!("{head} {}", String::from_utf8_lossy(&body));
                    log.lock().unwrap().push(line.clone());
                    Ok::<Answer, hyper::Error>(Response::new(BodyExt::boxed_unsync(Full::new(
                        Bytes::from(line),
                    ))))
                }
            });
            http1::Builder::new()
                .max_header_size(MAX)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
        },
    )
}

use futures_util::StreamExt;

async fn read_all(mut client: DuplexStream) -> String {
    let mut out = Vec::new();
    bounded(client.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// `f`, or a panic after 10 s: a regression fails instead of hanging.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(10), f)
        .await
        .expect("the connection hung")
}

/// What a client that sends `pieces` in turn (yielding between them, so
/// that each may come in a read of its own) gets from [`server`]: the
/// requests each server saw, in order, everything answered until the
/// connection closed, and how the connection ended.
async fn exchange<P: AsRef<[u8]>>(
    pieces: impl IntoIterator<Item = P>,
) -> (Vec<String>, String, Result<(), hyper::Error>) {
    let (mut client, side) = tokio::io::duplex(64 * 1024);
    let log = Arc::new(Mutex::new(Vec::new()));
    let conn = tokio::spawn(server(side, log.clone()));
    for piece in pieces {
        // The server may close before all is sent (a flood it gave up on).
        if client.write_all(piece.as_ref()).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let text = read_all(client).await;
    let ended = bounded(conn).await.unwrap();
    let seen = log.lock().unwrap().clone();
    (seen, text, ended)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_then_hyper_takes_over() {
    let (seen, text, ended) = exchange([
        &b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /slow HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody\
              GET /four HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
    ])
    .await;
    ended.unwrap();
    assert_eq!(
        seen,
        [
            "fast GET /one",
            "fast GET /slow",
            "hyper POST /three body",
            "hyper GET /four "
        ]
    );
    let one = text.find("fast GET /one").unwrap();
    let slow = text.find("transfer-encoding: chunked").unwrap();
    let three = text.find("hyper POST /three body").unwrap();
    let four = text.find("hyper GET /four").unwrap();
    assert!(one < slow && slow < three && three < four, "{text}");
    assert!(
        text.contains("\r\n\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"),
        "{text}"
    );
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: "),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_head_gets_hypers_answer() {
    let (seen, text, _) =
        exchange([&b"GET /ok HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..]]).await;
    assert_eq!(seen, ["fast GET /ok"]);
    assert!(text.contains("HTTP/1.1 400 Bad Request\r\n"), "{text}");
}

#[tokio::test]
async fn connection_close_ends_the_connection_after_its_answer() {
    let (seen, text, ended) =
        exchange([&b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n"[..]])
            .await;
    ended.unwrap();
    assert_eq!(seen, ["fast GET /a"]);
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
}

/// Counts its drops.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_client_that_goes_away_abandons_its_request() {
    let (mut client, side) = tokio::io::duplex(1024);
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let call = {
        let drops = drops.clone();
        let started = started.clone();
        move |_req: Request<Inbound>| {
            let guard = Dropped(drops.clone());
            started.notify_one();
            async move {
                let _guard = guard;
                std::future::pending::<Response<Full<Bytes>>>().await
            }
        }
    };
    let conn = tokio::spawn(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    started.notified().await;
    drop(client);
    conn.await.unwrap().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn asked_to_close_while_waiting_for_a_next_head_it_ends() {
    let (mut client, side) = tokio::io::duplex(1024);
    let call = |_req: Request<Inbound>| async { Response::new(Full::new(Bytes::new())) };
    let mut conn = Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    // Before any request, a close asked for waits for the first one (as
    // hyper's server does; `drive` bounds the wait).
    conn.as_mut().graceful();
    assert!(futures_util::poll!(conn.as_mut()).is_pending());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(matches!(
        futures_util::poll!(conn.as_mut()),
        Poll::Ready(Ok(()))
    ));
    let mut fresh = {
        let (client, side) = tokio::io::duplex(1024);
        (
            client,
            Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never)),
        )
    };
    fresh.0.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(
        futures_util::poll!(fresh.1.as_mut()).is_pending(),
        "waits for the next"
    );
    fresh.1.as_mut().graceful();
    assert!(matches!(
        futures_util::poll!(fresh.1.as_mut()),
        Poll::Ready(Ok(()))
    ));
    let text = read_all(client).await;
    assert!(text.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn asked_to_close_while_a_request_is_in_flight_it_answers_then_closes() {
    let (mut client, side) = tokio::io::duplex(1024);
    let gate = Arc::new(tokio::sync::Notify::new());
    let call = {
        let gate = gate.clone();
        move |_req: Request<Inbound>| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Response::new(Full::new(Bytes::from_static(b"done")))
            }
        }
    };
    let mut conn = Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(futures_util::poll!(conn.as_mut()).is_pending());
    conn.as_mut().graceful();
    gate.notify_one();
    bounded(conn).await.unwrap();
    let text = read_all(client).await;
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\ndone"), "{text}");
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_served() {
    let head =
        b"GET /slowly HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\nConnection: close\r\n\r\n";
    let (seen, text, ended) = exchange(head.iter().map(std::slice::from_ref)).await;
    ended.unwrap();
    assert_eq!(seen, ["fast GET /slowly"]);
    assert!(text.ends_with("fast GET /slowly"), "{text}");
}

/// A body that has sent all its length but never says it ended.
struct Unended(Option<Bytes>);

impl Body for Unended {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.get_mut().0.take() {
            Some(data) => Poll::Ready(Some(Ok(http_body::Frame::data(data)))),
            None => Poll::Pending,
        }
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(4)
    }
}

#[tokio::test]
async fn a_body_whose_length_has_come_is_not_waited_on() {
    let (mut client, side) = tokio::io::duplex(1024);
    let call = |_req: Request<Inbound>| async {
        Response::new(Unended(Some(Bytes::from_static(b"four"))))
    };
    let conn = tokio::spawn(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    client
        .write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(client).await;
    bounded(conn).await.unwrap().unwrap();
    assert_eq!(text.matches("\r\n\r\nfour").count(), 2, "{text}");
}

#[tokio::test]
async fn asked_to_close_before_the_first_request_it_still_answers_it() {
    let (mut client, side) = tokio::io::duplex(1024);
    let calls = Arc::new(AtomicUsize::new(0));
    let call = {
        let calls = calls.clone();
        move |_req: Request<Inbound>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Response::new(Full::new(Bytes::from_static(b"ok"))) }
        }
    };
    let mut conn = Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    conn.as_mut().graceful();
    // Two pipelined: the first is answered (and says close), the second not.
    client
        .write_all(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    bounded(conn).await.unwrap();
    let text = read_all(client).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
}

#[tokio::test]
async fn a_head_that_never_ends_goes_to_hyper_once_it_is_as_large_as_allowed() {
    let start = std::iter::once(&b"GET / HTTP/1.1\r\nX: "[..]);
    let (seen, text, _) =
        exchange(start.chain(std::iter::repeat_n(&[b'a'; 512][..], MAX / 512))).await;
    assert!(seen.is_empty());
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test]
async fn a_malformed_head_sent_in_pieces_gets_hypers_answer_once_it_ends() {
    let (seen, text, _) = exchange([&b"GET / HTTP/1.1\n"[..], b"Bad Name: x", b"\n", b"\n"]).await;
    assert!(seen.is_empty());
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
}

#[tokio::test]
async fn empty_lines_before_a_request_are_skipped_and_a_flood_of_them_closes() {
    let (seen, text, ended) = exchange([
        &b"\r\n"[..],
        b"\n",
        b"\r",
        b"\nGET /after HTTP/1.1\r\nConnection: close\r\n\r\n",
    ])
    .await;
    ended.unwrap();
    assert_eq!(seen, ["fast GET /after"]);
    assert!(text.ends_with("fast GET /after"), "{text}");

    // A few at a time, as a flood would trickle them.
    let (seen, text, ended) = exchange(std::iter::repeat_n(b"\r\n\n\r\n\n\r\n", MAX / 8)).await;
    ended.unwrap();
    assert!(seen.is_empty());
    assert_eq!(text, "", "closed without an answer");
}

#[tokio::test]
async fn asked_to_close_while_an_answer_streams_no_pipelined_request_follows() {
    let (mut client, side) = tokio::io::duplex(64 * 1024);
    let gate = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let call = {
        let gate = gate.clone();
        let calls = calls.clone();
        move |req: Request<Inbound>| {
            calls.lock().unwrap().push(req.uri().path().to_owned());
            let gate = gate.clone();
            async move {
                // The body's one piece waits for the gate.
                let piece = futures_util::stream::once(async move {
                    gate.notified().await;
                    Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"late")))
                });
                Response::new(StreamBody::new(piece))
            }
        }
    };
    let mut conn = Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    client
        .write_all(b"GET /slow HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // The head of /slow goes out, its body waits; then the close is asked.
    assert!(futures_util::poll!(conn.as_mut()).is_pending());
    conn.as_mut().graceful();
    gate.notify_one();
    bounded(conn).await.unwrap();
    let text = read_all(client).await;
    assert_eq!(*calls.lock().unwrap(), ["/slow"]);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.ends_with("4\r\nlate\r\n0\r\n\r\n"), "{text}");
}

/// A body that only counts its drop.
struct Guarded(#[allow(dead_code)] Dropped);

impl Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }
}

#[tokio::test]
async fn an_answer_that_cannot_be_sent_ends_its_request_before_the_500_is_written() {
    // A client that reads nothing: the 500 (78 bytes) cannot all be written.
    let (client, side) = tokio::io::duplex(32);
    let drops = Arc::new(AtomicUsize::new(0));
    let call = {
        let drops = drops.clone();
        move |_req: Request<Inbound>| {
            let body = Guarded(Dropped(drops.clone()));
            async move {
                let mut resp = Response::new(body);
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5, 6"));
                resp
            }
        }
    };
    let mut conn = Box::pin(serve(side, call, MAX, |_io: DuplexStream, _rest| Never));
    let mut client = client;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(
        futures_util::poll!(conn.as_mut()).is_pending(),
        "the write waits"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the request ended first");
    let reading = tokio::spawn(read_all(client));
    bounded(conn).await.unwrap();
    let text = reading.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
}

/// A hand-over that must not happen.
struct Never;

impl Future for Never {
    type Output = Result<(), hyper::Error>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        panic!("handed over to hyper")
    }
}

impl Graceful for Never {
    fn graceful(self: Pin<&mut Self>) {}
}
