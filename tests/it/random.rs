//! `random` is unique across a fleet, not only within one process: replicas sharing a Redis
//! lease disjoint blocks of the slot space, replicas with distinct `instance_id` own disjoint
//! shares of it; and with Redis down, one-time signatures are refused rather than risked.
//!
//! Before this, each replica drew from a sequence of its own: 3 replicas × 80,000 values
//! collide about 4.5 times on average (birthday bound over 2^32), so the checks below would
//! fail with a probability of about 99%.

use std::collections::HashSet;

use crate::support::ops::*;
use crate::support::redis::RedisServer;
use tonic::Code;
use vod_signer::proto::v1 as pb;

const REPLICAS: usize = 3;
/// A loaded test machine must not shed these calls: this is about `random`, not overload.
const NO_SHEDDING: &str = "[transport]\nmax_queue_delay_ms = 0\n";
const BATCHES: usize = 800;
const PER_BATCH: u32 = 100;

fn one_time(user: &str, one_time_valid: bool) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id: user.to_owned(),
        validity_seconds: 600,
        params: Some(pb::UploadParams {
            one_time_valid,
            ..pb::UploadParams::default()
        }),
    }
}

/// Every `random` that `BATCHES` one-time batches from `server` got.
async fn randoms(server: &TestServer) -> Vec<u32> {
    let mut client = server.signer().await;
    let mut values = Vec::with_capacity(BATCHES * PER_BATCH as usize);
    for i in 0..BATCHES {
        let batch = client
            .issue_signature_batch(authed(
                pb::IssueSignatureBatchRequest {
                    request: Some(one_time(&format!("user-{i}"), true)),
                    count: PER_BATCH,
                },
                TOKEN,
            ))
            .await
            .expect("the batch is issued")
            .into_inner();
        values.extend(batch.signatures.iter().map(|s| s.random));
    }
    values
}

async fn assert_fleet_unique(servers: &[TestServer]) {
    let all = futures_join(servers).await;
    let mut seen = HashSet::with_capacity(REPLICAS * BATCHES * PER_BATCH as usize);
    let repeats = all.iter().flatten().filter(|v| !seen.insert(**v)).count();
    assert_eq!(repeats, 0, "random repeated across replicas");
    assert_eq!(seen.len(), REPLICAS * BATCHES * PER_BATCH as usize);
}

async fn futures_join(servers: &[TestServer]) -> Vec<Vec<u32>> {
    let (a, b, c) = tokio::join!(
        randoms(&servers[0]),
        randoms(&servers[1]),
        randoms(&servers[2])
    );
    vec![a, b, c]
}

#[tokio::test]
async fn replicas_sharing_redis_never_repeat_a_random() {
    let redis = RedisServer::start();
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        &format!("{NO_SHEDDING}[quota]\nredis_url = \"{}\"\n", redis.url()),
        "",
    ));
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        servers.push(start_metered(dir.load()).await);
    }
    assert_fleet_unique(&servers).await;
}

#[tokio::test]
async fn replicas_with_distinct_instance_ids_never_repeat_a_random() {
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for id in [0, 1, 1023] {
        let dir = ConfigDir::new();
        dir.write_config(&config_toml(
            KEY_A,
            false,
            &format!("instance_id = {id}\n{NO_SHEDDING}"),
            "",
        ));
        servers.push(start_metered(dir.load()).await);
        dirs.push(dir);
    }
    assert_fleet_unique(&servers).await;
}

#[tokio::test]
async fn instance_id_out_of_range_is_refused_naming_the_key() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "instance_id = 1024", ""));
    let error = vod_signer::config::Config::load(&dir.config_path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("instance_id") && error.contains("1023"),
        "{error}"
    );
}

#[tokio::test]
async fn with_redis_down_one_time_signatures_are_refused_and_others_issued() {
    let mut redis = RedisServer::start();
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        &format!(
            "[quota]\nredis_url = \"{}\"\nstore_timeout_ms = 200\n",
            redis.url()
        ),
        "",
    ));
    redis.stop();
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    let refused = client
        .issue_signature(authed(one_time("alice", true), TOKEN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("one-time"),
        "{}",
        refused.message()
    );
    let issued = client
        .issue_signature(authed(one_time("alice", false), TOKEN))
        .await
        .expect("a signature that may repeat needs no lease");
    assert!(
        verify(&mut client, &issued.into_inner().signature)
            .await
            .valid
    );

    // Redis back: one-time issuance resumes (after the store's short cooldown).
    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match client
            .issue_signature(authed(one_time("alice", true), TOKEN))
            .await
        {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                assert!(
                    std::time::Instant::now() < deadline,
                    "never resumed: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    server.stop().await;
}
