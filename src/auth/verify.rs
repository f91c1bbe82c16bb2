//! JWS checks for one token: structure and header, signature, and claims at an
//! injected instant. Pure: keys come in, a verdict goes out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::Key;
use crate::config::{Algorithm, IssuerConfig};

/// Why a token was refused. Every variant is the client's fault except
/// [`TokenError::KeysUnavailable`], which is an issuer outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    DisallowedAlg,
    #[error("the token's type is not accepted")]
    BadType,
    #[error("the token names a critical extension that is not understood")]
    UnsupportedCrit,
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    #[error("the token's issuer is not accepted on this route")]
    IssuerNotAllowed,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token is expired")]
    Expired,
    #[error("the token is not yet valid")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token lacks a required claim")]
    MissingClaim,
    #[error("the issuer's keys are not available")]
    KeysUnavailable,
    #[error("the token is not active")]
    Inactive,
    #[error("the issuer's introspection endpoint is not available")]
    IntrospectionUnavailable,
    /// The built-in issuer revoked it (by `jti`, family, user or client), or
    /// it predates what a full revocation set can still tell apart.
    #[error("the token was revoked")]
    Revoked,
}

impl TokenError {
    /// The fixed `error_description` sent to the client (and in the
    /// `WWW-Authenticate` challenge): part of the API, so it does not follow
    /// `Display`, which may change for logs. Never mentions the token's content.
    pub fn description(self) -> &'static str {
        match self {
            TokenError::Malformed => "the token is malformed",
            TokenError::DisallowedAlg => "the token's algorithm is not allowed",
            TokenError::BadType => "the token's type is not accepted",
            TokenError::UnsupportedCrit => {
                "the token names a critical extension that is not understood"
            }
            TokenError::UnknownIssuer => "the token's issuer is not trusted",
            TokenError::IssuerNotAllowed => "the token's issuer is not accepted on this route",
            TokenError::UnknownKey => "the token's signing key is unknown",
            TokenError::BadSignature => "the token's signature is invalid",
            TokenError::WrongAudience => "the token's audience is not accepted",
            TokenError::Expired => "the token is expired",
            TokenError::NotYetValid => "the token is not yet valid",
            TokenError::IssuedInFuture => "the token was issued in the future",
            TokenError::MissingClaim => "the token lacks a required claim",
            TokenError::KeysUnavailable => "the issuer's keys are not available",
            TokenError::Inactive => "the token is not active",
            TokenError::IntrospectionUnavailable => "the token cannot be checked right now",
            // Said as of any inactive token: why it was revoked is not the
            // bearer's business.
            TokenError::Revoked => "the token is not active",
        }
    }

    /// A stable, low-cardinality name for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed_token",
            TokenError::DisallowedAlg => "disallowed_alg",
            TokenError::BadType => "bad_typ",
            TokenError::UnsupportedCrit => "unsupported_crit",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::IssuerNotAllowed => "issuer_not_allowed",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingClaim => "missing_claim",
            TokenError::KeysUnavailable => "keys_unavailable",
            TokenError::Inactive => "inactive_token",
            TokenError::IntrospectionUnavailable => "introspection_unavailable",
            TokenError::Revoked => "revoked_token",
        }
    }
}

/// A structurally valid token whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The header says `typ: at+jwt` (RFC 9068): an access token, never an ID token.
    pub at_jwt: bool,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    pub signature: &'a str,
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// Splits and decodes a compact JWS, checking the header's `alg`, `typ` and `crit`.
/// `jku`, `x5u`, `jwk` and `x5c` are never read: nothing is fetched from a token.
pub fn parse(token: &str) -> Result<Unverified<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    let header: RawHeader =
        serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed)?;
    let alg = header.alg.ok_or(TokenError::Malformed)?;
    let alg = Algorithm::from_name(&alg).ok_or(TokenError::DisallowedAlg)?;
    // RFC 7515 §4.1.9: a `typ` without `/` means the same with `application/`.
    let typ = header.typ.as_deref().map(|t| {
        t.get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(t, |_| &t[12..])
    });
    let at_jwt = typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"));
    if typ.is_some_and(|t| !at_jwt && !t.eq_ignore_ascii_case("JWT")) {
        return Err(TokenError::BadType);
    }
    if header.crit.is_some() {
        // No extension is understood, so any `crit` (even a malformed one) rejects.
        return Err(TokenError::UnsupportedCrit);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    Ok(Unverified {
        alg,
        kid: header.kid,
        at_jwt,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
        claims,
    })
}

/// Checks the signature with `key` (whose type must already fit `alg`).
pub fn verify_signature(token: &Unverified<'_>, key: &Key) -> Result<(), TokenError> {
    let ok = jsonwebtoken::crypto::verify(
        token.signature,
        token.signing_input.as_bytes(),
        &key.decoding,
        jwt_alg(token.alg),
    )
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
    }
}

/// The validity window of a token, in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub exp: i64,
    pub nbf: Option<i64>,
}

/// Checks `aud`, `exp`, `nbf` and `iat` against `issuer` at `now` (seconds since
/// the epoch). `iss` has already chosen `issuer`.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerConfig,
    now: i64,
) -> Result<Window, TokenError> {
    let leeway = issuer.leeway.as_secs() as i64;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| issuer.audiences.iter().any(|x| x == a)),
        Some(_) => return Err(TokenError::Malformed),
        None => return Err(TokenError::MissingClaim),
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    let exp = numeric_date(claims.get("exp"))?.ok_or(TokenError::MissingClaim)?;
    let window = Window {
        exp,
        nbf: numeric_date(claims.get("nbf"))?,
    };
    check_window(window, now, leeway)?;
    if let Some(iat) = numeric_date(claims.get("iat"))? {
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
    }
    Ok(window)
}

/// Checks `exp` and `nbf` at `now`; run on every request, cached tokens included.
pub fn check_window(w: Window, now: i64, leeway: i64) -> Result<(), TokenError> {
    if now >= w.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if w.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fn numeric_date(v: Option<&Value>) -> Result<Option<i64>, TokenError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() => Ok(Some(f.floor() as i64)),
            _ => Err(TokenError::Malformed),
        },
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests;
