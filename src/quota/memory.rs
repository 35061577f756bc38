//! The in-process quota store: one counter per caller and user, for the current window only.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Decision, StoreError, window_of};

/// Default bound on distinct users counted for ONE caller in one window. An entry is about
/// 100 bytes plus the user id: some 12 MiB per caller with ids of a few dozen bytes, and at
/// worst (every id 256 four-byte characters) about 110 MiB per caller. Callers are the
/// configured ones only, so the total stays bounded by this times the caller count.
pub(super) const DEFAULT_MAX_KEYS: usize = 100_000;

/// Counters in sharded concurrent maps, one map per caller: calls for different users rarely
/// touch the same shard lock, and there is no lock over a whole map on the hot path.
///
/// Memory stays bounded two ways: entries of past windows are dropped once per window (by
/// whichever call first sees the new window), and no more than `max_keys` users are counted
/// for one caller in one window; past that the caller's new user is a [`StoreError::Full`],
/// which `on_store_error` turns into allow or deny like any other store failure.
///
/// The bound is per caller so that one caller flooding the store with user ids fills only its
/// own table: every other caller's answers stay exactly what they would have been.
pub struct MemoryStore {
    callers: DashMap<Box<str>, CallerTable>,
    max_keys: usize,
    swept_window: AtomicI64,
}

/// One caller's users.
#[derive(Default)]
struct CallerTable {
    users: DashMap<Box<str>, UserWindow>,
    /// Approximate entry count, kept beside the map because `DashMap::len` locks every shard
    /// and would deadlock while an entry of the same shard is held.
    entries: AtomicUsize,
}

struct UserWindow {
    window: i64,
    used: u64,
}

impl MemoryStore {
    /// A store counting at most `max_keys` users per caller in each window.
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            callers: DashMap::new(),
            max_keys,
            swept_window: AtomicI64::new(i64::MIN),
        }
    }

    /// How many (caller, user) pairs are held, including stale ones not yet swept.
    pub fn len(&self) -> usize {
        self.callers.iter().map(|table| table.users.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

        // The common case finds the caller under a shard read lock; only a caller's first
        // call takes the write lock to add its table.
        let table = match self.callers.get(caller) {
            Some(table) => table,
            None => self.callers.entry(caller.into()).or_default().downgrade(),
        };

        match table.users.entry(user.into()) {
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                // A slot of a later window (the clock stepped back) keeps counting in that
                // window rather than being reset, which would hand out a second budget.
                if slot.window < window {
                    *slot = UserWindow { window, used: 0 };
                }
                if slot.used + cost > limit {
                    return Ok(Decision::Exhausted { retry_after });
                }
                slot.used += cost;
                Ok(Decision::Allowed { used: slot.used })
            }
            Entry::Vacant(entry) => {
                let held = table.entries.load(Ordering::Relaxed);
                if held >= self.max_keys {
                    return Err(StoreError::Full(held));
                }
                table.entries.fetch_add(1, Ordering::Relaxed);
                entry.insert(UserWindow { window, used: cost });
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
        // Caller tables stay (callers are the configured few); their users go. `retain`
        // locks one shard at a time, so calls on other shards go on meanwhile.
        for table in self.callers.iter() {
            table.users.retain(|_, slot| slot.window >= window);
            table.entries.store(table.users.len(), Ordering::Relaxed);
        }
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
            .field("callers", &self.callers.len())
            .field("max_keys_per_caller", &self.max_keys)
            .finish()
    }
}
