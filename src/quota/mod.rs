//! Per-user issuance quotas: at most N signatures per caller and end user in each fixed
//! one-minute window (`issue_per_user_per_minute` in a caller's policy).
//!
//! Two stores keep the counts: `MemoryStore` in this process (one replica), and
//! [`RedisStore`] shared by every replica pointed at the same Redis, so that two replicas
//! behind a balancer enforce one budget. [`Quotas`] wraps a store with the operator's choice of
//! what to do when the store fails ([`OnStoreError`]); the service counts each [`QuotaOutcome`].
//!
//! Windows are numbered `unix_seconds / 60` from the issuing replica's clock. Replicas whose
//! clocks differ by a few seconds switch windows a few seconds apart; the count is still one
//! shared count per window number, so the budget is never multiplied by the replica count.

mod memory;
mod redis_store;

use std::fmt;
use std::time::Duration;

pub(crate) use memory::MemoryStore;
pub use redis_store::RedisStore;

use crate::logging::RateLimit;

/// Length of one quota window.
pub(crate) const WINDOW_SECONDS: i64 = 60;

/// How long a quota check may wait for Redis before it counts as a store failure. Issuance
/// is a few microseconds of work; an unreachable Redis must not turn it into seconds.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);

/// What issuance does when the quota store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Issue anyway: availability over the limit.
    Allow,
    /// Refuse with `UNAVAILABLE`: the limit over availability. The default, because a quota
    /// that silently stops applying is the one nobody notices.
    #[default]
    Deny,
}

impl OnStoreError {
    /// Parses the configuration value (`"allow"` or `"deny"`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "allow" => Some(OnStoreError::Allow),
            "deny" => Some(OnStoreError::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Allow => "allow",
            OnStoreError::Deny => "deny",
        }
    }
}

/// A store's answer to "may this user have `cost` more signatures now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Granted and counted; `used` is the window's count including this request.
    Allowed { used: u64 },
    /// Not granted (and not counted): the window has too few left. The next window starts
    /// after `retry_after`.
    Exhausted { retry_after: Duration },
    /// `cost` is more than the whole per-minute limit: no window can grant it.
    TooLarge,
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the quota store did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Redis refused or failed the call. Redis errors name the command and the server's
    /// message, never the URL (which may carry a password).
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("redis answered the quota script with an unexpected reply")]
    UnexpectedReply,
    /// Skipped without asking Redis: it failed moments ago (see [`RedisStore`]).
    #[error("redis failed less than {} ms ago; not retried yet", .0.as_millis())]
    CoolingDown(Duration),
    /// The in-process store holds as many users as it may for this caller this minute.
    #[error("the in-process quota store is full for this caller ({0} users in the current window)")]
    Full(usize),
    /// Only a store shared by the replicas (Redis) can lease `random` slots.
    #[error("the in-process quota store is not shared, so it cannot lease `random` slots")]
    NotShared,
}

/// The quota store: in this process, or shared through Redis.
pub enum QuotaStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl QuotaStore {
    /// Counts `cost` signatures for `user` of `caller` in the window of `now` (Unix seconds)
    /// if that keeps the window's count within `limit`.
    pub async fn take(
        &self,
        caller: &str,
        user: &str,
        cost: u32,
        limit: u32,
        now: i64,
    ) -> Result<Decision, StoreError> {
        if cost > limit {
            return Ok(Decision::TooLarge);
        }
        match self {
            QuotaStore::Memory(store) => store.take(caller, user, cost, limit, now),
            QuotaStore::Redis(store) => store.take(caller, user, cost, limit, now).await,
        }
    }

    /// Leases `size` slots of the `random` space that no other replica gets; returns the
    /// first (see [`RedisStore::lease_slots`]).
    pub(crate) async fn lease_slots(&self, size: u32) -> Result<u32, StoreError> {
        match self {
            QuotaStore::Memory(_) => Err(StoreError::NotShared),
            QuotaStore::Redis(store) => store.lease_slots(size).await,
        }
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            QuotaStore::Memory(_) => "memory",
            QuotaStore::Redis(_) => "redis",
        }
    }
}

impl fmt::Debug for QuotaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaStore::Memory(store) => f.debug_tuple("Memory").field(store).finish(),
            QuotaStore::Redis(store) => f.debug_tuple("Redis").field(store).finish(),
        }
    }
}

/// What the quota says about one issuance. Quotas decide and log; the caller counts the
/// outcome in its metrics, beside the signatures it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOutcome {
    Allowed,
    /// Over quota. `retry_after` is when the next window starts; `None` when the request
    /// asks for more than a whole window allows, so waiting does not help.
    Exhausted {
        retry_after: Option<Duration>,
    },
    /// The store failed and `on_store_error = "allow"`: issue without counting.
    AllowedWithoutStore,
    /// The store failed and `on_store_error = "deny"`.
    StoreUnavailable,
}

impl QuotaOutcome {
    /// Whether the issuance goes ahead.
    pub fn allows(self) -> bool {
        matches!(
            self,
            QuotaOutcome::Allowed | QuotaOutcome::AllowedWithoutStore
        )
    }

    /// Whether the store failed to answer.
    pub fn store_failed(self) -> bool {
        matches!(
            self,
            QuotaOutcome::AllowedWithoutStore | QuotaOutcome::StoreUnavailable
        )
    }
}

/// A store plus the policy for its failures; shared by all calls of a server.
#[derive(Debug)]
pub struct Quotas {
    store: QuotaStore,
    on_store_error: OnStoreError,
    /// During an outage every call fails: one line per call would drown everything else.
    warnings: RateLimit,
}

/// At most one store-failure warning per this interval; the metrics count every failure.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

impl Quotas {
    pub fn new(store: QuotaStore, on_store_error: OnStoreError) -> Self {
        Quotas {
            store,
            on_store_error,
            warnings: RateLimit::new(WARNING_INTERVAL),
        }
    }

    pub fn store(&self) -> &QuotaStore {
        &self.store
    }

    pub fn on_store_error(&self) -> OnStoreError {
        self.on_store_error
    }

    /// Decides whether `caller` may issue `cost` signatures for `user` now, counting them if
    /// so. Store failures are logged (rate-limited).
    pub async fn admit(
        &self,
        caller: &str,
        user: &str,
        cost: u32,
        limit: u32,
        now: i64,
    ) -> QuotaOutcome {
        match self.store.take(caller, user, cost, limit, now).await {
            Ok(Decision::Allowed { .. }) => QuotaOutcome::Allowed,
            Ok(Decision::Exhausted { retry_after }) => QuotaOutcome::Exhausted {
                retry_after: Some(retry_after),
            },
            Ok(Decision::TooLarge) => QuotaOutcome::Exhausted { retry_after: None },
            Err(error) => {
                self.warn(caller, &error);
                match self.on_store_error {
                    OnStoreError::Allow => QuotaOutcome::AllowedWithoutStore,
                    OnStoreError::Deny => QuotaOutcome::StoreUnavailable,
                }
            }
        }
    }
}

impl Quotas {
    /// Logs a store failure, at most once per [`WARNING_INTERVAL`], with how many went
    /// unlogged since the last line. The user id is not logged: the line is about the store.
    fn warn(&self, caller: &str, error: &StoreError) {
        let Some(suppressed) = self.warnings.due() else {
            return;
        };
        tracing::warn!(
            store = self.store.kind(),
            caller,
            on_store_error = self.on_store_error.as_str(),
            error = %error,
            similar_failures_not_logged = suppressed,
            "quota store failed; applying on_store_error"
        );
    }
}

/// The window `now` falls in, and how long until the next one starts (1 to 60 s).
pub(crate) fn window_of(now: i64) -> (i64, Duration) {
    let window = now.div_euclid(WINDOW_SECONDS);
    let next = (window + 1) * WINDOW_SECONDS;
    (window, Duration::from_secs((next - now) as u64))
}

#[cfg(test)]
mod tests;
