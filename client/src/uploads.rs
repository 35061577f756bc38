//! What the `UploadTracker` service answers, as Rust types.

use std::time::SystemTime;

use crate::proto;
use crate::response::from_unix;

/// Where an upload stands; derived by the service from every event received for it, so it
/// never depends on the order VOD delivered them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UploadState {
    /// The signature was issued; no upload reported yet.
    Issued,
    /// VOD reported the file; the task flow (if any) has not reported yet.
    Uploaded,
    /// The task flow is running.
    Processing,
    /// Uploaded and processed successfully (or no task flow was named).
    Ready,
    /// The task flow failed or content review blocked the file; see [`Upload::failure`].
    Failed,
    /// The signature expired with no upload.
    Expired,
    /// A state this client does not know (a newer service); the number is the wire value.
    Unrecognized(i32),
}

impl UploadState {
    /// The stable upper-case name (`READY`, …), as the service's enum and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Issued => "ISSUED",
            UploadState::Uploaded => "UPLOADED",
            UploadState::Processing => "PROCESSING",
            UploadState::Ready => "READY",
            UploadState::Failed => "FAILED",
            UploadState::Expired => "EXPIRED",
            UploadState::Unrecognized(_) => "UNRECOGNIZED",
        }
    }

    /// Whether no further event is expected to change it (READY, FAILED, EXPIRED).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            UploadState::Ready | UploadState::Failed | UploadState::Expired
        )
    }

    pub(crate) fn from_proto(value: i32) -> Self {
        match proto::UploadState::try_from(value) {
            Ok(proto::UploadState::Issued) => UploadState::Issued,
            Ok(proto::UploadState::Uploaded) => UploadState::Uploaded,
            Ok(proto::UploadState::Processing) => UploadState::Processing,
            Ok(proto::UploadState::Ready) => UploadState::Ready,
            Ok(proto::UploadState::Failed) => UploadState::Failed,
            Ok(proto::UploadState::Expired) => UploadState::Expired,
            Ok(proto::UploadState::Unspecified) | Err(_) => UploadState::Unrecognized(value),
        }
    }
}

/// Why an upload failed: the first failing subtask of its task flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailure {
    /// The VOD media file whose flow failed.
    pub file_id: String,
    /// The subtask type as VOD names it (`Transcode`, `AiContentReview`, …).
    pub subtask_type: String,
    /// VOD's `ErrCodeExt` (may be empty).
    pub err_code_ext: String,
    /// VOD's message, or why review blocked the file.
    pub message: String,
}

/// One file VOD reported for an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadedFile {
    /// VOD's `FileId`.
    pub file_id: String,
    /// The media name.
    pub name: String,
    /// The media type (e.g. `mp4`).
    pub media_type: String,
    /// Where the file is served.
    pub media_url: String,
    /// The cover image URL (may be empty).
    pub cover_url: String,
    /// Size in bytes, when VOD reported it.
    pub size: Option<i64>,
    /// Duration in seconds, when VOD reported it.
    pub duration: Option<f64>,
    /// The task flow's id for this file (empty without a procedure).
    pub procedure_task_id: String,
    /// This file's own processing outcome.
    pub state: UploadState,
}

/// One upload record: created with a tracked signature, moved along by VOD's events.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// The id [`IssuedSignature::upload_id`](crate::IssuedSignature::upload_id) returned.
    pub upload_id: String,
    /// The end user the signature was for.
    pub user_id: String,
    /// Where it stands.
    pub state: UploadState,
    /// When the signature was issued.
    pub issued_at: SystemTime,
    /// When the signature expires.
    pub expires_at: SystemTime,
    /// The task flow named in the signature, if any.
    pub procedure: Option<String>,
    /// The caller's own `source_context` from the request, if any.
    pub source_context: Option<String>,
    /// The caller's own `session_context` from the request, if any.
    pub session_context: Option<String>,
    /// Whether the signature was one-time.
    pub one_time: bool,
    /// The files VOD reported, oldest first.
    pub files: Vec<UploadedFile>,
    /// Set when [`state`](Self::state) is [`UploadState::Failed`].
    pub failure: Option<UploadFailure>,
    /// When the record last changed.
    pub updated_at: SystemTime,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Upload {
    pub(crate) fn from_proto(u: proto::Upload) -> Self {
        Upload {
            upload_id: u.upload_id,
            user_id: u.user_id,
            state: UploadState::from_proto(u.state),
            issued_at: from_unix(u.issued_at),
            expires_at: from_unix(u.expires_at),
            procedure: non_empty(u.procedure),
            source_context: non_empty(u.source_context),
            session_context: non_empty(u.session_context),
            one_time: u.one_time,
            files: u
                .files
                .into_iter()
                .map(|f| UploadedFile {
                    file_id: f.file_id,
                    name: f.name,
                    media_type: f.media_type,
                    media_url: f.media_url,
                    cover_url: f.cover_url,
                    size: f.size,
                    duration: f.duration,
                    procedure_task_id: f.procedure_task_id,
                    state: UploadState::from_proto(f.state),
                })
                .collect(),
            failure: u.failure.map(|f| UploadFailure {
                file_id: f.file_id,
                subtask_type: f.subtask_type,
                err_code_ext: f.err_code_ext,
                message: f.message,
            }),
            updated_at: from_unix(u.updated_at),
        }
    }
}

/// One page of [`SignerClient::list_uploads`](crate::SignerClient::list_uploads).
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPage {
    /// Newest first.
    pub uploads: Vec<Upload>,
    /// Pass to the next call for the following page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl UploadPage {
    pub(crate) fn from_proto(r: proto::ListUploadsResponse) -> Self {
        UploadPage {
            uploads: r.uploads.into_iter().map(Upload::from_proto).collect(),
            next_page_token: non_empty(r.next_page_token),
        }
    }
}

/// One change to an upload, as [`SignerClient::watch_uploads`](crate::SignerClient::watch_uploads)
/// delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadChange {
    /// Opaque position of this change: resume after it with [`WatchFrom::After`].
    pub cursor: String,
    /// The upload as it stands after the change.
    pub upload: Upload,
    /// What caused it: VOD's `EventType`, `Expired` or `Reconciled`.
    pub event_type: String,
    /// When the service received the event behind it.
    pub received_at: SystemTime,
}

impl UploadChange {
    pub(crate) fn from_proto(c: proto::UploadChange) -> Self {
        UploadChange {
            cursor: c.cursor,
            upload: Upload::from_proto(c.upload.unwrap_or_default()),
            event_type: c.event_type,
            received_at: from_unix(c.received_at),
        }
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFrom {
    /// Only changes made from now on.
    Now,
    /// Exactly after the change with this cursor (from an earlier [`UploadChange`]).
    After(String),
}
