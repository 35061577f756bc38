//! Rows read back into the tracker's types, written once for both stores: the SQL differs
//! between SQLite and PostgreSQL, the columns and what they hold do not. Generic over the
//! row type, so each store gets its own monomorphic copy (no dynamic dispatch per row).

use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use super::{StoredChange, decode_upload};
use crate::tracking::model::NewUpload;
use crate::tracking::{TrackingError, UploadId};

/// An issued upload as `record_issued` stored it (columns `upload_id`, `caller`, `user_id`,
/// `issued_at`, `expires_at`, `procedure`, `source_context`, `session_context`, `one_time`),
/// and when it was marked expired (`expired_at`, if it was).
pub(super) fn issued_upload<R, DB>(row: &R) -> Result<(NewUpload, Option<i64>), TrackingError>
where
    R: Row<Database = DB>,
    DB: Database,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> bool: Decode<'r, DB> + Type<DB>,
{
    let upload_id: String = row.try_get("upload_id")?;
    let upload_id = UploadId::parse(&upload_id)
        .map_err(|e| TrackingError::Corrupt(format!("stored upload id: {e}")))?;
    Ok((
        NewUpload {
            upload_id,
            caller: row.try_get("caller")?,
            user_id: row.try_get("user_id")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            procedure: row.try_get("procedure")?,
            source_context: row.try_get("source_context")?,
            session_context: row.try_get("session_context")?,
            one_time: row.try_get("one_time")?,
        },
        row.try_get("expired_at")?,
    ))
}

/// One row of the change feed (columns `position`, `event_type`, `received_at`, `snapshot`).
pub(super) fn stored_change<R, DB>(row: &R) -> Result<StoredChange, TrackingError>
where
    R: Row<Database = DB>,
    DB: Database,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    Ok(StoredChange {
        position: row.try_get("position")?,
        event_type: row.try_get("event_type")?,
        received_at: row.try_get("received_at")?,
        upload: decode_upload(row.try_get("snapshot")?)?,
    })
}
