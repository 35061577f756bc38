//! Audit lines are never lost quietly: while the log output refuses writes, issuance is
//! refused (UNAVAILABLE), health says NOT_SERVING for UploadSigner and the failures are
//! counted; once writes succeed again, everything resumes.

use std::io::{self, Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::ops::*;
use crate::support::process::{KillOnDrop, connect_when_up, free_port};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;

const SERVICE: &str = "vod.signer.v1.UploadSigner";

async fn health_of(channel: tonic::transport::Channel) -> ServingStatus {
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// A log output that refuses writes (EPIPE) while `broken` is set.
#[derive(Clone, Default)]
struct Breakable {
    bytes: Arc<Mutex<Vec<u8>>>,
    broken: Arc<AtomicBool>,
}

impl Write for Breakable {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until issuing (for alice) is refused with UNAVAILABLE.
async fn until_unavailable(client: &UploadSignerClient<Channel>) {
    eventually("UNAVAILABLE", || {
        let mut client = client.clone();
        async move {
            issue(&mut client, "alice")
                .await
                .is_err_and(|s| s.code() == Code::Unavailable)
        }
    })
    .await;
}

#[tokio::test]
async fn issuance_stops_while_the_audit_output_fails_and_resumes_when_it_recovers() {
    let output = Breakable::default();
    let (writer, guard) =
        vod_signer::logging::spawn_writer(output.clone(), vod_signer::logging::DEFAULT_HIGH_WATER)
            .unwrap();
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let server = TestServer::builder(dir.load())
        .metrics()
        .audit_sink(guard.health())
        .start()
        .await;
    let mut client = server.signer().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    issue(&mut client, "alice").await.expect("a healthy output");
    assert_eq!(health_of(channel.clone()).await, ServingStatus::Serving);

    // The output breaks; the next line written finds out.
    output.broken.store(true, Ordering::SeqCst);
    (&writer).write_all(b"audit line\n").unwrap();
    until_unavailable(&client).await;
    let refused = issue(&mut client, "bob").await.unwrap_err();
    assert!(
        refused.message().contains("audit log"),
        "{}",
        refused.message()
    );
    assert_eq!(health_of(channel.clone()).await, ServingStatus::NotServing);
    // Verification records nothing and goes on.
    let response = client
        .verify_signature(authed(
            vod_signer::proto::v1::VerifySignatureRequest {
                signature: "AAAA".to_owned(),
            },
            TOKEN,
        ))
        .await;
    assert!(response.is_ok());
    let text = server.metrics().await;
    assert!(
        series(&text, "vod_signer_log_write_failures_total").unwrap_or(0.0) >= 1.0,
        "{text}"
    );

    // Writes succeed again (the retried batch goes through): issuance and health resume.
    output.broken.store(false, Ordering::SeqCst);
    eventually("recovery", || {
        let mut client = client.clone();
        async move { issue(&mut client, "alice").await.is_ok() }
    })
    .await;
    assert_eq!(health_of(channel).await, ServingStatus::Serving);
    drop(guard);
    assert!(String::from_utf8_lossy(&output.bytes.lock().unwrap()).contains("audit line"));
    server.stop().await;
}

/// The review's reproduction: `serve 2>&1 >/dev/null | head -c 200`, i.e. stderr is a pipe
/// whose reader goes away after a few bytes.
#[tokio::test]
async fn a_real_process_whose_stderr_reader_is_gone_stops_issuing() {
    let dir = ConfigDir::new();
    dir.write_config(&config_toml(KEY_A, false, "", ""));
    let port = free_port();
    let mut child = KillOnDrop::serve(&dir.config_path(), port, Stdio::piped());
    // Read 200 bytes, like `head -c 200`, then close the pipe.
    let mut stderr = child.0.stderr.take().unwrap();
    let mut head = [0u8; 200];
    stderr.read_exact(&mut head).unwrap();
    drop(stderr);

    let channel = connect_when_up(port).await;
    let client = UploadSignerClient::new(channel.clone());
    // The first issuances' audit lines hit the closed pipe; from then on nothing is issued.
    until_unavailable(&client).await;
    for _ in 0..5 {
        let mut client = client.clone();
        assert_eq!(
            issue(&mut client, "alice").await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    assert_eq!(health_of(channel).await, ServingStatus::NotServing);
}
