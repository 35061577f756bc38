//! The pure state derivation: order and repetition of events never change the result.

use crate::support::events::*;
use proptest::prelude::*;
use serde_json::Value;
use vod_signer::events::{Notification, parse};
use vod_signer::tracking::state::{Fact, FactKind, derive};
use vod_signer::tracking::{FileState, NewUpload, UploadId, UploadState};

const UPLOAD: &str = "up_state_test";

fn issued(procedure: bool) -> NewUpload {
    NewUpload {
        upload_id: UploadId::parse(UPLOAD).unwrap(),
        caller: "bff".into(),
        user_id: "u1".into(),
        issued_at: 1_000,
        expires_at: 2_000,
        procedure: procedure.then(|| "review".into()),
        source_context: None,
        session_context: None,
        one_time: false,
    }
}

fn fact(body: &Value, received_at: i64) -> Fact {
    let kind = match parse(&bytes(body)).unwrap() {
        Notification::NewFileUpload(f) => FactKind::Uploaded(f),
        Notification::ProcedureStateChanged(p) => FactKind::Procedure(p),
        other => panic!("not applicable: {other:?}"),
    };
    Fact { kind, received_at }
}

/// A signature with a procedure, its file "f1" uploaded (procedure task "t1") at 1 100, then
/// `procedure_event` at 1 300.
fn uploaded_then(procedure_event: &Value) -> vod_signer::tracking::Upload {
    derive(
        &issued(true),
        None,
        &[
            fact(&new_file_upload(UPLOAD, "f1", Some("t1")), 1_100),
            fact(procedure_event, 1_300),
        ],
    )
}

#[test]
fn issued_then_expired_without_an_upload() {
    assert_eq!(derive(&issued(false), None, &[]).state, UploadState::Issued);
    let expired = derive(&issued(false), Some(2_001), &[]);
    assert_eq!(
        (expired.state, expired.updated_at),
        (UploadState::Expired, 2_001)
    );
}

#[test]
fn without_a_procedure_an_upload_is_ready_at_once() {
    let upload = derive(
        &issued(false),
        None,
        &[fact(&new_file_upload(UPLOAD, "f1", None), 1_100)],
    );
    assert_eq!(upload.state, UploadState::Ready);
    assert_eq!(upload.files.len(), 1);
    assert_eq!(upload.files[0].file_id, "f1");
    assert_eq!(upload.updated_at, 1_100);
}

#[test]
fn with_a_procedure_uploaded_then_processing_then_ready() {
    let up = fact(&new_file_upload(UPLOAD, "f1", Some("t1")), 1_100);
    let processing = fact(
        &procedure_changed(Some(UPLOAD), "f1", "t1", "PROCESSING"),
        1_200,
    );
    let finish = fact(
        &procedure_changed(Some(UPLOAD), "f1", "t1", "FINISH"),
        1_300,
    );
    let u = issued(true);
    assert_eq!(
        derive(&u, None, std::slice::from_ref(&up)).state,
        UploadState::Uploaded
    );
    assert_eq!(
        derive(&u, None, &[up.clone(), processing.clone()]).state,
        UploadState::Processing
    );
    let ready = derive(&u, None, &[up, processing, finish]);
    assert_eq!(ready.state, UploadState::Ready);
    assert_eq!(ready.files[0].state, FileState::Ready);
    assert_eq!(ready.failure, None);
}

#[test]
fn a_failed_subtask_fails_the_upload_with_its_details() {
    let mut finish = procedure_changed(Some(UPLOAD), "f1", "t1", "FINISH");
    fail_first_subtask(&mut finish, "FailedOperation.Codec", "unsupported codec");
    let upload = uploaded_then(&finish);
    assert_eq!(upload.state, UploadState::Failed);
    let failure = upload.failure.unwrap();
    assert_eq!(
        (
            failure.file_id.as_str(),
            failure.subtask_type.as_str(),
            failure.err_code_ext.as_str(),
            failure.message.as_str()
        ),
        (
            "f1",
            "Transcode",
            "FailedOperation.Codec",
            "unsupported codec"
        )
    );
}

#[test]
fn a_block_suggestion_fails_the_upload() {
    let mut finish = procedure_changed(Some(UPLOAD), "f1", "t1", "FINISH");
    add_review(&mut finish, "block");
    let upload = uploaded_then(&finish);
    assert_eq!(upload.state, UploadState::Failed);
    assert_eq!(upload.failure.unwrap().subtask_type, "Porn");
}

#[test]
fn a_procedure_event_is_matched_to_its_file_by_task_id() {
    // No FileId in the procedure body: the upload's ProcedureTaskId ties them.
    let mut finish = procedure_changed(None, "f1", "t1", "FINISH");
    finish["ProcedureStateChangeEvent"]["FileId"] = Value::Null;
    let upload = uploaded_then(&finish);
    assert_eq!(upload.state, UploadState::Ready);
}

#[test]
fn a_late_upload_after_expiry_is_still_an_upload() {
    let upload = derive(
        &issued(false),
        Some(2_001),
        &[fact(&new_file_upload(UPLOAD, "f1", None), 2_100)],
    );
    assert_eq!(upload.state, UploadState::Ready);
}

/// The facts of one upload with two files on a non-one-time signature: each uploaded, each
/// processing, each finished (the second one failing).
fn two_file_history() -> Vec<Fact> {
    let mut failed = procedure_changed(Some(UPLOAD), "f2", "t2", "FINISH");
    fail_first_subtask(&mut failed, "FailedOperation", "bad");
    vec![
        fact(&new_file_upload(UPLOAD, "f1", Some("t1")), 1_100),
        fact(&new_file_upload(UPLOAD, "f2", Some("t2")), 1_150),
        fact(
            &procedure_changed(Some(UPLOAD), "f1", "t1", "PROCESSING"),
            1_200,
        ),
        fact(
            &procedure_changed(Some(UPLOAD), "f2", "t2", "PROCESSING"),
            1_250,
        ),
        fact(
            &procedure_changed(Some(UPLOAD), "f1", "t1", "FINISH"),
            1_300,
        ),
        fact(&failed, 1_350),
    ]
}

#[test]
fn several_files_on_one_signature_are_all_listed() {
    let upload = derive(&issued(true), None, &two_file_history());
    let files: Vec<(&str, FileState)> = upload
        .files
        .iter()
        .map(|f| (f.file_id.as_str(), f.state))
        .collect();
    assert_eq!(files, [("f1", FileState::Ready), ("f2", FileState::Failed)]);
    assert_eq!(upload.state, UploadState::Failed);
    assert_eq!(upload.failure.unwrap().file_id, "f2");
    assert_eq!(upload.updated_at, 1_350);
}

proptest! {
    #[test]
    fn any_order_and_any_repetition_give_the_same_upload(
        picks in proptest::collection::vec(0usize..6, 0..24),
        seed in any::<u64>(),
    ) {
        let history = two_file_history();
        let expected = derive(&issued(true), None, &history);
        // Every fact at least once, plus repeats, shuffled.
        let mut facts: Vec<Fact> = history.clone();
        facts.extend(picks.iter().map(|i| history[*i].clone()));
        let mut state = seed | 1;
        for i in (1..facts.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            facts.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(derive(&issued(true), None, &facts), expected);
    }

    #[test]
    fn any_subset_in_any_order_matches_the_same_subset_in_order(
        mask in 0u8..64,
        seed in any::<u64>(),
    ) {
        let history = two_file_history();
        let subset: Vec<Fact> = history
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f.clone())
            .collect();
        let mut shuffled = subset.clone();
        shuffled.extend(subset.iter().cloned());
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(
            derive(&issued(true), None, &shuffled),
            derive(&issued(true), None, &subset)
        );
    }
}
