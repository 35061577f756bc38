//! One writing transaction: the writers' lock, and the statements a batch runs.

use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use super::super::rows;
use super::super::{AppliedEvent, BatchTx, EventRow, FileLink, encode_upload};
use crate::tracking::TrackingError;
use crate::tracking::model::{NewUpload, Upload};

/// The advisory lock of the writers (an arbitrary number owned by this application).
const WRITER_LOCK: i64 = 0x766f_645f_7369_676e; // "vod_sign"
pub(super) const CHANNEL: &str = "vod_signer_upload_changes";
/// Slices of the expiry queue (of `limit` rows each) one sweep transaction takes at most.
const EXPIRY_SLICES_PER_CALL: u32 = 4;

/// Makes every change this statement sees readable, and wakes the watchers of every replica
/// when `$2` (sent on the channel `$1` once the transaction commits). Run it in a transaction
/// whose commit is flushed (see the module doc). One statement, so that it is prepared once
/// per connection rather than planned on every call.
pub(super) const MARK_DURABLE: &str = "WITH marked AS (
        UPDATE feed SET durable_through = GREATEST(durable_through,
            (SELECT COALESCE(MAX(position), 0) FROM changes))
        WHERE id = 1 RETURNING 1)
    SELECT pg_notify($1, '') FROM marked WHERE $2";

/// A transaction holding the writer lock, begun in one round trip. `flushed`: its COMMIT
/// waits for the flush; otherwise `publish` must follow before anyone is answered.
pub(super) async fn begin(
    connection: &mut PgConnection,
    flushed: bool,
) -> Result<PgTx<'_>, TrackingError> {
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
    let tx = connection.begin_with(begin).await?;
    Ok(PgTx {
        tx,
        appended: false,
    })
}

pub(super) struct PgTx<'c> {
    pub(super) tx: Transaction<'c, Postgres>,
    /// Whether `save` appended changes, which someone must then publish.
    pub(super) appended: bool,
}

impl PgTx<'_> {
    /// Commits a transaction begun with `flushed`, publishing what it appended.
    pub(super) async fn commit(mut self) -> Result<(), TrackingError> {
        if self.appended {
            sqlx::query(MARK_DURABLE)
                .bind(CHANNEL)
                .bind(true)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

impl BatchTx for PgTx<'_> {
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

    async fn mark_expired(
        &mut self,
        now: i64,
        limit: u32,
    ) -> Result<(Vec<String>, bool), TrackingError> {
        // Takes due expiries off the queue a slice at a time: most belong to uploads that
        // arrived long ago, so a slice can expire nothing while the next one holds some. The
        // slices a call takes are bounded too, since the writer lock is held meanwhile.
        let mut expired = Vec::new();
        for _ in 0..EXPIRY_SLICES_PER_CALL {
            let row = sqlx::query(
                "WITH due AS (
                    DELETE FROM upload_expiry WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM upload_expiry WHERE expires_at < $1
                         ORDER BY expires_at LIMIT $2))
                    RETURNING upload_id),
                 marked AS (
                    UPDATE uploads u SET expired_at = $1 FROM due
                     WHERE u.upload_id = due.upload_id
                       AND u.state = 'issued' AND u.expired_at IS NULL
                    RETURNING u.upload_id)
                 SELECT (SELECT count(*) FROM due) AS taken,
                        ARRAY(SELECT upload_id FROM marked) AS marked",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_one(&mut *self.tx)
            .await?;
            let taken: i64 = row.try_get("taken")?;
            expired.extend(row.try_get::<Vec<String>, _>("marked")?);
            if taken < i64::from(limit) {
                return Ok((expired, false));
            }
            if expired.len() as u64 >= u64::from(limit) {
                break;
            }
        }
        Ok((expired, true))
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
