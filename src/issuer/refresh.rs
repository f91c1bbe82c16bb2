//! `grant_type=refresh_token` (RFC 6749 §6): rotation with reuse detection.
//!
//! A refresh token is 256 random bits that the store knows only by its SHA-256
//! ([`super::token::token_hash`]). Presenting the family's current token rotates
//! it with one compare-and-swap on the generation ([`Store::rotate_family`]), so
//! of concurrent presentations exactly one wins; the others get `invalid_grant`.
//! Presenting a token a rotation already replaced is reuse: the family is revoked
//! and `token.reuse_detected` is reported, unless it is the token the last
//! rotation replaced and `refresh_reuse_grace` has not passed since, in which
//! case the same successor is returned again (for a client that lost the
//! response). The successor is kept only sealed under a key derived from the
//! replaced token, so neither the database nor anyone without that token can
//! read it.
//!
//! The access token is minted afresh each time for the family's user, resource
//! and (narrowed) scope, with the user's current roles in the family's
//! organization; API scopes the roles or the client no longer grant are dropped.
//! It says `"anonymous": true` while the user is anonymous: a promotion shows
//! in the next refresh of the same family.

use std::collections::HashSet;

mod seal;

use seal::{open_successor, seal_successor};

use super::authorize::IdSubject;
use super::clients::Form;
use super::error::OAuthError;
use super::family::{self, REFRESH_TOKEN_BYTES, revoke_reported};
use super::reserved::confine;
use super::store::{
    Client, FamilyMatch, Membership, Organization, PresentedToken, RefreshFamily, User,
};
use super::token::{
    AccessClaims, Minter, TokenResponse, random_token, requested_scopes, token_hash,
};

/// The `sub`, organization and roles an access token of the family carries,
/// and what an ID token says of the user (when `openid` is in the scope).
struct Subject {
    org_id: Option<String>,
    roles: Option<Vec<String>>,
    scope: Vec<String>,
    membership: Option<Membership>,
    profile: Option<(User, Option<Organization>)>,
    /// The user is anonymous (not promoted yet).
    anonymous: bool,
}

// === impl Minter ===

impl Minter {
    /// `grant_type=refresh_token` for an authenticated (or public) client.
    pub async fn refresh(
        &self,
        client: &Client,
        form: &Form,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.grant_types.iter().any(|g| g == "refresh_token") {
            return Err(OAuthError::UnauthorizedClient);
        }
        let presented = form
            .get("refresh_token")
            .filter(|t| !t.is_empty())
            .ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
        let found = self
            .store
            .find_family_by_token_hash(&token_hash(presented))
            .await?;
        let Some(FamilyMatch {
            family,
            presented: which,
            anonymous,
        }) = found
        else {
            return Err(OAuthError::InvalidGrant("the refresh token is invalid"));
        };
        // Another client's token is as unknown to this client as a made-up one.
        if family.client_id != client.client_id {
            return Err(OAuthError::InvalidGrant("the refresh token is invalid"));
        }
        if family.revoked_at.is_some() {
            return Err(OAuthError::InvalidGrant("the refresh token was revoked"));
        }
        if family::expired(&family, now) {
            return Err(OAuthError::InvalidGrant("the refresh token expired"));
        }
        let successor = match which {
            PresentedToken::Current => None,
            PresentedToken::Previous => self.grace_successor(&family, presented, now).await?,
            PresentedToken::Retired => None,
        };
        if which != PresentedToken::Current && successor.is_none() {
            return Err(self.reuse_detected(&family, now).await);
        }
        let scope = narrow(&family.scope, requested_scopes(form)?)?;
        // Everything that can refuse runs before the rotation, so that a refusal
        // (a `token.pre_issue` hook's too) never costs the client its refresh
        // token.
        let subject = self.subject(client, &family, scope, anonymous).await?;
        let scope = subject.scope.join(" ");
        let claims = self.access_claims(client, &family, &subject, scope, now);
        let added = self.pre_issue("refresh_token", &claims).await?;
        let access_token = self.sign_access_with(&claims, &added)?;
        let id_token = self.refreshed_id_token(client, &family, &subject, now)?;
        let refresh_token = match successor {
            Some(token) => token,
            None => self.rotate(&family, presented, now).await?,
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.section.access_token_ttl.as_secs(),
            scope: claims.scope,
            refresh_token: Some(refresh_token),
            id_token,
        })
    }

    /// OIDC Core §12.2: a new ID token for the same sign-in (its auth_time),
    /// without the nonce of the original request, when `openid` is in the
    /// scope. Signed before the rotation, like everything else that can fail.
    fn refreshed_id_token(
        &self,
        client: &Client,
        family: &RefreshFamily,
        subject: &Subject,
        now: i64,
    ) -> Result<Option<String>, OAuthError> {
        let Some((user, org)) = &subject.profile else {
            return Ok(None);
        };
        let about = IdSubject {
            user,
            org: org.as_ref(),
            membership: subject.membership.as_ref(),
            auth_time: family.auth_time,
            nonce: None,
        };
        self.id_token(client, &about, now).map(Some)
    }

    /// Rotates the family away from `presented`; the new token, or
    /// `invalid_grant` when a concurrent rotation won.
    async fn rotate(
        &self,
        family: &RefreshFamily,
        presented: &str,
        now: i64,
    ) -> Result<String, OAuthError> {
        let token = random_token(REFRESH_TOKEN_BYTES);
        let hash = token_hash(&token);
        let idle = self
            .section
            .refresh_token_idle_ttl
            .map(|ttl| (now.saturating_add(ttl.as_secs() as i64)).min(family.absolute_expires_at));
        let next = family.generation + 1;
        let won = if self.section.refresh_reuse_grace.is_zero() {
            self.store
                .rotate_family(&family.id, family.generation, &hash, now, idle)
                .await
        } else {
            let sealed = seal_successor(presented, &family.id, next, &token)?;
            self.store
                .rotate_family_with_successor(
                    &family.id,
                    family.generation,
                    &hash,
                    now,
                    idle,
                    &sealed,
                )
                .await
        }?;
        if !won {
            tracing::debug!(family = %family.id, "Concurrent refresh lost the rotation");
            return Err(OAuthError::InvalidGrant(
                "the refresh token was already used",
            ));
        }
        Ok(token)
    }

    /// The successor of the token the last rotation replaced, when the replay
    /// falls inside the reuse grace and the successor is still current.
    async fn grace_successor(
        &self,
        family: &RefreshFamily,
        presented: &str,
        now: i64,
    ) -> Result<Option<String>, OAuthError> {
        let grace = self.section.refresh_reuse_grace.as_secs() as i64;
        let inside = family
            .rotated_at
            .is_some_and(|at| grace > 0 && now.saturating_sub(at) <= grace);
        if !inside {
            return Ok(None);
        }
        let Some(sealed) = self.store.family_successor(&family.id).await? else {
            return Ok(None);
        };
        Ok(
            open_successor(presented, &family.id, family.generation, &sealed)
                .filter(|token| token_hash(token) == family.current_hash),
        )
    }

    /// Revokes the family of a replayed token and reports it; the answer.
    async fn reuse_detected(&self, family: &RefreshFamily, now: i64) -> OAuthError {
        tracing::warn!(
            family = %family.id,
            client = %family.client_id,
            sub = %family.user_id,
            "Refresh token reuse detected; family revoked"
        );
        match revoke_reported(self, family, &family.client_id, "token.reuse_detected", now).await {
            Ok(_) => OAuthError::InvalidGrant("the refresh token was already used"),
            Err(e) => e,
        }
    }

    /// The user's current organization roles and the scope they still allow.
    async fn subject(
        &self,
        client: &Client,
        family: &RefreshFamily,
        scope: Vec<String>,
        anonymous: bool,
    ) -> Result<Subject, OAuthError> {
        let membership = match &family.org_id {
            None => None,
            Some(org) => {
                let memberships = self.store.list_memberships_of_user(&family.user_id).await?;
                let membership = memberships.into_iter().find(|m| &m.org_id == org);
                let Some(membership) = membership else {
                    return Err(OAuthError::InvalidGrant(
                        "the user is no longer a member of the organization",
                    ));
                };
                Some(membership)
            }
        };
        let roles = membership.as_ref().map(|m| m.roles.clone());
        let scope = self
            .allowed_scope(client, family, roles.as_deref(), scope)
            .await?;
        let profile = match scope.iter().any(|s| s == "openid") {
            true => Some(self.profile(family).await?),
            false => None,
        };
        Ok(Subject {
            org_id: family.org_id.clone(),
            roles,
            scope,
            membership,
            profile,
            anonymous,
        })
    }

    /// The family's user and organization as they are now, for a fresh ID
    /// token.
    async fn profile(
        &self,
        family: &RefreshFamily,
    ) -> Result<(User, Option<Organization>), OAuthError> {
        let user = self
            .store
            .get_user(&family.user_id)
            .await?
            .ok_or(OAuthError::InvalidGrant("the user no longer exists"))?;
        let org = match &family.org_id {
            Some(id) => Some(self.store.get_organization(id).await?.ok_or(
                OAuthError::InvalidGrant("the organization no longer exists"),
            )?),
            None => None,
        };
        Ok((user, org))
    }

    /// Drops the API scopes of the family's resource that the client, or (in
    /// an organization) the user's roles, no longer grant. Other scopes
    /// (`openid`, `offline_access`, …) pass through.
    async fn allowed_scope(
        &self,
        client: &Client,
        family: &RefreshFamily,
        roles: Option<&[String]>,
        scope: Vec<String>,
    ) -> Result<Vec<String>, OAuthError> {
        let scope = confine(&self.section.url, family.resource.as_deref(), &scope);
        let Some(resource) = &family.resource else {
            return Ok(scope);
        };
        let api = self
            .store
            .get_api_resource(resource)
            .await?
            .map(|a| a.scopes)
            .unwrap_or_default();
        let by_client = client.scopes.get(resource).cloned().unwrap_or_default();
        let by_roles: Option<HashSet<String>> = match roles {
            None => None,
            Some(names) => {
                let mut granted = HashSet::new();
                for name in names {
                    let role = self.store.get_role(name).await?;
                    if let Some(scopes) = role.and_then(|mut r| r.grants.remove(resource)) {
                        granted.extend(scopes);
                    }
                }
                Some(granted)
            }
        };
        Ok(scope
            .into_iter()
            .filter(|s| {
                !api.contains(s)
                    || (by_client.contains(s) && by_roles.as_ref().is_none_or(|g| g.contains(s)))
            })
            .collect())
    }

    /// The claims of the family's next access token.
    fn access_claims<'a>(
        &'a self,
        client: &'a Client,
        family: &'a RefreshFamily,
        subject: &'a Subject,
        scope: String,
        now: i64,
    ) -> AccessClaims<'a> {
        let ttl = self.section.access_token_ttl.as_secs();
        // Without a resource the client itself is the audience, as for the
        // access token the authorization code gave.
        let aud = family.resource.as_deref().unwrap_or(&client.client_id);
        AccessClaims {
            iss: &self.section.url,
            sub: &family.user_id,
            aud,
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id: &client.client_id,
            scope,
            org_id: subject.org_id.as_deref(),
            roles: subject.roles.as_deref(),
            anonymous: subject.anonymous,
            family_id: Some(&family.id),
        }
    }
}

/// The requested scope, which may only narrow the family's; the family's
/// scope when none is requested.
fn narrow(granted: &str, requested: Option<Vec<String>>) -> Result<Vec<String>, OAuthError> {
    let granted: Vec<String> = granted
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match requested {
        None => Ok(granted),
        Some(req) if req.iter().all(|s| granted.contains(s)) => {
            Ok(granted.into_iter().filter(|s| req.contains(s)).collect())
        }
        Some(_) => Err(OAuthError::InvalidScope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_may_only_narrow() {
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(narrow("a b c", None).unwrap(), ["a", "b", "c"]);
        assert_eq!(narrow("a b c", some(&["c", "a"])).unwrap(), ["a", "c"]);
        assert_eq!(
            narrow("a b", some(&["a", "d"])),
            Err(OAuthError::InvalidScope)
        );
        assert!(narrow("a b", some(&[])).unwrap().is_empty());
    }
}
