//! The verifier against signers written independently in Python, Node.js and Java, run live:
//! each encodes `original` its own way (`+` or `%20` for spaces, different escaped sets, Go's
//! sorted keys, no encoding at all), over random Unicode parameters, signed as of now.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::params::assert_params_match;
use serde::Deserialize;
use vod_signer::cli::unix_now as now;
use vod_signer::signature::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Foreign {
    producer: String,
    secret_key: String,
    args: BTreeMap<String, serde_json::Value>,
    signature: String,
}

const COUNT: &str = "40";
const SEED: &str = "20261123";

fn run(program: &str, script: &str) -> Vec<Foreign> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign");
    let output = Command::new(program)
        .arg(dir.join(script))
        .args([SEED, COUNT, &now().to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed to run the {script} signer (it ships with the dev machine image): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout).unwrap();
    let signatures: Vec<Foreign> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script}: {e}: {l}")))
        .collect();
    assert!(!signatures.is_empty(), "{script} produced nothing");
    signatures
}

fn check(signatures: &[Foreign]) -> BTreeMap<&str, usize> {
    let mut per_producer = BTreeMap::new();
    for (i, f) in signatures.iter().enumerate() {
        let label = format!("{} #{i}", f.producer);
        let secret_id = f.args["secretId"].as_str().unwrap();
        let ring = KeyRing::single(SigningKey::new(
            SecretId::new(secret_id).unwrap(),
            &SecretKey::from_string(f.secret_key.clone()).unwrap(),
        ));
        let at = f.args["currentTimeStamp"].as_i64().unwrap();
        let params = ring
            .verify(&f.signature, at, VerifyOptions::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_params_match(&label, &f.args, &params);

        // The same signature under another key of the same id is a forgery.
        let other = KeyRing::single(SigningKey::new(
            SecretId::new(secret_id).unwrap(),
            &SecretKey::from_string(format!("{}!", f.secret_key)).unwrap(),
        ));
        let err = other
            .verify(&f.signature, at, VerifyOptions::default())
            .unwrap_err();
        assert_eq!(err.failure, VerifyFailure::BadSignature, "{label}");
        *per_producer.entry(f.producer.as_str()).or_insert(0) += 1;
    }
    per_producer
}

#[test]
fn python_signers_verify() {
    let signatures = run("python3", "sign.py");
    let seen = check(&signatures);
    for producer in [
        "python-urlencode",
        "python-quote-rfc3986",
        "python-concat",
        "go-values-encode",
    ] {
        assert!(
            seen.get(producer).copied().unwrap_or(0) > 0,
            "{producer} missing: {seen:?}"
        );
    }
}

#[test]
fn node_signers_verify() {
    let signatures = run("node", "sign.js");
    let seen = check(&signatures);
    for producer in [
        "node-querystring",
        "node-urlsearchparams",
        "node-encodeuricomponent",
    ] {
        assert!(
            seen.get(producer).copied().unwrap_or(0) > 0,
            "{producer} missing: {seen:?}"
        );
    }
}

#[test]
fn java_signer_verifies() {
    let signatures = run("java", "Sign.java");
    assert_eq!(check(&signatures).get("java-urlencoder"), Some(&40));
}
