//! A clock the test sets by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::service::Clock;

/// Unix seconds that move only when the test says so. [`ManualClock::clock`] is what the
/// server reads; every clone and every `Clock` made from it see the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now)))
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::Relaxed);
    }

    /// The service's view of this clock.
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.0.clone())
    }
}
