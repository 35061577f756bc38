//! Reading `[tracking]` from the file into [`TrackingSettings`] (defined in `tracking.rs`).
//!
//! ```toml
//! [tracking]
//! store = "sqlite:uploads.db"     # relative to the configuration file's directory, or absolute;
//!                                 # or "postgres://user@host:port/db" for several replicas
//! retention_days = 30
//! reconcile_after_seconds = 900  # 0 turns reconciliation off
//!
//! [tracking.reconcile_api]        # optional: the VOD API reconciliation calls without PULL
//! endpoint = "https://vod.tencentcloudapi.com"   # the keys of [events.pull]
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroize;

use super::ConfigError;
use super::tracking::{StoreLocation, TrackingSettings};

/// Longest `retention_days`: ten years is already more than any event is worth keeping.
pub(super) const MAX_RETENTION_DAYS: u32 = 3650;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracking {
    // Wiped after parsing: a PostgreSQL URL may carry a password.
    store: String,
    retention_days: Option<u32>,
    reconcile_after_seconds: Option<u32>,
    /// `[tracking.reconcile_api]`, checked apart by `super::reconcile` (taken out before
    /// [`tracking`] runs).
    pub(super) reconcile_api: Option<super::pull::RawApi>,
}

pub(super) fn tracking(
    raw: Option<RawTracking>,
    base_dir: &Path,
) -> Result<Option<TrackingSettings>, ConfigError> {
    let Some(mut raw) = raw else {
        return Ok(None);
    };
    let store = StoreLocation::parse(&raw.store, base_dir);
    raw.store.zeroize();
    let store = store.map_err(|e| ConfigError::field("tracking.store", e))?;
    let mut settings = TrackingSettings::new(store);
    if let Some(days) = raw.retention_days {
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(ConfigError::field(
                "tracking.retention_days",
                format!("{days} is not between 1 and {MAX_RETENTION_DAYS}"),
            ));
        }
        settings.retention = Duration::from_secs(u64::from(days) * 86_400);
    }
    if let Some(seconds) = raw.reconcile_after_seconds {
        // 0 turns reconciliation off (issue 13's contract).
        settings.reconcile_after = Duration::from_secs(u64::from(seconds));
    }
    Ok(Some(settings))
}
