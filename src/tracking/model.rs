//! What the tracker takes and returns.

use serde::{Deserialize, Serialize};

use super::UploadId;

/// One issued signature to track (a batch issues several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub upload_id: UploadId,
    pub caller: String,
    pub user_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// The signature's `expireTime`, Unix seconds.
    pub expires_at: i64,
    pub procedure: Option<String>,
    /// The caller's own contexts: stored and returned, never put on the wire.
    pub source_context: Option<String>,
    pub session_context: Option<String>,
    pub one_time: bool,
}

/// One authenticated notification body as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    pub raw: Vec<u8>,
    /// Unix seconds.
    pub received_at: i64,
    pub delivery: Delivery,
}

/// How an event reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// VOD POSTed it to the HTTP receiver.
    Push,
    /// PullEvents returned it.
    Pull,
    /// The reconciliation job rebuilt it from VOD's API; its change says `Reconciled`.
    Reconciled,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Push => "push",
            Delivery::Pull => "pull",
            Delivery::Reconciled => "reconciled",
        }
    }
}

/// What became of a received event. Every variant means it is stored durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// It changed a tracked upload.
    Applied,
    /// The same event was stored before; nothing changed.
    Duplicate,
    /// No tracked upload matches it (yet): a foreign upload, or a procedure event that came
    /// before its upload and is applied when the upload arrives.
    Unmatched,
    /// An event type the tracker does not use.
    Ignored { event_type: String },
    /// A 2.0-format body: the VOD application is misconfigured.
    Legacy,
}

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStart {
    /// At the current end: only changes committed from now on.
    Now,
    /// Exactly after the change with this cursor.
    After(String),
}

/// The state of an upload, derived from everything stored for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    Issued,
    Uploaded,
    Processing,
    Ready,
    Failed,
    Expired,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Issued => "issued",
            UploadState::Uploaded => "uploaded",
            UploadState::Processing => "processing",
            UploadState::Ready => "ready",
            UploadState::Failed => "failed",
            UploadState::Expired => "expired",
        }
    }
}

/// A tracked upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub upload_id: UploadId,
    pub caller: String,
    pub user_id: String,
    pub state: UploadState,
    pub issued_at: i64,
    pub expires_at: i64,
    pub procedure: Option<String>,
    pub source_context: Option<String>,
    pub session_context: Option<String>,
    pub one_time: bool,
    /// Ordered by `file_id`.
    pub files: Vec<UploadedFile>,
    /// When `state` is `Failed`.
    pub failure: Option<Failure>,
    /// The latest of `issued_at`, the expiry and the arrival times of the applied events.
    pub updated_at: i64,
}

/// One file that reached VOD under the upload's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadedFile {
    pub file_id: String,
    pub name: Option<String>,
    pub media_type: Option<String>,
    pub media_url: Option<String>,
    pub cover_url: Option<String>,
    pub size: Option<i64>,
    pub duration: Option<f64>,
    pub procedure_task_id: Option<String>,
    pub state: FileState,
}

/// How far one file got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Uploaded; its procedure has not reported yet.
    Uploaded,
    Processing,
    Ready,
    Failed,
}

/// Why an upload failed: the first failing subtask of its procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub file_id: String,
    /// The subtask's `Type` (`Transcode`, `Porn`, ...).
    pub subtask_type: String,
    /// `ErrCodeExt` (or the deprecated `ErrCode` when that is all there is); `""` for a
    /// content review that said `block`.
    pub err_code_ext: String,
    pub message: String,
}

/// One committed change to an upload, as the change feed delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadChange {
    /// Opaque; a watch started after it resumes exactly after this change.
    pub cursor: String,
    /// The upload as this change left it.
    pub upload: Upload,
    /// The `EventType` that caused it, `Expired`, or `Reconciled`.
    pub event_type: String,
    pub received_at: i64,
}

/// One page of a user's uploads, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPage {
    pub uploads: Vec<Upload>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// A tracked file whose procedure has not finished (issue 13's reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingProcedure {
    pub upload_id: UploadId,
    pub file_id: String,
    pub task_id: String,
}
