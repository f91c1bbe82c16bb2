//! Reading the bearer token from the `Authorization` header (RFC 6750 §2.1).

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// The longest `Authorization` value accepted.
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// What the request's `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header.
    Absent,
    /// `Bearer <token>`.
    Bearer(&'a str),
    /// Another scheme (`Basic …`).
    OtherScheme,
}

/// A malformed `Authorization` header (400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("more than one Authorization header")]
    Duplicate,
    #[error("the Authorization header is too long")]
    TooLong,
    #[error("the bearer token is empty")]
    Empty,
    #[error("the Authorization header is malformed")]
    Malformed,
}

impl BearerError {
    /// The fixed `error_description` sent to the client: part of the API, so it
    /// does not follow `Display`, which may change for logs.
    pub fn description(self) -> &'static str {
        match self {
            BearerError::Duplicate => "more than one Authorization header",
            BearerError::TooLong => "the Authorization header is too long",
            BearerError::Empty => "the bearer token is empty",
            BearerError::Malformed => "the Authorization header is malformed",
        }
    }
}

/// Reads the credentials; the scheme name is case-insensitive.
pub fn read(headers: &HeaderMap) -> Result<Credentials<'_>, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::Absent);
    };
    if values.next().is_some() {
        return Err(BearerError::Duplicate);
    }
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(BearerError::TooLong);
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Any other scheme is somebody else's business, but the header must
        // still be visible ASCII with a scheme name.
        value.to_str().map_err(|_| BearerError::Malformed)?;
        return match scheme.is_empty() {
            true => Err(BearerError::Malformed),
            false => Ok(Credentials::OtherScheme),
        };
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    if body.is_empty() || !b64token(body) {
        return Err(BearerError::Malformed);
    }
    // Every byte was just checked to be ASCII.
    std::str::from_utf8(token)
        .map(Credentials::Bearer)
        .map_err(|_| BearerError::Malformed)
}

/// `s` without leading and trailing spaces (tabs and other whitespace stay,
/// and make the token malformed).
fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', tail @ ..] = s {
        s = tail;
    }
    while let [head @ .., b' '] = s {
        s = head;
    }
    s
}

/// Whether every byte is a b64token character other than `=`. Branch-free over
/// each block, so the compiler can check many bytes at once: this runs on
/// every request, over the whole token.
fn b64token(s: &[u8]) -> bool {
    s.chunks(32).all(|block| {
        block.iter().fold(true, |ok, &b| {
            let letter = (b | 0x20).wrapping_sub(b'a') < 26;
            let digit = b.wrapping_sub(b'0') < 10;
            let other =
                (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/');
            ok & (letter | digit | other)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn reads_bearer_case_insensitively() {
        assert_eq!(
            read(&with(&["Bearer abc.def.ghi"])),
            Ok(Credentials::Bearer("abc.def.ghi"))
        );
        assert_eq!(read(&with(&["bEaReR abc"])), Ok(Credentials::Bearer("abc")));
        assert_eq!(
            read(&with(&["Bearer   a-._~+/Z9=="])),
            Ok(Credentials::Bearer("a-._~+/Z9=="))
        );
        assert_eq!(read(&with(&[])), Ok(Credentials::Absent));
        assert_eq!(
            read(&with(&["Basic dXNlcjpwYXNz"])),
            Ok(Credentials::OtherScheme)
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        assert_eq!(
            read(&with(&["Bearer a", "Bearer b"])),
            Err(BearerError::Duplicate)
        );
        assert_eq!(read(&with(&["Bearer "])), Err(BearerError::Empty));
        assert_eq!(read(&with(&["Bearer"])), Err(BearerError::Empty));
        assert_eq!(read(&with(&["Bearer a b"])), Err(BearerError::Malformed));
        assert_eq!(read(&with(&["Bearer a\"b"])), Err(BearerError::Malformed));
        assert_eq!(read(&with(&["Bearer \tabc"])), Err(BearerError::Malformed));
        assert_eq!(read(&with(&["Bearer ==="])), Err(BearerError::Malformed));
        assert_eq!(read(&with(&[" abc"])), Err(BearerError::Malformed));
        let mut h = HeaderMap::new();
        let obs = HeaderValue::from_bytes(b"Bearer ab\xe9c").expect("obs-text value");
        h.insert(AUTHORIZATION, obs);
        assert_eq!(read(&h), Err(BearerError::Malformed));
        let mut h = HeaderMap::new();
        let obs = HeaderValue::from_bytes(b"B\xe9arer abc").expect("obs-text value");
        h.insert(AUTHORIZATION, obs);
        assert_eq!(read(&h), Err(BearerError::Malformed));
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        assert_eq!(read(&with(&[&long])), Err(BearerError::TooLong));
    }
}
