//! argon2id: hashing and checking secrets (client secrets, passwords), and
//! the budgets that bound how many run at once.
//!
//! Each verification takes tens of milliseconds and 7 MiB on purpose, so the
//! work is rationed in three separate budgets, none of which can starve
//! another: client authentication (the token, revocation and introspection
//! endpoints), user login (`/login`), and administration (the CLI, the admin
//! API, declarative clients at start; one slot). A request of the first two
//! gets a slot, or waits for one at most [`MAX_WAIT`] in a queue of bounded
//! length; past either bound it is refused at once (503
//! `temporarily_unavailable` with `Retry-After`). One source address holds at
//! most a few of a budget's places (running or waiting) at a time; more is
//! refused at once (429), so a single address cannot take a budget. Waiters
//! are served first come, first served.
//!
//! An unknown email at `/login` must cost what a known one costs, or timing
//! would tell which accounts exist; but computing argon2 for it would let a
//! flood of made-up emails burn the CPU. [`Permit::imitate`] does neither:
//! it holds its slot (so queueing looks the same) for a duration replayed
//! from recent real verifications (so the time looks the same, drawn from the
//! same distribution), without computing anything. A flood of unknown emails
//! then occupies login slots — bounded by the per-source share, the throttle
//! and the bounded wait — but neither CPU nor memory, and never the token
//! endpoint's budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use super::throttle::Source;
use super::token::random_token;

/// The longest a request waits for a slot before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// Real verification durations kept for [`Permit::imitate`] to replay.
const SAMPLES: usize = 32;

/// argon2 computations for administration (CLI, admin API, declarative
/// clients at start): one at a time, beside the request budgets.
static ADMIN_SLOTS: Semaphore = Semaphore::const_new(1);

/// Why a budget refused a request (nothing was computed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot is taken and the queue is full or did not move within
    /// [`MAX_WAIT`]: everyone is refused for now (503).
    #[error("every argon2 slot is busy")]
    Busy,
    /// The source already holds its share of the budget (429).
    #[error("the source holds its share of argon2 slots")]
    SourceBusy,
}

/// How much of the machine a budget may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Computations at once.
    pub slots: usize,
    /// Places (running or waiting) one source may hold.
    pub per_source: usize,
    /// Requests waiting at once, across sources.
    pub max_waiting: usize,
}

/// Logins: two at once, one place per source (a person submits one form at
/// a time), sixteen waiting.
pub const LOGIN_LIMITS: Limits = Limits {
    slots: 2,
    per_source: 1,
    max_waiting: 16,
};

/// Client authentication: two at once; a client's connections often arrive
/// together with a secret not yet verified in this process, so one source
/// may queue four (the first verification answers the rest from memory).
pub const CLIENT_LIMITS: Limits = Limits {
    slots: 2,
    per_source: 4,
    max_waiting: 32,
};

/// One budget of argon2 slots.
pub struct Budget {
    name: &'static str,
    limits: Limits,
    slots: Semaphore,
    waiting: AtomicUsize,
    per_source: Mutex<HashMap<Source, usize>>,
    samples: Mutex<Vec<Duration>>,
    /// A hash of a random secret, verified when there is no sample to replay.
    decoy: OnceCell<String>,
}

/// A slot of a budget, held until dropped.
pub struct Permit<'a> {
    budget: &'a Budget,
    _slot: SemaphorePermit<'a>,
    _place: Place<'a>,
}

/// A source's place in a budget, given back when dropped (also when a wait
/// is cancelled).
struct Place<'a> {
    budget: &'a Budget,
    source: Source,
}

/// A waiter counted in the queue while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
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

/// Hashes now, on a blocking thread (the caller holds a slot).
async fn hash_now(secret: String) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        hasher()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// Verifies now, on a blocking thread (the caller holds a slot).
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

/// Hashes a client secret or a password with argon2id, for administration
/// (one at a time, beside the request budgets). `None` if hashing failed.
pub async fn hash_secret(secret: String) -> Option<String> {
    let _slot = ADMIN_SLOTS.acquire().await.ok()?;
    hash_now(secret).await
}

/// Checks `secret` against an argon2 PHC `hash`, for administration.
pub async fn verify_secret(secret: String, hash: String) -> bool {
    let Ok(_slot) = ADMIN_SLOTS.acquire().await else {
        return false;
    };
    verify_now(secret, hash).await
}

// === impl Budget ===

impl Budget {
    /// A budget named `name` (for logs) within `limits`.
    pub fn new(name: &'static str, limits: Limits) -> Budget {
        Budget {
            name,
            limits,
            slots: Semaphore::new(limits.slots),
            waiting: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            samples: Mutex::new(Vec::with_capacity(SAMPLES)),
            decoy: OnceCell::new(),
        }
    }

    /// A slot for a request from `source`: at once when one is free, after a
    /// wait of at most [`MAX_WAIT`] otherwise, or a refusal.
    pub async fn admit(&self, source: &Source) -> Result<Permit<'_>, Refusal> {
        let place = self.place(source)?;
        if let Ok(slot) = self.slots.try_acquire() {
            return Ok(self.permit(slot, place));
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if queued >= self.limits.max_waiting {
            tracing::warn!(budget = self.name, "argon2 queue full; request refused");
            return Err(Refusal::Busy);
        }
        match tokio::time::timeout(MAX_WAIT, self.slots.acquire()).await {
            Ok(Ok(slot)) => Ok(self.permit(slot, place)),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    budget = self.name,
                    "No argon2 slot within the wait bound; request refused"
                );
                Err(Refusal::Busy)
            }
        }
    }

    /// Computes the decoy hash and one verification against it, so that the
    /// first unknown email has a duration to replay (call once at start).
    pub async fn prepare(&self) {
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let decoy = self.decoy().await;
        let started = Instant::now();
        verify_now(random_token(16), decoy).await;
        self.record(started.elapsed());
    }

    fn place(&self, source: &Source) -> Result<Place<'_>, Refusal> {
        let mut held = self
            .per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(source.clone()).or_insert(0);
        if *count >= self.limits.per_source {
            return Err(Refusal::SourceBusy);
        }
        *count += 1;
        Ok(Place {
            budget: self,
            source: source.clone(),
        })
    }

    fn permit<'a>(&'a self, slot: SemaphorePermit<'a>, place: Place<'a>) -> Permit<'a> {
        Permit {
            budget: self,
            _slot: slot,
            _place: place,
        }
    }

    async fn decoy(&self) -> String {
        self.decoy
            .get_or_init(|| async { hash_now(random_token(16)).await.unwrap_or_default() })
            .await
            .clone()
    }

    fn record(&self, took: Duration) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.remove(0);
        }
        samples.push(took);
    }

    /// A recent real verification's duration, picked at random.
    fn sample(&self) -> Option<Duration> {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.is_empty() {
            return None;
        }
        let mut pick = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut pick);
        let i = usize::try_from(u32::from_le_bytes(pick)).unwrap_or(0) % samples.len();
        samples.get(i).copied()
    }

    /// Sources holding places now (for tests of the bookkeeping).
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.per_source.lock().map(|m| m.len()).unwrap_or(0)
    }
}

// === impl Permit ===

impl Permit<'_> {
    /// Checks `secret` against an argon2 PHC `hash`, and remembers how long
    /// it took.
    pub async fn verify(&self, secret: String, hash: String) -> bool {
        let started = Instant::now();
        let ok = verify_now(secret, hash).await;
        self.budget.record(started.elapsed());
        ok
    }

    /// Takes as long as a verification, computing nothing: a recent real
    /// verification's duration is replayed (or, with none yet, one is made
    /// against the decoy hash).
    pub async fn imitate(&self) {
        match self.budget.sample() {
            Some(took) => tokio::time::sleep(took).await,
            None => {
                let decoy = self.budget.decoy().await;
                self.verify(random_token(16), decoy).await;
            }
        }
    }
}

// === impl Place ===

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.source);
            }
        }
    }
}

// === impl Waiting ===

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
