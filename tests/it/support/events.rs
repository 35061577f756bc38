//! Tencent's published notification bodies (`../shared/vectors/vod-events/`), loaded as they
//! are and adapted in the test (upload id, FileId, status), never edited on disk.
#![allow(dead_code)]

use serde_json::{Value, json};

pub fn fixture_path(name: &str) -> String {
    format!(
        "{}/../shared/vectors/vod-events/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The first `EventSet` item of a PullEvents response fixture.
pub fn pulled(name: &str) -> Value {
    fixture(name)["Response"]["EventSet"][0].clone()
}

/// F1 for our upload `upload_id`, file `file_id`, optionally naming a procedure task.
pub fn new_file_upload(upload_id: &str, file_id: &str, task_id: Option<&str>) -> Value {
    let mut body = fixture("F1-new-file-upload-push.json");
    let event = &mut body["FileUploadEvent"];
    event["FileId"] = json!(file_id);
    event["MediaBasicInfo"]["SourceInfo"]["SourceContext"] = json!(upload_id);
    event["MediaBasicInfo"]["Vid"] = json!(file_id);
    event["ProcedureTaskId"] = json!(task_id.unwrap_or(""));
    body
}

/// F3 for file `file_id` and task `task_id`, with `SessionContext` = `session` (or none),
/// status `status`, and every subtask succeeded.
pub fn procedure_changed(
    session: Option<&str>,
    file_id: &str,
    task_id: &str,
    status: &str,
) -> Value {
    let mut body = fixture("F3-procedure-state-changed-push.json");
    let event = &mut body["ProcedureStateChangeEvent"];
    event["FileId"] = json!(file_id);
    event["TaskId"] = json!(task_id);
    event["Status"] = json!(status);
    event["SessionContext"] = json!(session.unwrap_or(""));
    body
}

/// Makes the first media-processing subtask of a procedure body fail.
pub fn fail_first_subtask(body: &mut Value, err_code_ext: &str, message: &str) {
    let entry = &mut body["ProcedureStateChangeEvent"]["MediaProcessResultSet"][0];
    let kind = entry["Type"].as_str().unwrap().to_owned();
    let task = &mut entry[format!("{kind}Task")];
    task["Status"] = json!("FAIL");
    task["ErrCodeExt"] = json!(err_code_ext);
    task["ErrCode"] = json!(10008);
    task["Message"] = json!(message);
}

/// Adds a content-review result with `suggestion` to a procedure body.
pub fn add_review(body: &mut Value, suggestion: &str) {
    let event = &mut body["ProcedureStateChangeEvent"];
    event["AiContentReviewResultSet"] = json!([{
        "Type": "Porn",
        "PornTask": {
            "Status": "SUCCESS",
            "ErrCodeExt": "",
            "ErrCode": 0,
            "Message": "",
            "Output": { "Confidence": 97, "Suggestion": suggestion, "Label": "porn" }
        }
    }]);
}

pub fn bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}
