//! A real `vod-signer` server on a loopback port, started inside the test process.
#![allow(dead_code)] // each test file uses a different part of this module

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vod_signer::config::Config;
use vod_signer::server::{ServeOptions, serve_with};
use vod_signer::service::IssueGate;
use vod_signer_client::{BearerToken, RetryPolicy, SignerClient, SignerClientBuilder};

/// Token of caller `backend`: may issue and verify; procedures limited to `review`.
pub const TOKEN: &str = "backend-token-0123456789";
/// Token of caller `auditor`: may verify, may not issue.
pub const VERIFY_ONLY_TOKEN: &str = "auditor-token-9876543210";

/// A server that stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub secret_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the server to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A configuration with one key `secret_id` (its SecretKey in a file under `dir`) and the two
/// callers above.
fn config(secret_id: &str, dir: &Path) -> Config {
    std::fs::write(dir.join("secret-key"), format!("key-of-{secret_id}")).unwrap();
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
    Config::from_toml_str(&text, dir).expect("test configuration is valid")
}

/// Starts a server on a fresh loopback port.
pub async fn start(secret_id: &str) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, secret_id, None).await
}

/// Starts a server whose IssueSignature calls wait at `gate` until released.
pub async fn start_gated(secret_id: &str, gate: Arc<IssueGate>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, secret_id, Some(gate)).await
}

/// Starts a server on `listener`.
pub async fn start_on(
    listener: TcpListener,
    secret_id: &str,
    gate: Option<Arc<IssueGate>>,
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = config(secret_id, dir.path());
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let options = ServeOptions {
        issue_gate: gate,
        ..ServeOptions::default()
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        serve_with(config, listener, shutdown, options)
            .await
            .expect("test server runs");
    });
    TestServer {
        addr,
        secret_id: secret_id.to_owned(),
        shutdown: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

/// A loopback address nothing listens on: bound once by the OS, then released.
pub async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
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
    builder(&[server.endpoint()], TOKEN).build().unwrap()
}
