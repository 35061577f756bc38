//! `KeyRing::verify` on arbitrary input, in two modes chosen by the first byte:
//!
//! - even: the rest is the signature text as given (base64 decoding, lengths, whitespace);
//! - odd: the rest is a plaintext `original`, signed here with the ring's key so the MAC
//!   checks out and the query parser and parameter decoding behind it are reached (random
//!   signature text almost never gets past the MAC).
//!
//! Besides not panicking (overflow checks are on), an accepted signature must satisfy what
//! verification promises: a known key, 1 s to 90 days of validity, not in the future beyond
//! the skew, not expired; and the same input must give the same answer twice.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use vod_signer::signature::{
    KeyRing, MAX_VALIDITY_SECONDS, SecretId, SecretKey, SigningKey, VerifyOptions,
};

const SECRET_ID: &str = "AKIDfuzzOnly";
const SECRET_KEY: &[u8] = b"fuzz-only-published-key";
const NOW: i64 = 1_700_000_000;

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::single(SigningKey::new(
        SecretId::new(SECRET_ID).unwrap(),
        &SecretKey::from_string(String::from_utf8(SECRET_KEY.to_vec()).unwrap()).unwrap(),
    ))
});

fn signed(original: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET_KEY).unwrap();
    mac.update(original);
    let mut raw = mac.finalize().into_bytes().to_vec();
    raw.extend_from_slice(original);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 1 {
        signed(rest)
    } else {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    };
    let options = VerifyOptions::default();
    let result = RING.verify(&text, NOW, options);
    assert_eq!(
        format!("{result:?}"),
        format!("{:?}", RING.verify(&text, NOW, options)),
        "verification is deterministic"
    );
    if let Ok(params) = result {
        assert_eq!(params.secret_id.as_str(), SECRET_ID);
        let validity = params.expire_time - params.current_time_stamp;
        assert!((1..=i64::from(MAX_VALIDITY_SECONDS)).contains(&validity));
        assert!(params.current_time_stamp <= NOW + i64::from(options.clock_skew_seconds));
        assert!(params.expire_time > NOW);
    }
});
