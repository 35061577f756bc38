//! `[transport]` limits on the real server: request size, connection age; and the checks on
//! the values.

use std::time::{Duration, Instant};

use crate::support::ops::*;
use tonic::Code;
use vod_signer::config::Config;

#[tokio::test]
async fn requests_over_max_request_bytes_are_refused() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "[transport]\nmax_request_bytes = 2048",
        "",
    ));
    let server = start_metered(dir.load()).await;
    let mut client = server.signer().await;
    // Within the limit: answered (as not valid).
    assert!(!verify(&mut client, &"A".repeat(1500)).await.valid);
    let status = client
        .verify_signature(authed(
            vod_signer::proto::v1::VerifySignatureRequest {
                signature: "A".repeat(4096),
            },
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.stop().await;
}

/// Opens a bare HTTP/2 connection and reports whether the server closed it within `limit`.
async fn closed_by_server_within(addr: std::net::SocketAddr, limit: Duration) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::time::timeout(limit, connection).await.is_ok()
}

#[tokio::test]
async fn connections_are_closed_after_max_connection_age() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "[transport]\nmax_connection_age_seconds = 1",
        "",
    ));
    let aged = start_metered(dir.load()).await;
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let unlimited = start_metered(dir.load()).await;

    let (aged_closed, unlimited_closed) = tokio::join!(
        closed_by_server_within(aged.addr, Duration::from_secs(5)),
        closed_by_server_within(unlimited.addr, Duration::from_secs(2)),
    );
    assert!(aged_closed, "the connection outlived max_connection_age");
    assert!(
        !unlimited_closed,
        "without a max age an idle connection stays open"
    );

    // Clients reconnect transparently: calls keep working across the age limit.
    let mut client = aged.signer().await;
    issue(&mut client, "alice").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    issue(&mut client, "alice").await.unwrap();
    aged.stop().await;
    unlimited.stop().await;
}

#[tokio::test]
async fn calls_are_cut_at_call_timeout_even_without_a_client_deadline() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "[transport]\ncall_timeout_seconds = 1",
        "",
    ));
    // The gate holds every IssueSignature call until released: a stuck call.
    let gate = IssueGate::new();
    let server = TestServer::builder(dir.load())
        .metrics()
        .issue_gate(&gate)
        .start()
        .await;
    let mut client = server.signer().await;
    let started = Instant::now();
    let status = issue(&mut client, "alice").await.unwrap_err();
    let elapsed = started.elapsed();
    // The server's own cap is a deadline too: DEADLINE_EXCEEDED, not tonic's CANCELLED.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("deadline"), "{status:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    gate.release(1);
    let text = server.metrics().await;
    assert_eq!(
        series(
            &text,
            "vod_signer_grpc_requests_total{grpc_service=\"vod.signer.v1.UploadSigner\",grpc_method=\"IssueSignature\",grpc_code=\"DEADLINE_EXCEEDED\"}"
        ),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

/// Speaks just enough HTTP/2 to open a connection (preface and SETTINGS), then ignores
/// everything, PINGs included, and reports whether the server closed it within `limit`.
async fn unresponsive_peer_dropped_within(addr: std::net::SocketAddr, limit: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut buffer = [0u8; 4096];
    let read_until_closed = async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_until_closed).await.is_ok()
}

#[tokio::test]
async fn http2_keepalive_drops_peers_that_stop_answering() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "[transport]\nhttp2_keepalive_interval_seconds = 1\nhttp2_keepalive_timeout_seconds = 1",
        "",
    ));
    let keepalive = start_metered(dir.load()).await;
    dir.write_config(&config_toml(
        KEY_A,
        false,
        "[transport]\nhttp2_keepalive_interval_seconds = 0",
        "",
    ));
    let no_keepalive = start_metered(dir.load()).await;
    let (dropped, kept) = tokio::join!(
        unresponsive_peer_dropped_within(keepalive.addr, Duration::from_secs(8)),
        unresponsive_peer_dropped_within(no_keepalive.addr, Duration::from_secs(3)),
    );
    assert!(dropped, "a peer that ignores PINGs was not dropped");
    assert!(
        !kept,
        "without keepalive the idle peer should stay connected"
    );
    keepalive.stop().await;
    no_keepalive.stop().await;
}

#[test]
fn transport_values_are_checked() {
    let dir = ConfigDir::new();
    let load = |transport: &str| {
        dir.write_config(&config_toml(
            KEY_A,
            false,
            &format!("[transport]\n{transport}"),
            "",
        ));
        Config::load(&dir.config_path())
    };
    let config = load(
        "call_timeout_seconds = 5\nhttp2_keepalive_interval_seconds = 0\nhttp2_keepalive_timeout_seconds = 3\nmax_connection_age_seconds = 600\nmax_request_bytes = 8192\nmax_queue_delay_ms = 50",
    )
    .unwrap();
    let transport = config.transport;
    assert_eq!(transport.call_timeout, Duration::from_secs(5));
    assert_eq!(transport.http2_keepalive_interval, None);
    assert_eq!(transport.http2_keepalive_timeout, Duration::from_secs(3));
    assert_eq!(transport.max_connection_age, Some(Duration::from_secs(600)));
    assert_eq!(transport.max_request_bytes, 8192);
    assert_eq!(transport.max_queue_delay, Some(Duration::from_millis(50)));
    let unbounded = load("max_queue_delay_ms = 0").unwrap().transport;
    assert_eq!(unbounded.max_queue_delay, None);

    for (bad, field) in [
        ("call_timeout_seconds = 0", "transport.call_timeout_seconds"),
        (
            "call_timeout_seconds = 301",
            "transport.call_timeout_seconds",
        ),
        (
            "http2_keepalive_timeout_seconds = 0",
            "transport.http2_keepalive_timeout_seconds",
        ),
        ("max_request_bytes = 10", "transport.max_request_bytes"),
        ("max_queue_delay_ms = 60001", "transport.max_queue_delay_ms"),
        (
            "handshake_timeout_seconds = 0",
            "transport.handshake_timeout_seconds",
        ),
        (
            "handshake_timeout_seconds = 61",
            "transport.handshake_timeout_seconds",
        ),
        (
            "request_body_timeout_ms = 0",
            "transport.request_body_timeout_ms",
        ),
        ("max_connections = 0", "transport.max_connections"),
        ("max_health_watches = 0", "transport.max_health_watches"),
        (
            "max_concurrent_requests = 10\nmax_concurrent_requests_per_connection = 11",
            "transport.max_concurrent_requests_per_connection",
        ),
        ("no_such_knob = 1", "no_such_knob"),
    ] {
        let error = load(bad).unwrap_err();
        assert_eq!(error.field_name(), Some(field), "{bad}: {error}");
    }

    // Defaults: 30 s calls, keepalive every 30 s, no age limit, 64 KiB requests, 20 ms queue.
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let defaults = Config::load(&dir.config_path()).unwrap().transport;
    assert_eq!(defaults.call_timeout, Duration::from_secs(30));
    assert_eq!(
        defaults.http2_keepalive_interval,
        Some(Duration::from_secs(30))
    );
    assert_eq!(defaults.max_connection_age, None);
    assert_eq!(defaults.max_request_bytes, 64 * 1024);
    assert_eq!(defaults.max_queue_delay, Some(Duration::from_millis(20)));
    // Connections: 5 s to handshake, 1,024 of them, 64 streams and 64 calls in flight each;
    // 5 s for a message to follow its headers; 64 health watches.
    assert_eq!(defaults.handshake_timeout, Duration::from_secs(5));
    assert_eq!(defaults.max_connections, 1024);
    assert_eq!(defaults.max_concurrent_streams, Some(64));
    assert_eq!(defaults.max_concurrent_requests_per_connection, Some(64));
    assert_eq!(defaults.request_body_timeout, Duration::from_secs(5));
    assert_eq!(defaults.max_health_watches, 64);

    // The default share never exceeds a smaller whole; 0 turns the share off.
    let small = load("max_concurrent_requests = 16").unwrap().transport;
    assert_eq!(small.max_concurrent_requests_per_connection, Some(16));
    let no_share = load("max_concurrent_requests_per_connection = 0")
        .unwrap()
        .transport;
    assert_eq!(no_share.max_concurrent_requests_per_connection, None);
    let set = load(
        "handshake_timeout_seconds = 2\nrequest_body_timeout_ms = 750\nmax_connections = 10\nmax_health_watches = 3",
    )
    .unwrap()
    .transport;
    assert_eq!(set.handshake_timeout, Duration::from_secs(2));
    assert_eq!(set.request_body_timeout, Duration::from_millis(750));
    assert_eq!(set.max_connections, 10);
    assert_eq!(set.max_health_watches, 3);
}

#[test]
fn quota_and_metrics_values_are_checked() {
    let dir = ConfigDir::new();
    let load = |extra: &str, caller: &str| {
        dir.write_config(&config_toml(KEY_A, false, extra, caller));
        Config::load(&dir.config_path())
    };
    for (extra, caller, field) in [
        (
            "[quota]\non_store_error = \"maybe\"",
            "",
            "quota.on_store_error",
        ),
        (
            "[quota]\nredis_url = \"http://redis\"",
            "",
            "quota.redis_url",
        ),
        (
            "[quota]\nstore_timeout_ms = 0",
            "",
            "quota.store_timeout_ms",
        ),
        ("metrics_listen = \"not an address\"", "", "metrics_listen"),
    ] {
        let error = load(extra, caller).unwrap_err();
        assert_eq!(error.field_name(), Some(field), "{extra}: {error}");
    }
    let error = load("", "issue_per_user_per_minute = 0").unwrap_err();
    assert!(
        error
            .field_name()
            .is_some_and(|f| f.starts_with("callers[0].issue_per_user_per_minute")),
        "{error}"
    );
    // A password in the Redis URL never shows in Debug output.
    let config = load(
        "[quota]\nredis_url = \"redis://:hunter2@127.0.0.1:6379/\"",
        "issue_per_user_per_minute = 10",
    )
    .unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
    assert_eq!(
        config
            .callers
            .iter()
            .next()
            .unwrap()
            .policy()
            .issue_per_user_per_minute
            .map(|n| n.get()),
        Some(10)
    );
}
