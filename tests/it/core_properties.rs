//! Property tests of the signing core: what it signs it verifies, whatever the parameters; any
//! single-bit change is rejected; no input makes the verifier panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use vod_signer::signature::*;

const NOW: i64 = 1_750_000_000;

fn ring() -> KeyRing {
    KeyRing::single(SigningKey::new(
        SecretId::new("AKIDproptest").unwrap(),
        &SecretKey::from_string("proptest-secret-key".into()).unwrap(),
    ))
}

/// Any string of at most `max` characters drawn from all of Unicode (including `&`, `=`, `+`,
/// `%`, spaces, control characters and astral-plane characters).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max).prop_map(|c| c.into_iter().collect())
}

fn region() -> impl Strategy<Value = String> {
    "[a-z0-9-]{0,64}"
}

prop_compose! {
    fn upload_params()(
        class_id in proptest::option::of(any::<u64>()),
        procedure in proptest::option::of(text(MAX_PROCEDURE_CHARS)),
        priority in proptest::option::of(-10i64..=10),
        mode in proptest::option::of(prop_oneof![
            Just(TaskNotifyMode::Finish), Just(TaskNotifyMode::Change), Just(TaskNotifyMode::None)
        ]),
        source in proptest::option::of(text(MAX_SOURCE_CONTEXT_CHARS)),
        one_time in proptest::option::of(any::<bool>()),
        sub_app in proptest::option::of(any::<u64>()),
        session in proptest::option::of(text(MAX_SESSION_CONTEXT_CHARS)),
        region in proptest::option::of(region()),
    ) -> UploadParams {
        // taskPriority / taskNotifyMode only with a non-empty procedure, as the signer requires.
        let procedure = match (&procedure, priority.is_some() || mode.is_some()) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, true) => Some("QCVB_SimpleProcessFile".to_string()),
            (p, false) => p.clone(),
        };
        UploadParams {
            class_id,
            procedure: procedure.map(|p| Procedure::new(p).unwrap()),
            task_priority: priority.map(|p| TaskPriority::new(p).unwrap()),
            task_notify_mode: mode,
            source_context: source.map(|s| SourceContext::new(s).unwrap()),
            one_time_valid: one_time,
            vod_sub_app_id: sub_app,
            session_context: session.map(|s| SessionContext::new(s).unwrap()),
            storage_region: region.map(|r| StorageRegion::new(r).unwrap()),
        }
    }
}

fn sign(params: UploadParams, validity: u64, random: u32) -> IssuedSignature {
    let request = SignRequest::new(Validity::from_secs(validity).unwrap(), params).unwrap();
    ring().active().sign(&request, NOW, Random(random)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_round_trips(
        params in upload_params(),
        validity in 1u64..=u64::from(MAX_VALIDITY_SECONDS),
        random in any::<u32>(),
        elapsed in 0u64..u64::from(MAX_VALIDITY_SECONDS),
    ) {
        let issued = sign(params.clone(), validity, random);
        let at = NOW + (elapsed % validity) as i64;
        let decoded = ring().verify(issued.signature.as_str(), at, VerifyOptions::default()).unwrap();
        prop_assert_eq!(decoded.secret_id.as_str(), "AKIDproptest");
        prop_assert_eq!(decoded.current_time_stamp, NOW);
        prop_assert_eq!(decoded.expire_time, NOW + validity as i64);
        prop_assert_eq!(decoded.random, Random(random));
        prop_assert_eq!(decoded.upload, params);
        prop_assert!(decoded.extra.is_empty());
        // Expiry is exact: valid until the last second, rejected at expireTime.
        let expired = ring().verify(issued.signature.as_str(), NOW + validity as i64, VerifyOptions::default());
        prop_assert_eq!(expired.unwrap_err().failure, VerifyFailure::Expired);
    }

    #[test]
    fn any_single_bit_flip_of_the_text_is_rejected(
        params in upload_params(),
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let issued = sign(params, 600, 1);
        let mut bytes = issued.signature.as_str().as_bytes().to_vec();
        let i = pick.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // A flip can leave ASCII; the verifier takes `&str`, so lossy decoding stands in for
        // however a transport would deliver those bytes.
        let tampered = String::from_utf8_lossy(&bytes);
        prop_assert!(ring().verify(&tampered, NOW, VerifyOptions::default()).is_err());
    }

    #[test]
    fn any_single_bit_flip_of_the_decoded_bytes_is_rejected(
        params in upload_params(),
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let issued = sign(params, 600, 1);
        let mut raw = STANDARD.decode(issued.signature.as_str()).unwrap();
        let i = pick.index(raw.len());
        raw[i] ^= 1 << bit;
        let err = ring().verify(&STANDARD.encode(&raw), NOW, VerifyOptions::default()).unwrap_err();
        // Tampering is caught by the MAC, or earlier if the bytes stop being a query string;
        // it can never slip through as a parameter or time problem of a "genuine" signature.
        prop_assert!(matches!(
            err.failure,
            VerifyFailure::Malformed | VerifyFailure::UnknownSecretId | VerifyFailure::BadSignature
        ), "{:?}", err);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = ring().verify(&s, NOW, VerifyOptions::default());
    }

    #[test]
    fn arbitrary_base64_payloads_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = ring().verify(&STANDARD.encode(&raw), NOW, VerifyOptions::default());
    }

    #[test]
    fn arbitrary_plaintexts_with_a_valid_mac_never_panic(original in any::<String>()) {
        // A correct MAC over arbitrary text exercises the parameter decoder, not just the MAC.
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"proptest-secret-key").unwrap();
        mac.update(original.as_bytes());
        let mut raw = mac.finalize().into_bytes().to_vec();
        raw.extend_from_slice(original.as_bytes());
        let _ = ring().verify(&STANDARD.encode(&raw), NOW, VerifyOptions::default());
    }

    #[test]
    fn random_values_in_range_verify(random in any::<u32>()) {
        let issued = sign(UploadParams::default(), 60, random);
        prop_assert_eq!(
            ring().verify(issued.signature.as_str(), NOW, VerifyOptions::default()).unwrap().random,
            Random(random)
        );
    }
}

/// Every bit of every character of signatures with each padding length (none, `=`, `==`).
#[test]
fn every_single_bit_flip_is_rejected_exhaustively() {
    let mut paddings = std::collections::BTreeSet::new();
    // `random` with 1 to 10 digits changes the length of `original`, and so the padding.
    for random in (0..10).map(|digits| 10u32.pow(digits)) {
        let issued = sign(UploadParams::default(), 600, random);
        let text = issued.signature.as_str();
        let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
        if !paddings.insert(padding) {
            continue;
        }
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut bytes = text.as_bytes().to_vec();
                bytes[i] ^= 1 << bit;
                let tampered = String::from_utf8_lossy(&bytes);
                assert!(
                    ring()
                        .verify(&tampered, NOW, VerifyOptions::default())
                        .is_err(),
                    "flipping bit {bit} of character {i} was accepted"
                );
            }
        }
    }
    assert_eq!(
        paddings.len(),
        3,
        "signatures with every padding length were tried"
    );
}
