//! The issuer's storage (`portcullis::issuer::store`): every case runs on SQLite
//! (a temp file) and on PostgreSQL (a fresh schema on
//! `$PORTCULLIS_TEST_POSTGRES_URL`, dropped afterwards; skipped when unset).
//! Each case is a plain async fn over a [`Ctx`]; `cases!` makes one test per
//! backend of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::Barrier;

use portcullis::issuer::store::{
    self, ApiResource, Attempt, AttemptRule, AuditEntry, AuthCode, Client, CodeState, LoginSession,
    LoginTransaction, Membership, NewEvent, Organization, PresentedToken, RefreshFamily,
    RevocationRecord, Role, SigningKeyRecord, Store, StoreError, TokenFacts, User, Webhook,
};

// === cases, by area ===

#[path = "issuer_store/catalog.rs"]
mod catalog;
#[path = "issuer_store/keys.rs"]
mod keys;
#[path = "issuer_store/login.rs"]
mod login;
#[path = "issuer_store/outbox.rs"]
mod outbox;
#[path = "issuer_store/tenancy.rs"]
mod tenancy;
#[path = "issuer_store/tokens.rs"]
mod tokens;

use catalog::*;
use keys::*;
use login::*;
use outbox::*;
use tenancy::*;
use tokens::*;

const NOW: i64 = 1_700_000_000;
const POSTGRES_URL: &str = "PORTCULLIS_TEST_POSTGRES_URL";

// === harness ===

/// What a case gets: the store, and the URL to open more stores on the same
/// database (another replica, or the same one after a restart).
#[derive(Clone)]
struct Ctx {
    store: Arc<dyn Store>,
    url: String,
}

impl Ctx {
    async fn open_another(&self) -> Arc<dyn Store> {
        store::open(&self.url)
            .await
            .expect("open the same database again")
    }
}

/// A database that lives as long as one test.
struct TestDb {
    ctx: Ctx,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>, // (base url, schema)
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("issuer.db").display());
        let store = store::open(&url).await.expect("open sqlite");
        TestDb {
            ctx: Ctx { store, url },
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// `None` (after printing "skipped") when no PostgreSQL URL is set.
    async fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var(POSTGRES_URL) else {
            println!("skipped: {POSTGRES_URL} is not set");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&base)
            .await
            .expect("connect to postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .expect("create schema");
        admin.close().await.expect("close");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let store = store::open(&url).await.expect("open postgres");
        Some(TestDb {
            ctx: Ctx { store, url },
            _dir: None,
            postgres: Some((base, schema)),
        })
    }

    async fn finish(self) {
        self.ctx.store.close().await;
        if let Some((base, schema)) = self.postgres {
            let mut admin = PgConnection::connect(&base)
                .await
                .expect("connect to postgres");
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .expect("drop schema");
            admin.close().await.expect("close");
        }
    }
}

/// Runs `case` on `db`, cleans up even when the case panics, then re-raises.
async fn run<F, Fut>(db: Option<TestDb>, case: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = db else { return };
    let outcome = tokio::spawn(case(db.ctx.clone())).await;
    db.finish().await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(Some(super::TestDb::sqlite().await), super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::TestDb::postgres().await, super::$case).await;
                }
            )*
        }
    };
}

cases!(
    api_resources,
    clients,
    organizations,
    users,
    memberships,
    roles,
    signing_keys,
    rotation_lease_has_one_holder_until_it_lapses,
    codes_are_single_use,
    concurrent_code_redemption_has_one_winner,
    refresh_rotation_recognises_every_replayed_token,
    concurrent_rotation_has_one_winner,
    rotation_refuses_stale_revoked_and_expired_families,
    rotation_keeps_the_sealed_successor_with_its_generation,
    revocation_by_family_user_and_client,
    deleting_users_and_clients_cascades,
    revocation_facts_match_their_tokens,
    revocation_facts_are_read_in_commit_order,
    revocations_and_purging,
    webhooks,
    outbox_claims_retries_and_delivery,
    failed_events_are_listed_redelivered_once_and_purged,
    secret_rotation_and_delivery_status,
    events_commit_or_roll_back_with_their_change,
    audit_log_lists_newest_first,
    conflicts_and_missing_references,
    everything_survives_a_restart,
    login_transactions_are_replaced_expire_and_finish_once,
    login_sessions_end_alone_per_user_or_at_expiry,
    attempts_are_delayed_growing_and_forgiven,
    attempts_at_once_across_replicas_count_once_each,
    purging_ends_finished_login_state,
);

// === fixtures ===

fn scopes(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(api, s)| (api.to_string(), s.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        name: format!("{id} app"),
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        public: false,
        require_pkce: true,
        grant_types: strings(&["authorization_code", "refresh_token"]),
        redirect_uris: strings(&["http://127.0.0.1:3000/callback"]),
        scopes: scopes(&[("https://api.test", &["read:data", "write:data"])]),
        id_token_signed_response_alg: Some("ES256".into()),
        introspection: vec!["https://api.example.test".into()],
        created_at: NOW,
    }
}

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: Some(email.into()),
        name: Some("Ada Lovelace".into()),
        picture: None,
        email_verified: true,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$cHc".into()),
        created_at: NOW,
        updated_at: NOW,
        anonymous: false,
        anonymized_at: None,
    }
}

fn org(id: &str) -> Organization {
    Organization {
        id: id.into(),
        name: format!("{id} inc"),
        created_at: NOW,
    }
}

fn member(org_id: &str, user_id: &str) -> Membership {
    Membership {
        org_id: org_id.into(),
        user_id: user_id.into(),
        roles: strings(&["admin"]),
        created_at: NOW,
    }
}

/// A client `cli_a` and a user `usr_a` for codes and families to refer to.
async fn client_and_user(store: &dyn Store) {
    store.create_client(&client("cli_a")).await.unwrap();
    store
        .create_user(&user("usr_a", "ada@example.test"))
        .await
        .unwrap();
}

fn code(hash: &str) -> AuthCode {
    AuthCode {
        code_hash: hash.into(),
        client_id: "cli_a".into(),
        user_id: "usr_a".into(),
        org_id: Some("org_a".into()),
        redirect_uri: "http://127.0.0.1:3000/callback".into(),
        scope: "openid read:data".into(),
        resource: Some("https://api.test".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: NOW - 5,
        expires_at: NOW + 60,
    }
}

fn family(id: &str, hash: &str) -> RefreshFamily {
    RefreshFamily {
        id: id.into(),
        client_id: "cli_a".into(),
        user_id: "usr_a".into(),
        org_id: None,
        scope: "openid offline_access".into(),
        resource: Some("https://api.test".into()),
        auth_time: NOW - 5,
        generation: 0,
        current_hash: hash.into(),
        previous_hash: None,
        rotated_at: None,
        created_at: NOW,
        absolute_expires_at: NOW + 30 * 86_400,
        idle_expires_at: Some(NOW + 7 * 86_400),
        revoked_at: None,
    }
}

fn key(kid: &str, activate_at: i64, expire_at: Option<i64>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_key: vec![0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0xff],
        public_jwk: format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"x","y":"y"}}"#),
        created_at: activate_at - 100,
        publish_at: activate_at - 50,
        activate_at,
        retire_at: None,
        expire_at,
    }
}

/// A revocation fact of `kind` for `value`, covering tokens issued up to
/// `issued_before` and expired by `expires_at`.
fn fact(kind: &str, value: &str, issued_before: i64, expires_at: i64) -> RevocationRecord {
    RevocationRecord {
        id: 0,
        kind: kind.into(),
        value: value.into(),
        issued_before,
        expires_at,
        created_at: NOW,
    }
}

/// The revocation facts of a token: `jti`, of user `usr_a` and client
/// `cli_a`, in `family`, issued at `iat`.
fn token_facts<'a>(jti: &'a str, family: Option<&'a str>, iat: i64) -> TokenFacts<'a> {
    TokenFacts {
        jti,
        family_id: family,
        sub: "usr_a",
        client_id: Some("cli_a"),
        iat,
    }
}

/// Whether a stored revocation matches the token with `jti`, issued now.
async fn jti_revoked(s: &dyn Store, jti: &str) -> bool {
    s.is_revoked(&token_facts(jti, None, NOW)).await.unwrap()
}

/// Redeems the code `hash` for `family` in a transaction of its own.
async fn redeem(s: &dyn Store, hash: &str, family: &str, now: i64) -> bool {
    let mut tx = s.begin().await.unwrap();
    let won = tx.redeem_code(hash, Some(family), now).await.unwrap();
    tx.commit().await.unwrap();
    won
}

fn event(id: &str, due_at: i64) -> NewEvent {
    NewEvent {
        id: id.into(),
        event: "user.created".into(),
        created_at: "2023-11-14T22:13:20Z".into(),
        data: r#"{"id":"usr_a"}"#.into(),
        due_at,
    }
}

fn audit(id: &str, at: i64) -> AuditEntry {
    AuditEntry {
        id: id.into(),
        at,
        actor: "cli".into(),
        action: "client.created".into(),
        target: Some("cli_a".into()),
        detail: r#"{"grant_types":["client_credentials"]}"#.into(),
    }
}
