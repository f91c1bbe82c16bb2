//! A short-lived, per-process memory of the clients and API resources the
//! token endpoint reads on every request (`Store::get_client_recent`,
//! `Store::get_api_resource_recent`), so that a busy client costs no database
//! round trip.
//!
//! How fresh an answer is:
//! - a write in this process (a client created, upserted or deleted, a
//!   resource upserted) is seen at once: it moves the generation, and an
//!   entry of an older generation is never answered, including one read
//!   before the write committed and stored after it;
//! - a write in another process (a replica, `portcullis admin`) is seen
//!   within [`RECENT`]; a client's deletion sooner where its revocation fact
//!   arrives sooner (`Store::catalog_changed`);
//! - an unknown id is not remembered: it is looked up every time, as before.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{ApiResource, Client};

/// The longest a remembered client or resource is answered.
pub const RECENT: Duration = Duration::from_secs(1);

/// Entries per kind; past it the oldest half is dropped.
const MAX_ENTRIES: usize = 4096;

/// The remembered clients and resources of one store.
#[derive(Debug, Default)]
pub struct Memo {
    generation: AtomicU64,
    clients: Shelf<Client>,
    resources: Shelf<ApiResource>,
}

/// The generation a read began in: what it found is remembered only if no
/// write came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

#[derive(Debug)]
struct Shelf<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

#[derive(Debug)]
struct Entry<T> {
    value: Arc<T>,
    read_at: Instant,
    generation: u64,
}

// === impl Memo ===

impl Memo {
    /// The generation now, to pass to [`Memo::keep_client`] or
    /// [`Memo::keep_resource`] after the read it begins.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Forgets everything: a client or resource may have changed.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The client `id`, when read within [`RECENT`] and not changed here since.
    pub fn client(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .get(id, self.generation.load(Ordering::Acquire))
    }

    /// Remembers `client`, read in generation `read_in`.
    pub fn keep_client(&self, client: &Client, read_in: Generation) {
        let value = Arc::new(client.clone());
        self.clients
            .put(client.client_id.clone(), value, read_in, &self.generation);
    }

    /// The resource `identifier`, when read within [`RECENT`] and not changed
    /// here since.
    pub fn resource(&self, identifier: &str) -> Option<Arc<ApiResource>> {
        self.resources
            .get(identifier, self.generation.load(Ordering::Acquire))
    }

    /// Remembers `resource`, read in generation `read_in`.
    pub fn keep_resource(&self, resource: &ApiResource, read_in: Generation) {
        let value = Arc::new(resource.clone());
        self.resources.put(
            resource.identifier.clone(),
            value,
            read_in,
            &self.generation,
        );
    }
}

// === impl Shelf ===

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Shelf {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Shelf<T> {
    fn get(&self, key: &str, generation: u64) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        (entry.generation == generation && entry.read_at.elapsed() < RECENT)
            .then(|| entry.value.clone())
    }

    fn put(&self, key: String, value: Arc<T>, read_in: Generation, now: &AtomicU64) {
        let read_at = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock: a write that moved the generation after
        // this read is never hidden by it.
        if now.load(Ordering::Acquire) != read_in.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            evict(&mut entries);
        }
        entries.insert(
            key,
            Entry {
                value,
                read_at,
                generation: read_in.0,
            },
        );
    }
}

/// Drops the stale entries, or, when all are fresh, the older half.
fn evict<K: Hash + Eq, T>(entries: &mut HashMap<K, Entry<T>>) {
    entries.retain(|_, e| e.read_at.elapsed() < RECENT);
    if entries.len() >= MAX_ENTRIES {
        let mut ages: Vec<Instant> = entries.values().map(|e| e.read_at).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        entries.retain(|_, e| e.read_at > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(id: &str, scope: &str) -> ApiResource {
        ApiResource {
            identifier: id.into(),
            scopes: vec![scope.into()],
        }
    }

    #[test]
    fn a_write_hides_what_was_read_before_it() {
        let memo = Memo::default();
        let before = memo.generation();
        memo.keep_resource(&resource("a", "x"), before);
        assert_eq!(
            memo.resource("a").map(|r| r.scopes.clone()),
            Some(vec!["x".into()])
        );
        memo.changed();
        assert!(memo.resource("a").is_none());
        // A read that began before the write is not kept after it.
        memo.keep_resource(&resource("a", "x"), before);
        assert!(memo.resource("a").is_none());
        let after = memo.generation();
        memo.keep_resource(&resource("a", "y"), after);
        assert_eq!(
            memo.resource("a").map(|r| r.scopes.clone()),
            Some(vec!["y".into()])
        );
    }

    #[test]
    fn entries_are_bounded() {
        let memo = Memo::default();
        for i in 0..(MAX_ENTRIES * 3) {
            memo.keep_resource(&resource(&format!("r{i}"), "x"), memo.generation());
        }
        let held = memo.resources.entries.lock().unwrap().len();
        assert!(held <= MAX_ENTRIES, "{held}");
        assert!(
            memo.resource(&format!("r{}", MAX_ENTRIES * 3 - 1))
                .is_some()
        );
    }
}
