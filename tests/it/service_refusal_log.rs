//! Failed authentications and PERMISSION_DENIED are logged, at most one line per second for
//! each kind (with the number left out), and never with the token.

use std::io;
use std::sync::{Arc, Mutex};

use crate::support::service::*;
use tonic::Code;
use vod_signer::proto::v1 as pb;

/// Everything logged in this test binary (one global subscriber: the server logs from its
/// own tasks).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn refusals_are_logged_rate_limited_without_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;

    let wrong = "wrong-token-must-never-be-logged";
    for _ in 0..5 {
        let status = client
            .issue_signature(authed(
                issue_request("u", pb::UploadParams::default()),
                wrong,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    for _ in 0..3 {
        let status = client
            .verify_signature(authed(
                pb::VerifySignatureRequest {
                    signature: "AAAA".into(),
                },
                ISSUE_ONLY,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let log = captured.text();
    let auth_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(auth_lines.len(), 1, "{log}");
    assert!(
        auth_lines[0].contains("unknown bearer token") && auth_lines[0].contains("IssueSignature")
    );
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("outside the caller's policy"))
        .collect();
    assert_eq!(denied.len(), 1, "{log}");
    assert!(
        denied[0].contains("issue-only") && denied[0].contains("can_verify"),
        "{}",
        denied[0]
    );

    // A second later, the next refusal is logged with the count of those left out.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    client
        .issue_signature(authed(
            issue_request("u", pb::UploadParams::default()),
            wrong,
        ))
        .await
        .unwrap_err();
    let log = captured.text();
    let last = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .nth(1)
        .unwrap_or_else(|| panic!("no second line in {log}"));
    assert!(last.contains("similar_not_logged=4"), "{last}");
    for secret in [wrong, FULL, ISSUE_ONLY, SECRET_KEY] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}
