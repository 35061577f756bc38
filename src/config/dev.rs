//! The built-in development configuration. Everything here is published in the source code,
//! hence not secret: it exists so `vod-signer serve --dev` works on a fresh clone.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, DEFAULT_LISTEN, EventsSettings, PathToken, StoreLocation, TrackingSettings};
use crate::events::SignKey;
use crate::policy::{Caller, Callers, Policy, TokenHash};
use crate::signature::{DEFAULT_CLOCK_SKEW_SECONDS, KeyRing, SecretId, SecretKey, SigningKey};

/// The development key's `secretId`. VOD knows no such key, so its signatures cannot upload.
pub const DEV_SECRET_ID: &str = "AKIDdevelopmentONLYvodSignerNotReal";
/// The development SecretKey: published, never a real key.
pub const DEV_SECRET_KEY: &str = "development-only-published-not-a-secret";
/// The development caller.
pub(crate) const DEV_CALLER: &str = "dev";
/// The development caller's bearer token: published, printed at start-up.
pub const DEV_TOKEN: &str = "dev-token-published-not-a-secret";
/// Where the development event receiver listens (loopback only).
pub(super) const DEV_EVENTS_LISTEN: &str = "127.0.0.1:8080";
/// The development receiver's path token: published, printed at start-up.
pub(crate) const DEV_PATH_TOKEN: &str = "dev-path-token-published-not-a-secret";
/// The development SignKey: published, printed at start-up.
pub(crate) const DEV_SIGN_KEY: &str = "devSignKeyPublishedNotSecret";

/// The development store: a fresh SQLite file per process in the temporary directory, which
/// `serve --dev` deletes when it stops.
pub(super) fn dev_store_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vod-signer-dev-{}.sqlite", std::process::id()))
}

pub(super) fn config() -> Config {
    let key = SigningKey::new(
        SecretId::new(DEV_SECRET_ID).expect("the development secretId is valid"),
        &SecretKey::from_string(DEV_SECRET_KEY.to_owned())
            .expect("the development key is not empty"),
    );
    let caller = Caller::new(
        DEV_CALLER,
        TokenHash::of(DEV_TOKEN.as_bytes()),
        Policy {
            track_uploads: true,
            can_track: true,
            ..Policy::default()
        },
    );
    let events = EventsSettings {
        listen: Some(
            DEV_EVENTS_LISTEN
                .parse::<SocketAddr>()
                .expect("the development events address parses"),
        ),
        path_token: Some(
            PathToken::new(DEV_PATH_TOKEN.to_owned()).expect("the development path token is valid"),
        ),
        sign_key: Some(
            SignKey::new(DEV_SIGN_KEY.to_owned()).expect("the development SignKey is valid"),
        ),
    };
    // Reconciliation off: the development key is unknown to VOD, so every DescribeTaskDetail
    // at Tencent would fail with AuthFailure. The banner says so.
    let mut tracking = TrackingSettings::new(StoreLocation::Sqlite(dev_store_path()));
    tracking.reconcile_after = Duration::ZERO;
    Config {
        listen: DEFAULT_LISTEN
            .parse::<SocketAddr>()
            .expect("the default listen address parses"),
        clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
        shutdown_grace: Duration::from_secs(u64::from(super::DEFAULT_SHUTDOWN_GRACE_SECONDS)),
        keys: KeyRing::single(key),
        callers: Callers::new(vec![caller]).expect("one caller cannot collide"),
        development: true,
        metrics_listen: None,
        tls: None,
        quota: super::QuotaSettings::default(),
        transport: super::TransportSettings::default(),
        source: None,
        instance_id: None,
        warnings: Vec::new(),
        tracking: Some(tracking),
        events: Some(events),
        pull: None,
        reconcile_api: None,
    }
}
