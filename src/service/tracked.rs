//! Tracked issuance: for a caller with `track_uploads`, every signature gets an upload record,
//! and the signature's `sourceContext` (and `sessionContext`, when a task flow runs) carries the
//! record's id so VOD's events can be tied back to it. The caller's own contexts are kept in
//! the record instead of going on the wire.

use crate::signature::{SessionContext, SignRequest, SourceContext};
use crate::tracking::{NewUpload, UploadId};

use super::ServiceError;

/// One signature to mint for a tracked caller: its request (contexts replaced by the id) and
/// the record to store before it is handed out.
pub(super) struct TrackedSignature {
    pub request: SignRequest,
    pub upload_id: UploadId,
}

/// The request to sign for upload `upload_id`: the caller's request with both contexts
/// replaced as the contract says.
pub(super) fn with_upload_id(
    request: &SignRequest,
    upload_id: &UploadId,
) -> Result<SignRequest, ServiceError> {
    let mut params = request.params().clone();
    let id = upload_id.as_str();
    // An id is at most 64 URL-safe characters: far inside both contexts' limits.
    params.source_context = Some(
        SourceContext::new(id).map_err(|e| ServiceError::Internal(format!("upload id: {e}")))?,
    );
    params.session_context = if has_procedure(request) {
        Some(
            SessionContext::new(id)
                .map_err(|e| ServiceError::Internal(format!("upload id: {e}")))?,
        )
    } else {
        None
    };
    SignRequest::new(request.validity(), params)
        .map_err(|e| ServiceError::Internal(format!("tracked request: {e}")))
}

/// `count` signatures' worth of fresh ids and requests.
pub(super) fn prepare(
    request: &SignRequest,
    count: u32,
) -> Result<Vec<TrackedSignature>, ServiceError> {
    (0..count)
        .map(|_| {
            let upload_id = UploadId::generate();
            Ok(TrackedSignature {
                request: with_upload_id(request, &upload_id)?,
                upload_id,
            })
        })
        .collect()
}

fn has_procedure(request: &SignRequest) -> bool {
    request
        .params()
        .procedure
        .as_ref()
        .is_some_and(|p| !p.as_str().is_empty())
}

/// The record for one tracked signature; `request` is the caller's original (with its own
/// contexts), `issued_at`/`expires_at` what was signed.
pub(super) fn new_upload(
    upload_id: UploadId,
    caller: &str,
    user_id: &str,
    request: &SignRequest,
    issued_at: i64,
    expires_at: i64,
) -> NewUpload {
    let params = request.params();
    NewUpload {
        upload_id,
        caller: caller.to_owned(),
        user_id: user_id.to_owned(),
        issued_at,
        expires_at,
        procedure: params
            .procedure
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty()),
        source_context: params
            .source_context
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        session_context: params
            .session_context
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        one_time: params.one_time_valid == Some(true),
    }
}
