//! The shared store: one PostgreSQL database for several replicas.
//!
//! - Dedupe is global: the event key is the table's primary key, so two replicas receiving the
//!   same event (a PUSH retry, a PULL redelivery to another consumer) store it once.
//! - Every write transaction that appends changes first takes one transaction-scoped advisory
//!   lock. Identity values are handed out when the row is inserted, not when the transaction
//!   commits, so without the lock a watcher could read position 12 committed before 11 and
//!   skip 11 for ever. Serialising the (batched) writers makes position order commit order,
//!   and also makes correlation across replicas race-free (a procedure event and its upload
//!   arriving at two replicas at once).
//! - Watchers read the feed only up to `feed.durable_through`, which a transaction committed
//!   with a flush sets to the last position it sees; its flush covers every commit it sees.
//!   Event batches commit without waiting for the flush (`synchronous_commit = off`), so the
//!   writer lock is free for the next batch at once; `publish` then runs that flushing
//!   transaction, and a batch is answered only after it. A change whose commit a crash could
//!   still take back (and whose position would then be handed out again) is never served.
//! - A commit that published changes sends a NOTIFY; each replica LISTENs and wakes its
//!   watchers, and polls as a fallback.
//! - Each batch uses a fixed number of statements with array parameters, so a batch costs a
//!   few round trips whatever its size.

use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::watch;

use super::batch::{self, Incoming};
use super::rows;
use super::{
    AppliedEvent, BatchTx, Durable, EXPIRE_PER_CALL, EventRow, FileLink, PruneReport, Store,
    StoredChange, decode_upload, encode_upload,
};
use crate::config::PostgresUrl;
use crate::tracking::TrackingError;
use crate::tracking::cursor::PageKey;
use crate::tracking::model::{NewUpload, Receipt, Upload};
use crate::tracking::state;

/// The advisory lock of the writers (an arbitrary number owned by this application).
const WRITER_LOCK: i64 = 0x766f_645f_7369_676e; // "vod_sign"
/// Held while the tables are created, so replicas starting together do not race.
const SCHEMA_LOCK: i64 = 0x766f_645f_7363_6865; // "vod_sche"
const CHANNEL: &str = "vod_signer_upload_changes";
const MAX_CONNECTIONS: u32 = 16;
/// A store that does not answer within this is reported unavailable (HTTP 503) rather than
/// keeping VOD's request open past its 5 s timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT PRIMARY KEY,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        procedure TEXT,
        source_context TEXT,
        session_context TEXT,
        one_time BOOLEAN NOT NULL,
        expired_at BIGINT,
        state TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS uploads_by_user
        ON uploads (caller, user_id, issued_at DESC, upload_id DESC)",
    "CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads (state, expires_at)",
    "CREATE INDEX IF NOT EXISTS uploads_by_updated ON uploads (updated_at)",
    "CREATE TABLE IF NOT EXISTS events (
        dedupe_key TEXT PRIMARY KEY,
        received_at BIGINT NOT NULL,
        delivery TEXT NOT NULL,
        event_type TEXT NOT NULL,
        raw BYTEA NOT NULL,
        upload_id TEXT,
        file_id TEXT,
        task_id TEXT)",
    "CREATE INDEX IF NOT EXISTS events_by_upload ON events (upload_id)",
    // Uploads' files, found by FileId or procedure task id when a ProcedureStateChanged does
    // not name its upload. Only matched NewFileUpload events are looked up this way, so only
    // they are indexed: every other event costs no index entry.
    "DROP INDEX IF EXISTS events_by_file",
    "DROP INDEX IF EXISTS events_by_task",
    "CREATE INDEX IF NOT EXISTS matched_by_file ON events (file_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS matched_by_task ON events (task_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND task_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at)",
    // Procedure events still waiting for their upload: linking searches these only, not
    // every unmatched event.
    "CREATE INDEX IF NOT EXISTS waiting_by_file ON events (file_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE INDEX IF NOT EXISTS waiting_by_task ON events (task_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE TABLE IF NOT EXISTS changes (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        upload_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_by_caller ON changes (caller, position)",
    "CREATE TABLE IF NOT EXISTS feed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pruned_through BIGINT NOT NULL)",
    "INSERT INTO feed (id, pruned_through) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    "ALTER TABLE feed ADD COLUMN IF NOT EXISTS durable_through BIGINT NOT NULL DEFAULT 0",
];

/// Makes every change this statement sees readable; run in a transaction whose commit is
/// flushed (see the module doc).
const MARK_DURABLE: &str = "UPDATE feed
    SET durable_through = GREATEST(durable_through, (SELECT COALESCE(MAX(position), 0) FROM changes))
    WHERE id = 1";

pub(crate) struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and creates the tables if needed. A database that cannot be reached is
    /// [`TrackingError::Unavailable`].
    pub(crate) async fn open(url: &PostgresUrl) -> Result<PostgresStore, TrackingError> {
        // The URL may hold a password: its parse error is reported without it.
        let options = PgConnectOptions::from_str(url.expose()).map_err(|_| {
            TrackingError::Unavailable("the PostgreSQL URL cannot be parsed".into())
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await?;
        let mut created = Ok(());
        for statement in SCHEMA {
            if let Err(e) = sqlx::query(statement).execute(&mut *conn).await {
                created = Err(e);
                break;
            }
        }
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await?;
        created?;
        // Brings a database written before `durable_through` existed (or left by a replica
        // that stopped before publishing) up to date.
        publish(&pool, false).await?;
        Ok(PostgresStore { pool })
    }

    /// Wakes this replica's watchers on every change committed by any replica, until `feed`
    /// is dropped.
    pub(crate) async fn forward_notifications(
        &self,
        feed: Weak<watch::Sender<u64>>,
    ) -> Result<(), TrackingError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(async move {
            loop {
                // The timeout only lets the task notice that the tracker is gone.
                let received = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
                let Some(feed) = feed.upgrade() else { return };
                match received {
                    Ok(Ok(_)) => feed.send_modify(|n| *n += 1),
                    Ok(Err(error)) => {
                        // The listener reconnects on the next call; the poll covers the gap.
                        tracing::warn!(%error, "lost the PostgreSQL change notifications");
                        drop(feed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(())
    }

    /// A transaction holding the writer lock, begun in one round trip. `flushed`: its COMMIT
    /// waits for the flush; otherwise [`publish`] must follow before anyone is answered.
    async fn writer(&self, flushed: bool) -> Result<PgTx, TrackingError> {
        // Every statement of a batch looks rows up by key. While a table is young (before
        // autovacuum first analyzes it) the planner thinks it tiny and picks sequential scans,
        // so each batch read every stored event once per lookup; `enable_seqscan = off` for
        // this transaction alone (`set_config(.., true)` is SET LOCAL) keeps the indexes.
        let begin = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK}),
                set_config('enable_seqscan', 'off', true),
                set_config('synchronous_commit', '{}', true)",
            if flushed { "on" } else { "off" }
        );
        let tx = self.pool.begin_with(begin).await?;
        Ok(PgTx {
            tx,
            appended: false,
        })
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    appended: bool,
}

impl PgTx {
    /// Commits a transaction begun with `flushed`, publishing what it appended.
    async fn commit(mut self) -> Result<(), TrackingError> {
        if self.appended {
            sqlx::query(MARK_DURABLE).execute(&mut *self.tx).await?;
            // Delivered to the listeners when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// Flushes every commit made so far and makes the changes they appended readable, waking the
/// watchers of every replica when `appended`: one round trip, one transaction of its own.
async fn publish(pool: &PgPool, appended: bool) -> Result<(), TrackingError> {
    let notify = if appended {
        format!("; SELECT pg_notify('{CHANNEL}', '')")
    } else {
        String::new()
    };
    sqlx::raw_sql(&format!("{MARK_DURABLE}{notify}"))
        .execute(pool)
        .await?;
    Ok(())
}

impl Store for PostgresStore {
    async fn record_issued(&self, uploads: &[NewUpload]) -> Result<(), TrackingError> {
        let mut columns = IssuedColumns::default();
        for upload in uploads {
            columns.push(upload);
        }
        let mut tx = self.pool.begin().await?;
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO uploads (upload_id, caller, user_id, issued_at, expires_at, procedure,
                source_context, session_context, one_time, state, updated_at, snapshot)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                $5::bigint[], $6::text[], $7::text[], $8::text[], $9::boolean[], $10::text[],
                $11::bigint[], $12::text[])
             ON CONFLICT (upload_id) DO NOTHING
             RETURNING upload_id",
        )
        .bind(&columns.upload_id)
        .bind(&columns.caller)
        .bind(&columns.user_id)
        .bind(&columns.issued_at)
        .bind(&columns.expires_at)
        .bind(&columns.procedure)
        .bind(&columns.source_context)
        .bind(&columns.session_context)
        .bind(&columns.one_time)
        .bind(&columns.state)
        .bind(&columns.updated_at)
        .bind(&columns.snapshot)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(duplicate) = columns.upload_id.iter().find(|id| !inserted.contains(id)) {
            // Dropping `tx` rolls the whole call back.
            return Err(TrackingError::DuplicateUploadId(duplicate.clone()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn commit_batch(
        &self,
        batch: Vec<Incoming>,
    ) -> Result<(Vec<Receipt>, Durable), TrackingError> {
        let mut tx = self.writer(false).await?;
        let receipts = batch::apply(&mut tx, &batch).await?;
        let appended = tx.appended;
        tx.tx.commit().await?;
        let pool = self.pool.clone();
        Ok((
            receipts,
            Box::pin(async move { publish(&pool, appended).await }),
        ))
    }

    async fn get_upload(
        &self,
        caller: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, TrackingError> {
        let row = sqlx::query("SELECT snapshot FROM uploads WHERE upload_id = $1 AND caller = $2")
            .bind(upload_id)
            .bind(caller)
            .fetch_optional(&self.pool)
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
        let rows = sqlx::query(
            "SELECT snapshot FROM uploads WHERE caller = $1 AND user_id = $2
               AND ($3::bigint IS NULL OR (issued_at, upload_id) < ($3, $4))
             ORDER BY issued_at DESC, upload_id DESC LIMIT $5",
        )
        .bind(caller)
        .bind(user_id)
        .bind(after.map(|k| k.issued_at))
        .bind(after.map(|k| k.upload_id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
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
             WHERE caller = $1 AND position > $2 AND ($3::text IS NULL OR user_id = $3)
               AND position <= (SELECT durable_through FROM feed WHERE id = 1)
             ORDER BY position LIMIT $4",
        )
        .bind(caller)
        .bind(after)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::stored_change).collect()
    }

    async fn feed_bounds(&self) -> Result<(i64, i64), TrackingError> {
        let row = sqlx::query(
            "SELECT GREATEST(durable_through, pruned_through), pruned_through
             FROM feed WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn expire_due(&self, now: i64) -> Result<u64, TrackingError> {
        let mut tx = self.writer(true).await?;
        let count = batch::expire(&mut tx, now, EXPIRE_PER_CALL).await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        let mut tx = self.writer(true).await?;
        let uploads = sqlx::query("DELETE FROM uploads WHERE updated_at < $1")
            .bind(cutoff)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        let events = sqlx::query(
            "DELETE FROM events e WHERE e.received_at < $1
               AND (e.upload_id IS NULL
                    OR NOT EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = e.upload_id))",
        )
        .bind(cutoff)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let through: Option<i64> =
            sqlx::query_scalar("SELECT MAX(position) FROM changes WHERE received_at < $1")
                .bind(cutoff)
                .fetch_one(&mut *tx.tx)
                .await?;
        let mut changes = 0;
        if let Some(through) = through {
            changes = sqlx::query("DELETE FROM changes WHERE position <= $1")
                .bind(through)
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE feed SET pruned_through = GREATEST(pruned_through, $1) WHERE id = 1",
            )
            .bind(through)
            .execute(&mut *tx.tx)
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
               AND updated_at <= $1
             ORDER BY updated_at LIMIT $2",
        )
        .bind(updated_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| decode_upload(r.try_get("snapshot")?))
            .collect()
    }
}

impl BatchTx for PgTx {
    async fn uploads_of_files(
        &mut self,
        file_ids: &[String],
        task_ids: &[String],
    ) -> Result<Vec<FileLink>, TrackingError> {
        let rows = sqlx::query(
            "SELECT file_id, task_id, upload_id FROM events
             WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL
               AND (file_id = ANY($1) OR task_id = ANY($2))",
        )
        .bind(file_ids)
        .bind(task_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FileLink {
                    file_id: row.try_get("file_id")?,
                    task_id: row.try_get("task_id")?,
                    upload_id: row.try_get("upload_id")?,
                })
            })
            .collect()
    }

    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<Vec<String>, TrackingError> {
        let keys: Vec<&str> = rows.iter().map(|r| r.dedupe_key).collect();
        let received_at: Vec<i64> = rows.iter().map(|r| r.received_at).collect();
        let delivery: Vec<&str> = rows.iter().map(|r| r.delivery).collect();
        let event_type: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
        let raw: Vec<&[u8]> = rows.iter().map(|r| r.raw).collect();
        let upload_id: Vec<Option<&str>> = rows.iter().map(|r| r.upload_id).collect();
        let file_id: Vec<Option<&str>> = rows.iter().map(|r| r.file_id).collect();
        let task_id: Vec<Option<&str>> = rows.iter().map(|r| r.task_id).collect();
        Ok(sqlx::query_scalar(
            "INSERT INTO events (dedupe_key, received_at, delivery, event_type, raw, upload_id,
                file_id, task_id)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[],
                $5::bytea[], $6::text[], $7::text[], $8::text[])
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING dedupe_key",
        )
        .bind(keys)
        .bind(received_at)
        .bind(delivery)
        .bind(event_type)
        .bind(raw)
        .bind(upload_id)
        .bind(file_id)
        .bind(task_id)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn link_waiting(&mut self, links: &[FileLink]) -> Result<Vec<String>, TrackingError> {
        let upload_id: Vec<&str> = links.iter().map(|l| l.upload_id.as_str()).collect();
        let file_id: Vec<&str> = links.iter().map(|l| l.file_id.as_str()).collect();
        let task_id: Vec<Option<&str>> = links.iter().map(|l| l.task_id.as_deref()).collect();
        Ok(sqlx::query_scalar(
            // One join per waiting index: an OR across both columns in one join would leave the
            // planner no index to use, and it would scan every stored event once per batch.
            "WITH l AS (
                SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
                  AS l(upload_id, file_id, task_id)),
             waiting AS (
                SELECT e.dedupe_key, l.upload_id FROM l JOIN events e ON e.file_id = l.file_id
                 WHERE e.upload_id IS NULL AND e.event_type = 'ProcedureStateChanged'
                UNION
                SELECT e.dedupe_key, l.upload_id FROM l JOIN events e ON e.task_id = l.task_id
                 WHERE e.upload_id IS NULL AND e.event_type = 'ProcedureStateChanged')
             UPDATE events e SET upload_id = waiting.upload_id
             FROM waiting WHERE e.dedupe_key = waiting.dedupe_key
             RETURNING e.upload_id",
        )
        .bind(upload_id)
        .bind(file_id)
        .bind(task_id)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn issued(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<(NewUpload, Option<i64>)>, TrackingError> {
        let rows = sqlx::query(
            "SELECT upload_id, caller, user_id, issued_at, expires_at, procedure,
                source_context, session_context, one_time, expired_at
             FROM uploads WHERE upload_id = ANY($1)",
        )
        .bind(upload_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(rows::issued_upload).collect()
    }

    async fn applied_events(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<AppliedEvent>, TrackingError> {
        let rows = sqlx::query(
            "SELECT upload_id, dedupe_key, raw, received_at FROM events
             WHERE upload_id = ANY($1)",
        )
        .bind(upload_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AppliedEvent {
                    upload_id: row.try_get("upload_id")?,
                    dedupe_key: row.try_get("dedupe_key")?,
                    raw: row.try_get("raw")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect()
    }

    async fn mark_expired(&mut self, now: i64, limit: u32) -> Result<Vec<String>, TrackingError> {
        Ok(sqlx::query_scalar(
            "UPDATE uploads SET expired_at = $1
             WHERE upload_id IN (SELECT upload_id FROM uploads
                                 WHERE state = 'issued' AND expires_at < $1
                                   AND expired_at IS NULL
                                 LIMIT $2)
             RETURNING upload_id",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn save(&mut self, changes: &[(Upload, String, i64)]) -> Result<(), TrackingError> {
        if changes.is_empty() {
            return Ok(());
        }
        let upload_id: Vec<&str> = changes.iter().map(|c| c.0.upload_id.as_str()).collect();
        let caller: Vec<&str> = changes.iter().map(|c| c.0.caller.as_str()).collect();
        let user_id: Vec<&str> = changes.iter().map(|c| c.0.user_id.as_str()).collect();
        let state: Vec<&str> = changes.iter().map(|c| c.0.state.as_str()).collect();
        let updated_at: Vec<i64> = changes.iter().map(|c| c.0.updated_at).collect();
        let snapshot: Vec<String> = changes.iter().map(|c| encode_upload(&c.0)).collect();
        let event_type: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
        let received_at: Vec<i64> = changes.iter().map(|c| c.2).collect();
        sqlx::query(
            "UPDATE uploads u SET state = s.state, updated_at = s.updated_at,
                snapshot = s.snapshot
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])
                AS s(upload_id, state, updated_at, snapshot)
             WHERE u.upload_id = s.upload_id",
        )
        .bind(&upload_id)
        .bind(&state)
        .bind(&updated_at)
        .bind(&snapshot)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO changes (upload_id, caller, user_id, event_type, received_at, snapshot)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                $5::bigint[], $6::text[])",
        )
        .bind(&upload_id)
        .bind(&caller)
        .bind(&user_id)
        .bind(&event_type)
        .bind(&received_at)
        .bind(&snapshot)
        .execute(&mut *self.tx)
        .await?;
        self.appended = true;
        Ok(())
    }
}

#[derive(Default)]
struct IssuedColumns {
    upload_id: Vec<String>,
    caller: Vec<String>,
    user_id: Vec<String>,
    issued_at: Vec<i64>,
    expires_at: Vec<i64>,
    procedure: Vec<Option<String>>,
    source_context: Vec<Option<String>>,
    session_context: Vec<Option<String>>,
    one_time: Vec<bool>,
    state: Vec<&'static str>,
    updated_at: Vec<i64>,
    snapshot: Vec<String>,
}

impl IssuedColumns {
    fn push(&mut self, upload: &NewUpload) {
        let snapshot = state::derive(upload, None, &[]);
        self.upload_id.push(upload.upload_id.to_string());
        self.caller.push(upload.caller.clone());
        self.user_id.push(upload.user_id.clone());
        self.issued_at.push(upload.issued_at);
        self.expires_at.push(upload.expires_at);
        self.procedure.push(upload.procedure.clone());
        self.source_context.push(upload.source_context.clone());
        self.session_context.push(upload.session_context.clone());
        self.one_time.push(upload.one_time);
        self.state.push(snapshot.state.as_str());
        self.updated_at.push(snapshot.updated_at);
        self.snapshot.push(encode_upload(&snapshot));
    }
}
