//! The SQL both backends share, and the [`Store`] and [`StoreTx`] impls over it.
//!
//! This file is compiled twice, as `sqlite::sql` and `postgres::sql`, each time
//! for the database its parent names `Db`. The statements are the same text on
//! both: `$1`-style parameters (which SQLite accepts too), `ON CONFLICT`,
//! `RETURNING`, integer times, JSON lists in text columns. Compiling the text
//! per backend keeps every function concrete; a version generic over
//! `sqlx::Database` would need a higher-ranked bound on every item and hides
//! nothing that differs. What differs lives in `sqlite.rs` and `postgres.rs`.
//!
//! The query functions take a `&mut Conn`, so the same function serves a pooled
//! connection (one [`Store`] call) and an open transaction ([`StoreTx`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Pool, Transaction};

use super::super::memo::Memo;
use super::super::{
    ApiResource, Attempt, AttemptRule, AuditEntry, AuditFilter, AuditPosition, AuthCode, Client,
    CodeState, EventPosition, EventStatus, FamilyMatch, LoginSession, LoginTransaction, Membership,
    NewEvent, Organization, OutboxEvent, Page, RefreshFamily, RevocationNotices, RevocationRecord,
    Role, SigningKeyRecord, Store, StoreError, StoreTx, StoredEvent, TokenFacts, User, Webhook,
    WebhookStatus,
};
use super::{BEGIN, Db, REVOCATION_LOCK, REVOCATION_NOTIFY, SKIP_LOCKED};

#[path = "sql/catalog.rs"]
mod catalog;
#[path = "sql/events.rs"]
mod events;
#[path = "sql/keys.rs"]
mod keys;
#[path = "sql/login.rs"]
mod login;
#[path = "sql/revocations.rs"]
mod revocations;
#[path = "sql/tenancy.rs"]
mod tenancy;
#[path = "sql/throttle.rs"]
mod throttle;
#[path = "sql/tokens.rs"]
mod tokens;

/// A connection of this backend, pooled or inside a transaction.
type Conn = <Db as sqlx::Database>::Connection;
/// A result row of this backend.
type Row = <Db as sqlx::Database>::Row;

/// The store on one database, over a connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool<Db>,
    /// Recently read clients and API resources (see `store::memo`).
    memo: Arc<Memo>,
}

/// An open transaction of [`SqlStore`]; dropping it rolls back.
struct SqlTx {
    tx: Transaction<'static, Db>,
    memo: Arc<Memo>,
    /// Whether it wrote a client or an API resource: its commit makes the
    /// memo forget (so does the write itself, for reads racing the commit).
    catalog_written: bool,
}

// === impl SqlStore ===

impl SqlStore {
    /// A store over `pool`, whose schema is already migrated.
    pub(super) fn new(pool: Pool<Db>) -> Self {
        Self {
            pool,
            memo: Arc::new(Memo::default()),
        }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Db>, StoreError> {
        self.pool.acquire().await.map_err(StoreError::Database)
    }

    /// One rotation in a transaction of its own (see `tokens::rotate_family`).
    async fn rotate(&self, rotation: tokens::Rotation<'_>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let won = tokens::rotate_family(&mut tx, &rotation).await?;
        tx.commit().await?;
        Ok(won)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let tx = self.pool.begin_with(BEGIN).await?;
        Ok(Box::new(SqlTx {
            tx,
            memo: self.memo.clone(),
            catalog_written: false,
        }))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn get_api_resource(&self, identifier: &str) -> Result<Option<ApiResource>, StoreError> {
        catalog::get_api_resource(&mut *self.conn().await?, identifier).await
    }

    async fn get_api_resource_recent(
        &self,
        identifier: &str,
    ) -> Result<Option<ApiResource>, StoreError> {
        if let Some(resource) = self.memo.resource(identifier) {
            return Ok(Some(ApiResource::clone(&resource)));
        }
        let read_in = self.memo.generation();
        let found = self.get_api_resource(identifier).await?;
        if let Some(resource) = &found {
            self.memo.keep_resource(resource, read_in);
        }
        Ok(found)
    }

    async fn list_api_resources_page(
        &self,
        page: Page<'_>,
    ) -> Result<Vec<ApiResource>, StoreError> {
        catalog::list_api_resources(&mut *self.conn().await?, page).await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        catalog::get_client(&mut *self.conn().await?, client_id).await
    }

    async fn get_client_recent(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        if let Some(client) = self.memo.client(client_id) {
            return Ok(Some(Client::clone(&client)));
        }
        let read_in = self.memo.generation();
        let found = self.get_client(client_id).await?;
        if let Some(client) = &found {
            self.memo.keep_client(client, read_in);
        }
        Ok(found)
    }

    fn catalog_changed(&self) {
        self.memo.changed();
    }

    async fn list_clients_page(&self, page: Page<'_>) -> Result<Vec<Client>, StoreError> {
        catalog::list_clients(&mut *self.conn().await?, page).await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>, StoreError> {
        tenancy::get_organization(&mut *self.conn().await?, id).await
    }

    async fn list_organizations_page(
        &self,
        page: Page<'_>,
    ) -> Result<Vec<Organization>, StoreError> {
        tenancy::list_organizations(&mut *self.conn().await?, page).await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        tenancy::get_user(&mut *self.conn().await?, id).await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        tenancy::get_user_by_email(&mut *self.conn().await?, email).await
    }

    async fn list_users_page(
        &self,
        email: Option<&str>,
        page: Page<'_>,
    ) -> Result<Vec<User>, StoreError> {
        tenancy::list_users(&mut *self.conn().await?, email, page).await
    }

    async fn list_memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let c = &mut *self.conn().await?;
        tenancy::list_memberships(c, tenancy::By::User, user_id, Page::ALL).await
    }

    async fn list_memberships_of_org_page(
        &self,
        org_id: &str,
        page: Page<'_>,
    ) -> Result<Vec<Membership>, StoreError> {
        tenancy::list_memberships(&mut *self.conn().await?, tenancy::By::Org, org_id, page).await
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        catalog::get_role(&mut *self.conn().await?, name).await
    }

    async fn list_roles_page(&self, page: Page<'_>) -> Result<Vec<Role>, StoreError> {
        catalog::list_roles(&mut *self.conn().await?, page).await
    }

    async fn list_signing_keys(&self, now: i64) -> Result<Vec<SigningKeyRecord>, StoreError> {
        keys::list_signing_keys(&mut *self.conn().await?, now).await
    }

    async fn try_rotation_lock(
        &self,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<bool, StoreError> {
        keys::try_lease(
            &mut *self.conn().await?,
            keys::ROTATION_LEASE,
            holder,
            now,
            ttl,
        )
        .await
    }

    async fn replace_signing_key_material(
        &self,
        kid: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        keys::replace_material(&mut *self.conn().await?, kid, expected, new).await
    }

    async fn insert_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        tokens::insert_code(&mut *self.conn().await?, code).await
    }

    async fn find_code(&self, code_hash: &str) -> Result<Option<CodeState>, StoreError> {
        tokens::find_code(&mut *self.conn().await?, code_hash).await
    }

    async fn create_family(&self, family: &RefreshFamily) -> Result<(), StoreError> {
        tokens::create_family(&mut *self.conn().await?, family).await
    }

    async fn find_family_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<FamilyMatch>, StoreError> {
        tokens::find_family_by_token_hash(&mut *self.conn().await?, token_hash).await
    }

    async fn rotate_family(
        &self,
        id: &str,
        expected_generation: i64,
        new_hash: &str,
        now: i64,
        new_idle_expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.rotate(tokens::Rotation {
            id,
            expected_generation,
            new_hash,
            now,
            new_idle_expires_at,
            successor: None,
        })
        .await
    }

    async fn rotate_family_with_successor(
        &self,
        id: &str,
        expected_generation: i64,
        new_hash: &str,
        now: i64,
        new_idle_expires_at: Option<i64>,
        successor: &[u8],
    ) -> Result<bool, StoreError> {
        self.rotate(tokens::Rotation {
            id,
            expected_generation,
            new_hash,
            now,
            new_idle_expires_at,
            successor: Some(successor),
        })
        .await
    }

    async fn family_successor(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        tokens::family_successor(&mut *self.conn().await?, id).await
    }

    async fn is_revoked(&self, token: &TokenFacts<'_>) -> Result<bool, StoreError> {
        revocations::is_revoked(&mut *self.conn().await?, token).await
    }

    async fn revocations_after(
        &self,
        after: i64,
        live_at: i64,
        limit: i64,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        revocations::after(&mut *self.conn().await?, after, live_at, limit).await
    }

    async fn last_revocation_id(&self) -> Result<i64, StoreError> {
        revocations::last_id(&mut *self.conn().await?).await
    }

    async fn listen_revocations(&self) -> Result<Option<Box<dyn RevocationNotices>>, StoreError> {
        super::listen_revocations(&self.pool).await
    }

    async fn purge_expired(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let purged = purge_expired(&mut tx, before).await?;
        tx.commit().await?;
        Ok(purged)
    }

    async fn put_login_transaction(&self, txn: &LoginTransaction) -> Result<(), StoreError> {
        login::put_transaction(&mut *self.conn().await?, txn).await
    }

    async fn get_login_transaction(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<LoginTransaction>, StoreError> {
        login::get_transaction(&mut *self.conn().await?, id_hash, now).await
    }

    async fn take_login_transaction(&self, id_hash: &str, now: i64) -> Result<bool, StoreError> {
        login::take_transaction(&mut *self.conn().await?, id_hash, now).await
    }

    async fn create_login_session(&self, session: &LoginSession) -> Result<(), StoreError> {
        login::create_session(&mut *self.conn().await?, session).await
    }

    async fn get_login_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<LoginSession>, StoreError> {
        login::get_session(&mut *self.conn().await?, id_hash, now).await
    }

    async fn delete_login_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        login::delete_session(&mut *self.conn().await?, id_hash).await
    }

    async fn take_attempt(
        &self,
        key: &str,
        now: i64,
        rule: &AttemptRule,
    ) -> Result<Attempt, StoreError> {
        throttle::take_attempt(&mut *self.conn().await?, key, now, rule).await
    }

    async fn forgive_attempt(
        &self,
        key: &str,
        now: i64,
        rule: &AttemptRule,
    ) -> Result<(), StoreError> {
        throttle::forgive_attempt(&mut *self.conn().await?, key, now, rule).await
    }

    async fn clear_attempts(&self, key: &str) -> Result<(), StoreError> {
        throttle::clear_attempts(&mut *self.conn().await?, key).await
    }

    async fn purge_login_audit(&self, before: i64) -> Result<u64, StoreError> {
        events::purge_login_audit(&mut *self.conn().await?, before).await
    }

    async fn list_webhooks_page(&self, page: Page<'_>) -> Result<Vec<Webhook>, StoreError> {
        events::list_webhooks(&mut *self.conn().await?, page).await
    }

    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        events::replace_webhook_secret(&mut *self.conn().await?, id, expected, new).await
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        events::get_webhook(&mut *self.conn().await?, id).await
    }

    async fn replace_webhook_previous_secret(
        &self,
        id: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let c = &mut *self.conn().await?;
        events::replace_webhook_previous_secret(c, id, expected, new).await
    }

    async fn record_webhook_delivery(
        &self,
        receiver: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        events::record_delivery(&mut *self.conn().await?, receiver, now, error).await
    }

    async fn list_webhook_status(&self) -> Result<Vec<WebhookStatus>, StoreError> {
        events::list_webhook_status(&mut *self.conn().await?).await
    }

    async fn due_events(
        &self,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        events::claim_due(&mut *self.conn().await?, now, claim_until, limit).await
    }

    async fn mark_delivered(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        events::mark_delivered(&mut *self.conn().await?, id, now).await
    }

    async fn schedule_retry(
        &self,
        id: &str,
        attempts: i64,
        next_at: i64,
        delivered_to: &[String],
        last_error: &str,
    ) -> Result<bool, StoreError> {
        let c = &mut *self.conn().await?;
        events::schedule_retry(c, id, attempts, next_at, delivered_to, last_error).await
    }

    async fn mark_failed(
        &self,
        id: &str,
        attempts: i64,
        now: i64,
        delivered_to: &[String],
        last_error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let c = &mut *self.conn().await?;
        events::mark_failed(c, id, attempts, now, delivered_to, last_error).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        events::get_event(&mut *self.conn().await?, id).await
    }

    async fn list_events_page(
        &self,
        status: Option<EventStatus>,
        after: Option<&EventPosition>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        events::list_events(&mut *self.conn().await?, status, after, limit).await
    }

    async fn purge_failed_events(&self, before: i64) -> Result<u64, StoreError> {
        events::purge_failed(&mut *self.conn().await?, before).await
    }

    async fn list_audit_page(
        &self,
        filter: &AuditFilter<'_>,
        after: Option<AuditPosition>,
        limit: i64,
    ) -> Result<Vec<(AuditPosition, AuditEntry)>, StoreError> {
        events::list_audit(&mut *self.conn().await?, filter, after, limit).await
    }
}

// === impl SqlTx ===

impl SqlTx {
    /// A client or API resource is about to change: what the memo holds is
    /// not answered from now on, nor what is read until the commit.
    fn catalog_write(&mut self) {
        self.catalog_written = true;
        self.memo.changed();
    }
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let SqlTx {
            tx,
            memo,
            catalog_written,
        } = *self;
        let committed = tx.commit().await;
        // Whatever the outcome: a failed commit may still have committed.
        if catalog_written {
            memo.changed();
        }
        Ok(committed?)
    }

    async fn upsert_api_resource(&mut self, resource: &ApiResource) -> Result<(), StoreError> {
        self.catalog_write();
        catalog::upsert_api_resource(&mut self.tx, resource).await
    }

    async fn create_client(&mut self, client: &Client) -> Result<(), StoreError> {
        self.catalog_write();
        catalog::write_client(&mut self.tx, client, catalog::OnConflict::Fail).await
    }

    async fn upsert_client(&mut self, client: &Client) -> Result<(), StoreError> {
        self.catalog_write();
        catalog::write_client(&mut self.tx, client, catalog::OnConflict::Update).await
    }

    async fn delete_client(&mut self, client_id: &str) -> Result<bool, StoreError> {
        self.catalog_write();
        catalog::delete_client(&mut self.tx, client_id).await
    }

    async fn create_organization(&mut self, org: &Organization) -> Result<(), StoreError> {
        tenancy::create_organization(&mut self.tx, org).await
    }

    async fn create_user(&mut self, user: &User) -> Result<(), StoreError> {
        tenancy::create_user(&mut self.tx, user).await
    }

    async fn update_user(&mut self, user: &User) -> Result<bool, StoreError> {
        tenancy::update_user(&mut self.tx, user).await
    }

    async fn delete_user(&mut self, id: &str) -> Result<bool, StoreError> {
        tenancy::delete_user(&mut self.tx, id).await
    }

    async fn delete_stale_anonymous_users(
        &mut self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        tenancy::delete_stale_anonymous(&mut self.tx, before, limit).await
    }

    async fn add_membership(&mut self, membership: &Membership) -> Result<bool, StoreError> {
        tenancy::add_membership(&mut self.tx, membership).await
    }

    async fn remove_memberships_of_user(&mut self, user_id: &str) -> Result<u64, StoreError> {
        tenancy::remove_memberships_of_user(&mut self.tx, user_id).await
    }

    async fn remove_membership(&mut self, org_id: &str, user_id: &str) -> Result<bool, StoreError> {
        tenancy::remove_membership(&mut self.tx, org_id, user_id).await
    }

    async fn create_role(&mut self, role: &Role) -> Result<(), StoreError> {
        catalog::create_role(&mut self.tx, role).await
    }

    async fn insert_signing_key(&mut self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        keys::insert_signing_key(&mut self.tx, key).await
    }

    async fn update_signing_key_times(
        &mut self,
        kid: &str,
        retire_at: Option<i64>,
        expire_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        keys::update_signing_key_times(&mut self.tx, kid, retire_at, expire_at).await
    }

    async fn create_family(&mut self, family: &RefreshFamily) -> Result<(), StoreError> {
        tokens::create_family(&mut self.tx, family).await
    }

    async fn revoke_family(&mut self, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(tokens::revoke_families(&mut self.tx, tokens::Families::Id, id, now).await? > 0)
    }

    async fn revoke_families_of_user(
        &mut self,
        user_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        tokens::revoke_families(&mut self.tx, tokens::Families::OfUser, user_id, now).await
    }

    async fn revoke_families_of_client(
        &mut self,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        tokens::revoke_families(&mut self.tx, tokens::Families::OfClient, client_id, now).await
    }

    async fn redeem_code(
        &mut self,
        code_hash: &str,
        family_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        tokens::redeem_code(&mut self.tx, code_hash, family_id, now).await
    }

    async fn record_revocation(&mut self, record: &RevocationRecord) -> Result<i64, StoreError> {
        revocations::record(&mut self.tx, record).await
    }

    async fn delete_login_sessions_of_user(&mut self, user_id: &str) -> Result<u64, StoreError> {
        login::delete_sessions_of_user(&mut self.tx, user_id).await
    }

    async fn upsert_webhook(&mut self, webhook: &Webhook) -> Result<(), StoreError> {
        events::upsert_webhook(&mut self.tx, webhook).await
    }

    async fn delete_webhook(&mut self, id: &str) -> Result<bool, StoreError> {
        events::delete_webhook(&mut self.tx, id).await
    }

    async fn rotate_webhook_secret(
        &mut self,
        id: &str,
        expected: &str,
        new: &str,
        previous_until: Option<i64>,
    ) -> Result<bool, StoreError> {
        events::rotate_webhook_secret(&mut self.tx, id, expected, new, previous_until).await
    }

    async fn enqueue_event(&mut self, event: &NewEvent) -> Result<(), StoreError> {
        events::enqueue(&mut self.tx, event).await
    }

    async fn redeliver_event(
        &mut self,
        id: &str,
        now: i64,
        only_to: Option<&str>,
    ) -> Result<bool, StoreError> {
        events::redeliver(&mut self.tx, id, now, only_to).await
    }

    async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        events::insert_audit(&mut self.tx, entry).await
    }

    async fn redact_audit(&mut self, target: &str, detail: &str) -> Result<u64, StoreError> {
        events::redact_audit(&mut self.tx, target, detail).await
    }
}

/// Runs every module's purge statements (`$1` = `before`); the rows deleted.
async fn purge_expired(c: &mut Conn, before: i64) -> Result<u64, StoreError> {
    let mut purged = 0;
    let modules = [
        tokens::PURGE,
        revocations::PURGE,
        events::PURGE,
        login::PURGE,
        throttle::PURGE,
    ];
    for sql in modules.concat() {
        purged += sqlx::query(sql)
            .bind(before)
            .execute(&mut *c)
            .await?
            .rows_affected();
    }
    Ok(purged)
}

// === helpers shared by the query modules ===

/// Maps a failed write: a unique-key clash is a [`StoreError::Conflict`] and a
/// broken foreign key a [`StoreError::MissingReference`], both naming `what`.
fn write_error(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::MissingReference(what)
        }
        _ => StoreError::Database(err),
    }
}

/// A value as JSON text for column `column`.
fn to_json<T: Serialize + ?Sized>(column: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Json(column, e))
}

/// Reads JSON column `column` of `row`.
fn json_column<T: DeserializeOwned>(row: &Row, column: &'static str) -> Result<T, StoreError> {
    use sqlx::Row as _;
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Json(column, e))
}

/// Reads a nullable JSON column.
fn opt_json_column<T: DeserializeOwned>(
    row: &Row,
    column: &'static str,
) -> Result<Option<T>, StoreError> {
    use sqlx::Row as _;
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Json(column, e)))
        .transpose()
}

/// Decodes every row with `decode`.
fn decode_all<T>(
    rows: Vec<Row>,
    decode: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(decode).collect()
}
