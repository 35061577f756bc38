//! The tracker's errors. Transport adapters map them to codes in one place each
//! (`UNAVAILABLE`/503, `OUT_OF_RANGE`, `INVALID_ARGUMENT`/400, ...).

use crate::events::EventParseError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingError {
    /// The store cannot be reached or refused the write: nothing was stored. (503 /
    /// `UNAVAILABLE`; the sender should retry.)
    #[error("the upload store is unavailable: {0}")]
    Unavailable(String),
    /// The cursor points before what retention has pruned (`OUT_OF_RANGE`).
    #[error("the cursor is older than the retention period; start again without a cursor")]
    CursorExpired,
    #[error("the cursor was not issued by this service")]
    InvalidCursor,
    #[error("the page token was not issued by this service")]
    InvalidPageToken,
    /// The body is not a notification at all (400).
    #[error("the event body is not a notification: {0}")]
    InvalidEvent(EventParseError),
    /// `record_issued` was given an id that is already tracked.
    #[error("the upload id {0} is already tracked")]
    DuplicateUploadId(String),
    /// Stored data this version cannot read: a fault of the store's contents, not of the caller.
    #[error("the upload store holds data this version cannot read: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for TrackingError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => TrackingError::Corrupt(error.to_string()),
            // Connection, I/O, pool timeouts, and the server refusing the statement (out of
            // disk, shutting down, read-only): the event was not stored, the sender retries.
            other => TrackingError::Unavailable(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for TrackingError {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::Utf8Error(_) => TrackingError::Corrupt(error.to_string()),
            // The file cannot be opened or written (disk full, read-only, locked past the busy
            // timeout, I/O errors): the event was not stored, the sender retries.
            other => TrackingError::Unavailable(other.to_string()),
        }
    }
}
