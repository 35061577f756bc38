//! Reliable (PULL) mode: [`Consumer`] drains VOD's event queue into the tracker, and
//! [`Reconciler`] looks up the uploads whose final event never came (with or without PULL).
//!
//! Both feed the same intake as the HTTP receiver ([`crate::tracking::Tracker::receive`]), so
//! an event delivered twice, by PUSH and by PULL, or to two replicas, is stored once.

mod backoff;
mod consumer;
mod reconcile;

pub use backoff::BackoffPolicy;
pub use consumer::{Consumer, PullTiming};
pub use reconcile::Reconciler;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The background tasks of reliable mode on one replica: the consumer (with `[events.pull]`)
/// and the reconciler (with tracking and `reconcile_after_seconds > 0`), each started on its
/// own, so either may run alone.
#[derive(Default)]
pub(crate) struct PullTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl PullTasks {
    pub fn new() -> Self {
        PullTasks::default()
    }

    /// Starts the consumer; it stops once `stop` turns true, after confirming what it stored.
    pub fn spawn_consumer(
        &mut self,
        api: crate::vod_api::ApiClient,
        tracker: crate::tracking::Tracker,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        timing: PullTiming,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let consumer = Consumer::new(api, tracker, metrics, timing);
        self.handles.push(tokio::spawn(consumer.run(stopped(stop))));
    }

    /// Starts the reconciler; it stops once `stop` turns true (a pass in progress is dropped:
    /// what it did not apply is due again at the next start).
    pub fn spawn_reconciler(
        &mut self,
        api: crate::vod_api::ApiClient,
        tracker: crate::tracking::Tracker,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        after: std::num::NonZeroU32,
        backoff: BackoffPolicy,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let reconciler = Reconciler::new(api, tracker, metrics, after, backoff);
        self.handles
            .push(tokio::spawn(reconciler.run(stopped(stop))));
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Waits until every started loop has returned: the consumer returns after confirming
    /// what it stored, so call this before the process exits.
    pub async fn join(self) {
        for handle in self.handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "a reliable-mode task failed");
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
