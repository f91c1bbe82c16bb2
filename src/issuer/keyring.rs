//! The issuer's signing keys at run time: loaded from the store, created and
//! rotated per [`RotationPolicy`], and published as a JWKS. Every replica runs
//! the same sync; the store's rotation lease makes exactly one of them write,
//! and all of them then read the same records, so they sign with and publish
//! the same keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::signing::{self, KeyAction, KeyRecord, MasterKey, RotationPolicy, SigningKey};
use super::store::{SigningKeyRecord, Store, StoreError};
use crate::auth::keys::{KeySet, parse_jwks};
use crate::config::SigningAlg;

/// The JWKS `Cache-Control: max-age`; successors are published this far ahead.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// How long the rotation lease is held by the replica that writes.
const LEASE_TTL: i64 = 30;

/// How often a replica starting beside the lease holder re-reads the keys.
const STARTUP_RETRY: Duration = Duration::from_millis(100);

/// Why the key ring could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("the key store failed")]
    Store(#[from] StoreError),
    #[error("a signing key could not be used")]
    Signing(#[from] signing::SigningError),
}

/// What requests see: the signer per algorithm and the published JWKS.
#[derive(Debug)]
pub struct Ring {
    signers: HashMap<SigningAlg, Arc<SigningKey>>,
    /// The JWKS document, ready to serve.
    pub jwks: Bytes,
    /// The kids in the JWKS (for logs and tests).
    pub published: Vec<String>,
    /// The JWKS parsed, for verifying this issuer's own tokens
    /// (`access`): once per change of the published keys, not per request.
    pub verify: KeySet,
}

impl Default for Ring {
    /// No keys: nothing signs, nothing verifies.
    fn default() -> Self {
        Ring {
            signers: HashMap::new(),
            jwks: Bytes::new(),
            published: Vec::new(),
            verify: KeySet {
                keys: Vec::new(),
                generation: 0,
            },
        }
    }
}

impl Ring {
    /// A ring that signs nothing and verifies with the keys of `jwks`.
    #[cfg(test)]
    pub(crate) fn verifying(jwks: Bytes) -> Ring {
        let verify = verify_keys(&Ring::default(), &jwks);
        Ring {
            jwks,
            verify,
            ..Ring::default()
        }
    }

    /// The key that signs `alg` tokens now.
    pub fn signer(&self, alg: SigningAlg) -> Option<&Arc<SigningKey>> {
        self.signers.get(&alg)
    }
}

/// The issuer's keys, kept in sync with the store.
pub struct KeyRing {
    store: Arc<dyn Store>,
    algs: Vec<SigningAlg>,
    policy: RotationPolicy,
    master: Option<MasterKey>,
    holder: String,
    ring: ArcSwap<Ring>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

fn to_policy_record(r: SigningKeyRecord) -> KeyRecord {
    KeyRecord {
        kid: r.kid,
        alg: r.alg,
        private_key: r.private_key,
        public_jwk: r.public_jwk,
        created_at: r.created_at,
        publish_at: r.publish_at,
        activate_at: r.activate_at,
        retire_at: r.retire_at,
        expire_at: r.expire_at,
    }
}

fn to_store_record(r: KeyRecord) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: r.kid,
        alg: r.alg,
        private_key: r.private_key,
        public_jwk: r.public_jwk,
        created_at: r.created_at,
        publish_at: r.publish_at,
        activate_at: r.activate_at,
        retire_at: r.retire_at,
        expire_at: r.expire_at,
    }
}

// === impl KeyRing ===

impl KeyRing {
    /// A ring over `store`; call [`KeyRing::sync`] before use.
    pub fn new(
        store: Arc<dyn Store>,
        algs: Vec<SigningAlg>,
        policy: RotationPolicy,
        master: Option<MasterKey>,
    ) -> KeyRing {
        KeyRing {
            store,
            algs,
            policy,
            master,
            holder: super::store::new_id("replica"),
            ring: ArcSwap::from_pointee(Ring::default()),
        }
    }

    /// The keys in force.
    pub fn current(&self) -> Arc<Ring> {
        self.ring.load_full()
    }

    /// Applies the rotation policy at `now` (when this replica holds the lease),
    /// then reloads the records and rebuilds the signers and the JWKS. Returns
    /// true when the published key set changed.
    pub async fn sync(&self, now: i64) -> Result<bool, KeyRingError> {
        self.apply(now, signing::rotation::plan, true).await
    }

    /// Whether every configured algorithm has a key that signs now.
    pub fn complete(&self) -> bool {
        let ring = self.current();
        self.algs.iter().all(|alg| ring.signers.contains_key(alg))
    }

    /// [`KeyRing::sync`] at start: when another replica holds the rotation
    /// lease (several replicas starting at once on a new database), the first
    /// keys are being written by it, so this waits for them, re-reading every
    /// `STARTUP_RETRY` for at most one lease, instead of starting with none.
    pub async fn sync_at_start(&self, clock: &dyn crate::clock::Clock) -> Result<(), KeyRingError> {
        self.sync(clock.now_unix()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(LEASE_TTL as u64);
        while !self.complete() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STARTUP_RETRY).await;
            self.sync(clock.now_unix()).await?;
        }
        if !self.complete() {
            tracing::warn!(
                "Starting without a signing key for every algorithm; the next key sync retries"
            );
        }
        Ok(())
    }

    /// An unscheduled rotation (`portcullis admin keys rotate`): successors are
    /// published now and sign after the JWKS cache age.
    /// (Its caller reports the rotation: `manage::rotate_keys`.)
    pub async fn rotate(&self, now: i64) -> Result<bool, KeyRingError> {
        self.apply(now, signing::rotation::rotate_now, false).await
    }

    /// Applies `decide`'s actions under the rotation lease. `report`: a
    /// scheduled rotation (a key created for an algorithm that had one) is
    /// recorded as a `key.rotated` event and audit entry.
    async fn apply(
        &self,
        now: i64,
        decide: fn(&[KeyRecord], &[SigningAlg], &RotationPolicy, i64) -> Vec<KeyAction>,
        report: bool,
    ) -> Result<bool, KeyRingError> {
        let records = self.records(now).await?;
        let actions = decide(&records, &self.algs, &self.policy, now);
        let mut records = records;
        if !actions.is_empty()
            && self
                .store
                .try_rotation_lock(&self.holder, now, LEASE_TTL)
                .await?
        {
            // Decide again under the lease: another replica may have just written.
            records = self.records(now).await?;
            let mut rotated = Vec::new();
            for action in decide(&records, &self.algs, &self.policy, now) {
                let successor = matches!(
                    &action,
                    KeyAction::Create { alg, .. } if records.iter().any(|r| r.alg == alg.as_str())
                );
                if let Some(kid) = self.act(action, now).await? {
                    if successor {
                        rotated.push(kid);
                    }
                }
            }
            if report && !rotated.is_empty() {
                let published = self.records(now).await?;
                self.report_rotation(&rotated, &published, now).await?;
            }
            // Hand the lease back (renewing it to expire at `now`): the writes
            // are done, and the next replica or `admin keys rotate` decides on
            // the records as they are now instead of waiting out the lease.
            self.store.try_rotation_lock(&self.holder, now, 0).await?;
            records = self.records(now).await?;
        }
        self.rebuild(records, now)
    }

    async fn records(&self, now: i64) -> Result<Vec<KeyRecord>, KeyRingError> {
        Ok(self
            .store
            .list_signing_keys(now)
            .await?
            .into_iter()
            .map(to_policy_record)
            .collect())
    }

    /// Records a scheduled rotation: the `key.rotated` event (the shape
    /// `admin keys rotate` gives it: the kids created and those published)
    /// and its audit entry, in one transaction.
    async fn report_rotation(
        &self,
        created: &[String],
        records: &[KeyRecord],
        now: i64,
    ) -> Result<(), KeyRingError> {
        let published: Vec<&str> = signing::rotation::published(records, now)
            .into_iter()
            .map(|r| r.kid.as_str())
            .collect();
        let data = serde_json::json!({ "created": created, "published": published });
        let actor = super::manage::Actor {
            name: "schedule",
            now,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_audit(&super::manage::audit(
            actor,
            "key.rotated",
            &created.join(" "),
            data.clone(),
        ))
        .await?;
        tx.enqueue_event(&super::manage::event("key.rotated", now, data))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Carries out one action; the kid of a key it created.
    async fn act(&self, action: KeyAction, now: i64) -> Result<Option<String>, KeyRingError> {
        match action {
            KeyAction::Create {
                alg,
                publish_at,
                activate_at,
            } => {
                let generated = signing::generate(alg)?;
                let record =
                    generated.into_record(self.master.as_ref(), now, publish_at, activate_at)?;
                tracing::info!(kid = %record.kid, alg = alg.as_str(), activate_at, "Signing key created");
                let kid = record.kid.clone();
                self.store
                    .insert_signing_key(&to_store_record(record))
                    .await?;
                Ok(Some(kid))
            }
            KeyAction::Retire {
                kid,
                retire_at,
                expire_at,
            } => {
                tracing::info!(%kid, retire_at, expire_at, "Signing key retiring");
                self.store
                    .update_signing_key_times(&kid, Some(retire_at), Some(expire_at))
                    .await?;
                Ok(None)
            }
        }
    }

    fn rebuild(&self, records: Vec<KeyRecord>, now: i64) -> Result<bool, KeyRingError> {
        let mut signers = HashMap::new();
        for &alg in &self.algs {
            if let Some(r) = signing::rotation::active_key(&records, alg, now) {
                let current = self.ring.load();
                let key = match current.signers.get(&alg) {
                    Some(k) if k.kid() == r.kid => k.clone(),
                    _ => Arc::new(SigningKey::from_record(r, self.master.as_ref())?),
                };
                signers.insert(alg, key);
            }
        }
        let published = signing::rotation::published(&records, now);
        let kids: Vec<String> = published.iter().map(|r| r.kid.clone()).collect();
        let changed = kids != self.ring.load().published;
        let jwks = Bytes::from(signing::jwks_json(published));
        let verify = verify_keys(&self.ring.load(), &jwks);
        self.ring.store(Arc::new(Ring {
            signers,
            jwks,
            published: kids,
            verify,
        }));
        Ok(changed)
    }
}

/// The keys that verify tokens signed with one of `jwks`: `current`'s when
/// the document is the same, else parsed from it (a new generation).
fn verify_keys(current: &Ring, jwks: &Bytes) -> KeySet {
    if *jwks == current.jwks {
        return KeySet {
            keys: current.verify.keys.clone(),
            generation: current.verify.generation,
        };
    }
    let keys = parse_jwks(jwks).unwrap_or_else(|e| {
        tracing::error!(error = %crate::telemetry::events::chain(&e), "Published JWKS does not parse");
        Vec::new()
    });
    KeySet {
        keys,
        generation: current.verify.generation.wrapping_add(1),
    }
}
