//! A real server for the `ops_*` tests, started from a configuration FILE (so it can be
//! reloaded), with its metrics endpoint and a reload handle; and test certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Request, Status};

use vod_signer::config::Config;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
use vod_signer::server::{ReloadHandle, ServeOptions, ServerError, reload_channel, serve_with};
use vod_signer::service::Clock;

pub const TOKEN: &str = "ops-test-token-1";
pub const OTHER_TOKEN: &str = "ops-test-token-2";
/// Key material lives only in files of the test's temporary directory.
pub const KEY_A: (&str, &str) = ("AKIDopsKeyA", "ops-secret-key-a-never-logged");
pub const KEY_B: (&str, &str) = ("AKIDopsKeyB", "ops-secret-key-b-never-logged");

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

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

pub struct OpsServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub reload: ReloadHandle,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl OpsServer {
    pub async fn start(config: Config) -> OpsServer {
        OpsServer::start_with_clock(config, Clock::System).await
    }

    pub async fn start_with_clock(config: Config, clock: Clock) -> OpsServer {
        let options = ServeOptions {
            clock,
            ..ServeOptions::default()
        };
        OpsServer::start_with(config, options).await
    }

    /// With `options`; its metrics listener and reload requests are the helper's own.
    pub async fn start_with(config: Config, options: ServeOptions) -> OpsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let (reload, requests) = reload_channel();
        let options = ServeOptions {
            metrics_listener: Some(metrics),
            reload: Some(requests),
            ..options
        };
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let handle = tokio::spawn(serve_with(config, listener, shutdown, options));
        OpsServer {
            addr,
            metrics_addr,
            reload,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn client(&self) -> UploadSignerClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        UploadSignerClient::new(channel)
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        let (status, body) = http_get(self.metrics_addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("the server stops")
            .expect("the server task does not panic")
            .expect("the server returns Ok");
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A minimal HTTP/1.1 GET (the metrics endpoint is plain HTTP; no client library needed).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The value of one series in a metrics exposition, e.g.
/// `vod_signer_signatures_issued_total{caller="bff"}`; `None` if absent.
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
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
