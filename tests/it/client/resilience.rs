//! Deadlines, retries and balancing against real servers on loopback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::client::IssueGate;
use crate::support::client::{TOKEN, builder, free_addr, start, start_gated, start_on};
use tokio::net::TcpListener;
use vod_signer_client::{Error, IssueRequest, RetryPolicy};

#[tokio::test]
async fn a_call_made_before_the_server_is_up_succeeds_once_it_is() {
    let addr = free_addr().await;
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        start_on(addr, "AKIDlate").await
    });
    let client = builder(&[format!("http://{addr}")], TOKEN).build().unwrap();

    let started = Instant::now();
    let issued = client
        .issue(IssueRequest::for_user("u-1").deadline(Duration::from_secs(5)))
        .await
        .expect("retries ride out the late start");
    assert_eq!(issued.secret_id, "AKIDlate");
    // It really did wait for the server rather than reach some other one.
    assert!(started.elapsed() >= Duration::from_millis(450));
    starter.await.unwrap().stop().await;
}

#[tokio::test]
async fn nothing_listening_is_unavailable_within_the_deadline() {
    let addr = free_addr().await;
    let client = builder(&[format!("http://{addr}")], TOKEN).build().unwrap();
    let started = Instant::now();
    let err = client
        .issue(IssueRequest::for_user("u-1").deadline(Duration::from_millis(800)))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let Error::Unavailable { message } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("gave up after"), "{message}");
    assert!(err.to_string().starts_with("unavailable: "), "{err}");
    assert!(err.is_retryable());
    assert!(elapsed <= Duration::from_millis(1200), "{elapsed:?}");
}

#[tokio::test]
async fn without_retries_one_refused_connection_is_enough() {
    let addr = free_addr().await;
    let client = builder(&[format!("http://{addr}")], TOKEN)
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap();
    let err = client
        .issue(IssueRequest::for_user("u-1"))
        .await
        .unwrap_err();
    let Error::Unavailable { message } = &err else {
        panic!("{err:?}")
    };
    assert!(!message.contains("gave up after"), "{message}");
}

#[tokio::test]
async fn a_held_call_ends_at_its_deadline() {
    let gate = IssueGate::new();
    let server = start_gated("AKIDslow", &gate).await;
    let client = builder(&[server.url()], TOKEN).build().unwrap();

    let started = Instant::now();
    let err = client
        .issue(IssueRequest::for_user("u-1").deadline(Duration::from_millis(300)))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    assert!(err.to_string().starts_with("deadline exceeded: "), "{err}");
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // The same client works once the server lets calls through.
    gate.release(100);
    client.issue(IssueRequest::for_user("u-1")).await.unwrap();
}

#[tokio::test]
async fn a_tiny_deadline_is_deadline_exceeded() {
    let server = start("AKIDtiny").await;
    let client = builder(&[server.url()], TOKEN)
        .default_deadline(Duration::from_micros(1))
        .build()
        .unwrap();
    let err = client.verify("x").await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
}

#[tokio::test]
async fn a_peer_that_never_answers_cannot_outlast_the_deadline() {
    // Accepts TCP connections and never speaks HTTP/2: only the client's own timer can end
    // the call.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = builder(&[format!("http://{addr}")], TOKEN).build().unwrap();
    let started = Instant::now();
    let err = client
        .issue(IssueRequest::for_user("u").deadline(Duration::from_millis(400)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    silent.abort();
}

#[tokio::test]
async fn calls_are_spread_over_every_endpoint() {
    let a = start("AKIDserverA").await;
    let b = start("AKIDserverB").await;
    let client = builder(&[a.url(), b.url()], TOKEN).build().unwrap();
    let mut by_server: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        let issued = client.issue(IssueRequest::for_user("u-1")).await.unwrap();
        *by_server.entry(issued.secret_id).or_default() += 1;
    }
    // Round robin with both servers healthy: an even split.
    assert_eq!(by_server.get("AKIDserverA"), Some(&10), "{by_server:?}");
    assert_eq!(by_server.get("AKIDserverB"), Some(&10), "{by_server:?}");
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_by_retrying_on_the_next() {
    let live = start("AKIDlive").await;
    let dead = free_addr().await;
    let client = builder(&[format!("http://{dead}"), live.url()], TOKEN)
        .build()
        .unwrap();
    for _ in 0..6 {
        let issued = client
            .issue(IssueRequest::for_user("u-1").deadline(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(issued.secret_id, "AKIDlive");
    }
}

#[tokio::test]
async fn a_restarted_server_is_reached_again() {
    let first = start("AKIDrestart").await;
    let addr = first.addr;
    let client = builder(&[first.url()], TOKEN).build().unwrap();
    client.issue(IssueRequest::for_user("u")).await.unwrap();
    first.stop().await;

    let restarter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        start_on(addr, "AKIDrestart").await
    });
    client
        .issue(IssueRequest::for_user("u").deadline(Duration::from_secs(5)))
        .await
        .expect("the client reconnects to the restarted server");
    restarter.await.unwrap().stop().await;
}
