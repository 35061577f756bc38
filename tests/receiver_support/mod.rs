//! Shared by the `events_*` tests: a configuration directory with a tracking store, the
//! receiver's secrets in files, a real server (in-process, gRPC plus the HTTP receiver on
//! ephemeral loopback ports), a raw HTTP/1.1 client, and Tencent's published event bodies
//! adapted to carry a tracked id.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Status};

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
use vod_signer::proto::v1::upload_tracker_client::UploadTrackerClient;
use vod_signer::server::{ServeOptions, ServerError, serve_with};

pub const SECRET_ID: &str = "AKIDeventsTestKey";
pub const SECRET_KEY: &str = "events-test-secret-key-never-logged";
/// Caller `tracked`: track_uploads (so can_track by default).
pub const TRACKED: &str = "tracked-token-0001";
/// Caller `other`: also tracks; must never see `tracked`'s uploads.
pub const OTHER: &str = "other-token-0002";
/// Caller `plain`: neither tracks nor may track.
pub const PLAIN: &str = "plain-token-0003";
pub const PATH_TOKEN: &str = "events-test-path-token-0123456789";
pub const SIGN_KEY: &str = "MySignKey1";

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A directory holding the secrets, the configuration file and (by default) the SQLite store.
pub struct EventsDir {
    pub dir: tempfile::TempDir,
}

impl EventsDir {
    pub fn new() -> EventsDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret-key"), SECRET_KEY).unwrap();
        std::fs::write(dir.path().join("path-token"), format!("{PATH_TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("sign-key"), format!("{SIGN_KEY}\n")).unwrap();
        EventsDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vod-signer.toml")
    }

    /// The configuration text: `store` as in `[tracking] store`; `sign_key` adds the SignKey.
    pub fn toml(&self, store: &str, sign_key: bool) -> String {
        let sign = if sign_key {
            "sign_key_file = \"sign-key\""
        } else {
            ""
        };
        format!(
            r#"
listen = "127.0.0.1:0"

[tracking]
store = "{store}"

[events]
listen = "127.0.0.1:0"
path_token_file = "path-token"
{sign}

[[keys]]
secret_id = "{SECRET_ID}"
secret_key_file = "secret-key"

[[callers]]
name = "tracked"
token_sha256 = "{tracked}"
track_uploads = true

[[callers]]
name = "other"
token_sha256 = "{other}"
track_uploads = true

[[callers]]
name = "plain"
token_sha256 = "{plain}"
"#,
            tracked = sha256_hex(TRACKED),
            other = sha256_hex(OTHER),
            plain = sha256_hex(PLAIN),
        )
    }

    /// The configuration with an SQLite store in this directory, written to the file too.
    pub fn sqlite_config(&self, sign_key: bool) -> Config {
        self.config(&self.toml("sqlite:uploads.db", sign_key))
    }

    pub fn config(&self, text: &str) -> Config {
        std::fs::write(self.config_path(), text).unwrap();
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("test config: {e}"))
    }
}

/// A server with its gRPC and HTTP receiver addresses; stops when dropped.
pub struct EventsServer {
    pub addr: SocketAddr,
    pub events_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl EventsServer {
    pub async fn start(config: Config) -> EventsServer {
        EventsServer::start_with(config, ServeOptions::default()).await
    }

    pub async fn start_with(config: Config, options: ServeOptions) -> EventsServer {
        EventsServer::start_on("127.0.0.1:0".parse().unwrap(), config, options).await
    }

    /// On a given gRPC address (to restart a server where clients expect it).
    pub async fn start_on(
        addr: SocketAddr,
        config: Config,
        mut options: ServeOptions,
    ) -> EventsServer {
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().unwrap();
        let events_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let events_addr = events_listener.local_addr().unwrap();
        options.events_listener = Some(events_listener);
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let handle = tokio::spawn(serve_with(config, listener, shutdown, options));
        let server = EventsServer {
            addr,
            events_addr,
            shutdown: Some(tx),
            handle: Some(handle),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server at {} did not come up", self.addr);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn events_path(&self) -> String {
        format!("/vod/events/{PATH_TOKEN}")
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let result = tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("server stops within its grace period")
                .unwrap();
            result.unwrap();
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn signer(&self) -> UploadSignerClient<Channel> {
        UploadSignerClient::new(self.channel().await)
    }

    pub async fn tracker(&self) -> UploadTrackerClient<Channel> {
        UploadTrackerClient::new(self.channel().await)
    }

    /// POSTs `body` to the receiver's configured path.
    pub async fn post_event(&self, body: &[u8]) -> HttpResponse {
        http_request(self.events_addr, "POST", &self.events_path(), &[], body).await
    }
}

impl Drop for EventsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A port just released by a stopped server may linger a moment.
async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}: {last:?}");
}

/// A request carrying `token` as its bearer token.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading everything; a failed write is then fine.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    HttpResponse { status, body }
}

/// Tencent's published body `name` from `../shared/vectors/vod-events/`, verbatim.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/vod-events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The procedure task id of the F3 fixture, which F1 names as its `ProcedureTaskId` once
/// adapted.
pub const F3_TASK_ID: &str = "1256768367-Procedure-475b72xxxcb177t1";

/// F1 (NewFileUpload, PUSH) carrying `upload_id` as its `SourceContext`, for file `file_id`;
/// `procedure_task_id` set when the signature named a procedure.
pub fn f1_for(upload_id: &str, file_id: &str, procedure_task_id: Option<&str>) -> Value {
    let mut body = fixture("F1-new-file-upload-push.json");
    let event = &mut body["FileUploadEvent"];
    event["FileId"] = Value::from(file_id);
    event["MediaBasicInfo"]["SourceInfo"]["SourceContext"] = Value::from(upload_id);
    if let Some(task) = procedure_task_id {
        event["ProcedureTaskId"] = Value::from(task);
    }
    body
}

/// F3 (ProcedureStateChanged FINISH, every subtask SUCCESS, PUSH) for `file_id`, carrying
/// `upload_id` as its `SessionContext`.
pub fn f3_for(upload_id: &str, file_id: &str) -> Value {
    let mut body = fixture("F3-procedure-state-changed-push.json");
    let event = &mut body["ProcedureStateChangeEvent"];
    event["FileId"] = Value::from(file_id);
    event["SessionContext"] = Value::from(upload_id);
    body
}

/// `body` signed with the test SignKey, `Sign`/`T` as top-level fields.
pub fn signed(mut body: Value, t: i64) -> Vec<u8> {
    body["T"] = Value::from(t);
    body["Sign"] = Value::from(sign(t));
    serde_json::to_vec(&body).unwrap()
}

/// MD5(SignKey ‖ decimal T) as lowercase hex, computed here independently of the service.
pub fn sign(t: i64) -> String {
    md5_hex(format!("{SIGN_KEY}{t}").as_bytes())
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(data))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Issues one tracked signature for `user_id` as caller `token`.
pub async fn issue(
    server: &EventsServer,
    token: &str,
    user_id: &str,
    params: pb::UploadParams,
) -> Result<pb::IssueSignatureResponse, Status> {
    server
        .signer()
        .await
        .issue_signature(authed(
            token,
            pb::IssueSignatureRequest {
                user_id: user_id.into(),
                validity_seconds: 600,
                params: Some(params),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn get_upload(
    server: &EventsServer,
    token: &str,
    upload_id: &str,
) -> Result<pb::Upload, Status> {
    server
        .tracker()
        .await
        .get_upload(authed(
            token,
            pb::GetUploadRequest {
                upload_id: upload_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

pub fn state(upload: &pb::Upload) -> pb::UploadState {
    pb::UploadState::try_from(upload.state).unwrap()
}

/// Polls GetUpload until the upload is in `want` (events are applied once stored, but a
/// test should not depend on exactly when).
pub async fn wait_for_state(
    server: &EventsServer,
    upload_id: &str,
    want: pb::UploadState,
) -> pb::Upload {
    let mut last = None;
    for _ in 0..100 {
        let upload = get_upload(server, TRACKED, upload_id).await.unwrap();
        if state(&upload) == want {
            return upload;
        }
        last = Some(upload);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("upload never reached {want:?}: {last:#?}");
}
