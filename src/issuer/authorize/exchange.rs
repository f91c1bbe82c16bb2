//! `grant_type=authorization_code` (RFC 6749 §4.1.3) for an authenticated
//! client: the code is redeemed once (a replay revokes the refresh family the
//! first redemption produced), bound to its client and redirect URI, checked
//! against its PKCE challenge and expiry, and turned into an access token, an
//! ID token (when `openid` was granted) and, for clients with the
//! `refresh_token` grant, the first refresh token of a new family. The
//! `token.pre_issue` hooks are asked before the family is created.

use serde::Serialize;

use super::{Flow, pkce};
use crate::config::SigningAlg;
use crate::issuer::clients::Form;
use crate::issuer::error::OAuthError;
use crate::issuer::store::{
    AuthCode, Client, CodeRedemption, Membership, Organization, RefreshFamily, StoreError, User,
    new_id,
};
use crate::issuer::token::{AccessClaims, Minter, TokenResponse, random_token, token_hash};

/// The claims of an ID token (OIDC Core §2) plus the tenancy claims.
#[derive(Debug, Serialize)]
pub struct IdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    #[serde(flatten)]
    pub profile: Profile,
}

/// What the issuer says about a user, in the ID token and at userinfo.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Absent for a user without an email (anonymous or anonymized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    /// The first role of the membership.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Whom an ID token is about, and how they signed in.
#[derive(Debug, Clone, Copy)]
pub struct IdSubject<'a> {
    pub user: &'a User,
    pub org: Option<&'a Organization>,
    pub membership: Option<&'a Membership>,
    /// When the user typed their password (the original sign-in, also on
    /// refresh: OIDC Core §12.2).
    pub auth_time: i64,
    /// The authorization request's nonce; absent on refresh.
    pub nonce: Option<&'a str>,
}

// === impl Minter ===

impl Minter {
    /// A signed ID token for `client` about `subject`, issued `now`, with the
    /// client's `id_token_signed_response_alg`.
    pub(crate) fn id_token(
        &self,
        client: &Client,
        subject: &IdSubject<'_>,
        now: i64,
    ) -> Result<String, OAuthError> {
        let claims = IdClaims {
            iss: &self.section.url,
            sub: &subject.user.id,
            aud: &client.client_id,
            exp: now + self.section.id_token_ttl.as_secs() as i64,
            iat: now,
            auth_time: subject.auth_time,
            nonce: subject.nonce,
            profile: Profile::of(subject.user, subject.org, subject.membership),
        };
        // RS256 by default (OIDC Discovery requires it); a client created without
        // an algorithm on an issuer without RS256 gets the first configured one.
        let named = client
            .id_token_signed_response_alg
            .as_deref()
            .and_then(SigningAlg::from_name);
        let default = match self.section.signing_algs.contains(&SigningAlg::RS256) {
            true => SigningAlg::RS256,
            false => self
                .section
                .signing_algs
                .first()
                .copied()
                .unwrap_or(SigningAlg::RS256),
        };
        let alg = named.unwrap_or(default);
        let ring = self.keys.current();
        let key = ring.signer(alg).ok_or_else(|| {
            tracing::error!(alg = alg.as_str(), "No active key for ID tokens");
            OAuthError::Server
        })?;
        key.sign(&claims, "JWT").map_err(|e| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Signing failed");
            OAuthError::Server
        })
    }
}

fn store_failed(err: &StoreError) -> OAuthError {
    tracing::error!(error = %crate::telemetry::events::chain(err), "Code exchange storage failed");
    OAuthError::Server
}

// === impl Profile ===

impl Profile {
    /// The profile of `user` in `org` (with the membership's first role).
    pub fn of(user: &User, org: Option<&Organization>, membership: Option<&Membership>) -> Profile {
        Profile {
            email: user.email.clone(),
            email_verified: user.email_verified,
            name: user.name.clone(),
            picture: user.picture.clone(),
            org_id: org.map(|o| o.id.clone()),
            org_name: org.map(|o| o.name.clone()),
            role: membership.and_then(|m| m.roles.first().cloned()),
        }
    }
}

// === impl Flow ===

impl Flow {
    /// Redeems a code for `client` (already authenticated; a public client by
    /// its id alone).
    pub async fn exchange(
        &self,
        client: &Client,
        form: &Form,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(OAuthError::UnauthorizedClient);
        }
        let code = form
            .get("code")
            .ok_or(OAuthError::InvalidRequest("code is required"))?;
        let code_hash = token_hash(code);
        let record = match self
            .store
            .consume_code(&code_hash, now)
            .await
            .map_err(|e| store_failed(&e))?
        {
            None => return Err(OAuthError::InvalidGrant("the code is invalid")),
            Some(CodeRedemption::Reused { family_id, .. }) => {
                if let Some(family) = family_id {
                    self.store
                        .revoke_family(&family, now)
                        .await
                        .map_err(|e| store_failed(&e))?;
                }
                tracing::warn!(client = %client.client_id, "Authorization code replayed; its tokens revoked");
                return Err(OAuthError::InvalidGrant("the code is invalid"));
            }
            Some(CodeRedemption::First(record)) => record,
        };
        check_code(&record, client, form, now)?;
        self.mint(client, &record, &code_hash, now).await
    }

    async fn mint(
        &self,
        client: &Client,
        code: &AuthCode,
        code_hash: &str,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let user = self
            .store
            .get_user(&code.user_id)
            .await
            .map_err(|e| store_failed(&e))?
            .ok_or(OAuthError::InvalidGrant("the user no longer exists"))?;
        // A code issued just before the user was anonymized gives nothing.
        if user.anonymized_at.is_some() {
            return Err(OAuthError::InvalidGrant("the user no longer exists"));
        }
        let (org, membership) = self.tenancy(&user.id, code.org_id.as_deref()).await?;
        let ttl = self.section.access_token_ttl.as_secs();
        let roles = membership.as_ref().map(|m| m.roles.clone());
        let claims = AccessClaims {
            iss: &self.section.url,
            sub: &user.id,
            aud: code.resource.as_deref().unwrap_or(&client.client_id),
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id: &client.client_id,
            scope: code.scope.clone(),
            org_id: code.org_id.as_deref(),
            roles: roles.as_deref(),
            anonymous: user.anonymous,
        };
        // Before the refresh family exists: a refused token leaves none.
        let added = self.minter.pre_issue("authorization_code", &claims).await?;
        let access_token = self.minter.sign_access_with(&claims, &added)?;
        let openid = code.scope.split(' ').any(|s| s == "openid");
        let id_token = match openid {
            true => {
                Some(self.id_token(client, code, &user, org.as_ref(), membership.as_ref(), now)?)
            }
            false => None,
        };
        let refresh_token = match client.grant_types.iter().any(|g| g == "refresh_token") {
            true => Some(self.new_family(code, code_hash, now).await?),
            false => None,
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope: code.scope.clone(),
            refresh_token,
            id_token,
        })
    }

    /// The organization of the code and the user's membership there (gone if
    /// the user left it since).
    pub(super) async fn tenancy(
        &self,
        user_id: &str,
        org_id: Option<&str>,
    ) -> Result<(Option<Organization>, Option<Membership>), OAuthError> {
        let Some(org_id) = org_id else {
            return Ok((None, None));
        };
        let org = self
            .store
            .get_organization(org_id)
            .await
            .map_err(|e| store_failed(&e))?;
        let membership = self
            .store
            .list_memberships_of_user(user_id)
            .await
            .map_err(|e| store_failed(&e))?
            .into_iter()
            .find(|m| m.org_id == org_id);
        if org.is_none() || membership.is_none() {
            return Err(OAuthError::InvalidGrant("the user is no longer a member"));
        }
        Ok((org, membership))
    }

    fn id_token(
        &self,
        client: &Client,
        code: &AuthCode,
        user: &User,
        org: Option<&Organization>,
        membership: Option<&Membership>,
        now: i64,
    ) -> Result<String, OAuthError> {
        let subject = IdSubject {
            user,
            org,
            membership,
            auth_time: code.auth_time,
            nonce: code.nonce.as_deref(),
        };
        self.minter.id_token(client, &subject, now)
    }

    /// Starts a refresh family for the code and returns its first token.
    async fn new_family(
        &self,
        code: &AuthCode,
        code_hash: &str,
        now: i64,
    ) -> Result<String, OAuthError> {
        let token = random_token(32);
        let family = RefreshFamily {
            id: new_id("rfam"),
            client_id: code.client_id.clone(),
            user_id: code.user_id.clone(),
            org_id: code.org_id.clone(),
            scope: code.scope.clone(),
            resource: code.resource.clone(),
            auth_time: code.auth_time,
            generation: 0,
            current_hash: token_hash(&token),
            previous_hash: None,
            rotated_at: None,
            created_at: now,
            absolute_expires_at: now + self.section.refresh_token_ttl.as_secs() as i64,
            idle_expires_at: self
                .section
                .refresh_token_idle_ttl
                .map(|d| now + d.as_secs() as i64),
            revoked_at: None,
        };
        self.store
            .create_family(&family)
            .await
            .map_err(|e| store_failed(&e))?;
        self.store
            .set_code_family(code_hash, &family.id)
            .await
            .map_err(|e| store_failed(&e))?;
        Ok(token)
    }
}

/// The code's bindings: client, redirect URI, expiry and PKCE.
fn check_code(code: &AuthCode, client: &Client, form: &Form, now: i64) -> Result<(), OAuthError> {
    if code.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant(
            "the code was issued to another client",
        ));
    }
    if now >= code.expires_at {
        return Err(OAuthError::InvalidGrant("the code has expired"));
    }
    if form.get("redirect_uri") != Some(&code.redirect_uri) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&code.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce::verify(challenge, verifier) => Ok(()),
        (Some(_), _) => Err(OAuthError::InvalidGrant("the code_verifier does not match")),
        // A verifier for a code without a challenge is a downgrade attempt.
        (None, Some(_)) => Err(OAuthError::InvalidGrant("the code has no code_challenge")),
        (None, None) if client.public || client.require_pkce => {
            Err(OAuthError::InvalidGrant("PKCE is required for this client"))
        }
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn client(public: bool, require_pkce: bool) -> Client {
        Client {
            client_id: "web".into(),
            name: "web".into(),
            secret_hash: None,
            public,
            require_pkce,
            grant_types: vec!["authorization_code".into()],
            redirect_uris: vec!["http://x/cb".into()],
            scopes: Default::default(),
            id_token_signed_response_alg: None,
            introspection: Vec::new(),
            created_at: 0,
        }
    }

    fn code(challenge: Option<&str>) -> AuthCode {
        AuthCode {
            code_hash: "h".into(),
            client_id: "web".into(),
            user_id: "usr".into(),
            org_id: None,
            redirect_uri: "http://x/cb".into(),
            scope: "openid".into(),
            resource: None,
            code_challenge: challenge.map(str::to_owned),
            nonce: None,
            auth_time: 100,
            expires_at: 160,
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Form {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn codes_are_bound_to_client_redirect_expiry_and_challenge() {
        let challenge = pkce::s256(VERIFIER);
        let c = code(Some(&challenge));
        let good = form(&[("redirect_uri", "http://x/cb"), ("code_verifier", VERIFIER)]);
        let public = client(true, true);
        assert_eq!(check_code(&c, &public, &good, 159), Ok(()));
        let expired = check_code(&c, &public, &good, 160);
        assert!(matches!(expired, Err(OAuthError::InvalidGrant(_))));
        let mut other = client(true, true);
        other.client_id = "other".into();
        assert!(check_code(&c, &other, &good, 100).is_err());
        let moved = form(&[
            ("redirect_uri", "http://x/cb2"),
            ("code_verifier", VERIFIER),
        ]);
        assert!(check_code(&c, &public, &moved, 100).is_err());
        let no_redirect = form(&[("code_verifier", VERIFIER)]);
        assert!(check_code(&c, &public, &no_redirect, 100).is_err());
    }

    #[test]
    fn pkce_cannot_be_skipped_or_added_late() {
        let challenge = pkce::s256(VERIFIER);
        let redirect_only = form(&[("redirect_uri", "http://x/cb")]);
        let with_verifier = form(&[("redirect_uri", "http://x/cb"), ("code_verifier", VERIFIER)]);
        let plain = form(&[
            ("redirect_uri", "http://x/cb"),
            ("code_verifier", &challenge),
        ]);
        let public = client(true, true);
        let lax = client(false, false);
        let c = code(Some(&challenge));
        assert!(check_code(&c, &public, &redirect_only, 100).is_err());
        assert!(check_code(&c, &public, &plain, 100).is_err());
        let bare = code(None);
        assert!(check_code(&bare, &public, &redirect_only, 100).is_err());
        assert!(check_code(&bare, &lax, &with_verifier, 100).is_err());
        assert_eq!(check_code(&bare, &lax, &redirect_only, 100), Ok(()));
    }
}
