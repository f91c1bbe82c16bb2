//! Where the parts httparse found lie in an HTTP/1.1 head, so that they can be
//! cut from the head's bytes once it is frozen: shared with the head, never
//! copied; and the readings of the framing fields both sides need. Used by the
//! gateway's own HTTP/1.1 server (request heads) and client (response heads).

use bytes::Bytes;

/// A byte range of a head: offset and length.
pub type Span = (u32, u32);

/// Where a header field's name and value lie in a head.
#[derive(Debug, Clone, Copy, Default)]
pub struct Field {
    pub name: Span,
    pub value: Span,
}

/// Where `part`, a slice httparse handed out of `head`, lies within its first
/// `len` bytes. `None` for a slice that is not there (httparse hands some
/// parts out as static strings): refused rather than trusted.
pub fn span(head: &[u8], len: usize, part: &[u8]) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    let fits = end <= len && end <= head.len() && end <= u32::MAX as usize;
    fits.then_some((start as u32, part.len() as u32))
}

/// The bytes of `span` in the head, borrowed.
pub fn part(head: &[u8], (start, len): Span) -> &[u8] {
    &head[start as usize..start as usize + len as usize]
}

/// The bytes of `span` in the frozen head, shared.
pub fn cut(head: &Bytes, (start, len): Span) -> Bytes {
    head.slice(start as usize..start as usize + len as usize)
}

/// A `Content-Length` value: digits (at most 19, so never overflowing), or
/// the same digits repeated in a comma-separated list, which RFC 9110 §8.6
/// lets a recipient read as one. `None` when malformed or when two differ.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|m| m != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// Whether a comma-separated field value (`Connection`) lists `token`, in any
/// case.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
pub fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_found_only_inside_the_head() {
        let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        assert_eq!(span(head, head.len(), &head[16..17]), Some((16, 1)));
        assert_eq!(span(head, head.len(), &head[19..20]), Some((19, 1)));
        // Past the head's length, or another allocation altogether.
        assert_eq!(span(head, 18, &head[16..20]), None);
        assert_eq!(span(head, head.len(), b"static"), None);
        let frozen = Bytes::from_static(head);
        assert_eq!(cut(&frozen, (16, 1)), "A");
        assert_eq!(part(head, (19, 1)), b"b");
    }
}
