//! `[tracking]`: where upload records live and how long they are kept.
//!
//! This file only defines the checked settings; reading them from TOML is the configuration
//! parser's job. The tracker (`crate::tracking`) opens a store from them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// `retention_days` when the file names none.
pub(super) const DEFAULT_RETENTION_DAYS: u32 = 30;
/// `reconcile_after_seconds` when the file names none (issue 13's reconciliation).
pub(super) const DEFAULT_RECONCILE_AFTER_SECONDS: u32 = 900;

/// The checked `[tracking]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingSettings {
    pub store: StoreLocation,
    /// Raw event bodies, upload records and changes older than this are pruned.
    pub retention: Duration,
    /// An upload with a procedure and no terminal event for this long is reconciled (issue 13).
    pub reconcile_after: Duration,
}

impl TrackingSettings {
    /// Settings with the default retention and reconciliation delay.
    pub fn new(store: StoreLocation) -> Self {
        TrackingSettings {
            store,
            retention: Duration::from_secs(u64::from(DEFAULT_RETENTION_DAYS) * 86_400),
            reconcile_after: Duration::from_secs(u64::from(DEFAULT_RECONCILE_AFTER_SECONDS)),
        }
    }
}

/// Where the tracker keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite database file (already resolved against the configuration file's directory).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by every replica.
    Postgres(PostgresUrl),
}

impl StoreLocation {
    /// Parses the `store` value: `sqlite:PATH` (a relative PATH starts at `base_dir`) or a
    /// `postgres://` / `postgresql://` URL.
    pub fn parse(value: &str, base_dir: &std::path::Path) -> Result<Self, StoreLocationError> {
        if let Some(path) = value.strip_prefix("sqlite:") {
            // `sqlite://PATH` is the URL spelling of the same thing.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreLocationError::EmptySqlitePath);
            }
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                base_dir.join(path)
            };
            Ok(StoreLocation::Sqlite(path))
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(StoreLocation::Postgres(PostgresUrl(value.to_owned())))
        } else {
            Err(StoreLocationError::UnknownScheme)
        }
    }
}

/// Why a `store` value was refused. Never contains the value: a URL may carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreLocationError {
    #[error("`sqlite:` must be followed by a file path")]
    EmptySqlitePath,
    #[error("must start with `sqlite:`, `postgres://` or `postgresql://`")]
    UnknownScheme,
}

/// A PostgreSQL connection URL. It may carry a password, so it is never printed and is wiped
/// on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn new(url: String) -> Self {
        PostgresUrl(url)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostgresUrl(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn relative_sqlite_paths_start_at_the_config_directory() {
        let base = Path::new("/etc/vod-signer");
        assert_eq!(
            StoreLocation::parse("sqlite:uploads.db", base),
            Ok(StoreLocation::Sqlite(PathBuf::from(
                "/etc/vod-signer/uploads.db"
            )))
        );
        assert_eq!(
            StoreLocation::parse("sqlite:/var/lib/u.db", base),
            Ok(StoreLocation::Sqlite(PathBuf::from("/var/lib/u.db")))
        );
        assert_eq!(
            StoreLocation::parse("sqlite:", base),
            Err(StoreLocationError::EmptySqlitePath)
        );
        assert_eq!(
            StoreLocation::parse("mysql://x", base),
            Err(StoreLocationError::UnknownScheme)
        );
    }

    #[test]
    fn postgres_urls_are_never_printed() {
        let location =
            StoreLocation::parse("postgres://u:hunter2@db:5432/vod", Path::new("/")).unwrap();
        assert!(!format!("{location:?}").contains("hunter2"));
    }
}
