//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one connection (`writer`), so SQLite never has to arbitrate between
//! writers (no `SQLITE_BUSY`), and change positions (AUTOINCREMENT) are assigned in commit
//! order. Reads use a separate pool of read-only connections (sqlx) and are not blocked by the
//! writer. A write resolves only once its commit is on disk (`durability`), and the feed is
//! served only up to the last position on disk.

mod batch_tx;
mod checkpoint;
mod durability;
mod schema;
mod writer;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use super::batch::Incoming;
use super::{Durable, PruneReport, Store, StoredChange, Swept, decode_upload};
use crate::tracking::TrackingError;
use crate::tracking::cursor::PageKey;
use crate::tracking::model::{NewUpload, Receipt, Upload};
use writer::Writer;

const READERS: u32 = 4;

pub(crate) struct SqliteStore {
    writer: Writer,
    readers: SqlitePool,
    /// Keeps the checkpoint thread running while the store exists.
    _checkpoints: std::sync::Arc<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its tables.
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, TrackingError> {
        let (writer, checkpoints) = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || {
                let writer = Writer::open(&path)?;
                Ok::<_, TrackingError>((writer, checkpoint::start(&path)?))
            })
            .await
            .map_err(|e| TrackingError::Unavailable(format!("opening SQLite failed: {e}")))??
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5))
            .read_only(true);
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            writer,
            readers,
            _checkpoints: checkpoints,
        })
    }
}

impl Store for SqliteStore {
    async fn record_issued(&self, uploads: &[NewUpload]) -> Result<(), TrackingError> {
        self.writer.record_issued(uploads.to_vec()).await
    }

    async fn commit_batch(
        &self,
        batch: Vec<Incoming>,
    ) -> Result<(Vec<Receipt>, Durable), TrackingError> {
        self.writer.commit_batch(batch).await
    }

    async fn get_upload(
        &self,
        caller: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, TrackingError> {
        let row = sqlx::query("SELECT snapshot FROM uploads WHERE upload_id = ? AND caller = ?")
            .bind(upload_id)
            .bind(caller)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|r| decode_upload(r.try_get("snapshot")?))
            .transpose()
    }

    async fn list_uploads(
        &self,
        caller: &str,
        user_id: &str,
        limit: u32,
        after: Option<&PageKey>,
    ) -> Result<Vec<Upload>, TrackingError> {
        let rows = match after {
            None => {
                sqlx::query(
                    "SELECT snapshot FROM uploads WHERE caller = ? AND user_id = ?
                     ORDER BY issued_at DESC, upload_id DESC LIMIT ?",
                )
                .bind(caller)
                .bind(user_id)
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await?
            }
            Some(key) => {
                sqlx::query(
                    "SELECT snapshot FROM uploads WHERE caller = ? AND user_id = ?
                       AND (issued_at < ? OR (issued_at = ? AND upload_id < ?))
                     ORDER BY issued_at DESC, upload_id DESC LIMIT ?",
                )
                .bind(caller)
                .bind(user_id)
                .bind(key.issued_at)
                .bind(key.issued_at)
                .bind(&key.upload_id)
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await?
            }
        };
        rows.iter()
            .map(|r| decode_upload(r.try_get("snapshot")?))
            .collect()
    }

    async fn changes_after(
        &self,
        caller: &str,
        user_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredChange>, TrackingError> {
        let rows = sqlx::query(
            "SELECT position, event_type, received_at, snapshot FROM changes
             WHERE caller = ? AND position > ? AND position <= ? AND (? IS NULL OR user_id = ?)
             ORDER BY position LIMIT ?",
        )
        .bind(caller)
        .bind(after)
        .bind(self.writer.durable_position())
        .bind(user_id)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(super::rows::stored_change).collect()
    }

    async fn feed_bounds(&self) -> Result<(i64, i64), TrackingError> {
        let row = sqlx::query(
            "SELECT MAX(MIN(COALESCE((SELECT MAX(position) FROM changes), 0), ?), pruned_through),
                    pruned_through
             FROM feed WHERE id = 1",
        )
        .bind(self.writer.durable_position())
        .fetch_one(&self.readers)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn expire_due(&self, now: i64) -> Result<Swept, TrackingError> {
        self.writer.expire_due(now).await
    }

    async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        self.writer.prune(cutoff).await
    }

    async fn unfinished_procedures(
        &self,
        updated_before: i64,
        limit: u32,
    ) -> Result<Vec<Upload>, TrackingError> {
        let rows = sqlx::query(
            "SELECT snapshot FROM uploads
             WHERE state IN ('uploaded', 'processing') AND procedure IS NOT NULL
               AND updated_at <= ?
             ORDER BY updated_at LIMIT ?",
        )
        .bind(updated_before)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| decode_upload(r.try_get("snapshot")?))
            .collect()
    }
}
