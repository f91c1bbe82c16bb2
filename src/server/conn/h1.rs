//! The gateway's own HTTP/1.1 server, for the requests an API gateway mostly
//! carries: HTTP/1.1, an origin-form target (`/path?query`), and no body —
//! neither `Content-Length` nor `Transfer-Encoding` —, no `Expect`, `Upgrade`
//! or `TE`. hyper's server codec and dispatcher were a fifth of a forwarded
//! request's instructions; this server parses the head with the same parser
//! and settings (httparse, at most 100 fields, `max_header_bytes`) straight
//! into the request handed to the gateway, and writes the answer's head and
//! body into one buffer, framed by hyper's rules (RFC 9112 §6).
//!
//! Anything else — a request with a body, an upgrade, `CONNECT`, HTTP/1.0, an
//! absolute-form target, a head that does not parse or is too large — hands
//! the connection, with every byte read so far, to hyper's server for the rest
//! of its life. Every refusal of a malformed head and every rule for request
//! bodies stays hyper's, unchanged.
//!
//! As hyper's does, it watches the client while a request is in flight: a
//! client that closes its side abandons the request (its upstream exchange
//! is dropped), and the bytes of a pipelined request that arrive meanwhile are
//! kept for afterwards.

use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::Graceful;
use crate::net::Inbound;
use crate::net::head::{self, Field, content_length, ends_chunked as is_chunked};

/// Header fields per request head, as hyper's server allows.
const MAX_HEADERS: usize = 100;
/// The longest request target hyper's server takes.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;
/// Fields a request's map has room for besides its own: what the gateway
/// sets in it on the way upstream behind a trusted proxy (the forwarding
/// fields it extends) or for a method override, so that the map is not grown,
/// and every field hashed again. Whatever else it adds goes beside the map
/// (`proxy::headers::Added`).
const ROOM: usize = 8;
/// Room kept in the read buffer for the next read.
const READ_ROOM: usize = 1024;
/// What the read buffer grows by.
const READ_SIZE: usize = 8 * 1024;
/// A response's bytes are written once this many are buffered (or when its
/// body has nothing more yet, or has ended).
const WRITE_AT: usize = 64 * 1024;

/// A connection served by [`serve`]: a future that ends with the connection,
/// and can be asked to finish the request in flight and close.
pub(super) struct Http1<F> {
    run: Pin<Box<F>>,
    closing: Arc<AtomicBool>,
}

impl<F: Future<Output = Result<(), hyper::Error>>> Future for Http1<F> {
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().run.as_mut().poll(cx)
    }
}

impl<F: Future<Output = Result<(), hyper::Error>>> Graceful for Http1<F> {
    fn graceful(self: Pin<&mut Self>) {
        // Seen at the connection's next poll, which `drive` makes at once.
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// Serves an HTTP/1.1 connection: each request the fast path takes goes to
/// `call`; the first it does not take, and everything after it, goes to the
/// hyper connection `hand_over` makes from the stream and the bytes read but
/// not used.
pub(super) fn serve<IO, C, Fut, B, H, Conn>(
    io: IO,
    call: C,
    max_head: usize,
    hand_over: H,
) -> Http1<impl Future<Output = Result<(), hyper::Error>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Fn(Request<Inbound>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
    H: FnOnce(IO, Bytes) -> Conn,
    Conn: Graceful,
{
    let closing = Arc::new(AtomicBool::new(false));
    let flag = closing.clone();
    let run = async move {
        let closing = flag;
        let mut io = io;
        let mut rbuf = BytesMut::with_capacity(READ_SIZE);
        let mut wbuf = Vec::with_capacity(READ_SIZE);
        // The first request is served even when the connection is asked to close
        // before it arrives (as hyper's server does); after an answer, a close
        // asked for ends the connection before the next request.
        let mut served = false;
        loop {
            // The next head, or the end of the connection. `scanned`: how much of
            // a partial head was looked at, so that a head sent a byte at a time
            // is parsed once it can be whole, not again at every byte.
            let mut scanned: usize = 0;
            // Empty lines before a request line are skipped (RFC 9112 §2.2), each
            // once: left in the buffer, every new one would look like the end of
            // a head and have the whole buffer parsed again. More of them than a
            // head may hold end the connection.
            let mut skipped = 0;
            let head = loop {
                if served && closing.load(Ordering::Relaxed) {
                    let _ = io.shutdown().await;
                    return Ok(());
                }
                let blank = leading_empty_lines(&rbuf);
                if blank > 0 {
                    rbuf.advance(blank);
                    scanned = scanned.saturating_sub(blank);
                    skipped += blank;
                    if skipped >= max_head {
                        tracing::debug!("Connection closed: only empty lines where a head was due");
                        return Ok(());
                    }
                }
                // (Looked for only after a partial head: most heads come whole.)
                let whole = || rbuf.len() >= max_head || ends_head(&rbuf, scanned);
                if !rbuf.is_empty() && (scanned == 0 || whole()) {
                    match parse(&mut rbuf, max_head) {
                        Parsed::Request(head) => break head,
                        Parsed::Partial => scanned = rbuf.len(),
                        Parsed::Elsewhere => {
                            let rest = rbuf.split().freeze();
                            let conn = hand_over(io, rest);
                            return with_hyper(conn, &closing).await;
                        }
                    }
                } else if !rbuf.is_empty() {
                    scanned = rbuf.len();
                }
                let read = poll_fn(|cx| {
                    if served && closing.load(Ordering::Relaxed) {
                        return Poll::Ready(None);
                    }
                    if rbuf.capacity() - rbuf.len() < READ_ROOM {
                        // Takes its allocation back once the heads handed out
                        // before are gone.
                        rbuf.reserve(READ_SIZE);
                    }
                    tokio_util::io::poll_read_buf(Pin::new(&mut io), cx, &mut rbuf).map(Some)
                })
                .await;
                match read {
                    // Asked to close: the close is said (TLS's close_notify).
                    None => {
                        let _ = io.shutdown().await;
                        return Ok(());
                    }
                    // The client closed or failed: nothing is owed for a head
                    // that did not arrive.
                    Some(Ok(0)) | Some(Err(_)) => return Ok(()),
                    Some(Ok(_)) => {}
                }
            };
            served = true;
            let head_request = head.request.method() == Method::HEAD;
            let mut keep_alive = head.keep_alive;

            // The answer, while the client is watched.
            let answer = {
                let mut answer = pin!(call(head.request));
                poll_fn(|cx| {
                    if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                        return Poll::Ready(Some(resp));
                    }
                    if watch(&mut io, &mut rbuf, cx) {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await
            };
            let Some(resp) = answer else {
                tracing::debug!("The client closed its connection while its request was in flight");
                return Ok(());
            };
            let (parts, body) = resp.into_parts();
            if closing.load(Ordering::Relaxed) {
                keep_alive = false;
            }
            let length = if body.is_end_stream() {
                BodyLength::None
            } else {
                body.size_hint()
                    .exact()
                    .map_or(BodyLength::Unknown, BodyLength::Known)
            };
            wbuf.clear();
            let (framing, last) = match encode_head(
                &mut wbuf,
                &parts,
                head_request,
                length,
                keep_alive,
            ) {
                Ok(encoded) => encoded,
                Err(Unsendable) => {
                    // hyper's answer to a head it cannot send: a bare 500, and
                    // the connection's end. The request ends here (its body
                    // dropped, no longer in flight), so that `drive`'s limits
                    // bound the last write and the close.
                    drop(body);
                    tracing::warn!(status = %parts.status, "Response head could not be sent");
                    wbuf.clear();
                    wbuf.extend_from_slice(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    let _ = io.write_all(&wbuf).await;
                    let _ = io.shutdown().await;
                    return Ok(());
                }
            };
            if !send(&mut io, &mut wbuf, &mut rbuf, body, framing).await {
                // Cut off (or the client is gone): dropped, never closed as
                // if the answer had been whole.
                return Ok(());
            }
            if last {
                let _ = io.shutdown().await;
                return Ok(());
            }
        }
    };
    Http1 {
        run: Box::pin(run),
        closing,
    }
}

/// Runs the rest of the connection on hyper's server, asking it to close
/// gracefully once the connection is.
async fn with_hyper<Conn: Graceful>(conn: Conn, closing: &AtomicBool) -> Result<(), hyper::Error> {
    let mut conn = pin!(conn);
    let mut told = false;
    poll_fn(|cx| {
        if !told && closing.load(Ordering::Relaxed) {
            told = true;
            conn.as_mut().graceful();
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// Looks at the client while its request is in flight: `true` once it has
/// closed its side or failed. Bytes that arrive (a pipelined request) are
/// kept, and then nothing more is read until the answer has gone, as hyper
/// does. The bytes are read into a small buffer of their own, so that the
/// connection's read buffer, whose bytes the request's head still shares, is
/// never reallocated for a read that finds nothing.
fn watch<IO: AsyncRead + Unpin>(io: &mut IO, rbuf: &mut BytesMut, cx: &mut Context<'_>) -> bool {
    if !rbuf.is_empty() {
        return false;
    }
    let mut probe = [MaybeUninit::<u8>::uninit(); 512];
    let mut read = ReadBuf::uninit(&mut probe);
    match Pin::new(io).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) if read.filled().is_empty() => true,
        Poll::Ready(Ok(())) => {
            rbuf.extend_from_slice(read.filled());
            false
        }
        Poll::Ready(Err(_)) => true,
        Poll::Pending => false,
    }
}

/// Sends a response's body (its head is in `wbuf`) by `framing`; `false` if
/// it could not be sent whole, and the connection must close.
async fn send<IO, B>(
    io: &mut IO,
    wbuf: &mut Vec<u8>,
    rbuf: &mut BytesMut,
    body: B,
    framing: Framing,
) -> bool
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
{
    let mut body = pin!(body);
    let mut framing = framing;
    // A body that is not sent (`HEAD`, 204, 304, or empty) is not read.
    let mut more = framing != Framing::Length(0);
    loop {
        let mut failed = false;
        if more {
            let step = poll_fn(|cx| gather(body.as_mut(), wbuf, &mut framing, io, rbuf, cx)).await;
            match step {
                Gathered::Some => {}
                Gathered::End => more = false,
                Gathered::Failed => {
                    more = false;
                    failed = true;
                }
            }
        }
        if !wbuf.is_empty() {
            if io.write_all(wbuf).await.is_err() {
                return false;
            }
            wbuf.clear();
        }
        if failed {
            // What was sent is short of its framing's end: the client sees
            // a response cut off, never a complete one.
            let _ = io.flush().await;
            return false;
        }
        if !more {
            return io.flush().await.is_ok();
        }
        // TLS holds records back until flushed; the body may be a while.
        if io.flush().await.is_err() {
            return false;
        }
    }
}

/// What [`gather`] stopped at.
enum Gathered {
    /// Bytes to write: the buffer is full, or the body has nothing more yet.
    Some,
    /// The body ended, and its end is framed.
    End,
    /// The body failed, or broke its framing (the connection must close).
    Failed,
}

/// Encodes the body's frames into `wbuf` until it is full, the body has
/// nothing more for now (with something to write), or it ended. While it has
/// nothing, the client is watched; one that went away fails the body.
fn gather<B, IO>(
    mut body: Pin<&mut B>,
    wbuf: &mut Vec<u8>,
    framing: &mut Framing,
    io: &mut IO,
    rbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<Gathered>
where
    B: Body<Data = Bytes>,
    IO: AsyncRead + Unpin,
{
    loop {
        if wbuf.len() >= WRITE_AT {
            return Poll::Ready(Gathered::Some);
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Trailers are dropped: the request did not offer `TE:
                // trailers` (it would have gone to hyper's server).
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if !framing.encode(&data, wbuf) {
                    tracing::debug!("Response body longer than its Content-Length");
                    return Poll::Ready(Gathered::Failed);
                }
                if *framing == Framing::Length(0) {
                    // All its length has come: the body is not waited on
                    // to say it ended (hyper's rule too).
                    return Poll::Ready(Gathered::End);
                }
            }
            Poll::Ready(None) => {
                return Poll::Ready(if framing.finish(wbuf) {
                    Gathered::End
                } else {
                    tracing::debug!("Response body shorter than its Content-Length");
                    Gathered::Failed
                });
            }
            Poll::Ready(Some(Err(_))) => {
                tracing::debug!("Response body failed");
                return Poll::Ready(Gathered::Failed);
            }
            Poll::Pending => {
                if !wbuf.is_empty() {
                    return Poll::Ready(Gathered::Some);
                }
                if watch(io, rbuf, cx) {
                    return Poll::Ready(Gathered::Failed);
                }
                return Poll::Pending;
            }
        }
    }
}

/// A request head the fast path takes.
struct Head {
    request: Request<Inbound>,
    /// No `Connection: close` among its fields.
    keep_alive: bool,
}

/// What [`parse`] found at the front of the read buffer.
#[allow(clippy::large_enum_variant)] // on the stack once per request; boxing it would allocate
enum Parsed {
    /// A whole head the fast path takes (consumed from the buffer).
    Request(Head),
    /// Part of a head, shorter than `max_head`.
    Partial,
    /// Something for hyper's server (nothing consumed).
    Elsewhere,
}

/// Parses the head at the front of `buf` as hyper's server would, and takes
/// it only if the fast path serves it: HTTP/1.1, an origin-form target, a
/// method other than `CONNECT`, and none of the fields that bring a body or
/// change the exchange (`Content-Length`, `Transfer-Encoding`, `Expect`,
/// `Upgrade`, `TE`).
fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    let mut fields = [Field::default(); MAX_HEADERS];
    let (len, method, path, count, keep_alive) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
            _ => return Parsed::Elsewhere,
        };
        if len > max_head || req.version != Some(1) {
            return Parsed::Elsewhere;
        }
        let Some(Ok(method)) = req.method.map(|m| Method::from_bytes(m.as_bytes())) else {
            return Parsed::Elsewhere;
        };
        let Some(path) = req.path else {
            return Parsed::Elsewhere;
        };
        if method == Method::CONNECT || !path.starts_with('/') || path.len() > MAX_URI_LEN {
            return Parsed::Elsewhere;
        }
        let at = |part: &[u8]| head::span(buf, len, part);
        let Some(path) = at(path.as_bytes()) else {
            return Parsed::Elsewhere;
        };
        let mut keep_alive = true;
        for (field, h) in fields.iter_mut().zip(req.headers.iter()) {
            let name = h.name.as_bytes();
            let elsewhere = [
                "content-length",
                "transfer-encoding",
                "expect",
                "upgrade",
                "te",
            ]
            .iter()
            .any(|n| n.len() == name.len() && n.as_bytes().eq_ignore_ascii_case(name));
            if elsewhere {
                return Parsed::Elsewhere;
            }
            if name.eq_ignore_ascii_case(b"connection") && has_close(h.value) {
                keep_alive = false;
            }
            match (at(name), at(h.value)) {
                (Some(n), Some(v)) => {
                    field.name = n;
                    field.value = v;
                }
                _ => return Parsed::Elsewhere,
            }
        }
        (len, method, path, req.headers.len(), keep_alive)
    };
    // The values and target share the head's bytes, as hyper's do.
    let frozen = buf.split_to(len).freeze();
    let built = (|| {
        let uri = Uri::from_maybe_shared(head::cut(&frozen, path)).ok()?;
        let mut headers = HeaderMap::try_with_capacity(count + ROOM).ok()?;
        for field in &fields[..count] {
            let name = HeaderName::from_bytes(head::part(&frozen, field.name)).ok()?;
            let value = HeaderValue::from_maybe_shared(head::cut(&frozen, field.value)).ok()?;
            headers.try_append(name, value).ok()?;
        }
        let mut request = Request::new(Inbound::Empty);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Some(request)
    })();
    match built {
        Some(request) => Parsed::Request(Head {
            request,
            keep_alive,
        }),
        None => {
            // Put back as it was: hyper's server answers it.
            let mut whole = BytesMut::with_capacity(frozen.len() + buf.len());
            whole.extend_from_slice(&frozen);
            whole.extend_from_slice(buf);
            *buf = whole;
            Parsed::Elsewhere
        }
    }
}

/// How many bytes of empty lines (`\r\n` or `\n`) `buf` starts with; a
/// lone `\r` is not one (it waits for its `\n`, or is hyper's to refuse).
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &buf[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            _ => return at,
        }
    }
}

/// Whether the bytes after the first `from` of `buf` (and the 3 before them)
/// end a head: an empty line, `\n\n` or `\n\r\n` (hyper's quick check
/// before a partial head is parsed again).
fn ends_head(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3).min(buf.len())..];
    tail.windows(2)
        .enumerate()
        .any(|(i, w)| w[0] == b'\n' && (w[1] == b'\n' || tail[i + 1..].starts_with(b"\r\n")))
}

/// Whether a `Connection` value lists `close` (hyper's rule: any of its
/// comma-separated tokens, case-insensitively).
fn has_close(value: &[u8]) -> bool {
    head::has_token(value, b"close")
}

/// What a response's body is known to be before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    /// Empty (it says it has ended).
    None,
    /// Exactly this many bytes.
    Known(u64),
    /// Not known in advance.
    Unknown,
}

/// How a response's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes more (0: no body is sent).
    Length(u64),
    /// Chunked (RFC 9112 §7.1).
    Chunked,
}

impl Framing {
    /// Appends a piece of the body; `false` if it goes past the length.
    fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if data.is_empty() {
            return true;
        }
        match self {
            Framing::Length(left) => {
                let Some(rest) = left.checked_sub(data.len() as u64) else {
                    return false;
                };
                *left = rest;
                out.extend_from_slice(data);
            }
            Framing::Chunked => {
                let mut size = [0u8; 16];
                let digits = hex(data.len(), &mut size);
                out.extend_from_slice(digits);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
        true
    }

    /// Appends the body's end; `false` if it came short of its length.
    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        match self {
            Framing::Length(left) => *left == 0,
            Framing::Chunked => {
                out.extend_from_slice(b"0\r\n\r\n");
                true
            }
        }
    }
}

/// `n` in hexadecimal, upper case, as the end of `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b"0123456789ABCDEF"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A response head that cannot be sent: an informational status (hyper's
/// server refuses them too), or `Content-Length` values that are invalid or
/// differ.
#[derive(Debug, PartialEq, Eq)]
struct Unsendable;

/// Writes a response's head into `dst` by hyper's server rules, and returns
/// how its body is framed and whether the connection ends after it (`close`
/// asked by either side, or `keep_alive` false — then the head says so).
///
/// - `HEAD`, 204 and 304 send no body; a `HEAD` answer keeps the length it
///   states.
/// - `Transfer-Encoding` (where a body may be sent) wins: chunked is added
///   last if missing, and any `Content-Length` is dropped.
/// - Else a `Content-Length` field is kept if the body is not known to be
///   empty; a body of known length is framed by that length; an unknown one
///   without a length is sent chunked; an empty one states 0 where a length
///   may be stated.
/// - `Date` is added if missing.
fn encode_head(
    dst: &mut Vec<u8>,
    parts: &http::response::Parts,
    head_request: bool,
    length: BodyLength,
    keep_alive: bool,
) -> Result<(Framing, bool), Unsendable> {
    let status = parts.status;
    if status.is_informational() {
        return Err(Unsendable);
    }
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(r) => dst.extend_from_slice(r.as_bytes()),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let no_length = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let can_body = !head_request && !no_length;
    let mut close = !keep_alive;
    let mut said_close = false;
    let mut wrote_date = false;
    // The length the fields state, if they state one they agree on.
    let mut stated: Option<u64> = None;
    let mut unclear = false;
    let mut coded: Option<bool> = None;
    for (name, value) in &parts.headers {
        match *name {
            header::CONTENT_LENGTH => {
                match (content_length(value.as_bytes()), stated) {
                    (Some(n), None) => stated = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => unclear = true,
                }
                continue;
            }
            header::TRANSFER_ENCODING => {
                if can_body {
                    dst.extend_from_slice(if coded.is_some() {
                        b", "
                    } else {
                        b"transfer-encoding: "
                    });
                    dst.extend_from_slice(value.as_bytes());
                    coded = Some(is_chunked(value.as_bytes()));
                }
                continue;
            }
            header::TRAILER if !can_body => continue,
            header::CONNECTION if has_close(value.as_bytes()) => {
                close = true;
                said_close = true;
            }
            header::DATE => wrote_date = true,
            _ => {}
        }
        if coded.is_some() && !matches!(dst.last(), Some(b'\n')) {
            end_coding(dst, coded);
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if coded.is_some() && !matches!(dst.last(), Some(b'\n')) {
        end_coding(dst, coded);
    }
    let mut framing = if coded.is_some() {
        Framing::Chunked
    } else {
        let mut line = |n: &[u8]| {
            dst.extend_from_slice(b"content-length: ");
            dst.extend_from_slice(n);
            dst.extend_from_slice(b"\r\n");
        };
        let mut digits = itoa::Buffer::new();
        // A length the fields do not state clearly frames nothing: a body of
        // unknown length cannot be sent by it, and elsewhere it is left out.
        if unclear {
            if can_body && length == BodyLength::Unknown {
                return Err(Unsendable);
            }
            stated = None;
        }
        match (length, stated) {
            (_, Some(n)) if head_request => {
                line(digits.format(n).as_bytes());
                Framing::Length(0)
            }
            (BodyLength::Known(n), _) => {
                if !no_length {
                    line(digits.format(n).as_bytes());
                }
                Framing::Length(n)
            }
            (BodyLength::Unknown, Some(n)) => {
                line(digits.format(n).as_bytes());
                Framing::Length(n)
            }
            (BodyLength::Unknown, None) if can_body => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            (BodyLength::Unknown, None) => Framing::Length(0),
            (BodyLength::None, _) => {
                if !no_length && !head_request {
                    line(b"0");
                }
                Framing::Length(0)
            }
        }
    };
    if !can_body {
        framing = Framing::Length(0);
    }
    if let Some(date) = crate::clock::http_date().filter(|_| !wrote_date) {
        dst.extend_from_slice(b"date: ");
        dst.extend_from_slice(&date);
        dst.extend_from_slice(b"\r\n");
    }
    if close && !said_close {
        dst.extend_from_slice(b"connection: close\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    Ok((framing, close))
}

/// Ends the `Transfer-Encoding` line, with `chunked` last if it was not.
fn end_coding(dst: &mut Vec<u8>, coded: Option<bool>) {
    if coded == Some(false) {
        dst.extend_from_slice(b", chunked");
    }
    dst.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
