//! Where a SecretKey comes from on the command line: an environment variable or a file, never
//! an argument (arguments are visible to every user through `ps` and shell history).

use std::path::PathBuf;

use clap::Args;

use crate::config::SecretKeySource;
use crate::signature::{SecretId, SigningKey};

/// `--secret-id` plus exactly one of `--secret-key-env` / `--secret-key-file`.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct KeyArgs {
    /// The SecretId of the API key (not secret; it is embedded in every signature).
    #[arg(long, value_name = "ID")]
    pub secret_id: String,
    /// Name of the environment variable holding the SecretKey.
    #[arg(
        long,
        value_name = "VAR",
        required_unless_present = "secret_key_file",
        conflicts_with = "secret_key_file"
    )]
    pub secret_key_env: Option<String>,
    /// File holding the SecretKey (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn source(&self) -> SecretKeySource {
        match (&self.secret_key_env, &self.secret_key_file) {
            (Some(var), _) => SecretKeySource::Env(var.clone()),
            (None, Some(path)) => SecretKeySource::File(path.clone()),
            // clap's argument group guarantees one of the two.
            (None, None) => unreachable!("clap requires --secret-key-env or --secret-key-file"),
        }
    }

    /// The signing key these arguments name.
    pub fn signing_key(&self) -> Result<SigningKey, String> {
        let secret_id = SecretId::new(&self.secret_id).map_err(|e| format!("--secret-id: {e}"))?;
        let secret_key = self.source().load()?;
        Ok(SigningKey::new(secret_id, &secret_key))
    }
}
