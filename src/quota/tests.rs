//! The in-process store and the pieces shared with Redis; the Redis store itself is tested
//! against a real server in `tests/it/quota.rs`.

use std::time::Duration;

use super::redis_store::key;
use super::*;

/// The start of a window, so tests can step through it by seconds.
const T0: i64 = 1_700_000_040;

fn take(
    store: &MemoryStore,
    caller: &str,
    user: &str,
    cost: u32,
    limit: u32,
    now: i64,
) -> Decision {
    store
        .take(caller, user, cost, limit, now)
        .expect("the store is far from full")
}

#[test]
fn windows_are_aligned_minutes() {
    assert_eq!(T0 % WINDOW_SECONDS, 0);
    assert_eq!(window_of(T0), (T0 / 60, Duration::from_secs(60)));
    assert_eq!(window_of(T0 + 59), (T0 / 60, Duration::from_secs(1)));
    assert_eq!(window_of(T0 + 60), (T0 / 60 + 1, Duration::from_secs(60)));
}

#[test]
fn memory_store_counts_each_caller_and_user_apart() {
    let store = MemoryStore::new(100);
    for used in 1..=3 {
        assert_eq!(
            take(&store, "bff", "alice", 1, 3, T0 + 1),
            Decision::Allowed { used }
        );
    }
    assert_eq!(
        take(&store, "bff", "alice", 1, 3, T0 + 20),
        Decision::Exhausted {
            retry_after: Duration::from_secs(40)
        }
    );
    // Other users and other callers have budgets of their own.
    assert_eq!(
        take(&store, "bff", "bob", 1, 3, T0 + 20),
        Decision::Allowed { used: 1 }
    );
    assert_eq!(
        take(&store, "cms", "alice", 1, 3, T0 + 20),
        Decision::Allowed { used: 1 }
    );
    // A NUL in a user id cannot make one pair look like another.
    assert_eq!(
        take(&store, "bff", "alice\0x", 1, 3, T0 + 20),
        Decision::Allowed { used: 1 }
    );
}

#[test]
fn memory_store_starts_over_in_the_next_window() {
    let store = MemoryStore::new(100);
    assert_eq!(
        take(&store, "bff", "alice", 2, 2, T0 + 59),
        Decision::Allowed { used: 2 }
    );
    assert_eq!(
        take(&store, "bff", "alice", 1, 2, T0 + 59),
        Decision::Exhausted {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(
        take(&store, "bff", "alice", 1, 2, T0 + 60),
        Decision::Allowed { used: 1 }
    );
}

#[test]
fn a_refused_request_is_not_counted() {
    let store = MemoryStore::new(100);
    assert_eq!(
        take(&store, "bff", "alice", 3, 5, T0),
        Decision::Allowed { used: 3 }
    );
    // A batch of 3 does not fit in the 2 left, and must not use them up either.
    assert!(matches!(
        take(&store, "bff", "alice", 3, 5, T0),
        Decision::Exhausted { .. }
    ));
    assert_eq!(
        take(&store, "bff", "alice", 2, 5, T0),
        Decision::Allowed { used: 5 }
    );
}

#[test]
fn memory_stays_bounded() {
    let store = MemoryStore::new(3);
    for user in ["a", "b", "c"] {
        take(&store, "bff", user, 1, 5, T0);
    }
    // A known pair is still counted when full; a new one is a store error.
    assert_eq!(
        take(&store, "bff", "a", 1, 5, T0 + 1),
        Decision::Allowed { used: 2 }
    );
    assert!(matches!(
        store.take("bff", "d", 1, 5, T0 + 1),
        Err(StoreError::Full(3))
    ));
    // The next window drops the old entries, so new users fit again.
    assert_eq!(
        take(&store, "bff", "d", 1, 5, T0 + 60),
        Decision::Allowed { used: 1 }
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn quota_store_refuses_a_request_larger_than_the_limit_without_counting() {
    let store = QuotaStore::Memory(MemoryStore::new(10));
    assert_eq!(
        store.take("bff", "alice", 11, 10, T0).await.unwrap(),
        Decision::TooLarge
    );
    assert_eq!(
        store.take("bff", "alice", 10, 10, T0).await.unwrap(),
        Decision::Allowed { used: 10 }
    );
}

#[tokio::test]
async fn admit_applies_on_store_error() {
    for (policy, expected) in [
        (OnStoreError::Allow, QuotaOutcome::AllowedWithoutStore),
        (OnStoreError::Deny, QuotaOutcome::StoreUnavailable),
    ] {
        // A full store is a store failure like an unreachable Redis.
        let store = MemoryStore::new(0);
        let quotas = Quotas::new(QuotaStore::Memory(store), policy);
        let outcome = quotas.admit("bff", "alice", 1, 5, T0).await;
        assert_eq!(outcome, expected);
        assert!(outcome.store_failed());
        assert_eq!(outcome.allows(), policy == OnStoreError::Allow);
    }
}

#[tokio::test]
async fn admit_reports_exhaustion_with_when_to_retry() {
    let quotas = Quotas::new(QuotaStore::Memory(MemoryStore::new(10)), OnStoreError::Deny);
    assert_eq!(
        quotas.admit("bff", "alice", 1, 1, T0).await,
        QuotaOutcome::Allowed
    );
    assert_eq!(
        quotas.admit("bff", "alice", 1, 1, T0 + 15).await,
        QuotaOutcome::Exhausted {
            retry_after: Some(Duration::from_secs(45))
        }
    );
    assert_eq!(
        quotas.admit("bff", "bob", 2, 1, T0).await,
        QuotaOutcome::Exhausted { retry_after: None }
    );
}

#[test]
fn redis_keys_escape_the_separator() {
    assert_eq!(key("bff", "alice", 7), "vod-signer:quota:bff:alice:7");
    assert_ne!(key("a:b", "c", 7), key("a", "b:c", 7));
    assert_eq!(key("a:b", "c%", 7), "vod-signer:quota:a%3Ab:c%25:7");
}

#[test]
fn on_store_error_parses_only_the_documented_values() {
    assert_eq!(OnStoreError::parse("allow"), Some(OnStoreError::Allow));
    assert_eq!(OnStoreError::parse("deny"), Some(OnStoreError::Deny));
    assert_eq!(OnStoreError::parse("Deny"), None);
    assert_eq!(OnStoreError::default(), OnStoreError::Deny);
}

#[tokio::test]
async fn store_failures_are_logged_at_most_once_a_second() {
    let quotas = Quotas::new(QuotaStore::Memory(MemoryStore::new(0)), OnStoreError::Deny);
    for _ in 0..5 {
        assert_eq!(
            quotas.admit("bff", "alice", 1, 5, T0).await,
            QuotaOutcome::StoreUnavailable
        );
    }
    // The first failure was logged; the next four, within the same second, were not.
    assert_eq!(quotas.warnings.unlogged(), 4);
}

#[tokio::test]
async fn one_callers_flood_of_users_never_changes_another_callers_answers() {
    let quotas = Quotas::new(QuotaStore::Memory(MemoryStore::new(3)), OnStoreError::Deny);
    // "flood" fills everything the store would hold for it...
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            quotas.admit("flood", user, 1, 5, T0).await,
            QuotaOutcome::Allowed
        );
    }
    // ...and its own next new user is refused by on_store_error = "deny",
    assert_eq!(
        quotas.admit("flood", "u4", 1, 5, T0 + 1).await,
        QuotaOutcome::StoreUnavailable
    );
    // while other callers' new users are counted as if "flood" did not exist.
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            quotas.admit("bff", user, 1, 5, T0 + 2).await,
            QuotaOutcome::Allowed
        );
    }
    assert_eq!(
        quotas.admit("cms", "alice", 1, 5, T0 + 2).await,
        QuotaOutcome::Allowed
    );
}
