//! The connection that commits event batches, on a thread and runtime of its own.
//!
//! A batch holds the writers' lock for about eight round trips, so how soon each reply is
//! picked up decides how long the lock is held. On the shared runtime a reply first waited
//! for a worker to poll the I/O driver and then queued behind the HTTP requests already
//! there, and under load that waiting was a large part of every batch (BENCHMARKS.md,
//! "Upload events"). Here one current-thread runtime serves only this connection, so a reply
//! wakes this thread at once, whatever the HTTP side is doing. SQLite's writer runs on a
//! thread of its own for the same reason.
//!
//! The thread owns its connection rather than a pool of one: a pool checks a connection with a
//! round trip when it is taken and another when it is given back, and here the next batch
//! waits for both. A batch that fails drops the connection instead (its transaction is in an
//! unknown state, and a server that went away leaves it broken); the next batch connects
//! again.

use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::super::batch::{self, Incoming};
use super::ACQUIRE_TIMEOUT;
use super::tx;
use crate::tracking::TrackingError;
use crate::tracking::model::Receipt;

/// What a committed batch gives back: one receipt per event, and whether it appended changes
/// (which must then be published).
type Committed = Result<(Vec<Receipt>, bool), TrackingError>;

struct Job {
    batch: Vec<Incoming>,
    reply: oneshot::Sender<Committed>,
}

/// The handle of the writer thread; the thread closes its connection and ends when this is
/// dropped.
pub(super) struct BatchWriter {
    jobs: mpsc::Sender<Job>,
}

impl BatchWriter {
    /// Starts the thread and connects it; Ok once its first connection is open.
    pub(super) async fn start(options: PgConnectOptions) -> Result<BatchWriter, TrackingError> {
        // The intake commits one batch at a time, so one job waits here at most.
        let (jobs, queue) = mpsc::channel(1);
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new()
            .name("vod-pg-writer".into())
            .spawn(move || run(options, queue, ready))
            .map_err(|e| {
                TrackingError::Unavailable(format!("starting the PostgreSQL writer thread: {e}"))
            })?;
        started.await.map_err(|_| stopped())??;
        Ok(BatchWriter { jobs })
    }

    /// Stores and applies `batch` in one transaction, committed without waiting for the
    /// flush.
    pub(super) async fn commit(&self, batch: Vec<Incoming>) -> Committed {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { batch, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> TrackingError {
    TrackingError::Unavailable("the PostgreSQL writer thread stopped".into())
}

fn run(
    options: PgConnectOptions,
    mut queue: mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<(), TrackingError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(TrackingError::Unavailable(format!(
                "starting the PostgreSQL writer runtime: {e}"
            ))));
            return;
        }
    };
    // Shared with each batch's task, which connects again when it has to.
    let options = Arc::new(options);
    runtime.block_on(async move {
        let mut connection = match connect(&options).await {
            Ok(connection) => Some(connection),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while let Some(job) = queue.recv().await {
            let (open, options) = (connection.take(), Arc::clone(&options));
            // A task of its own, so that a panic fails this batch (and drops the connection)
            // rather than the thread and every batch after it.
            let run = tokio::spawn(async move { run_batch(open, &options, &job.batch).await });
            let result = match run.await {
                Ok((result, kept)) => {
                    connection = kept;
                    result
                }
                Err(_) => Err(TrackingError::Unavailable(
                    "the PostgreSQL writer failed on this batch".into(),
                )),
            };
            let _ = job.reply.send(result);
        }
        if let Some(open) = connection {
            let _ = open.close().await;
        }
    });
}

/// Commits one batch on `connection` (connecting first when there is none); gives the
/// connection back unless the batch failed.
async fn run_batch(
    connection: Option<PgConnection>,
    options: &PgConnectOptions,
    batch: &[Incoming],
) -> (Committed, Option<PgConnection>) {
    let mut open = match connection {
        Some(open) => open,
        None => match connect(options).await {
            Ok(open) => open,
            Err(e) => return (Err(e), None),
        },
    };
    let committed = commit(&mut open, batch).await;
    let kept = committed.is_ok().then_some(open);
    (committed, kept)
}

/// A new connection, or [`TrackingError::Unavailable`] within the time a batch may wait.
async fn connect(options: &PgConnectOptions) -> Result<PgConnection, TrackingError> {
    match tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect()).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(TrackingError::Unavailable(
            "PostgreSQL did not accept a connection in time".into(),
        )),
    }
}

async fn commit(connection: &mut PgConnection, batch: &[Incoming]) -> Committed {
    let mut tx = tx::begin(connection, false).await?;
    let receipts = batch::apply(&mut tx, batch).await?;
    let appended = tx.appended;
    tx.tx.commit().await?;
    Ok((receipts, appended))
}
