//! The revocation set: what the built-in issuer revoked, held in memory for
//! the verifier, which consults it for every token of the `builtin: true`
//! issuer (tokens of other issuers never touch it). An entry names one access
//! token (`jti`), one token family (the `family_id` claim: everything issued
//! from one authorization code or one anonymous sign-up, refreshes included),
//! or a user or client whose tokens issued (`iat`) at or before a time are
//! refused. The issuer keeps it fed (`issuer::revocation`); this module knows
//! nothing of where entries come from.
//!
//! Bounded twice. An entry leaves once every token it can match has expired
//! (its `until`, plus the built-in issuer's leeway), so the set holds what
//! was revoked within about one access-token lifetime. And a hard cap
//! (`issuer.revocation.max_entries`): beyond it the entries nearest their end
//! are dropped and the set fails closed for them — every built-in token issued
//! at or before the latest `issued_before` of a dropped entry is refused from
//! then on (the floor). A full set therefore refuses too much, never too little.
//!
//! The hot path: a cached identity remembers the set's generation it was last
//! checked at, so while nothing changes a request pays one atomic load. Every
//! change that can refuse more tokens bumps the generation; each cached
//! identity is then checked again, once: at most four hash lookups under a
//! read lock. Values are kept as 64-bit keyed hashes (SipHash, a random key per
//! process), not as text: compact, and a collision (about once in 10^14
//! lookups with 100,000 entries) refuses a token, never admits one.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// The access-token claim naming the token's family (absent from tokens of
/// `client_credentials`, which have none).
pub const FAMILY_CLAIM: &str = "family_id";

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One access token, by its `jti`.
    Jti,
    /// Every token of one family ([`FAMILY_CLAIM`]), whatever its `iat`.
    Family,
    /// The tokens of one user (`sub`) issued at or before `issued_before`.
    Subject,
    /// The tokens issued to one client (`client_id`) at or before `issued_before`.
    Client,
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: Kind,
    /// The `jti`, family id, user id or client id.
    pub value: String,
    /// Every token it matches was issued (`iat`) at or before this time; for
    /// [`Kind::Subject`] and [`Kind::Client`] it is also what decides the match.
    pub issued_before: i64,
    /// Every token it matches has expired (`exp`) by then.
    pub until: i64,
}

/// What the set can match in one verified token, hashed once when the token
/// is verified, and the set's generation it was last found clean at.
#[derive(Debug)]
pub struct Revocable {
    jti: u64,
    family: Option<u64>,
    sub: u64,
    client: Option<u64>,
    iat: i64,
    checked: AtomicU64,
}

/// The set. Shared by every snapshot's verifier and the issuer that feeds it.
#[derive(Debug)]
pub struct RevocationSet {
    /// Bumped (under the write lock) by every change that can refuse more.
    generation: AtomicU64,
    inner: RwLock<Inner>,
    keys: RandomState,
    max_entries: usize,
    /// How long past its `until` an entry is kept: the largest leeway a
    /// verifier gives the built-in issuer's `exp`.
    keep_past: AtomicI64,
    /// Entries dropped by the cap, ever.
    evicted: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    issued_before: i64,
    until: i64,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    /// Tokens issued at or before this were covered by a dropped entry.
    floor: i64,
}

/// The map's keys are keyed hashes already: hashing them again buys nothing.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// === impl Kind ===

impl Kind {
    /// The name the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Family => "family",
            Kind::Subject => "subject",
            Kind::Client => "client",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "jti" => Some(Kind::Jti),
            "family" => Some(Kind::Family),
            "subject" => Some(Kind::Subject),
            "client" => Some(Kind::Client),
            _ => None,
        }
    }
}

// === impl RevocationSet ===

impl RevocationSet {
    /// An empty set that holds at most `max_entries` (at least one) entries.
    pub fn new(max_entries: usize) -> RevocationSet {
        RevocationSet {
            generation: AtomicU64::new(1),
            inner: RwLock::new(Inner {
                entries: HashMap::default(),
                floor: i64::MIN,
            }),
            keys: RandomState::new(),
            max_entries: max_entries.max(1),
            keep_past: AtomicI64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Changes with every change that can refuse more tokens.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The time at or before which every token is refused because the cap
    /// dropped an entry covering it; `None` while the cap never bit.
    pub fn floor(&self) -> Option<i64> {
        Some(self.read().floor).filter(|f| *f != i64::MIN)
    }

    /// How many entries the cap has dropped since the set was made.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Keeps entries at least `leeway` past their `until`: a verifier that
    /// accepts the built-in issuer's tokens up to `leeway` after their `exp`
    /// must still find what revoked them. Only ever grows.
    pub fn cover_leeway(&self, leeway: Duration) {
        let secs = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        self.keep_past.fetch_max(secs, Ordering::Relaxed);
    }

    /// Adds `revocations` at `now` (one that matches only expired tokens is
    /// skipped; one already held is widened). Beyond the cap, first what
    /// expired leaves, then the entries nearest their end, raising the floor.
    /// True when the set now refuses more than before.
    pub fn insert(&self, revocations: &[Revocation], now: i64) -> bool {
        let keep_past = self.keep_past.load(Ordering::Relaxed);
        let mut inner = self.write();
        let mut more = false;
        for r in revocations {
            if r.until.saturating_add(keep_past) <= now || r.issued_before <= inner.floor {
                continue;
            }
            let fresh = Entry {
                issued_before: r.issued_before,
                until: r.until,
            };
            match inner.entries.entry(self.key(r.kind, &r.value)) {
                Slot::Vacant(slot) => {
                    slot.insert(fresh);
                    more = true;
                }
                Slot::Occupied(mut slot) => {
                    let held = slot.get_mut();
                    more |= fresh.issued_before > held.issued_before;
                    held.issued_before = held.issued_before.max(fresh.issued_before);
                    held.until = held.until.max(fresh.until);
                }
            }
        }
        if inner.entries.len() > self.max_entries {
            prune_locked(&mut inner, now, keep_past);
        }
        if inner.entries.len() > self.max_entries {
            more |= self.evict(&mut inner);
        }
        if more {
            self.generation.fetch_add(1, Ordering::Release);
        }
        more
    }

    /// Drops the entries whose tokens have all expired at `now` (their
    /// `until` plus the leeway they must cover); how many. Refuses nothing
    /// more, so the generation stays.
    pub fn prune(&self, now: i64) -> usize {
        let keep_past = self.keep_past.load(Ordering::Relaxed);
        prune_locked(&mut self.write(), now, keep_past)
    }

    /// What the set can match in a token with these claims.
    pub fn revocable(
        &self,
        jti: &str,
        family: Option<&str>,
        sub: &str,
        client: Option<&str>,
        iat: i64,
    ) -> Revocable {
        Revocable {
            jti: self.key(Kind::Jti, jti),
            family: family.map(|f| self.key(Kind::Family, f)),
            sub: self.key(Kind::Subject, sub),
            client: client.map(|c| self.key(Kind::Client, c)),
            iat,
            checked: AtomicU64::new(0),
        }
    }

    /// Whether the token `token` describes may pass. While the set has not
    /// changed since the token was last found clean: one atomic load.
    pub fn admits(&self, token: &Revocable) -> bool {
        let generation = self.generation();
        if token.checked.load(Ordering::Relaxed) == generation {
            return true;
        }
        if self.refuses(token) {
            return false;
        }
        // A change after the load above bumped the generation past this one:
        // the next request checks again.
        token.checked.store(generation, Ordering::Relaxed);
        true
    }

    /// Whether an entry (or the floor) matches the token.
    fn refuses(&self, t: &Revocable) -> bool {
        let inner = self.read();
        if t.iat <= inner.floor {
            return true;
        }
        let held = |key: u64| inner.entries.get(&key);
        let any = |key: u64| held(key).is_some();
        let issued_by = |key: u64| held(key).is_some_and(|e| t.iat <= e.issued_before);
        any(t.jti)
            || t.family.is_some_and(any)
            || issued_by(t.sub)
            || t.client.is_some_and(issued_by)
    }

    /// Drops the entries nearest their end until the set is a sixteenth
    /// below its cap (so that a full set does not sort on every insert), and
    /// raises the floor over what they covered; entries the new floor covers
    /// go too. True when the floor rose.
    fn evict(&self, inner: &mut Inner) -> bool {
        let target = self.max_entries - self.max_entries / 16;
        let excess = inner.entries.len().saturating_sub(target);
        if excess == 0 {
            return false;
        }
        let mut order: Vec<(i64, u64)> = inner.entries.iter().map(|(k, e)| (e.until, *k)).collect();
        order.select_nth_unstable(excess - 1);
        let mut floor = inner.floor;
        for (_, key) in &order[..excess] {
            if let Some(e) = inner.entries.remove(key) {
                floor = floor.max(e.issued_before);
            }
        }
        let before = inner.entries.len();
        inner.entries.retain(|_, e| e.issued_before > floor);
        let dropped = excess + (before - inner.entries.len());
        self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        let rose = floor > inner.floor;
        inner.floor = floor;
        rose
    }

    fn key(&self, kind: Kind, value: &str) -> u64 {
        self.keys.hash_one((kind, value))
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn prune_locked(inner: &mut Inner, now: i64, keep_past: i64) -> usize {
    let before = inner.entries.len();
    inner
        .entries
        .retain(|_, e| e.until.saturating_add(keep_past) > now);
    before - inner.entries.len()
}

#[cfg(test)]
mod tests;
