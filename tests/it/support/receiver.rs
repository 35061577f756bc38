//! Shared by the receiver tests: a configuration directory with a tracking store, the
//! receiver's secrets in files, the receiver's side of `vod_signer::testing::TestServer`, and
//! Tencent's published event bodies adapted to carry a tracked id.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tonic::{Status, Streaming};

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
#[allow(unused_imports)] // each test binary uses a different part
pub use vod_signer::testing::{HttpResponse, TestServer, authed, http_request, series, sha256_hex};

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

/// Starts `config` with the event receiver on its own loopback port.
pub async fn start_events(config: Config) -> TestServer {
    TestServer::builder(config).events().start().await
}

/// The receiver's side of a [`TestServer`] started with `.events()`.
pub trait EventsServer {
    /// The receiver's configured path (the path token is in it).
    fn events_path(&self) -> String;
    /// POSTs `body` to the receiver's configured path.
    async fn post_event(&self, body: &[u8]) -> HttpResponse;
}

impl EventsServer for TestServer {
    fn events_path(&self) -> String {
        format!("/vod/events/{PATH_TOKEN}")
    }

    async fn post_event(&self, body: &[u8]) -> HttpResponse {
        let addr = self.events_addr.expect("started with .events()");
        http_request(addr, "POST", &self.events_path(), &[], body).await
    }
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

pub use vod_signer::cli::unix_now as now;

/// Issues one tracked signature for `user_id` as caller `token`.
pub async fn issue(
    server: &TestServer,
    token: &str,
    user_id: &str,
    params: pb::UploadParams,
) -> Result<pb::IssueSignatureResponse, Status> {
    server
        .signer()
        .await
        .issue_signature(authed(
            pb::IssueSignatureRequest {
                user_id: user_id.into(),
                validity_seconds: 600,
                params: Some(params),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn get_upload(
    server: &TestServer,
    token: &str,
    upload_id: &str,
) -> Result<pb::Upload, Status> {
    server
        .tracker()
        .await
        .get_upload(authed(
            pb::GetUploadRequest {
                upload_id: upload_id.into(),
            },
            token,
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
    server: &TestServer,
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

/// Posts `body` signed with a `t` ten minutes ahead.
pub async fn post_signed(server: &TestServer, body: Value) -> HttpResponse {
    server.post_event(&signed(body, now() + 600)).await
}

/// Issues one tracked signature for `user_id` (caller `TRACKED`, default parameters) and
/// returns its upload id.
pub async fn issue_tracked(server: &TestServer, user_id: &str) -> String {
    issue(server, TRACKED, user_id, pb::UploadParams::default())
        .await
        .unwrap()
        .upload_id
}

/// Issues one tracked signature for `user_id`, then posts the signed F1 event (upload
/// finished) for it with `file_id`, which must be stored (200); returns the upload id.
pub async fn issue_and_post(server: &TestServer, user_id: &str, file_id: &str) -> String {
    let upload_id = issue_tracked(server, user_id).await;
    let response = post_signed(server, f1_for(&upload_id, file_id, None)).await;
    assert_eq!(response.status, 200, "{response:?}");
    upload_id
}

/// Watches the changes to `token`'s uploads from now on. A watch starts at the current end,
/// so it is given time to subscribe before the test commits the change it waits for.
pub async fn watch(server: &TestServer, token: &str) -> Streaming<pb::UploadChange> {
    let stream = server
        .tracker()
        .await
        .watch_uploads(authed(pb::WatchUploadsRequest::default(), token))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
}

/// Watches the changes to `token`'s uploads from just after `cursor`.
pub async fn resume_watch(
    server: &TestServer,
    token: &str,
    cursor: String,
) -> Streaming<pb::UploadChange> {
    server
        .tracker()
        .await
        .watch_uploads(authed(
            pb::WatchUploadsRequest {
                after_cursor: cursor,
                user_id: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The next change on `watch`, which must come within 5 s.
pub async fn next_change(watch: &mut Streaming<pb::UploadChange>) -> pb::UploadChange {
    tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a change within 5 s")
        .unwrap()
        .expect("the watch still open")
}
