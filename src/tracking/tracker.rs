//! The tracker façade and its group-commit intake.
//!
//! `receive` is called concurrently by many HTTP requests (and the pull loop). Committing each
//! event in its own transaction would cost one fsync (SQLite) or one round of WAL flush
//! (PostgreSQL) per event; instead one task drains whatever is queued, commits it all in one
//! transaction, then answers every caller. Under load the batches grow by themselves; alone,
//! an event is committed at once.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::cursor::{PageKey, decode_page_token, encode_page_token};
use super::model::{
    FileState, NewUpload, PendingProcedure, Receipt, ReceivedEvent, Upload, UploadChange,
    UploadPage, WatchStart,
};
use super::store::{AnyStore, Durable, Incoming, PostgresStore, PruneReport, SqliteStore, Store};
use super::{TrackingError, UploadId};
use crate::config::{StoreLocation, TrackingSettings};
use crate::events::Notification;

/// `list_uploads` with a page size of 0.
pub(super) const DEFAULT_PAGE_SIZE: u32 = 50;
/// Larger page sizes are reduced to this.
pub(crate) const MAX_PAGE_SIZE: u32 = 500;

/// Events committed in one transaction at most; bounds the transaction's size and latency.
const MAX_BATCH: usize = 1024;
/// Events waiting for the intake task; more make `receive` wait (back-pressure).
const QUEUE: usize = 8192;
const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// The handle everyone shares; cloning it is cheap. The background tasks stop once the last
/// clone is dropped.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: AnyStore,
    intake: mpsc::Sender<Pending>,
    /// Bumped after every commit that appended changes, by this process or (PostgreSQL) by
    /// another replica; watchers wait on it.
    pub(super) feed: Arc<watch::Sender<u64>>,
    pub(super) poll_interval: Duration,
    retention: Duration,
}

struct Pending {
    event: Incoming,
    reply: oneshot::Sender<Result<Receipt, TrackingError>>,
}

impl Tracker {
    /// Opens the store named by `settings` (creating its tables) and starts the intake,
    /// expiry and retention tasks. Must be called inside a Tokio runtime.
    pub async fn open(settings: &TrackingSettings) -> Result<Tracker, TrackingError> {
        let feed = Arc::new(watch::channel(0).0);
        let (store, poll_interval) = match &settings.store {
            StoreLocation::Sqlite(path) => (
                AnyStore::Sqlite(Arc::new(SqliteStore::open(path).await?)),
                // One process owns the file: every commit wakes the watchers directly, so
                // the poll is only a safety net.
                Duration::from_secs(1),
            ),
            StoreLocation::Postgres(url) => {
                let store = Arc::new(PostgresStore::open(url).await?);
                store.forward_notifications(Arc::downgrade(&feed)).await?;
                // Notifications from other replicas wake watchers at once; the poll bounds
                // the delay when a notification is lost (a dropped LISTEN connection).
                (AnyStore::Postgres(store), Duration::from_millis(500))
            }
        };
        let (intake, queue) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            store,
            intake,
            feed,
            poll_interval,
            retention: settings.retention,
        });
        tokio::spawn(run_intake(inner.store.clone(), inner.feed.clone(), queue));
        tokio::spawn(run_housekeeping(Arc::downgrade(&inner)));
        Ok(Tracker { inner })
    }

    /// Tracks the uploads of newly issued signatures; durable before Ok.
    pub async fn record_issued(&self, uploads: Vec<NewUpload>) -> Result<(), TrackingError> {
        if uploads.is_empty() {
            return Ok(());
        }
        self.inner.store.record_issued(&uploads).await
    }

    /// Stores one authenticated notification body durably (deduplicated), then applies it to
    /// its upload. Ok only once the body is committed. Concurrent calls share a transaction.
    pub async fn receive(&self, event: ReceivedEvent) -> Result<Receipt, TrackingError> {
        self.enqueue(Incoming::prepare(event)?).await
    }

    /// [`Tracker::receive`] for a body its caller parsed already (`events::parse_body`).
    pub(crate) async fn receive_parsed(
        &self,
        event: ReceivedEvent,
        notification: Notification,
        dedupe_key: String,
    ) -> Result<Receipt, TrackingError> {
        self.enqueue(Incoming::parsed(event, notification, dedupe_key))
            .await
    }

    async fn enqueue(&self, event: Incoming) -> Result<Receipt, TrackingError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .intake
            .send(Pending { event, reply })
            .await
            .map_err(|_| TrackingError::Unavailable("the tracker is shutting down".into()))?;
        answer
            .await
            .map_err(|_| TrackingError::Unavailable("the tracker is shutting down".into()))?
    }

    /// One upload, if `caller` issued it. An id another caller issued is `None`, as is a
    /// malformed one.
    pub async fn get_upload(
        &self,
        caller: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, TrackingError> {
        if UploadId::parse(upload_id).is_err() {
            return Ok(None);
        }
        self.inner.store.get_upload(caller, upload_id).await
    }

    /// One user's uploads for one caller, newest first. `page_size` 0 means
    /// `DEFAULT_PAGE_SIZE`; more than `MAX_PAGE_SIZE` is reduced to it.
    pub async fn list_uploads(
        &self,
        caller: &str,
        user_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<UploadPage, TrackingError> {
        let after = page_token
            .filter(|t| !t.is_empty())
            .map(decode_page_token)
            .transpose()?;
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // One more than asked tells whether another page exists.
        let mut uploads = self
            .inner
            .store
            .list_uploads(caller, user_id, size + 1, after.as_ref())
            .await?;
        let next_page_token = if uploads.len() > size as usize {
            uploads.truncate(size as usize);
            uploads.last().map(|last| {
                encode_page_token(&PageKey {
                    issued_at: last.issued_at,
                    upload_id: last.upload_id.to_string(),
                })
            })
        } else {
            None
        };
        Ok(UploadPage {
            uploads,
            next_page_token,
        })
    }

    /// Changes to `caller`'s uploads (optionally one user's) after `start`, live. A bad or
    /// expired cursor is refused here. The stream ends after its first error (the store
    /// failed, or retention removed changes it had not read); a client resumes with the last
    /// cursor it saw.
    pub async fn watch(
        &self,
        caller: &str,
        start: WatchStart,
        user_id: Option<String>,
    ) -> Result<
        impl Stream<Item = Result<UploadChange, TrackingError>> + Send + 'static,
        TrackingError,
    > {
        super::watch::changes(self.inner.clone(), caller.to_owned(), start, user_id).await
    }

    /// Files with a procedure task and no terminal event, whose upload has not changed for
    /// `older_than_seconds` (issue 13's reconciliation), oldest first.
    pub async fn awaiting_procedure(
        &self,
        older_than_seconds: u32,
        limit: u32,
    ) -> Result<Vec<PendingProcedure>, TrackingError> {
        let before = unix_now() - i64::from(older_than_seconds);
        let uploads = self
            .inner
            .store
            .unfinished_procedures(before, limit)
            .await?;
        let mut pending = Vec::new();
        for upload in uploads {
            for file in upload.files {
                if let (Some(task_id), FileState::Uploaded | FileState::Processing) =
                    (file.procedure_task_id, file.state)
                {
                    pending.push(PendingProcedure {
                        upload_id: upload.upload_id.clone(),
                        file_id: file.file_id,
                        task_id,
                    });
                }
            }
        }
        pending.truncate(limit as usize);
        Ok(pending)
    }

    /// Moves uploads still ISSUED whose signature expired before `now` to EXPIRED. The
    /// background sweeper calls this every few seconds with the current time.
    pub async fn expire_due(&self, now: i64) -> Result<u64, TrackingError> {
        let mut expired = 0;
        loop {
            let swept = self.inner.store.expire_due(now).await?;
            if swept.expired > 0 {
                self.inner.feed.send_modify(|n| *n += 1);
            }
            expired += swept.expired;
            if !swept.more {
                return Ok(expired);
            }
        }
    }

    /// Removes what is older than the retention period at `now`: event bodies, uploads last
    /// changed before it, and changes (a cursor into the pruned part then gets
    /// [`TrackingError::CursorExpired`]). The background task calls this hourly.
    pub async fn prune(&self, now: i64) -> Result<PruneReport, TrackingError> {
        let retention = i64::try_from(self.inner.retention.as_secs()).unwrap_or(i64::MAX);
        self.inner.store.prune(now.saturating_sub(retention)).await
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner.store {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        };
        f.debug_struct("Tracker").field("store", &kind).finish()
    }
}

/// The group-commit loop: ends when every `Tracker` clone is gone and every batch is answered.
///
/// A batch is taken from the queue as soon as the store is free for it, and answered once its
/// commit is durable. A store that lets go before its commit is on disk (SQLite) thus runs the
/// next batch's statements during the previous one's fsync.
async fn run_intake(
    store: AnyStore,
    feed: Arc<watch::Sender<u64>>,
    mut queue: mpsc::Receiver<Pending>,
) {
    type Replies = Vec<oneshot::Sender<Result<Receipt, TrackingError>>>;
    type Committing = BoxFuture<'static, (Result<(Vec<Receipt>, Durable), TrackingError>, Replies)>;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut committing: Option<Committing> = None;
    let mut syncing = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            Some((result, replies)) = syncing.next(), if !syncing.is_empty() => {
                answer(&feed, result, replies);
            }
            (result, replies) = async {
                match committing.as_mut() {
                    Some(commit) => commit.await,
                    None => std::future::pending().await,
                }
            }, if committing.is_some() => {
                committing = None;
                match result {
                    Ok((receipts, durable)) => syncing.push(async move {
                        (durable.await.map(|()| receipts), replies)
                    }),
                    Err(error) => answer(&feed, Err(error), replies),
                }
            }
            received = queue.recv_many(&mut batch, MAX_BATCH), if open && committing.is_none() => {
                if received == 0 {
                    open = false;
                    continue;
                }
                let (events, replies): (Vec<Incoming>, Replies) =
                    batch.drain(..).map(|p| (p.event, p.reply)).unzip();
                let store = store.clone();
                committing = Some(Box::pin(async move { (store.commit_batch(events).await, replies) }));
            }
            else => return,
        }
    }
}

/// Answers every event of one committed (or failed) batch.
fn answer(
    feed: &watch::Sender<u64>,
    result: Result<Vec<Receipt>, TrackingError>,
    replies: Vec<oneshot::Sender<Result<Receipt, TrackingError>>>,
) {
    match result {
        Ok(receipts) => {
            if receipts.contains(&Receipt::Applied) {
                feed.send_modify(|n| *n += 1);
            }
            for (reply, receipt) in replies.into_iter().zip(receipts) {
                let _ = reply.send(Ok(receipt));
            }
        }
        Err(error) => {
            tracing::warn!(%error, events = replies.len(), "event batch not stored");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Expiry every few seconds, retention every hour; ends when the tracker is dropped.
async fn run_housekeeping(inner: Weak<Inner>) {
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    let mut retention = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let tracker = Tracker { inner };
                if let Err(error) = tracker.expire_due(unix_now()).await {
                    tracing::warn!(%error, "upload expiry sweep failed");
                }
            }
            _ = retention.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let tracker = Tracker { inner };
                match tracker.prune(unix_now()).await {
                    Ok(report) => tracing::debug!(?report, "retention pass"),
                    Err(error) => tracing::warn!(%error, "retention pass failed"),
                }
            }
        }
    }
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
