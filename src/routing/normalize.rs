//! The request path as policies and upstreams see it.
//!
//! The path is percent-decoded exactly once, `//` collapses, and anything that could
//! make the policy and the upstream disagree about which resource is meant is
//! refused: `.`/`..` segments, encoded `/` or `\`, NUL, raw `\`, invalid escapes,
//! non-UTF-8, and request targets that are not origin-form.
//!
//! A raw `;` starts a segment's matrix parameters (`/a;v=1/b`). Servlet containers
//! (Tomcat, Jetty, Spring) and JAX-RS strip them before routing, so `/admin;x/users`
//! is `/admin/users` there and `/..;/admin` climbs a level. The decoded path keeps
//! only each segment's name, so that routes and policies judge what such an
//! upstream will route; the path is marked ([`NormalPath::has_matrix_params`]) and
//! the proxy refuses it unless the matched route opts in. An encoded `;` (`%3B`) is
//! refused everywhere: some servers read it as data, others as the delimiter.

use http::Uri;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use smallvec::SmallVec;

/// Why a request target was refused (always 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not in origin form")]
    NotOriginForm,
    #[error("the path contains a dot segment")]
    DotSegment,
    #[error("the path contains an encoded slash or backslash")]
    EncodedSeparator,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path contains an invalid percent-encoding")]
    BadEscape,
    #[error("the path is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error("the path contains a `;` (matrix parameters) in a segment")]
    MatrixParams,
    #[error("the path contains an encoded semicolon")]
    EncodedSemicolon,
}

impl PathError {
    /// The fixed `error_description` sent to the client: part of the API, so it
    /// does not follow `Display`, which may change for logs.
    pub fn description(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "the request target is not in origin form",
            PathError::DotSegment => "the path contains a dot segment",
            PathError::EncodedSeparator => "the path contains an encoded slash or backslash",
            PathError::Nul => "the path contains a NUL byte",
            PathError::BadEscape => "the path contains an invalid percent-encoding",
            PathError::NotUtf8 => "the path is not valid UTF-8 once decoded",
            PathError::MatrixParams => "the path contains a `;` (matrix parameters) in a segment",
            PathError::EncodedSemicolon => "the path contains an encoded semicolon",
        }
    }
}

/// A decoded, normalised path and its re-encoded form for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    decoded: String,
    /// Byte ranges of the non-empty segments in `decoded` (inline up to 16:
    /// no allocation for the paths APIs have).
    segments: SmallVec<[(u32, u32); 16]>,
    /// The path for the upstream, when it differs from `decoded` (a segment
    /// re-encoded, or matrix parameters): most paths need no second string.
    encoded: Option<String>,
    /// Some segment carried matrix parameters (a raw `;`).
    matrix: bool,
}

/// Characters re-encoded when the path goes to the upstream: everything that is
/// not a `pchar` of RFC 3986, plus `%` itself (a decoded `%` is literal text).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Normalises the request target.
///
/// `absolute_allowed` is true for HTTP/2, where every request carries scheme and
/// authority; for HTTP/1.x only origin-form (`/path?query`) is accepted.
pub fn normalize(uri: &Uri, absolute_allowed: bool) -> Result<NormalPath, PathError> {
    if uri.scheme().is_some() && !absolute_allowed {
        return Err(PathError::NotOriginForm);
    }
    let raw = uri.path();
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    Ok(match plain(raw) {
        Some(segments) => NormalPath {
            decoded: raw.to_owned(),
            segments,
            encoded: None,
            matrix: false,
        },
        None => general(raw)?,
    })
}

/// Whether a byte may stand in a path as it is: a `pchar` of RFC 3986 that is
/// not `%` (an escape) or `;` (matrix parameters), or the separator `/`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        // The printable characters `SEGMENT` adds to the controls.
        t[b] = !matches!(
            b as u8,
            b'"' | b'#'
                | b'%'
                | b'/'
                | b'<'
                | b'>'
                | b'?'
                | b'['
                | b'\\'
                | b']'
                | b'^'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b';'
        );
        b += 1;
    }
    t[b'/' as usize] = true;
    t
};

/// The segments of a path that normalisation leaves as it is — only plain
/// bytes, no empty segment and no dot segment — in one pass; `None` for every
/// other path, which [`general`] handles. Most API paths are such.
fn plain(raw: &str) -> Option<SmallVec<[(u32, u32); 16]>> {
    let bytes = raw.as_bytes();
    let len = u32::try_from(bytes.len()).ok()?;
    let mut segments = SmallVec::new();
    // `raw` starts with `/`: each segment begins after one.
    let mut start = 1u32;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if !PLAIN[usize::from(b)] {
            return None;
        }
        if b == b'/' {
            push_plain(&mut segments, bytes, start, i as u32)?;
            start = i as u32 + 1;
        }
    }
    if start < len {
        push_plain(&mut segments, bytes, start, len)?;
    }
    Some(segments)
}

/// Records the segment `bytes[start..end]`; `None` when it is empty (`//`,
/// which collapses) or a dot segment (refused): those take the general path.
fn push_plain(
    segments: &mut SmallVec<[(u32, u32); 16]>,
    bytes: &[u8],
    start: u32,
    end: u32,
) -> Option<()> {
    match &bytes[start as usize..end as usize] {
        b"" | b"." | b".." => None,
        _ => {
            segments.push((start, end));
            Some(())
        }
    }
}

/// Normalisation of any path: decoding, collapsing, checks, re-encoding.
fn general(raw: &str) -> Result<NormalPath, PathError> {
    let mut decoded = String::with_capacity(raw.len() + 1);
    let mut segments = SmallVec::new();
    let mut encoded: Option<String> = None;
    let mut matrix = false;
    for seg in raw.split('/').skip(1) {
        if seg.is_empty() {
            continue;
        }
        let (name, params) = match seg.find(';') {
            Some(i) => seg.split_at(i),
            None => (seg, ""),
        };
        let text = decode_segment(name)?;
        if !params.is_empty() {
            // `/;x/` would be an empty segment and `/..;x/` a dot segment to a
            // server that strips the parameters.
            check_params(params)?;
            if text.is_empty() {
                return Err(PathError::MatrixParams);
            }
            matrix = true;
        }
        if text == "." || text == ".." {
            return Err(PathError::DotSegment);
        }
        let enc: std::borrow::Cow<'_, str> = utf8_percent_encode(&text, SEGMENT).into();
        // Encoding only ever lengthens a segment: the same length, the same text.
        if encoded.is_none() && (enc.len() != text.len() || !params.is_empty()) {
            // The first segment that differs upstream: from here on, two strings.
            let mut e = String::with_capacity(raw.len() + 1);
            e.push_str(&decoded);
            encoded = Some(e);
        }
        decoded.push('/');
        let start = decoded.len();
        decoded.push_str(&text);
        segments.push((start as u32, decoded.len() as u32));
        if let Some(e) = &mut encoded {
            e.push('/');
            e.push_str(&enc);
            // Parameters go upstream as they came: they passed the URI parser
            // and `check_params`, and decoding them is the upstream's business.
            e.push_str(params);
        }
    }
    if raw.len() > 1 && raw.ends_with('/') || decoded.is_empty() {
        decoded.push('/');
        if let Some(e) = &mut encoded {
            e.push('/');
        }
    }
    Ok(NormalPath {
        decoded,
        segments,
        encoded,
        matrix,
    })
}

/// Checks a segment's matrix parameters (`;k=v;k2`): well-formed escapes, and
/// nothing that the path itself refuses (NUL, backslash, an encoded separator).
fn check_params(params: &str) -> Result<(), PathError> {
    let bytes = params.as_bytes();
    if bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'%') {
        i += off;
        let hi = bytes.get(i + 1).and_then(|b| hex(*b));
        let lo = bytes.get(i + 2).and_then(|b| hex(*b));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::BadEscape);
        };
        match hi << 4 | lo {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0 => return Err(PathError::Nul),
            _ => {}
        }
        i += 3;
    }
    Ok(())
}

/// Decodes one raw segment, refusing what must never appear in it.
fn decode_segment(seg: &str) -> Result<std::borrow::Cow<'_, str>, PathError> {
    let bytes = seg.as_bytes();
    if bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    if !bytes.contains(&b'%') {
        return Ok(std::borrow::Cow::Borrowed(seg));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let b = hi << 4 | lo;
            match b {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                b';' => return Err(PathError::EncodedSemicolon),
                0 => return Err(PathError::Nul),
                _ => out.push(b),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| PathError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// === impl NormalPath ===

impl NormalPath {
    /// The decoded path the policy saw (`/a/b`, or `/` for the root).
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The same path, re-encoded for the upstream.
    pub fn encoded(&self) -> &str {
        self.encoded.as_deref().unwrap_or(&self.decoded)
    }

    /// The decoded path, and the encoded one when it differs (`None`: the
    /// same text), once nothing needs the segments any more.
    pub fn into_parts(self) -> (String, Option<String>) {
        (self.decoded, self.encoded)
    }

    /// Whether some segment carried matrix parameters (a raw `;`); the decoded
    /// path and the segments leave them out, the encoded path keeps them.
    pub fn has_matrix_params(&self) -> bool {
        self.matrix
    }

    /// The number of non-empty segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// True for `/`.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The decoded segment at `i`.
    pub fn segment(&self, i: usize) -> Option<&str> {
        self.segments
            .get(i)
            .map(|&(s, e)| &self.decoded[s as usize..e as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<NormalPath, PathError> {
        normalize(&p.parse().expect("uri"), false)
    }

    proptest::proptest! {
        /// The one-pass shortcut for plain paths answers exactly what the
        /// general normalisation answers, for any path the URI parser takes.
        #[test]
        fn the_plain_shortcut_agrees_with_the_general_path(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "/", "//", ".", "..", "a", "Zz9", "-._~", "!$&'()*+,=:@", ";", ";v=1",
                    "%2e", "%2F", "%41", "%", "%zz", "%00", "%3B", "%C3%A9", "\\", "é", " ", "[", "{",
                ]),
                0..12,
            )
        ) {
            let raw = format!("/{}", pieces.concat());
            let Ok(uri) = raw.parse::<Uri>() else { return Ok(()) };
            let path = uri.path();
            proptest::prop_assert_eq!(normalize(&uri, false), general(path));
            if let Some(segments) = plain(path) {
                let general = general(path).expect("a plain path is valid");
                proptest::prop_assert_eq!(&general.segments, &segments);
                proptest::prop_assert_eq!(general.decoded, path);
            }
        }
    }

    #[test]
    fn plain_bytes_are_those_the_upstream_encoding_leaves_alone() {
        for b in 0u8..=255 {
            let unchanged = b.is_ascii()
                && utf8_percent_encode(&char::from(b).to_string(), SEGMENT).to_string()
                    == char::from(b).to_string();
            let expected = b == b'/' || (unchanged && b != b';');
            assert_eq!(PLAIN[usize::from(b)], expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn plain_paths_take_the_shortcut_and_others_do_not() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/orgs/acme/items/42",
            "/.well-known/x",
            "/a./b..c/~",
        ] {
            assert!(plain(p).is_some(), "{p}");
        }
        for p in [
            "//", "/a//b", "/./a", "/a/..", "/a/.", "/%41", "/a;b", "/a b", "/é",
        ] {
            assert!(plain(p).is_none(), "{p}");
        }
    }

    #[test]
    fn the_upstream_path_is_re_encoded_only_where_needed() {
        for (raw, decoded, encoded) in [
            ("/a/b", "/a/b", "/a/b"),
            ("/%25/", "/%/", "/%25/"),
            ("/a/%25", "/a/%", "/a/%25"),
            ("/a%20b/c", "/a b/c", "/a%20b/c"),
            ("/x/y;v=1/z", "/x/y/z", "/x/y;v=1/z"),
            ("/caf%C3%A9/", "/café/", "/caf%C3%A9/"),
            ("/", "/", "/"),
        ] {
            let p = norm(raw).expect(raw);
            assert_eq!((p.decoded(), p.encoded()), (decoded, encoded), "{raw}");
        }
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        let p = norm("/orgs/acme/items/1?x=1").expect("ok");
        assert_eq!(p.decoded(), "/orgs/acme/items/1");
        assert_eq!(p.encoded(), "/orgs/acme/items/1");
        assert_eq!(p.len(), 4);
        assert_eq!(p.segment(1), Some("acme"));
        assert_eq!(norm("/").expect("ok").decoded(), "/");
    }

    #[test]
    fn double_slashes_collapse_and_trailing_slash_stays() {
        let p = norm("//a///b/").expect("ok");
        assert_eq!(p.decoded(), "/a/b/");
        assert_eq!(p.encoded(), "/a/b/");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn decoding_happens_once() {
        let p = norm("/a/%252e/b%20c").expect("ok");
        assert_eq!(p.decoded(), "/a/%2e/b c");
        assert_eq!(p.encoded(), "/a/%252e/b%20c");
        let p = norm("/caf%C3%A9").expect("ok");
        assert_eq!(p.decoded(), "/café");
        assert_eq!(p.encoded(), "/caf%C3%A9");
    }

    #[test]
    fn dangerous_paths_are_refused() {
        assert_eq!(norm("/a/../b"), Err(PathError::DotSegment));
        assert_eq!(norm("/a/./b"), Err(PathError::DotSegment));
        assert_eq!(norm("/a/%2e%2e/b"), Err(PathError::DotSegment));
        assert_eq!(norm("/a/%2E/b"), Err(PathError::DotSegment));
        assert_eq!(norm("/.."), Err(PathError::DotSegment));
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("/a%zzb"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%ff"), Err(PathError::NotUtf8));
    }

    #[test]
    fn matrix_parameters_are_marked_and_left_out_of_the_decoded_path() {
        let p = norm("/admin;jsessionid=1/users;v=2?x=;y").expect("ok");
        assert!(p.has_matrix_params());
        assert_eq!(p.decoded(), "/admin/users");
        assert_eq!(p.segment(0), Some("admin"));
        assert_eq!(p.encoded(), "/admin;jsessionid=1/users;v=2");
        let p = norm("/a%20b;k=%2e%2e;k2/c;").expect("ok");
        assert_eq!(p.decoded(), "/a b/c");
        assert_eq!(p.encoded(), "/a%20b;k=%2e%2e;k2/c;");
        assert!(!norm("/a/b?x=;").expect("ok").has_matrix_params());
    }

    #[test]
    fn matrix_parameters_cannot_hide_dot_segments_or_separators() {
        assert_eq!(norm("/public/..;/admin"), Err(PathError::DotSegment));
        assert_eq!(norm("/public/.;x/admin"), Err(PathError::DotSegment));
        assert_eq!(norm("/public/%2e%2e;/admin"), Err(PathError::DotSegment));
        assert_eq!(norm("/a/;x/b"), Err(PathError::MatrixParams));
        assert_eq!(norm("/;"), Err(PathError::MatrixParams));
        assert_eq!(norm("/a;x%2Fy"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a;x%5cy"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a;x%00"), Err(PathError::Nul));
        assert_eq!(norm("/a;x%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a;x%"), Err(PathError::BadEscape));
        assert_eq!(norm("/admin%3Bx/users"), Err(PathError::EncodedSemicolon));
        assert_eq!(norm("/admin%3bx"), Err(PathError::EncodedSemicolon));
        assert_eq!(norm("/..%3B/admin"), Err(PathError::EncodedSemicolon));
    }

    #[test]
    fn only_origin_form_on_http1() {
        assert_eq!(norm("http://example.test/a"), Err(PathError::NotOriginForm));
        assert_eq!(norm("*"), Err(PathError::NotOriginForm));
        let abs: Uri = "http://example.test/a".parse().expect("uri");
        assert!(normalize(&abs, true).is_ok());
    }
}
