//! The service's configuration file (TOML), checked completely at start-up.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! clock_skew_seconds = 300
//!
//! [[keys]]
//! secret_id = "AKID..."
//! secret_key_file = "vod-secret-key"     # or secret_key_env = "VOD_SECRET_KEY"
//! active = true
//!
//! [[callers]]
//! name = "upload-bff"
//! token_sha256 = "<64 hex digits>"       # or token_env = "UPLOAD_BFF_TOKEN"
//! allowed_procedures = ["content_review"]
//! max_validity_seconds = 3600
//! ```
//!
//! Parsing is split from reading ([`Config::from_toml_str`] takes the text and the directory
//! relative paths start from) so tests need no files beyond the secrets themselves. Errors name
//! the field and, for callers, the caller; they never contain a secret or token value.

mod dev;
mod error;
mod events;
mod file_mode;
mod pull;
mod quota;
mod reconcile;
mod secret_source;
mod secret_value;
mod tls;
mod tracking;
mod tracking_toml;
mod transport;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroize;

pub(crate) use dev::{DEV_CALLER, DEV_PATH_TOKEN, DEV_SIGN_KEY};
pub use dev::{DEV_SECRET_ID, DEV_SECRET_KEY, DEV_TOKEN};
pub(crate) use error::ConfigError;
pub(crate) use events::{EventsSettings, PathToken};
pub(crate) use pull::PullSettings;
pub(crate) use quota::QuotaSettings;
pub(crate) use secret_source::SecretKeySource;
pub(crate) use tls::TlsSettings;
pub use tracking::{PostgresUrl, StoreLocation, TrackingSettings};
pub(crate) use transport::TransportSettings;

use crate::policy::{Caller, Callers, CallersError, DEFAULT_VALIDITY_SECONDS, Policy, TokenHash};
use crate::signature::{
    DEFAULT_CLOCK_SKEW_SECONDS, InstanceId, KeyRing, KeyRingError, MAX_INSTANCE_ID,
    MAX_VALIDITY_SECONDS, SecretId, SigningKey, Validity,
};
use crate::vod_api::{ApiCredential, ApiSettings};

/// Where the service listens unless the file says otherwise: loopback only, so a forgotten
/// configuration line never exposes a signing service to the network.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// How long in-flight calls may take to finish after a shutdown signal.
pub(crate) const DEFAULT_SHUTDOWN_GRACE_SECONDS: u32 = 10;
/// A larger skew would accept signatures dated well into the future; a day is already lenient.
pub(crate) const MAX_CLOCK_SKEW_SECONDS: u32 = 86_400;

/// A complete, checked configuration: secrets are loaded, tokens hashed.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// How far in the future a verified signature's `currentTimeStamp` may lie.
    pub clock_skew_seconds: u32,
    /// After a shutdown signal, how long in-flight calls (and open health watches) may keep
    /// the server from returning.
    pub shutdown_grace: Duration,
    pub keys: KeyRing,
    pub callers: Callers,
    /// True for [`Config::development`], so start-up can say so loudly.
    pub development: bool,
    /// Where Prometheus metrics are served (`/metrics`); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// `None`: plaintext gRPC.
    pub tls: Option<TlsSettings>,
    pub quota: QuotaSettings,
    pub transport: TransportSettings,
    /// The file this configuration was read from, which a reload (SIGHUP) reads again.
    pub source: Option<PathBuf>,
    /// This replica's share of the `random` space (`instance_id`): replicas with distinct ids
    /// never repeat a `random`. `None`: leased from Redis if configured, else per process.
    pub instance_id: Option<InstanceId>,
    /// Accepted but risky settings (a secret file others can read), logged at start and reload.
    pub warnings: Vec<String>,
    /// `[tracking]`: where upload records live; `None` tracks nothing.
    pub tracking: Option<TrackingSettings>,
    /// `[events]`: the receiver of VOD's event notifications; `None` receives none.
    pub events: Option<EventsSettings>,
    /// `[events.pull]`: VOD's reliable-callback queue; `None` pulls nothing.
    pub pull: Option<PullSettings>,
    /// The VOD API reconciliation calls: `[events.pull]`'s, else `[tracking.reconcile_api]`,
    /// else Tencent's endpoint with the active key. `None`: reconciliation is off.
    pub reconcile_api: Option<ApiSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    clock_skew_seconds: Option<u32>,
    shutdown_grace_seconds: Option<u32>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    callers: Vec<RawCaller>,
    metrics_listen: Option<String>,
    tls: Option<tls::RawTls>,
    quota: Option<quota::RawQuota>,
    transport: Option<transport::RawTransport>,
    instance_id: Option<u32>,
    tracking: Option<tracking_toml::RawTracking>,
    events: Option<events::RawEvents>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    secret_id: String,
    secret_key_env: Option<String>,
    secret_key_file: Option<PathBuf>,
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: String,
    token_sha256: Option<String>,
    token_env: Option<String>,
    allowed_procedures: Option<Vec<String>>,
    allowed_class_ids: Option<Vec<u64>>,
    allowed_sub_app_ids: Option<Vec<u64>>,
    max_validity_seconds: Option<u32>,
    default_validity_seconds: Option<u32>,
    force_one_time: Option<bool>,
    can_issue: Option<bool>,
    can_verify: Option<bool>,
    track_uploads: Option<bool>,
    can_track: Option<bool>,
    issue_per_user_per_minute: Option<u32>,
}

impl Config {
    /// Reads and checks the file at `path`; relative paths inside it start at its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_toml_str(&text, base_dir)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and checks configuration text. `base_dir` is where relative `secret_key_file`
    /// paths start (the file's directory, for a file).
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::field("listen", format!("{listen_text:?}: {e}")))?;

        let clock_skew_seconds = raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
        if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(ConfigError::field(
                "clock_skew_seconds",
                format!("{clock_skew_seconds} is more than {MAX_CLOCK_SKEW_SECONDS}"),
            ));
        }
        let shutdown_grace = Duration::from_secs(u64::from(
            raw.shutdown_grace_seconds
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
        ));

        let metrics_listen = match raw.metrics_listen.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::field("metrics_listen", format!("{text:?}: {e}")))?,
            ),
        };
        let instance_id = match raw.instance_id {
            None => None,
            Some(id) => Some(InstanceId::new(id).ok_or_else(|| {
                ConfigError::field(
                    "instance_id",
                    format!("{id} is more than {MAX_INSTANCE_ID}"),
                )
            })?),
        };
        let mut warnings = Vec::new();
        let (keys, active_credential) = key_ring(raw.keys, base_dir, &mut warnings)?;
        let raw_pull = raw.events.as_mut().and_then(|events| events.pull.take());
        let pull = pull::pull(raw_pull, base_dir, active_credential.as_ref())?;
        let raw_reconcile_api = raw
            .tracking
            .as_mut()
            .and_then(|tracking| tracking.reconcile_api.take());
        let tracking = tracking_toml::tracking(raw.tracking, base_dir)?;
        let reconcile_api = reconcile::reconcile_api(
            raw_reconcile_api,
            pull.as_ref(),
            tracking.as_ref(),
            base_dir,
            active_credential.as_ref(),
            &mut warnings,
        )?;
        let callers = callers(raw.callers, tracking.is_some())?;
        let tls = tls::tls(raw.tls, base_dir, &mut warnings)?;
        let events = events::events(raw.events, base_dir)?;
        if events.is_some() && tracking.is_none() {
            return Err(ConfigError::field(
                "events",
                "needs a [tracking] section (where received events are stored)",
            ));
        }
        Ok(Config {
            listen,
            clock_skew_seconds,
            shutdown_grace,
            keys,
            callers,
            development: false,
            metrics_listen,
            tls,
            quota: quota::quota(raw.quota)?,
            transport: transport::transport(raw.transport)?,
            source: None,
            instance_id,
            warnings,
            tracking,
            events,
            pull,
            reconcile_api,
        })
    }

    /// The built-in development configuration used by `vod-signer serve --dev`: one published
    /// key ([`DEV_SECRET_ID`], which VOD does not know, so its signatures are useless for real
    /// uploads) and one caller `DEV_CALLER` with the published token [`DEV_TOKEN`]. Neither
    /// value is secret; never use this configuration for anything but trying the service out.
    pub fn development() -> Config {
        dev::config()
    }
}

/// The key ring, and the active key as a Tencent Cloud API credential (the default one of
/// `[events.pull]`).
fn key_ring(
    raw: Vec<RawKey>,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(KeyRing, Option<ApiCredential>), ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::field(
            "keys",
            "at least one [[keys]] entry is required",
        ));
    }
    let only_one = raw.len() == 1;
    let mut keys = Vec::with_capacity(raw.len());
    let mut active_credential = None;
    for (i, key) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("keys[{i}].{name}");
        let secret_id =
            SecretId::new(&key.secret_id).map_err(|e| ConfigError::field(field("secret_id"), e))?;
        let (source, source_field) = match (key.secret_key_env, key.secret_key_file) {
            (Some(var), None) => (SecretKeySource::Env(var), "secret_key_env"),
            (None, Some(path)) => (
                SecretKeySource::File(base_dir.join(path)),
                "secret_key_file",
            ),
            (Some(_), Some(_)) => {
                return Err(ConfigError::field(
                    format!("keys[{i}]"),
                    "set only one of secret_key_env and secret_key_file",
                ));
            }
            (None, None) => {
                return Err(ConfigError::field(
                    format!("keys[{i}]"),
                    format!(
                        "secretId {secret_id}: missing secret (set secret_key_env or secret_key_file)"
                    ),
                ));
            }
        };
        // The loader's messages name the variable or file, never the value.
        let secret_key = source
            .load()
            .map_err(|e| ConfigError::field(field(source_field), e))?;
        if let SecretKeySource::File(path) = &source {
            warnings.extend(file_mode::exposed(&field(source_field), path));
        }
        // A single key signs unless it is explicitly switched off; with several, the operator
        // must say which one signs, because guessing would pick the wrong key during rotation.
        let active = key.active.unwrap_or(only_one);
        if active {
            active_credential = Some(ApiCredential::new(secret_id.clone(), secret_key.clone()));
        }
        keys.push((SigningKey::new(secret_id, &secret_key), active));
    }
    let ring = KeyRing::new(keys).map_err(|e| match e {
        KeyRingError::DuplicateSecretId(id) => {
            ConfigError::field("keys", format!("secret_id {id:?} is listed more than once"))
        }
        KeyRingError::ActiveCount(n) => ConfigError::field(
            "keys",
            format!("exactly one key must have active = true, found {n}"),
        ),
        KeyRingError::Empty => ConfigError::field("keys", "at least one key is required"),
    })?;
    Ok((ring, active_credential))
}

fn callers(raw: Vec<RawCaller>, tracking_configured: bool) -> Result<Callers, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::field(
            "callers",
            "at least one [[callers]] entry is required (without one every call is refused)",
        ));
    }
    let mut callers = Vec::with_capacity(raw.len());
    for (i, raw_caller) in raw.into_iter().enumerate() {
        callers.push(caller(i, raw_caller, tracking_configured)?);
    }
    Callers::new(callers).map_err(|e| match e {
        CallersError::DuplicateName(name) => ConfigError::field(
            "callers",
            format!("caller name {name:?} is used more than once"),
        ),
        CallersError::DuplicateToken(first, second) => ConfigError::field(
            "callers",
            format!("callers {first:?} and {second:?} have the same token"),
        ),
    })
}

fn caller(i: usize, raw: RawCaller, tracking_configured: bool) -> Result<Caller, ConfigError> {
    let name = raw.name;
    let field = |f: &str| format!("callers[{i}].{f} (caller {name:?})");
    if name.is_empty() || name.chars().any(char::is_control) || name.chars().count() > 64 {
        return Err(ConfigError::field(
            format!("callers[{i}].name"),
            "must be 1 to 64 characters without control characters",
        ));
    }
    let token_hash = match (raw.token_sha256, raw.token_env) {
        (Some(hex_digits), None) => TokenHash::from_hex(&hex_digits).ok_or_else(|| {
            // Deliberately not echoed: a token pasted here by mistake must not reach a log.
            ConfigError::field(
                field("token_sha256"),
                "must be 64 hex digits (the SHA-256 of the token, e.g. from `sha256sum`)",
            )
        })?,
        (None, Some(var)) => {
            token_from_env(&var).map_err(|e| ConfigError::field(field("token_env"), e))?
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::field(
                format!("callers[{i}] (caller {name:?})"),
                "set only one of token_sha256 and token_env",
            ));
        }
        (None, None) => {
            return Err(ConfigError::field(
                format!("callers[{i}] (caller {name:?})"),
                "missing token (set token_sha256 or token_env)",
            ));
        }
    };

    let validity = |f: &str, secs: u32| {
        Validity::from_secs(u64::from(secs)).map_err(|_| {
            ConfigError::field(
                field(f),
                format!("{secs} is not between 1 and {MAX_VALIDITY_SECONDS} (90 days)"),
            )
        })
    };
    let max_validity = match raw.max_validity_seconds {
        Some(secs) => validity("max_validity_seconds", secs)?,
        None => Validity::MAX,
    };
    let default_validity = match raw.default_validity_seconds {
        Some(secs) => {
            let v = validity("default_validity_seconds", secs)?;
            if v > max_validity {
                return Err(ConfigError::field(
                    field("default_validity_seconds"),
                    format!(
                        "{secs} is more than max_validity_seconds ({})",
                        max_validity.as_secs()
                    ),
                ));
            }
            v
        }
        None => max_validity.min(
            Validity::from_secs(u64::from(DEFAULT_VALIDITY_SECONDS))
                .expect("the default validity is within VOD's limit"),
        ),
    };
    // An empty list would refuse every request (an absent class or sub-app counts as 0), which
    // is far more likely a mistake than an intent; `can_issue = false` says that plainly.
    for (f, list) in [
        ("allowed_class_ids", &raw.allowed_class_ids),
        ("allowed_sub_app_ids", &raw.allowed_sub_app_ids),
    ] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::field(
                field(f),
                "is empty, which would refuse every issuance; leave it out to allow any, or set can_issue = false",
            ));
        }
    }
    let can_issue = raw.can_issue.unwrap_or(true);
    let can_verify = raw.can_verify.unwrap_or(true);
    let track_uploads = raw.track_uploads.unwrap_or(false);
    // A caller that tracks its uploads will want to ask about them; one that does not has
    // none to ask about, so the default follows `track_uploads`.
    let can_track = raw.can_track.unwrap_or(track_uploads);
    if !can_issue && !can_verify && !can_track {
        return Err(ConfigError::field(
            format!("callers[{i}] (caller {name:?})"),
            "can_issue, can_verify and can_track are all false; remove the caller instead",
        ));
    }
    if (track_uploads || can_track) && !tracking_configured {
        let key = if track_uploads {
            "track_uploads"
        } else {
            "can_track"
        };
        return Err(ConfigError::field(
            field(key),
            "needs a [tracking] section (where upload records are stored)",
        ));
    }
    let issue_per_user_per_minute = match raw.issue_per_user_per_minute {
        None => None,
        Some(n) => Some(NonZeroU32::new(n).ok_or_else(|| {
            ConfigError::field(
                field("issue_per_user_per_minute"),
                "must be at least 1 (leave it out for no quota, or set can_issue = false)",
            )
        })?),
    };
    let policy = Policy {
        issue_per_user_per_minute,
        allowed_procedures: raw.allowed_procedures,
        allowed_class_ids: raw.allowed_class_ids,
        allowed_sub_app_ids: raw.allowed_sub_app_ids,
        max_validity,
        default_validity,
        force_one_time: raw.force_one_time.unwrap_or(false),
        can_issue,
        can_verify,
        track_uploads,
        can_track,
    };
    Ok(Caller::new(name, token_hash, policy))
}

/// Hashes the token in environment variable `var`; the plaintext is wiped right after.
fn token_from_env(var: &str) -> Result<TokenHash, String> {
    let mut token = std::env::var_os(var)
        .ok_or_else(|| format!("environment variable {var} is not set"))?
        .into_encoded_bytes();
    let result = if token.is_empty() {
        Err(format!("environment variable {var} is empty"))
    } else if !token.iter().all(u8::is_ascii_graphic) {
        Err(format!(
            "environment variable {var} must hold a token of visible ASCII characters (no spaces)"
        ))
    } else {
        Ok(TokenHash::of(&token))
    };
    token.zeroize();
    result
}

#[cfg(test)]
mod tests;
