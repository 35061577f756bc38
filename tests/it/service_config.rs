//! Configuration errors, and `vod-signer serve` as a process: refusing a bad file, serving
//! with secrets from the environment, logging audit events, exiting 0 on SIGTERM and SIGINT.

use std::net::SocketAddr;
use std::process::Command;

use crate::support::process::{BIN, ServeProcess};
use crate::support::service::*;
use vod_signer::config::{Config, DEV_TOKEN};
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;

fn config_error(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret-key"), SECRET_KEY).unwrap();
    Config::from_toml_str(toml, dir.path())
        .expect_err("the configuration should be refused")
        .to_string()
}

#[test]
fn config_errors_name_the_field() {
    let good = standard_toml("");
    let e = config_error(&good.replace("can_issue = false", "can_isue = false"));
    assert!(e.contains("can_isue"), "{e}");

    let e = config_error(&good.replace("secret_key_file = \"secret-key\"\n", ""));
    assert!(e.contains("keys[0]") && e.contains("secret"), "{e}");

    let e = config_error(&good.replace("name = \"issue-only\"", "name = \"full\""));
    assert!(e.contains("callers") && e.contains("\"full\""), "{e}");

    let e = config_error(&good.replace(
        "default_validity_seconds = 60",
        "default_validity_seconds = 601",
    ));
    assert!(e.contains("default_validity_seconds"), "{e}");

    // No value from the file is echoed: only names.
    assert!(!e.contains(&sha256_hex(FULL)));
}

/// `vod-signer serve ARGS` with `env`, and without the log settings of the test's own
/// environment.
fn spawn_serve(args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
    ServeProcess::spawn(|command| {
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("VOD_SIGNER_LOG_FORMAT");
        for (name, value) in env {
            command.env(name, value);
        }
    })
}

#[test]
fn serve_refuses_a_bad_configuration_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret-key"), SECRET_KEY).unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        standard_toml("").replace("name = \"restricted\"", "name = \"full\""),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("\"full\""),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY));

    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));

    // `--config` or `--dev` is required.
    let output = Command::new(BIN).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

fn serving_addr(line: &str) -> Option<SocketAddr> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &event["fields"];
    (fields["message"] == "vod-signer serving").then(|| fields["listen"].as_str()?.parse().ok())?
}

#[test]
fn serve_takes_secrets_from_the_environment_audits_and_exits_0_on_sigterm() {
    const TOKEN: &str = "token-from-the-environment";
    const KEY: &str = "secret-key-from-the-environment";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.toml");
    std::fs::write(
        &path,
        r#"
listen = "127.0.0.1:0"
[[keys]]
secret_id = "AKIDfromEnv"
secret_key_env = "TEST_VOD_SECRET_KEY"
[[callers]]
name = "env-caller"
token_env = "TEST_CALLER_TOKEN"
"#,
    )
    .unwrap();
    let mut serve = spawn_serve(
        &["--config", path.to_str().unwrap(), "--log-format", "json"],
        &[("TEST_VOD_SECRET_KEY", KEY), ("TEST_CALLER_TOKEN", TOKEN)],
    );
    let addr = serve.wait_for(serving_addr);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (issued, batch) = runtime.block_on(async {
        let mut client = UploadSignerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let issued = client
            .issue_signature(authed(
                issue_request("audited-user", Default::default()),
                TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let batch = client
            .issue_signature_batch(authed(
                pb::IssueSignatureBatchRequest {
                    request: Some(issue_request("batch-user", Default::default())),
                    count: 3,
                },
                TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
            .signatures;
        (issued, batch)
    });
    assert_eq!(issued.secret_id, "AKIDfromEnv");

    let audit: serde_json::Value = serve.wait_for(|line| {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        (event["target"] == "audit").then_some(event)
    });
    let fields = &audit["fields"];
    assert_eq!(fields["caller"], "env-caller");
    assert_eq!(fields["user_id"], "audited-user");
    assert_eq!(fields["secret_id"], "AKIDfromEnv");
    assert_eq!(fields["expires_at"], issued.expires_at);
    assert_eq!(fields["fingerprint"], issued.fingerprint.as_str());

    // A batch is one audit event naming every signature it minted.
    let batch_audit: serde_json::Value = serve.wait_for(|line| {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        (event["target"] == "audit" && event["fields"]["user_id"] == "batch-user").then_some(event)
    });
    let fields = &batch_audit["fields"];
    assert_eq!(fields["count"], 3);
    let fingerprints: Vec<&str> = batch.iter().map(|s| s.fingerprint.as_str()).collect();
    assert_eq!(fields["fingerprints"], fingerprints.join(","));

    serve.signal("TERM");
    let (code, lines) = serve.finish();
    let all = lines.join("\n");
    assert_eq!(code, 0, "{all}");
    let batch_signatures = batch.iter().map(|s| s.signature.as_str());
    for secret in [issued.signature.as_str(), TOKEN, KEY]
        .into_iter()
        .chain(batch_signatures)
    {
        assert!(!all.contains(secret), "a secret reached the log:\n{all}");
    }
    // The shutdown was the graceful one.
    assert!(
        all.contains("SIGTERM") && all.contains("shut down"),
        "{all}"
    );
}

#[test]
fn serve_dev_prints_a_working_token_and_exits_0_on_sigint() {
    let mut serve = spawn_serve(
        &[
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--events-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let token = serve.wait_for(|line| {
        line.trim()
            .strip_prefix("token:")
            .map(|t| t.trim().to_owned())
    });
    assert_eq!(token, DEV_TOKEN);
    let addr: SocketAddr =
        serve.wait_for(|line| line.trim().strip_prefix("address:")?.trim().parse().ok());
    let grpcurl = serve.wait_for(|line| {
        let line = line.trim();
        line.starts_with("grpcurl ").then(|| line.to_owned())
    });
    assert!(
        grpcurl.contains(&format!("'authorization: Bearer {DEV_TOKEN}'"))
            && grpcurl.contains(&addr.to_string())
            && grpcurl.ends_with("vod.signer.v1.UploadSigner/IssueSignature"),
        "{grpcurl}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let verified = runtime.block_on(async {
        let mut client = UploadSignerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let issued = client
            .issue_signature(authed(
                issue_request("newcomer", Default::default()),
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        client
            .verify_signature(authed(
                pb::VerifySignatureRequest {
                    signature: issued.signature,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    });
    assert!(verified.valid, "{verified:?}");

    serve.signal("INT");
    let (code, lines) = serve.finish();
    assert_eq!(code, 0, "{}", lines.join("\n"));
}

#[cfg(unix)]
#[test]
fn serve_warns_about_a_secret_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret-key");
    std::fs::write(&key, "secret-key-in-a-readable-file").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("signer.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\n[[keys]]\nsecret_id = \"AKIDmode\"\nsecret_key_file = \"secret-key\"\n[[callers]]\nname = \"c\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(FULL)
        ),
    )
    .unwrap();
    let mut serve = spawn_serve(&["--config", path.to_str().unwrap()], &[]);
    let warning = serve.wait_for(|line| {
        (line.contains("WARN") && line.contains("keys[0].secret_key_file")).then(|| line.to_owned())
    });
    assert!(
        warning.contains("644") && warning.contains("chmod 600"),
        "{warning}"
    );
    assert!(!warning.contains("secret-key-in-a-readable-file"));
    serve.signal("TERM");
    let (code, _) = serve.finish();
    assert_eq!(code, 0);

    // At 0600 nothing is said.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = vod_signer::config::Config::load(&path).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
