//! Hardening of the UploadSigner RPCs (issue 10): what a verified signature carries beyond
//! the documented parameters is reported, and user ids that would make audit lines lie are
//! refused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};

use crate::support::service::*;
use vod_signer::proto::v1 as pb;

/// A signature over `original` with the test server's key, as anyone holding it could make.
fn signed(original: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(original.as_bytes());
    let mut bytes = mac.finalize().into_bytes().to_vec();
    bytes.extend_from_slice(original.as_bytes());
    STANDARD.encode(bytes)
}

#[tokio::test]
async fn unknown_signed_parameters_are_reported_with_a_valid_verdict() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    let now = vod_signer::cli::unix_now();
    let original = format!(
        "secretId={SECRET_ID}&currentTimeStamp={now}&expireTime={}&random=7&foo=bar&classId=0&x%20y=a%26b&foo=baz",
        now + 600
    );
    let response = client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: signed(&original),
            },
            FULL,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.valid, "{}", response.detail);
    assert_eq!(
        response.extra_params.len(),
        2,
        "{:?}",
        response.extra_params
    );
    assert_eq!(response.extra_params["foo"], "bar,baz");
    assert_eq!(response.extra_params["x y"], "a&b");

    // A signature with nothing extra reports nothing extra.
    let plain = format!(
        "secretId={SECRET_ID}&currentTimeStamp={now}&expireTime={}&random=8",
        now + 600
    );
    let response = client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: signed(&plain),
            },
            FULL,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(response.valid && response.extra_params.is_empty());
}

#[tokio::test]
async fn user_ids_with_separators_bidi_or_invisible_characters_are_refused() {
    let server = TestServer::start(standard_config()).await;
    let mut client = server.signer().await;
    for user in [
        "alice\u{202E}gpj.exe",
        "alice\u{2028}caller=admin",
        "alice\u{2029}",
        "al\u{200B}ice",
        "\u{FEFF}alice",
        "alice\u{2066}",
    ] {
        let status = client
            .issue_signature(authed(
                issue_request(user, pb::UploadParams::default()),
                FULL,
            ))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["user_id"], "{user:?}");
        assert!(status.message().contains("U+"), "{}", status.message());
    }
    // Text in any script still passes.
    client
        .issue_signature(authed(
            issue_request("名字-é_😀 x", pb::UploadParams::default()),
            FULL,
        ))
        .await
        .expect("visible text is a fine user id");
}
