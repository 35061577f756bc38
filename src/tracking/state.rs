//! An upload's state, derived from the SET of facts stored for it.
//!
//! VOD neither orders nor deduplicates its notifications, so nothing here depends on arrival
//! order or repetition: the result is a function of the set (every choice below is a maximum,
//! an "any" or a sort). Pure: the stores call it after each batch.

use crate::events::{FileUpload, ProcedureChange, ProcedureStatus};

use super::model::{Failure, FileState, NewUpload, Upload, UploadState, UploadedFile};

/// One applied event: what it says and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub kind: FactKind,
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FactKind {
    Uploaded(FileUpload),
    Procedure(ProcedureChange),
}

/// Derives the upload from its issued record, the time the sweeper found it expired (if it
/// did), and the facts linked to it.
pub fn derive(issued: &NewUpload, expired_at: Option<i64>, facts: &[Fact]) -> Upload {
    let mut uploads: Vec<(&FileUpload, i64)> = Vec::new();
    let mut procedures: Vec<(&ProcedureChange, i64)> = Vec::new();
    for fact in facts {
        match &fact.kind {
            FactKind::Uploaded(file) => uploads.push((file, fact.received_at)),
            FactKind::Procedure(change) => procedures.push((change, fact.received_at)),
        }
    }
    // Two different bodies for one FileId: the later one's fields win, field by field.
    uploads.sort_by(|a, b| a.0.file_id.cmp(&b.0.file_id).then(a.1.cmp(&b.1)));
    let mut files: Vec<UploadedFile> = Vec::new();
    let mut failure = None;
    for (file, _) in uploads {
        match files.last_mut() {
            Some(last) if last.file_id == file.file_id => merge(last, file),
            _ => files.push(uploaded_file(file)),
        }
    }
    for file in &mut files {
        let (state, file_failure) = file_state(issued, file, &procedures);
        file.state = state;
        if failure.is_none() {
            failure = file_failure;
        }
    }
    let state = if files.is_empty() {
        if expired_at.is_some() {
            UploadState::Expired
        } else {
            UploadState::Issued
        }
    } else if files.iter().any(|f| f.state == FileState::Failed) {
        UploadState::Failed
    } else if files.iter().all(|f| f.state == FileState::Ready) {
        UploadState::Ready
    } else if files
        .iter()
        .any(|f| matches!(f.state, FileState::Processing | FileState::Ready))
    {
        UploadState::Processing
    } else {
        UploadState::Uploaded
    };
    let updated_at = facts
        .iter()
        .map(|f| f.received_at)
        .chain(expired_at)
        .fold(issued.issued_at, i64::max);
    Upload {
        upload_id: issued.upload_id.clone(),
        caller: issued.caller.clone(),
        user_id: issued.user_id.clone(),
        state,
        issued_at: issued.issued_at,
        expires_at: issued.expires_at,
        procedure: issued.procedure.clone(),
        source_context: issued.source_context.clone(),
        session_context: issued.session_context.clone(),
        one_time: issued.one_time,
        failure: if state == UploadState::Failed {
            failure
        } else {
            None
        },
        files,
        updated_at,
    }
}

/// Whether a procedure event concerns this file: same FileId, or the task the upload started.
pub fn concerns(change: &ProcedureChange, file_id: &str, procedure_task_id: Option<&str>) -> bool {
    change.file_id.as_deref() == Some(file_id) || procedure_task_id == Some(change.task_id.as_str())
}

fn file_state(
    issued: &NewUpload,
    file: &UploadedFile,
    procedures: &[(&ProcedureChange, i64)],
) -> (FileState, Option<Failure>) {
    let mine: Vec<&ProcedureChange> = procedures
        .iter()
        .map(|(change, _)| *change)
        .filter(|c| concerns(c, &file.file_id, file.procedure_task_id.as_deref()))
        .collect();
    let finished: Vec<&ProcedureChange> = mine
        .iter()
        .copied()
        .filter(|c| c.status == ProcedureStatus::Finish)
        .collect();
    if !finished.is_empty() {
        // FINISH dominates PROCESSING. Of several FINISH bodies, any failure wins, and the
        // one reported is the smallest by (task, subtask type, code) so the choice is stable.
        let failure = finished
            .iter()
            .filter_map(|c| c.first_failure())
            .map(|s| Failure {
                file_id: file.file_id.clone(),
                subtask_type: s.kind.clone(),
                err_code_ext: s.err_code_ext.clone(),
                message: s.message.clone(),
            })
            .min_by(|a, b| {
                (&a.subtask_type, &a.err_code_ext, &a.message).cmp(&(
                    &b.subtask_type,
                    &b.err_code_ext,
                    &b.message,
                ))
            });
        return match failure {
            Some(failure) => (FileState::Failed, Some(failure)),
            None => (FileState::Ready, None),
        };
    }
    if !mine.is_empty() {
        return (FileState::Processing, None);
    }
    if issued.procedure.is_some() {
        (FileState::Uploaded, None)
    } else {
        (FileState::Ready, None)
    }
}

fn uploaded_file(file: &FileUpload) -> UploadedFile {
    UploadedFile {
        file_id: file.file_id.clone(),
        name: file.name.clone(),
        media_type: file.media_type.clone(),
        media_url: file.media_url.clone(),
        cover_url: file.cover_url.clone(),
        size: file.size,
        duration: file.duration,
        procedure_task_id: file.procedure_task_id.clone(),
        state: FileState::Uploaded,
    }
}

fn merge(into: &mut UploadedFile, later: &FileUpload) {
    fn take<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
        if value.is_some() {
            slot.clone_from(value);
        }
    }
    take(&mut into.name, &later.name);
    take(&mut into.media_type, &later.media_type);
    take(&mut into.media_url, &later.media_url);
    take(&mut into.cover_url, &later.cover_url);
    take(&mut into.size, &later.size);
    take(&mut into.duration, &later.duration);
    take(&mut into.procedure_task_id, &later.procedure_task_id);
}
