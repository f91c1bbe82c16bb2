//! `grant_type=authorization_code` (RFC 6749 §4.1.3) for an authenticated
//! client: the code, bound to its client and redirect URI, checked against its
//! PKCE challenge and expiry, is turned into an access token, an ID token
//! (when `openid` was granted) and, for clients with the `refresh_token`
//! grant, the first refresh token of a new family. The `token.pre_issue`
//! hooks are asked before anything is written.
//!
//! Each redemption starts a token family (the `family_id` of its access
//! tokens, and of its refresh family when there is one). Marking the code
//! used, recording its family on it and creating the refresh family commit in
//! one transaction, so a second presentation — after the first, or racing it
//! — always finds what to revoke: it is refused, and the family's refresh
//! tokens and access tokens stop working (a revocation fact, see
//! `issuer::revocation`).
//!
//! Who can do what with a code: another client than the one it was issued
//! to gets `invalid_grant` and changes nothing (it cannot spend the code,
//! nor revoke what it gave). The client it was issued to spends an unused
//! code with a failed attempt (a wrong redirect URI or PKCE verifier: one
//! guess per code). A replay revokes only when it would have redeemed the
//! code — the client, its redirect URI and the PKCE verifier — so that whoever
//! merely saw a code (a log, a referrer) cannot end the session it started.

use serde::Serialize;

use super::{Flow, pkce};
use crate::config::SigningAlg;
use crate::issuer::clients::Form;
use crate::issuer::error::OAuthError;
use crate::issuer::family::reported;
use crate::issuer::revocation;
use crate::issuer::store::{
    AuthCode, Client, CodeState, Membership, Organization, RefreshFamily, StoreError, User, new_id,
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
        let state = self
            .store
            .find_code(&code_hash)
            .await?
            .ok_or(OAuthError::InvalidGrant("the code is invalid"))?;
        let (record, used) = match state {
            CodeState::Unused(code) => (code, None),
            CodeState::Used { code, family_id } => (code, Some(family_id)),
        };
        // Another client's code is as unknown to this one as a made-up code.
        if record.client_id != client.client_id {
            tracing::debug!(client = %client.client_id, reason = "foreign_code", "Code exchange refused");
            return Err(OAuthError::InvalidGrant(
                "the code was issued to another client",
            ));
        }
        let bound = check_code(&record, client, form);
        match (used, bound) {
            (Some(family_id), Ok(())) => {
                Err(self.replayed(&record, family_id.as_deref(), now).await)
            }
            (Some(_), Err(e)) => Err(e),
            (None, Err(e)) => {
                self.spend(&record, now).await?;
                Err(e)
            }
            (None, Ok(())) if now >= record.expires_at => {
                Err(OAuthError::InvalidGrant("the code has expired"))
            }
            (None, Ok(())) => self.mint(client, &record, now).await,
        }
    }

    /// Spends the code after a failed attempt by its own client (no family:
    /// nothing was issued).
    async fn spend(&self, code: &AuthCode, now: i64) -> Result<(), OAuthError> {
        let mut tx = self.store.begin().await?;
        tx.redeem_code(&code.code_hash, None, now).await?;
        Ok(tx.commit().await?)
    }

    async fn mint(
        &self,
        client: &Client,
        code: &AuthCode,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let user = self
            .store
            .get_user(&code.user_id)
            .await?
            .ok_or(OAuthError::InvalidGrant("the user no longer exists"))?;
        // A code issued just before the user was anonymized gives nothing.
        if user.anonymized_at.is_some() {
            return Err(OAuthError::InvalidGrant("the user no longer exists"));
        }
        let (org, membership) = self.tenancy(&user.id, code.org_id.as_deref()).await?;
        let ttl = self.section.access_token_ttl.as_secs();
        let roles = membership.as_ref().map(|m| m.roles.clone());
        let family_id = new_id("rfam");
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
            family_id: Some(&family_id),
        };
        // Everything that can fail or refuse (a hook) is done before the
        // code is used up: a refused token leaves the code and no family.
        let added = self.minter.pre_issue("authorization_code", &claims).await?;
        let access_token = self.minter.sign_access_with(&claims, &added)?;
        let openid = code.scope.split(' ').any(|s| s == "openid");
        let id_token = match openid {
            true => {
                Some(self.id_token(client, code, &user, org.as_ref(), membership.as_ref(), now)?)
            }
            false => None,
        };
        let refresh = client
            .grant_types
            .iter()
            .any(|g| g == "refresh_token")
            .then(|| self.new_family(code, &family_id, now));
        self.redeem(code, &family_id, refresh.as_ref().map(|(_, f)| f), now)
            .await?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope: code.scope.clone(),
            refresh_token: refresh.map(|(token, _)| token),
            id_token,
        })
    }

    /// Marks the code used with `family_id` as its family, and creates the
    /// refresh family, in one transaction. A concurrent redemption that got
    /// there first makes this one a replay.
    async fn redeem(
        &self,
        code: &AuthCode,
        family_id: &str,
        family: Option<&RefreshFamily>,
        now: i64,
    ) -> Result<(), OAuthError> {
        let mut tx = self.store.begin().await?;
        if !tx
            .redeem_code(&code.code_hash, Some(family_id), now)
            .await?
        {
            drop(tx);
            // The winner has committed (the conditional write waited for
            // it): its family is on the code now.
            let first = match self.store.find_code(&code.code_hash).await? {
                Some(CodeState::Used { family_id, .. }) => family_id,
                _ => None,
            };
            return Err(self.replayed(code, first.as_deref(), now).await);
        }
        if let Some(family) = family {
            tx.create_family(family).await?;
        }
        Ok(tx.commit().await?)
    }

    /// A code presented again by its client: everything its redemption
    /// issued is revoked (its refresh family, and every access token of the
    /// family through the revocation fact), reported as
    /// `token.reuse_detected`; the answer is `invalid_grant`.
    async fn replayed(&self, code: &AuthCode, family_id: Option<&str>, now: i64) -> OAuthError {
        tracing::warn!(client = %code.client_id, sub = %code.user_id, "Authorization code replayed; its tokens revoked");
        let Some(family_id) = family_id else {
            return OAuthError::InvalidGrant("the code is invalid");
        };
        match self.revoke_redeemed(code, family_id, now).await {
            Ok(()) => OAuthError::InvalidGrant("the code is invalid"),
            Err(e) => e.into(),
        }
    }

    async fn revoke_redeemed(
        &self,
        code: &AuthCode,
        family_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let ttl = self.section.access_token_ttl.as_secs() as i64;
        let fact = revocation::family(family_id, now, ttl);
        let data = serde_json::json!({
            "token_type": "authorization_code",
            "family_id": family_id,
            "client_id": code.client_id,
            "sub": code.user_id,
            "org_id": code.org_id,
        });
        let (event, audit) = reported(
            "token.reuse_detected",
            &code.client_id,
            family_id,
            data,
            now,
        );
        let mut tx = self.store.begin().await?;
        tx.revoke_family(family_id, now).await?;
        tx.record_revocation(&fact).await?;
        tx.enqueue_event(&event).await?;
        tx.insert_audit(&audit).await?;
        tx.commit().await?;
        self.minter.revocations.applied(&[fact]);
        Ok(())
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
        let org = self.store.get_organization(org_id).await?;
        let membership = self
            .store
            .list_memberships_of_user(user_id)
            .await?
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

    /// The refresh family `family_id` for the code, and its first token
    /// (stored once the code is redeemed, in the same transaction).
    fn new_family(&self, code: &AuthCode, family_id: &str, now: i64) -> (String, RefreshFamily) {
        let token = random_token(32);
        let family = RefreshFamily {
            id: family_id.to_owned(),
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
        (token, family)
    }
}

/// The code's bindings, which a presentation must meet to redeem the code or
/// to count as its replay: client, redirect URI and PKCE (expiry is checked
/// for a redemption only: a replay after it still revokes).
fn check_code(code: &AuthCode, client: &Client, form: &Form) -> Result<(), OAuthError> {
    if code.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant(
            "the code was issued to another client",
        ));
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
    fn codes_are_bound_to_client_redirect_and_challenge() {
        let challenge = pkce::s256(VERIFIER);
        let c = code(Some(&challenge));
        let good = form(&[("redirect_uri", "http://x/cb"), ("code_verifier", VERIFIER)]);
        let public = client(true, true);
        assert_eq!(check_code(&c, &public, &good), Ok(()));
        let mut other = client(true, true);
        other.client_id = "other".into();
        assert!(check_code(&c, &other, &good).is_err());
        let moved = form(&[
            ("redirect_uri", "http://x/cb2"),
            ("code_verifier", VERIFIER),
        ]);
        assert!(check_code(&c, &public, &moved).is_err());
        let no_redirect = form(&[("code_verifier", VERIFIER)]);
        assert!(check_code(&c, &public, &no_redirect).is_err());
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
        assert!(check_code(&c, &public, &redirect_only).is_err());
        assert!(check_code(&c, &public, &plain).is_err());
        let bare = code(None);
        assert!(check_code(&bare, &public, &redirect_only).is_err());
        assert!(check_code(&bare, &lax, &with_verifier).is_err());
        assert_eq!(check_code(&bare, &lax, &redirect_only), Ok(()));
    }
}
