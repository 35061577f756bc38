//! Shared by the `service_*` tests: configurations with secrets in temporary files, and a real
//! server on an ephemeral loopback port driven through `vod_signer::server`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
use vod_signer::server::{ServeOptions, ServerError, serve_with};
use vod_signer::service::{Clock, IssueGate};
use vod_signer::signature::{KeyRing, SecretId, SecretKey, SigningKey};

pub const SECRET_ID: &str = "AKIDserviceTestKey";
/// Only ever in a temporary file; the tests check it never shows up where it must not.
pub const SECRET_KEY: &str = "service-test-secret-key-do-not-log";

pub const FULL: &str = "full-token-0123";
pub const RESTRICTED: &str = "restricted-token-4567";
pub const VERIFY_ONLY: &str = "verify-only-token-89ab";
pub const ISSUE_ONLY: &str = "issue-only-token-cdef";

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses `toml` after writing `files` (name, contents) into a temporary directory that
/// relative paths resolve against. Secrets are read during parsing, so the directory can go.
pub fn config_from(toml: &str, files: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    Config::from_toml_str(toml, dir.path()).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// One key and four callers that between them exercise every policy rule.
pub fn standard_toml(extra_top_level: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
{extra_top_level}

[[keys]]
secret_id = "{SECRET_ID}"
secret_key_file = "secret-key"

[[callers]]
name = "full"
token_sha256 = "{full}"

[[callers]]
name = "restricted"
token_sha256 = "{restricted}"
allowed_procedures = ["review"]
allowed_class_ids = [0, 7]
allowed_sub_app_ids = [0, 1400]
max_validity_seconds = 600
default_validity_seconds = 60
force_one_time = true

[[callers]]
name = "verify-only"
token_sha256 = "{verify_only}"
can_issue = false

[[callers]]
name = "issue-only"
token_sha256 = "{issue_only}"
can_verify = false
"#,
        full = sha256_hex(FULL),
        restricted = sha256_hex(RESTRICTED),
        verify_only = sha256_hex(VERIFY_ONLY),
        issue_only = sha256_hex(ISSUE_ONLY),
    )
}

pub fn standard_config() -> Config {
    config_from(&standard_toml(""), &[("secret-key", SECRET_KEY)])
}

/// The service's key, for checking its signatures with the core verifier.
pub fn standard_ring() -> KeyRing {
    KeyRing::single(SigningKey::new(
        SecretId::new(SECRET_ID).unwrap(),
        &SecretKey::from_string(SECRET_KEY.to_owned()).unwrap(),
    ))
}

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_with(config, ServeOptions::default()).await
    }

    pub async fn start_with(config: Config, options: ServeOptions) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let handle = tokio::spawn(serve_with(config, listener, shutdown, options));
        TestServer {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A server whose clock the test sets, and the handle to set it.
    pub async fn start_with_clock(config: Config, now: i64) -> (TestServer, Clock) {
        let clock = Clock::manual(now);
        let options = ServeOptions {
            clock: clock.clone(),
            issue_gate: None,
            ..ServeOptions::default()
        };
        (TestServer::start_with(config, options).await, clock)
    }

    /// A server whose `IssueSignature` calls wait at `gate`.
    pub async fn start_gated(config: Config) -> (TestServer, Arc<IssueGate>) {
        let gate = IssueGate::new();
        let options = ServeOptions {
            clock: Clock::System,
            issue_gate: Some(gate.clone()),
            ..ServeOptions::default()
        };
        (TestServer::start_with(config, options).await, gate)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> UploadSignerClient<Channel> {
        UploadSignerClient::new(self.channel().await)
    }

    /// Sends the shutdown signal without waiting for the server to finish.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits (at most `limit`) for `serve` to return after the shutdown signal.
    pub async fn stopped(&mut self, limit: Duration) -> Result<(), ServerError> {
        self.signal_shutdown();
        let handle = self.handle.take().expect("server already stopped");
        tokio::time::timeout(limit, handle)
            .await
            .expect("the server did not stop in time")
            .expect("the server task panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn issue_request(user_id: &str, params: pb::UploadParams) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id: user_id.to_owned(),
        validity_seconds: 0,
        params: Some(params),
    }
}

/// The field paths of a status's `google.rpc.BadRequest`, after checking the code.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    details
        .field_violations
        .iter()
        .map(|v| {
            assert!(!v.description.is_empty(), "{v:?}");
            v.field.clone()
        })
        .collect()
}
