//! What the login flow remembers between requests, in memory with a TTL (one
//! replica's memory: a restart signs everyone out, and several replicas need
//! sticky sessions until this moves to the store): login transactions, browser
//! sessions, and failed logins per account.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::request::AuthRequest;

/// How long a login form stays usable.
pub const TRANSACTION_TTL: Duration = Duration::from_secs(600);
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Failed logins allowed per account per [`FAILURE_WINDOW`].
pub const MAX_LOGIN_FAILURES: u32 = 5;
/// The window of the login failure limit (each failure restarts it).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// A user who proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user_id: String,
    /// When the password was checked (Unix seconds).
    pub auth_time: i64,
}

/// One pending authorization: the request, its CSRF token, and the user once
/// known (while they choose an organization).
#[derive(Debug, Clone)]
pub struct LoginTxn {
    pub request: AuthRequest,
    pub csrf: String,
    pub user: Option<Authenticated>,
}

/// The in-memory state of the login flow.
pub struct LoginState {
    transactions: Cache<String, Arc<LoginTxn>>,
    sessions: Cache<String, Authenticated>,
    failures: Cache<String, u32>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState").finish_non_exhaustive()
    }
}

impl Default for LoginState {
    fn default() -> Self {
        LoginState {
            transactions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TRANSACTION_TTL)
                .build(),
            sessions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SESSION_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }
}

// === impl LoginState ===

impl LoginState {
    /// Stores (or replaces) the transaction `id`.
    pub fn put_txn(&self, id: &str, txn: LoginTxn) {
        self.transactions.insert(id.to_owned(), Arc::new(txn));
    }

    /// The transaction `id`, if it has not expired or finished.
    pub fn txn(&self, id: &str) -> Option<Arc<LoginTxn>> {
        self.transactions.get(id)
    }

    /// Ends the transaction `id` (it is single-use).
    pub fn finish_txn(&self, id: &str) {
        self.transactions.invalidate(id);
    }

    /// Starts the session `id` for `user`.
    pub fn put_session(&self, id: &str, user: Authenticated) {
        self.sessions.insert(id.to_owned(), user);
    }

    /// Who the session `id` belongs to.
    pub fn session(&self, id: &str) -> Option<Authenticated> {
        self.sessions.get(id)
    }

    /// Ends the session `id`.
    pub fn end_session(&self, id: &str) {
        self.sessions.invalidate(id);
    }

    /// Whether the account (a lowercased email) is locked out for now.
    pub fn locked(&self, account: &str) -> bool {
        self.failures.get(account).unwrap_or(0) >= MAX_LOGIN_FAILURES
    }

    /// Counts a failed login for the account.
    pub fn failed(&self, account: &str) {
        let n = self.failures.get(account).unwrap_or(0).saturating_add(1);
        self.failures.insert(account.to_owned(), n);
    }

    /// Forgets the account's failures after a successful login.
    pub fn succeeded(&self, account: &str) {
        self.failures.invalidate(account);
    }
}
