//! Overload protection (`[transport] max_concurrent_requests`, `max_queue_delay_ms`): calls
//! beyond the bound are refused at once with UNAVAILABLE (transient: retry with backoff, or
//! elsewhere) rather than queued, health still answers, and the bound frees up as calls
//! finish. When queue-delay shedding starts and stops is tested with synthetic times in
//! `src/server/admission.rs`.

use std::time::{Duration, Instant};

use crate::support::service::*;
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
    let gate = IssueGate::new();
    let server = TestServer::builder(limited_config(2))
        .issue_gate(&gate)
        .start()
        .await;
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
    let gate = IssueGate::new();
    let server = TestServer::builder(limited_config(8))
        .issue_gate(&gate)
        .start()
        .await;
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
            // A shed call is answered before its message is read, and the stream is then
            // reset (RST_STREAM NO_ERROR); a client whose message crosses that reset sees a
            // transport error, which tonic also reports as UNAVAILABLE (see benches/tools/loadgen.rs).
            Err((Code::Unavailable, message)) => {
                assert!(
                    message.contains("overloaded") || message.contains("h2 protocol error"),
                    "{message}"
                );
            }
            Err(other) => panic!("unexpected status {other:?}"),
        }
    }
    assert!(ok >= 1, "the first calls of a burst are always served");

    // Once the burst is over the server serves again. The queue bound is tight, so on a busy
    // machine (the whole test binary runs in one process) a single call may still be shed:
    // a few tries, and only UNAVAILABLE counts as "not yet".
    let mut client = pb::upload_signer_client::UploadSignerClient::new(channel);
    let mut last = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match client
            .issue_signature(authed(issue_request("after", Default::default()), FULL))
            .await
        {
            Ok(_) => return,
            Err(status) if status.code() == Code::Unavailable => last = Some(status),
            Err(status) => panic!("unexpected status after the burst: {status:?}"),
        }
    }
    panic!("not served again after the burst: {last:?}");
}

const ISSUE_PATH: &str = "/vod.signer.v1.UploadSigner/IssueSignature";

/// Opens `n` IssueSignature streams on one new HTTP/2 connection: headers (with
/// `authorization` if given), no message. Returns what keeps the connection and the streams
/// open, and the streams' responses.
async fn bodiless_streams(
    addr: std::net::SocketAddr,
    n: usize,
    authorization: Option<&str>,
) -> (
    Vec<h2::SendStream<bytes::Bytes>>,
    Vec<h2::client::ResponseFuture>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let (mut sends, mut responses) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut request = http::Request::post(format!("http://{addr}{ISSUE_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        client = client.ready().await.unwrap();
        let (response, send) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        sends.push(send);
        responses.push(response);
    }
    (sends, responses)
}

/// The grpc-status of a response that comes as headers only (every refusal does).
async fn trailers_only_status(response: h2::client::ResponseFuture) -> Option<Code> {
    let response = response.await.ok()?;
    let code = response.headers().get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(code.parse().ok()?))
}

/// 20 real calls from a connection of their own, one after the other.
async fn twenty_real_calls(server: &TestServer) -> Vec<Result<(), Code>> {
    let mut client = server.signer().await;
    let mut results = Vec::new();
    for i in 0..20 {
        let result = client
            .issue_signature(authed(
                issue_request(&format!("real-{i}"), Default::default()),
                FULL,
            ))
            .await;
        results.push(result.map(drop).map_err(|s| s.code()));
    }
    results
}

#[tokio::test]
async fn streams_without_a_token_hold_no_place_that_callers_need() {
    // One connection may open all 256 streams (HTTP/2 would hold it back otherwise). Places
    // are what is tested: queue-delay shedding is off, since on a loaded machine a debug
    // build can queue the burst of streams past it (tested above and in admission.rs).
    let toml = standard_toml("[transport]\nmax_concurrent_streams = 300\nmax_queue_delay_ms = 0\n");
    let server = TestServer::start(config_from(&toml, &[("secret-key", SECRET_KEY)])).await;
    let (_held, responses) = bodiless_streams(server.addr, 256, None).await;
    let (_held_bad, bad_token) = bodiless_streams(server.addr, 16, Some("Bearer nope")).await;

    let results = twenty_real_calls(&server).await;
    assert!(
        results.iter().all(Result::is_ok),
        "real calls failed while tokenless streams were open: {results:?}"
    );
    // The tokenless streams were answered at once, before their message.
    for response in responses {
        let status = tokio::time::timeout(FAST, trailers_only_status(response))
            .await
            .expect("a tokenless stream is answered at once");
        assert_eq!(status, Some(Code::Unauthenticated));
    }
    for response in bad_token {
        let status = tokio::time::timeout(FAST, trailers_only_status(response))
            .await
            .expect("a stream with an unknown token is answered at once");
        assert_eq!(status, Some(Code::Unauthenticated));
    }
}

#[tokio::test]
async fn one_connection_cannot_take_every_place() {
    let toml = standard_toml(
        "[transport]\nmax_concurrent_streams = 300\nmax_concurrent_requests_per_connection = 64\nrequest_body_timeout_ms = 20000\nmax_queue_delay_ms = 0\n",
    );
    let server = TestServer::start(config_from(&toml, &[("secret-key", SECRET_KEY)])).await;
    let authorization = format!("Bearer {FULL}");
    // A known caller's connection opens 256 streams and never sends their messages.
    let (_held, responses) = bodiless_streams(server.addr, 256, Some(&authorization)).await;

    let results = twenty_real_calls(&server).await;
    assert!(
        results.iter().all(Result::is_ok),
        "real calls failed while one connection held its streams: {results:?}"
    );
    // Beyond its share, that connection's streams were refused at once; its share waits for
    // the messages.
    let answers: Vec<_> = responses
        .into_iter()
        .map(|response| tokio::spawn(trailers_only_status(response)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut refused, mut waiting) = (0, 0);
    for answer in answers {
        if answer.is_finished() {
            assert_eq!(answer.await.unwrap(), Some(Code::Unavailable));
            refused += 1;
        } else {
            answer.abort();
            waiting += 1;
        }
    }
    assert_eq!(refused, 256 - 64, "refused beyond the connection's share");
    assert_eq!(waiting, 64, "the connection's share waits for its messages");
}

#[tokio::test]
async fn a_message_that_does_not_follow_its_headers_ends_the_call() {
    let toml = standard_toml("[transport]\nrequest_body_timeout_ms = 300\n");
    let gate = IssueGate::new();
    let server = TestServer::builder(config_from(&toml, &[("secret-key", SECRET_KEY)]))
        .issue_gate(&gate)
        .start()
        .await;
    gate.release(100);
    let authorization = format!("Bearer {FULL}");
    let started = Instant::now();
    let (_held, responses) = bodiless_streams(server.addr, 1, Some(&authorization)).await;
    let response = responses.into_iter().next().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("the call ends at the body timeout")
        .unwrap();
    let elapsed = started.elapsed();
    let (head, mut body) = response.into_parts();
    let status = match head.headers.get("grpc-status") {
        Some(status) => (status.clone(), head.headers.get("grpc-message").cloned()),
        None => {
            while body.data().await.is_some() {}
            let trailers = body.trailers().await.unwrap().expect("trailers");
            (
                trailers["grpc-status"].clone(),
                trailers.get("grpc-message").cloned(),
            )
        }
    };
    assert_eq!(status.0, (Code::DeadlineExceeded as i32).to_string());
    let message = status.1.expect("a message");
    let message = percent_encoding::percent_decode(message.as_bytes()).decode_utf8_lossy();
    assert!(message.contains("request_body_timeout_ms"), "{message}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The place is free again: the server serves normally.
    let results = twenty_real_calls(&server).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
