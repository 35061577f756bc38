//! At most one log line per interval for events that can come in floods (a store outage, a
//! client hammering with a wrong token): every occurrence is counted in metrics anyway, and
//! one line per call would drown everything else, and cost a write per call to whoever floods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Decides when a line is due, and counts the occurrences not logged in between.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last line; 0 before the first.
    last_ms: AtomicU64,
    unlogged: AtomicU64,
}

impl RateLimit {
    pub(crate) fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many went unlogged
    /// since the last line; `None` (and counted) otherwise.
    pub(crate) fn due(&self) -> Option<u64> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.interval.as_millis() as u64;
        if !due
            || self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }

    /// Occurrences not logged since the last line.
    #[cfg(test)]
    pub(crate) fn unlogged(&self) -> u64 {
        self.unlogged.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let limit = RateLimit::new(Duration::from_millis(50));
        assert_eq!(limit.due(), Some(0));
        for _ in 0..4 {
            assert_eq!(limit.due(), None);
        }
        assert_eq!(limit.unlogged(), 4);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.due(), Some(4));
        assert_eq!(limit.unlogged(), 0);
    }
}
