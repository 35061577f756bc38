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
//!   few round trips whatever its size, on a connection and thread of its own ([`writer`]).

mod schema;
mod tx;
mod writer;

use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::watch;

use super::batch::{self, Incoming};
use super::rows;
use super::{
    Durable, EXPIRE_PER_CALL, PruneReport, Store, StoredChange, Swept, decode_upload, encode_upload,
};
use crate::config::PostgresUrl;
use crate::tracking::TrackingError;
use crate::tracking::cursor::PageKey;
use crate::tracking::model::{NewUpload, Receipt, Upload};
use crate::tracking::state;
use schema::SCHEMA;
use tx::{CHANNEL, MARK_DURABLE};
use writer::BatchWriter;

/// Held while the tables are created, so replicas starting together do not race.
const SCHEMA_LOCK: i64 = 0x766f_645f_7363_6865; // "vod_sche"
const MAX_CONNECTIONS: u32 = 16;
/// A store that does not answer within this is reported unavailable (HTTP 503) rather than
/// keeping VOD's request open past its 5 s timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Run on each new pooled connection. Issuing and `publish` commit with the session's
/// `synchronous_commit`, and an event is answered once `publish` commits, so a database or role
/// default of `off` would answer events that a crash can still take back. Only `off` is raised:
/// `local`, `remote_write` and `remote_apply` all wait for the local flush already.
const FLUSHED_COMMITS: &str = "SELECT set_config('synchronous_commit', 'on', false)
    WHERE current_setting('synchronous_commit') = 'off'";

pub(crate) struct PostgresStore {
    pool: PgPool,
    batches: BatchWriter,
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
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::query(FLUSHED_COMMITS).execute(connection).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
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
        let batches = BatchWriter::start(options).await?;
        Ok(PostgresStore { pool, batches })
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
}

/// Flushes every commit made so far and makes the changes they appended readable, waking the
/// watchers of every replica when `appended`: one round trip, one transaction of its own.
async fn publish(pool: &PgPool, appended: bool) -> Result<(), TrackingError> {
    sqlx::query(MARK_DURABLE)
        .bind(CHANNEL)
        .bind(appended)
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
        // A trigger queues each inserted upload's expiry (schema.rs).
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
        let (receipts, appended) = self.batches.commit(batch).await?;
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

    async fn expire_due(&self, now: i64) -> Result<Swept, TrackingError> {
        let mut connection = self.pool.acquire().await?;
        let mut tx = tx::begin(&mut connection, true).await?;
        let swept = batch::expire(&mut tx, now, EXPIRE_PER_CALL).await?;
        tx.commit().await?;
        Ok(swept)
    }

    async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        let mut connection = self.pool.acquire().await?;
        let mut tx = tx::begin(&mut connection, true).await?;
        // `updated_at` is never before `issued_at`, whose index (unlike one on `updated_at`)
        // costs nothing when an event is applied.
        let uploads = sqlx::query("DELETE FROM uploads WHERE issued_at < $1 AND updated_at < $1")
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
             WHERE awaiting_procedure AND state IN ('uploaded', 'processing')
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
