use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::chunked::{Chunked, Step};
use super::*;

fn head(bytes: &[u8], method: &Method) -> Result<Option<Head>, Error> {
    let mut buf = BytesMut::from(bytes);
    parse_head(&mut buf, method)
}

fn complete(bytes: &[u8]) -> Head {
    match head(bytes, &Method::GET) {
        Ok(Some(h)) => h,
        other => panic!("not a complete head: {other:?}"),
    }
}

#[test]
fn a_head_with_its_fields_and_length() {
    let h = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok");
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.reason.is_none());
    assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
    assert!(matches!(h.framing, Framing::Length(2)));
    assert!(h.keep_alive);
}

#[test]
fn an_unusual_reason_phrase_is_kept() {
    let h = complete(b"HTTP/1.1 200 Fine Thanks\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(
        h.reason.as_ref().map(|r| r.as_bytes()),
        Some(&b"Fine Thanks"[..])
    );
}

#[test]
fn a_partial_head_asks_for_more() {
    assert!(matches!(
        head(b"HTTP/1.1 200 OK\r\nContent-Le", &Method::GET),
        Ok(None)
    ));
    assert!(matches!(head(b"HTTP/1.1 20", &Method::GET), Ok(None)));
}

#[test]
fn informational_answers_are_skipped_and_101_refused() {
    let h = complete(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(h.status, StatusCode::NO_CONTENT);
    assert!(h.headers.get("link").is_none());
    assert!(matches!(
        head(b"HTTP/1.1 100 Continue\r\n\r\n", &Method::GET),
        Ok(None)
    ));
    assert!(matches!(
        head(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
            &Method::GET
        ),
        Err(Error::Head(_))
    ));
}

#[test]
fn malformed_heads_are_refused() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nbad header: x\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\0b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    ] {
        assert!(
            head(bad, &Method::GET).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn too_many_fields_are_refused() {
    let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        text.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    text.extend_from_slice(b"\r\n");
    assert!(matches!(head(&text, &Method::GET), Err(Error::Parse(_))));
}

#[test]
fn framing_follows_rfc_9112() {
    let f = |text: &[u8], method: &Method| {
        head(text, method).map(|h| h.map(|h| (h.framing, h.keep_alive)))
    };
    // No body after HEAD, 204, 304, whatever the length says.
    let h = f(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        &Method::HEAD,
    );
    assert!(matches!(h, Ok(Some((Framing::Length(0), true)))));
    let h = f(
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
        &Method::GET,
    );
    assert!(matches!(h, Ok(Some((Framing::Length(0), true)))));
    // Equal repeated lengths are one length.
    let h = f(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n",
        &Method::GET,
    );
    assert!(matches!(h, Ok(Some((Framing::Length(3), true)))));
    // Chunked wins over a length, which is dropped, and the connection is not reused.
    let h = complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
    assert!(matches!(h.framing, Framing::Chunked(_)) && !h.keep_alive);
    assert!(h.headers.get("content-length").is_none());
    let h = complete(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, CHUNKED\r\n\r\n");
    assert!(matches!(h.framing, Framing::Chunked(_)) && h.keep_alive);
    // Another last coding, or no length: to the close.
    let h = complete(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
    assert!(matches!(h.framing, Framing::Close) && !h.keep_alive);
    let h = complete(b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(matches!(h.framing, Framing::Close) && !h.keep_alive);
    // A coding that is not visible ASCII is not read as chunked.
    let h = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\xff, chunked\r\n\r\n");
    assert!(matches!(h.framing, Framing::Close) && !h.keep_alive);
    // Only the last field's last coding counts; names in any case.
    let h = complete(
        b"HTTP/1.1 200 OK\r\nTRANSFER-encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert!(matches!(h.framing, Framing::Close));
    let h = complete(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: Chunked\r\n\r\n",
    );
    assert!(matches!(h.framing, Framing::Chunked(_)) && h.keep_alive);
    // Lengths that differ, across fields or within one, or a malformed one.
    for text in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nCONTENT-LENGTH: 4\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: +3\r\n\r\n",
    ] {
        let h = f(text, &Method::GET);
        assert!(
            matches!(h, Err(Error::Head(_))),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
    // Keep-alive by version and `Connection`.
    assert!(
        !complete(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: x, Close\r\n\r\n")
            .keep_alive
    );
    assert!(!complete(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
    assert!(
        complete(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n")
            .keep_alive
    );
}

fn decode_all(mut c: Chunked, input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, bool), Error> {
    let mut buf = BytesMut::from(input);
    let (mut data, mut trailers) = (Vec::new(), None);
    loop {
        match c.decode(&mut buf)? {
            Step::Frame(f) => match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Step::More => return Ok((data, trailers, false)),
            Step::End => return Ok((data, trailers, buf.is_empty())),
        }
    }
}

#[test]
fn chunked_bodies_decode() {
    let (data, trailers, done) = decode_all(
        Chunked::default(),
        b"5\r\nhello\r\n1;ext=\"x y\"\r\n \r\nA \r\n0123456789\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(data, b"hello 0123456789");
    assert!(trailers.is_none() && done);
    let (data, trailers, done) = decode_all(
        Chunked::default(),
        b"2\r\nok\r\n0\r\nx-sum: 1\r\nx-other: 2\r\n\r\n",
    )
    .unwrap();
    assert_eq!(data, b"ok");
    let trailers = trailers.unwrap();
    assert_eq!(trailers.get("x-sum").unwrap(), "1");
    assert!(done);
}

#[test]
fn chunked_bodies_decode_byte_by_byte() {
    let input = b"5\r\nhello\r\n0\r\nx-t: v\r\n\r\n";
    let mut c = Chunked::default();
    let mut buf = BytesMut::new();
    let (mut data, mut trailers, mut ended) = (Vec::new(), None, false);
    for &b in input {
        buf.extend_from_slice(&[b]);
        loop {
            match c.decode(&mut buf).unwrap() {
                Step::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::More => break,
                Step::End => {
                    ended = true;
                    break;
                }
            }
        }
    }
    assert_eq!(data, b"hello");
    assert!(trailers.is_some() && ended && buf.is_empty());
}

#[test]
fn malformed_chunks_are_refused() {
    for bad in [
        &b"x\r\n"[..],
        b"\r\n",
        b"-1\r\n",
        b"5\nhello\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"1 2\r\n",
        b"1;a\nb\r\n",
        b"1;a\x01\r\n",
        b"10000000000000000\r\n",
        b"0\r\nbad trailer: x\r\n\r\n",
    ] {
        assert!(
            decode_all(Chunked::default(), bad).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A size line that never ends.
    let long = [b'1'; 1]
        .iter()
        .chain([b';'; 1].iter())
        .chain([b'a'; 5000].iter())
        .copied()
        .collect::<Vec<u8>>();
    assert!(decode_all(Chunked::default(), &long).is_err());
    // Trailers that never end.
    let mut trailers = b"0\r\n".to_vec();
    trailers.extend(std::iter::repeat_n(b"x-a: b\r\n".iter().copied(), 3000).flatten());
    assert!(decode_all(Chunked::default(), &trailers).is_err());
}

#[test]
fn which_requests_take_this_path() {
    use http_body_util::{Empty, Full, StreamBody};
    let empty = Empty::<Bytes>::new();
    let three = Full::new(Bytes::from_static(b"abc"));
    let mut h = HeaderMap::new();
    assert_eq!(framing_of(&Method::GET, &h, &empty), Some(None));
    h.insert("content-length", "0".parse().unwrap());
    assert_eq!(framing_of(&Method::GET, &h, &empty), Some(None));
    // An empty body under a length that says otherwise: hyper's client.
    h.insert("content-length", "3".parse().unwrap());
    assert_eq!(framing_of(&Method::POST, &h, &empty), None);
    assert_eq!(framing_of(&Method::POST, &h, &three), Some(Some(3)));
    // A body of unknown length, a transfer coding, CONNECT: hyper's client.
    let stream = StreamBody::new(futures_util::stream::empty::<
        Result<http_body::Frame<Bytes>, std::convert::Infallible>,
    >());
    assert_eq!(framing_of(&Method::POST, &HeaderMap::new(), &stream), None);
    let mut h = HeaderMap::new();
    h.insert("transfer-encoding", "chunked".parse().unwrap());
    assert_eq!(framing_of(&Method::POST, &h, &three), None);
    assert_eq!(
        framing_of(&Method::CONNECT, &HeaderMap::new(), &empty),
        None
    );
}

/// A connection to a one-shot upstream on 127.0.0.1 that reads one request
/// head, answers `answer`, then closes or keeps the socket as told.
async fn upstream(
    answer: &'static [u8],
    then_close: bool,
) -> (Conn, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(answer).await.unwrap();
        if !then_close {
            // Held open until the client goes.
            let _ = s.read(&mut buf).await;
        }
        got
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    (Conn::new(crate::upstream::Stream::Plain(stream)), server)
}

/// The body of the answer `answer` (an upstream as [`upstream`] makes)
/// to a `GET /`.
async fn answered(
    answer: &'static [u8],
    then_close: bool,
) -> (Body, tokio::task::JoinHandle<Vec<u8>>) {
    let (mut conn, server) = upstream(answer, then_close).await;
    let mut head = conn
        .exchange(&request(Method::GET, "/"), &Added::default())
        .await
        .unwrap();
    (head.body(Box::new(conn)), server)
}

fn request(method: Method, target: &str) -> http::request::Parts {
    let (mut parts, ()) = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "api.test")
        .header("transfer-encoding", "chunked")
        .header("x-b", "2")
        .body(())
        .unwrap()
        .into_parts();
    // A `Transfer-Encoding` left in the map is never written.
    parts.headers.append("x-b", "3".parse().unwrap());
    parts
}

async fn read_body(body: &mut Body) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
        if let Ok(d) = frame?.into_data() {
            data.extend_from_slice(&d);
        }
    }
    Ok(data)
}

#[tokio::test]
async fn an_exchange_writes_the_head_and_reads_the_answer() {
    let (mut conn, server) =
        upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false).await;
    // Fields added beside the map follow the map's.
    let (name, value) = (
        http::HeaderName::from_static("x-forwarded-for"),
        http::HeaderValue::from_static("192.0.2.1"),
    );
    let mut added = Added::default();
    added.push(&name, std::borrow::Cow::Borrowed(&value));
    let mut head = conn
        .exchange(&request(Method::GET, "/a/b?c=d"), &added)
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    let mut body = head.body(Box::new(conn));
    assert_eq!(body.size_hint().exact(), Some(5));
    assert_eq!(read_body(&mut body).await.unwrap(), b"hello");
    assert!(body.is_end_stream());
    let conn = body.take_reusable();
    assert!(conn.is_some());
    // The upstream holds its socket until this end closes.
    drop(conn);
    let sent = server.await.unwrap();
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        "GET /a/b?c=d HTTP/1.1\r\nhost: api.test\r\nx-b: 2\r\nx-b: 3\r\nx-forwarded-for: 192.0.2.1\r\n\r\n"
    );
}

#[tokio::test]
async fn a_body_read_to_the_close_is_not_reused() {
    let (mut body, _server) = answered(b"HTTP/1.1 200 OK\r\n\r\nall of it", true).await;
    assert_eq!(read_body(&mut body).await.unwrap(), b"all of it");
    assert!(body.take_reusable().is_none());
}

#[tokio::test]
async fn a_chunked_body_is_decoded_from_the_connection() {
    let (mut body, _server) = answered(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(read_body(&mut body).await.unwrap(), b"abcde");
    assert!(body.take_reusable().is_some());
}

#[tokio::test]
async fn a_truncated_body_is_an_error_and_loses_its_connection() {
    let (mut body, _server) =
        answered(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", true).await;
    assert!(matches!(read_body(&mut body).await, Err(Error::Truncated)));
    assert!(body.take_reusable().is_none());
}

#[tokio::test]
async fn bytes_beyond_the_response_make_the_connection_unusable() {
    let (mut body, _server) = answered(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(read_body(&mut body).await.unwrap(), b"ok");
    // Read with the answer, or arrived after it: either way never reused.
    assert!(
        body.take_reusable()
            .is_none_or(|mut conn| !conn.still_open())
    );
}

#[tokio::test]
async fn a_close_before_any_answer_is_unanswered() {
    let (mut conn, _server) = upstream(b"", true).await;
    let err = conn
        .exchange(&request(Method::GET, "/"), &Added::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unanswered(_)), "{err:?}");
}

#[tokio::test]
async fn a_close_within_the_head_is_truncated() {
    let (mut conn, _server) = upstream(b"HTTP/1.1 200 OK\r\ncontent-le", true).await;
    let err = conn
        .exchange(&request(Method::GET, "/"), &Added::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Truncated), "{err:?}");
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_seen_closed() {
    let (mut body, server) = answered(b"HTTP/1.1 204 No Content\r\n\r\n", true).await;
    assert!(body.is_end_stream());
    let mut conn = body.take_reusable().expect("reusable");
    server.await.unwrap();
    // The upstream has closed its end (on loopback its FIN is queued here
    // before its `close` returns): the probe asks the kernel, not the
    // runtime, which has not polled its events since.
    assert!(!conn.still_open());
}

#[tokio::test]
async fn an_idle_connection_still_open_passes_the_probe() {
    let (mut body, _server) =
        answered(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false).await;
    let mut conn = body.take_reusable().expect("reusable");
    assert!(conn.still_open());
}

#[test]
fn a_status_line_without_a_reason_or_with_a_non_utf8_one() {
    // httparse hands these out as a static "", not a slice of the head.
    let h = complete(b"HTTP/1.1 204\r\n\r\n");
    assert_eq!(h.status, StatusCode::NO_CONTENT);
    assert_eq!(h.reason.as_ref().map(|r| r.as_bytes()), Some(&b""[..]));
    let h = complete(b"HTTP/1.1 100\r\n\r\nHTTP/1.1 200\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.status, StatusCode::OK);
    let h = complete(b"HTTP/1.1 200 Caf\xe9\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.status, StatusCode::OK);
}

#[test]
fn hop_by_hop_fields_that_name_no_other_stay_out_of_the_map() {
    let h = complete(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nKeep-Alive: timeout=5\r\n\
          PROXY-CONNECTION: keep-alive\r\nX-A: 1\r\ncontent-length: 0\r\n\r\n",
    );
    let names: Vec<&str> = h.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-a", "content-length"]);
    assert!(h.keep_alive);
    // A `Connection` that names another field stays, for its removal to be
    // judged with the rest of the map's hop-by-hop fields.
    let h = complete(
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nConnection: X-A\r\nX-A: 1\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(h.headers.get_all("connection").iter().count(), 1);
    assert_eq!(h.headers["connection"], "X-A");
    assert!(h.keep_alive);
    // So does `close`, which could name a field `Close` too.
    let h = complete(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.headers["connection"], "close");
    assert!(!h.keep_alive);
    // `Transfer-Encoding` says how the body comes, and goes no further.
    let h = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(matches!(h.framing, Framing::Chunked(_)));
    assert!(h.headers.is_empty());
}

#[test]
fn close_wins_over_keep_alive() {
    for text in [
        &b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive, close\r\n\r\n"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\nconnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive, CLOSE\r\n\r\n",
    ] {
        assert!(!complete(text).keep_alive, "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn chunk_sizes_may_have_leading_zeros_and_extensions_are_bounded_per_body() {
    let (data, _, done) = decode_all(
        Chunked::default(),
        b"000000000000000000005\r\nhello\r\n00\r\n\r\n",
    )
    .unwrap();
    assert_eq!(data, b"hello");
    assert!(done);
    // Each line within its own bound, together over 16 KiB.
    let mut body = Vec::new();
    for _ in 0..6 {
        body.extend_from_slice(b"1;");
        body.extend(std::iter::repeat_n(b'e', 3000));
        body.extend_from_slice(b"\r\nx\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    assert!(matches!(
        decode_all(Chunked::default(), &body),
        Err(Error::Body(_))
    ));
}

/// An upstream that reads a request head and `body` more bytes, answers
/// `answer`, and hands back everything it read.
async fn upstream_reading(
    body: usize,
    answer: &'static [u8],
) -> (Conn, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let head = got.windows(4).position(|w| w == b"\r\n\r\n");
            if head.is_some_and(|at| got.len() >= at + 4 + body) {
                break;
            }
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(answer).await.unwrap();
        let _ = s.read(&mut buf).await;
        got
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    (Conn::new(crate::upstream::Stream::Plain(stream)), server)
}

#[tokio::test]
async fn a_body_goes_with_its_length_whatever_the_map_said() {
    let (mut conn, server) = upstream_reading(5, OK_EMPTY).await;
    let mut req = request(Method::POST, "/up");
    req.headers.insert("content-length", "99".parse().unwrap());
    let body = http_body_util::Full::new(Bytes::from_static(b"hello"));
    let mut head = conn
        .exchange_with_body(&req, &Added::default(), body, 5)
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    let mut body = head.body(Box::new(conn));
    assert!(body.take_reusable().is_some());
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert_eq!(
        sent,
        "POST /up HTTP/1.1\r\nhost: api.test\r\nx-b: 2\r\nx-b: 3\r\ncontent-length: 5\r\n\r\nhello"
    );
}

#[tokio::test]
async fn an_answer_before_the_whole_body_ends_the_exchange_and_the_connection() {
    // The upstream answers after the head alone; the body never ends.
    let (mut conn, _server) = upstream_reading(0, OK_EMPTY).await;
    let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<http_body::Frame<Bytes>, std::io::Error>,
    >());
    let mut head = conn
        .exchange_with_body(&request(Method::POST, "/"), &Added::default(), body, 10)
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body(Box::new(conn)).take_reusable().is_none());
}

#[tokio::test]
async fn a_body_that_fails_or_lies_about_its_length_is_a_request_error() {
    let (mut conn, _server) = upstream_reading(100, OK_EMPTY).await;
    let short = http_body_util::Full::new(Bytes::from_static(b"abc"));
    let err = conn
        .exchange_with_body(&request(Method::POST, "/"), &Added::default(), short, 4)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Request(_)), "{err:?}");
    let (mut conn, _server) = upstream_reading(100, OK_EMPTY).await;
    let long = http_body_util::Full::new(Bytes::from_static(b"abcde"));
    let err = conn
        .exchange_with_body(&request(Method::POST, "/"), &Added::default(), long, 4)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Request(_)), "{err:?}");
}

const OK_EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

#[tokio::test]
async fn the_body_goes_on_while_an_early_answer_is_read() {
    // An echo: it answers after the head alone, then sends back what the
    // body brings, as it arrives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .await
            .unwrap();
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut echoed = got.len() - at;
        s.write_all(&got[at..]).await.unwrap();
        while echoed < 5 {
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
            echoed += n;
        }
        let _ = s.read(&mut buf).await;
    });
    let mut conn = Conn::new(crate::upstream::Stream::Plain(
        TcpStream::connect(addr).await.unwrap(),
    ));
    // The body comes only once the answer's head is in.
    let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
    let body = http_body_util::StreamBody::new(futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(http_body::Frame::data(rx.await.unwrap()))
    }));
    let mut head = conn
        .exchange_with_body(&request(Method::POST, "/echo"), &Added::default(), body, 5)
        .await
        .unwrap();
    tx.send(Bytes::from_static(b"hello")).unwrap();
    let mut body = head.body(Box::new(conn));
    // Bounded: were the body not sent, the echo would never answer (a safety
    // net, never a wait).
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(10), read_body(&mut body));
    assert_eq!(
        echoed.await.expect("the body was never sent").unwrap(),
        b"hello"
    );
    // All of the request went, all of the answer came: reusable.
    assert!(body.take_reusable().is_some());
}
