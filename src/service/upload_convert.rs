//! Upload records as `vod.signer.v1` messages.

use crate::proto::v1 as pb;
use crate::tracking::{FileState, Upload, UploadChange, UploadState, UploadedFile};

fn state(state: UploadState) -> pb::UploadState {
    match state {
        UploadState::Issued => pb::UploadState::Issued,
        UploadState::Uploaded => pb::UploadState::Uploaded,
        UploadState::Processing => pb::UploadState::Processing,
        UploadState::Ready => pb::UploadState::Ready,
        UploadState::Failed => pb::UploadState::Failed,
        UploadState::Expired => pb::UploadState::Expired,
    }
}

fn file_state(state: FileState) -> pb::UploadState {
    match state {
        FileState::Uploaded => pb::UploadState::Uploaded,
        FileState::Processing => pb::UploadState::Processing,
        FileState::Ready => pb::UploadState::Ready,
        FileState::Failed => pb::UploadState::Failed,
    }
}

fn file(f: UploadedFile) -> pb::UploadedFile {
    pb::UploadedFile {
        file_id: f.file_id,
        name: f.name.unwrap_or_default(),
        media_type: f.media_type.unwrap_or_default(),
        media_url: f.media_url.unwrap_or_default(),
        cover_url: f.cover_url.unwrap_or_default(),
        size: f.size,
        duration: f.duration,
        procedure_task_id: f.procedure_task_id.unwrap_or_default(),
        state: file_state(f.state) as i32,
    }
}

pub(super) fn upload(u: Upload) -> pb::Upload {
    pb::Upload {
        upload_id: u.upload_id.as_str().to_owned(),
        user_id: u.user_id,
        state: state(u.state) as i32,
        issued_at: u.issued_at,
        expires_at: u.expires_at,
        procedure: u.procedure.unwrap_or_default(),
        source_context: u.source_context.unwrap_or_default(),
        session_context: u.session_context.unwrap_or_default(),
        files: u.files.into_iter().map(file).collect(),
        failure: u.failure.map(|f| pb::UploadFailure {
            file_id: f.file_id,
            subtask_type: f.subtask_type,
            err_code_ext: f.err_code_ext,
            message: f.message,
        }),
        updated_at: u.updated_at,
        one_time: u.one_time,
    }
}

pub(super) fn change(c: UploadChange) -> pb::UploadChange {
    pb::UploadChange {
        cursor: c.cursor,
        upload: Some(upload(c.upload)),
        event_type: c.event_type,
        received_at: c.received_at,
    }
}
