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
    let value = value.to_str().map_err(|_| BearerError::Malformed)?;
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return Err(BearerError::Malformed);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::OtherScheme);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !ok {
        return Err(BearerError::Malformed);
    }
    Ok(Credentials::Bearer(token))
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
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        assert_eq!(read(&with(&[&long])), Err(BearerError::TooLong));
    }
}
