//! The key rotation policy, as pure functions of the key records and `now`.
//!
//! A key's life: it is *published* in the JWKS at `publish_at`, *signs* from
//! `activate_at` until `retire_at`, and leaves the JWKS at `expire_at`. A
//! successor is published [`RotationPolicy::jwks_max_age`] before it signs, so
//! every verifier's cached JWKS holds it before the first token it signs; the
//! predecessor retires the moment the successor activates and stays published
//! until every token it signed has expired (`retire_at` + the longest token
//! lifetime + the verifiers' leeway). So rotation never breaks a live token.
//! Storage (`issuer::store`) and the clock live elsewhere; nothing here does I/O.

use std::time::Duration;

use crate::config::{IssuerSection, SigningAlg};

/// Clock skew allowed to verifiers on top of a token's lifetime before its key
/// leaves the JWKS (the gateway's default leeway is 30 s).
pub const VERIFIER_LEEWAY: i64 = 300;

/// One stored signing key: the fields of the storage layer's record, with times
/// in seconds since the epoch. Its `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The RFC 7638 thumbprint; the JWS `kid`.
    pub kid: String,
    /// The JOSE algorithm name (`ES256`, `RS256`, `EdDSA`).
    pub alg: String,
    /// PKCS#8 DER, sealed when a master key is set (see `seal`).
    pub private_key: Vec<u8>,
    /// The public JWK as JSON.
    pub public_jwk: String,
    pub created_at: i64,
    /// When the key appears in the JWKS.
    pub publish_at: i64,
    /// When it starts signing.
    pub activate_at: i64,
    /// When it stops signing (`None`: not scheduled yet).
    pub retire_at: Option<i64>,
    /// When it leaves the JWKS (`None`: not scheduled yet).
    pub expire_at: Option<i64>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &crate::issuer::store::Redacted)
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("publish_at", &self.publish_at)
            .field("activate_at", &self.activate_at)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish()
    }
}

/// The timing rules, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a key signs before its successor takes over.
    pub rotation: i64,
    /// The JWKS `Cache-Control: max-age`: how far ahead a successor is published.
    pub jwks_max_age: i64,
    /// The longest lifetime of a token a key signs (access or ID token).
    pub max_token_ttl: i64,
}

/// A change the policy asks the storage layer to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Generate a key for `alg`, published at `publish_at`, signing from `activate_at`.
    Create {
        alg: SigningAlg,
        publish_at: i64,
        activate_at: i64,
    },
    /// Schedule the end of key `kid`: it stops signing at `retire_at` and leaves
    /// the JWKS at `expire_at`.
    Retire {
        kid: String,
        retire_at: i64,
        expire_at: i64,
    },
}

// === impl RotationPolicy ===

impl RotationPolicy {
    /// The policy of an `issuer:` section whose JWKS is served with `jwks_max_age`.
    pub fn from_section(section: &IssuerSection, jwks_max_age: Duration) -> RotationPolicy {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        RotationPolicy {
            rotation: secs(section.key_rotation),
            jwks_max_age: secs(jwks_max_age),
            max_token_ttl: secs(section.access_token_ttl.max(section.id_token_ttl)),
        }
    }

    /// When a key retiring at `retire_at` may leave the JWKS.
    pub fn expiry(&self, retire_at: i64) -> i64 {
        retire_at
            .saturating_add(self.max_token_ttl)
            .saturating_add(VERIFIER_LEEWAY)
    }
}

// === impl KeyRecord ===

impl KeyRecord {
    /// Whether the key signs at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.activate_at <= now && self.retire_at.is_none_or(|r| now < r)
    }

    /// Whether the key is in the JWKS at `now`.
    pub fn is_published(&self, now: i64) -> bool {
        self.publish_at <= now && self.expire_at.is_none_or(|e| now < e)
    }
}

/// The key that signs `alg` tokens at `now`: of the active ones, the most
/// recently activated (ties broken by `kid`, so every replica picks the same).
pub fn active_key(records: &[KeyRecord], alg: SigningAlg, now: i64) -> Option<&KeyRecord> {
    records
        .iter()
        .filter(|r| r.alg == alg.as_str() && r.is_active(now))
        .max_by(|a, b| (a.activate_at, &a.kid).cmp(&(b.activate_at, &b.kid)))
}

/// The keys in the JWKS at `now`, ordered by `kid`.
pub fn published(records: &[KeyRecord], now: i64) -> Vec<&KeyRecord> {
    let mut keys: Vec<_> = records.iter().filter(|r| r.is_published(now)).collect();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    keys
}

/// Keys that have left the JWKS for good and may be deleted.
pub fn expired(records: &[KeyRecord], now: i64) -> Vec<&KeyRecord> {
    records
        .iter()
        .filter(|r| r.expire_at.is_some_and(|e| e <= now))
        .collect()
}

/// What must change at `now` so that each of `algs` has a signing key and a
/// successor is published in time, and keys of algorithms no longer configured
/// retire.
///
/// - No active key for an algorithm: create one that signs at once (nothing can
///   have been signed with it, but verifiers outside the process see it at their
///   next refresh or unknown-`kid` refetch).
/// - The active key has signed for `rotation - jwks_max_age` and has no
///   successor yet: create the successor, signing from the later of the
///   scheduled rotation and `now + jwks_max_age`, and retire the active key then.
pub fn plan(
    records: &[KeyRecord],
    algs: &[SigningAlg],
    policy: &RotationPolicy,
    now: i64,
) -> Vec<KeyAction> {
    let mut actions = Vec::new();
    for &alg in algs {
        match active_key(records, alg, now) {
            None => actions.push(KeyAction::Create {
                alg,
                publish_at: now,
                activate_at: now,
            }),
            Some(current) => {
                let due = current
                    .activate_at
                    .saturating_add(policy.rotation)
                    .saturating_sub(policy.jwks_max_age);
                if now >= due && successor(records, current, now).is_none() {
                    let activate_at = current
                        .activate_at
                        .saturating_add(policy.rotation)
                        .max(now.saturating_add(policy.jwks_max_age));
                    actions.extend(succession(current, alg, policy, now, activate_at));
                }
            }
        }
    }
    for r in records {
        let configured = algs.iter().any(|a| a.as_str() == r.alg);
        if !configured && r.is_active(now) {
            actions.push(KeyAction::Retire {
                kid: r.kid.clone(),
                retire_at: now,
                expire_at: policy.expiry(now),
            });
        }
    }
    actions
}

/// An unscheduled rotation (`portcullis admin keys rotate`): for each of `algs`,
/// a successor published now that signs after `jwks_max_age`, unless one is
/// already waiting. An algorithm without an active key gets one at once.
pub fn rotate_now(
    records: &[KeyRecord],
    algs: &[SigningAlg],
    policy: &RotationPolicy,
    now: i64,
) -> Vec<KeyAction> {
    let mut actions = Vec::new();
    for &alg in algs {
        match active_key(records, alg, now) {
            None => actions.push(KeyAction::Create {
                alg,
                publish_at: now,
                activate_at: now,
            }),
            Some(current) if successor(records, current, now).is_none() => {
                let activate_at = now.saturating_add(policy.jwks_max_age);
                actions.extend(succession(current, alg, policy, now, activate_at));
            }
            Some(_) => {}
        }
    }
    actions
}

/// A key of the same algorithm that activates after `current` (already created).
fn successor<'a>(records: &'a [KeyRecord], current: &KeyRecord, now: i64) -> Option<&'a KeyRecord> {
    records.iter().find(|r| {
        r.alg == current.alg
            && r.kid != current.kid
            && r.activate_at > now
            && r.activate_at >= current.activate_at
    })
}

fn succession(
    current: &KeyRecord,
    alg: SigningAlg,
    policy: &RotationPolicy,
    now: i64,
    activate_at: i64,
) -> [KeyAction; 2] {
    [
        KeyAction::Create {
            alg,
            publish_at: now,
            activate_at,
        },
        KeyAction::Retire {
            kid: current.kid.clone(),
            retire_at: activate_at,
            expire_at: policy.expiry(activate_at),
        },
    ]
}

#[cfg(test)]
mod tests;
