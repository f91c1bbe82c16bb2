//! The upstream leg of an HTTP/1.1 exchange for a request without a body —
//! most API calls — or with one of a known length, without hyper's client:
//! the request head written straight into the connection's buffer (the body
//! after it, as it arrives), the response head parsed with httparse into
//! the response's header map (values shared with the bytes read, not copied),
//! and the response body read by its framing (RFC 9112 §6.3) from the same
//! buffer, in the request's own task. hyper's client keeps a connection task of
//! its own and hands each request and response across a channel; here nothing
//! changes task, and a connection's buffers are reused from one request to the
//! next. Bodies of unknown length, protocol upgrades, `CONNECT` and HTTP/2
//! upstreams keep hyper's client (`pool`).
//!
//! The framing rules are hyper's, so that an upstream sees no difference: 1xx
//! answers skipped, no body after `HEAD`, 204 or 304, `Transfer-Encoding` ending
//! in `chunked` over `Content-Length` (which is then dropped, and the connection
//! not reused), any other `Transfer-Encoding` read to the close, differing or
//! malformed `Content-Length`s refused, `Transfer-Encoding` in an HTTP/1.0
//! answer refused. Also as hyper: at most 100 fields, a head of at most
//! 417,792 bytes, chunk extensions and trailers bounded. Unlike hyper, a 101
//! that was not asked for is refused (the connection would belong to nobody).

mod chunked;

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::headers::{self, Added};
use crate::net::head::{self, Field};
use crate::upstream::Stream;
use chunked::{Chunked, Step};

/// The largest response head read (hyper's client default: 8 KiB + 100 × 4 KiB).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most header fields a response head may have (hyper's default).
const MAX_HEADERS: usize = 100;
/// What a read reserves at least; a read that fills it doubles it for the next
/// one, up to [`MAX_READ`], so that a large body moves in large pieces.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing of an answer arrived: the upstream closed (or reset) the
    /// connection first. On a reused connection that is most likely the
    /// keep-alive race, and an idempotent request may be sent again.
    #[error("the upstream closed the connection without answering")]
    Unanswered(#[source] Option<io::Error>),
    #[error("reading from the upstream failed")]
    Io(#[source] io::Error),
    #[error("the upstream's response head is malformed")]
    Parse(#[source] httparse::Error),
    #[error("the upstream's response head is malformed: {0}")]
    Head(&'static str),
    #[error("the upstream's response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the upstream's response body is malformed: {0}")]
    Body(&'static str),
    #[error("the upstream closed the connection in the middle of the response")]
    Truncated,
    /// The client's request body failed (its error is the body's own).
    #[error("the request body could not be sent")]
    Request(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One HTTP/1.1 connection to an upstream, with the buffers it reuses.
pub struct Conn {
    io: Stream,
    /// What was read and not consumed yet.
    buf: BytesMut,
    /// The request head being written.
    out: Vec<u8>,
    /// How much the next body read reserves.
    read_size: usize,
}

/// The upstream's response head, ready for the client.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// A reason phrase other than the status code's usual one, relayed as is.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    framing: Framing,
    keep_alive: bool,
    /// The rest of the request body, when the answer came before all of it.
    upload: Option<Upload>,
}

/// A request body on its way to the upstream: its next piece being written,
/// and how much of its declared length went.
struct Upload {
    body: Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send>>,
    /// Written in part: the rest.
    chunk: Bytes,
    sent: u64,
    len: u64,
    /// Something was written since the last flush.
    unflushed: bool,
    /// The body is at its end (all of it written and flushed).
    ended: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("sent", &self.sent)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Moves the body along: writes what is pending, flushes, and takes the
    /// next piece from the client. Ready once it is all written and flushed;
    /// Pending while the client or the socket makes it wait (woken by
    /// either).
    fn poll_send(&mut self, io: &mut Stream, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if !self.chunk.is_empty() {
                match ready!(Pin::new(&mut *io).poll_write(cx, &self.chunk)) {
                    Ok(0) => return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into()))),
                    Ok(n) => {
                        self.chunk.advance(n);
                        self.unflushed = true;
                    }
                    Err(e) => return Poll::Ready(Err(Error::Io(e))),
                }
                continue;
            }
            // What was written reaches the upstream before the client is
            // waited for (TLS holds records back until flushed).
            if self.unflushed {
                if let Err(e) = ready!(Pin::new(&mut *io).poll_flush(cx)) {
                    return Poll::Ready(Err(Error::Io(e)));
                }
                self.unflushed = false;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers cannot follow a body sent with its length
                    // (hyper's client drops them too).
                    if let Ok(data) = frame.into_data() {
                        self.sent = self.sent.saturating_add(data.len() as u64);
                        if self.sent > self.len {
                            return Poll::Ready(Err(Error::Request(
                                "the body is longer than its length".into(),
                            )));
                        }
                        self.chunk = data;
                    }
                    self.ended = self.body.is_end_stream();
                }
                None => self.ended = true,
                Some(Err(e)) => return Poll::Ready(Err(Error::Request(e))),
            }
            if self.ended && self.sent != self.len {
                return Poll::Ready(Err(Error::Request(
                    "the body is shorter than its length".into(),
                )));
            }
        }
    }

    /// Whether all of the declared length reached the upstream.
    fn delivered(&self) -> bool {
        self.sent == self.len && self.chunk.is_empty() && !self.unflushed
    }
}

/// How the response body ends.
#[derive(Debug)]
enum Framing {
    /// After this many more bytes.
    Length(u64),
    Chunked(Chunked),
    /// When the upstream closes the connection.
    Close,
}

// === impl Head ===

impl Head {
    /// The body of this response, read from `conn`, the connection that
    /// answered (it goes with the body).
    pub fn body(&mut self, conn: Box<Conn>) -> Body {
        Body {
            conn: Some(conn),
            framing: std::mem::replace(&mut self.framing, Framing::Length(0)),
            keep_alive: self.keep_alive,
            ended: false,
            upload: self.upload.take(),
        }
    }
}

// === impl Conn ===

impl Conn {
    /// A fresh connection.
    pub fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: MIN_READ,
        }
    }

    /// Whether an idle connection may carry another request: the upstream has
    /// neither closed it nor sent anything unasked while it sat in the pool
    /// (stray bytes would be read as the next request's answer). Asks the
    /// kernel (a non-blocking `MSG_PEEK`), not the runtime's readiness, which
    /// learns of a close or of stray bytes only at its next poll of the
    /// event queue and may be withheld by the task's cooperative budget: the
    /// only window left is the one between this call and the request's
    /// write. Over TLS, plaintext rustls already holds, or a close it saw,
    /// count too; so does any TLS record on the socket (a late session
    /// ticket costs a reconnection, nothing more).
    pub fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let tcp = match &mut self.io {
            Stream::Plain(tcp) => &*tcp,
            Stream::Tls(tls) => {
                let (tcp, session) = tls.get_mut();
                match session.process_new_packets() {
                    Ok(io) if io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed() => {}
                    _ => return false,
                }
                &*tcp
            }
        };
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(tcp).peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Made ready for the pool: a large read buffer (after a large body) is
    /// let go, and reads start small again.
    fn recycle(&mut self) {
        if self.buf.capacity() > 4 * MIN_READ {
            self.buf = BytesMut::new();
        }
        self.read_size = MIN_READ;
    }

    /// Writes the request head (a request without a body) and reads the
    /// response head.
    pub async fn exchange(
        &mut self,
        req: &http::request::Parts,
        added: &Added<'_>,
    ) -> Result<Head, Error> {
        self.out.clear();
        encode_head(&mut self.out, req, added, None);
        let written = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        written.await.map_err(|e| Error::Unanswered(Some(e)))?;
        let mut answered = false;
        std::future::poll_fn(|cx| self.poll_head(cx, &req.method, &mut answered)).await
    }

    /// Writes the request head with `Content-Length: len`, then the body as
    /// it arrives and as fast as the upstream takes it, while reading the
    /// answer. An answer may come before the whole body was sent (an upstream
    /// that streams while it reads, or refuses early): the rest of the body
    /// then goes on being sent while the answer's body is read (as hyper's
    /// client does), and the connection is reused only if all of it went. The
    /// body's own errors (the client's: broken off, too large, stalled) come
    /// back as [`Error::Request`].
    pub async fn exchange_with_body<B>(
        &mut self,
        req: &http::request::Parts,
        added: &Added<'_>,
        body: B,
        len: u64,
    ) -> Result<Head, Error>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.out.clear();
        encode_head(&mut self.out, req, added, Some(len));
        self.io
            .write_all(&self.out)
            .await
            .map_err(|e| Error::Unanswered(Some(e)))?;
        let mut upload = Upload {
            body: Box::pin(http_body_util::BodyExt::map_err(body, Into::into)),
            chunk: Bytes::new(),
            sent: 0,
            len,
            // The head is written, not yet flushed.
            unflushed: true,
            ended: false,
        };
        let mut answered = false;
        let mut head = std::future::poll_fn(|cx| {
            // Whatever the upstream has answered so far first.
            if let Poll::Ready(head) = self.poll_head(cx, &req.method, &mut answered) {
                return Poll::Ready(head);
            }
            match upload.poll_send(&mut self.io, cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                // Sent in full, or waiting for the client or the socket:
                // either way, the answer is what completes this.
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if !(upload.ended && upload.delivered()) {
            head.upload = Some(upload);
        }
        Ok(head)
    }

    /// Reads until the answer's head is complete. `answered`: whether any
    /// byte of an answer came yet.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        answered: &mut bool,
    ) -> Poll<Result<Head, Error>> {
        loop {
            if !self.buf.is_empty() {
                *answered = true;
                if let Some(head) = parse_head(&mut self.buf, method)? {
                    return Poll::Ready(Ok(head));
                }
                if self.buf.len() >= MAX_HEAD {
                    return Poll::Ready(Err(Error::HeadTooLarge));
                }
            }
            self.buf.reserve(MIN_READ);
            match ready!(self.poll_read(cx)) {
                Ok(0) if !*answered => return Poll::Ready(Err(Error::Unanswered(None))),
                Ok(0) => return Poll::Ready(Err(Error::Truncated)),
                Ok(_) => {}
                Err(e) if !*answered => return Poll::Ready(Err(Error::Unanswered(Some(e)))),
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            }
        }
    }

    /// Reads into the buffer's free room (the caller reserved it).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Reads more of a body: room for the current read size, grown when a read
    /// filled it.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(self.read_size);
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(self.poll_read(cx))?;
        if n == room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }
}

/// The request line and fields: the map's, then those added beside it. Both
/// hold only valid names and values (no CR or LF can reach the upstream).
/// `Transfer-Encoding` is never written (the body, if any, goes with its
/// length); with a body of `len` bytes, one `Content-Length: len` replaces
/// whatever the map says; without one, a client's `Content-Length: 0` goes as
/// it came.
fn encode_head(out: &mut Vec<u8>, req: &http::request::Parts, added: &Added<'_>, len: Option<u64>) {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.reserve(64 + target.len() + req.headers.len() * 32);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let field = |out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &req.headers {
        if name == TRANSFER_ENCODING || (len.is_some() && name == CONTENT_LENGTH) {
            continue;
        }
        field(out, name, value);
    }
    for (name, value) in added.iter() {
        debug_assert!(!req.headers.contains_key(name), "{name} is in the map too");
        field(out, name, value);
    }
    if let Some(len) = len {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a request goes on this path: `Some(None)` without a body (a
/// `Content-Length`, if any, says 0), `Some(Some(len))` with a body of a known
/// length (declared by the client, or read whole first; an HTTP/2 client's
/// trailers after such a body are dropped, as hyper's client drops them:
/// HTTP/1.1 carries trailers only in chunks); `None` when it takes hyper's
/// client: a body of unknown length (a body read whole with trailers is one),
/// a `Transfer-Encoding`, or `CONNECT` (whose 2xx answer starts a tunnel).
pub fn framing_of<B: http_body::Body>(
    method: &Method,
    headers: &HeaderMap,
    body: &B,
) -> Option<Option<u64>> {
    if method == Method::CONNECT || headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    if body.is_end_stream() {
        let bodiless = headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes() == b"0");
        return bodiless.then_some(None);
    }
    body.size_hint().exact().map(Some)
}

/// Parses a response head at the start of `buf`, consuming it (and any 1xx
/// answers before it); `None` when more must be read first.
fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, Error> {
    loop {
        let mut fields = [Field::default(); MAX_HEADERS];
        let (len, status, version, reason, count) = {
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Error::Parse(e)),
            };
            if len > MAX_HEAD {
                return Err(Error::HeadTooLarge);
            }
            let at = |part: &[u8]| head::span(buf, len, part);
            for (field, h) in fields.iter_mut().zip(resp.headers.iter()) {
                field.name = at(h.name.as_bytes()).ok_or_else(|| Error::Head("header name"))?;
                field.value = at(h.value).ok_or_else(|| Error::Head("header value"))?;
            }
            let code = resp.code.ok_or_else(|| Error::Head("no status code"))?;
            let status =
                StatusCode::from_u16(code).map_err(|_| Error::Head("invalid status code"))?;
            // Copied, as hyper does, and only when unusual: httparse hands
            // an absent or non-UTF-8 phrase out as a static "", not a slice.
            let reason = resp
                .reason
                .filter(|r| Some(*r) != status.canonical_reason())
                .map(|r| Bytes::copy_from_slice(r.as_bytes()));
            (len, status, resp.version, reason, resp.headers.len())
        };
        match status.as_u16() {
            // An upgrade nobody asked for: the connection would be nobody's.
            101 => return Err(Error::Head("switched protocols unasked")),
            // Informational answers are skipped; the real one follows.
            100..=199 => {
                buf.advance(len);
                if buf.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            _ => {}
        }
        let frozen = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut facts = Facts::default();
        for field in &fields[..count] {
            let name = head::part(&frozen, field.name);
            if facts.read(name, head::part(&frozen, field.value)) == Read::HopByHop {
                continue;
            }
            let name =
                HeaderName::from_bytes(name).map_err(|_| Error::Head("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(head::cut(&frozen, field.value))
                .map_err(|_| Error::Head("invalid header value"))?;
            headers.append(name, value);
        }
        let reason = reason.and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok());
        let version = if version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let (framing, framing_keeps) = framing(status, version, method, &facts, &mut headers)?;
        let keep_alive = framing_keeps && facts.keeps_alive(version);
        return Ok(Some(Head {
            status,
            headers,
            reason,
            framing,
            keep_alive,
            upload: None,
        }));
    }
}

/// What a response head's framing fields say, read as its fields are taken
/// in rather than looked up in the header map afterwards.
#[derive(Debug, Default)]
struct Facts {
    /// `Content-Length`: `None` when absent; else the one length all its
    /// values (repeated fields, or lists) agree on, `None` once one is
    /// malformed or two differ.
    length: Option<Option<u64>>,
    /// `Transfer-Encoding`: `None` when absent; else whether the last field's
    /// last coding is `chunked` (a value that is not visible ASCII says no).
    chunked_last: Option<bool>,
    /// `Connection` lists `close`.
    close: bool,
    /// `Connection` lists `keep-alive`.
    keep_alive: bool,
}

/// What a field is to the response's header map.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Goes into the map.
    Kept,
    /// Hop-by-hop, and naming no other field: the gateway would only remove it
    /// from the map again (`headers::strip_hop_by_hop`), so it never goes in.
    HopByHop,
}

impl Facts {
    /// Takes in one field (`name` in any case).
    fn read(&mut self, name: &[u8], value: &[u8]) -> Read {
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = head::content_length(value);
                self.length = Some(match self.length {
                    None => n,
                    Some(prev) => prev.zip(n).filter(|(a, b)| a == b).map(|(a, _)| a),
                });
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                let visible = value
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
                self.chunked_last = Some(visible && head::ends_chunked(value));
                return Read::HopByHop;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                // Options that name other fields (`close` could name one too)
                // leave it to the map, where their removal is judged.
                let mut names_none = true;
                for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if option.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                        names_none = false;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if !option.is_empty() && !headers::is_hop_by_hop_option(option) {
                        names_none = false;
                    }
                }
                if names_none {
                    return Read::HopByHop;
                }
            }
            10 if name.eq_ignore_ascii_case(b"keep-alive") => return Read::HopByHop,
            16 if name.eq_ignore_ascii_case(b"proxy-connection") => return Read::HopByHop,
            _ => {}
        }
        Read::Kept
    }

    /// Whether the upstream keeps the connection open after this response:
    /// `close` wins, in either version (as in hyper).
    fn keeps_alive(&self, version: Version) -> bool {
        !self.close && (version != Version::HTTP_10 || self.keep_alive)
    }
}

/// How the body of a response to `method` ends (RFC 9112 §6.3, as hyper
/// reads it), and whether the connection may be reused after it as far as
/// the framing goes.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    facts: &Facts,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), Error> {
    if status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
    {
        return Ok((Framing::Length(0), true));
    }
    if let Some(chunked_last) = facts.chunked_last {
        if version == Version::HTTP_10 {
            return Err(Error::Head("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if !chunked_last {
            return Ok((Framing::Close, false));
        }
        // Both: the chunks decide, and who knows what the length meant.
        let both = facts.length.is_some();
        if both {
            headers.remove(CONTENT_LENGTH);
        }
        return Ok((Framing::Chunked(Chunked::default()), !both));
    }
    match facts.length {
        None => Ok((Framing::Close, false)),
        Some(Some(len)) => Ok((Framing::Length(len), true)),
        Some(None) => Err(Error::Head("invalid or conflicting Content-Length")),
    }
}

/// The response body, read from the connection as the client takes it. Its
/// connection can be had back ([`Body::take_reusable`]) once it was read to
/// its end and the upstream keeps it open.
pub struct Body {
    conn: Option<Box<Conn>>,
    framing: Framing,
    keep_alive: bool,
    ended: bool,
    /// The rest of the request body, sent while this is read.
    upload: Option<Upload>,
}

// === impl Body ===

impl Body {
    /// The next piece of the body: data, then trailers if it has any.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // The rest of the request body moves along with the answer (an
        // upstream may answer as it reads); a client that fails it ends both.
        if let Some(upload) = self.upload.as_mut() {
            match upload.poll_send(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => self.upload = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.fail(e)))),
                Poll::Pending => {}
            }
        }
        loop {
            let step = match &mut self.framing {
                Framing::Length(0) => Ok(Step::End),
                Framing::Length(left) if !conn.buf.is_empty() => {
                    let n = conn
                        .buf
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    Ok(Step::Frame(Frame::data(conn.buf.split_to(n).freeze())))
                }
                Framing::Close if !conn.buf.is_empty() => {
                    Ok(Step::Frame(Frame::data(conn.buf.split().freeze())))
                }
                Framing::Length(_) | Framing::Close => Ok(Step::More),
                Framing::Chunked(chunked) => chunked.decode(&mut conn.buf),
            };
            match step {
                Ok(Step::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Step::End) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(self.framing, Framing::Close) => {
                    self.ended = true;
                    self.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(self.fail(Error::Truncated)))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(self.fail(Error::Io(e))))),
            }
        }
    }

    /// The body broke: its connection cannot be reused.
    fn fail(&mut self, e: Error) -> Error {
        self.conn = None;
        e
    }

    /// Whether nothing more will come.
    pub fn is_end_stream(&self) -> bool {
        self.ended
            || self.conn.is_none()
            || matches!(self.framing, Framing::Length(0))
            || matches!(&self.framing, Framing::Chunked(c) if c.is_done())
    }

    /// The body's length, when the upstream declared it.
    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }

    /// The connection, once the body was read to its end, when it may carry
    /// another request: the upstream keeps it open and sent nothing beyond
    /// the response.
    pub fn take_reusable(&mut self) -> Option<Box<Conn>> {
        // Part of the request body never went: the upstream still waits.
        let unsent = self.upload.take().is_some_and(|u| !u.delivered());
        if !self.keep_alive || unsent || !self.is_end_stream() {
            return None;
        }
        self.ended = true;
        let mut conn = self.conn.take()?;
        if !conn.buf.is_empty() {
            return None;
        }
        conn.recycle();
        Some(conn)
    }
}

#[cfg(test)]
mod tests;
