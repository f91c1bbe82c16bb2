//! The anonymous grant (`grant_type=urn:portcullis:params:oauth:grant-type:anonymous`):
//! a public client allowed the grant (`anonymous` in its `grant_types`, with
//! `refresh_token`) gets tokens for a new user who has no email and no
//! password. The user's id is the `sub` from then on: refreshing keeps it,
//! and so does the promotion to a normal user (`manage::promote_user`). The
//! access token says `"anonymous": true` while the user is anonymous.
//!
//! The API and scope follow `client_credentials`: `resource` or `audience`
//! (else the client's only API), the requested scopes the client may obtain
//! there. The admin API is never a target: anyone can use this grant.
//!
//! Nothing authenticates the caller, so creations are slowed down per source
//! address ([`Throttle::creation`]), and users who are never promoted leave
//! with their refresh tokens (`purge`). The user, the first refresh token's
//! family and the `user.anonymous.created` event commit together, after the
//! blocking hooks allowed both the user (`user.pre_create`, with
//! `"anonymous": true` and no email or name) and the token
//! (`token.pre_issue`).

use serde_json::json;

use super::clients::Form;
use super::error::OAuthError;
use super::family::REFRESH_TOKEN_BYTES;
use super::hooks::PreCreate;
use super::manage::event;
use super::reserved::admin_audience;
use super::store::{Client, RefreshFamily, User, new_id};
use super::throttle::{Source, Throttle, Verdict};
use super::token::{AccessClaims, Minter, TokenResponse, random_token, token_hash};
use crate::config::GrantType;
use crate::config::value::ANONYMOUS_GRANT;

// === impl Minter ===

impl Minter {
    /// The anonymous grant for `client` (identified by its id alone), asked
    /// from `source` at `now`.
    pub async fn anonymous(
        &self,
        client: &Client,
        form: &Form,
        source: &Source,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let allowed = |g: GrantType| client.grant_types.iter().any(|n| n == g.as_str());
        // The configuration and the admin commands allow the grant only so;
        // a stored client that is not is refused all the same.
        if !client.public || !allowed(GrantType::Anonymous) || !allowed(GrantType::RefreshToken) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let (resource, scope) = self.resource_scope(client, form).await?;
        if resource == admin_audience(&self.section.url) {
            return Err(OAuthError::InvalidTarget);
        }
        self.admit(source, now).await?;
        let user = User {
            id: new_id("usr"),
            email: None,
            name: None,
            picture: None,
            email_verified: false,
            password_hash: None,
            created_at: now,
            updated_at: now,
            anonymous: true,
            anonymized_at: None,
        };
        let ttl = self.section.access_token_ttl.as_secs();
        let family_id = new_id("rfam");
        let claims = AccessClaims {
            iss: &self.section.url,
            sub: &user.id,
            aud: &resource,
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: random_token(16),
            client_id: &client.client_id,
            scope: scope.clone(),
            org_id: None,
            roles: None,
            anonymous: true,
            family_id: Some(&family_id),
        };
        // Asked and signed before anything is written: a refusal or a failure
        // leaves no user behind.
        let about = PreCreate {
            email: None,
            name: None,
            anonymous: true,
            user_id: None,
        };
        self.hooks.pre_create(&about).await?;
        let added = self.pre_issue(ANONYMOUS_GRANT, &claims).await?;
        let access_token = self.sign_access_with(&claims, &added)?;
        let refresh_token = random_token(REFRESH_TOKEN_BYTES);
        let family = RefreshFamily {
            id: family_id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            org_id: None,
            scope: scope.clone(),
            resource: Some(resource.clone()),
            auth_time: now,
            generation: 0,
            current_hash: token_hash(&refresh_token),
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
        let data = json!({ "id": user.id, "client_id": client.client_id });
        let mut tx = self.store.begin().await?;
        tx.create_user(&user).await?;
        tx.create_family(&family).await?;
        tx.enqueue_event(&event("user.anonymous.created", now, data))
            .await?;
        tx.commit().await?;
        tracing::debug!(sub = %user.id, client = %client.client_id, "Anonymous user created");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope,
            refresh_token: Some(refresh_token),
            id_token: None,
        })
    }

    /// Takes one creation from `source`, or `slow_down` while it must wait.
    async fn admit(&self, source: &Source, now: i64) -> Result<(), OAuthError> {
        let throttle = Throttle::new(self.store.clone());
        match throttle.creation(source, now).await? {
            Verdict::Check { delays_begin } => {
                if delays_begin {
                    tracing::warn!(
                        source = source.as_str(),
                        "Anonymous users created from one source are being slowed down"
                    );
                }
                Ok(())
            }
            Verdict::Wait { retry_after } => {
                tracing::debug!(
                    source = source.as_str(),
                    reason = "throttled",
                    "Anonymous user refused"
                );
                Err(OAuthError::SlowDown { retry_after })
            }
        }
    }
}
