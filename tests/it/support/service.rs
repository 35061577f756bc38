//! Shared by the `service_*` tests: one key and four callers that between them exercise every
//! policy rule. The server itself is `vod_signer::testing::TestServer`.
#![allow(dead_code)]

use tonic::{Code, Status};
use tonic_types::StatusExt;

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
use vod_signer::signature::{KeyRing, SecretId, SecretKey, SigningKey};
#[allow(unused_imports)] // each test binary uses a different part
pub use vod_signer::testing::{
    IssueGate, ManualClock, TestServer, authed, config_from, sha256_hex,
};

pub const SECRET_ID: &str = "AKIDserviceTestKey";
/// Only ever in a temporary file; the tests check it never shows up where it must not.
pub const SECRET_KEY: &str = "service-test-secret-key-do-not-log";

pub const FULL: &str = "full-token-0123";
pub const RESTRICTED: &str = "restricted-token-4567";
pub const VERIFY_ONLY: &str = "verify-only-token-89ab";
pub const ISSUE_ONLY: &str = "issue-only-token-cdef";

/// One key and four callers that between them exercise every policy rule.
pub fn standard_toml(extra_top_level: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
{extra_top_level}

[[keys]]
secret_id = "{SECRET_ID}"
secret_key_file = "secret-key"

[[callers]]
name = "full"
token_sha256 = "{full}"

[[callers]]
name = "restricted"
token_sha256 = "{restricted}"
allowed_procedures = ["review"]
allowed_class_ids = [0, 7]
allowed_sub_app_ids = [0, 1400]
max_validity_seconds = 600
default_validity_seconds = 60
force_one_time = true

[[callers]]
name = "verify-only"
token_sha256 = "{verify_only}"
can_issue = false

[[callers]]
name = "issue-only"
token_sha256 = "{issue_only}"
can_verify = false
"#,
        full = sha256_hex(FULL),
        restricted = sha256_hex(RESTRICTED),
        verify_only = sha256_hex(VERIFY_ONLY),
        issue_only = sha256_hex(ISSUE_ONLY),
    )
}

pub fn standard_config() -> Config {
    config_from(&standard_toml(""), &[("secret-key", SECRET_KEY)])
}

/// The service's key, for checking its signatures with the core verifier.
pub fn standard_ring() -> KeyRing {
    KeyRing::single(SigningKey::new(
        SecretId::new(SECRET_ID).unwrap(),
        &SecretKey::from_string(SECRET_KEY.to_owned()).unwrap(),
    ))
}

pub fn issue_request(user_id: &str, params: pb::UploadParams) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id: user_id.to_owned(),
        validity_seconds: 0,
        params: Some(params),
    }
}

/// The field paths of a status's `google.rpc.BadRequest`, after checking the code.
pub fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    details
        .field_violations
        .iter()
        .map(|v| {
            assert!(!v.description.is_empty(), "{v:?}");
            v.field.clone()
        })
        .collect()
}
