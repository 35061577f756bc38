//! Where a SecretKey is read from: an environment variable or a file, never a command-line
//! argument or the configuration text (both end up in places other users can read).

use std::path::PathBuf;

use crate::signature::SecretKey;

/// A place a SecretKey is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeySource {
    Env(String),
    File(PathBuf),
}

impl SecretKeySource {
    /// Reads the key. Errors name the variable or file, never the value.
    pub fn load(&self) -> Result<SecretKey, String> {
        let bytes = match self {
            SecretKeySource::Env(var) => match std::env::var_os(var) {
                Some(v) => v.into_encoded_bytes(),
                None => return Err(format!("environment variable {var} is not set")),
            },
            SecretKeySource::File(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read SecretKey file {}: {e}", path.display()))?,
        };
        SecretKey::new(bytes).map_err(|e| match self {
            SecretKeySource::Env(var) => format!("environment variable {var}: {e}"),
            SecretKeySource::File(path) => format!("SecretKey file {}: {e}", path.display()),
        })
    }
}
