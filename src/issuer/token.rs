//! The token endpoint's grants. Here: `client_credentials` (machine-to-machine
//! tokens, RFC 6749 §4.4) with RFC 8707 resource selection, and what the
//! other grants share (claims, signing, scopes); the anonymous grant is in
//! `anonymous`, refresh in `refresh`, the code exchange in `authorize`. Every
//! grant asks the `token.pre_issue` hooks ([`Minter::pre_issue`]) before it
//! signs an access token, and signs what they added with it
//! ([`Minter::sign_access_with`]).

use std::sync::Arc;

use serde::Serialize;

use super::clients::Form;
use super::error::OAuthError;
use super::hooks::{AddedClaims, Hooks, PreIssue};
use super::keyring::KeyRing;
use super::reserved::confine;
use super::revocation::Revocations;
use super::store::{Client, Redacted, Store, redacted};
use crate::config::{IssuerSection, SigningAlg};

/// The claims of an access token (RFC 9068 shape).
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: &'a str,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<&'a [String]>,
    /// An anonymous user's token says so (`"anonymous": true`); others
    /// carry no such claim.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// The token family (authorization code or anonymous sign-up, and the
    /// refreshes that followed) it was issued from, so that revoking the
    /// family stops it too ([`crate::auth::revocation::FAMILY_CLAIM`]);
    /// `client_credentials` tokens have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_id: Option<&'a str>,
}

/// A successful token response (RFC 6749 §5.1). Its `Debug` hides the
/// tokens.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &Redacted)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("id_token", &redacted(&self.id_token))
            .finish()
    }
}

/// Mints access tokens.
pub struct Minter {
    pub section: Arc<IssuerSection>,
    pub keys: Arc<KeyRing>,
    pub store: Arc<dyn Store>,
    /// The blocking hooks asked before an access token is signed.
    pub hooks: Arc<Hooks>,
    /// Where revocations are recorded and applied.
    pub revocations: Arc<Revocations>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

/// A random, URL-safe identifier with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    let ok = aws_lc_rs::rand::fill(&mut buf).is_ok();
    debug_assert!(ok);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// How the store knows an opaque token (refresh token, authorization code):
/// its SHA-256, base64url without padding. The token itself is never stored.
pub fn token_hash(token: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Splits a `scope` parameter; `None` when it is absent.
pub fn requested_scopes(form: &Form) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(raw) = form.get("scope") else {
        return Ok(None);
    };
    let scopes: Vec<String> = raw
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let valid = |s: &String| {
        s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    if !scopes.iter().all(valid) {
        return Err(OAuthError::InvalidScope);
    }
    Ok(Some(scopes))
}

// === impl Minter ===

impl Minter {
    /// `grant_type=client_credentials` for an authenticated client.
    pub async fn client_credentials(
        &self,
        client: &Client,
        form: &Form,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.grant_types.iter().any(|g| g == "client_credentials") {
            return Err(OAuthError::UnauthorizedClient);
        }
        let (resource, scope) = self.resource_scope(client, form).await?;
        let ttl = self.section.access_token_ttl.as_secs();
        let claims = AccessClaims {
            iss: &self.section.url,
            sub: &client.client_id,
            aud: &resource,
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id: &client.client_id,
            scope: scope.clone(),
            org_id: None,
            roles: None,
            anonymous: false,
            family_id: None,
        };
        let added = self.pre_issue("client_credentials", &claims).await?;
        let access_token = self.sign_access_with(&claims, &added)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope,
            refresh_token: None,
            id_token: None,
        })
    }

    /// Asks the `token.pre_issue` hooks about the access token `claims`
    /// describe, issued by `grant_type`: the claims they add, or the refusal
    /// as an OAuth error (403 `access_denied` with the hook's reason; 503
    /// `temporarily_unavailable` when a hook that fails closed failed). Call
    /// it before anything the refusal must not leave behind (a rotation, a
    /// new refresh family).
    pub async fn pre_issue(
        &self,
        grant_type: &str,
        claims: &AccessClaims<'_>,
    ) -> Result<AddedClaims, OAuthError> {
        let about = PreIssue {
            grant_type,
            client_id: claims.client_id,
            sub: claims.sub,
            aud: claims.aud,
            scope: &claims.scope,
            org_id: claims.org_id,
        };
        Ok(self.hooks.pre_issue(&about).await?)
    }

    /// As [`Minter::sign_access`], with the claims hooks added. A claim of
    /// `claims` is never replaced, whatever `added` holds.
    pub fn sign_access_with(
        &self,
        claims: &AccessClaims<'_>,
        added: &AddedClaims,
    ) -> Result<String, OAuthError> {
        if added.is_empty() {
            return self.sign_access(claims);
        }
        let mut all = match serde_json::to_value(claims) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                tracing::error!("Access token claims are not a JSON object");
                return Err(OAuthError::Server);
            }
        };
        for (name, value) in added.iter() {
            if !all.contains_key(name) {
                all.insert(name.clone(), value.clone());
            }
        }
        self.sign_claims(&all)
    }

    /// Signs access-token claims with the first configured algorithm's key.
    pub fn sign_access(&self, claims: &AccessClaims<'_>) -> Result<String, OAuthError> {
        self.sign_claims(claims)
    }

    fn sign_claims<T: Serialize>(&self, claims: &T) -> Result<String, OAuthError> {
        let alg = self
            .section
            .signing_algs
            .first()
            .copied()
            .unwrap_or(SigningAlg::ES256);
        let ring = self.keys.current();
        let key = ring.signer(alg).ok_or_else(|| {
            tracing::error!(alg = alg.as_str(), "No active signing key");
            OAuthError::Server
        })?;
        key.sign(claims, "at+jwt").map_err(|e| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Signing failed");
            OAuthError::Server
        })
    }

    /// The API a grant without a user's consent targets (`client_credentials`,
    /// the anonymous grant) and the scope granted there: the requested scopes
    /// the client may obtain for that API, or all of those when none is
    /// requested; `invalid_scope` when none of the requested ones is allowed.
    pub(super) async fn resource_scope(
        &self,
        client: &Client,
        form: &Form,
    ) -> Result<(String, String), OAuthError> {
        let resource = self.resource(client, form).await?;
        let allowed = confine(
            &self.section.url,
            Some(&resource),
            client.scopes.get(&resource).into_iter().flatten(),
        );
        let scopes: Vec<&str> = match requested_scopes(form)? {
            Some(req) => {
                let granted: Vec<&str> = allowed
                    .iter()
                    .filter(|a| req.contains(a))
                    .map(String::as_str)
                    .collect();
                if granted.is_empty() && !req.is_empty() {
                    return Err(OAuthError::InvalidScope);
                }
                granted
            }
            None => allowed.iter().map(String::as_str).collect(),
        };
        Ok((resource, scopes.join(" ")))
    }

    /// The API a request targets: `resource` (RFC 8707) or `audience`, else the
    /// client's only API. It must exist and the client must have scopes there.
    async fn resource(&self, client: &Client, form: &Form) -> Result<String, OAuthError> {
        let named = match (form.get("resource"), form.get("audience")) {
            (Some(r), Some(a)) if r != a => {
                return Err(OAuthError::InvalidRequest("resource and audience disagree"));
            }
            (Some(r), _) | (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        };
        let resource = match named {
            Some(r) => r,
            None => {
                let mut apis = client.scopes.keys();
                match (apis.next(), apis.next()) {
                    (Some(only), None) => only.clone(),
                    _ => return Err(OAuthError::InvalidTarget),
                }
            }
        };
        let known = self.store.get_api_resource_recent(&resource).await?;
        if known.is_none() || !client.scopes.contains_key(&resource) {
            return Err(OAuthError::InvalidTarget);
        }
        Ok(resource)
    }
}
