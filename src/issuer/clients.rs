//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic` or `client_secret_post` (never both), secrets stored as
//! argon2id hashes, a short-lived cache of verified secrets so a busy client
//! does not pay argon2 on every request, failures slowed down per client and
//! source address (`throttle`), and argon2 rationed in its own budget
//! (`kdf`), apart from logins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use moka::sync::Cache;
use tokio::sync::watch;

use super::body::{self, RequestBody};
use super::error::OAuthError;
use super::kdf::{self, Budget, CLIENT_LIMITS};
use super::store::{Client, Store};
use super::throttle::{self, Keys, Source, Throttle, Verdict};
use crate::clock::Clock;

pub use super::kdf::{hash_secret, verify_secret};

/// How long a verified secret is remembered (by a keyed hash, with the stored hash).
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// The largest form body the token, revocation and introspection endpoints
/// read.
const MAX_FORM: usize = 64 * 1024;

/// The form parameters of a request, already parsed (each at most once).
pub type Form = std::collections::HashMap<String, String>;

/// Reads the form of a token, revocation or introspection request
/// (`application/x-www-form-urlencoded`, size-capped): every parameter at
/// most once (RFC 6749 §3.2), none holding a NUL character.
pub async fn read_form(headers: &HeaderMap, body: RequestBody) -> Result<Form, OAuthError> {
    Ok(body::read_form(headers, body, MAX_FORM).await?.strict()?)
}

/// Authenticates clients.
///
/// A secret this process verified recently is answered from memory. Any
/// other is first counted by the throttle (per client at the source address,
/// and per source; shared by every replica through the store), then waits for
/// a slot of the client-authentication argon2 budget, then is verified. A
/// correct secret is never refused because of failures counted elsewhere:
/// the delays apply to the source that failed.
pub struct ClientAuth {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Secrets verified recently, by [`ClientAuth::verified_key`], with the
    /// stored hash they were verified against. The secrets themselves are
    /// never kept.
    verified: Cache<[u8; 32], String>,
    /// The key of `verified`'s keys: random, this process's only, so that
    /// what is remembered cannot be checked against guessed secrets
    /// without it.
    verified_mac: aws_lc_rs::hmac::Key,
    /// Checks under way, by the key of the client and secret they check;
    /// their answer, once known.
    in_flight: Mutex<HashMap<[u8; 32], Answer>>,
    throttle: Throttle,
    budget: Budget,
}

/// The answer of a check under way.
type Answer = watch::Receiver<Option<Result<bool, OAuthError>>>;

/// The first of several identical checks; when it ends (answered or
/// cancelled) the others stop waiting for it.
struct Flight<'a> {
    flights: &'a Mutex<HashMap<[u8; 32], Answer>>,
    key: [u8; 32],
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").finish_non_exhaustive()
    }
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
            // Decoded whole (a raw `&` is text, not a separator); no stored
            // id or secret holds a NUL.
            let decode = |s: &str| -> Result<String, OAuthError> {
                let plus = s.replace('+', " ");
                let text = percent_encoding::percent_decode_str(&plus)
                    .decode_utf8()
                    .map_err(|_| OAuthError::InvalidClient)?;
                if text.contains('\0') {
                    return Err(OAuthError::InvalidClient);
                }
                Ok(text.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
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
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let verified_mac = aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
            // Were the random source to fail, an empty key is no weaker than
            // the plain hash it replaces.
            .unwrap_or_else(|_| aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[]));
        ClientAuth {
            verified_mac,
            throttle: Throttle::new(store.clone()),
            budget: Budget::new("client authentication", CLIENT_LIMITS),
            in_flight: Mutex::new(HashMap::new()),
            store,
            clock,
            verified: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// The client a request from `source` authenticates as. A public client
    /// (no secret) is identified by `client_id` alone only when
    /// `allow_public` is true.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        form: &Form,
        allow_public: bool,
        source: &Source,
    ) -> Result<Client, OAuthError> {
        let (id, secret) = credentials(headers, form)?;
        let client = self.store.get_client_recent(&id).await?;
        let ok = match (&client, secret) {
            (Some(c), Some(secret)) => match &c.secret_hash {
                Some(hash) => self.check(&c.client_id, secret, hash, source).await?,
                None => false,
            },
            (Some(c), None) => c.public && allow_public,
            // Client ids are not secret: an unknown one costs no argon2.
            (None, _) => false,
        };
        match client {
            Some(c) if ok => Ok(c),
            _ => Err(OAuthError::InvalidClient),
        }
    }

    /// Whether `secret` is the client's. A secret this process verified
    /// recently is answered from memory, whatever the throttle says (nothing
    /// is being guessed). The same client and secret presented on several
    /// connections at once (a client's pool starting) are checked once: the
    /// first request does, the others wait for its answer, so a burst costs
    /// one argon2 slot and one throttled attempt, not one per connection.
    async fn check(
        &self,
        client_id: &str,
        secret: String,
        hash: &str,
        source: &Source,
    ) -> Result<bool, OAuthError> {
        let key = self.verified_key(client_id, &secret);
        loop {
            // The remembered hash must still be the stored one: a changed
            // secret (or a deleted and recreated client) is verified afresh.
            let remembered = self.verified.get(&key);
            if remembered.is_some_and(|h| {
                aws_lc_rs::constant_time::verify_slices_are_equal(h.as_bytes(), hash.as_bytes())
                    .is_ok()
            }) {
                return Ok(true);
            }
            let joined = {
                let mut flights = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match flights.get(&key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(key, rx);
                        Ok(tx)
                    }
                }
            };
            let mut answer = match joined {
                Ok(tx) => {
                    let _flight = Flight {
                        flights: &self.in_flight,
                        key,
                    };
                    let result = self.verify(client_id, secret, hash, source, key).await;
                    let _ = tx.send(Some(result.clone()));
                    return result;
                }
                Err(answer) => answer,
            };
            match answer.wait_for(Option::is_some).await {
                Ok(result) => return result.clone().unwrap_or(Err(OAuthError::Server)),
                // The first request went away before it answered: try again.
                Err(_) => continue,
            }
        }
    }

    /// Checks `secret` for the first of the requests that present it now.
    /// The attempt is counted first: during a delay for this client at this
    /// source it is refused at once (`SlowDown`), not checked and not
    /// counted. Then it waits for an argon2 slot (refused with
    /// `TemporarilyUnavailable` or `SlowDown` past the budget's bounds, and
    /// forgiven). A secret that verifies is remembered and clears the count.
    async fn verify(
        &self,
        client_id: &str,
        secret: String,
        hash: &str,
        source: &Source,
        key: [u8; 32],
    ) -> Result<bool, OAuthError> {
        let now = self.clock.now_unix();
        let keys = Keys::new(throttle::CLIENT, client_id, source);
        let delays_begin = match self.throttle.attempt(&keys, now).await? {
            Verdict::Wait { retry_after } => {
                tracing::debug!(
                    client = client_id,
                    source = source.as_str(),
                    reason = "throttled",
                    "Client authentication refused"
                );
                return Err(OAuthError::SlowDown { retry_after });
            }
            Verdict::Check { delays_begin } => delays_begin,
        };
        let permit = match self.budget.admit(source).await {
            Ok(permit) => permit,
            Err(refusal) => {
                self.throttle.unchecked(&keys, now).await?;
                return Err(refusal.into());
            }
        };
        let ok = permit.verify(secret, hash.to_owned()).await;
        drop(permit);
        if ok {
            self.verified.insert(key, hash.to_owned());
            self.throttle.succeeded(&keys, now).await?;
        } else if delays_begin {
            tracing::info!(
                client = client_id,
                source = source.as_str(),
                "Repeated failed client authentications from one source; delaying its next attempts"
            );
        }
        Ok(ok)
    }
}

// === impl ClientAuth (memory) ===

impl ClientAuth {
    /// The memory key of a verified secret: HMAC-SHA256, under this
    /// process's random key, of the client id and the secret (no stored id
    /// or secret holds the NUL that separates them).
    fn verified_key(&self, client_id: &str, secret: &str) -> [u8; 32] {
        let mut mac = aws_lc_rs::hmac::Context::with_key(&self.verified_mac);
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        let tag = mac.sign();
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }
}

impl From<kdf::Refusal> for OAuthError {
    fn from(refusal: kdf::Refusal) -> Self {
        match refusal {
            kdf::Refusal::Busy => OAuthError::TemporarilyUnavailable { retry_after: 1 },
            kdf::Refusal::SourceBusy => OAuthError::SlowDown { retry_after: 1 },
        }
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
}
