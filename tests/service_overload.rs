//! Overload protection (`[transport] max_concurrent_requests`, `max_queue_delay_ms`): calls
//! beyond the bound are refused at once with UNAVAILABLE (transient: retry with backoff, or
//! elsewhere) rather than queued, health still answers, and the bound frees up as calls
//! finish. When queue-delay shedding starts and stops is tested with synthetic times in
//! `src/server/admission.rs`.

mod service_support;

use std::time::{Duration, Instant};

use service_support::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vod_signer::proto::v1 as pb;

/// How long a refusal may take at most, on a loaded CI machine; it is microseconds unloaded.
const FAST: Duration = Duration::from_secs(1);

fn limited_config(max: u32) -> vod_signer::config::Config {
    // A table may come before `[[keys]]`: TOML tables end where the next one starts.
    let toml = standard_toml(&format!("[transport]\nmax_concurrent_requests = {max}\n"));
    config_from(&toml, &[("secret-key", SECRET_KEY)])
}

#[tokio::test]
async fn calls_over_the_bound_are_refused_at_once_with_unavailable() {
    let (server, gate) = TestServer::start_gated(limited_config(2)).await;
    let channel = server.channel().await;

    // Two calls take both places and wait at the gate.
    let mut held = Vec::new();
    for user in ["held-1", "held-2"] {
        let mut client = pb::upload_signer_client::UploadSignerClient::new(channel.clone());
        held.push(tokio::spawn(async move {
            client
                .issue_signature(authed(issue_request(user, Default::default()), FULL))
                .await
        }));
        gate.wait_for_arrival().await;
    }

    // Every further call, of any method, is refused without waiting.
    let mut client = pb::upload_signer_client::UploadSignerClient::new(channel.clone());
    for _ in 0..20 {
        let started = Instant::now();
        let status = client
            .issue_signature(authed(issue_request("excess", Default::default()), FULL))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            started.elapsed() < FAST,
            "refused after {:?}",
            started.elapsed()
        );
    }
    let status = client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: "bm90IGEgc2lnbmF0dXJl".into(),
            },
            FULL,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // Health is not behind the bound: a probe still learns the server is up.
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // The held calls complete normally, and their places are free again.
    gate.release(2);
    for call in held {
        call.await
            .unwrap()
            .expect("a held call succeeds once released");
    }
    gate.release(1);
    client
        .issue_signature(authed(issue_request("after", Default::default()), FULL))
        .await
        .expect("a place is free again");
}

#[tokio::test]
async fn a_burst_beyond_the_bound_gets_only_ok_or_unavailable() {
    let (server, gate) = TestServer::start_gated(limited_config(8)).await;
    let channel = server.channel().await;
    // Let every call through the gate: the bound alone decides.
    gate.release(10_000);

    let calls: Vec<_> = (0..400)
        .map(|i| {
            let mut client = pb::upload_signer_client::UploadSignerClient::new(channel.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = client
                    .issue_signature(authed(
                        issue_request(&format!("burst-{i}"), Default::default()),
                        FULL,
                    ))
                    .await;
                (result.map(drop).map_err(|s| s.code()), started.elapsed())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let (result, elapsed) = call.await.unwrap();
        match result {
            Ok(()) => ok += 1,
            Err(Code::Unavailable) => {
                refused += 1;
                assert!(
                    elapsed < Duration::from_secs(5),
                    "refused after {elapsed:?}"
                );
            }
            Err(other) => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!(ok + refused, 400);
    assert!(
        ok >= 8,
        "at least the bound's worth of calls succeed ({ok} did)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tight_queue_bound_a_burst_gets_only_ok_or_unavailable() {
    // 1 ms: on a debug build the burst below queues far longer, so shedding may start.
    let toml = standard_toml("[transport]\nmax_queue_delay_ms = 1\nmax_concurrent_requests = 0\n");
    let server = TestServer::start(config_from(&toml, &[("secret-key", SECRET_KEY)])).await;
    let channel = server.channel().await;
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let mut client = pb::upload_signer_client::UploadSignerClient::new(channel.clone());
            tokio::spawn(async move {
                client
                    .issue_signature(authed(
                        issue_request(&format!("queued-{i}"), Default::default()),
                        FULL,
                    ))
                    .await
                    .map(drop)
                    .map_err(|s| (s.code(), s.message().to_owned()))
            })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => ok += 1,
            Err((Code::Unavailable, message)) => {
                assert!(message.contains("overloaded"), "{message}");
            }
            Err(other) => panic!("unexpected status {other:?}"),
        }
    }
    assert!(ok >= 1, "the first calls of a burst are always served");

    // Once the burst is over the server serves again.
    let mut client = pb::upload_signer_client::UploadSignerClient::new(channel);
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .issue_signature(authed(issue_request("after", Default::default()), FULL))
        .await
        .expect("served after the burst");
}
