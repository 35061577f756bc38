//! Secrets of the signing core: the VOD SecretKey.
//!
//! A SecretKey must never reach a log line, an error message or `Debug` output, and should not
//! outlive its use in memory. The type below has no way to print its value and wipes it on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A Tencent Cloud API SecretKey (the HMAC key of a VOD upload signature).
///
/// `Debug` prints a placeholder; there is no `Display`; the bytes are zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Wraps a SecretKey; trailing line breaks (from files and `echo`) are removed because they
    /// are never part of a Tencent key and silently produce signatures VOD rejects.
    pub fn new(mut bytes: Vec<u8>) -> Result<Self, SecretKeyError> {
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            bytes.zeroize();
            return Err(SecretKeyError::Empty);
        }
        Ok(SecretKey(bytes))
    }

    /// Convenience for tests and configuration code that already holds a `String`.
    pub fn from_string(value: String) -> Result<Self, SecretKeyError> {
        Self::new(value.into_bytes())
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Why a SecretKey was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    #[error("the SecretKey is empty")]
    Empty,
}
