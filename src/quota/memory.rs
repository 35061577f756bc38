//! The in-process quota store: one counter per caller and user, for the current window only.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Decision, StoreError, window_of};

/// Default bound on distinct (caller, user) pairs counted in one window. An entry is about
/// 100 bytes plus the caller name and user id: some 25 MiB with ids of a few dozen bytes, and
/// at worst (every id 256 four-byte characters) about 250 MiB.
pub const DEFAULT_MAX_KEYS: usize = 200_000;

/// Counters in a sharded concurrent map: calls for different users rarely touch the same
/// shard lock, and there is no lock over the whole map on the hot path.
///
/// Memory stays bounded two ways: entries of past windows are dropped once per window (by
/// whichever call first sees the new window), and no more than `max_keys` pairs are counted
/// in one window; past that a new pair is a [`StoreError::Full`], which `on_store_error`
/// turns into allow or deny like any other store failure.
pub struct MemoryStore {
    counts: DashMap<Box<str>, Slot>,
    /// Approximate entry count, kept beside the map because `DashMap::len` locks every shard
    /// and would deadlock while an entry of the same shard is held.
    entries: AtomicUsize,
    max_keys: usize,
    swept_window: AtomicI64,
}

struct Slot {
    window: i64,
    used: u64,
}

impl MemoryStore {
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            counts: DashMap::new(),
            entries: AtomicUsize::new(0),
            max_keys,
            swept_window: AtomicI64::new(i64::MIN),
        }
    }

    /// How many (caller, user) pairs are held, including stale ones not yet swept.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub(super) fn take(
        &self,
        caller: &str,
        user: &str,
        cost: u32,
        limit: u32,
        now: i64,
    ) -> Result<Decision, StoreError> {
        let (window, retry_after) = window_of(now);
        self.sweep_before(window);
        let cost = u64::from(cost);
        let limit = u64::from(limit);

        // Caller names cannot contain control characters (the configuration refuses them),
        // so the first NUL separates the two parts unambiguously whatever the user id holds.
        let mut key = String::with_capacity(caller.len() + 1 + user.len());
        key.push_str(caller);
        key.push('\0');
        key.push_str(user);

        match self.counts.entry(key.into_boxed_str()) {
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                // A slot of a later window (the clock stepped back) keeps counting in that
                // window rather than being reset, which would hand out a second budget.
                if slot.window < window {
                    *slot = Slot { window, used: 0 };
                }
                if slot.used + cost > limit {
                    return Ok(Decision::Exhausted { retry_after });
                }
                slot.used += cost;
                Ok(Decision::Allowed { used: slot.used })
            }
            Entry::Vacant(entry) => {
                let held = self.entries.load(Ordering::Relaxed);
                if held >= self.max_keys {
                    return Err(StoreError::Full(held));
                }
                self.entries.fetch_add(1, Ordering::Relaxed);
                entry.insert(Slot { window, used: cost });
                Ok(Decision::Allowed { used: cost })
            }
        }
    }

    /// Drops the entries of windows before `window`, once per window.
    fn sweep_before(&self, window: i64) {
        let swept = self.swept_window.load(Ordering::Relaxed);
        if swept >= window
            || self
                .swept_window
                .compare_exchange(swept, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // `retain` locks one shard at a time, so calls on other shards go on meanwhile.
        self.counts.retain(|_, slot| slot.window >= window);
        self.entries.store(self.counts.len(), Ordering::Relaxed);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_MAX_KEYS)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are user ids; they stay out of Debug output.
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}
