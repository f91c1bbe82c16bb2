//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic` or `client_secret_post` (never both), secrets stored as
//! argon2id hashes, a short-lived cache of verified secrets so a busy client
//! does not pay argon2 on every request, and a per-client limit on failures.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use moka::sync::Cache;

use super::error::OAuthError;
use super::store::{Client, Store};
use crate::clock::Clock;

/// Failed authentications allowed per client per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window of the failure limit.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a verified secret is remembered (by its SHA-256, with the stored hash).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// The form parameters of a request, already parsed (each at most once).
pub type Form = std::collections::HashMap<String, String>;

/// Authenticates clients.
///
/// Failed authentications are counted in this process (checked first, for
/// free) and, for clients that exist, in the store, shared by every replica.
/// The shared count is read only before a secret has to be verified with
/// argon2 (a secret this process verified recently is answered from memory),
/// so a guesser is stopped across replicas while known clients cost no read.
pub struct ClientAuth {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verified: Cache<[u8; 32], String>,
    failures: Cache<String, u32>,
}

/// The key of a client's failures in the store's failure counters (beside
/// the login page's, which count accounts).
fn failure_key(client_id: &str) -> String {
    format!("client:{client_id}")
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").finish_non_exhaustive()
    }
}

/// argon2id with OWASP's 7 MiB / 5 passes profile: as strong as the 19 MiB /
/// 2 passes default, with a third of the memory per hash, which keeps a
/// gateway's peak memory small when several logins hash at once. Verification
/// reads the parameters from the stored PHC string, so older hashes still verify.
fn hasher() -> Argon2<'static> {
    match argon2::Params::new(7 * 1024, 5, 1, None) {
        Ok(params) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        Err(_) => Argon2::default(),
    }
}

/// argon2 computations running at once, process-wide. Each takes 7 MiB and tens
/// of milliseconds on purpose: bounding them bounds the memory a burst of
/// logins or first client authentications can take, and keeps a flood of wrong
/// secrets from occupying every core.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Hashes a client secret or a password with argon2id (on a blocking thread:
/// it takes tens of milliseconds on purpose).
pub async fn hash_secret(secret: String) -> Result<String, OAuthError> {
    let _slot = ARGON2_SLOTS
        .acquire()
        .await
        .map_err(|_| OAuthError::Server)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        hasher()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| OAuthError::Server)
    })
    .await
    .map_err(|_| OAuthError::Server)?
}

/// Checks `secret` against an argon2 PHC `hash` (on a blocking thread).
pub async fn verify_secret(secret: String, hash: String) -> bool {
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    verify_now(secret, hash).await
}

/// [`verify_secret`] for a caller that already holds an argon2 slot.
async fn verify_now(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// The credentials a request presents.
fn credentials(headers: &HeaderMap, form: &Form) -> Result<(String, Option<String>), OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| OAuthError::InvalidClient)?;
            let Some((scheme, rest)) = v.split_once(' ') else {
                return Err(OAuthError::InvalidClient);
            };
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::InvalidClient);
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| OAuthError::InvalidClient)?;
            let text = String::from_utf8(raw).map_err(|_| OAuthError::InvalidClient)?;
            let (id, secret) = text.split_once(':').ok_or(OAuthError::InvalidClient)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let decode = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((decode(id), decode(secret)))
        }
        None => None,
    };
    let posted_secret = form.get("client_secret");
    match (basic, form.get("client_id")) {
        (Some(_), _) if posted_secret.is_some() => Err(OAuthError::InvalidRequest(
            "use one client authentication method, not two",
        )),
        (Some((id, _)), Some(form_id)) if &id != form_id => Err(OAuthError::InvalidClient),
        (Some((id, secret)), _) => Ok((id, Some(secret))),
        (None, Some(id)) => Ok((id.clone(), posted_secret.cloned())),
        (None, None) => Err(OAuthError::InvalidClient),
    }
}

// === impl ClientAuth ===

impl ClientAuth {
    /// Authenticates against the clients in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> ClientAuth {
        ClientAuth {
            store,
            clock,
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }

    /// The client a request authenticates as. A public client (no secret) is
    /// identified by `client_id` alone only when `allow_public` is true.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        form: &Form,
        allow_public: bool,
    ) -> Result<Client, OAuthError> {
        let (id, secret) = credentials(headers, form)?;
        let client = self.store.get_client(&id).await.map_err(|e| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Client lookup failed");
            OAuthError::Server
        })?;
        let ok = match (&client, secret) {
            (Some(c), Some(secret)) => match &c.secret_hash {
                Some(hash) => self.check(&c.client_id, secret, hash).await?,
                None => false,
            },
            (Some(c), None) => c.public && allow_public,
            (None, _) => false,
        };
        match client {
            Some(c) if ok => Ok(c),
            _ => Err(OAuthError::InvalidClient),
        }
    }

    /// Whether `secret` is the client's. A secret this process verified
    /// recently is answered from memory, whatever the failure count (nothing is
    /// being guessed). Any other secret waits for one of the [`ARGON2_SLOTS`];
    /// only then is the client's failure count read (this process's, and the
    /// store's, shared by replicas), so guesses sent at once are checked
    /// against the failures of the guesses before them: past [`MAX_FAILURES`]
    /// in the window the answer is `SlowDown`, and at most the slots in flight
    /// can go over. A secret that verifies clears the count.
    async fn check(&self, client_id: &str, secret: String, hash: &str) -> Result<bool, OAuthError> {
        let mut material = Vec::with_capacity(client_id.len() + secret.len() + 1);
        material.extend_from_slice(client_id.as_bytes());
        material.push(0);
        material.extend_from_slice(secret.as_bytes());
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
        let mut key = [0u8; 32];
        key.copy_from_slice(d.as_ref());
        // The remembered hash must still be the stored one: a changed secret
        // (or a deleted and recreated client) is verified afresh.
        if self.verified.get(&key).as_deref() == Some(hash) {
            return Ok(true);
        }
        if self.failures.get(client_id).unwrap_or(0) >= MAX_FAILURES {
            return Err(OAuthError::SlowDown);
        }
        let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
            return Ok(false);
        };
        // Many connections of one client often arrive together: once a slot is
        // ours, the secret may have been verified while we waited.
        if self.verified.get(&key).as_deref() == Some(hash) {
            return Ok(true);
        }
        let store_failed = |e: super::store::StoreError| {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Client failure count unavailable");
            OAuthError::Server
        };
        let now = self.clock.now_unix();
        let counted = failure_key(client_id);
        let local = self.failures.get(client_id).unwrap_or(0);
        let shared = self
            .store
            .login_failures(&counted, now)
            .await
            .map_err(store_failed)?;
        if local.max(shared) >= MAX_FAILURES {
            self.failures
                .insert(client_id.to_owned(), local.max(shared));
            return Err(OAuthError::SlowDown);
        }
        if verify_now(secret, hash.to_owned()).await {
            self.verified.insert(key, hash.to_owned());
            self.failures.invalidate(client_id);
            if shared > 0 {
                self.store
                    .clear_login_failures(&counted)
                    .await
                    .map_err(store_failed)?;
            }
            return Ok(true);
        }
        let window = FAILURE_WINDOW.as_secs() as i64;
        let shared = self
            .store
            .record_login_failure(&counted, now, window)
            .await
            .map_err(store_failed)?;
        self.failures
            .insert(client_id.to_owned(), local.saturating_add(1).max(shared));
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        h.insert(AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    #[test]
    fn credentials_from_basic_or_post_but_not_both() {
        let form = Form::new();
        assert_eq!(
            credentials(&basic("a%3Ab", "s%20t"), &form),
            Ok(("a:b".into(), Some("s t".into())))
        );
        let mut post = Form::new();
        post.insert("client_id".into(), "c".into());
        post.insert("client_secret".into(), "s".into());
        assert_eq!(
            credentials(&HeaderMap::new(), &post),
            Ok(("c".into(), Some("s".into())))
        );
        assert!(matches!(
            credentials(&basic("c", "s"), &post),
            Err(OAuthError::InvalidRequest(_))
        ));
        assert_eq!(
            credentials(&HeaderMap::new(), &Form::new()),
            Err(OAuthError::InvalidClient)
        );
    }

    #[tokio::test]
    async fn hashes_verify_only_their_secret() {
        let h = hash_secret("s3cret".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("s3cret".into(), h.clone()).await);
        assert!(!verify_secret("other".into(), h).await);
        assert!(!verify_secret("x".into(), "not a hash".into()).await);
    }
}
