//! The issuer's storage: one [`Store`] trait over its records, implemented on
//! SQLite ([`sqlite`], the embedded default) and PostgreSQL ([`postgres`], for
//! several replicas on one database). [`open`] picks the backend from the URL
//! and brings the schema up to date with the migrations embedded from
//! `migrations/{sqlite,postgres}`.
//!
//! The store holds records, not policy: it never reads the clock (every time is
//! an argument), never sees a plain code or refresh token (only their hashes),
//! and knows no HTTP. Where concurrency decides an outcome (redeeming a code,
//! rotating a refresh family, taking the rotation lease) one conditional write
//! decides it in the database, so exactly one caller wins, across processes too.
//!
//! Writes that must be reported (webhook events, audit entries) go through a
//! [`StoreTx`] from [`Store::begin`], so that the change, its event and its audit
//! entry commit together or not at all. The same writes exist on [`Store`] as
//! one-call shortcuts that open and commit a transaction of their own.

mod listing;
pub mod memo;
pub mod postgres;
mod records;
pub mod sqlite;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

pub use listing::{AuditFilter, AuditPosition, Page};
pub use records::{
    ApiResource, Attempt, AttemptRule, AuditEntry, AuthCode, Client, CodeState, EventPosition,
    EventStatus, FamilyMatch, LoginSession, LoginTransaction, Membership, NewEvent, Organization,
    OutboxEvent, PresentedToken, Redacted, RefreshFamily, RevocationRecord, Role, ScopeMap,
    SigningKeyRecord, StoredEvent, TokenFacts, User, Webhook, WebhookStatus, redacted,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names neither `sqlite:` nor `postgres:`/`postgresql:` (the
    /// operator's fault).
    #[error("database url must start with sqlite:, postgres: or postgresql:")]
    UnsupportedUrl,
    /// The database could not be opened or reached (ours or the operator's).
    #[error("cannot open the database")]
    Connect(#[source] sqlx::Error),
    /// The SQLite file's permissions could not be set to owner-only
    /// (the operator's).
    #[error("cannot restrict the database file to its owner")]
    File(#[source] std::io::Error),
    /// The schema could not be brought up to date (ours).
    #[error("cannot migrate the database schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A record with the same unique key exists (the caller's).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The record refers to one that does not exist (the caller's).
    #[error("{0} refers to a record that does not exist")]
    MissingReference(&'static str),
    /// A stored JSON column could not be read or written (ours).
    #[error("{0} column holds invalid json")]
    Json(&'static str, #[source] serde_json::Error),
    /// Any other database failure (ours).
    #[error("database operation failed")]
    Database(#[source] sqlx::Error),
}

/// The issuer's storage, shared by every task as `Arc<dyn Store>`.
///
/// Methods returning `bool` report whether they changed a record (`false`: no
/// such record, or the condition did not hold).
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Starts a transaction for writes that must commit together (a change with
    /// its event and audit entry). Dropping it without commit rolls it back.
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError>;

    /// Closes every connection; later calls fail. For shutdown and tests.
    async fn close(&self);

    // --- API resources ---

    /// The API resource with this identifier.
    async fn get_api_resource(&self, identifier: &str) -> Result<Option<ApiResource>, StoreError>;
    /// As [`Store::get_api_resource`], possibly answered from memory: a
    /// change made through this store is seen at once, one made elsewhere
    /// within [`memo::RECENT`]. For the token endpoint's hot path.
    async fn get_api_resource_recent(
        &self,
        identifier: &str,
    ) -> Result<Option<ApiResource>, StoreError> {
        self.get_api_resource(identifier).await
    }
    /// Every API resource, by identifier.
    async fn list_api_resources(&self) -> Result<Vec<ApiResource>, StoreError> {
        self.list_api_resources_page(Page::ALL).await
    }
    /// One page of the API resources, by identifier.
    async fn list_api_resources_page(&self, page: Page<'_>)
    -> Result<Vec<ApiResource>, StoreError>;
    /// Shortcut for [`StoreTx::upsert_api_resource`].
    async fn upsert_api_resource(&self, resource: &ApiResource) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.upsert_api_resource(resource).await?;
        tx.commit().await
    }

    // --- clients ---

    /// The client with this id.
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    /// As [`Store::get_client`], possibly answered from memory: a change
    /// made through this store is seen at once, one made elsewhere within
    /// [`memo::RECENT`] (or once [`Store::catalog_changed`] is called). For
    /// client authentication's hot path.
    async fn get_client_recent(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.get_client(client_id).await
    }
    /// Another process changed a client (its revocation fact arrived):
    /// nothing remembered by the `_recent` reads is answered any more.
    fn catalog_changed(&self) {}
    /// Every client, by client id.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.list_clients_page(Page::ALL).await
    }
    /// One page of the clients, by client id.
    async fn list_clients_page(&self, page: Page<'_>) -> Result<Vec<Client>, StoreError>;
    /// Shortcut for [`StoreTx::create_client`].
    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.create_client(client).await?;
        tx.commit().await
    }
    /// Shortcut for [`StoreTx::upsert_client`].
    async fn upsert_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.upsert_client(client).await?;
        tx.commit().await
    }
    /// Shortcut for [`StoreTx::delete_client`].
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = tx.delete_client(client_id).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    // --- organizations, users, memberships, roles ---

    /// The organization with this id.
    async fn get_organization(&self, id: &str) -> Result<Option<Organization>, StoreError>;
    /// Every organization, by id.
    async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError> {
        self.list_organizations_page(Page::ALL).await
    }
    /// One page of the organizations, by id.
    async fn list_organizations_page(
        &self,
        page: Page<'_>,
    ) -> Result<Vec<Organization>, StoreError>;
    /// Shortcut for [`StoreTx::create_organization`].
    async fn create_organization(&self, org: &Organization) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.create_organization(org).await?;
        tx.commit().await
    }
    /// The user with this id.
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// The user with this email address, in any letter case.
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// Every user, by id.
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.list_users_page(None, Page::ALL).await
    }
    /// One page of the users, by id; with `email`, only the user with this
    /// address in any letter case (at most one).
    async fn list_users_page(
        &self,
        email: Option<&str>,
        page: Page<'_>,
    ) -> Result<Vec<User>, StoreError>;
    /// Shortcut for [`StoreTx::create_user`].
    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.create_user(user).await?;
        tx.commit().await
    }
    /// Shortcut for [`StoreTx::update_user`].
    async fn update_user(&self, user: &User) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let updated = tx.update_user(user).await?;
        tx.commit().await?;
        Ok(updated)
    }
    /// Shortcut for [`StoreTx::delete_user`].
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = tx.delete_user(id).await?;
        tx.commit().await?;
        Ok(deleted)
    }
    /// The user's memberships, by organization id.
    async fn list_memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>, StoreError>;
    /// The organization's memberships, by user id.
    async fn list_memberships_of_org(&self, org_id: &str) -> Result<Vec<Membership>, StoreError> {
        self.list_memberships_of_org_page(org_id, Page::ALL).await
    }
    /// One page of the organization's memberships, by user id.
    async fn list_memberships_of_org_page(
        &self,
        org_id: &str,
        page: Page<'_>,
    ) -> Result<Vec<Membership>, StoreError>;
    /// Shortcut for [`StoreTx::add_membership`].
    async fn add_membership(&self, membership: &Membership) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let created = tx.add_membership(membership).await?;
        tx.commit().await?;
        Ok(created)
    }
    /// Shortcut for [`StoreTx::remove_membership`].
    async fn remove_membership(&self, org_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let removed = tx.remove_membership(org_id, user_id).await?;
        tx.commit().await?;
        Ok(removed)
    }
    /// The role with this name.
    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError>;
    /// Every role, by name.
    async fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        self.list_roles_page(Page::ALL).await
    }
    /// One page of the roles, by name.
    async fn list_roles_page(&self, page: Page<'_>) -> Result<Vec<Role>, StoreError>;
    /// Shortcut for [`StoreTx::create_role`].
    async fn create_role(&self, role: &Role) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.create_role(role).await?;
        tx.commit().await
    }

    // --- signing keys ---

    /// Every key not yet expired at `now` (`expire_at` absent or later), by
    /// `activate_at`, then `kid`.
    async fn list_signing_keys(&self, now: i64) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Takes or renews the key-rotation lease for `ttl` seconds. True when
    /// `holder` holds it now: it was free, expired at `now`, or already
    /// `holder`'s. One conditional write decides, so of several replicas asking
    /// at once exactly one gets it.
    async fn try_rotation_lock(&self, holder: &str, now: i64, ttl: i64)
    -> Result<bool, StoreError>;
    /// Replaces the stored private key of `kid` with `new` if it is still
    /// `expected` (sealing a plain key once a master key is set); true when
    /// it was replaced.
    async fn replace_signing_key_material(
        &self,
        kid: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;
    /// Shortcut for [`StoreTx::insert_signing_key`].
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.insert_signing_key(key).await?;
        tx.commit().await
    }
    /// Shortcut for [`StoreTx::update_signing_key_times`].
    async fn update_signing_key_times(
        &self,
        kid: &str,
        retire_at: Option<i64>,
        expire_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let updated = tx
            .update_signing_key_times(kid, retire_at, expire_at)
            .await?;
        tx.commit().await?;
        Ok(updated)
    }

    // --- authorization codes ---

    /// Stores a new code. A hash collision is a [`StoreError::Conflict`].
    async fn insert_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    /// The code with this hash and whether it was redeemed; `None` for an
    /// unknown hash. Redeeming is [`StoreTx::redeem_code`].
    async fn find_code(&self, code_hash: &str) -> Result<Option<CodeState>, StoreError>;

    // --- refresh-token families ---

    /// Stores a new family (normally at generation 0).
    async fn create_family(&self, family: &RefreshFamily) -> Result<(), StoreError>;
    /// The family holding a token with this hash: its current one, the one the
    /// last rotation replaced, or any older one, revoked or not.
    async fn find_family_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<FamilyMatch>, StoreError>;
    /// Rotates the family to `new_hash` if it is still at `expected_generation`,
    /// not revoked and not expired at `now`; the idle expiry becomes
    /// `new_idle_expires_at`. One conditional update decides, so of concurrent
    /// rotations from the same generation exactly one returns true.
    async fn rotate_family(
        &self,
        id: &str,
        expected_generation: i64,
        new_hash: &str,
        now: i64,
        new_idle_expires_at: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// As [`Store::rotate_family`], and keeps `successor` (the new token, sealed
    /// by the caller under a key only the replaced token yields) in the same
    /// write, for a replay of the replaced token inside the reuse grace. A
    /// rotation without a successor clears it.
    async fn rotate_family_with_successor(
        &self,
        id: &str,
        expected_generation: i64,
        new_hash: &str,
        now: i64,
        new_idle_expires_at: Option<i64>,
        successor: &[u8],
    ) -> Result<bool, StoreError>;
    /// The sealed successor the family's last rotation kept, if any.
    async fn family_successor(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Shortcut for [`StoreTx::revoke_family`].
    async fn revoke_family(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = tx.revoke_family(id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }
    /// Shortcut for [`StoreTx::revoke_families_of_user`].
    async fn revoke_families_of_user(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = tx.revoke_families_of_user(user_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }
    /// Shortcut for [`StoreTx::revoke_families_of_client`].
    async fn revoke_families_of_client(
        &self,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = tx.revoke_families_of_client(client_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    // --- revocations ---

    /// Whether a stored revocation matches the access token: its `jti`, its
    /// family, or its user or client with a cutoff at or after its `iat`.
    async fn is_revoked(&self, token: &TokenFacts<'_>) -> Result<bool, StoreError>;
    /// Shortcut for [`StoreTx::record_revocation`].
    async fn record_revocation(&self, record: &RevocationRecord) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let id = tx.record_revocation(record).await?;
        tx.commit().await?;
        Ok(id)
    }
    /// Up to `limit` revocations with an id above `after` that have not
    /// expired at `live_at`, by id.
    async fn revocations_after(
        &self,
        after: i64,
        live_at: i64,
        limit: i64,
    ) -> Result<Vec<RevocationRecord>, StoreError>;
    /// The highest revocation id recorded so far (0 for none).
    async fn last_revocation_id(&self) -> Result<i64, StoreError>;
    /// Notices of revocations recorded by any process, as they commit
    /// (PostgreSQL's `LISTEN`); `None` on a backend without them (SQLite,
    /// where the readers poll).
    async fn listen_revocations(&self) -> Result<Option<Box<dyn RevocationNotices>>, StoreError>;
    // --- the login flow: sign-in transactions, sessions, failed logins ---

    /// Stores (or replaces) a sign-in transaction.
    async fn put_login_transaction(&self, txn: &LoginTransaction) -> Result<(), StoreError>;
    /// The sign-in transaction with this id hash, if still usable at `now`.
    async fn get_login_transaction(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<LoginTransaction>, StoreError>;
    /// Ends a sign-in transaction (they are single-use). True when this call
    /// ended it: of two finishing the same transaction at once, one is told
    /// `true`.
    async fn take_login_transaction(&self, id_hash: &str, now: i64) -> Result<bool, StoreError>;
    /// Starts a browser session.
    async fn create_login_session(&self, session: &LoginSession) -> Result<(), StoreError>;
    /// The session with this id hash, if it has not ended at `now`.
    async fn get_login_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<LoginSession>, StoreError>;
    /// Ends one session.
    async fn delete_login_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Shortcut for [`StoreTx::delete_login_sessions_of_user`].
    async fn delete_login_sessions_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let ended = tx.delete_login_sessions_of_user(user_id).await?;
        tx.commit().await?;
        Ok(ended)
    }

    // --- throttled authentication attempts ---

    /// Takes an attempt under `key` at `now`: refused and not counted while
    /// the key is delayed ([`Attempt::Delayed`]); otherwise counted, and the
    /// next attempt delayed as `rule` says for the new count. One statement,
    /// so attempts at once through several replicas are each counted once and
    /// no two of them pass a delay the other set.
    async fn take_attempt(
        &self,
        key: &str,
        now: i64,
        rule: &AttemptRule,
    ) -> Result<Attempt, StoreError>;
    /// Forgives one counted attempt under `key` (it succeeded, or was never
    /// checked); when the count drops below `rule.free` the delay it set ends
    /// at `now`.
    async fn forgive_attempt(
        &self,
        key: &str,
        now: i64,
        rule: &AttemptRule,
    ) -> Result<(), StoreError>;
    /// Forgets every attempt under `key` (a correct credential).
    async fn clear_attempts(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes failed-login audit entries (`login.failed`,
    /// `login.throttled`) from before `before`; the number deleted.
    async fn purge_login_audit(&self, before: i64) -> Result<u64, StoreError>;

    /// Deletes what has no use after `before`: revocation facts and codes
    /// that expired, families past their absolute expiry, delivered events, and
    /// sign-in transactions, sessions and throttled keys that ended. Pass
    /// `now` minus a retention margin to keep codes replay-detectable for a while.
    /// Returns the number of rows deleted.
    async fn purge_expired(&self, before: i64) -> Result<u64, StoreError>;

    // --- webhooks, the event outbox, the audit log ---

    /// Every webhook, by id.
    async fn list_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.list_webhooks_page(Page::ALL).await
    }
    /// One page of the webhooks, by id.
    async fn list_webhooks_page(&self, page: Page<'_>) -> Result<Vec<Webhook>, StoreError>;
    /// The webhook with this id.
    async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError>;
    /// As [`Store::replace_webhook_secret`], for the previous secret a
    /// rotation keeps.
    async fn replace_webhook_previous_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
    /// Records one delivery to `receiver` (a webhook's id) at `now`: a
    /// success, or a failure and why (`error`, with no URL or secret).
    async fn record_webhook_delivery(
        &self,
        receiver: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The delivery status of every receiver that was ever delivered to.
    async fn list_webhook_status(&self) -> Result<Vec<WebhookStatus>, StoreError>;
    /// Replaces the stored secret of webhook `id` with `new` if it is still
    /// `expected` (sealing a plain secret at start; a webhook deleted or
    /// changed meanwhile is left alone). True when it was replaced.
    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
    /// Shortcut for [`StoreTx::upsert_webhook`].
    async fn upsert_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.upsert_webhook(webhook).await?;
        tx.commit().await
    }
    /// Shortcut for [`StoreTx::delete_webhook`].
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = tx.delete_webhook(id).await?;
        tx.commit().await?;
        Ok(deleted)
    }
    /// Shortcut for [`StoreTx::enqueue_event`]; prefer the transaction, so the
    /// event commits with the change it reports.
    async fn enqueue_event(&self, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.enqueue_event(event).await?;
        tx.commit().await
    }
    /// Claims up to `limit` undelivered events due at `now`, oldest first: they
    /// are not due again before `claim_until`, so replicas polling at once never
    /// claim the same event. A claim that is neither delivered nor rescheduled
    /// lapses at `claim_until` (a crashed deliverer).
    async fn due_events(
        &self,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Marks the event delivered; it is never due again.
    async fn mark_delivered(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Records `attempts` failed attempts and makes the event due at `next_at`;
    /// `delivered_to` replaces the list of webhooks it already reached, and
    /// `last_error` says why the round failed.
    async fn schedule_retry(
        &self,
        id: &str,
        attempts: i64,
        next_at: i64,
        delivered_to: &[String],
        last_error: &str,
    ) -> Result<bool, StoreError>;
    /// Makes a pending event failed at `now` (a dead letter, never due again
    /// until redelivered), with `attempts` and the webhooks it reached;
    /// `last_error` `None` keeps the error recorded before.
    async fn mark_failed(
        &self,
        id: &str,
        attempts: i64,
        now: i64,
        delivered_to: &[String],
        last_error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// The event with this id, in any state.
    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;
    /// Up to `limit` events, newest first (by `enqueued_at`, then id), only
    /// those of `status` when given, from the one after `after`.
    async fn list_events_page(
        &self,
        status: Option<EventStatus>,
        after: Option<&EventPosition>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Deletes the failed events that failed before `before`; how many.
    async fn purge_failed_events(&self, before: i64) -> Result<u64, StoreError>;
    /// Shortcut for [`StoreTx::insert_audit`].
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.insert_audit(entry).await?;
        tx.commit().await
    }
    /// The newest `limit` audit entries, newest first.
    async fn list_audit(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let entries = self
            .list_audit_page(&AuditFilter::default(), None, limit)
            .await?;
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }
    /// Up to `limit` audit entries that `filter` keeps, newest first, from
    /// the one after `after` (from the newest when `None`), each with its
    /// position.
    async fn list_audit_page(
        &self,
        filter: &AuditFilter<'_>,
        after: Option<AuditPosition>,
        limit: i64,
    ) -> Result<Vec<(AuditPosition, AuditEntry)>, StoreError>;
}

/// A transaction over the writes that are reported. Each method has the
/// contract of the [`Store`] shortcut of the same name; nothing is visible to
/// others before [`StoreTx::commit`].
#[async_trait]
pub trait StoreTx: Send {
    /// Makes every write of the transaction durable and visible at once.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Inserts or replaces the API resource with this identifier.
    async fn upsert_api_resource(&mut self, resource: &ApiResource) -> Result<(), StoreError>;
    /// Inserts a client; an existing `client_id` is a [`StoreError::Conflict`].
    async fn create_client(&mut self, client: &Client) -> Result<(), StoreError>;
    /// Inserts the client or replaces every field but `created_at`.
    async fn upsert_client(&mut self, client: &Client) -> Result<(), StoreError>;
    /// Deletes the client with its codes and refresh families.
    async fn delete_client(&mut self, client_id: &str) -> Result<bool, StoreError>;
    /// Inserts an organization; an existing id is a [`StoreError::Conflict`].
    async fn create_organization(&mut self, org: &Organization) -> Result<(), StoreError>;
    /// Inserts a user; an existing id or email (in any case) is a
    /// [`StoreError::Conflict`].
    async fn create_user(&mut self, user: &User) -> Result<(), StoreError>;
    /// Replaces every field of the user with this id but `created_at`.
    async fn update_user(&mut self, user: &User) -> Result<bool, StoreError>;
    /// Deletes the user with their memberships, codes and refresh families.
    async fn delete_user(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Deletes up to `limit` anonymous users created before `before` who
    /// hold no refresh family any more (the purge removed their expired
    /// ones), with their memberships and codes; their ids. A user promoted
    /// meanwhile is left alone.
    async fn delete_stale_anonymous_users(
        &mut self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Adds the membership, or replaces the roles of an existing one (keeping
    /// its `created_at`). True when it was new.
    async fn add_membership(&mut self, membership: &Membership) -> Result<bool, StoreError>;
    /// Removes the user from the organization.
    async fn remove_membership(&mut self, org_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Removes the user from every organization; returns how many.
    async fn remove_memberships_of_user(&mut self, user_id: &str) -> Result<u64, StoreError>;
    /// Inserts a role; an existing name is a [`StoreError::Conflict`].
    async fn create_role(&mut self, role: &Role) -> Result<(), StoreError>;
    /// Inserts a signing key; an existing `kid` is a [`StoreError::Conflict`].
    async fn insert_signing_key(&mut self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Sets when the key stops signing and when it leaves the JWKS.
    async fn update_signing_key_times(
        &mut self,
        kid: &str,
        retire_at: Option<i64>,
        expire_at: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Stores a new family (see [`Store::create_family`]).
    async fn create_family(&mut self, family: &RefreshFamily) -> Result<(), StoreError>;
    /// Revokes the family at `now`; false if unknown or already revoked.
    async fn revoke_family(&mut self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Revokes every live family of the user; returns how many.
    async fn revoke_families_of_user(&mut self, user_id: &str, now: i64)
    -> Result<u64, StoreError>;
    /// Revokes every live family of the client; returns how many.
    async fn revoke_families_of_client(
        &mut self,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// Marks the code used at `now` and records `family_id` as the family its
    /// redemption starts (`None`: a failed attempt that spends the code), if
    /// it was not used yet: one conditional write, so of concurrent
    /// redemptions exactly one gets `true` — and the others, once this
    /// transaction commits, find the family to revoke. Create the refresh
    /// family in the same transaction.
    async fn redeem_code(
        &mut self,
        code_hash: &str,
        family_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Adds a revocation fact and returns its id. Ids grow in commit order:
    /// on PostgreSQL a transaction-scoped lock serialises the writers, and
    /// the commit notifies every listener ([`Store::listen_revocations`]).
    async fn record_revocation(&mut self, record: &RevocationRecord) -> Result<i64, StoreError>;
    /// Ends every browser session of the user (a changed password, an
    /// administrator's sign-out), and the sign-ins pending with the user
    /// already known; returns how many sessions ended.
    async fn delete_login_sessions_of_user(&mut self, user_id: &str) -> Result<u64, StoreError>;
    /// Inserts or replaces the webhook with this id.
    async fn upsert_webhook(&mut self, webhook: &Webhook) -> Result<(), StoreError>;
    /// Deletes the webhook.
    async fn delete_webhook(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the secret of webhook `id` with `new` if it is still
    /// `expected`; the replaced one becomes the previous secret until
    /// `previous_until` (with `None`, no previous secret is kept). False when
    /// the webhook is gone or its secret changed meanwhile.
    async fn rotate_webhook_secret(
        &mut self,
        id: &str,
        expected: &str,
        new: &str,
        previous_until: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Puts an event in the outbox, due at `event.due_at`.
    async fn enqueue_event(&mut self, event: &NewEvent) -> Result<(), StoreError>;
    /// Makes a failed event due at `now` again, its attempts counted anew,
    /// for the webhooks it has not reached, or for `only_to` alone. False
    /// when no failed event has this id (unknown, pending or delivered).
    async fn redeliver_event(
        &mut self,
        id: &str,
        now: i64,
        only_to: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Appends an entry to the audit log.
    async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Replaces the detail of every audit entry whose target is `target`
    /// with `detail` (erasing what the details said about it); returns how
    /// many changed. Times, actors and actions stay.
    async fn redact_audit(&mut self, target: &str, detail: &str) -> Result<u64, StoreError>;
}

/// A stream of notices that revocations were recorded.
#[async_trait]
pub trait RevocationNotices: Send {
    /// Waits for the next notice: `Ok(true)` when new revocations were
    /// recorded; `Ok(false)` when the connection was lost and is listening
    /// again (notices sent meanwhile are lost: read what was missed). An
    /// error: it could not listen again; a later call tries again.
    async fn next(&mut self) -> Result<bool, StoreError>;
}

// === impl StoreError ===

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(err)
    }
}

/// Opens the database at `url` (`sqlite://path`, `sqlite::memory:`,
/// `postgres://…`) and applies pending migrations. A SQLite file is created
/// if missing.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// A fresh random identifier with a type prefix: `new_id("org")` gives
/// `org_` and 32 lowercase hex digits (122 random bits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let (a, b) = (new_id("usr"), new_id("usr"));
        assert!(a.starts_with("usr_") && a.len() == 36, "{a}");
        assert_ne!(a, b);
    }

    /// The store keys a user without an email as `NONE:<id>` (see
    /// `sql/tenancy.rs`), relying on this: no character lowercases to an
    /// ASCII capital, so no address typed at sign-in ever has that key.
    #[test]
    fn lowercasing_never_yields_an_ascii_capital() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert!(
                !c.to_lowercase().any(|l| l.is_ascii_uppercase()),
                "{c:?} lowercases to a capital"
            );
        }
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused() {
        let err = open("mysql://localhost/db").await.err();
        assert!(matches!(err, Some(StoreError::UnsupportedUrl)), "{err:?}");
    }
}
