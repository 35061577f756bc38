//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one connection, so SQLite never has to arbitrate between writers
//! (no `SQLITE_BUSY`), and change positions (AUTOINCREMENT) are assigned in commit order. Reads
//! use a separate pool and are not blocked by the writer. `synchronous = FULL`: a commit is on
//! disk before the tracker answers.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use super::batch::{self, Incoming};
use super::rows;
use super::{
    AppliedEvent, BatchTx, EXPIRE_PER_CALL, EventRow, FileLink, PruneReport, Store, StoredChange,
    decode_upload, encode_upload,
};
use crate::tracking::TrackingError;
use crate::tracking::cursor::PageKey;
use crate::tracking::model::{NewUpload, Receipt, Upload};
use crate::tracking::state;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT PRIMARY KEY,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        procedure TEXT,
        source_context TEXT,
        session_context TEXT,
        one_time INTEGER NOT NULL,
        expired_at INTEGER,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS uploads_by_user
        ON uploads (caller, user_id, issued_at DESC, upload_id DESC)",
    "CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads (state, expires_at)",
    "CREATE INDEX IF NOT EXISTS uploads_by_updated ON uploads (updated_at)",
    "CREATE TABLE IF NOT EXISTS events (
        dedupe_key TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        delivery TEXT NOT NULL,
        event_type TEXT NOT NULL,
        raw BLOB NOT NULL,
        upload_id TEXT,
        file_id TEXT,
        task_id TEXT)",
    "CREATE INDEX IF NOT EXISTS events_by_upload ON events (upload_id)",
    "CREATE INDEX IF NOT EXISTS events_by_file ON events (file_id)",
    "CREATE INDEX IF NOT EXISTS events_by_task ON events (task_id)",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at)",
    // Procedure events still waiting for their upload. Most stored events never match an
    // upload (untracked uploads, other event types), so linking must not search all of those.
    "CREATE INDEX IF NOT EXISTS waiting_by_file ON events (file_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE INDEX IF NOT EXISTS waiting_by_task ON events (task_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE TABLE IF NOT EXISTS changes (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        upload_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_by_caller ON changes (caller, position)",
    "CREATE TABLE IF NOT EXISTS feed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pruned_through INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO feed (id, pruned_through) VALUES (1, 0)",
];

const READERS: u32 = 4;

pub(crate) struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its tables.
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, TrackingError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&writer).await?;
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, readers })
    }
}

struct SqliteTx(Transaction<'static, Sqlite>);

impl Store for SqliteStore {
    async fn record_issued(&self, uploads: &[NewUpload]) -> Result<(), TrackingError> {
        let mut tx = self.writer.begin().await?;
        for upload in uploads {
            let snapshot = state::derive(upload, None, &[]);
            let result = sqlx::query(
                "INSERT INTO uploads (upload_id, caller, user_id, issued_at, expires_at,
                    procedure, source_context, session_context, one_time, expired_at, state,
                    updated_at, snapshot)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            )
            .bind(upload.upload_id.as_str())
            .bind(&upload.caller)
            .bind(&upload.user_id)
            .bind(upload.issued_at)
            .bind(upload.expires_at)
            .bind(&upload.procedure)
            .bind(&upload.source_context)
            .bind(&upload.session_context)
            .bind(upload.one_time)
            .bind(snapshot.state.as_str())
            .bind(snapshot.updated_at)
            .bind(encode_upload(&snapshot))
            .execute(&mut *tx)
            .await;
            match result {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(TrackingError::DuplicateUploadId(
                        upload.upload_id.to_string(),
                    ));
                }
                other => other?,
            };
        }
        tx.commit().await?;
        Ok(())
    }

    async fn commit_batch(&self, batch: &[Incoming]) -> Result<Vec<Receipt>, TrackingError> {
        let mut tx = SqliteTx(self.writer.begin().await?);
        let receipts = batch::apply(&mut tx, batch).await?;
        tx.0.commit().await?;
        Ok(receipts)
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
             WHERE caller = ? AND position > ? AND (? IS NULL OR user_id = ?)
             ORDER BY position LIMIT ?",
        )
        .bind(caller)
        .bind(after)
        .bind(user_id)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::stored_change).collect()
    }

    async fn feed_bounds(&self) -> Result<(i64, i64), TrackingError> {
        let row = sqlx::query(
            "SELECT MAX(COALESCE((SELECT MAX(position) FROM changes), 0), pruned_through),
                    pruned_through
             FROM feed WHERE id = 1",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn expire_due(&self, now: i64) -> Result<u64, TrackingError> {
        let mut tx = SqliteTx(self.writer.begin().await?);
        let count = batch::expire(&mut tx, now, EXPIRE_PER_CALL).await?;
        tx.0.commit().await?;
        Ok(count)
    }

    async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        let mut tx = self.writer.begin().await?;
        let uploads = sqlx::query("DELETE FROM uploads WHERE updated_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // An event of a surviving upload is kept with it: the upload's state is derived from it.
        let events = sqlx::query(
            "DELETE FROM events WHERE received_at < ?
               AND (upload_id IS NULL OR upload_id NOT IN (SELECT upload_id FROM uploads))",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The feed is cut at a position, so every cursor at or after it still resumes exactly.
        let through: Option<i64> =
            sqlx::query_scalar("SELECT MAX(position) FROM changes WHERE received_at < ?")
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await?;
        let mut changes = 0;
        if let Some(through) = through {
            changes = sqlx::query("DELETE FROM changes WHERE position <= ?")
                .bind(through)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE feed SET pruned_through = MAX(pruned_through, ?) WHERE id = 1")
                .bind(through)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(PruneReport {
            events,
            uploads,
            changes,
        })
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

/// Statements of a batch, each over the whole batch: a batch costs a fixed number of
/// statements (each a hop to sqlx's SQLite thread) rather than several per event.
impl BatchTx for SqliteTx {
    async fn tracked(&mut self, upload_ids: &[String]) -> Result<Vec<String>, TrackingError> {
        let mut found = Vec::new();
        for ids in upload_ids.chunks(MAX_LIST) {
            let mut query = QueryBuilder::new("SELECT upload_id FROM uploads WHERE upload_id IN ");
            push_list(&mut query, ids);
            found.extend(
                query
                    .build_query_scalar::<String>()
                    .fetch_all(&mut *self.0)
                    .await?,
            );
        }
        Ok(found)
    }

    async fn uploads_of_files(
        &mut self,
        file_ids: &[String],
        task_ids: &[String],
    ) -> Result<Vec<FileLink>, TrackingError> {
        let mut links = Vec::new();
        for (column, values) in [("file_id", file_ids), ("task_id", task_ids)] {
            for values in values.chunks(MAX_LIST) {
                let mut query = QueryBuilder::new(format!(
                    "SELECT file_id, task_id, upload_id FROM events
                     WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND {column} IN "
                ));
                push_list(&mut query, values);
                for row in query.build().fetch_all(&mut *self.0).await? {
                    links.push(FileLink {
                        file_id: row.try_get("file_id")?,
                        task_id: row.try_get("task_id")?,
                        upload_id: row.try_get("upload_id")?,
                    });
                }
            }
        }
        Ok(links)
    }

    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<Vec<String>, TrackingError> {
        let mut inserted = Vec::with_capacity(rows.len());
        for rows in rows.chunks(MAX_LIST / 8) {
            let mut query = QueryBuilder::new(
                "INSERT INTO events (dedupe_key, received_at, delivery, event_type, raw,
                    upload_id, file_id, task_id) ",
            );
            query.push_values(rows, |mut row, event| {
                row.push_bind(event.dedupe_key)
                    .push_bind(event.received_at)
                    .push_bind(event.delivery)
                    .push_bind(event.event_type)
                    .push_bind(event.raw)
                    .push_bind(event.upload_id)
                    .push_bind(event.file_id)
                    .push_bind(event.task_id);
            });
            query.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key");
            inserted.extend(
                query
                    .build_query_scalar::<String>()
                    .fetch_all(&mut *self.0)
                    .await?,
            );
        }
        Ok(inserted)
    }

    async fn link_waiting(&mut self, links: &[FileLink]) -> Result<Vec<String>, TrackingError> {
        let mut touched = Vec::new();
        for links in links.chunks(MAX_LIST / 3) {
            let mut query = QueryBuilder::new("WITH l (upload_id, file_id, task_id) AS (");
            query.push_values(links, |mut row, link| {
                row.push_bind(&link.upload_id)
                    .push_bind(&link.file_id)
                    .push_bind(&link.task_id);
            });
            // Without statistics SQLite would search `events_by_upload` for NULL, that is
            // every unmatched event, once per link; the waiting indexes are named instead.
            query.push(
                ") UPDATE events SET upload_id = l.upload_id FROM l
                 WHERE events.rowid IN (
                   SELECT rowid FROM events INDEXED BY waiting_by_file
                    WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'
                      AND file_id = l.file_id
                   UNION
                   SELECT rowid FROM events INDEXED BY waiting_by_task
                    WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'
                      AND task_id = l.task_id)
                 RETURNING events.upload_id",
            );
            touched.extend(
                query
                    .build_query_scalar::<String>()
                    .fetch_all(&mut *self.0)
                    .await?,
            );
        }
        Ok(touched)
    }

    async fn issued(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<(NewUpload, Option<i64>)>, TrackingError> {
        let mut found = Vec::with_capacity(upload_ids.len());
        for ids in upload_ids.chunks(MAX_LIST) {
            let mut query = QueryBuilder::new(
                "SELECT upload_id, caller, user_id, issued_at, expires_at, procedure,
                    source_context, session_context, one_time, expired_at
                 FROM uploads WHERE upload_id IN ",
            );
            push_list(&mut query, ids);
            for row in query.build().fetch_all(&mut *self.0).await? {
                found.push(rows::issued_upload(&row)?);
            }
        }
        Ok(found)
    }

    async fn applied_events(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<AppliedEvent>, TrackingError> {
        let mut found = Vec::new();
        for ids in upload_ids.chunks(MAX_LIST) {
            let mut query = QueryBuilder::new(
                "SELECT upload_id, dedupe_key, raw, received_at FROM events WHERE upload_id IN ",
            );
            push_list(&mut query, ids);
            for row in query.build().fetch_all(&mut *self.0).await? {
                found.push(AppliedEvent {
                    upload_id: row.try_get("upload_id")?,
                    dedupe_key: row.try_get("dedupe_key")?,
                    raw: row.try_get("raw")?,
                    received_at: row.try_get("received_at")?,
                });
            }
        }
        Ok(found)
    }

    async fn mark_expired(&mut self, now: i64, limit: u32) -> Result<Vec<String>, TrackingError> {
        Ok(sqlx::query_scalar(
            "UPDATE uploads SET expired_at = ?
             WHERE upload_id IN (SELECT upload_id FROM uploads
                                 WHERE state = 'issued' AND expires_at < ? AND expired_at IS NULL
                                 LIMIT ?)
             RETURNING upload_id",
        )
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.0)
        .await?)
    }

    async fn save(&mut self, changes: &[(Upload, String, i64)]) -> Result<(), TrackingError> {
        let snapshots: Vec<String> = changes.iter().map(|c| encode_upload(&c.0)).collect();
        let rows: Vec<(&(Upload, String, i64), &String)> = changes.iter().zip(&snapshots).collect();
        for rows in rows.chunks(MAX_LIST / 6) {
            let mut update =
                QueryBuilder::new("WITH s (upload_id, state, updated_at, snapshot) AS (");
            update.push_values(rows, |mut row, ((upload, _, _), snapshot)| {
                row.push_bind(upload.upload_id.as_str())
                    .push_bind(upload.state.as_str())
                    .push_bind(upload.updated_at)
                    .push_bind(snapshot.as_str());
            });
            update.push(
                ") UPDATE uploads SET state = s.state, updated_at = s.updated_at,
                    snapshot = s.snapshot
                 FROM s WHERE uploads.upload_id = s.upload_id",
            );
            update.build().execute(&mut *self.0).await?;
            let mut insert = QueryBuilder::new(
                "INSERT INTO changes (upload_id, caller, user_id, event_type, received_at, snapshot) ",
            );
            insert.push_values(
                rows,
                |mut row, ((upload, event_type, received_at), snapshot)| {
                    row.push_bind(upload.upload_id.as_str())
                        .push_bind(upload.caller.as_str())
                        .push_bind(upload.user_id.as_str())
                        .push_bind(event_type.as_str())
                        .push_bind(*received_at)
                        .push_bind(snapshot.as_str());
                },
            );
            insert.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }
}

/// Bound parameters per statement, well under SQLite's limit (32766).
const MAX_LIST: usize = 8190;

/// `(?, ?, ...)` with one parameter per value.
fn push_list<'a>(query: &mut QueryBuilder<'a, Sqlite>, values: &'a [String]) {
    query.push("(");
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value.as_str());
    }
    query.push(")");
}
