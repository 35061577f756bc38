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
