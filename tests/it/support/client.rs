//! A real `vod-signer` server on a loopback port, started inside the test process.
#![allow(dead_code)] // each test file uses a different part of this module

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vod_signer::config::Config;
#[allow(unused_imports)] // each test binary uses a different part
pub use vod_signer::testing::{IssueGate, TestServer, config_from, free_addr, sha256_hex};
use vod_signer_client::{BearerToken, RetryPolicy, SignerClient, SignerClientBuilder};

/// Token of caller `backend`: may issue and verify; procedures limited to `review`.
pub const TOKEN: &str = "backend-token-0123456789";
/// Token of caller `auditor`: may verify, may not issue.
pub const VERIFY_ONLY_TOKEN: &str = "auditor-token-9876543210";

/// A configuration with one key `secret_id` (its SecretKey in a file) and the two callers
/// above.
fn config(secret_id: &str) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"

[[keys]]
secret_id = "{secret_id}"
secret_key_file = "secret-key"

[[callers]]
name = "backend"
token_sha256 = "{backend}"
allowed_procedures = ["review"]
max_validity_seconds = 86400
default_validity_seconds = 600

[[callers]]
name = "auditor"
token_sha256 = "{auditor}"
can_issue = false
"#,
        backend = sha256_hex(TOKEN),
        auditor = sha256_hex(VERIFY_ONLY_TOKEN),
    );
    config_from(&text, &[("secret-key", &format!("key-of-{secret_id}"))])
}

/// Starts a server with key `secret_id` on a fresh loopback port.
pub async fn start(secret_id: &str) -> TestServer {
    TestServer::start(config(secret_id)).await
}

/// Starts a server whose IssueSignature calls wait at `gate` until released.
pub async fn start_gated(secret_id: &str, gate: &Arc<IssueGate>) -> TestServer {
    TestServer::builder(config(secret_id))
        .issue_gate(gate)
        .start()
        .await
}

/// Starts a server on `addr` (where a client already expects one).
pub async fn start_on(addr: SocketAddr, secret_id: &str) -> TestServer {
    TestServer::builder(config(secret_id))
        .listen_on(addr)
        .start()
        .await
}

/// A client builder for `endpoints` with `token`, a 5 s default deadline and fast retries.
pub fn builder(endpoints: &[String], token: &str) -> SignerClientBuilder {
    SignerClient::builder()
        .endpoints(endpoints.iter().cloned())
        .bearer_token(BearerToken::new(token).unwrap())
        .connect_timeout(Duration::from_secs(1))
        .default_deadline(Duration::from_secs(5))
        .retry_policy(RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        })
}

/// A client of `server` as caller `backend`.
pub fn client(server: &TestServer) -> SignerClient {
    builder(&[server.url()], TOKEN).build().unwrap()
}
