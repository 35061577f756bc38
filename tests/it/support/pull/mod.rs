//! Shared by the reliable-callback tests: the VOD API stand-in, a tracker on a temporary
//! SQLite file, events built from the shared fixtures, and a log capture.

#![allow(dead_code)]

pub mod standin;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vod_signer::config::{StoreLocation, TrackingSettings};
use vod_signer::pull::{BackoffPolicy, PullTiming};
use vod_signer::signature::{SecretId, SecretKey};
use vod_signer::tracking::{NewUpload, Tracker, UploadId};
use vod_signer::vod_api::{ApiClient, ApiCredential, ApiSettings};

#[allow(unused_imports)]
pub use standin::{Fault, STANDIN_SECRET_ID, STANDIN_SECRET_KEY, StandIn, StandInTiming};

pub const CALLER: &str = "upload-bff";

/// Pull timings scaled down for tests: short polls and confirm timeouts, quick backoff.
pub fn fast_timing() -> PullTiming {
    PullTiming {
        pull_timeout: Duration::from_secs(2),
        confirm_timeout: Duration::from_secs(1),
        confirm_window: Duration::from_millis(1_500),
        batches_in_flight: 4,
        backoff: BackoffPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            rate_limited: Duration::from_millis(100),
            auth_failure: Duration::from_millis(500),
        },
    }
}

/// Waits until the stand-in's queue holds no unconfirmed event.
pub async fn queue_drained(standin: &StandIn, limit: Duration) {
    eventually(limit, "the queue drained", || standin.unconfirmed() == 0).await;
}

/// A fixture from `../shared/vectors/vod-events/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/vod-events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// F1 (NewFileUpload) for one tracked upload: its id as SourceContext, its own FileId, and
/// the procedure task it started (`""` for none).
pub fn new_file_upload(upload_id: &UploadId, file_id: &str, procedure_task_id: &str) -> Value {
    let mut event = fixture("F1-new-file-upload-push.json");
    let upload = &mut event["FileUploadEvent"];
    upload["FileId"] = json!(file_id);
    upload["MediaBasicInfo"]["SourceInfo"]["SourceContext"] = json!(upload_id.to_string());
    upload["ProcedureTaskId"] = json!(procedure_task_id);
    event
}

/// F3's `ProcedureStateChangeEvent` (a FINISH with every subtask SUCCESS) for one file and
/// task, as `DescribeTaskDetail` returns it in `ProcedureTask`.
pub fn finished_procedure_task(file_id: &str, task_id: &str) -> Value {
    let mut task =
        fixture("F3-procedure-state-changed-push.json")["ProcedureStateChangeEvent"].clone();
    task["FileId"] = json!(file_id);
    task["TaskId"] = json!(task_id);
    task
}

pub struct TrackerDir {
    pub dir: tempfile::TempDir,
}

impl TrackerDir {
    pub fn new() -> TrackerDir {
        TrackerDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("uploads.db")
    }

    pub async fn open(&self) -> Tracker {
        Tracker::open(&TrackingSettings::new(StoreLocation::Sqlite(self.db())))
            .await
            .expect("open the tracker")
    }
}

/// Records `n` tracked uploads for [`CALLER`] (issued now, valid an hour).
pub async fn issue(tracker: &Tracker, n: usize, procedure: Option<&str>) -> Vec<UploadId> {
    let now = unix_now();
    let ids: Vec<UploadId> = (0..n).map(|_| UploadId::generate()).collect();
    tracker
        .record_issued(
            ids.iter()
                .map(|id| NewUpload {
                    upload_id: id.clone(),
                    caller: CALLER.to_owned(),
                    user_id: "alice".to_owned(),
                    issued_at: now,
                    expires_at: now + 3600,
                    procedure: procedure.map(str::to_owned),
                    source_context: None,
                    session_context: None,
                    one_time: true,
                })
                .collect(),
        )
        .await
        .expect("record the uploads");
    ids
}

pub fn api_client(endpoint: &str, secret_key: &str) -> ApiClient {
    ApiClient::new(ApiSettings {
        endpoint: endpoint.to_owned(),
        region: "ap-guangzhou".to_owned(),
        sub_app_id: 0,
        credential: ApiCredential::new(
            SecretId::new(STANDIN_SECRET_ID).unwrap(),
            SecretKey::from_string(secret_key.to_owned()).unwrap(),
        ),
    })
    .expect("a client for the stand-in")
}

pub use vod_signer::cli::unix_now;

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut condition: F) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log lines written while the guard lives (on this thread: use a current-thread runtime).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let capture = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || capture.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
