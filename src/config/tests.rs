use std::io::Write;

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
