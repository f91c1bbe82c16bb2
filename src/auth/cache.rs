//! Verdict caches keyed by the SHA-256 of the token (the token itself is never
//! stored): verified identities, so a reused token pays the signature check once,
//! and bad-signature verdicts, so a replayed forgery does too. Both are tied to the
//! key-set generation they were made with; a change of keys voids them.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::keys::Identity;
use super::verify::TokenError;
use crate::clock::Clock;

/// SHA-256 of a token.
pub type TokenDigest = [u8; 32];

/// Entries kept at most; beyond it the least useful are evicted.
pub const MAX_ENTRIES: u64 = 10_000;
const MAX_NEGATIVE_AGE: Duration = Duration::from_secs(300);
const MAX_POSITIVE_AGE: Duration = Duration::from_secs(24 * 3600);

/// A cached rejection.
#[derive(Debug, Clone, Copy)]
pub struct Rejection {
    pub issuer: usize,
    pub generation: u64,
    pub error: TokenError,
}

/// Both caches.
pub struct TokenCache {
    verified: Cache<TokenDigest, Arc<Identity>>,
    rejected: Cache<TokenDigest, Rejection>,
}

struct UntilExpiry {
    clock: Arc<dyn Clock>,
}

impl moka::Expiry<TokenDigest, Arc<Identity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        value: &Arc<Identity>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.exp.saturating_sub(self.clock.now_unix()).max(0) as u64;
        Some(Duration::from_secs(left).min(MAX_POSITIVE_AGE))
    }
}

/// The digest a cache is keyed by.
pub fn digest(token: &str) -> TokenDigest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenCache {
    /// Empty caches bounded to `capacity` entries each.
    pub fn new(capacity: u64, clock: Arc<dyn Clock>) -> TokenCache {
        TokenCache {
            verified: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry { clock })
                .build(),
            rejected: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(MAX_NEGATIVE_AGE)
                .build(),
        }
    }

    /// A verified identity for this token, if cached.
    pub fn verified(&self, key: &TokenDigest) -> Option<Arc<Identity>> {
        self.verified.get(key)
    }

    /// Remembers a verified identity (it expires no later than the token).
    pub fn insert_verified(&self, key: TokenDigest, identity: Arc<Identity>) {
        self.verified.insert(key, identity);
    }

    /// Forgets a verified identity (its key set changed).
    pub fn forget_verified(&self, key: &TokenDigest) {
        self.verified.invalidate(key);
    }

    /// A cached rejection for this token, if any.
    pub fn rejected(&self, key: &TokenDigest) -> Option<Rejection> {
        self.rejected.get(key)
    }

    /// Remembers a rejection that only a key change could reverse.
    pub fn insert_rejected(&self, key: TokenDigest, rejection: Rejection) {
        self.rejected.insert(key, rejection);
    }
}
