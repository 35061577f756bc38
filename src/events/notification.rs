//! The 3.0-format notification body, read tolerantly.
//!
//! Tencent adds event types and fields over time, sends `null` or omits optional fields
//! depending on the delivery mode, and uses `""` for "none". So the body is read as a JSON
//! tree and only the fields the tracker needs are picked out: `null`, absent and `""` all mean
//! "not given", numbers may come as strings, and nothing unknown is an error.

use serde_json::{Map, Value};

/// A parsed notification body.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// `NewFileUpload` with its `FileUploadEvent` and a `FileId`.
    NewFileUpload(FileUpload),
    /// `ProcedureStateChanged` with its `ProcedureStateChangeEvent` and a `TaskId`.
    ProcedureStateChanged(ProcedureChange),
    /// The retired 2.0 format (`version`/`eventType`/`data`), or a 2017 pull response: the
    /// VOD application is misconfigured. Kept and acknowledged, never applied.
    Legacy { event_type: Option<String> },
    /// Any other event type, or a known one without the payload it needs. Kept and
    /// acknowledged, never applied.
    Other { event_type: String },
}

impl Notification {
    /// The `EventType` as VOD sent it (`""` for a legacy body that names none).
    pub fn event_type(&self) -> &str {
        match self {
            Notification::NewFileUpload(_) => NEW_FILE_UPLOAD,
            Notification::ProcedureStateChanged(_) => PROCEDURE_STATE_CHANGED,
            Notification::Legacy { event_type } => event_type.as_deref().unwrap_or(""),
            Notification::Other { event_type } => event_type,
        }
    }
}

const NEW_FILE_UPLOAD: &str = "NewFileUpload";
const PROCEDURE_STATE_CHANGED: &str = "ProcedureStateChanged";

/// `FileUploadEvent`: a file reached VOD.
#[derive(Debug, Clone, PartialEq)]
pub struct FileUpload {
    /// Kept as text: FileIds exceed 2^53 and would lose digits as a float.
    pub file_id: String,
    /// `MediaBasicInfo.SourceInfo.SourceContext`: the signature's `sourceContext`.
    pub source_context: Option<String>,
    pub name: Option<String>,
    /// `MediaBasicInfo.Type`, the container (`mp4`).
    pub media_type: Option<String>,
    pub media_url: Option<String>,
    pub cover_url: Option<String>,
    /// `MetaData.Size` in bytes (`MetaData` may be `null`).
    pub size: Option<i64>,
    /// `MetaData.Duration` in seconds.
    pub duration: Option<f64>,
    /// The task flow this upload started, matched by `ProcedureStateChangeEvent.TaskId`.
    pub procedure_task_id: Option<String>,
}

/// `ProcedureStateChangeEvent` (no "d" in the key): a task flow advanced or finished.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcedureChange {
    pub task_id: String,
    pub status: ProcedureStatus,
    pub file_id: Option<String>,
    /// The signature's `sessionContext`, when it set a procedure.
    pub session_context: Option<String>,
    /// Every subtask of every result set, in body order. The deprecated top-level
    /// `ErrCode`/`Message` are deliberately not read: success is decided per subtask.
    pub subtasks: Vec<Subtask>,
}

impl ProcedureChange {
    /// The first subtask that did not succeed or whose content review says `block`;
    /// `None` when the flow succeeded (meaningful once `status` is `Finish`).
    pub fn first_failure(&self) -> Option<&Subtask> {
        self.subtasks.iter().find(|s| {
            s.status != SubtaskStatus::Success || s.suggestion.as_deref() == Some("block")
        })
    }
}

/// `ProcedureTask.Status`: `PROCESSING` or `FINISH` (which is not "success").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcedureStatus {
    Processing,
    Finish,
    Unknown(String),
}

/// One entry of `MediaProcessResultSet`, `AiContentReviewResultSet`, `AiAnalysisResultSet`
/// or `AiRecognitionResultSet`: `{ "Type": T, "<T>Task": { Status, ErrCodeExt, ... } }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subtask {
    /// `Type` (`Transcode`, `Porn`, `Porn.Asr`, ...).
    pub kind: String,
    pub status: SubtaskStatus,
    /// `""` means success; the deprecated numeric `ErrCode` is used only when this is absent.
    pub err_code_ext: String,
    pub message: String,
    /// A content review's `Output.Suggestion` (`pass`, `review`, `block`).
    pub suggestion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubtaskStatus {
    Processing,
    Success,
    Fail,
    Unknown(String),
}

/// Why a body is not a notification at all (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not an object")]
    NotObject,
    #[error("the body has no EventType (nor a legacy eventType/version)")]
    MissingEventType,
}

const SUBTASK_SETS: [&str; 4] = [
    "MediaProcessResultSet",
    "AiContentReviewResultSet",
    "AiAnalysisResultSet",
    "AiRecognitionResultSet",
];

/// Parses a PUSH body or one `EventSet[]` item of a PullEvents response.
pub fn parse(raw: &[u8]) -> Result<Notification, EventParseError> {
    parse_object(&object_of(raw)?)
}

/// [`parse`] and [`super::dedupe_key`] of one body, reading the JSON once.
pub(crate) fn parse_keyed(raw: &[u8]) -> Result<(Notification, String), EventParseError> {
    parse_body(raw).map(ParsedBody::into_keyed)
}

/// Everything a receiver asks of one callback body, reading the JSON once.
#[derive(Debug)]
pub(crate) struct ParsedBody {
    pub notification: Notification,
    /// The `Sign`/`T` pair of the body's own fields, if it carries one.
    pub sign: Option<super::SignedPair>,
    body: Map<String, Value>,
}

impl ParsedBody {
    /// The notification and its dedupe key. The key hashes the whole body, so it is worked
    /// out only for a body that passed authentication.
    pub(crate) fn into_keyed(self) -> (Notification, String) {
        (self.notification, super::dedupe::key_of(self.body))
    }
}

/// [`parse`], and the body's own `Sign`/`T` pair; [`ParsedBody::into_keyed`] adds the key.
pub(crate) fn parse_body(raw: &[u8]) -> Result<ParsedBody, EventParseError> {
    let body = object_of(raw)?;
    let notification = parse_object(&body)?;
    let sign = super::locate::in_fields(&body);
    Ok(ParsedBody {
        notification,
        sign,
        body,
    })
}

pub(super) fn object_of(raw: &[u8]) -> Result<Map<String, Value>, EventParseError> {
    match serde_json::from_slice(raw) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(EventParseError::NotObject),
        Err(e) => Err(EventParseError::NotJson(e.to_string())),
    }
}

fn parse_object(body: &Map<String, Value>) -> Result<Notification, EventParseError> {
    let Some(event_type) = text(body, "EventType") else {
        // The 2.0 format has lowercase `eventType`/`version`/`data`; the 2017 pull API wrapped
        // them in `eventList`. Both mean the application still sends the old format.
        if ["eventType", "version", "data", "eventList"]
            .iter()
            .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
        {
            return Ok(Notification::Legacy {
                event_type: text(body, "eventType"),
            });
        }
        return Err(EventParseError::MissingEventType);
    };
    let parsed = match event_type.as_str() {
        NEW_FILE_UPLOAD => object(body, "FileUploadEvent")
            .and_then(file_upload)
            .map(Notification::NewFileUpload),
        PROCEDURE_STATE_CHANGED => object(body, "ProcedureStateChangeEvent")
            .and_then(procedure_change)
            .map(Notification::ProcedureStateChanged),
        _ => None,
    };
    Ok(parsed.unwrap_or(Notification::Other { event_type }))
}

fn file_upload(event: &Map<String, Value>) -> Option<FileUpload> {
    let file_id = text(event, "FileId")?;
    let basic = object(event, "MediaBasicInfo");
    let basic_text = |key: &str| basic.and_then(|b| text(b, key));
    let meta = object(event, "MetaData");
    Some(FileUpload {
        file_id,
        source_context: basic
            .and_then(|b| object(b, "SourceInfo"))
            .and_then(|s| text(s, "SourceContext")),
        name: basic_text("Name"),
        media_type: basic_text("Type"),
        media_url: basic_text("MediaUrl"),
        cover_url: basic_text("CoverUrl"),
        size: meta.and_then(|m| integer(m.get("Size")?)),
        duration: meta.and_then(|m| float(m.get("Duration")?)),
        procedure_task_id: text(event, "ProcedureTaskId"),
    })
}

fn procedure_change(event: &Map<String, Value>) -> Option<ProcedureChange> {
    let task_id = text(event, "TaskId")?;
    let status = match text(event, "Status").as_deref() {
        Some("PROCESSING") => ProcedureStatus::Processing,
        Some("FINISH") => ProcedureStatus::Finish,
        other => ProcedureStatus::Unknown(other.unwrap_or_default().to_owned()),
    };
    let subtasks = SUBTASK_SETS
        .iter()
        .filter_map(|set| event.get(*set)?.as_array())
        .flatten()
        .filter_map(Value::as_object)
        .map(subtask)
        .collect();
    Some(ProcedureChange {
        task_id,
        status,
        file_id: text(event, "FileId"),
        session_context: text(event, "SessionContext"),
        subtasks,
    })
}

fn subtask(entry: &Map<String, Value>) -> Subtask {
    let kind = text(entry, "Type").unwrap_or_default();
    // The task object's key is `<Type>Task` with the dots removed (`Porn.Asr` → `PornAsrTask`);
    // taking the one object-valued `...Task` field avoids spelling every type out.
    let task = entry
        .iter()
        .find(|(k, v)| k.ends_with("Task") && v.is_object())
        .and_then(|(_, v)| v.as_object());
    let field = |key: &str| task.and_then(|t| text(t, key));
    let status = match field("Status").as_deref() {
        Some("SUCCESS") => SubtaskStatus::Success,
        Some("FAIL") => SubtaskStatus::Fail,
        Some("PROCESSING") => SubtaskStatus::Processing,
        other => SubtaskStatus::Unknown(other.unwrap_or_default().to_owned()),
    };
    let err_code_ext = field("ErrCodeExt")
        .or_else(|| {
            task.and_then(|t| integer(t.get("ErrCode")?))
                .filter(|code| *code != 0)
                .map(|code| code.to_string())
        })
        .unwrap_or_default();
    Subtask {
        kind,
        status,
        err_code_ext,
        message: field("Message").unwrap_or_default(),
        suggestion: task
            .and_then(|t| object(t, "Output"))
            .and_then(|o| text(o, "Suggestion")),
    }
}

fn object<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    map.get(key)?.as_object()
}

/// A non-empty string; an integer is taken as its decimal text (a FileId sent as a number).
fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
