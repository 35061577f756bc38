//! `[tls]`: the server's certificate chain and key, and optionally the CA that signs client
//! certificates.
//!
//! ```toml
//! [tls]
//! cert_file = "tls/server.pem"          # the chain, leaf first
//! key_file = "tls/server.key"           # PKCS#8, PKCS#1 or SEC1
//! client_ca_file = "tls/clients-ca.pem" # optional: then clients must present a certificate
//! ```
//!
//! TLS files are read and checked here, so a reload with a missing or mismatched certificate
//! fails as a whole like any other configuration error, and errors never quote file contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

/// A loaded and checked TLS server configuration (rustls, `ring` provider, ALPN `h2`).
#[derive(Clone)]
pub struct TlsSettings {
    pub server_config: Arc<rustls::ServerConfig>,
    /// True when `client_ca_file` is set: clients without a certificate it signed are refused
    /// during the handshake.
    pub client_auth: bool,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

pub(super) fn tls(
    raw: Option<RawTls>,
    base_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let certs = read_certificates("tls.cert_file", &base_dir.join(&raw.cert_file))?;
    let key_path = base_dir.join(&raw.key_file);
    let key_pem = read("tls.key_file", &key_path)?;
    warnings.extend(super::file_mode::exposed("tls.key_file", &key_path));
    // The parser's own errors may quote a line of the file: not for a private key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        ConfigError::field(
            "tls.key_file",
            format!("{}: no PEM private key found", key_path.display()),
        )
    })?;
    drop(zeroize::Zeroizing::new(key_pem));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::field("tls", e))?;
    let client_auth = raw.client_ca_file.is_some();
    let builder = match raw.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates("tls.client_ca_file", &base_dir.join(&path))? {
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::field("tls.client_ca_file", e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| ConfigError::field("tls.client_ca_file", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server_config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError::field(
            "tls",
            format!("cert_file and key_file do not make a usable pair: {e}"),
        )
    })?;
    // gRPC runs over HTTP/2 only; clients that negotiate ALPN must be offered it.
    server_config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsSettings {
        server_config: Arc::new(server_config),
        client_auth,
    }))
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::field(field, format!("{}: {e}", path.display())))
}

fn read_certificates(
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ConfigError::field(
                field,
                format!("{}: not a PEM certificate file", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::field(
            field,
            format!("{}: no CERTIFICATE found", path.display()),
        ));
    }
    Ok(certs)
}
