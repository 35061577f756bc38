//! Reading a secret named by a `*_env` or `*_file` key: the value never enters an error
//! message, and every copy this module makes is wiped when dropped.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::ConfigError;

/// Where a secret setting comes from; built from the two mutually exclusive keys.
pub(super) enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// `section`/`name` name the keys in errors (`events`, `path_token` → `path_token_env`).
    /// `Ok(None)` when neither key is set.
    pub(super) fn from_keys(
        section: &str,
        name: &str,
        env: Option<String>,
        file: Option<PathBuf>,
        base_dir: &Path,
    ) -> Result<Option<(SecretSource, String)>, ConfigError> {
        match (env, file) {
            (None, None) => Ok(None),
            (Some(var), None) => Ok(Some((
                SecretSource::Env(var),
                format!("{section}.{name}_env"),
            ))),
            (None, Some(path)) => Ok(Some((
                SecretSource::File(base_dir.join(path)),
                format!("{section}.{name}_file"),
            ))),
            (Some(_), Some(_)) => Err(ConfigError::field(
                format!("{section}.{name}"),
                format!("set only one of {name}_env and {name}_file"),
            )),
        }
    }

    /// The value, without the trailing line break files and `echo` add. Errors name the
    /// variable or file only.
    pub(super) fn read(&self) -> Result<Zeroizing<String>, String> {
        let mut bytes = Zeroizing::new(match self {
            SecretSource::Env(var) => std::env::var_os(var)
                .ok_or_else(|| format!("environment variable {var} is not set"))?
                .into_encoded_bytes(),
            SecretSource::File(path) => {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
        });
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Zeroizing::new(text.to_owned())),
            Err(_) => Err(format!("{} is not UTF-8 text", self.describe())),
        }
    }

    fn describe(&self) -> String {
        match self {
            SecretSource::Env(var) => format!("environment variable {var}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }
}
