//! The signing core's verifier against a naive one written from the spec
//! (`support::reference`): on query-like text, on any text and bytes, and on any signature
//! text, both accept the same signatures with the same parameters and refuse the others for
//! the same reason.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha1::Sha1;
use vod_signer::signature::{
    DEFAULT_CLOCK_SKEW_SECONDS, KeyRing, MAX_VALIDITY_SECONDS, ParamName, SecretId, SecretKey,
    SignedParams, SigningKey, VerifyFailure, VerifyOptions,
};

use crate::support::reference::{self, Params, Refused, Rejection};

const KEY_ID: &str = "AKIDproptest";
const KEY: &[u8] = b"proptest-secret-key";
const OTHER_ID: &str = "AKIDother";
const OTHER_KEY: &[u8] = b"another-secret-key";
const NOW: i64 = 1_700_000_000;

fn key(id: &str, secret: &[u8]) -> SigningKey {
    SigningKey::new(
        SecretId::new(id).unwrap(),
        &SecretKey::new(secret.to_vec()).unwrap(),
    )
}

/// One key, or two (a signature without `secretId` is then checked against both); the same
/// keys as the reference sees them.
fn rings() -> [(KeyRing, Vec<reference::Key>); 2] {
    let naive = |id: &str, secret: &[u8]| reference::Key {
        secret_id: id.to_owned(),
        secret_key: secret.to_vec(),
    };
    [
        (KeyRing::single(key(KEY_ID, KEY)), vec![naive(KEY_ID, KEY)]),
        (
            KeyRing::new(vec![
                (key(OTHER_ID, OTHER_KEY), true),
                (key(KEY_ID, KEY), false),
            ])
            .unwrap(),
            vec![naive(OTHER_ID, OTHER_KEY), naive(KEY_ID, KEY)],
        ),
    ]
}

fn signed(original: &[u8], secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).unwrap();
    mac.update(original);
    let mut raw = mac.finalize().into_bytes().to_vec();
    raw.extend_from_slice(original);
    STANDARD.encode(raw)
}

/// The core's parameters in the reference's terms.
fn plain(params: &SignedParams) -> Params {
    let upload = &params.upload;
    Params {
        secret_id: params.secret_id.as_str().to_owned(),
        current_time_stamp: params.current_time_stamp,
        expire_time: params.expire_time,
        random: params.random.0,
        class_id: upload.class_id,
        procedure: upload.procedure.as_ref().map(|p| p.as_str().to_owned()),
        task_priority: upload.task_priority.map(|p| i64::from(p.get())),
        task_notify_mode: upload.task_notify_mode.map(|m| m.as_str().to_owned()),
        source_context: upload
            .source_context
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        one_time_valid: upload.one_time_valid,
        vod_sub_app_id: upload.vod_sub_app_id,
        session_context: upload
            .session_context
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        storage_region: upload
            .storage_region
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        extra: params.extra.clone(),
    }
}

fn rejection(failure: VerifyFailure) -> Rejection {
    match failure {
        VerifyFailure::Malformed => Rejection::Malformed,
        VerifyFailure::UnknownSecretId => Rejection::UnknownSecretId,
        VerifyFailure::BadSignature => Rejection::BadSignature,
        VerifyFailure::InvalidParameter => Rejection::InvalidParameter,
        VerifyFailure::ValidityTooLong => Rejection::ValidityTooLong,
        VerifyFailure::NotYetValid => Rejection::NotYetValid,
        VerifyFailure::Expired => Rejection::Expired,
    }
}

/// The core and the reference agree on `signature` at `now`, with either ring and skew.
fn assert_agree(signature: &str, now: i64) -> Result<(), TestCaseError> {
    for (ring, keys) in rings() {
        for skew in [0, DEFAULT_CLOCK_SKEW_SECONDS] {
            let options = VerifyOptions {
                clock_skew_seconds: skew,
            };
            let fast = ring
                .verify(signature, now, options)
                .map(|p| plain(&p))
                .map_err(|e| Refused {
                    why: rejection(e.failure),
                    params: e.params.as_deref().map(|p| Box::new(plain(p))),
                });
            let naive = reference::verify(&keys, signature, now, i64::from(skew));
            prop_assert_eq!(fast, naive, "{:?}", signature);
        }
    }
    Ok(())
}

fn name() -> impl Strategy<Value = String> {
    let known = proptest::sample::select(
        ParamName::ALL
            .iter()
            .map(|n| n.wire_name())
            .collect::<Vec<_>>(),
    )
    .prop_map(str::to_owned);
    let odd = proptest::sample::select(vec![
        "secret%49d",
        "secretI%64",
        "%73ecretId",
        "random%3D",
        "secretIdx",
        "SecretId",
        "secret",
        "s",
        "c",
        "x",
        "a+b",
        "%E5%90%8D",
        "名",
    ])
    .prop_map(str::to_owned);
    let broken =
        proptest::sample::select(vec!["", "%FF", "%zz", "%4", "%"]).prop_map(str::to_owned);
    prop_oneof![40 => known, 8 => odd, 1 => broken, 1 => "[a-zA-Z%+=]{0,6}"]
}

fn value() -> impl Strategy<Value = String> {
    let fixed = proptest::sample::select(vec![
        KEY_ID,
        "AKIDother",
        "AKIDnobody",
        "AKID%70roptest",
        "AKID+proptest",
        "%41KIDproptest",
        "",
        "-",
        "-0",
        "-5",
        "+1",
        "0",
        "1",
        "2",
        "10",
        "-10",
        "-11",
        "1699999000",
        "1700000000",
        "1700000400",
        "1700003600",
        "1707776000",
        "1707776001",
        "%31%37%30%30%30%30%33%36%30%30",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "999999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "Finish",
        "Change",
        "None",
        "none",
        "ap-chongqing",
        "AP-chongqing",
        "QCVB_SimpleProcessFile(1,+1,+10)",
        "%7B%22a%22%3A1%7D",
        "%E5%90%8D%E5%AD%97",
        "%F0%9F%8E%AC",
        "a=b",
        "名字",
    ])
    .prop_map(str::to_owned);
    let broken =
        proptest::sample::select(vec!["%FF", "%C3", "%zz", "%4", "%"]).prop_map(str::to_owned);
    let long = (0usize..1100, "[a-z+]|%2[0-9]|%E5%90%8D").prop_map(|(n, c)| c.repeat(n));
    prop_oneof![
        40 => fixed,
        1 => broken,
        8 => "([a-zA-Z0-9._~=-]|%[0-7][0-9a-fA-F]|%E5%90%8D|\\+){0,12}",
        4 => long,
    ]
}

/// Query-ish text: pairs of likely names and values, with repeats, plus the odd broken
/// separator, so that every failure and every parameter error is reached.
fn original() -> impl Strategy<Value = String> {
    let pair = prop_oneof![
        40 => (name(), value()).prop_map(|(n, v)| format!("{n}={v}")),
        1 => proptest::sample::select(vec!["", "x", "=1", "a==b", "&"]).prop_map(str::to_owned),
    ];
    let time = || {
        prop_oneof![
            Just(NOW),
            Just(NOW - 1),
            Just(NOW + 3600),
            Just(NOW + i64::from(MAX_VALIDITY_SECONDS)),
            Just(NOW + i64::from(MAX_VALIDITY_SECONDS) + 1),
            NOW - 1000..NOW + 1000,
        ]
    };
    let required = (time(), time(), any::<u32>()).prop_map(|(current, expire, random)| {
        format!("secretId={KEY_ID}&currentTimeStamp={current}&expireTime={expire}&random={random}")
    });
    (
        proptest::option::of(required),
        proptest::collection::vec(pair, 0..8),
        any::<bool>(),
    )
        .prop_map(|(required, pairs, required_last)| {
            let mut all: Vec<String> = pairs;
            if let Some(r) = required {
                if required_last {
                    all.push(r);
                } else {
                    all.insert(0, r);
                }
            }
            all.join("&")
        })
}

fn now() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(NOW),
        Just(NOW + 60),
        Just(NOW - 400),
        Just(NOW + 3600),
        Just(NOW + 4000),
        any::<i64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_reference_on_query_like_text(
        original in original(),
        wrong_key in proptest::bool::weighted(0.1),
        now in now(),
    ) {
        let secret: &[u8] = if wrong_key { b"not-the-key" } else { KEY };
        assert_agree(&signed(original.as_bytes(), secret), now)?;
    }

    #[test]
    fn agrees_with_the_reference_on_any_text(original in any::<String>(), now in now()) {
        assert_agree(&signed(original.as_bytes(), KEY), now)?;
    }

    #[test]
    fn agrees_with_the_reference_on_any_bytes(
        original in proptest::collection::vec(any::<u8>(), 0..64),
        now in now(),
    ) {
        assert_agree(&signed(&original, KEY), now)?;
    }

    #[test]
    fn agrees_with_the_reference_on_any_signature_text(
        // Lengths around the core's stack buffer (1024 decoded bytes, 1368 characters).
        signature in "[ \n]?[A-Za-z0-9+/]{0,1400}={0,3}[^ ]?",
        now in now(),
    ) {
        assert_agree(&signature, now)?;
    }
}

#[test]
fn agrees_with_the_reference_around_the_stack_buffer_limit() {
    let base = format!(
        "secretId={KEY_ID}&currentTimeStamp={NOW}&expireTime={}&random=7&x=",
        NOW + 3600
    );
    for len in 990..1040 {
        let original = format!("{base}{}", "a".repeat(len - base.len()));
        let signature = signed(original.as_bytes(), KEY);
        assert_agree(&signature, NOW).unwrap();
        // Broken at the end, and with its padding removed.
        assert_agree(&format!("{}!", &signature[..signature.len() - 1]), NOW).unwrap();
        assert_agree(signature.trim_end_matches('='), NOW).unwrap();
    }
}

/// The oracle is worth something only if it refuses what it should: a known-good signature
/// passes, and each kind of damage is refused for its own reason.
#[test]
fn the_reference_accepts_a_good_signature_and_refuses_damaged_ones() {
    let keys = [reference::Key {
        secret_id: KEY_ID.to_owned(),
        secret_key: KEY.to_vec(),
    }];
    let good = format!(
        "secretId={KEY_ID}&currentTimeStamp={NOW}&expireTime={}&random=7&sourceContext=a%2Bb+c",
        NOW + 3600
    );
    let params = reference::verify(&keys, &signed(good.as_bytes(), KEY), NOW, 0).unwrap();
    assert_eq!(params.source_context.as_deref(), Some("a+b c"));
    let refused = |signature: &str| reference::verify(&keys, signature, NOW, 0).unwrap_err().why;
    assert_eq!(refused("not base64!"), Rejection::Malformed);
    assert_eq!(
        refused(&signed(good.as_bytes(), b"wrong")),
        Rejection::BadSignature
    );
    let unknown = good.replace(KEY_ID, "AKIDnobody");
    assert_eq!(
        refused(&signed(unknown.as_bytes(), KEY)),
        Rejection::UnknownSecretId
    );
    let twice = format!("{good}&random=8");
    assert_eq!(
        refused(&signed(twice.as_bytes(), KEY)),
        Rejection::InvalidParameter
    );
    assert_eq!(
        reference::verify(&keys, &signed(good.as_bytes(), KEY), NOW + 3600, 0)
            .unwrap_err()
            .why,
        Rejection::Expired
    );
}
