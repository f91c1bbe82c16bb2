//! What the login flow remembers between requests, kept in the store so that
//! every replica sees it and a restart signs nobody out: login transactions
//! and browser sessions (failed logins are `throttle`'s). Identifiers reach the store
//! only as hashes; the plain values live in the browser's URL and cookies.

use std::sync::Arc;
use std::time::Duration;

use super::request::AuthRequest;
use crate::issuer::store::{LoginSession, LoginTransaction, Store, StoreError};
use crate::issuer::token::token_hash;

/// How long a login form stays usable.
pub const TRANSACTION_TTL: Duration = Duration::from_secs(600);
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// A user who proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: String,
    /// When the password was checked (Unix seconds).
    pub auth_time: i64,
}

/// One pending authorization: the request, its CSRF token, and the user once
/// known (while they choose an organization). Its `Debug` hides the token.
#[derive(Clone)]
pub struct LoginTxn {
    pub request: AuthRequest,
    pub csrf: String,
    pub user: Option<Authenticated>,
}

impl std::fmt::Debug for LoginTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginTxn")
            .field("request", &self.request)
            .field("csrf", &crate::issuer::store::Redacted)
            .field("user", &self.user)
            .finish()
    }
}

/// Why the login state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("login state store failed")]
    Store(#[from] StoreError),
    #[error("a stored login transaction could not be read")]
    Json(#[from] serde_json::Error),
}

/// The login flow's state, over the issuer's store.
pub struct LoginState {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState").finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

// === impl LoginState ===

impl LoginState {
    pub fn new(store: Arc<dyn Store>) -> LoginState {
        LoginState { store }
    }

    /// Stores (or replaces) the transaction `id`; it lasts [`TRANSACTION_TTL`]
    /// from `now`.
    pub async fn put_txn(&self, id: &str, txn: &LoginTxn, now: i64) -> Result<(), StateError> {
        let record = LoginTransaction {
            id_hash: token_hash(id),
            csrf: txn.csrf.clone(),
            request: serde_json::to_string(&txn.request)?,
            user: txn.user.as_ref().map(|u| (u.user_id.clone(), u.auth_time)),
            expires_at: now.saturating_add(secs(TRANSACTION_TTL)),
        };
        Ok(self.store.put_login_transaction(&record).await?)
    }

    /// The transaction `id`, if it has neither expired nor finished at `now`.
    pub async fn txn(&self, id: &str, now: i64) -> Result<Option<LoginTxn>, StateError> {
        let Some(record) = self
            .store
            .get_login_transaction(&token_hash(id), now)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(LoginTxn {
            request: serde_json::from_str(&record.request)?,
            csrf: record.csrf,
            user: record
                .user
                .map(|(user_id, auth_time)| Authenticated { user_id, auth_time }),
        }))
    }

    /// Ends the transaction `id` (it is single-use): true when this call ended
    /// it, false when it had already finished or expired.
    pub async fn finish_txn(&self, id: &str, now: i64) -> Result<bool, StateError> {
        Ok(self
            .store
            .take_login_transaction(&token_hash(id), now)
            .await?)
    }

    /// Starts the session `id` for `user`; it lasts [`SESSION_TTL`] from `now`.
    pub async fn put_session(
        &self,
        id: &str,
        user: &Authenticated,
        now: i64,
    ) -> Result<(), StateError> {
        let session = LoginSession {
            id_hash: token_hash(id),
            user_id: user.user_id.clone(),
            auth_time: user.auth_time,
            created_at: now,
            expires_at: now.saturating_add(secs(SESSION_TTL)),
        };
        Ok(self.store.create_login_session(&session).await?)
    }

    /// Who the session `id` belongs to, if it has not ended at `now`.
    pub async fn session(&self, id: &str, now: i64) -> Result<Option<Authenticated>, StateError> {
        let found = self.store.get_login_session(&token_hash(id), now).await?;
        Ok(found.map(|s| Authenticated {
            user_id: s.user_id,
            auth_time: s.auth_time,
        }))
    }

    /// Ends the session `id`.
    pub async fn end_session(&self, id: &str) -> Result<(), StateError> {
        self.store.delete_login_session(&token_hash(id)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_does_not_show_its_csrf_token() {
        let request: AuthRequest = serde_json::from_value(serde_json::json!({
            "client_id": "web", "client_name": "Web",
            "target": { "redirect_uri": "http://127.0.0.1/cb", "state": null },
            "nonce": null, "scope": null, "resource": null, "allowed": [],
            "code_challenge": null, "organization": null, "offline": false,
        }))
        .unwrap();
        let txn = LoginTxn {
            request,
            csrf: "csrf-secret-0123456789".into(),
            user: None,
        };
        let shown = format!("{txn:?}");
        assert!(!shown.contains("csrf-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
