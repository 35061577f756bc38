//! `[quota]`: where per-user counts are kept and what happens when that store fails.
//!
//! ```toml
//! [quota]
//! redis_url = "redis://redis:6379/"     # optional: without it, counts stay in this process
//! on_store_error = "deny"               # or "allow"
//! store_timeout_ms = 250
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::quota::{DEFAULT_STORE_TIMEOUT, OnStoreError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    redis_url: Option<String>,
    on_store_error: Option<String>,
    store_timeout_ms: Option<u32>,
}

/// `[quota]`: where per-user counts are kept and what happens when that store fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `None`: counts stay in this process (one replica's budget).
    pub redis_url: Option<RedisUrl>,
    pub on_store_error: OnStoreError,
    pub store_timeout: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            redis_url: None,
            on_store_error: OnStoreError::default(),
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }
}

/// A Redis URL. It may carry a password, so it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

pub(super) fn quota(raw: Option<RawQuota>) -> Result<QuotaSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(QuotaSettings::default());
    };
    let redis_url = match raw.redis_url {
        Some(url) => {
            // Only the scheme is checked here; the URL is parsed when the store is built, and
            // neither step quotes it, since it may carry a password.
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                return Err(ConfigError::field(
                    "quota.redis_url",
                    "must start with redis:// (or redis+unix://)",
                ));
            }
            Some(RedisUrl(url))
        }
        None => None,
    };
    let on_store_error = match raw.on_store_error.as_deref() {
        None => OnStoreError::default(),
        Some(value) => OnStoreError::parse(value).ok_or_else(|| {
            ConfigError::field(
                "quota.on_store_error",
                format!("{value:?} is not \"allow\" or \"deny\""),
            )
        })?,
    };
    let store_timeout = match raw.store_timeout_ms {
        None => DEFAULT_STORE_TIMEOUT,
        Some(ms @ 1..=10_000) => Duration::from_millis(u64::from(ms)),
        Some(ms) => {
            return Err(ConfigError::field(
                "quota.store_timeout_ms",
                format!("{ms} is not between 1 and 10000"),
            ));
        }
    };
    Ok(QuotaSettings {
        redis_url,
        on_store_error,
        store_timeout,
    })
}
