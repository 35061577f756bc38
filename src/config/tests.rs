use std::io::Write;

use super::tracking::DEFAULT_RETENTION_DAYS;
use super::*;

const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_HASH: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

/// A directory holding a key file `key` with a fake secret, for configurations to point at.
fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("key")).unwrap();
    writeln!(f, "not-a-real-secret-key").unwrap();
    dir
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let dir = key_dir();
    Config::from_toml_str(text, dir.path())
}

fn minimal(extra_caller_lines: &str) -> String {
    format!(
        r#"
[[keys]]
secret_id = "AKIDtest"
secret_key_file = "key"

[[callers]]
name = "bff"
token_sha256 = "{TOKEN_HASH}"
{extra_caller_lines}
"#
    )
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let config = parse(&minimal("")).unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.clock_skew_seconds, DEFAULT_CLOCK_SKEW_SECONDS);
    assert_eq!(config.keys.active().secret_id().as_str(), "AKIDtest");
    let caller = config.callers.iter().next().unwrap();
    assert_eq!(caller.name(), "bff");
    let policy = caller.policy();
    assert_eq!(policy.default_validity.as_secs(), DEFAULT_VALIDITY_SECONDS);
    assert_eq!(policy.max_validity, Validity::MAX);
    assert!(policy.can_issue && policy.can_verify && !policy.force_one_time);
    assert!(
        config.callers.authenticate(Some(b"Bearer test")).is_ok(),
        "TOKEN_HASH is sha256(\"test\")"
    );
}

#[test]
fn every_policy_field_is_read() {
    let config = parse(&minimal(
        r#"allowed_procedures = ["review"]
allowed_class_ids = [1, 2]
allowed_sub_app_ids = [0]
max_validity_seconds = 600
default_validity_seconds = 60
force_one_time = true
can_verify = false"#,
    ))
    .unwrap();
    let policy = config.callers.iter().next().unwrap().policy().clone();
    assert_eq!(policy.allowed_procedures, Some(vec!["review".to_owned()]));
    assert_eq!(policy.allowed_class_ids, Some(vec![1, 2]));
    assert_eq!(policy.allowed_sub_app_ids, Some(vec![0]));
    assert_eq!(policy.max_validity.as_secs(), 600);
    assert_eq!(policy.default_validity.as_secs(), 60);
    assert!(policy.force_one_time && policy.can_issue && !policy.can_verify);
}

#[test]
fn default_validity_is_capped_by_a_smaller_max() {
    let config = parse(&minimal("max_validity_seconds = 120")).unwrap();
    let policy = config.callers.iter().next().unwrap().policy().clone();
    assert_eq!(policy.default_validity.as_secs(), 120);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let e = error(&format!("lissen = \"0.0.0.0:1\"\n{}", minimal("")));
    assert!(e.contains("lissen"), "{e}");
    let e = error(&minimal("max_valdity_seconds = 5"));
    assert!(e.contains("max_valdity_seconds"), "{e}");
    let e = error(&minimal("").replace("active", "x").replace(
        "secret_key_file = \"key\"",
        "secret_key_file = \"key\"\nsecret_key = \"hunter2\"",
    ));
    assert!(e.contains("secret_key"), "{e}");
    assert!(!e.contains("hunter2"), "a value was echoed: {e}");
}

#[test]
fn wrong_types_name_the_line_and_key_but_not_the_value() {
    let e = parse(&minimal("max_validity_seconds = \"s3cr3t\"")).unwrap_err();
    assert_eq!(e.field_name(), Some("max_validity_seconds"), "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

#[test]
fn a_missing_secret_is_refused_naming_the_key() {
    let e = error(&minimal("").replace("secret_key_file = \"key\"\n", ""));
    assert!(e.contains("keys[0]") && e.contains("missing secret"), "{e}");
    let e = error(&minimal("").replace("\"key\"", "\"no-such-file\""));
    assert!(
        e.contains("keys[0].secret_key_file") && e.contains("no-such-file"),
        "{e}"
    );
    let e = error(&minimal("").replace(
        "secret_key_file = \"key\"",
        "secret_key_env = \"VOD_SIGNER_TEST_SURELY_UNSET_VARIABLE\"",
    ));
    assert!(
        e.contains("keys[0].secret_key_env") && e.contains("VOD_SIGNER_TEST_SURELY_UNSET_VARIABLE"),
        "{e}"
    );
    let e = error(&minimal("").replace(
        "secret_key_file = \"key\"",
        "secret_key_file = \"key\"\nsecret_key_env = \"X\"",
    ));
    assert!(e.contains("only one of"), "{e}");
}

#[test]
fn an_empty_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "\n").unwrap();
    let e = Config::from_toml_str(&minimal(""), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("keys[0].secret_key_file") && e.contains("empty"),
        "{e}"
    );
}

#[test]
fn active_keys_must_be_exactly_one_when_there_are_several() {
    let two_keys = |a: &str, b: &str| {
        format!(
            r#"
[[keys]]
secret_id = "AKIDone"
secret_key_file = "key"
{a}
[[keys]]
secret_id = "AKIDtwo"
secret_key_file = "key"
{b}
[[callers]]
name = "bff"
token_sha256 = "{TOKEN_HASH}"
"#
        )
    };
    let e = error(&two_keys("", ""));
    assert!(e.contains("keys") && e.contains("found 0"), "{e}");
    let e = error(&two_keys("active = true", "active = true"));
    assert!(e.contains("found 2"), "{e}");
    let config = parse(&two_keys("active = false", "active = true")).unwrap();
    assert_eq!(config.keys.active().secret_id().as_str(), "AKIDtwo");
    let e = error(&two_keys("active = true", "").replace("AKIDtwo", "AKIDone"));
    assert!(e.contains("more than once"), "{e}");
    // A lone key that is switched off leaves nothing to sign with.
    let e = error(&minimal("").replace(
        "secret_key_file = \"key\"",
        "secret_key_file = \"key\"\nactive = false",
    ));
    assert!(e.contains("found 0"), "{e}");
}

#[test]
fn caller_problems_name_the_caller_and_field() {
    let second = |lines: &str| format!("{}\n[[callers]]\nname = \"app\"\n{lines}\n", minimal(""));
    let e = error(&second(&format!("token_sha256 = \"{TOKEN_HASH}\"")));
    assert!(e.contains("same token"), "{e}");
    let e =
        error(&second(&format!("token_sha256 = \"{OTHER_HASH}\"")).replace("\"app\"", "\"bff\""));
    assert!(e.contains("\"bff\"") && e.contains("more than once"), "{e}");
    let e = error(&second("token_sha256 = \"the-plain-token\""));
    assert!(
        e.contains("callers[1].token_sha256") && e.contains("\"app\""),
        "{e}"
    );
    assert!(!e.contains("the-plain-token"), "{e}");
    let e = error(&second(""));
    assert!(
        e.contains("callers[1]") && e.contains("missing token"),
        "{e}"
    );
    let e = error(&second(
        "token_env = \"VOD_SIGNER_TEST_SURELY_UNSET_VARIABLE\"",
    ));
    assert!(e.contains("callers[1].token_env"), "{e}");
}

#[test]
fn validity_limits_are_checked() {
    let e = error(&minimal("max_validity_seconds = 7776001"));
    assert!(e.contains("callers[0].max_validity_seconds"), "{e}");
    let e = error(&minimal("default_validity_seconds = 0"));
    assert!(e.contains("callers[0].default_validity_seconds"), "{e}");
    let e = error(&minimal(
        "max_validity_seconds = 60\ndefault_validity_seconds = 61",
    ));
    assert!(
        e.contains("callers[0].default_validity_seconds") && e.contains("max_validity_seconds"),
        "{e}"
    );
}

#[test]
fn useless_callers_and_lists_are_refused() {
    let e = error(&minimal("can_issue = false\ncan_verify = false"));
    assert!(e.contains("callers[0]"), "{e}");
    let e = error(&minimal("allowed_class_ids = []"));
    assert!(e.contains("callers[0].allowed_class_ids"), "{e}");
    // An empty procedure list is meaningful: no task flow may be started.
    assert!(parse(&minimal("allowed_procedures = []")).is_ok());
}

#[test]
fn at_least_one_key_and_caller() {
    let e = error(&format!(
        "[[callers]]\nname = \"a\"\ntoken_sha256 = \"{TOKEN_HASH}\""
    ));
    assert!(e.starts_with("keys:"), "{e}");
    let e = error("[[keys]]\nsecret_id = \"AKID\"\nsecret_key_file = \"key\"");
    assert!(e.starts_with("callers:"), "{e}");
}

#[test]
fn listen_and_skew_are_checked() {
    let e = error(&format!("listen = \"localhost\"\n{}", minimal("")));
    assert!(e.starts_with("listen:"), "{e}");
    let e = error(&format!("clock_skew_seconds = 86401\n{}", minimal("")));
    assert!(e.starts_with("clock_skew_seconds:"), "{e}");
    let config = parse(&format!(
        "listen = \"0.0.0.0:7000\"\nclock_skew_seconds = 5\n{}",
        minimal("")
    ))
    .unwrap();
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.clock_skew_seconds, 5);
}

#[test]
fn load_resolves_relative_paths_from_the_file() {
    let dir = key_dir();
    let path = dir.path().join("signer.toml");
    std::fs::write(&path, minimal("")).unwrap();
    assert!(Config::load(&path).is_ok());
    let e = Config::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
}

#[test]
fn development_config_is_marked_and_usable() {
    let config = Config::development();
    assert!(config.development);
    assert_eq!(config.keys.active().secret_id().as_str(), DEV_SECRET_ID);
    let header = format!("Bearer {DEV_TOKEN}");
    let caller = config
        .callers
        .authenticate(Some(header.as_bytes()))
        .unwrap();
    assert_eq!(caller.name(), DEV_CALLER);
    assert!(config.listen.ip().is_loopback());
}

#[test]
fn debug_output_holds_no_secret() {
    let config = parse(&minimal("")).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("not-a-real-secret-key"), "{debug}");
    assert!(!debug.contains(TOKEN_HASH), "{debug}");
}

/// `minimal` with `[tracking]`/`[events]` sections and extra caller lines, parsed with the
/// receiver's secrets in files of the same directory.
fn parse_tracking(sections: &str, caller_lines: &str) -> Result<Config, ConfigError> {
    let dir = key_dir();
    std::fs::write(
        dir.path().join("path-token"),
        "a-path-token-of-enough-length\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("sign-key"), "MySignKey1\n").unwrap();
    std::fs::write(dir.path().join("short-token"), "tooshort").unwrap();
    std::fs::write(dir.path().join("bad-sign-key"), "not alphanumeric!").unwrap();
    let text = format!("{sections}\n{}", minimal(caller_lines));
    Config::from_toml_str(&text, dir.path())
}

#[test]
fn tracking_and_events_are_read_with_relative_paths_and_defaults() {
    let config = parse_tracking(
        r#"
[tracking]
store = "sqlite:uploads.db"

[events]
listen = "127.0.0.1:8080"
path_token_file = "path-token"
sign_key_file = "sign-key"
"#,
        "track_uploads = true",
    )
    .unwrap();
    let tracking = config.tracking.as_ref().unwrap();
    match &tracking.store {
        StoreLocation::Sqlite(path) => {
            assert!(
                path.is_absolute() && path.ends_with("uploads.db"),
                "{path:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        tracking.retention.as_secs(),
        u64::from(DEFAULT_RETENTION_DAYS) * 86_400
    );
    let events = config.events.as_ref().unwrap();
    assert_eq!(events.listen.unwrap().to_string(), "127.0.0.1:8080");
    assert!(
        events
            .path_token
            .as_ref()
            .unwrap()
            .matches("a-path-token-of-enough-length")
    );
    assert!(
        !events
            .path_token
            .as_ref()
            .unwrap()
            .matches("a-path-token-of-enough-lengtH")
    );
    assert!(events.sign_key.is_some());
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("a-path-token") && !shown.contains("MySignKey1"),
        "{shown}"
    );

    let caller = config.callers.iter().next().unwrap();
    assert!(caller.policy().track_uploads && caller.policy().can_track);
}

#[test]
fn can_track_defaults_to_track_uploads_and_can_be_set_alone() {
    let tracking = "[tracking]\nstore = \"postgres://vod@db:5432/vod\"\nretention_days = 7";
    let config = parse_tracking(tracking, "").unwrap();
    let policy = config.callers.iter().next().unwrap().policy().clone();
    assert!(!policy.track_uploads && !policy.can_track);
    assert_eq!(config.tracking.unwrap().retention.as_secs(), 7 * 86_400);

    let config = parse_tracking(tracking, "track_uploads = true\ncan_track = false").unwrap();
    let policy = config.callers.iter().next().unwrap().policy().clone();
    assert!(policy.track_uploads && !policy.can_track);

    let config = parse_tracking(
        tracking,
        "can_track = true\ncan_issue = false\ncan_verify = false",
    )
    .unwrap();
    assert!(config.callers.iter().next().unwrap().policy().can_track);
}

#[test]
fn tracking_settings_are_refused_with_the_field_named() {
    let cases = [
        ("", "track_uploads = true", "callers[0].track_uploads"),
        ("", "can_track = true", "callers[0].can_track"),
        ("[events]\npath_token_file = \"path-token\"", "", "events"),
        ("[tracking]\nstore = \"mysql://x\"", "", "tracking.store"),
        ("[tracking]\nstore = \"sqlite:\"", "", "tracking.store"),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\nretention_days = 0",
            "",
            "tracking.retention_days",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"127.0.0.1:1\"",
            "",
            "events.path_token",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"nowhere\"\npath_token_file = \"path-token\"",
            "",
            "events.listen",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"127.0.0.1:1\"\npath_token_file = \"short-token\"",
            "",
            "events.path_token_file",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"127.0.0.1:1\"\npath_token_file = \"path-token\"\npath_token_env = \"X\"",
            "",
            "events.path_token",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"127.0.0.1:1\"\npath_token_file = \"path-token\"\nsign_key_file = \"bad-sign-key\"",
            "",
            "events.sign_key_file",
        ),
        (
            "[tracking]\nstore = \"sqlite:u.db\"\n[events]\nlisten = \"127.0.0.1:1\"\npath_token_env = \"VOD_SIGNER_TEST_UNSET_PATH_TOKEN\"",
            "",
            "events.path_token_env",
        ),
    ];
    for (sections, caller_lines, field) in cases {
        let error = parse_tracking(sections, caller_lines).unwrap_err();
        assert!(
            error.field_name().is_some_and(|f| f.starts_with(field)),
            "{sections} / {caller_lines}: expected {field}, got {error}"
        );
        let text = error.to_string();
        for secret in ["tooshort", "not alphanumeric", "MySignKey1", "a-path-token"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
