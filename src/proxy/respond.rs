//! The single place where a refusal becomes a response: status, the RFC 6750
//! `WWW-Authenticate` challenge, and a JSON body with a fixed description.

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::auth::TokenError;
use crate::auth::bearer::BearerError;
use crate::policy::Denial;
use crate::routing::PathError;

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
    /// Client: the request body broke off or was malformed on its way upstream.
    #[error("bad request body")]
    BadBody,
    /// Client: a method-override header is malformed, or several disagree.
    #[error("bad method override")]
    BadMethodOverride,
    /// Client: the overridden method reaches a route that does not honour overrides.
    #[error("method override refused")]
    MethodOverrideRefused,
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
    /// Upstream: no response in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
}

const REALM_ONLY: &str = "Bearer realm=\"portcullis\"";
const INVALID_REQUEST: &str = "Bearer error=\"invalid_request\"";

impl Reject {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::BadPath(_) => "bad_path",
            Reject::NotFound => "not_found",
            Reject::MethodNotAllowed(_) => "method_not_allowed",
            Reject::BadMethodOverride | Reject::MethodOverrideRefused => "bad_method_override",
            Reject::BadMethod => "bad_method",
            Reject::BadHost => "bad_host",
            Reject::BadBody => "bad_body",
            Reject::BadAuthorization(_) | Reject::WrongScheme => "invalid_request",
            Reject::NoToken => "no_token",
            Reject::Token(e) => e.reason(),
            Reject::Denied(d, _) => d.reason(),
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The response for this refusal.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, code, description, challenge): (
            StatusCode,
            &str,
            String,
            Option<HeaderValue>,
        ) = match &self {
            Reject::BadPath(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                e.to_string(),
                None,
            ),
            Reject::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no route matches the path".into(),
                None,
            ),
            Reject::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not allow this method".into(),
                None,
            ),
            Reject::BadMethod => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the method must be an upper-case token".into(),
                None,
            ),
            Reject::BadHost => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Host header is missing, repeated or invalid".into(),
                None,
            ),
            Reject::BadBody => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body ended early or is malformed".into(),
                None,
            ),
            Reject::BadMethodOverride => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the method override header is invalid or ambiguous".into(),
                None,
            ),
            Reject::MethodOverrideRefused => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the route of the overridden method does not accept method overrides".into(),
                None,
            ),
            Reject::BadAuthorization(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                e.to_string(),
                Some(HeaderValue::from_static(INVALID_REQUEST)),
            ),
            Reject::WrongScheme => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Authorization header must use the Bearer scheme".into(),
                Some(HeaderValue::from_static(INVALID_REQUEST)),
            ),
            Reject::NoToken => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a bearer token is required".into(),
                Some(HeaderValue::from_static(REALM_ONLY)),
            ),
            Reject::Token(TokenError::KeysUnavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                TokenError::KeysUnavailable.to_string(),
                None,
            ),
            Reject::Token(e) => invalid_token(&e.to_string()),
            Reject::Denied(Denial::IssuerNotAllowed, _) => {
                invalid_token(&Denial::IssuerNotAllowed.to_string())
            }
            Reject::Denied(Denial::InsufficientScope, scope) => {
                let mut v = String::from("Bearer error=\"insufficient_scope\", scope=\"");
                v.push_str(scope.to_str().unwrap_or_default());
                v.push('"');
                (
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    Denial::InsufficientScope.to_string(),
                    HeaderValue::from_str(&v).ok(),
                )
            }
            Reject::Denied(d @ (Denial::OrgMismatch | Denial::MissingRole), _) => {
                (StatusCode::FORBIDDEN, "forbidden", d.to_string(), None)
            }
            Reject::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream is unavailable".into(),
                None,
            ),
            Reject::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the upstream did not answer in time".into(),
                None,
            ),
        };
        let body = serde_json::json!({ "error": code, "error_description": description });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = challenge {
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

fn invalid_token(description: &str) -> (StatusCode, &'static str, String, Option<HeaderValue>) {
    let challenge = format!(
        "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""
    );
    (
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        description.to_owned(),
        HeaderValue::from_str(&challenge).ok(),
    )
}
