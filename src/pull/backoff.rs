//! How long to wait after a failed API call: exponential, jittered so replicas that failed
//! together do not retry together, and longer for errors that retrying soon cannot fix.

use std::time::Duration;

use crate::vod_api::{ApiError, ErrorClass};

/// The waits of one consumer. Production values come from [`Default`]; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    /// The first wait after a failure.
    pub base: Duration,
    /// No wait is longer than this.
    pub max: Duration,
    /// `RequestLimitExceeded`: the limit is per second, so sooner only fails again.
    pub rate_limited: Duration,
    /// `AuthFailure`: an operator has to fix the key or the clock; retrying every few
    /// milliseconds would only flood the log and the API.
    pub auth_failure: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            rate_limited: Duration::from_secs(1),
            auth_failure: Duration::from_secs(30),
        }
    }
}

/// The state of consecutive failures.
#[derive(Debug)]
pub(super) struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub(super) fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// A call succeeded: the next failure starts from the base wait again.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait before retrying after `error` (or after a failure of the store, `None`).
    pub(super) fn after(&mut self, error: Option<&ApiError>) -> Duration {
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let exponential = self
            .policy
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.policy.max);
        let floor = match error.map(ApiError::class) {
            Some(ErrorClass::RequestLimitExceeded) => self.policy.rate_limited,
            Some(ErrorClass::AuthFailure) => self.policy.auth_failure,
            _ => Duration::ZERO,
        };
        jitter(exponential.max(floor))
    }
}

/// A uniformly random wait between half of `wait` and all of it.
fn jitter(wait: Duration) -> Duration {
    let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
    if nanos < 2 {
        return wait;
    }
    Duration::from_nanos(rand::random_range(nanos / 2..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> ApiError {
        ApiError::Refused {
            action: "PullEvents",
            class: ErrorClass::of_code(code),
            code: code.to_owned(),
            message: String::new(),
            request_id: String::new(),
        }
    }

    #[test]
    fn waits_grow_exponentially_within_the_jitter_band_up_to_the_cap() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
            ..BackoffPolicy::default()
        };
        let mut backoff = Backoff::new(policy);
        for expected_ms in [100, 200, 400, 800, 1_000, 1_000] {
            let wait = backoff.after(None);
            let expected = Duration::from_millis(expected_ms);
            assert!(
                wait >= expected / 2 && wait <= expected,
                "{wait:?} not within half of {expected:?}"
            );
        }
        backoff.reset();
        assert!(backoff.after(None) <= Duration::from_millis(100));
    }

    #[test]
    fn rate_limits_and_auth_failures_wait_at_least_their_floor() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(1),
            max: Duration::from_secs(60),
            rate_limited: Duration::from_secs(1),
            auth_failure: Duration::from_secs(30),
        };
        let mut backoff = Backoff::new(policy);
        let wait = backoff.after(Some(&refused("RequestLimitExceeded")));
        assert!(wait >= Duration::from_millis(500), "{wait:?}");
        let wait = backoff.after(Some(&refused("AuthFailure.SignatureFailure")));
        assert!(wait >= Duration::from_secs(15), "{wait:?}");
        let wait = backoff.after(Some(&refused("InternalError")));
        assert!(wait < Duration::from_secs(1), "{wait:?}");
    }
}
