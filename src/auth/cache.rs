//! Verdict caches keyed by the SHA-256 of the token (the token itself is never
//! stored): verified identities, so a reused token pays the signature check once,
//! and bad-signature verdicts, so a replayed forgery does too. Both are tied to the
//! key-set generation they were made with; a change of keys voids them. Each is
//! bounded by bytes, not entries (`server.limits.token_cache`).

use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use moka::sync::Cache;

use super::keys::Identity;
use super::verify::TokenError;
use crate::clock::Clock;

/// SHA-256 of a token.
pub type TokenDigest = [u8; 32];

/// The default memory budget of the verified-token cache
/// (`server.limits.token_cache`); the rejected-token cache gets a quarter of
/// it on top. Beyond its budget a cache evicts its least useful entries.
pub const DEFAULT_BUDGET: u64 = crate::config::DEFAULT_TOKEN_CACHE;
/// What a cache entry costs besides the identity's own text: the cache's
/// bookkeeping (entry, expiry and order nodes), the `Identity` itself and the
/// allocator's headers (measured with `cargo bench --bench allocations`).
const ENTRY_OVERHEAD: u32 = 720;
/// What one cached rejection costs.
const REJECTION_WEIGHT: u32 = 400;
const MAX_NEGATIVE_AGE: Duration = Duration::from_secs(300);
const MAX_POSITIVE_AGE: Duration = Duration::from_secs(24 * 3600);

/// A cached rejection.
#[derive(Debug, Clone, Copy)]
pub struct Rejection {
    pub issuer: usize,
    pub generation: u64,
    pub error: TokenError,
}

/// Verified identities a thread looked up last, in front of the shared cache:
/// a hit there touches nothing another worker writes (the shared cache records
/// every read in a queue all threads push to). Direct-mapped by the digest;
/// entries of another cache (a reloaded configuration's) are never used. The
/// caller checks what it gets exactly as it checks the shared cache's answers
/// (key generation, validity window, revocations), so a stale entry here can
/// only cost a lookup.
mod local {
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::{Identity, TokenDigest};

    const SLOTS: usize = 64;

    struct Local {
        /// The cache these entries belong to.
        owner: u64,
        slots: [Option<(TokenDigest, Arc<Identity>)>; SLOTS],
    }

    thread_local! {
        static LOCAL: RefCell<Local> = const {
            RefCell::new(Local { owner: 0, slots: [const { None }; SLOTS] })
        };
    }

    fn slot(key: &TokenDigest) -> usize {
        usize::from(key[0]) % SLOTS
    }

    /// Runs `f` on this thread's entries of cache `owner` (emptied first when
    /// they were another cache's); `None` while the thread is being torn down.
    fn with<T>(owner: u64, f: impl FnOnce(&mut Local) -> T) -> Option<T> {
        LOCAL
            .try_with(|cell| {
                let mut local = cell.try_borrow_mut().ok()?;
                if local.owner != owner {
                    local.owner = owner;
                    local.slots = [const { None }; SLOTS];
                }
                Some(f(&mut local))
            })
            .ok()
            .flatten()
    }

    pub(super) fn get(owner: u64, key: &TokenDigest) -> Option<Arc<Identity>> {
        with(owner, |l| match &l.slots[slot(key)] {
            Some((k, id)) if k == key => Some(id.clone()),
            _ => None,
        })
        .flatten()
    }

    pub(super) fn put(owner: u64, key: TokenDigest, id: Arc<Identity>) {
        with(owner, |l| l.slots[slot(&key)] = Some((key, id)));
    }

    pub(super) fn remove(owner: u64, key: &TokenDigest) {
        with(owner, |l| {
            if matches!(&l.slots[slot(key)], Some((k, _)) if k == key) {
                l.slots[slot(key)] = None;
            }
        });
    }
}

/// Tells caches apart for the threads' local entries (0: none yet).
static CACHE_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Both caches. Their table hash is foldhash with a per-process random seed:
/// a key is already a SHA-256 digest, and SipHash over it cost as much as the
/// rest of a cache hit; a client that cannot see the seed cannot aim tokens at
/// one bucket.
pub struct TokenCache {
    verified: Cache<TokenDigest, Arc<Identity>, RandomState>,
    rejected: Cache<TokenDigest, Rejection, RandomState>,
    /// This cache's id for the threads' local entries ([`local`]).
    id: u64,
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
    /// Caches within `budget` bytes (verified identities), and a quarter of it
    /// (rejections): entries are weighed by what they hold, so the memory they
    /// take stays flat however many distinct tokens arrive.
    pub fn new(budget: u64, clock: Arc<dyn Clock>) -> TokenCache {
        TokenCache {
            verified: Cache::builder()
                .max_capacity(budget)
                .weigher(|_, id: &Arc<Identity>| ENTRY_OVERHEAD.saturating_add(id.heap_bytes()))
                .expire_after(UntilExpiry { clock })
                .build_with_hasher(RandomState::default()),
            rejected: Cache::builder()
                .max_capacity(budget / 4)
                .weigher(|_, _| REJECTION_WEIGHT)
                .time_to_live(MAX_NEGATIVE_AGE)
                .build_with_hasher(RandomState::default()),
            id: CACHE_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// How many identities are cached, and their weight in bytes (after the
    /// pending bookkeeping has run).
    pub fn verified_usage(&self) -> (u64, u64) {
        (self.verified.entry_count(), self.verified.weighted_size())
    }

    /// Applies the caches' pending bookkeeping (admissions, evictions) now
    /// rather than at their next few operations: for measurements.
    pub fn run_pending_tasks(&self) {
        self.verified.run_pending_tasks();
        self.rejected.run_pending_tasks();
    }

    /// A verified identity for this token, if cached.
    /// (This thread's recent lookups first.)
    pub fn verified(&self, key: &TokenDigest) -> Option<Arc<Identity>> {
        if let Some(id) = local::get(self.id, key) {
            return Some(id);
        }
        let id = self.verified.get(key)?;
        local::put(self.id, *key, id.clone());
        Some(id)
    }

    /// Remembers a verified identity (it expires no later than the token).
    pub fn insert_verified(&self, key: TokenDigest, identity: Arc<Identity>) {
        local::put(self.id, key, identity.clone());
        self.verified.insert(key, identity);
    }

    /// Forgets a verified identity (its key set changed, or it was revoked).
    /// Other threads' local entries are left to their own checks.
    pub fn forget_verified(&self, key: &TokenDigest) {
        local::remove(self.id, key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn identity(n: u32) -> Arc<Identity> {
        Arc::new(Identity {
            issuer: 0,
            generation: 1,
            exp: 2_000_000_000,
            nbf: None,
            sub: Some(format!("user-{n}")),
            org: Some("org-1".to_owned()),
            scopes: vec!["read:data".to_owned(), "write:data".to_owned()],
            roles: Vec::new(),
            headers: vec![http::HeaderValue::from_str(&format!("user-{n}")).ok(), None],
            revocation: None,
        })
    }

    #[test]
    fn thread_local_entries_never_cross_caches_or_outlive_a_forget() {
        let clock = Arc::new(ManualClock::new(1_900_000_000));
        let old = TokenCache::new(1 << 20, clock.clone());
        let new = TokenCache::new(1 << 20, clock);
        let key = digest("a.b.c");
        old.insert_verified(key, identity(1));
        assert_eq!(
            old.verified(&key).and_then(|i| i.sub.clone()).as_deref(),
            Some("user-1")
        );
        // A reloaded configuration's cache never sees the old one's entries.
        assert!(new.verified(&key).is_none());
        new.insert_verified(key, identity(2));
        assert_eq!(
            new.verified(&key).and_then(|i| i.sub.clone()).as_deref(),
            Some("user-2")
        );
        assert_eq!(
            old.verified(&key).and_then(|i| i.sub.clone()).as_deref(),
            Some("user-1")
        );
        // Forgotten here: gone from the thread's entries and the shared cache.
        old.forget_verified(&key);
        assert!(old.verified(&key).is_none());
        // Another thread finds what the shared cache holds, and fills its own.
        let other = std::thread::scope(|s| {
            s.spawn(|| new.verified(&key).and_then(|i| i.sub.clone()))
                .join()
                .expect("thread")
        });
        assert_eq!(other.as_deref(), Some("user-2"));
        // Two digests in one slot: each lookup answers for its own key only.
        let mut twin = key;
        twin[1] ^= 1;
        assert!(new.verified(&twin).is_none());
        new.insert_verified(twin, identity(3));
        assert_eq!(
            new.verified(&key).and_then(|i| i.sub.clone()).as_deref(),
            Some("user-2")
        );
        assert_eq!(
            new.verified(&twin).and_then(|i| i.sub.clone()).as_deref(),
            Some("user-3")
        );
    }

    #[test]
    fn the_verified_cache_stays_within_its_byte_budget() {
        let budget = 64 << 10;
        let cache = TokenCache::new(budget, Arc::new(ManualClock::new(1_900_000_000)));
        let one = u64::from(ENTRY_OVERHEAD + identity(0).heap_bytes());
        for n in 0..1_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            cache.insert_verified(key, identity(n));
        }
        cache.run_pending_tasks();
        let (entries, weight) = cache.verified_usage();
        assert!(weight <= budget, "{weight} > {budget}");
        // Full, not emptied: about as many entries as the budget holds.
        assert!(
            entries * one > budget / 2,
            "{entries} entries of {one} bytes"
        );
        assert!(entries < 1_000);
    }
}
