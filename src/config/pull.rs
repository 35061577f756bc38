//! `[events.pull]`: VOD's reliable-callback queue, read with the VOD API (issue 13).
//!
//! ```toml
//! [events.pull]
//! endpoint = "https://vod.tencentcloudapi.com"   # or "http://127.0.0.1:PORT" for a stand-in
//! region = ""                                    # X-TC-Region when set
//! sub_app_id = 0                                 # SubAppId when non-zero
//! # API credentials: the active [[keys]] entry unless these are set
//! api_secret_id = "AKID..."
//! api_secret_key_env = "VOD_API_SECRET_KEY"      # or api_secret_key_file
//! ```
//!
//! `[tracking.reconcile_api]` takes the same keys, for reconciliation without PULL, so both
//! are read by [`api_section`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use super::secret_value::SecretSource;
use crate::signature::{SecretId, SecretKey};
use crate::vod_api::{ApiCredential, ApiSettings, DEFAULT_ENDPOINT, check_endpoint};

/// A table naming a VOD API endpoint and the credentials to call it with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    endpoint: Option<String>,
    region: Option<String>,
    sub_app_id: Option<u64>,
    api_secret_id: Option<String>,
    api_secret_key_env: Option<String>,
    api_secret_key_file: Option<PathBuf>,
}

/// A checked `[events.pull]` section: where the queue is and who reads it.
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub api: ApiSettings,
}

/// `active_key`: the signing key's pair, used when the section names no credentials of its
/// own (a VOD SecretId/SecretKey is a Tencent Cloud API key).
pub(super) fn pull(
    raw: Option<RawApi>,
    base_dir: &Path,
    active_key: Option<&ApiCredential>,
) -> Result<Option<PullSettings>, ConfigError> {
    raw.map(|raw| {
        api_section(raw, "events.pull", base_dir, active_key).map(|api| PullSettings { api })
    })
    .transpose()
}

/// Checks one API table; `section` (`events.pull`, `tracking.reconcile_api`) prefixes the
/// field names in errors.
pub(super) fn api_section(
    raw: RawApi,
    section: &str,
    base_dir: &Path,
    active_key: Option<&ApiCredential>,
) -> Result<ApiSettings, ConfigError> {
    let field = |name: &str| format!("{section}.{name}");
    let endpoint = raw.endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    check_endpoint(&endpoint).map_err(|reason| ConfigError::field(field("endpoint"), reason))?;
    let region = raw.region.unwrap_or_default();
    if !region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ConfigError::field(
            field("region"),
            "must be a region name such as ap-guangzhou (letters, digits and -)",
        ));
    }
    let source = SecretSource::from_keys(
        section,
        "api_secret_key",
        raw.api_secret_key_env,
        raw.api_secret_key_file,
        base_dir,
    )?;
    let credential = match (raw.api_secret_id, source) {
        (Some(id), Some((source, key_field))) => {
            let secret_id =
                SecretId::new(&id).map_err(|e| ConfigError::field(field("api_secret_id"), e))?;
            let key = source
                .read()
                .map_err(|e| ConfigError::field(key_field.clone(), e))?;
            let key = SecretKey::new(key.as_bytes().to_vec())
                .map_err(|e| ConfigError::field(key_field, e))?;
            ApiCredential::new(secret_id, key)
        }
        (None, None) => active_key.cloned().ok_or_else(|| {
            ConfigError::field(
                section,
                "no API credentials: set api_secret_id with api_secret_key_env or api_secret_key_file",
            )
        })?,
        (Some(_), None) => {
            return Err(ConfigError::field(
                field("api_secret_id"),
                "needs api_secret_key_env or api_secret_key_file",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::field(
                field("api_secret_id"),
                "is required with api_secret_key_env or api_secret_key_file",
            ));
        }
    };
    Ok(ApiSettings {
        endpoint,
        region,
        sub_app_id: raw.sub_app_id.unwrap_or(0),
        credential,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::Config;

    const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// Parses `sections` after one key (file `key`), a caller and `[tracking]`, in a
    /// directory that also holds an API key file `api-key`.
    fn parse(sections: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [("key", "signing-secret"), ("api-key", "api-secret")] {
            let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
            writeln!(f, "{value}").unwrap();
        }
        let text = format!(
            "[[keys]]\nsecret_id = \"AKIDsigning\"\nsecret_key_file = \"key\"\n\n\
             [[callers]]\nname = \"bff\"\ntoken_sha256 = \"{TOKEN_HASH}\"\n\n\
             [tracking]\nstore = \"sqlite:uploads.db\"\n\n{sections}"
        );
        Config::from_toml_str(&text, dir.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_to_tencents_endpoint_and_the_active_key() {
        let config = parse("[events.pull]\n").unwrap();
        let pull = config.pull.expect("[events.pull] is set");
        assert_eq!(pull.api.endpoint, "https://vod.tencentcloudapi.com");
        assert_eq!(pull.api.region, "");
        assert_eq!(pull.api.sub_app_id, 0);
        assert_eq!(pull.api.credential.secret_id().as_str(), "AKIDsigning");
        assert!(config.events.is_some_and(|e| e.listen.is_none()));
    }

    #[test]
    fn its_own_credentials_override_the_active_key() {
        let config = parse(
            "[events.pull]\nendpoint = \"http://127.0.0.1:9100\"\nregion = \"ap-guangzhou\"\n\
             sub_app_id = 1500000001\napi_secret_id = \"AKIDapi\"\napi_secret_key_file = \"api-key\"\n",
        )
        .unwrap();
        let api = config.pull.unwrap().api;
        assert_eq!(api.endpoint, "http://127.0.0.1:9100");
        assert_eq!(api.region, "ap-guangzhou");
        assert_eq!(api.sub_app_id, 1_500_000_001);
        assert_eq!(api.credential.secret_id().as_str(), "AKIDapi");
        let shown = format!("{api:?}");
        assert!(!shown.contains("api-secret") && !shown.contains("signing-secret"));
    }

    #[test]
    fn bad_sections_are_refused_with_the_field_named() {
        for (section, field) in [
            ("endpoint = \"ftp://x\"", "events.pull.endpoint"),
            ("endpoint = \"https://x/v1\"", "events.pull.endpoint"),
            ("region = \"ap guangzhou\"", "events.pull.region"),
            ("api_secret_id = \"AKIDapi\"", "events.pull.api_secret_id"),
            (
                "api_secret_key_file = \"api-key\"",
                "events.pull.api_secret_id",
            ),
            (
                "api_secret_id = \"AKIDapi\"\napi_secret_key_file = \"missing\"",
                "api_secret_key_file",
            ),
            ("unknown = 1", "unknown"),
        ] {
            let err = parse(&format!("[events.pull]\n{section}\n")).expect_err(section);
            assert!(err.contains(field), "{section}: {err}");
            assert!(!err.contains("api-secret"), "{err}");
        }
    }

    #[test]
    fn reconcile_after_zero_turns_reconciliation_off() {
        let config = parse("").unwrap();
        assert!(config.pull.is_none());
        let default = parse("[events.pull]\n").unwrap();
        assert_eq!(
            default.tracking.unwrap().reconcile_after.as_secs(),
            900,
            "the default"
        );
        // `[tracking]` is already in the base text, so the key is set through a fresh parse.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "k").unwrap();
        let text = format!(
            "[[keys]]\nsecret_id = \"AKIDsigning\"\nsecret_key_file = \"key\"\n\n\
             [[callers]]\nname = \"bff\"\ntoken_sha256 = \"{TOKEN_HASH}\"\n\n\
             [tracking]\nstore = \"sqlite:uploads.db\"\nreconcile_after_seconds = 0\n"
        );
        let config = Config::from_toml_str(&text, dir.path()).unwrap();
        assert!(config.tracking.unwrap().reconcile_after.is_zero());
    }
}
