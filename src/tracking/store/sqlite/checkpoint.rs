//! Copies the write-ahead log back into the database file, off the commit path.
//!
//! By default SQLite checkpoints inside the commit that crosses `wal_autocheckpoint` pages,
//! so every thousandth page or so one event batch also pays for copying the whole log into
//! the database (BENCHMARKS.md, "Upload events"). Here the writer checkpoints only as a last
//! resort, and a thread of its own runs a PASSIVE checkpoint every [`INTERVAL`]: it copies what
//! no reader still needs without ever taking the write lock, so commits go on meanwhile, and
//! the next commit after a complete checkpoint starts the log again from its beginning.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use crate::tracking::TrackingError;

const INTERVAL: Duration = Duration::from_millis(200);

/// Pages of log after which the writer checkpoints by itself, should this thread fall
/// behind (SQLite's default is 1000).
pub(super) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// Runs the checkpoints until `alive` is gone (the store was dropped). Returns the handle the
/// store keeps alive.
pub(super) fn start(path: &Path) -> Result<Arc<()>, TrackingError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    let alive = Arc::new(());
    let watched = Arc::downgrade(&alive);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(&connection, &watched))
        .map_err(|e| TrackingError::Unavailable(format!("starting the checkpoint thread: {e}")))?;
    Ok(alive)
}

fn run(connection: &Connection, alive: &Weak<()>) {
    let mut failing = false;
    while alive.strong_count() > 0 {
        std::thread::sleep(INTERVAL);
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        // One line when checkpoints start failing and one when they recover: the writer's own
        // checkpoint still bounds the log meanwhile.
        match result {
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "SQLite checkpoint failed; the writer checkpoints instead");
            }
            Ok(_) if failing => {
                failing = false;
                tracing::info!("SQLite checkpoints work again");
            }
            _ => {}
        }
    }
}
