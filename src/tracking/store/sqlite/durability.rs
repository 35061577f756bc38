//! Makes commits durable after the writer has let go of the database: one fsync of the
//! write-ahead log for every commit made meanwhile.
//!
//! With `synchronous = FULL`, SQLite fsyncs the log inside `COMMIT`, so the writer held the
//! database through the fsync and the next batch could not start until the disk answered
//! (BENCHMARKS.md, "Upload events"). The writer now commits with `synchronous = NORMAL`, which
//! writes the transaction's log frames without syncing them, hands the commit to this thread
//! and goes on with the next batch; a write is answered only once this thread has synced the
//! log past its commit. One fsync of the log file covers every frame written before it, so a
//! single sync answers all the commits that queued up while the previous one ran.
//!
//! Between its commit and the fsync, a change is visible to readers but could still be taken
//! back by a power cut, and its feed position would then be given to another change. The feed
//! is therefore served only up to [`Durability::durable_position`].

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::tracking::TrackingError;

/// The thread's handle; dropping it stops the thread once it has synced what was committed.
pub(super) struct Durability {
    shared: Arc<Shared>,
    synced: watch::Receiver<Synced>,
}

struct Shared {
    committed: Mutex<Committed>,
    wake: Condvar,
}

#[derive(Default)]
struct Committed {
    /// Commits made so far, counted by the writer in commit order.
    count: u64,
    /// The last feed position at the latest commit.
    position: i64,
    stop: bool,
}

/// What the thread has made durable.
#[derive(Debug, Clone)]
struct Synced {
    through: u64,
    position: i64,
    /// Set once an fsync failed: from then on nothing more is durable (a failed fsync may have
    /// dropped the dirty pages it could not write, so a later success proves nothing).
    failed: Option<String>,
}

impl Durability {
    /// Starts the thread for the database at `database`, whose log already exists (the writer
    /// opened it in WAL mode). Everything committed before is made durable first, so that what
    /// an earlier process left unsynced is not served as durable.
    pub(super) fn start(database: &Path, position: i64) -> Result<Durability, TrackingError> {
        let mut log = Log::open(database)?;
        log.sync()
            .map_err(|e| unavailable(&format!("syncing the SQLite log at open: {e}")))?;
        let shared = Arc::new(Shared {
            committed: Mutex::new(Committed {
                position,
                ..Committed::default()
            }),
            wake: Condvar::new(),
        });
        let (report, synced) = watch::channel(Synced {
            through: 0,
            position,
            failed: None,
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("sqlite-fsync".into())
            .spawn(move || run(&thread_shared, &mut log, &report))
            .map_err(|e| unavailable(&format!("starting the fsync thread: {e}")))?;
        Ok(Durability { shared, synced })
    }

    /// Records one commit; `position` is the feed's last position after it. The writer calls
    /// this while it still holds the database, so numbers and positions follow commit order.
    /// Returns the number to wait for with [`Durability::durable`].
    pub(super) fn committed(&self, position: i64) -> u64 {
        let mut committed = lock(&self.shared.committed);
        committed.count += 1;
        committed.position = position;
        self.shared.wake.notify_one();
        committed.count
    }

    /// Waits until commit `commit` is on disk.
    pub(super) async fn durable(&self, commit: u64) -> Result<(), TrackingError> {
        let mut synced = self.synced.clone();
        let synced = synced
            .wait_for(|s| s.through >= commit || s.failed.is_some())
            .await
            .map_err(|_| unavailable("the SQLite fsync thread stopped"))?;
        match &synced.failed {
            Some(error) => Err(unavailable(error)),
            None => Ok(()),
        }
    }

    /// The last feed position that is on disk.
    pub(super) fn durable_position(&self) -> i64 {
        self.synced.borrow().position
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        lock(&self.shared.committed).stop = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, log: &mut Log, report: &watch::Sender<Synced>) {
    let mut through = 0;
    loop {
        let (count, position) = {
            let mut committed = lock(&shared.committed);
            while committed.count == through && !committed.stop {
                committed = shared
                    .wake
                    .wait(committed)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if committed.count == through {
                return;
            }
            (committed.count, committed.position)
        };
        if let Err(error) = log.sync() {
            let message = format!("fsync of the SQLite log failed ({error}); restart the service");
            tracing::error!("{message}");
            report.send_modify(|s| s.failed = Some(message));
            return;
        }
        through = count;
        report.send_modify(|s| {
            s.through = count;
            s.position = position;
        });
    }
}

/// The database's write-ahead log file.
struct Log {
    path: PathBuf,
    file: File,
    inode: u64,
}

impl Log {
    fn open(database: &Path) -> Result<Log, TrackingError> {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        let path = PathBuf::from(path);
        let file = File::open(&path)
            .map_err(|e| unavailable(&format!("opening {}: {e}", path.display())))?;
        let inode = file
            .metadata()
            .map_err(|e| unavailable(&format!("reading {}: {e}", path.display())))?
            .ino();
        // The log's directory entry must survive a power cut too.
        let directory = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(|e| unavailable(&format!("syncing {}: {e}", directory.display())))?;
        Ok(Log { path, file, inode })
    }

    /// Syncs the log file SQLite writes now. SQLite replaces the file only after every
    /// connection closed, which checkpoints it first; the check makes sure a replaced file is
    /// not the one synced.
    fn sync(&mut self) -> std::io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(current) if current.ino() != self.inode => {
                self.file = File::open(&self.path)?;
                self.inode = current.ino();
            }
            Ok(_) => {}
            // Gone: checkpointed into the database and deleted at the last close.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        self.file.sync_data()
    }
}

fn lock(committed: &Mutex<Committed>) -> MutexGuard<'_, Committed> {
    committed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable(message: &str) -> TrackingError {
    TrackingError::Unavailable(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> (rusqlite::Connection, PathBuf) {
        let path = dir.join("test.db");
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        connection
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        (connection, path)
    }

    #[tokio::test]
    async fn a_commit_is_reported_durable_after_the_sync_and_the_feed_position_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (connection, path) = database(dir.path());
        let durability = Durability::start(&path, 7).unwrap();
        assert_eq!(durability.durable_position(), 7);

        connection.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let first = durability.committed(8);
        connection.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let second = durability.committed(9);
        assert!(second > first);
        durability.durable(second).await.unwrap();
        durability.durable(first).await.unwrap();
        assert_eq!(durability.durable_position(), 9);
    }

    #[tokio::test]
    async fn a_log_file_replaced_on_disk_is_reopened_before_it_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (_connection, path) = database(dir.path());
        let mut log = Log::open(&path).unwrap();
        let before = log.inode;
        let replacement = dir.path().join("replacement");
        std::fs::write(&replacement, b"").unwrap();
        std::fs::rename(&replacement, &log.path).unwrap();
        log.sync().unwrap();
        assert_ne!(log.inode, before);
    }

    #[test]
    fn a_missing_log_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let error = Durability::start(&dir.path().join("absent.db"), 0)
            .err()
            .unwrap();
        assert!(error.to_string().contains("absent.db-wal"), "{error}");
    }
}
