//! The chunked transfer coding of a response body (RFC 9112 §7.1), decoded
//! from the connection's buffer: chunk sizes in hex (at most 16 significant
//! digits), extensions skipped (a size line at most 4 KiB, and at most 16 KiB
//! of extensions in a body, hyper's bound), CRLF line ends only, and
//! trailers of at most 16 KiB parsed as header fields.

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

use super::Error;

/// The longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4 * 1024;
/// The most extension bytes in one body (hyper's limit).
const MAX_EXTENSIONS: usize = 16 * 1024;
/// The largest trailer section (hyper's limit).
const MAX_TRAILERS: usize = 16 * 1024;
/// The most trailer fields.
const MAX_TRAILER_FIELDS: usize = 100;

/// The decoder of one body.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    /// Extension bytes seen so far.
    extensions: usize,
}

/// Where the decoder is in the body.
#[derive(Debug, Default)]
enum State {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
    /// Read to its end.
    Done,
}

/// What one decoding step gave.
#[derive(Debug)]
pub enum Step {
    /// A piece of the body, or its trailers.
    Frame(Frame<bytes::Bytes>),
    /// The buffer holds too little: read more.
    More,
    /// The body is complete.
    End,
}

impl Chunked {
    /// Whether the whole body was decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes from the front of `buf` (consuming what it decoded) up to the
    /// next frame.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match &mut self.state {
                State::Size => {
                    let Some(line) = line_end(buf, MAX_SIZE_LINE, "chunk-size line too long")?
                    else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&buf[..line], &mut self.extensions)?;
                    buf.advance(line + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::DataEnd;
                    }
                    return Ok(Step::Frame(Frame::data(buf.split_to(n).freeze())));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Body("no CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Step::End);
                    }
                    let Some(end) = section_end(buf)? else {
                        return Ok(Step::More);
                    };
                    let trailers = trailers(&buf[..end])?;
                    buf.advance(end);
                    self.state = State::Done;
                    return Ok(Step::Frame(Frame::trailers(trailers)));
                }
                State::Done => return Ok(Step::End),
            }
        }
    }
}

/// Where the line at the front of `buf` ends (the index of its CR), when its
/// CRLF has arrived; an error past `max` bytes or at a bare LF.
fn line_end(buf: &[u8], max: usize, too_long: &'static str) -> Result<Option<usize>, Error> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(Error::Body("bare LF in a chunk-size line")),
        Some(lf) if window[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(Error::Body("bare LF in a chunk-size line")),
        None if buf.len() > max + 1 => Err(Error::Body(too_long)),
        None => Ok(None),
    }
}

/// The size a chunk-size line declares: hex digits (at most 16 after any
/// leading zeros), optional whitespace, then extensions after `;` (skipped;
/// no control characters; their bytes count towards the body's total,
/// `extensions`).
fn chunk_size(line: &[u8], extensions: &mut usize) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let zeros = line[..digits].iter().take_while(|&&b| b == b'0').count();
    if digits == 0 || digits - zeros > 16 {
        return Err(Error::Body("invalid chunk size"));
    }
    let mut size = 0u64;
    for &b in &line[zeros..digits] {
        // At most 16 hex digits: never overflows.
        size = (size << 4) | u64::from(hex(b));
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    let visible = |b: &u8| *b == b'\t' || (b' '..=b'~').contains(b) || *b >= 0x80;
    match rest.first() {
        None => Ok(size),
        Some(b';') if rest.iter().all(visible) => {
            *extensions = extensions.saturating_add(rest.len());
            if *extensions > MAX_EXTENSIONS {
                return Err(Error::Body("too many chunk extensions"));
            }
            Ok(size)
        }
        Some(_) => Err(Error::Body("invalid chunk extension")),
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Where the trailer section at the front of `buf` ends (after its empty
/// line), once all of it has arrived.
fn section_end(buf: &[u8]) -> Result<Option<usize>, Error> {
    let window = &buf[..buf.len().min(MAX_TRAILERS)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => Ok(Some(at + 4)),
        None if buf.len() >= MAX_TRAILERS => Err(Error::Body("trailers too large")),
        None => Ok(None),
    }
}

/// The trailer fields of a complete section.
fn trailers(section: &[u8]) -> Result<HeaderMap, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let parsed = httparse::parse_headers(section, &mut fields).map_err(Error::Parse)?;
    let httparse::Status::Complete((_, fields)) = parsed else {
        return Err(Error::Body("incomplete trailers"));
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Error::Body("invalid trailer name"))?;
        let value =
            HeaderValue::from_bytes(f.value).map_err(|_| Error::Body("invalid trailer value"))?;
        map.append(name, value);
    }
    Ok(map)
}
