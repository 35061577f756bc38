//! Reliable (PULL) mode: [`Consumer`] drains VOD's event queue into the tracker, and
//! [`Reconciler`] looks up the uploads whose final event never came.
//!
//! Both feed the same intake as the HTTP receiver ([`crate::tracking::Tracker::receive`]), so
//! an event delivered twice, by PUSH and by PULL, or to two replicas, is stored once.

mod backoff;
mod consumer;
mod reconcile;

pub use backoff::BackoffPolicy;
pub use consumer::{Consumer, PullTiming};
pub use reconcile::{PassError, PassReport, Reconciler};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The background tasks of reliable mode on one replica.
pub struct PullTasks {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl PullTasks {
    /// Starts the consumer and, when `reconcile_after` is not zero, the reconciler. Both stop
    /// once `stop` turns true.
    pub fn spawn(
        api: crate::vod_api::ApiSettings,
        tracker: crate::tracking::Tracker,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        reconcile_after: std::time::Duration,
        timing: PullTiming,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<PullTasks, crate::vod_api::ApiClientError> {
        let api = crate::vod_api::ApiClient::new(api)?;
        let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let mut handles = Vec::new();
        let consumer = Consumer::new(api.clone(), tracker.clone(), metrics.clone(), timing);
        handles.push(tokio::spawn(consumer.run(stopped(stop.clone()))));
        let after = u32::try_from(reconcile_after.as_secs()).unwrap_or(u32::MAX);
        if let Some(after) = std::num::NonZeroU32::new(after) {
            let reconciler = Reconciler::new(api, tracker, metrics, after, timing.backoff);
            handles.push(tokio::spawn(reconciler.run(stopped(stop))));
        }
        Ok(PullTasks { handles })
    }

    /// Waits until both loops have returned: the consumer returns after confirming what it
    /// stored, so call this before the process exits.
    pub async fn join(self) {
        for handle in self.handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "a reliable-mode task failed");
            }
        }
    }
}
