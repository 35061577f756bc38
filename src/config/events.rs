//! `[events]`: the HTTP listener VOD posts its event notifications to.
//!
//! ```toml
//! [events]
//! listen = "127.0.0.1:8080"                  # absent: no listener
//! path_token_env = "VOD_EVENTS_PATH_TOKEN"   # or path_token_file; VOD posts to /vod/events/<token>
//! sign_key_env = "VOD_EVENTS_SIGN_KEY"       # or sign_key_file; ModifyEventConfig's SignKey
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ConfigError;
use super::secret_value::SecretSource;
use crate::events::SignKey;

/// Shortest path token accepted: 16 characters of the URL-safe alphabet carry over 90 bits, so
/// the URL cannot be guessed even without a SignKey.
pub(super) const MIN_PATH_TOKEN_CHARS: usize = 16;
/// Longest path token accepted; URLs beyond this start meeting proxy limits.
pub(super) const MAX_PATH_TOKEN_CHARS: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    listen: Option<String>,
    path_token_env: Option<String>,
    path_token_file: Option<PathBuf>,
    sign_key_env: Option<String>,
    sign_key_file: Option<PathBuf>,
    /// `[events.pull]`, checked apart by `super::pull` (taken out before [`events`] runs).
    pub(super) pull: Option<super::pull::RawApi>,
}

/// The secret last segment of the callback URL (`/vod/events/<token>`). Compared in constant
/// time; never printed, logged or echoed in an error; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PathToken(String);

impl PathToken {
    /// `MIN_PATH_TOKEN_CHARS..=MAX_PATH_TOKEN_CHARS` characters of `A-Z a-z 0-9 - _ . ~` (the
    /// characters a URL path carries unescaped, so what VOD sends is what is compared).
    pub fn new(token: String) -> Result<PathToken, String> {
        let token = PathToken(token);
        let len = token.0.chars().count();
        if !(MIN_PATH_TOKEN_CHARS..=MAX_PATH_TOKEN_CHARS).contains(&len) {
            return Err(format!(
                "must be {MIN_PATH_TOKEN_CHARS} to {MAX_PATH_TOKEN_CHARS} characters, got {len}"
            ));
        }
        if !token
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            return Err("may hold only letters, digits and - _ . ~".to_owned());
        }
        Ok(token)
    }

    /// Whether `candidate` is this token. The time taken depends on the lengths only, not on
    /// where the two first differ.
    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }

    /// The value, for building the URL an operator configures at VOD (and the dev banner).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PathToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PathToken(<redacted>)")
    }
}

/// A checked `[events]` section.
#[derive(Clone, Debug)]
pub struct EventsSettings {
    /// Where the PUSH receiver listens; `None`: no listener (events may still come by PULL).
    pub listen: Option<SocketAddr>,
    /// Required when `listen` is set.
    pub path_token: Option<PathToken>,
    /// `None`: callbacks are not authenticated beyond the path token (start-up warns).
    pub sign_key: Option<SignKey>,
}

pub(super) fn events(
    raw: Option<RawEvents>,
    base_dir: &Path,
) -> Result<Option<EventsSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let listen = match raw.listen.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<SocketAddr>()
                .map_err(|e| ConfigError::field("events.listen", format!("{text:?}: {e}")))?,
        ),
    };
    let path_token = match SecretSource::from_keys(
        "events",
        "path_token",
        raw.path_token_env,
        raw.path_token_file,
        base_dir,
    )? {
        None if listen.is_some() => {
            return Err(ConfigError::field(
                "events.path_token",
                "the listener needs a path token (set path_token_env or path_token_file)",
            ));
        }
        None => None,
        Some((source, field)) => {
            let text = source.read().map_err(|e| ConfigError::field(&field, e))?;
            Some(PathToken::new(text.to_string()).map_err(|e| ConfigError::field(&field, e))?)
        }
    };
    let sign_key = match SecretSource::from_keys(
        "events",
        "sign_key",
        raw.sign_key_env,
        raw.sign_key_file,
        base_dir,
    )? {
        None => None,
        Some((source, field)) => {
            let text = source.read().map_err(|e| ConfigError::field(&field, e))?;
            Some(SignKey::new(text.to_string()).map_err(|e| ConfigError::field(&field, e))?)
        }
    };
    Ok(Some(EventsSettings {
        listen,
        path_token,
        sign_key,
    }))
}
