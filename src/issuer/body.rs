//! The bodies the issuer reads: a client's request body ([`RequestBody`],
//! read whole by [`RequestBody::read`], size-capped and with a bound on the
//! silence between two of its pieces), the size-capped reader of the answers
//! it asks for ([`read_capped`]), and the decoders every handler uses on top
//! — urlencoded forms ([`read_form`], [`decode_form`]) and JSON
//! ([`read_json`], [`read_optional_json`]). Each caller passes its own limit
//! and turns the errors here into its own answer (`error` for the OAuth
//! endpoints, the admin API's `error`, the login pages). No stored value
//! holds a NUL character (PostgreSQL refuses them in text), so both decoders
//! report one as the caller's mistake instead of letting it reach the store.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;

use crate::net::Inbound;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `Content-Type` of a form body.
pub const FORM_TYPE: &str = "application/x-www-form-urlencoded";
/// `Content-Type` of a JSON body.
pub const JSON_TYPE: &str = "application/json";

/// Why a body could not be read (before any decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The `Content-Type` is not the one the endpoint reads (the client's
    /// fault; checked before the body is read).
    #[error("the body is not of the expected media type")]
    MediaType,
    /// The body is larger than the limit, or the connection failed while it
    /// was read (the client's).
    #[error("the request body is too large or unreadable")]
    Unreadable,
    /// Nothing more of the body arrived for `server.limits.body_timeout`
    /// (the client's). Its connection cannot serve another request.
    #[error("nothing of the request body arrived for body_timeout")]
    Stalled,
}

/// What makes a form unusable: the first one found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormFault {
    /// A name or value holds a NUL character.
    #[error("a parameter holds a NUL character")]
    Nul,
    /// A parameter appears more than once (RFC 6749 §3.2 forbids it).
    #[error("a parameter is repeated")]
    Repeated,
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The body could not be read.
    #[error("the body could not be read")]
    Body(#[from] BodyError),
    /// The body is not JSON of the expected shape.
    #[error("the body is not JSON of the expected shape")]
    Shape,
    /// A string (or a key) of the body holds a NUL character.
    #[error("the body holds a NUL character")]
    Nul,
}

/// A client's request body as the issuer reads it: the body, the longest
/// silence allowed between two of its pieces (`server.limits.body_timeout`
/// in force when the request arrived), and the [`StallWatch`] told when a
/// read gave up on that silence.
#[derive(Debug)]
pub struct RequestBody<B = Inbound> {
    body: B,
    stall: Duration,
    watch: StallWatch,
}

/// Learns whether a read of a [`RequestBody`] gave up because the body
/// stalled: whatever its caller answered, the connection then cannot serve
/// another request (the rest of the body is still on its way), and the
/// server counts the limit's hit. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct StallWatch(Arc<AtomicBool>);

/// Marks an issuer response to a request whose body stalled (in the
/// response's extensions): the server closes the connection after it and
/// counts a hit of `body_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

/// A decoded urlencoded form (a query string or a body): its parameters (the
/// last value of a repeated one) and the first fault found, if any.
#[derive(Debug, Default)]
pub struct Decoded {
    pub pairs: HashMap<String, String>,
    pub fault: Option<FormFault>,
}

// === impl Decoded ===

impl Decoded {
    /// The parameters, when the form has no fault.
    pub fn strict(self) -> Result<HashMap<String, String>, FormFault> {
        match self.fault {
            Some(fault) => Err(fault),
            None => Ok(self.pairs),
        }
    }
}

// === impl RequestBody ===

impl<B> RequestBody<B> {
    /// `body`, whose pieces may each take up to `stall` to arrive; `watch`
    /// learns of a read that gave up on one.
    pub fn new(body: B, stall: Duration, watch: StallWatch) -> Self {
        RequestBody { body, stall, watch }
    }
}

impl<B> RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Reads the body whole: refused once it passes `limit` bytes
    /// ([`BodyError::Unreadable`]), or once nothing more of it has arrived
    /// for the stall bound ([`BodyError::Stalled`], and the watch is told).
    /// The bound is on the wait for each piece, not on the whole body: a
    /// body that keeps coming, however slowly, is read.
    pub async fn read(self, limit: usize) -> Result<Bytes, BodyError> {
        use crate::proxy::body::{RequestBodyError, read_whole};
        let mut body = pin!(self.body);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        match read_whole(&mut body, limit, self.stall).await {
            Ok(read) => Ok(read.into_data()),
            Err(RequestBodyError::Stalled(_)) => {
                self.watch.0.store(true, Ordering::Relaxed);
                Err(BodyError::Stalled)
            }
            Err(RequestBodyError::Client(_) | RequestBodyError::TooLarge(_)) => {
                Err(BodyError::Unreadable)
            }
        }
    }
}

// === impl StallWatch ===

impl StallWatch {
    /// Whether a read of a body this watch was given to gave up on a stall.
    pub fn stalled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reads `body` whole, refusing it once it passes `limit` bytes: the way the
/// issuer collects an answer it asked for (the blocking hooks', whose wait
/// is bounded by the hook's `timeout`). A client's request body is read with
/// [`RequestBody::read`].
pub async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| BodyError::Unreadable)
}

/// Whether `headers` say `Content-Type: media` (parameters such as
/// `charset` aside, letter case ignored).
pub fn has_media_type(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

/// Decodes a urlencoded form, noting the first NUL character or repeated
/// parameter.
pub fn decode_form(raw: &[u8]) -> Decoded {
    let mut form = Decoded::default();
    for (k, v) in form_urlencoded::parse(raw) {
        let nul = k.contains('\0') || v.contains('\0');
        let repeated = form.pairs.insert(k.into_owned(), v.into_owned()).is_some();
        if form.fault.is_none() {
            form.fault = match (nul, repeated) {
                (true, _) => Some(FormFault::Nul),
                (false, true) => Some(FormFault::Repeated),
                (false, false) => None,
            };
        }
    }
    form
}

/// Reads an `application/x-www-form-urlencoded` body of at most `limit`
/// bytes (the type is checked before anything is read) and decodes it.
pub async fn read_form<B>(
    headers: &HeaderMap,
    body: RequestBody<B>,
    limit: usize,
) -> Result<Decoded, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !has_media_type(headers, FORM_TYPE) {
        return Err(BodyError::MediaType);
    }
    let bytes = body.read(limit).await?;
    Ok(decode_form(&bytes))
}

/// Reads an `application/json` body of at most `limit` bytes (the type is
/// checked before anything is read) as a `T`; a string with a NUL character
/// anywhere in it is refused.
pub async fn read_json<T, B>(
    headers: &HeaderMap,
    body: RequestBody<B>,
    limit: usize,
) -> Result<T, JsonError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !has_media_type(headers, JSON_TYPE) {
        return Err(BodyError::MediaType.into());
    }
    let bytes = body.read(limit).await?;
    decode_json(&bytes)
}

/// As [`read_json`]; a request with no `Content-Type` and an empty body is
/// `T::default()` (for bodies whose fields are all optional), and one with
/// no `Content-Type` but a body has the wrong media type.
pub async fn read_optional_json<T, B>(
    headers: &HeaderMap,
    body: RequestBody<B>,
    limit: usize,
) -> Result<T, JsonError>
where
    T: DeserializeOwned + Default,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if headers.contains_key(CONTENT_TYPE) {
        return read_json(headers, body, limit).await;
    }
    match body.read(limit).await?.is_empty() {
        true => Ok(T::default()),
        false => Err(BodyError::MediaType.into()),
    }
}

/// Decodes `bytes` as a `T`: directly (a field given twice is refused, where
/// a `Value` would keep the last), then once more as a `Value` to look for
/// NUL characters.
fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let body: T = serde_json::from_slice(bytes).map_err(|_| JsonError::Shape)?;
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match holds_nul(&value) {
        true => Err(JsonError::Nul),
        false => Ok(body),
    }
}

/// Whether a string of `value` (a key too) holds a NUL character (`\u0000`).
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(list) => list.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http_body_util::Full;
    use serde_json::json;

    use super::*;

    fn typed(media: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(media));
        h
    }

    fn full(text: &str) -> Full<Bytes> {
        Full::new(Bytes::from(text.to_owned()))
    }

    fn body(text: &str) -> RequestBody<Full<Bytes>> {
        RequestBody::new(full(text), Duration::from_secs(30), StallWatch::default())
    }

    /// A body fed from a channel: what the test sends, then (while the
    /// sender lives) nothing.
    struct Held(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Held {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.get_mut()
                .0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit_and_refused_past_it() {
        assert_eq!(read_capped(full("abcd"), 4).await.unwrap(), "abcd");
        assert_eq!(
            read_capped(full("abcde"), 4).await,
            Err(BodyError::Unreadable)
        );
        assert_eq!(body("abcd").read(4).await.unwrap(), "abcd");
        assert_eq!(body("abcde").read(4).await, Err(BodyError::Unreadable));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_refused_at_the_stall_bound() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Bytes::from_static(b"grant_type=")).await.unwrap();
        let watch = StallWatch::default();
        let stall = Duration::from_secs(5);
        let start = tokio::time::Instant::now();
        let read = RequestBody::new(Held(rx), stall, watch.clone());
        assert_eq!(read.read(1024).await, Err(BodyError::Stalled));
        assert_eq!(start.elapsed(), stall);
        assert!(watch.stalled());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_is_read_however_long_it_takes() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let stall = Duration::from_secs(5);
        let watch = StallWatch::default();
        let read = tokio::spawn(RequestBody::new(Held(rx), stall, watch.clone()).read(1024));
        // Ten pieces, each just inside the bound: fifty seconds in all.
        for _ in 0..10 {
            tokio::time::sleep(stall - Duration::from_millis(1)).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
        }
        drop(tx);
        assert_eq!(read.await.unwrap().unwrap(), "xxxxxxxxxx");
        assert!(!watch.stalled());
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        assert!(has_media_type(
            &typed("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            FORM_TYPE
        ));
        assert!(!has_media_type(&typed("application/json"), FORM_TYPE));
        assert!(!has_media_type(&HeaderMap::new(), JSON_TYPE));
    }

    #[test]
    fn forms_note_the_first_fault() {
        let ok = decode_form(b"a=1&b=&c=%20");
        assert_eq!(ok.fault, None);
        assert_eq!(ok.pairs["c"], " ");
        assert_eq!(decode_form(b"a=1&a=2").fault, Some(FormFault::Repeated));
        assert_eq!(decode_form(b"a=x%00").fault, Some(FormFault::Nul));
        assert_eq!(decode_form(b"a%00=1").fault, Some(FormFault::Nul));
        assert_eq!(
            decode_form(b"a=1&a=2&b=%00").fault,
            Some(FormFault::Repeated)
        );
        assert_eq!(decode_form(b"b=%00&a=1&a=2").fault, Some(FormFault::Nul));
        assert_eq!(decode_form(b"a=1&a=2").pairs["a"], "2");
    }

    #[tokio::test]
    async fn forms_check_their_type_before_reading() {
        let form = read_form(&typed(FORM_TYPE), body("a=1"), 16).await.unwrap();
        assert_eq!(form.strict().unwrap()["a"], "1");
        let wrong = read_form(&typed(JSON_TYPE), body("a=1"), 16).await;
        assert_eq!(wrong.unwrap_err(), BodyError::MediaType);
        let large = read_form(&typed(FORM_TYPE), body("a=12345"), 4).await;
        assert_eq!(large.unwrap_err(), BodyError::Unreadable);
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[serde(default)]
        a: Option<String>,
    }

    #[tokio::test]
    async fn json_bodies_are_typed_shaped_and_free_of_nul() {
        let read = |h: HeaderMap, t: &'static str| async move {
            read_json::<Shape, _>(&h, body(t), 64).await
        };
        let shape = read(typed(JSON_TYPE), r#"{"a":"x"}"#).await.unwrap();
        assert_eq!(shape.a.as_deref(), Some("x"));
        assert_eq!(
            read(typed(FORM_TYPE), "{}").await,
            Err(JsonError::Body(BodyError::MediaType))
        );
        assert_eq!(
            read(typed(JSON_TYPE), r#"{"b":1}"#).await,
            Err(JsonError::Shape)
        );
        assert_eq!(
            read(typed(JSON_TYPE), r#"{"a":"x\u0000"}"#).await,
            Err(JsonError::Nul)
        );
        let optional = |h: HeaderMap, t: &'static str| async move {
            read_optional_json::<Shape, _>(&h, body(t), 64).await
        };
        assert_eq!(optional(HeaderMap::new(), "").await, Ok(Shape::default()));
        assert_eq!(
            optional(HeaderMap::new(), "{}").await,
            Err(JsonError::Body(BodyError::MediaType))
        );
        assert_eq!(optional(typed(JSON_TYPE), "").await, Err(JsonError::Shape));
    }

    #[test]
    fn nul_characters_are_found_anywhere() {
        assert!(!holds_nul(
            &json!({ "a": ["b", { "c": "d" }], "e": 1, "f": null })
        ));
        assert!(holds_nul(&json!({ "a": "b\u{0}" })));
        assert!(holds_nul(&json!({ "a": { "b": ["c", "\u{0}"] } })));
        assert!(holds_nul(&json!({ "a\u{0}": 1 })));
    }
}
