//! Per-user quotas through the real gRPC server: one budget across two server instances
//! sharing a real Redis, RESOURCE_EXHAUSTED with RetryInfo, windows, batches, reloaded
//! limits, and a Redis that goes away (on_store_error allow and deny).

use std::time::Duration;

use crate::support::ops::*;
use crate::support::redis::RedisServer;
use tonic::Code;
use tonic_types::StatusExt;
use vod_signer::proto::v1 as pb;

/// The start of a quota window, for servers on a manual clock.
const T0: i64 = 1_800_000_000;

fn quota_dir(redis_url: Option<&str>, on_store_error: &str, limit: u32) -> ConfigDir {
    let dir = ConfigDir::new();
    let quota = match redis_url {
        Some(url) => format!(
            "[quota]\nredis_url = \"{url}\"\non_store_error = \"{on_store_error}\"\nstore_timeout_ms = 200\n"
        ),
        None => format!("[quota]\non_store_error = \"{on_store_error}\"\n"),
    };
    dir.write_config(&config_toml(
        KEY_A,
        false,
        &quota,
        &format!("issue_per_user_per_minute = {limit}"),
    ));
    dir
}

/// A server of `dir`'s configuration with metrics, on the test's `clock`.
async fn start_on(dir: &ConfigDir, clock: &ManualClock) -> TestServer {
    TestServer::builder(dir.load())
        .metrics()
        .clock(clock)
        .start()
        .await
}

#[tokio::test]
async fn two_servers_sharing_one_redis_enforce_one_limit_with_retry_info() {
    let redis = RedisServer::start();
    let dir = quota_dir(Some(&redis.url()), "deny", 3);
    let clock = ManualClock::new(T0 + 15);
    let a = start_on(&dir, &clock).await;
    let b = start_on(&dir, &clock).await;
    let (mut client_a, mut client_b) = (a.signer().await, b.signer().await);

    issue(&mut client_a, "alice").await.unwrap();
    issue(&mut client_b, "alice").await.unwrap();
    issue(&mut client_a, "alice").await.unwrap();
    for client in [&mut client_a, &mut client_b] {
        let status = issue(client, "alice").await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let retry = status
            .get_details_retry_info()
            .expect("RESOURCE_EXHAUSTED carries google.rpc.RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(45)));
        let info = status.get_details_error_info().expect("and ErrorInfo");
        assert_eq!(info.reason, "QUOTA_EXHAUSTED");
    }
    // Another user is unaffected; verification is never limited.
    let bob = issue(&mut client_b, "bob").await.unwrap();
    assert!(verify(&mut client_a, &bob.signature).await.valid);

    // The next window has a fresh budget on both servers.
    clock.set(T0 + 60);
    issue(&mut client_b, "alice").await.unwrap();

    let text = a.metrics().await;
    assert_eq!(
        series(&text, "vod_signer_quota_rejections_total{caller=\"bff\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "vod_signer_grpc_requests_total{grpc_service=\"vod.signer.v1.UploadSigner\",grpc_method=\"IssueSignature\",grpc_code=\"RESOURCE_EXHAUSTED\"}"
        ),
        Some(1.0)
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_batch_takes_its_whole_count_or_nothing() {
    let dir = quota_dir(None, "deny", 5);
    let clock = ManualClock::new(T0);
    let server = start_on(&dir, &clock).await;
    let mut client = server.signer().await;
    let batch = |count| {
        authed(
            pb::IssueSignatureBatchRequest {
                request: Some(issue_request("alice")),
                count,
            },
            TOKEN,
        )
    };
    client.issue_signature_batch(batch(4)).await.unwrap();
    let status = client.issue_signature_batch(batch(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // The refused batch used nothing: one more single signature still fits.
    issue(&mut client, "alice").await.unwrap();

    // A batch larger than the whole limit can never succeed, so no RetryInfo is offered.
    let status = client
        .issue_signature_batch(authed(
            pb::IssueSignatureBatchRequest {
                request: Some(issue_request("bob")),
                count: 6,
            },
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.get_details_retry_info().is_none());
    server.stop().await;
}

#[tokio::test]
async fn redis_down_with_deny_refuses_issuance_as_unavailable() {
    let mut redis = RedisServer::start();
    let dir = quota_dir(Some(&redis.url()), "deny", 100);
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    let issued = issue(&mut client, "alice").await.unwrap();

    redis.stop();
    let status = issue(&mut client, "alice").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Verification does not depend on the quota store.
    assert!(verify(&mut client, &issued.signature).await.valid);
    let text = server.metrics().await;
    assert_eq!(
        series(
            &text,
            "vod_signer_quota_store_errors_total{store=\"redis\",on_store_error=\"deny\"}"
        ),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn redis_down_with_allow_keeps_issuing_and_counts_the_failures() {
    let mut redis = RedisServer::start();
    let dir = quota_dir(Some(&redis.url()), "allow", 1);
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();

    redis.stop();
    // Over the limit of 1, but the store cannot say so: issued, as configured.
    issue(&mut client, "alice").await.unwrap();
    issue(&mut client, "alice").await.unwrap();
    let text = server.metrics().await;
    assert_eq!(
        series(
            &text,
            "vod_signer_quota_store_errors_total{store=\"redis\",on_store_error=\"allow\"}"
        ),
        Some(2.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_starts_while_redis_is_unreachable() {
    let port = RedisServer::start().port(); // started and stopped again: nothing listens
    let dir = quota_dir(Some(&format!("redis://127.0.0.1:{port}/")), "deny", 5);
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    assert_eq!(
        issue(&mut client, "alice").await.unwrap_err().code(),
        Code::Unavailable
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reload_changes_the_limit() {
    let dir = quota_dir(None, "deny", 1);
    let clock = ManualClock::new(T0);
    let server = start_on(&dir, &clock).await;
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();
    assert!(issue(&mut client, "alice").await.is_err());

    dir.write_config(&config_toml(
        KEY_A,
        false,
        "",
        "issue_per_user_per_minute = 3",
    ));
    server.reload.reload().await.unwrap();
    issue(&mut client, "alice").await.unwrap();
    issue(&mut client, "alice").await.unwrap();
    assert_eq!(
        issue(&mut client, "alice").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    server.stop().await;
}
