//! Which VOD API reconciliation calls. Reconciliation belongs to `[tracking]`, not to PULL: a
//! PUSH-only deployment loses events too (three failed tries, a task flow that never
//! notifies), so it needs the API even without `[events.pull]`.
//!
//! In order: `[events.pull]`'s settings (one app, one set of credentials); else
//! `[tracking.reconcile_api]` (same keys as `[events.pull]`); else Tencent's endpoint with the
//! active `[[keys]]` entry (a VOD SecretId/SecretKey pair is a Tencent Cloud API key).

use std::path::Path;

use super::ConfigError;
use super::pull::{PullSettings, RawApi, api_section};
use super::tracking::TrackingSettings;
use crate::vod_api::{ApiCredential, ApiSettings, DEFAULT_ENDPOINT};

/// The table's name in errors and warnings.
const SECTION: &str = "tracking.reconcile_api";

/// `None`: reconciliation is off (no tracking, `reconcile_after_seconds = 0`, or no
/// credential, which adds a warning). A present `[tracking.reconcile_api]` is checked in
/// every case, so a mistake in it is refused at start rather than found when it is needed.
pub(super) fn reconcile_api(
    raw: Option<RawApi>,
    pull: Option<&PullSettings>,
    tracking: Option<&TrackingSettings>,
    base_dir: &Path,
    active_key: Option<&ApiCredential>,
    warnings: &mut Vec<String>,
) -> Result<Option<ApiSettings>, ConfigError> {
    let own = raw
        .map(|raw| api_section(raw, SECTION, base_dir, active_key))
        .transpose()?;
    if tracking.is_none_or(|t| t.reconcile_after.is_zero()) {
        return Ok(None);
    }
    if let Some(pull) = pull {
        if own.is_some() {
            warnings.push(format!(
                "[{SECTION}] is ignored: reconciliation uses the [events.pull] API settings"
            ));
        }
        return Ok(Some(pull.api.clone()));
    }
    if own.is_some() {
        return Ok(own);
    }
    match active_key {
        Some(credential) => Ok(Some(ApiSettings {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            region: String::new(),
            sub_app_id: 0,
            credential: credential.clone(),
        })),
        None => {
            warnings.push(format!(
                "reconciliation is off: no VOD API credential (set [{SECTION}] api_secret_id \
                 with api_secret_key_env or api_secret_key_file, or reconcile_after_seconds = 0)"
            ));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::Config;
    use super::*;
    use crate::config::StoreLocation;

    /// The warnings about reconciliation (the test files' modes earn one of their own).
    fn reconcile_warnings(config: &Config) -> Vec<&String> {
        config
            .warnings
            .iter()
            .filter(|w| w.contains("reconcil"))
            .collect()
    }

    const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// Parses a PUSH-only configuration (one key, one caller, `[tracking]` with
    /// `tracking_keys`, `[events] listen`) followed by `sections`, in a directory that also
    /// holds an API key file `api-key`.
    fn parse(tracking_keys: &str, sections: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [
            ("key", "signing-secret"),
            ("api-key", "api-secret"),
            ("path-token", "reconcile-test-path-token-0123"),
        ] {
            let mut f = std::fs::File::create(dir.path().join(name)).unwrap();
            writeln!(f, "{value}").unwrap();
        }
        let text = format!(
            "[[keys]]\nsecret_id = \"AKIDsigning\"\nsecret_key_file = \"key\"\n\n\
             [[callers]]\nname = \"bff\"\ntoken_sha256 = \"{TOKEN_HASH}\"\n\n\
             [tracking]\nstore = \"sqlite:uploads.db\"\n{tracking_keys}\n\n\
             [events]\nlisten = \"127.0.0.1:0\"\npath_token_file = \"path-token\"\n\n{sections}"
        );
        Config::from_toml_str(&text, dir.path()).map_err(|e| e.to_string())
    }

    #[test]
    fn push_only_reconciles_at_tencent_with_the_active_key() {
        let config = parse("", "").unwrap();
        assert!(config.pull.is_none());
        let api = config
            .reconcile_api
            .as_ref()
            .expect("reconciliation is on by default");
        assert_eq!(api.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(api.region, "");
        assert_eq!(api.sub_app_id, 0);
        assert_eq!(api.credential.secret_id().as_str(), "AKIDsigning");
        assert!(
            reconcile_warnings(&config).is_empty(),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn its_own_section_sets_endpoint_and_credentials() {
        let config = parse(
            "",
            "[tracking.reconcile_api]\nendpoint = \"http://127.0.0.1:9100\"\n\
             region = \"ap-guangzhou\"\nsub_app_id = 1500000001\n\
             api_secret_id = \"AKIDapi\"\napi_secret_key_file = \"api-key\"\n",
        )
        .unwrap();
        let api = config.reconcile_api.as_ref().unwrap();
        assert_eq!(api.endpoint, "http://127.0.0.1:9100");
        assert_eq!(api.region, "ap-guangzhou");
        assert_eq!(api.sub_app_id, 1_500_000_001);
        assert_eq!(api.credential.secret_id().as_str(), "AKIDapi");
        let shown = format!("{api:?}");
        assert!(!shown.contains("api-secret") && !shown.contains("signing-secret"));
    }

    #[test]
    fn its_own_section_without_credentials_uses_the_active_key() {
        let config = parse(
            "",
            "[tracking.reconcile_api]\nendpoint = \"http://127.0.0.1:9100\"\n",
        )
        .unwrap();
        let api = config.reconcile_api.as_ref().unwrap();
        assert_eq!(api.endpoint, "http://127.0.0.1:9100");
        assert_eq!(api.credential.secret_id().as_str(), "AKIDsigning");
    }

    #[test]
    fn events_pull_wins_over_its_own_section_with_a_warning() {
        let config = parse(
            "",
            "[events.pull]\nendpoint = \"http://127.0.0.1:9200\"\nsub_app_id = 7\n\n\
             [tracking.reconcile_api]\nendpoint = \"http://127.0.0.1:9100\"\n",
        )
        .unwrap();
        let api = config.reconcile_api.as_ref().unwrap();
        assert_eq!(api.endpoint, "http://127.0.0.1:9200");
        assert_eq!(api.sub_app_id, 7);
        let warnings = reconcile_warnings(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("[tracking.reconcile_api] is ignored"),
            "{warnings:?}"
        );
        // Without its own section, no warning.
        let config = parse("", "[events.pull]\nendpoint = \"http://127.0.0.1:9200\"\n").unwrap();
        assert_eq!(
            config.reconcile_api.as_ref().unwrap().endpoint,
            "http://127.0.0.1:9200"
        );
        assert!(
            reconcile_warnings(&config).is_empty(),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn reconcile_after_zero_means_no_api_at_all() {
        let config = parse("reconcile_after_seconds = 0", "").unwrap();
        assert!(config.reconcile_api.is_none());
        let config = parse(
            "reconcile_after_seconds = 0",
            "[events.pull]\n\n[tracking.reconcile_api]\nendpoint = \"http://127.0.0.1:9100\"\n",
        )
        .unwrap();
        assert!(config.pull.is_some());
        assert!(config.reconcile_api.is_none());
    }

    #[test]
    fn bad_keys_in_its_section_are_refused_with_the_field_named() {
        for (section, field) in [
            ("endpoint = \"ftp://x\"", "tracking.reconcile_api.endpoint"),
            (
                "endpoint = \"https://x/v1\"",
                "tracking.reconcile_api.endpoint",
            ),
            ("region = \"ap guangzhou\"", "tracking.reconcile_api.region"),
            ("sub_app_id = -1", "sub_app_id"),
            (
                "api_secret_id = \"AKIDapi\"",
                "tracking.reconcile_api.api_secret_id",
            ),
            (
                "api_secret_key_file = \"api-key\"",
                "tracking.reconcile_api.api_secret_id",
            ),
            (
                "api_secret_id = \"AKIDapi\"\napi_secret_key_file = \"missing\"",
                "tracking.reconcile_api.api_secret_key_file",
            ),
            (
                "api_secret_id = \"AKIDapi\"\napi_secret_key_file = \"api-key\"\n\
                 api_secret_key_env = \"VOD_API_SECRET_KEY\"",
                "tracking.reconcile_api.api_secret_key",
            ),
            ("unknown = 1", "unknown"),
        ] {
            let err =
                parse("", &format!("[tracking.reconcile_api]\n{section}\n")).expect_err(section);
            assert!(err.contains(field), "{section}: {err}");
            assert!(!err.contains("api-secret"), "{err}");
            // Refused even where it would not be used.
            let err = parse(
                "reconcile_after_seconds = 0",
                &format!("[tracking.reconcile_api]\n{section}\n"),
            )
            .expect_err(section);
            assert!(err.contains(field), "{section}: {err}");
        }
    }

    #[test]
    fn serve_dev_does_not_reconcile() {
        // Its key is unknown to VOD: every DescribeTaskDetail at Tencent would be refused.
        let dev = Config::development();
        assert!(dev.reconcile_api.is_none());
        assert!(dev.tracking.is_some_and(|t| t.reconcile_after.is_zero()));
    }

    #[test]
    fn without_any_credential_it_is_off_with_one_warning() {
        let tracking = TrackingSettings::new(StoreLocation::Sqlite("u.db".into()));
        let mut warnings = Vec::new();
        let api = reconcile_api(
            None,
            None,
            Some(&tracking),
            Path::new("."),
            None,
            &mut warnings,
        )
        .unwrap();
        assert!(api.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("reconciliation is off"),
            "{warnings:?}"
        );
        // Off by configuration, or nothing tracked: nothing to warn about.
        let mut warnings = Vec::new();
        let mut off = tracking.clone();
        off.reconcile_after = std::time::Duration::ZERO;
        assert!(
            reconcile_api(None, None, Some(&off), Path::new("."), None, &mut warnings)
                .unwrap()
                .is_none()
        );
        assert!(
            reconcile_api(None, None, None, Path::new("."), None, &mut warnings)
                .unwrap()
                .is_none()
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
