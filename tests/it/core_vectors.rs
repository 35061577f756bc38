//! The signing core against signatures made by other implementations.

use crate::support::params::assert_params_match;
use crate::support::vectors::{self, Vector};
use vod_signer::signature::*;

fn ring_for(v: &Vector) -> KeyRing {
    let secret_id = v.args["secretId"].as_str().unwrap();
    KeyRing::single(SigningKey::new(
        SecretId::new(secret_id).unwrap(),
        &SecretKey::from_string(v.secret_key.clone()).unwrap(),
    ))
}

#[test]
fn every_vector_verifies_as_expected() {
    let all = vectors::load();
    for v in &all {
        let ring = ring_for(v);
        let result = ring.verify(&v.signature, v.valid_at(), VerifyOptions::default());
        match (v.expect.as_str(), &result) {
            ("VALID", Ok(params)) => {
                assert_params_match(&format!("{} ({})", v.name, v.producer), &v.args, params)
            }
            ("VALID", Err(e)) => panic!("{} ({}): expected VALID, got {e}", v.name, v.producer),
            (expected, Err(e)) => {
                assert_eq!(e.failure.as_str(), expected, "{} ({})", v.name, v.producer);
                if let Some(p) = &e.params {
                    assert_params_match(&format!("{} ({})", v.name, v.producer), &v.args, p);
                }
            }
            (expected, Ok(_)) => panic!(
                "{} ({}): expected {expected}, got VALID",
                v.name, v.producer
            ),
        }
    }
}

#[test]
fn vectors_embed_their_original() {
    use base64::Engine;
    for v in vectors::load() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&v.signature)
            .unwrap();
        assert_eq!(&raw[20..], v.original.as_bytes(), "{}", v.name);
    }
}

#[test]
fn required_only_vectors_are_reproduced_byte_for_byte() {
    let all = vectors::load();
    let required_only: Vec<_> = all.iter().filter(|v| v.name == "required-only").collect();
    assert!(!required_only.is_empty());
    for v in required_only {
        let ring = ring_for(v);
        let validity = (v.int_arg("expireTime") - v.int_arg("currentTimeStamp")) as u64;
        let request = SignRequest::new(
            Validity::from_secs(validity).unwrap(),
            UploadParams::default(),
        )
        .unwrap();
        let issued = ring
            .active()
            .sign(
                &request,
                v.int_arg("currentTimeStamp"),
                Random(v.int_arg("random") as u32),
            )
            .unwrap();
        assert_eq!(
            issued.signature.as_str(),
            v.signature,
            "{} ({})",
            v.name,
            v.producer
        );
    }
}

#[test]
fn vectors_are_rejected_outside_their_window_and_with_another_key() {
    for v in vectors::load().iter().filter(|v| v.expect == "VALID") {
        let ring = ring_for(v);
        let opts = VerifyOptions::default();
        let expired = ring
            .verify(&v.signature, v.int_arg("expireTime"), opts)
            .unwrap_err();
        assert_eq!(expired.failure, VerifyFailure::Expired, "{}", v.name);
        let early = v.int_arg("currentTimeStamp") - i64::from(opts.clock_skew_seconds) - 1;
        let future = ring.verify(&v.signature, early, opts).unwrap_err();
        assert_eq!(future.failure, VerifyFailure::NotYetValid, "{}", v.name);

        let other = KeyRing::single(SigningKey::new(
            SecretId::new(v.args["secretId"].as_str().unwrap()).unwrap(),
            &SecretKey::from_string(format!("{}x", v.secret_key)).unwrap(),
        ));
        let bad = other.verify(&v.signature, v.valid_at(), opts).unwrap_err();
        assert_eq!(bad.failure, VerifyFailure::BadSignature, "{}", v.name);
    }
}
