//! The live change feed: a stream over the store's change positions.
//!
//! The stream reads changes after its position, hands them out, and when there are none waits
//! for the feed counter to move (a local commit, or a PostgreSQL notification from another
//! replica) or for the poll interval to pass, whichever comes first. The counter is marked
//! seen BEFORE each read, so a commit that lands between the read and the wait still wakes it.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::{Stream, stream};
use tokio::sync::watch;

use super::TrackingError;
use super::cursor::{decode_cursor, encode_cursor};
use super::model::{UploadChange, WatchStart};
use super::store::{Store, StoredChange};
use super::tracker::Inner;

const READ_AHEAD: u32 = 256;

struct Watch {
    inner: Arc<Inner>,
    wake: watch::Receiver<u64>,
    caller: String,
    user_id: Option<String>,
    position: i64,
    buffered: VecDeque<StoredChange>,
    failed: bool,
}

/// Anchors the feed at `start` before returning, so "now" is the end of the feed when the
/// watch is asked for (not when its first change is polled), and a bad or expired cursor is
/// refused at once rather than as the stream's first item.
pub(super) async fn changes(
    inner: Arc<Inner>,
    caller: String,
    start: WatchStart,
    user_id: Option<String>,
) -> Result<impl Stream<Item = Result<UploadChange, TrackingError>> + Send + 'static, TrackingError>
{
    let mut wake = inner.feed.subscribe();
    wake.borrow_and_update();
    let (last, pruned_through) = inner.store.feed_bounds().await?;
    let position = match start {
        WatchStart::Now => last,
        WatchStart::After(cursor) => {
            let position = decode_cursor(&cursor)?;
            if position < pruned_through {
                return Err(TrackingError::CursorExpired);
            }
            position
        }
    };
    let state = Watch {
        inner,
        wake,
        caller,
        user_id: user_id.filter(|u| !u.is_empty()),
        position,
        buffered: VecDeque::new(),
        failed: false,
    };
    Ok(stream::unfold(state, |mut state| async move {
        if state.failed {
            return None;
        }
        match state.next().await {
            Ok(change) => Some((Ok(change), state)),
            Err(error) => {
                state.failed = true;
                Some((Err(error), state))
            }
        }
    }))
}

impl Watch {
    async fn next(&mut self) -> Result<UploadChange, TrackingError> {
        loop {
            if let Some(change) = self.buffered.pop_front() {
                self.position = change.position;
                return Ok(UploadChange {
                    cursor: encode_cursor(change.position),
                    upload: change.upload,
                    event_type: change.event_type,
                    received_at: change.received_at,
                });
            }
            self.wake.borrow_and_update();
            let read = self
                .inner
                .store
                .changes_after(
                    &self.caller,
                    self.user_id.as_deref(),
                    self.position,
                    READ_AHEAD,
                )
                .await?;
            if let Some(first) = read.first() {
                // Positions can skip (another caller's changes, a rolled-back PostgreSQL
                // insert), but a retention pass may also have removed changes this watcher
                // had not read yet: then it must not go on as if it had seen them all.
                if first.position > self.position + 1 {
                    let (_, pruned_through) = self.inner.store.feed_bounds().await?;
                    if pruned_through > self.position {
                        return Err(TrackingError::CursorExpired);
                    }
                }
                self.buffered.extend(read);
                continue;
            }
            // Nothing new: wait for a commit or the poll. A closed channel cannot happen while
            // `inner` (which owns the sender) is alive; it would only end the wait early.
            let _ = tokio::time::timeout(self.inner.poll_interval, self.wake.changed()).await;
        }
    }
}
