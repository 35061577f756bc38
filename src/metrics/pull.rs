//! Metrics of the reliable (PULL) event consumer and of reconciliation.
//!
//! | metric | labels |
//! | --- | --- |
//! | `vod_signer_events_pulled_total` | |
//! | `vod_signer_events_confirmed_total` | |
//! | `vod_signer_events_pulled_duplicates_total` | |
//! | `vod_signer_events_pull_store_failures_total` | |
//! | `vod_signer_events_oldest_unconfirmed_age_seconds` (gauge) | |
//! | `vod_signer_vod_api_errors_total` | `action`, `code` (the error class, e.g. `AuthFailure`) |
//! | `vod_signer_reconciliation_checks_total` | |
//! | `vod_signer_reconciliation_fixes_total` | |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::vod_api::ErrorClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiErrorLabels {
    action: &'static str,
    code: &'static str,
}

/// Counters of the PULL consumer and the reconciliation job.
#[derive(Debug, Default)]
pub struct PullMetrics {
    pulled: Counter,
    confirmed: Counter,
    duplicates: Counter,
    store_failures: Counter,
    oldest_unconfirmed_age: Gauge,
    api_errors: Family<ApiErrorLabels, Counter>,
    reconciliation_checks: Counter,
    reconciliation_fixes: Counter,
}

impl PullMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "events_pulled",
            "Events received from VOD's reliable-callback queue (PullEvents)",
            self.pulled.clone(),
        );
        registry.register(
            "events_confirmed",
            "Pulled events acknowledged with ConfirmEvents after they were stored",
            self.confirmed.clone(),
        );
        registry.register(
            "events_pulled_duplicates",
            "Pulled events that were already stored (redeliveries, or another replica's)",
            self.duplicates.clone(),
        );
        registry.register(
            "events_pull_store_failures",
            "Pulled events the store could not take; they are not confirmed, so VOD redelivers them",
            self.store_failures.clone(),
        );
        registry.register_with_unit(
            "events_oldest_unconfirmed_age",
            "Age of the oldest pulled event not confirmed yet (0 when none)",
            Unit::Seconds,
            self.oldest_unconfirmed_age.clone(),
        );
        registry.register(
            "vod_api_errors",
            "Failed VOD API calls, by action and error class",
            self.api_errors.clone(),
        );
        registry.register(
            "reconciliation_checks",
            "Stuck uploads checked with DescribeTaskDetail",
            self.reconciliation_checks.clone(),
        );
        registry.register(
            "reconciliation_fixes",
            "Stuck uploads whose final task state was applied by reconciliation",
            self.reconciliation_fixes.clone(),
        );
    }

    pub fn pulled(&self, n: u64) {
        self.pulled.inc_by(n);
    }

    pub fn confirmed(&self, n: u64) {
        self.confirmed.inc_by(n);
    }

    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    pub fn store_failed(&self) {
        self.store_failures.inc();
    }

    pub fn oldest_unconfirmed_age(&self, seconds: u64) {
        self.oldest_unconfirmed_age
            .set(i64::try_from(seconds).unwrap_or(i64::MAX));
    }

    pub fn api_error(&self, action: &'static str, class: ErrorClass) {
        self.api_errors
            .get_or_create(&ApiErrorLabels {
                action,
                code: class.as_str(),
            })
            .inc();
    }

    pub fn reconciliation_checked(&self) {
        self.reconciliation_checks.inc();
    }

    pub fn reconciliation_fixed(&self) {
        self.reconciliation_fixes.inc();
    }
}
