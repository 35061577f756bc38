//! The Redis quota store against a real `redis-server`: one budget for several replicas,
//! atomic under concurrency, windows that roll over, and a Redis that goes away.

use std::sync::Arc;
use std::time::Duration;

use crate::support::redis::RedisServer;
use vod_signer::quota::{
    DEFAULT_STORE_TIMEOUT, Decision, OnStoreError, QuotaOutcome, QuotaStore, Quotas, RedisStore,
};

/// The start of a window.
const T0: i64 = 1_700_000_040;

fn store(redis: &RedisServer) -> QuotaStore {
    QuotaStore::Redis(RedisStore::new(&redis.url(), DEFAULT_STORE_TIMEOUT).unwrap())
}

async fn take(store: &QuotaStore, user: &str, cost: u32, limit: u32, now: i64) -> Decision {
    store
        .take("bff", user, cost, limit, now)
        .await
        .expect("redis answers")
}

#[tokio::test]
async fn two_replicas_sharing_one_redis_enforce_one_limit() {
    let redis = RedisServer::start();
    // Two stores with their own connections: what two replicas of the service hold.
    let (a, b) = (store(&redis), store(&redis));
    assert_eq!(
        take(&a, "alice", 3, 5, T0).await,
        Decision::Allowed { used: 3 }
    );
    assert_eq!(
        take(&b, "alice", 2, 5, T0 + 1).await,
        Decision::Allowed { used: 5 }
    );
    for replica in [&a, &b] {
        assert_eq!(
            take(replica, "alice", 1, 5, T0 + 10).await,
            Decision::Exhausted {
                retry_after: Duration::from_secs(50)
            }
        );
    }
    // Another user has a budget of its own.
    assert_eq!(
        take(&b, "bob", 1, 5, T0 + 10).await,
        Decision::Allowed { used: 1 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_from_two_replicas_never_exceed_the_limit() {
    let redis = RedisServer::start();
    let replicas = Arc::new([store(&redis), store(&redis)]);
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let replicas = replicas.clone();
            tokio::spawn(async move { take(&replicas[i % 2], "alice", 1, 20, T0).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if let Decision::Allowed { .. } = task.await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 20);
}

#[tokio::test]
async fn the_next_window_has_a_new_budget_and_keys_expire() {
    let redis = RedisServer::start();
    let store = store(&redis);
    assert_eq!(
        take(&store, "alice", 2, 2, T0 + 59).await,
        Decision::Allowed { used: 2 }
    );
    assert_eq!(
        take(&store, "alice", 1, 2, T0 + 59).await,
        Decision::Exhausted {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(
        take(&store, "alice", 1, 2, T0 + 60).await,
        Decision::Allowed { used: 1 }
    );

    // The counters clean themselves up: every key has a TTL of about two windows.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("vod-signer:quota:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((60_000..=120_000).contains(&ttl), "{key}: {ttl} ms");
    }
}

#[tokio::test]
async fn a_refused_batch_does_not_use_up_the_budget() {
    let redis = RedisServer::start();
    let store = store(&redis);
    assert_eq!(
        take(&store, "alice", 3, 5, T0).await,
        Decision::Allowed { used: 3 }
    );
    assert!(matches!(
        take(&store, "alice", 3, 5, T0).await,
        Decision::Exhausted { .. }
    ));
    assert_eq!(
        take(&store, "alice", 2, 5, T0).await,
        Decision::Allowed { used: 5 }
    );
    assert_eq!(take(&store, "carol", 6, 5, T0).await, Decision::TooLarge);
}

#[tokio::test]
async fn redis_down_applies_on_store_error_quickly() {
    let mut redis = RedisServer::start();
    let allow = Quotas::new(store(&redis), OnStoreError::Allow);
    let deny = Quotas::new(store(&redis), OnStoreError::Deny);
    // Connected and working first, so the failure is Redis going away, not a bad URL.
    assert_eq!(
        allow.admit("bff", "alice", 1, 5, T0).await,
        QuotaOutcome::Allowed
    );
    assert_eq!(
        deny.admit("bff", "alice", 1, 5, T0).await,
        QuotaOutcome::Allowed
    );
    redis.stop();

    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(
            allow.admit("bff", "alice", 1, 5, T0).await,
            QuotaOutcome::AllowedWithoutStore
        );
        assert_eq!(
            deny.admit("bff", "alice", 1, 5, T0).await,
            QuotaOutcome::StoreUnavailable
        );
    }
    // Each failing check is bounded by the store timeout (and the cooldown skips Redis).
    assert!(
        started.elapsed() < DEFAULT_STORE_TIMEOUT * 6,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn counting_resumes_when_redis_comes_back() {
    let mut redis = RedisServer::start();
    let store = store(&redis);
    assert_eq!(
        take(&store, "alice", 1, 5, T0).await,
        Decision::Allowed { used: 1 }
    );
    redis.stop();
    assert!(store.take("bff", "alice", 1, 5, T0).await.is_err());

    // A restarted Redis is empty (no persistence); the same store reconnects by itself.
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match store.take("bff", "alice", 1, 5, T0).await {
            Ok(decision) => {
                assert_eq!(decision, Decision::Allowed { used: 1 });
                break;
            }
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "still failing after Redis came back: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        take(&store, "alice", 4, 5, T0).await,
        Decision::Allowed { used: 5 }
    );
}

#[tokio::test]
async fn redis_unreachable_from_the_start_does_not_stop_the_store_from_being_built() {
    // A port nothing listens on: the service must still start and apply on_store_error.
    let port = {
        let redis = RedisServer::start();
        redis.port()
    };
    let store = QuotaStore::Redis(
        RedisStore::new(&format!("redis://127.0.0.1:{port}/"), DEFAULT_STORE_TIMEOUT).unwrap(),
    );
    assert!(store.take("bff", "alice", 1, 5, T0).await.is_err());
}

#[test]
fn a_bad_url_is_refused_without_echoing_it() {
    let error = RedisStore::new("redis://:hunter2@[not-a-host/", DEFAULT_STORE_TIMEOUT)
        .expect_err("not a URL");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
