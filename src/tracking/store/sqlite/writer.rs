//! The one connection that writes, on a blocking thread.
//!
//! A batch of events runs a dozen statements or more. Through an async driver each one is a
//! round trip between the runtime and the database thread, and under load each of those waits
//! behind the HTTP requests queued on the runtime, so the intake's single writer spent most of
//! a commit waiting rather than working (BENCHMARKS.md, "Upload events"). Here a whole write
//! (every statement, the commit and its fsync) runs as one blocking call, with statements
//! prepared once and cached. The fsync that makes a commit durable runs afterwards, on the
//! `durability` thread, while this connection already serves the next write.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::Connection;

use super::super::batch::{self, Incoming};
use super::super::{Durable, EXPIRE_PER_CALL, PruneReport, Swept, encode_upload};
use super::durability::Durability;
use super::schema::SCHEMA;
use crate::tracking::TrackingError;
use crate::tracking::model::{NewUpload, Receipt};
use crate::tracking::state;

/// The writer's page cache, in KiB.
const CACHE_KIB: i64 = 16 * 1024;

/// Distinct statements the writer runs; all stay prepared.
const STATEMENT_CACHE: usize = 64;

/// The writing connection, shared by the tasks that write; one write runs at a time.
#[derive(Clone)]
pub(super) struct Writer {
    connection: Arc<Mutex<Connection>>,
    durability: Arc<Durability>,
}

impl Writer {
    /// Opens (creating if needed) the file in WAL mode, and its tables.
    pub(super) fn open(path: &Path) -> Result<Writer, TrackingError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(TrackingError::Unavailable(format!(
                "SQLite refused WAL mode for {} (it stays in {mode} mode)",
                path.display()
            )));
        }
        // COMMIT writes the log without syncing it; `Durability` syncs it before a write is
        // answered, after this connection has moved on.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // The `checkpoint` thread does this routinely; the writer only if it falls behind.
        connection.pragma_update(
            None,
            "wal_autocheckpoint",
            super::checkpoint::WRITER_AUTOCHECKPOINT_PAGES,
        )?;
        // A batch touches index pages all over the events and uploads tables; reading them
        // back from the file each time cost more than keeping them (the default is 2 MiB).
        // Not more: SQLite walks the whole cache at the end of every write transaction.
        connection.pragma_update(None, "cache_size", -CACHE_KIB)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for statement in SCHEMA {
            connection.execute_batch(statement)?;
        }
        let durability = Durability::start(path, last_position(&connection)?)?;
        Ok(Writer {
            connection: Arc::new(Mutex::new(connection)),
            durability: Arc::new(durability),
        })
    }

    /// The last feed position that is on disk; readers serve the feed up to it.
    pub(super) fn durable_position(&self) -> i64 {
        self.durability.durable_position()
    }

    /// Runs `write` in one transaction on a blocking thread; commits if it returns Ok, and
    /// rolls back otherwise. Resolves once the commit is on disk.
    async fn write<T, F>(&self, write: F) -> Result<T, TrackingError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackingError> + Send + 'static,
    {
        let (value, commit) = self.commit(write).await?;
        self.durability.durable(commit).await?;
        Ok(value)
    }

    /// [`Writer::write`] up to its commit, which is not yet on disk: returns the number to
    /// wait for with [`Durability::durable`]. The connection is free for the next write.
    async fn commit<T, F>(&self, write: F) -> Result<(T, u64), TrackingError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, TrackingError> + Send + 'static,
    {
        let connection = self.connection.clone();
        let durability = self.durability.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = lock(&connection);
            let mut tx = WriteTx::begin(&mut connection)?;
            let value = write(&mut tx)?;
            tx.commit()?;
            let commit = durability.committed(last_position(&connection)?);
            Ok((value, commit))
        })
        .await
        .map_err(|e| TrackingError::Unavailable(format!("the SQLite writer failed: {e}")))?
    }

    pub(super) async fn record_issued(&self, uploads: Vec<NewUpload>) -> Result<(), TrackingError> {
        self.write(move |tx| {
            let mut insert = tx.connection.prepare_cached(
                "INSERT INTO uploads (upload_id, caller, user_id, issued_at, expires_at,
                    procedure, source_context, session_context, one_time, expired_at, state,
                    updated_at, snapshot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12)",
            )?;
            for upload in &uploads {
                let snapshot = state::derive(upload, None, &[]);
                let result = insert.execute(rusqlite::params![
                    upload.upload_id.as_str(),
                    upload.caller,
                    upload.user_id,
                    upload.issued_at,
                    upload.expires_at,
                    upload.procedure,
                    upload.source_context,
                    upload.session_context,
                    upload.one_time,
                    snapshot.state.as_str(),
                    snapshot.updated_at,
                    encode_upload(&snapshot),
                ]);
                match result {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        return Err(TrackingError::DuplicateUploadId(
                            upload.upload_id.to_string(),
                        ));
                    }
                    other => other?,
                };
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn commit_batch(
        &self,
        batch: Vec<Incoming>,
    ) -> Result<(Vec<Receipt>, Durable), TrackingError> {
        let (receipts, commit) = self
            .commit(move |tx| complete(batch::apply(tx, &batch))?)
            .await?;
        let durability = self.durability.clone();
        Ok((
            receipts,
            Box::pin(async move { durability.durable(commit).await }),
        ))
    }

    pub(super) async fn expire_due(&self, now: i64) -> Result<Swept, TrackingError> {
        self.write(move |tx| complete(batch::expire(tx, now, EXPIRE_PER_CALL))?)
            .await
    }

    pub(super) async fn prune(&self, cutoff: i64) -> Result<PruneReport, TrackingError> {
        self.write(move |tx| {
            let connection = &mut *tx.connection;
            let uploads =
                connection.execute("DELETE FROM uploads WHERE updated_at < ?1", [cutoff])?;
            // An event of a surviving upload is kept with it: the upload's state is derived
            // from it.
            let events = connection.execute(
                "DELETE FROM events WHERE received_at < ?1
                   AND (upload_id IS NULL OR upload_id NOT IN (SELECT upload_id FROM uploads))",
                [cutoff],
            )?;
            // The feed is cut at a position, so every cursor at or after it still resumes
            // exactly.
            let through: Option<i64> = connection.query_row(
                "SELECT MAX(position) FROM changes WHERE received_at < ?1",
                [cutoff],
                |r| r.get(0),
            )?;
            let mut changes = 0;
            if let Some(through) = through {
                changes =
                    connection.execute("DELETE FROM changes WHERE position <= ?1", [through])?;
                connection.execute(
                    "UPDATE feed SET pruned_through = MAX(pruned_through, ?1) WHERE id = 1",
                    [through],
                )?;
            }
            Ok(PruneReport {
                events: events as u64,
                uploads: uploads as u64,
                changes: changes as u64,
            })
        })
        .await
    }
}

/// The feed's last position (0 when it is empty).
fn last_position(connection: &Connection) -> Result<i64, TrackingError> {
    Ok(
        connection.query_row("SELECT COALESCE(MAX(position), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

/// The connection, also after a write panicked while holding it: that write's transaction
/// was rolled back by [`WriteTx`]'s `Drop`, so the connection is as good as before.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One write transaction; rolled back when dropped without [`WriteTx::commit`].
pub(super) struct WriteTx<'c> {
    pub(super) connection: &'c mut Connection,
    open: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(connection: &'c mut Connection) -> Result<Self, TrackingError> {
        // IMMEDIATE: the write lock is taken now, not at the first write, so a busy file is
        // found before any work is done.
        connection.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriteTx {
            connection,
            open: true,
        })
    }

    fn commit(mut self) -> Result<(), TrackingError> {
        self.connection.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
    }
}

/// The result of `future`, which must not wait: the writer's `BatchTx` statements run
/// synchronously, so [`batch::apply`] completes on its first poll.
fn complete<F: Future>(future: F) -> Result<F::Output, TrackingError> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(TrackingError::Unavailable(
            "a SQLite write waited on something other than the database".into(),
        )),
    }
}
