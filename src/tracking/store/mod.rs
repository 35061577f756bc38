//! The durable stores behind the tracker: SQLite (embedded, one process) and PostgreSQL
//! (several replicas on one database). Both implement [`Store`]; the batch logic that turns
//! received events into upload changes is written once ([`batch`]) over [`BatchTx`], the few
//! statements a store runs inside one transaction.

mod batch;
mod postgres;
mod rows;
mod sqlite;

use std::future::Future;

use futures_util::future::BoxFuture;

pub(super) use postgres::PostgresStore;
pub(super) use sqlite::SqliteStore;

pub(crate) use batch::Incoming;

use super::TrackingError;
use super::cursor::PageKey;
use super::model::{NewUpload, Receipt, Upload};

/// One row of the change feed as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredChange {
    pub position: i64,
    pub event_type: String,
    pub received_at: i64,
    pub upload: Upload,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub events: u64,
    pub uploads: u64,
    pub changes: u64,
}

/// What a committed batch waits for before it is answered: its commit reaching the disk.
pub(crate) type Durable = BoxFuture<'static, Result<(), TrackingError>>;

/// What the tracker needs from a store. Every write is durable when its future resolves Ok,
/// except that `commit_batch` hands its durability back as a [`Durable`].
pub(crate) trait Store: Send + Sync + 'static {
    fn record_issued(
        &self,
        uploads: &[NewUpload],
    ) -> impl Future<Output = Result<(), TrackingError>> + Send;

    /// Stores and applies one group of events in ONE transaction; one receipt per event. The
    /// store is free for the next batch when this resolves, and the batch is durable once the
    /// returned [`Durable`] resolves Ok (the one write that may resolve before that).
    fn commit_batch(
        &self,
        batch: Vec<Incoming>,
    ) -> impl Future<Output = Result<(Vec<Receipt>, Durable), TrackingError>> + Send;

    fn get_upload(
        &self,
        caller: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<Option<Upload>, TrackingError>> + Send;

    /// At most `limit` of one user's uploads for one caller, newest first, after `after`.
    fn list_uploads(
        &self,
        caller: &str,
        user_id: &str,
        limit: u32,
        after: Option<&PageKey>,
    ) -> impl Future<Output = Result<Vec<Upload>, TrackingError>> + Send;

    /// Changes to the caller's uploads with a position above `after`, in position order.
    fn changes_after(
        &self,
        caller: &str,
        user_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredChange>, TrackingError>> + Send;

    /// The last position of the feed (0 when empty) and the position up to which retention
    /// has pruned it (a cursor below it is expired).
    fn feed_bounds(&self) -> impl Future<Output = Result<(i64, i64), TrackingError>> + Send;

    /// Moves uploads still ISSUED whose `expires_at` is before `now` to EXPIRED, about
    /// [`EXPIRE_PER_CALL`] at most, in one transaction.
    fn expire_due(&self, now: i64) -> impl Future<Output = Result<Swept, TrackingError>> + Send;

    /// Removes event bodies, uploads and changes last touched before `cutoff`.
    fn prune(&self, cutoff: i64)
    -> impl Future<Output = Result<PruneReport, TrackingError>> + Send;

    /// Uploads with a procedure, not finished, last changed at or before `updated_before`.
    fn unfinished_procedures(
        &self,
        updated_before: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Upload>, TrackingError>> + Send;
}

/// The statements [`batch::apply`] runs inside one transaction.
pub(crate) trait BatchTx: Send {
    /// `(file_id, procedure_task_id, upload_id)` of stored, matched uploads of these files or
    /// procedure tasks.
    fn uploads_of_files(
        &mut self,
        file_ids: &[String],
        task_ids: &[String],
    ) -> impl Future<Output = Result<Vec<FileLink>, TrackingError>> + Send;

    /// Inserts the events whose key is new; returns the keys inserted.
    fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
    ) -> impl Future<Output = Result<Vec<String>, TrackingError>> + Send;

    /// Attaches stored, unmatched procedure events of these files (or tasks) to their upload;
    /// returns the uploads that gained events.
    fn link_waiting(
        &mut self,
        links: &[FileLink],
    ) -> impl Future<Output = Result<Vec<String>, TrackingError>> + Send;

    /// The issued records (and the sweeper's expiry time) of those of these ids that are
    /// tracked uploads.
    fn issued(
        &mut self,
        upload_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(NewUpload, Option<i64>)>, TrackingError>> + Send;

    /// Every event applied to these uploads.
    fn applied_events(
        &mut self,
        upload_ids: &[String],
    ) -> impl Future<Output = Result<Vec<AppliedEvent>, TrackingError>> + Send;

    /// Marks uploads still ISSUED whose `expires_at` is before `now` as expired at `now`,
    /// about `limit` at most (under twice it); returns their ids, and whether more may be due.
    fn mark_expired(
        &mut self,
        now: i64,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<String>, bool), TrackingError>> + Send;

    /// Saves the derived uploads and appends one change for each, in this order.
    fn save(
        &mut self,
        changes: &[(Upload, String, i64)],
    ) -> impl Future<Output = Result<(), TrackingError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileLink {
    pub file_id: String,
    pub task_id: Option<String>,
    pub upload_id: String,
}

/// A stored event of an upload, as its state is derived from it.
#[derive(Debug, Clone)]
pub(crate) struct AppliedEvent {
    pub upload_id: String,
    pub dedupe_key: String,
    pub raw: Vec<u8>,
    pub received_at: i64,
}

/// Uploads one `expire_due` call moves to EXPIRED at most; the sweeper calls again while
/// more may be due, so one transaction stays small.
pub(crate) const EXPIRE_PER_CALL: u32 = 1000;

/// What one `expire_due` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Uploads moved to EXPIRED.
    pub expired: u64,
    /// Whether more may be due: the call stopped at its limit.
    pub more: bool,
}

/// An event as it is inserted.
#[derive(Debug, Clone)]
pub(crate) struct EventRow<'a> {
    pub dedupe_key: &'a str,
    pub received_at: i64,
    pub delivery: &'static str,
    pub event_type: &'a str,
    pub raw: &'a [u8],
    pub upload_id: Option<&'a str>,
    pub file_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

/// Either store; the tracker holds one of these.
#[derive(Clone)]
pub(crate) enum AnyStore {
    Sqlite(std::sync::Arc<SqliteStore>),
    Postgres(std::sync::Arc<PostgresStore>),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call,
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn record_issued(&self, uploads: &[NewUpload]) -> Result<(), TrackingError> {
        dispatch!(self, s => s.record_issued(uploads).await)
    }
    async fn commit_batch(
        &self,
        batch: Vec<Incoming>,
    ) -> Result<(Vec<Receipt>, Durable), TrackingError> {
        dispatch!(self, s => s.commit_batch(batch).await)
    }
    async fn get_upload(
        &self,
        caller: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, TrackingError> {
        dispatch!(self, s => s.get_upload(caller, upload_id).await)
    }
    async fn list_uploads(
        &self,
        caller: &str,
        user_id: &str,
        limit: u32,
        after: Option<&PageKey>,
    ) -> Result<Vec<Upload>, TrackingError> {
        dispatch!(self, s => s.list_uploads(caller, user_id, limit, after).await)
    }
    async fn changes_after(
        &self,
        caller: &str,
        user_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, TrackingError> {
        dispatch!(self, s => s.changes_after(caller, user_id, after, limit).await)
    }
    async fn feed_bounds(&self) -> Result<(i64, i64), TrackingError> {
        dispatch!(self, s => s.feed_bounds().await)
    }
    async fn expire_due(&self, now: i64) -> Result<Swept, TrackingError> {
        dispatch!(self, s => s.expire_due(now).await)
    }
    async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        dispatch!(self, s => s.prune(cutoff).await)
    }
    async fn unfinished_procedures(
        &self,
        updated_before: i64,
        limit: u32,
    ) -> Result<Vec<Upload>, TrackingError> {
        dispatch!(self, s => s.unfinished_procedures(updated_before, limit).await)
    }
}

/// Decodes a stored upload snapshot.
pub(crate) fn decode_upload(json: &str) -> Result<Upload, TrackingError> {
    serde_json::from_str(json).map_err(|e| TrackingError::Corrupt(format!("upload snapshot: {e}")))
}

pub(crate) fn encode_upload(upload: &Upload) -> String {
    serde_json::to_string(upload).expect("an upload always serialises")
}
