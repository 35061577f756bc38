//! When and how long to wait before trying a call again.

use std::time::Duration;

/// Retries of calls that failed with [`Error::Unavailable`](crate::Error::Unavailable)
/// (nothing listening, connection lost, or the service said UNAVAILABLE).
///
/// Every RPC of the service is safe to repeat: issuing mints a new, independent signature each
/// time and verifying has no side effect. Retries never outlive the call's deadline; the wait
/// before attempt *n* is drawn uniformly from the upper half of
/// `min(initial_backoff * multiplier^(n-2), max_backoff)`, so many clients that lost the same
/// server do not come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the second attempt (before jitter).
    pub initial_backoff: Duration,
    /// Ceiling of the wait between attempts (before jitter).
    pub max_backoff: Duration,
    /// Growth of the wait from one attempt to the next.
    pub multiplier: f64,
    /// Most attempts per call, the first included; `None` means as many as the deadline allows.
    pub max_attempts: Option<u32>,
}

impl RetryPolicy {
    /// One attempt only.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: Some(1),
            ..RetryPolicy::default()
        }
    }

    pub(crate) fn allows_attempt(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt <= max)
    }

    /// The (jittered) wait after `failed_attempts` attempts have failed (1 for the first retry).
    pub(crate) fn backoff(&self, failed_attempts: u32) -> Duration {
        let ceiling = self.ceiling(failed_attempts);
        // Equal jitter: at least half the ceiling, so a retry storm still backs off.
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    fn ceiling(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(64) as i32;
        let grown = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        if grown.is_finite() && grown < self.max_backoff.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            self.max_backoff
        }
    }
}

impl Default for RetryPolicy {
    /// 50 ms doubling up to 2 s, for as long as the deadline allows.
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_ceiling_and_stays_in_the_upper_half() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=8).map(|n| policy.ceiling(n)).collect();
        assert_eq!(ceilings[0], Duration::from_millis(50));
        assert_eq!(ceilings[1], Duration::from_millis(100));
        assert_eq!(ceilings[5], Duration::from_millis(1600));
        assert_eq!(ceilings[6], Duration::from_secs(2));
        assert_eq!(ceilings[7], Duration::from_secs(2));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(2));
        for n in 1..=10 {
            for _ in 0..50 {
                let wait = policy.backoff(n);
                let ceiling = policy.ceiling(n);
                assert!(wait >= ceiling / 2 && wait <= ceiling, "{n}: {wait:?}");
            }
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let policy = RetryPolicy::default();
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(4)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn attempt_limits() {
        assert!(RetryPolicy::never().allows_attempt(1));
        assert!(!RetryPolicy::never().allows_attempt(2));
        assert!(RetryPolicy::default().allows_attempt(1000));
    }
}
