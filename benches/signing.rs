//! The signing core against the floor: what any implementation must spend on the same bytes.
//!
//! For each realistic `original` this measures, in one harness:
//! - `floor`: `Hmac::<Sha1>::new_from_slice(key)`, one `update` over `original`, and standard
//!   base64 of `digest ‖ original` — nothing else;
//! - `sign`: `SigningKey::sign` (builds and percent-encodes `original`, MACs, base64);
//! - `verify`: `KeyRing::verify` of the signature `sign` made (base64 decode, parse, MAC check,
//!   typed decoding of every parameter, time checks).
//!
//! After criterion's own report the harness prints `sign/floor` and `verify/floor` from the
//! estimates it has just written. Run: `cargo bench --bench signing`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use vod_signer::signature::{
    KeyRing, Procedure, Random, SecretId, SecretKey, SessionContext, SignRequest, SigningKey,
    SourceContext, UploadParams, Validity, VerifyOptions,
};

const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
const NOW: i64 = 1_700_000_000;
const GROUP: &str = "signing";

struct Case {
    name: &'static str,
    request: SignRequest,
}

fn cases() -> Vec<Case> {
    let validity = Validity::from_secs(3600).unwrap();
    let required = UploadParams::default();
    let typical = UploadParams {
        procedure: Some(Procedure::new("QCVB_SimpleProcessFile(1, 1, 10)").unwrap()),
        source_context: Some(
            SourceContext::new(r#"{"userId":"u-48151623","uploadId":"9f1c2a7e-0d4b","app":"ios"}"#)
                .unwrap(),
        ),
        one_time_valid: Some(true),
        vod_sub_app_id: Some(1_500_000_001),
        ..UploadParams::default()
    };
    // 600 characters of mixed CJK, emoji and ASCII JSON: most bytes are percent-encoded.
    let unicode: String = "{\"标题\":\"我的旅行视频 🎬\",\"描述\":\"在成都拍的熊猫🐼\"}"
        .chars()
        .cycle()
        .take(600)
        .collect();
    let long_unicode = UploadParams {
        session_context: Some(SessionContext::new(unicode).unwrap()),
        ..UploadParams::default()
    };
    [
        ("required_only", required),
        ("typical", typical),
        ("long_unicode_session_context", long_unicode),
    ]
    .into_iter()
    .map(|(name, params)| Case {
        name,
        request: SignRequest::new(validity, params).unwrap(),
    })
    .collect()
}

/// The floor: keying HMAC-SHA1, MACing `original`, base64 of `digest ‖ original`.
fn floor(key: &[u8], original: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
    mac.update(original);
    let mut raw = Vec::with_capacity(20 + original.len());
    raw.extend_from_slice(&mac.finalize().into_bytes());
    raw.extend_from_slice(original);
    STANDARD.encode(&raw)
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::new(
        SecretId::new(SECRET_ID).unwrap(),
        &SecretKey::from_string(SECRET_KEY.into()).unwrap(),
    );
    let ring = KeyRing::single(key);
    let mut group = c.benchmark_group(GROUP);

    for case in cases() {
        let issued = ring.active().sign(&case.request, NOW, Random(7)).unwrap();
        let signature = issued.signature.as_str().to_owned();
        let original = STANDARD.decode(&signature).unwrap()[20..].to_vec();
        // The floor is only a floor if it produces the very same signature.
        assert_eq!(floor(SECRET_KEY.as_bytes(), &original), signature);
        eprintln!(
            "{}: original is {} bytes, signature {} characters",
            case.name,
            original.len(),
            signature.len()
        );
        group.throughput(Throughput::Bytes(original.len() as u64));

        group.bench_with_input(BenchmarkId::new("floor", case.name), &original, |b, o| {
            b.iter(|| floor(black_box(SECRET_KEY.as_bytes()), black_box(o)))
        });
        group.bench_with_input(
            BenchmarkId::new("sign", case.name),
            &case.request,
            |b, r| {
                let mut random = 0u32;
                b.iter(|| {
                    random = random.wrapping_add(1);
                    ring.active()
                        .sign(black_box(r), black_box(NOW), Random(random))
                        .unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("verify", case.name), &signature, |b, s| {
            b.iter(|| {
                ring.verify(black_box(s), black_box(NOW + 60), VerifyOptions::default())
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// Where criterion writes its estimates (it follows `CARGO_TARGET_DIR`; benches run from the
/// package root).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    target.join("criterion")
}

/// Mean time in ns of one benchmark, if this run wrote it (not a stale file of an earlier run).
fn mean_ns(function: &str, case: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(GROUP)
        .join(function)
        .join(case)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn report_ratios(since: SystemTime) {
    let mut lines = Vec::new();
    for case in cases() {
        let [Some(floor), Some(sign), Some(verify)] =
            ["floor", "sign", "verify"].map(|f| mean_ns(f, case.name, since))
        else {
            continue;
        };
        lines.push(format!(
            "| {} | {floor:.0} | {sign:.0} | {verify:.0} | {:.2} | {:.2} |",
            case.name,
            sign / floor,
            verify / floor
        ));
    }
    if lines.is_empty() {
        return;
    }
    println!("\n| original | floor ns | sign ns | verify ns | sign/floor | verify/floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    for line in lines {
        println!("{line}");
    }
    println!("targets: sign/floor <= 1.3, verify/floor <= 1.5 (means)");
}

fn main() {
    let started = SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    report_ratios(started);
}
