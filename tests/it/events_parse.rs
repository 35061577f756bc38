//! Parsing Tencent's published notification bodies, the doc's field-name traps, and the
//! `SignKey` check on the signed fixture.

use crate::support::events::*;
use serde_json::json;
use vod_signer::events::{
    CallbackAuthError, EventParseError, Notification, ProcedureStatus, SignKey, SignLocation,
    SubtaskStatus, dedupe_key, locate_sign, parse, verify_sign,
};

fn no_headers(_: &str) -> Option<String> {
    None
}

#[test]
fn f1_new_file_upload_push() {
    let Notification::NewFileUpload(file) =
        parse(&fixture_bytes("F1-new-file-upload-push.json")).unwrap()
    else {
        panic!("F1 is a NewFileUpload")
    };
    assert_eq!(file.file_id, "5285890784273533167");
    assert_eq!(file.name.as_deref(), Some("动物世界"));
    assert_eq!(file.media_type.as_deref(), Some("mp4"));
    assert_eq!(
        file.media_url.as_deref(),
        Some("http://125676836723.vod2.myqcloud.com/xxx/xxx/q1BORBPQH1IA.mp4")
    );
    // `""` is "none" in Tencent's bodies.
    assert_eq!(file.cover_url, None);
    assert_eq!(file.source_context, None);
    assert_eq!(file.procedure_task_id, None);
    assert_eq!((file.size, file.duration), (None, None));
}

#[test]
fn f2_the_pulled_copy_parses_the_same_and_has_the_same_identity() {
    let pulled = bytes(&pulled("F2-new-file-upload-pull-response.json"));
    let pushed = fixture_bytes("F1-new-file-upload-push.json");
    assert_eq!(parse(&pulled).unwrap(), parse(&pushed).unwrap());
    assert_eq!(dedupe_key(&pulled).unwrap(), dedupe_key(&pushed).unwrap());
}

#[test]
fn f3_procedure_finish_with_all_subtasks_succeeded() {
    let Notification::ProcedureStateChanged(change) =
        parse(&fixture_bytes("F3-procedure-state-changed-push.json")).unwrap()
    else {
        panic!("F3 is a ProcedureStateChanged")
    };
    assert_eq!(change.task_id, "1256768367-Procedure-475b72xxxcb177t1");
    assert_eq!(change.status, ProcedureStatus::Finish);
    assert_eq!(change.file_id.as_deref(), Some("5285890784246869930"));
    assert_eq!(change.session_context, None);
    let kinds: Vec<&str> = change.subtasks.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["Transcode", "CoverBySnapshot"]);
    assert!(
        change
            .subtasks
            .iter()
            .all(|s| s.status == SubtaskStatus::Success)
    );
    assert_eq!(change.first_failure(), None);
}

#[test]
fn f4_the_pulled_procedure_event_parses_like_the_pushed_one() {
    let pulled = bytes(&pulled("F4-procedure-state-changed-pull-response.json"));
    let Notification::ProcedureStateChanged(change) = parse(&pulled).unwrap() else {
        panic!("F4's event is a ProcedureStateChanged")
    };
    assert_eq!(change.task_id, "1256768367-Procedure-475b72xxxcb177t1");
    assert_eq!(change.status, ProcedureStatus::Finish);
    assert_eq!(change.first_failure(), None);
}

#[test]
fn f5_pull_complete_is_another_event_type() {
    assert_eq!(
        parse(&fixture_bytes("F5-pull-complete-push.json")).unwrap(),
        Notification::Other {
            event_type: "PullComplete".into()
        }
    );
}

#[test]
fn f7_legacy_2_0_format_is_detected() {
    assert_eq!(
        parse(&fixture_bytes("F7-legacy-2.0-new-file-upload.json")).unwrap(),
        Notification::Legacy {
            event_type: Some("NewFileUpload".into())
        }
    );
}

#[test]
fn f8_the_2017_pull_response_is_never_read_as_3_0() {
    let parsed = parse(&fixture_bytes("F8-legacy-2017-pull-response.json")).unwrap();
    assert_eq!(parsed, Notification::Legacy { event_type: None });
}

#[test]
fn f10_signed_callback_verifies_with_its_key_and_parses() {
    let body = fixture_bytes("F10-synthetic-signed-callback.json");
    let pair = locate_sign(&body, None, no_headers).unwrap();
    assert_eq!(pair.location, SignLocation::Body);
    let t = pair.t.unwrap();
    assert_eq!(t, 1_767_225_600);
    let key = SignKey::new("MySignKey1".into()).unwrap();
    assert_eq!(verify_sign(&key, &pair.sign, t, t - 600), Ok(()));
    let other = SignKey::new("MySignKey2".into()).unwrap();
    assert_eq!(
        verify_sign(&other, &pair.sign, t, t - 600),
        Err(CallbackAuthError::BadSign)
    );
    assert_eq!(
        verify_sign(&key, &pair.sign, t, t + 61),
        Err(CallbackAuthError::Expired { t, ago: 61 })
    );
    let Notification::NewFileUpload(file) = parse(&body).unwrap() else {
        panic!("F10 is a NewFileUpload")
    };
    assert_eq!(file.source_context.as_deref(), Some("us_01J0EXAMPLE"));
    assert_eq!(file.size, None, "MetaData is null");
    // Sign/T are delivery fields: a re-signed retry is the same event.
    let mut resigned: serde_json::Value = serde_json::from_slice(&body).unwrap();
    resigned["T"] = json!(t + 5);
    resigned["Sign"] = json!(key.sign(t + 5));
    assert_eq!(dedupe_key(&bytes(&resigned)), dedupe_key(&body));
}

#[test]
fn trap_null_metadata_and_null_payload_keys_are_absent() {
    let body = json!({
        "EventType": "NewFileUpload",
        "ProcedureStateChangeEvent": null,
        "FileUploadEvent": {
            "FileId": "1", "MetaData": null, "MediaBasicInfo": null,
            "ProcedureTaskId": null
        }
    });
    let Notification::NewFileUpload(file) = parse(&bytes(&body)).unwrap() else {
        panic!("a NewFileUpload")
    };
    assert_eq!(
        (
            file.size,
            file.name,
            file.source_context,
            file.procedure_task_id
        ),
        (None, None, None, None)
    );
    let with_meta = json!({
        "EventType": "NewFileUpload",
        "FileUploadEvent": { "FileId": "1", "MetaData": { "Size": 1234, "Duration": 60.5 } }
    });
    let Notification::NewFileUpload(file) = parse(&bytes(&with_meta)).unwrap() else {
        panic!("a NewFileUpload")
    };
    assert_eq!((file.size, file.duration), (Some(1234), Some(60.5)));
}

#[test]
fn trap_the_payload_key_has_no_d() {
    let mut body = fixture("F3-procedure-state-changed-push.json");
    let payload = body
        .as_object_mut()
        .unwrap()
        .remove("ProcedureStateChangeEvent")
        .unwrap();
    // What some receivers read: a key VOD never sends. Not a procedure event we can use.
    body["ProcedureStateChangedEvent"] = payload;
    assert_eq!(
        parse(&bytes(&body)).unwrap(),
        Notification::Other {
            event_type: "ProcedureStateChanged".into()
        }
    );
}

#[test]
fn trap_file_ids_above_2_pow_53_stay_exact() {
    let mut body = new_file_upload("up_x", "5285890784273533167", None);
    let Notification::NewFileUpload(file) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    assert_eq!(file.file_id, "5285890784273533167");
    // Even sent as a JSON number, it is not rounded through a float.
    body["FileUploadEvent"]["FileId"] = json!(5_285_890_784_273_533_167_u64);
    let Notification::NewFileUpload(file) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    assert_eq!(file.file_id, "5285890784273533167");
}

#[test]
fn trap_the_top_level_err_code_is_ignored() {
    // Deprecated ErrCode says failure, every subtask succeeded: success.
    let mut body = procedure_changed(Some("up_a"), "1", "t1", "FINISH");
    body["ProcedureStateChangeEvent"]["ErrCode"] = json!(10008);
    body["ProcedureStateChangeEvent"]["Message"] = json!("failed");
    let Notification::ProcedureStateChanged(change) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    assert_eq!(change.first_failure(), None);
    // ErrCode 0 at the top, a subtask failed: failure, reported from the subtask.
    let mut body = procedure_changed(Some("up_a"), "1", "t1", "FINISH");
    fail_first_subtask(&mut body, "FailedOperation.Transcode", "source broken");
    let Notification::ProcedureStateChanged(change) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    let failure = change.first_failure().unwrap();
    assert_eq!(
        (
            failure.kind.as_str(),
            failure.err_code_ext.as_str(),
            failure.message.as_str()
        ),
        ("Transcode", "FailedOperation.Transcode", "source broken")
    );
}

#[test]
fn a_content_review_block_is_a_failure() {
    let mut body = procedure_changed(Some("up_a"), "1", "t1", "FINISH");
    add_review(&mut body, "block");
    let Notification::ProcedureStateChanged(change) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    assert_eq!(change.first_failure().unwrap().kind, "Porn");
    let mut body = procedure_changed(Some("up_a"), "1", "t1", "FINISH");
    add_review(&mut body, "review");
    let Notification::ProcedureStateChanged(change) = parse(&bytes(&body)).unwrap() else {
        panic!()
    };
    assert_eq!(change.first_failure(), None);
}

#[test]
fn bodies_that_are_not_notifications_are_refused() {
    assert!(matches!(parse(b"<xml/>"), Err(EventParseError::NotJson(_))));
    assert_eq!(parse(b"[]"), Err(EventParseError::NotObject));
    assert_eq!(parse(b"{}"), Err(EventParseError::MissingEventType));
    assert_eq!(
        parse(br#"{"EventType":"AigcVideoTaskComplete"}"#),
        Ok(Notification::Other {
            event_type: "AigcVideoTaskComplete".into()
        })
    );
}
