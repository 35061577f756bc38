//! The `sign` and `verify` subcommands, run as a user would run the binary.

use std::process::{Command, Output};

use serde_json::Value;

const KEY_VAR: &str = "VOD_SIGNER_TEST_SECRET_KEY";
const KEY: &str = "cli-test-secret-key-do-not-use";

fn vod_signer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vod-signer"))
        .args(args)
        .env(KEY_VAR, KEY)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn assert_no_secret(o: &Output) {
    assert!(
        !stdout(o).contains(KEY) && !stderr(o).contains(KEY),
        "the SecretKey leaked"
    );
}

fn sign(extra: &[&str]) -> String {
    let mut args = vec![
        "sign",
        "--secret-id",
        "AKIDcli",
        "--secret-key-env",
        KEY_VAR,
    ];
    args.extend_from_slice(extra);
    let out = vod_signer(&args);
    assert_no_secret(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn verify(signature: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "verify",
        signature,
        "--secret-id",
        "AKIDcli",
        "--secret-key-env",
        KEY_VAR,
    ];
    args.extend_from_slice(extra);
    let out = vod_signer(&args);
    assert_no_secret(&out);
    let verdict: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("verify prints one JSON object: {e}: {}", stdout(&out)));
    (out.status.code().unwrap(), verdict)
}

#[test]
fn signs_and_verifies_every_parameter() {
    let signature = sign(&[
        "--validity",
        "600",
        "--class-id",
        "7",
        "--procedure",
        "QCVB_SimpleProcessFile({1,1,1,1})",
        "--task-priority",
        "-3",
        "--task-notify-mode",
        "Change",
        "--source-context",
        "user=42&名字=视频 test+%",
        "--session-context",
        "s",
        "--one-time",
        "--sub-app-id",
        "1500000001",
        "--storage-region",
        "ap-chongqing",
    ]);
    let (code, v) = verify(&signature, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["failure"], Value::Null);
    let p = &v["params"];
    assert_eq!(p["secretId"], "AKIDcli");
    assert_eq!(
        p["expireTime"].as_i64().unwrap() - p["currentTimeStamp"].as_i64().unwrap(),
        600
    );
    assert!(p["random"].is_u64());
    assert_eq!(p["classId"], 7);
    assert_eq!(p["procedure"], "QCVB_SimpleProcessFile({1,1,1,1})");
    assert_eq!(p["taskPriority"], -3);
    assert_eq!(p["taskNotifyMode"], "Change");
    assert_eq!(p["sourceContext"], "user=42&名字=视频 test+%");
    assert_eq!(p["sessionContext"], "s");
    assert_eq!(p["oneTimeValid"], 1);
    assert_eq!(p["vodSubAppId"], 1500000001u64);
    assert_eq!(p["storageRegion"], "ap-chongqing");
}

#[test]
fn verify_reports_expiry_with_exit_code_1() {
    let signature = sign(&["--validity", "60"]);
    let (_, now) = verify(&signature, &[]);
    let expire = now["params"]["expireTime"].as_i64().unwrap();
    let (code, v) = verify(&signature, &["--at", &expire.to_string()]);
    assert_eq!(code, 1);
    assert_eq!(v["valid"], false);
    assert_eq!(v["failure"], "EXPIRED");
    assert_eq!(v["params"]["expireTime"], expire);
}

#[test]
fn verify_reports_each_early_failure() {
    let (code, v) = verify("not base64!", &[]);
    assert_eq!((code, v["failure"].as_str()), (1, Some("MALFORMED")));

    let signature = sign(&[]);
    let out = vod_signer(&[
        "verify",
        &signature,
        "--secret-id",
        "AKIDother",
        "--secret-key-env",
        KEY_VAR,
    ]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (out.status.code(), v["failure"].as_str()),
        (Some(1), Some("UNKNOWN_SECRET_ID"))
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vod-signer"))
        .args([
            "verify",
            &signature,
            "--secret-id",
            "AKIDcli",
            "--secret-key-env",
            KEY_VAR,
        ])
        .env(KEY_VAR, "another key")
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (out.status.code(), v["failure"].as_str()),
        (Some(1), Some("BAD_SIGNATURE"))
    );
}

#[test]
fn shared_vectors_verify_through_the_cli_with_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    for v in crate::support::vectors::load() {
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, format!("{}\n", v.secret_key)).unwrap();
        let out = vod_signer(&[
            "verify",
            &v.signature,
            "--secret-id",
            v.args["secretId"].as_str().unwrap(),
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--at",
            &v.valid_at().to_string(),
        ]);
        let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
        if v.expect == "VALID" {
            assert_eq!(out.status.code(), Some(0), "{}: {verdict}", v.name);
            for (name, value) in &v.args {
                assert_eq!(&verdict["params"][name], value, "{} {name}", v.name);
            }
        } else {
            assert_eq!(out.status.code(), Some(1), "{}", v.name);
            assert_eq!(verdict["failure"], v.expect.as_str(), "{}", v.name);
        }
    }
}

#[test]
fn bad_input_is_refused_with_a_message_naming_the_problem() {
    let long_context = "x".repeat(251);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--validity", "7776001"], "90 days"),
        (vec!["--validity", "0"], "at least 1 second"),
        (
            vec!["--source-context", &long_context],
            "sourceContext is 251 characters",
        ),
        (
            vec!["--procedure", "p", "--task-priority", "11"],
            "taskPriority must be between -10 and 10",
        ),
        (
            vec!["--procedure", "p", "--task-notify-mode", "Sometimes"],
            "taskNotifyMode must be",
        ),
        (
            vec!["--task-priority", "1"],
            "only applies together with a non-empty procedure",
        ),
        (vec!["--storage-region", "AP CHONGQING"], "storageRegion"),
    ];
    for (extra, message) in cases {
        let mut args = vec![
            "sign",
            "--secret-id",
            "AKIDcli",
            "--secret-key-env",
            KEY_VAR,
        ];
        args.extend_from_slice(&extra);
        let out = vod_signer(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(stdout(&out).is_empty(), "{extra:?}");
        assert!(
            stderr(&out).contains(message),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_secret_key_comes_only_from_env_or_file() {
    let out = vod_signer(&[
        "sign",
        "--secret-id",
        "AKIDcli",
        "--secret-key-env",
        "VOD_SIGNER_UNSET_VAR",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("VOD_SIGNER_UNSET_VAR is not set"),
        "{}",
        stderr(&out)
    );

    let out = vod_signer(&[
        "sign",
        "--secret-id",
        "AKIDcli",
        "--secret-key-file",
        "/nonexistent/key",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/key"),
        "{}",
        stderr(&out)
    );

    // There is no flag that takes the key itself.
    let out = vod_signer(&["sign", "--secret-id", "AKIDcli", "--secret-key", KEY]);
    assert_eq!(out.status.code(), Some(2));
    let out = vod_signer(&["sign", "--secret-id", "AKIDcli"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_signature_is_fresh() {
    let a = sign(&["--one-time"]);
    let b = sign(&["--one-time"]);
    assert_ne!(a, b);
}

#[test]
fn verify_at_the_ends_of_time_answers_instead_of_overflowing() {
    let signature = sign(&["--validity", "60"]);
    let (code, v) = verify(&signature, &["--at=-9223372036854775808"]);
    assert_eq!(
        (code, v["failure"].as_str()),
        (1, Some("NOT_YET_VALID")),
        "{v}"
    );
    let detail = v["detail"].as_str().unwrap();
    // The true distance, which does not fit in an i64.
    let ts = v["params"]["currentTimeStamp"].as_i64().unwrap();
    let expected = i128::from(ts) - i128::from(i64::MIN);
    assert!(detail.contains(&expected.to_string()), "{detail}");

    let (code, v) = verify(&signature, &["--at=9223372036854775807"]);
    assert_eq!((code, v["failure"].as_str()), (1, Some("EXPIRED")), "{v}");
}
