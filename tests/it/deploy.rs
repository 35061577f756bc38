//! The configurations shipped in `deploy/` load with the real parser once their placeholders
//! are filled in, so they cannot drift from what the server accepts; and the manifests say
//! what docs/operations.md promises (probes on the health service, keys from a Secret, replicas).

use std::path::Path;

use crate::support::ops::{TestCa, sha256_hex};
use vod_signer::config::Config;

const MANIFEST: &str = include_str!("../../deploy/kubernetes/vod-signer.yaml");
const SYSTEMD_UNIT: &str = include_str!("../../deploy/systemd/vod-signer.service");
const SYSTEMD_TOML: &str = include_str!("../../deploy/systemd/vod-signer.toml");

/// The `vod-signer.toml` block of the ConfigMap (a YAML literal block indented 4 spaces).
fn configmap_toml() -> String {
    let start = MANIFEST
        .find("vod-signer.toml: |\n")
        .expect("the ConfigMap holds vod-signer.toml")
        + "vod-signer.toml: |\n".len();
    MANIFEST[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fills the placeholders and points absolute secret paths into `dir`.
fn filled(toml: &str, secrets_dir: &str, dir: &Path) -> String {
    toml.replace("REPLACE_WITH_YOUR_SECRET_ID", "AKIDdeployTest")
        .replace(
            "REPLACE_WITH_SHA256_OF_THE_CALLER_TOKEN",
            &sha256_hex("deploy-test-token"),
        )
        .replace(secrets_dir, &dir.display().to_string())
}

#[test]
fn the_kubernetes_configmap_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vod-secret-key"), "deploy-test-key").unwrap();
    let toml = filled(&configmap_toml(), "/var/run/secrets/vod-signer", dir.path());
    let config = Config::from_toml_str(&toml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.quota.redis_url.is_some());
    assert!(config.metrics_listen.is_some());

    // Unedited, it must refuse to start rather than serve with a placeholder.
    let unedited = configmap_toml().replace(
        "/var/run/secrets/vod-signer",
        &dir.path().display().to_string(),
    );
    let error = Config::from_toml_str(&unedited, dir.path()).unwrap_err();
    assert!(error.field_name().is_some(), "{error}");
}

#[test]
fn the_systemd_configuration_loads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("deploy CA");
    let (cert, key) = ca.leaf("localhost");
    for (name, contents) in [
        ("vod-secret-key", "deploy-test-key".to_owned()),
        ("tls.pem", cert),
        ("tls.key", key),
        ("clients-ca.pem", ca.pem()),
    ] {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let toml = filled(
        SYSTEMD_TOML,
        "/run/credentials/vod-signer.service",
        dir.path(),
    );
    let config = Config::from_toml_str(&toml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tls.as_ref().is_some_and(|tls| tls.client_auth));

    // Every file the configuration reads is handed over as a credential by the unit.
    for credential in ["vod-secret-key", "tls.pem", "tls.key", "clients-ca.pem"] {
        assert!(
            SYSTEMD_UNIT.contains(&format!("LoadCredential={credential}:")),
            "{credential}"
        );
        assert!(
            SYSTEMD_TOML.contains(&format!("/run/credentials/vod-signer.service/{credential}"))
        );
    }
    for hardening in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(SYSTEMD_UNIT.contains(hardening), "{hardening}");
    }
}

#[test]
fn the_manifest_probes_the_health_service_and_mounts_keys_from_a_secret() {
    assert!(MANIFEST.contains("service: vod.signer.v1.UploadSigner"));
    assert!(MANIFEST.contains("readinessProbe:\n            grpc:"));
    assert!(MANIFEST.contains("livenessProbe:\n            grpc:"));
    assert!(MANIFEST.contains("secretName: vod-signer-keys"));
    assert!(MANIFEST.contains("replicas: 3"));
    assert!(MANIFEST.contains("redis_url = \"redis://vod-signer-redis:6379/\""));
    assert!(MANIFEST.contains("name: vod-signer-redis"));
    // No secret value of any kind is written into the manifest.
    assert!(!MANIFEST.contains("kind: Secret"));
}
