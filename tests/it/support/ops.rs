//! For the `ops_*` tests: configurations written to a FILE (so a server can reload them), a
//! server with its metrics endpoint (`vod_signer::testing::TestServer`), and test certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
#[allow(unused_imports)] // each test binary uses a different part
pub use vod_signer::testing::{
    IssueGate, ManualClock, TestServer, authed, http_get, series, sha256_hex,
};

pub const TOKEN: &str = "ops-test-token-1";
pub const OTHER_TOKEN: &str = "ops-test-token-2";
/// Key material lives only in files of the test's temporary directory.
pub const KEY_A: (&str, &str) = ("AKIDopsKeyA", "ops-secret-key-a-never-logged");
pub const KEY_B: (&str, &str) = ("AKIDopsKeyB", "ops-secret-key-b-never-logged");

/// A directory holding a configuration file and the secrets it names.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        for (id, key) in [KEY_A, KEY_B] {
            std::fs::write(dir.path().join(id), key).unwrap();
        }
        ConfigDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vod-signer.toml")
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
    }

    /// Writes the configuration file; the write is atomic (rename) so a reload racing with
    /// it reads the old or the new file, never half of one.
    pub fn write_config(&self, toml: &str) {
        let tmp = self.dir.path().join(".vod-signer.toml.tmp");
        std::fs::write(&tmp, toml).unwrap();
        std::fs::rename(tmp, self.config_path()).unwrap();
    }

    pub fn load(&self) -> Config {
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("test config: {e}"))
    }
}

/// `[[keys]]` for `active` (and the other key as verify-only when `both`), then `extra`,
/// then one caller with [`TOKEN`] and `caller_extra` in its table.
pub fn config_toml(active: (&str, &str), both: bool, extra: &str, caller_extra: &str) -> String {
    let mut toml = format!(
        "listen = \"127.0.0.1:0\"\n{extra}\n\n[[keys]]\nsecret_id = \"{0}\"\nsecret_key_file = \"{0}\"\nactive = true\n",
        active.0
    );
    if both {
        let other = if active.0 == KEY_A.0 { KEY_B } else { KEY_A };
        toml.push_str(&format!(
            "\n[[keys]]\nsecret_id = \"{0}\"\nsecret_key_file = \"{0}\"\nactive = false\n",
            other.0
        ));
    }
    toml.push_str(&format!(
        "\n[[callers]]\nname = \"bff\"\ntoken_sha256 = \"{}\"\n{caller_extra}\n",
        sha256_hex(TOKEN)
    ));
    toml
}

/// A server with `/metrics` on a loopback port, as every ops test reads it.
pub async fn start_metered(config: Config) -> TestServer {
    TestServer::builder(config).metrics().start().await
}

pub fn issue_request(user: &str) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id: user.to_owned(),
        validity_seconds: 600,
        params: None,
    }
}

pub async fn issue(
    client: &mut UploadSignerClient<Channel>,
    user: &str,
) -> Result<pb::IssueSignatureResponse, Status> {
    client
        .issue_signature(authed(issue_request(user), TOKEN))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn verify(
    client: &mut UploadSignerClient<Channel>,
    signature: &str,
) -> pb::VerifySignatureResponse {
    client
        .verify_signature(authed(
            pb::VerifySignatureRequest {
                signature: signature.to_owned(),
            },
            TOKEN,
        ))
        .await
        .expect("verify answers")
        .into_inner()
}

/// A test CA and certificates it signs.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, private key PEM) for `name`.
    pub fn leaf(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client channel to `addr` for host name `localhost`, trusting `ca_pem`, presenting
/// `identity` (cert, key) if given. Errors are returned: refusing them is what some tests
/// check.
pub async fn tls_client(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<UploadSignerClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(UploadSignerClient::new(channel))
}
