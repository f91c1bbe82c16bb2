//! The single place where a refusal becomes a response: status, the RFC 6750
//! `WWW-Authenticate` challenge, and a JSON body with a fixed description.
//!
//! The text on the wire is part of the API: every description comes from a
//! `description()` of its own (never from `Display`, which may change for
//! logs), and the maps below are exhaustive, so a new variant cannot slip
//! through an `_ =>` arm.

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use super::headers::Unstrippable;
use crate::auth::TokenError;
use crate::auth::bearer::BearerError;
use crate::policy::Denial;
use crate::routing::PathError;
use crate::telemetry::LimitLabel;

/// Why the proxy answered itself instead of forwarding. The comment on each
/// variant says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Client: the request target is unusable.
    #[error("bad request path")]
    BadPath(#[source] PathError),
    /// Client: no route matches.
    #[error("no route")]
    NotFound,
    /// Client: a route matches but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<Method>),
    /// Client: the method is not an upper-case token.
    #[error("bad method")]
    BadMethod,
    /// Client: `Host` is missing, repeated, malformed, or contradicts `:authority`.
    #[error("bad host")]
    BadHost,
    /// Client: `Transfer-Encoding` is anything but one `chunked`.
    #[error("bad framing")]
    BadFraming,
    /// Client: the request body broke off or was malformed on its way upstream.
    #[error("bad request body")]
    BadBody,
    /// Client (the outer proxy of forward-auth): two descriptions of the
    /// original request disagree, or one is repeated.
    #[error("ambiguous original request")]
    AmbiguousOriginal,
    /// Client: a CORS preflight the route's policy does not allow (origin,
    /// method or a header).
    #[error("CORS preflight refused")]
    CorsRefused,
    /// Client: a protocol upgrade the route does not allow.
    #[error("upgrade refused")]
    UpgradeRefused,
    /// Client: the request body is larger than the route's `max_body`.
    #[error("request body too large")]
    BodyTooLarge,
    /// Client: nothing of the request body arrived for `body_timeout`.
    #[error("request body timed out")]
    BodyTimeout,
    /// Client: a method-override header is malformed, or several disagree.
    #[error("bad method override")]
    BadMethodOverride,
    /// Client: the overridden method reaches a route that does not honour
    /// overrides, or a `_method` parameter reaches such a route.
    #[error("method override refused")]
    MethodOverrideRefused,
    /// Client: a method override on a request other than a POST, or to a method
    /// other than GET, PUT, PATCH and DELETE.
    #[error("method override not allowed")]
    MethodOverrideNotAllowed,
    /// Client (the outer proxy of forward-auth): the original request's method
    /// and URI are not described, or only one of them is.
    #[error("original request not described")]
    NoOriginal,
    /// Client: forward-auth was asked about a request carrying a header the
    /// proxy would have removed, which the outer proxy would forward.
    #[error("header the gateway would strip")]
    SpoofedHeader(Unstrippable),
    /// Client: the Authorization header is malformed.
    #[error("malformed authorization")]
    BadAuthorization(#[source] BearerError),
    /// Client: another scheme on a route that needs a bearer token.
    #[error("not a bearer token")]
    WrongScheme,
    /// Client: no token on a route that requires one.
    #[error("no token")]
    NoToken,
    /// Token: refused by verification (or the issuer's keys are unavailable).
    #[error("token refused")]
    Token(#[source] TokenError),
    /// Token: valid, but the route's policy refuses it.
    #[error("policy refused")]
    Denied(#[source] Denial, HeaderValue),
    /// Upstream: refused or unreachable.
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// Upstream: no connection or no response in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// Us: something in the gateway failed (a panic, a request it could not
    /// build). Logged where it happened; the client learns nothing more.
    #[error("internal error")]
    Internal,
}

const REALM_ONLY: &str = "Bearer realm=\"portcullis\"";
const INVALID_REQUEST: &str = "Bearer error=\"invalid_request\"";

/// What a refusal looks like on the wire.
struct Answer {
    status: StatusCode,
    code: &'static str,
    description: &'static str,
    challenge: Option<HeaderValue>,
}

impl Answer {
    fn new(status: StatusCode, code: &'static str, description: &'static str) -> Answer {
        Answer {
            status,
            code,
            description,
            challenge: None,
        }
    }

    fn challenge(mut self, value: HeaderValue) -> Answer {
        self.challenge = Some(value);
        self
    }
}

impl Reject {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::BadPath(_) => "bad_path",
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed(_) => "method_not_allowed",
            Reject::BadMethodOverride
            | Reject::MethodOverrideRefused
            | Reject::MethodOverrideNotAllowed => "bad_method_override",
            Reject::BadMethod => "bad_method",
            Reject::BadHost => "bad_host",
            Reject::BadFraming => "bad_framing",
            Reject::BadBody => "bad_body",
            Reject::BodyTooLarge => "body_too_large",
            Reject::BodyTimeout => "body_timeout",
            Reject::UpgradeRefused => "upgrade_refused",
            Reject::CorsRefused => "cors_refused",
            Reject::AmbiguousOriginal => "ambiguous_original",
            Reject::NoOriginal => "no_original",
            Reject::SpoofedHeader(_) => "spoofed_header",
            Reject::BadAuthorization(_) | Reject::WrongScheme => "invalid_request",
            Reject::NoToken => "no_token",
            Reject::Token(e) => e.reason(),
            Reject::Denied(d, _) => d.reason(),
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::Internal => "internal_error",
        }
    }

    /// The limit of `server.limits` (or the route's `max_body`) this refusal
    /// counts as a hit of, in `portcullis_limit_hits_total`.
    pub fn limit(&self) -> Option<LimitLabel> {
        match self {
            Reject::BodyTooLarge => Some(LimitLabel::MAX_BODY),
            Reject::BodyTimeout => Some(LimitLabel::BODY_TIMEOUT),
            Reject::BadPath(_)
            | Reject::NotFound
            | Reject::MethodNotAllowed(_)
            | Reject::BadMethod
            | Reject::BadHost
            | Reject::BadFraming
            | Reject::BadBody
            | Reject::AmbiguousOriginal
            | Reject::CorsRefused
            | Reject::UpgradeRefused
            | Reject::BadMethodOverride
            | Reject::MethodOverrideRefused
            | Reject::MethodOverrideNotAllowed
            | Reject::NoOriginal
            | Reject::SpoofedHeader(_)
            | Reject::BadAuthorization(_)
            | Reject::WrongScheme
            | Reject::NoToken
            | Reject::Token(_)
            | Reject::Denied(..)
            | Reject::UpstreamUnavailable
            | Reject::UpstreamTimeout
            | Reject::Internal => None,
        }
    }

    fn answer(&self) -> Answer {
        use StatusCode as S;
        const BAD: &str = "invalid_request";
        match self {
            Reject::BadPath(e) => Answer::new(S::BAD_REQUEST, BAD, e.description()),
            Reject::NotFound => Answer::new(S::NOT_FOUND, "not_found", "no route matches the path"),
            Reject::MethodNotAllowed(_) => Answer::new(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not allow this method",
            ),
            Reject::BadMethod => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the method must be an upper-case token",
            ),
            Reject::BadHost => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the Host header is missing, repeated or invalid",
            ),
            Reject::BadFraming => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the Transfer-Encoding header must be exactly chunked",
            ),
            Reject::BadBody => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the request body ended early or is malformed",
            ),
            Reject::AmbiguousOriginal => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the original request is described twice, differently",
            ),
            Reject::CorsRefused => Answer::new(
                S::FORBIDDEN,
                "forbidden",
                "the CORS preflight is not allowed for this origin, method or headers",
            ),
            Reject::UpgradeRefused => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "this route does not accept a protocol upgrade",
            ),
            Reject::BodyTimeout => Answer::new(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            Reject::BodyTooLarge => Answer::new(
                S::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the request body is larger than the route allows",
            ),
            Reject::BadMethodOverride => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the method override is invalid or ambiguous",
            ),
            Reject::MethodOverrideRefused => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the route does not accept method overrides",
            ),
            Reject::MethodOverrideNotAllowed => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "a method override is honoured only on a POST, and only as GET, PUT, PATCH or DELETE",
            ),
            Reject::NoOriginal => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the original request's method and URI are not described",
            ),
            Reject::SpoofedHeader(h) => Answer::new(S::BAD_REQUEST, BAD, spoofed_description(*h)),
            Reject::BadAuthorization(e) => Answer::new(S::BAD_REQUEST, BAD, e.description())
                .challenge(HeaderValue::from_static(INVALID_REQUEST)),
            Reject::WrongScheme => Answer::new(
                S::BAD_REQUEST,
                BAD,
                "the Authorization header must use the Bearer scheme",
            )
            .challenge(HeaderValue::from_static(INVALID_REQUEST)),
            Reject::NoToken => Answer::new(
                S::UNAUTHORIZED,
                "unauthorized",
                "a bearer token is required",
            )
            .challenge(HeaderValue::from_static(REALM_ONLY)),
            Reject::Token(e) => token_answer(*e),
            Reject::Denied(d, scope) => denied_answer(*d, scope),
            Reject::UpstreamUnavailable => {
                Answer::new(S::BAD_GATEWAY, "bad_gateway", "the upstream is unavailable")
            }
            Reject::UpstreamTimeout => Answer::new(
                S::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the upstream did not answer in time",
            ),
            Reject::Internal => Answer::new(
                S::INTERNAL_SERVER_ERROR,
                "server_error",
                "the gateway failed to handle the request",
            ),
        }
    }

    /// The response for this refusal.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let answer = self.answer();
        let mut resp = json_error(answer.status, answer.code, answer.description);
        let h = resp.headers_mut();
        if let Some(c) = answer.challenge {
            h.insert(WWW_AUTHENTICATE, c);
        }
        if let Reject::MethodNotAllowed(methods) = &self {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                h.insert(ALLOW, v);
            }
        }
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

/// A JSON error response, `{"error": code, "error_description": description}`,
/// with `Content-Type: application/json` and `Cache-Control: no-store`.
pub fn json_error(
    status: StatusCode,
    code: &'static str,
    description: &'static str,
) -> Response<Full<Bytes>> {
    #[derive(serde::Serialize)]
    struct Body {
        error: &'static str,
        error_description: &'static str,
    }
    let body = serde_json::to_vec(&Body {
        error: code,
        error_description: description,
    })
    .unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn spoofed_description(h: Unstrippable) -> &'static str {
    match h {
        Unstrippable::Identity => {
            "the request carries an identity header, which only the gateway sets"
        }
        Unstrippable::UrlOverride => "the request carries a URL override header",
        Unstrippable::MethodOverride => {
            "the request carries a method override header the route does not accept"
        }
        Unstrippable::Underscored => "the request carries a forwarding header spelt with '_'",
    }
}

fn token_answer(e: TokenError) -> Answer {
    match e {
        TokenError::KeysUnavailable | TokenError::IntrospectionUnavailable => Answer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.description(),
        ),
        TokenError::Malformed
        | TokenError::DisallowedAlg
        | TokenError::BadType
        | TokenError::UnsupportedCrit
        | TokenError::UnknownIssuer
        | TokenError::IssuerNotAllowed
        | TokenError::UnknownKey
        | TokenError::BadSignature
        | TokenError::WrongAudience
        | TokenError::Expired
        | TokenError::NotYetValid
        | TokenError::IssuedInFuture
        | TokenError::MissingClaim
        | TokenError::Inactive
        | TokenError::Revoked => invalid_token(e.description()),
    }
}

fn denied_answer(d: Denial, scope: &HeaderValue) -> Answer {
    match d {
        Denial::IssuerNotAllowed => invalid_token(d.description()),
        Denial::InsufficientScope => {
            let mut v = String::from("Bearer error=\"insufficient_scope\", scope=\"");
            v.push_str(scope.to_str().unwrap_or_default());
            v.push('"');
            let a = Answer::new(StatusCode::FORBIDDEN, "insufficient_scope", d.description());
            match HeaderValue::from_str(&v) {
                Ok(c) => a.challenge(c),
                Err(_) => a,
            }
        }
        Denial::OrgMismatch | Denial::MissingRole => {
            Answer::new(StatusCode::FORBIDDEN, "forbidden", d.description())
        }
    }
}

fn invalid_token(description: &'static str) -> Answer {
    let challenge = format!(
        "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""
    );
    let a = Answer::new(StatusCode::UNAUTHORIZED, "invalid_token", description);
    match HeaderValue::from_str(&challenge) {
        Ok(c) => a.challenge(c),
        Err(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_the_wire_text_not_display() {
        // Every token error's description is what the challenge carries.
        let r = Reject::Token(TokenError::Expired).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"the token is expired\""
        );
        let r = Reject::Internal.into_response();
        assert_eq!(r.status(), 500);
        let r = Reject::Token(TokenError::KeysUnavailable).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
    }
}
