//! Connections that cost the server without making calls: clients that never send the HTTP/2
//! preface or finish their TLS handshake, more connections than `max_connections`, idle and
//! half-open connections at shutdown, and health watches that stay open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::ops::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Waits (at most `limit`) for the server to close `tcp`: a read returns end of file or an
/// error. `false` if it is still open then.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(io: &mut S, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let until_closed = async {
        loop {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, until_closed).await.is_ok()
}

fn server_config(dir: &ConfigDir, transport: &str) -> vod_signer::config::Config {
    dir.write_config(&config_toml(
        KEY_A,
        false,
        &format!("[transport]\n{transport}"),
        "",
    ));
    dir.load()
}

#[tokio::test]
async fn a_client_that_never_sends_the_preface_is_dropped() {
    let dir = ConfigDir::new();
    let server = start_metered(server_config(&dir, "handshake_timeout_seconds = 1")).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    // Half of the preface, then nothing.
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let started = Instant::now();
    let (silent_closed, partial_closed) = tokio::join!(
        closed_within(&mut silent, Duration::from_secs(4)),
        closed_within(&mut partial, Duration::from_secs(4)),
    );
    assert!(
        silent_closed,
        "a silent connection outlived the handshake timeout"
    );
    assert!(partial_closed, "half a preface kept the connection open");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // A client that speaks HTTP/2 stays past the timeout and is served.
    let mut client = server.signer().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    issue(&mut client, "alice").await.unwrap();
    let metrics = server.metrics().await;
    assert_eq!(
        series(
            &metrics,
            "vod_signer_connections_closed_total{reason=\"handshake_timeout\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    server.stop().await;
}

/// A TLS client connector trusting `ca_pem`, offering ALPN h2.
fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn over_tls_a_silent_client_is_dropped_before_and_after_its_handshake() {
    let ca = TestCa::new("server CA");
    let dir = ConfigDir::new();
    let (cert, key) = ca.leaf("localhost");
    dir.write("server.pem", &cert);
    dir.write("server.key", &key);
    let server = start_metered(server_config(
        &dir,
        "handshake_timeout_seconds = 1\n[tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"",
    ))
    .await;

    // No TLS ClientHello at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // A TLS handshake, then no HTTP/2 preface.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(&ca.pem()).connect(name, tcp).await.unwrap();
    let (silent_closed, tls_closed) = tokio::join!(
        closed_within(&mut silent, Duration::from_secs(4)),
        closed_within(&mut tls, Duration::from_secs(4)),
    );
    assert!(
        silent_closed,
        "a client without a ClientHello outlived the timeout"
    );
    assert!(
        tls_closed,
        "a TLS client without an HTTP/2 preface outlived the timeout"
    );

    let mut client = tls_client(server.addr, &ca.pem(), None).await.unwrap();
    issue(&mut client, "alice").await.unwrap();
    server.stop().await;
}

/// An HTTP/2 connection that completed its handshake and then sits idle, answering nothing.
async fn idle_http2(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tcp
}

#[tokio::test]
async fn at_max_connections_a_newcomer_takes_the_place_of_the_oldest_connection_no_caller_used() {
    let dir = ConfigDir::new();
    let server = start_metered(server_config(&dir, "max_connections = 3")).await;
    // Every place held by sockets no known caller has used: silent, past the preface, and
    // one that sends only calls without a token.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut idle = idle_http2(server.addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut anonymous = server.signer().await;
    let refused = anonymous
        .issue_signature(issue_request("mallory"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A real caller still gets in, oldest first out.
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(2)).await,
        "the oldest unused connection was kept"
    );
    assert!(
        !closed_within(&mut idle, Duration::from_millis(300)).await,
        "only one connection gives way per newcomer"
    );
    // The real caller's connection is vouched for now: newcomers evict the others, never it.
    let mut second = server.signer().await;
    issue(&mut second, "bob").await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(2)).await,
        "the next oldest unused connection was kept"
    );
    let mut third = server.signer().await;
    issue(&mut third, "carol").await.unwrap();
    issue(&mut client, "alice").await.unwrap();
    issue(&mut second, "bob").await.unwrap();

    let metrics = server.metrics().await;
    assert_eq!(
        series(
            &metrics,
            "vod_signer_connections_closed_total{reason=\"evicted\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        series(
            &metrics,
            "vod_signer_connections_closed_total{reason=\"max_connections\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn when_known_callers_use_every_connection_a_newcomer_is_closed_at_once() {
    let dir = ConfigDir::new();
    let server = start_metered(server_config(&dir, "max_connections = 2")).await;
    let mut first = server.signer().await;
    issue(&mut first, "alice").await.unwrap();
    let mut second = server.signer().await;
    issue(&mut second, "bob").await.unwrap();

    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "a third connection was kept open"
    );
    issue(&mut first, "alice").await.unwrap();
    issue(&mut second, "bob").await.unwrap();

    // A place frees when a connection closes.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut client = server.signer().await;
    issue(&mut client, "carol").await.unwrap();
    let metrics = server.metrics().await;
    assert_eq!(
        series(
            &metrics,
            "vod_signer_connections_closed_total{reason=\"max_connections\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_with_idle_and_half_open_connections_is_quick() {
    let dir = ConfigDir::new();
    // The default grace period (10 s): what a slow shutdown would wait for.
    let server = start_metered(server_config(&dir, "")).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        // Connected, not a byte sent.
        held.push(TcpStream::connect(server.addr).await.unwrap());
        // Past the preface, then deaf: never answers the GOAWAY's PING.
        held.push(idle_http2(server.addr).await);
    }
    // A well-behaved idle client, and one with a health watch open.
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "shutdown took {took:?} with idle connections open"
    );
    drop(held);
}

#[tokio::test]
async fn health_watches_are_bounded() {
    let dir = ConfigDir::new();
    let server = start_metered(server_config(&dir, "max_health_watches = 2")).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let watch = || HealthCheckRequest {
        service: String::new(),
    };
    let mut first = health.watch(watch()).await.unwrap().into_inner();
    first.message().await.unwrap().unwrap();
    let mut second = health.watch(watch()).await.unwrap().into_inner();
    second.message().await.unwrap().unwrap();

    let status = health.watch(watch()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_health_watches"),
        "{status:?}"
    );
    // Check still answers, and calls are served.
    health.check(watch()).await.unwrap();
    let mut client = server.signer().await;
    issue(&mut client, "alice").await.unwrap();

    // A watch that ends gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match health.watch(watch()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) if Instant::now() < deadline => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("no place after a watch ended: {status:?}"),
        }
    };
    third.message().await.unwrap().unwrap();
    drop((second, third));
    server.stop().await;
}

#[tokio::test]
async fn a_connection_used_only_for_upload_tracking_keeps_its_place_too() {
    use crate::support::receiver::{EventsDir, TRACKED, authed, start_events};
    use vod_signer::proto::v1 as pb;

    let dir = EventsDir::new();
    let text = format!(
        "{}\n[transport]\nmax_connections = 2\n",
        dir.toml("sqlite:uploads.db", false)
    );
    let server = start_events(dir.config(&text)).await;
    let mut tracker = server.tracker().await;
    let get = || {
        authed(
            pb::GetUploadRequest {
                upload_id: "up_AAAAAAAAAAAAAAAAAAAAAA".into(),
            },
            TRACKED,
        )
    };
    let missing = tracker.get_upload(get()).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Two newcomers for one free place: the second pushes out the oldest connection no known
    // caller used, which is the first newcomer, not the tracker's older connection.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _second = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut first, Duration::from_secs(2)).await,
        "the tracker's connection gave way instead of the silent one"
    );
    let missing = tracker.get_upload(get()).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    server.stop().await;
}
