//! The operations part of the configuration: `metrics_listen`, `[tls]`, `[quota]` and
//! `[transport]`.
//!
//! ```toml
//! metrics_listen = "127.0.0.1:9090"
//!
//! [tls]
//! cert_file = "tls/server.pem"          # the chain, leaf first
//! key_file = "tls/server.key"           # PKCS#8, PKCS#1 or SEC1
//! client_ca_file = "tls/clients-ca.pem" # optional: then clients must present a certificate
//!
//! [quota]
//! redis_url = "redis://redis:6379/"     # optional: without it, counts stay in this process
//! on_store_error = "deny"               # or "allow"
//! store_timeout_ms = 250
//!
//! [transport]
//! call_timeout_seconds = 30
//! http2_keepalive_interval_seconds = 30
//! http2_keepalive_timeout_seconds = 10
//! max_connection_age_seconds = 600      # optional
//! max_request_bytes = 65536
//! handshake_timeout_seconds = 5
//! request_body_timeout_ms = 5000
//! max_connections = 1024
//! max_concurrent_requests_per_connection = 64
//! max_health_watches = 64
//! ```
//!
//! TLS files are read and checked here, so a reload with a missing or mismatched certificate
//! fails as a whole like any other configuration error, and errors never quote file contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;
use crate::quota::{DEFAULT_STORE_TIMEOUT, OnStoreError};

/// Default and ceiling of `call_timeout_seconds`: every call is microseconds of work, so one
/// still running after this is stuck; a larger ceiling would only keep stuck calls around.
pub const DEFAULT_CALL_TIMEOUT_SECONDS: u32 = 30;
pub const MAX_CALL_TIMEOUT_SECONDS: u32 = 300;
/// Default and ceiling of `max_request_bytes`. The largest legitimate request (every text
/// field at its limit, in 4-byte characters) is under 8 KiB; a signature to verify is at most
/// 32 KiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
pub const MAX_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_KEEPALIVE_INTERVAL_SECONDS: u32 = 30;
/// Default of `max_concurrent_requests`: calls accepted and not yet answered, queued or
/// running. A call is tens of microseconds of CPU, so 256 calls are a few milliseconds of work
/// for two cores; beyond that, calls only wait longer, and the wait is not fair (calls that
/// arrived on one connection run in a batch). Under heavy closed-loop load this bound served
/// more calls per second, with a shorter tail, than no bound (BENCHMARKS.md, "Measurements
/// behind design choices"). Clients retry UNAVAILABLE with backoff.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 256;
/// Default of `max_concurrent_streams` (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection).
/// 0 in the file advertises no limit, and one client could then open any number of streams.
/// Equal to the default share of one connection (`max_concurrent_requests_per_connection`):
/// a client that wants more waits in its own HTTP/2 stack (backpressure) instead of being
/// refused, and a refusal costs both sides the work of a call that is not served.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 64;
/// Default of `max_concurrent_requests_per_connection`: a quarter of the default
/// `max_concurrent_requests`, so no single connection can take every place; capped at
/// `max_concurrent_requests` when that is set lower.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION: u32 = 64;
/// Default and ceiling of `handshake_timeout_seconds`: from accept to the end of the TLS
/// handshake (if any) and the client's HTTP/2 preface. A real client does both in a few round
/// trips; a socket that stays silent only holds a file descriptor and memory.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u32 = 5;
pub const MAX_HANDSHAKE_TIMEOUT_SECONDS: u32 = 60;
/// Default and ceiling of `request_body_timeout_ms`: how long after its headers a call's
/// request message may take to arrive. Callers send the message with the headers; a stream
/// whose message does not come holds a place among the calls in flight for nothing.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u32 = 5_000;
pub const MAX_REQUEST_BODY_TIMEOUT_MS: u32 = 60_000;
/// Default of `max_connections`: open client connections (including those still in their
/// handshake). Each costs a file descriptor and some memory; the process's descriptor limit
/// must be above it.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default of `max_health_watches`: health `Watch` streams stay open until the client goes
/// away, so they are bounded on their own; a probe can always use `Check`.
pub const DEFAULT_MAX_HEALTH_WATCHES: u32 = 64;
/// Default of `max_queue_delay_ms`: how long an accepted `UploadSigner` call may wait for a
/// worker thread before it is refused instead of started. A call is microseconds of work, so
/// a wait this long means the server is past saturation; the answer would come late for
/// every call behind it too.
pub const DEFAULT_MAX_QUEUE_DELAY_MS: u32 = 20;
/// Upper end of `max_queue_delay_ms`: beyond this the bound would not bound anything.
pub const MAX_MAX_QUEUE_DELAY_MS: u32 = 60_000;
const DEFAULT_KEEPALIVE_TIMEOUT_SECONDS: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    redis_url: Option<String>,
    on_store_error: Option<String>,
    store_timeout_ms: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    call_timeout_seconds: Option<u32>,
    http2_keepalive_interval_seconds: Option<u32>,
    http2_keepalive_timeout_seconds: Option<u32>,
    max_connection_age_seconds: Option<u32>,
    max_request_bytes: Option<usize>,
    max_concurrent_requests: Option<u32>,
    max_concurrent_streams: Option<u32>,
    max_queue_delay_ms: Option<u32>,
    handshake_timeout_seconds: Option<u32>,
    request_body_timeout_ms: Option<u32>,
    max_connections: Option<u32>,
    max_concurrent_requests_per_connection: Option<u32>,
    max_health_watches: Option<u32>,
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

/// `[quota]`: where per-user counts are kept and what happens when that store fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `None`: counts stay in this process (one replica's budget).
    pub redis_url: Option<RedisUrl>,
    pub on_store_error: OnStoreError,
    pub store_timeout: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            redis_url: None,
            on_store_error: OnStoreError::default(),
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }
}

/// A Redis URL. It may carry a password, so it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

/// `[transport]`: limits on calls and connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// Upper bound on any call, whatever `grpc-timeout` the client sent (or none).
    pub call_timeout: Duration,
    /// HTTP/2 PING interval on idle connections; `None` (0 in the file) sends none.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// Connections are closed gracefully after this long, so clients reconnect and spread
    /// over new replicas; `None` keeps them for ever.
    pub max_connection_age: Option<Duration>,
    /// Largest request message accepted; larger ones are refused with OUT_OF_RANGE.
    pub max_request_bytes: usize,
    /// `UploadSigner` calls handled at once, over all connections; more are refused at once
    /// with UNAVAILABLE. `None` (0 in the file) sets no bound.
    pub max_concurrent_requests: Option<usize>,
    /// Streams one HTTP/2 connection may have open (the client waits for more). `None` (0 in
    /// the file) sets no bound.
    pub max_concurrent_streams: Option<u32>,
    /// How long an accepted `UploadSigner` call may wait to be started (the runtime's queue)
    /// before it is refused with UNAVAILABLE instead. `None` (0 in the file) lets calls
    /// wait up to their deadline.
    pub max_queue_delay: Option<Duration>,
    /// From accept until the TLS handshake (if any) and the HTTP/2 preface are done; a
    /// connection still silent then is closed.
    pub handshake_timeout: Duration,
    /// How long a call's request message may take to arrive after its headers; then the call
    /// is answered DEADLINE_EXCEEDED and its stream closed.
    pub request_body_timeout: Duration,
    /// Open client connections; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// `UploadSigner` calls one connection may have in flight; more on that connection are
    /// refused with UNAVAILABLE. `None` (0 in the file) sets no bound but the global one.
    pub max_concurrent_requests_per_connection: Option<usize>,
    /// Health `Watch` streams open at once, over all connections; more get RESOURCE_EXHAUSTED.
    pub max_health_watches: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            call_timeout: secs(DEFAULT_CALL_TIMEOUT_SECONDS),
            http2_keepalive_interval: Some(secs(DEFAULT_KEEPALIVE_INTERVAL_SECONDS)),
            http2_keepalive_timeout: secs(DEFAULT_KEEPALIVE_TIMEOUT_SECONDS),
            max_connection_age: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_concurrent_requests: Some(DEFAULT_MAX_CONCURRENT_REQUESTS as usize),
            max_concurrent_streams: Some(DEFAULT_MAX_CONCURRENT_STREAMS),
            max_queue_delay: Some(Duration::from_millis(u64::from(DEFAULT_MAX_QUEUE_DELAY_MS))),
            handshake_timeout: secs(DEFAULT_HANDSHAKE_TIMEOUT_SECONDS),
            request_body_timeout: Duration::from_millis(u64::from(DEFAULT_REQUEST_BODY_TIMEOUT_MS)),
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_concurrent_requests_per_connection: Some(
                DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION as usize,
            ),
            max_health_watches: DEFAULT_MAX_HEALTH_WATCHES as usize,
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

pub(super) fn quota(raw: Option<RawQuota>) -> Result<QuotaSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(QuotaSettings::default());
    };
    let redis_url = match raw.redis_url {
        Some(url) => {
            // Only the scheme is checked here; the URL is parsed when the store is built, and
            // neither step quotes it, since it may carry a password.
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                return Err(ConfigError::field(
                    "quota.redis_url",
                    "must start with redis:// (or redis+unix://)",
                ));
            }
            Some(RedisUrl(url))
        }
        None => None,
    };
    let on_store_error = match raw.on_store_error.as_deref() {
        None => OnStoreError::default(),
        Some(value) => OnStoreError::parse(value).ok_or_else(|| {
            ConfigError::field(
                "quota.on_store_error",
                format!("{value:?} is not \"allow\" or \"deny\""),
            )
        })?,
    };
    let store_timeout = match raw.store_timeout_ms {
        None => DEFAULT_STORE_TIMEOUT,
        Some(ms @ 1..=10_000) => Duration::from_millis(u64::from(ms)),
        Some(ms) => {
            return Err(ConfigError::field(
                "quota.store_timeout_ms",
                format!("{ms} is not between 1 and 10000"),
            ));
        }
    };
    Ok(QuotaSettings {
        redis_url,
        on_store_error,
        store_timeout,
    })
}

pub(super) fn transport(raw: Option<RawTransport>) -> Result<TransportSettings, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TransportSettings::default());
    };
    let defaults = TransportSettings::default();
    let call_timeout = match raw.call_timeout_seconds {
        None => defaults.call_timeout,
        Some(s @ 1..=MAX_CALL_TIMEOUT_SECONDS) => secs(s),
        Some(s) => {
            return Err(ConfigError::field(
                "transport.call_timeout_seconds",
                format!("{s} is not between 1 and {MAX_CALL_TIMEOUT_SECONDS}"),
            ));
        }
    };
    let http2_keepalive_interval = match raw.http2_keepalive_interval_seconds {
        None => defaults.http2_keepalive_interval,
        Some(0) => None,
        Some(s) => Some(secs(s)),
    };
    let http2_keepalive_timeout = match raw.http2_keepalive_timeout_seconds {
        None => defaults.http2_keepalive_timeout,
        Some(0) => {
            return Err(ConfigError::field(
                "transport.http2_keepalive_timeout_seconds",
                "must be at least 1",
            ));
        }
        Some(s) => secs(s),
    };
    let max_connection_age = match raw.max_connection_age_seconds {
        None | Some(0) => None,
        Some(s) => Some(secs(s)),
    };
    let max_request_bytes = match raw.max_request_bytes {
        None => defaults.max_request_bytes,
        Some(n @ 1024..=MAX_MAX_REQUEST_BYTES) => n,
        Some(n) => {
            return Err(ConfigError::field(
                "transport.max_request_bytes",
                format!("{n} is not between 1024 and {MAX_MAX_REQUEST_BYTES}"),
            ));
        }
    };
    let max_concurrent_requests = match raw.max_concurrent_requests {
        None => defaults.max_concurrent_requests,
        Some(0) => None,
        Some(n) => Some(n as usize),
    };
    let max_concurrent_streams = match raw.max_concurrent_streams {
        None => defaults.max_concurrent_streams,
        Some(0) => None,
        Some(n) => Some(n),
    };
    let max_queue_delay = match raw.max_queue_delay_ms {
        None => defaults.max_queue_delay,
        Some(0) => None,
        Some(ms @ 1..=MAX_MAX_QUEUE_DELAY_MS) => Some(Duration::from_millis(u64::from(ms))),
        Some(ms) => {
            return Err(ConfigError::field(
                "transport.max_queue_delay_ms",
                format!("{ms} is not between 0 (no bound) and {MAX_MAX_QUEUE_DELAY_MS}"),
            ));
        }
    };
    let handshake_timeout = match raw.handshake_timeout_seconds {
        None => defaults.handshake_timeout,
        Some(s @ 1..=MAX_HANDSHAKE_TIMEOUT_SECONDS) => secs(s),
        Some(s) => {
            return Err(ConfigError::field(
                "transport.handshake_timeout_seconds",
                format!("{s} is not between 1 and {MAX_HANDSHAKE_TIMEOUT_SECONDS}"),
            ));
        }
    };
    let request_body_timeout = match raw.request_body_timeout_ms {
        None => defaults.request_body_timeout,
        Some(ms @ 1..=MAX_REQUEST_BODY_TIMEOUT_MS) => Duration::from_millis(u64::from(ms)),
        Some(ms) => {
            return Err(ConfigError::field(
                "transport.request_body_timeout_ms",
                format!("{ms} is not between 1 and {MAX_REQUEST_BODY_TIMEOUT_MS}"),
            ));
        }
    };
    let max_connections = match raw.max_connections {
        None => defaults.max_connections,
        Some(0) => {
            return Err(ConfigError::field(
                "transport.max_connections",
                "must be at least 1",
            ));
        }
        Some(n) => n as usize,
    };
    let max_concurrent_requests_per_connection = match raw.max_concurrent_requests_per_connection {
        // The default share never exceeds the whole.
        None => match (
            defaults.max_concurrent_requests_per_connection,
            max_concurrent_requests,
        ) {
            (Some(share), Some(all)) => Some(share.min(all)),
            (share, _) => share,
        },
        Some(0) => None,
        Some(n) => match max_concurrent_requests {
            Some(all) if n as usize > all => {
                return Err(ConfigError::field(
                    "transport.max_concurrent_requests_per_connection",
                    format!("{n} is more than max_concurrent_requests ({all})"),
                ));
            }
            _ => Some(n as usize),
        },
    };
    let max_health_watches = match raw.max_health_watches {
        None => defaults.max_health_watches,
        Some(0) => {
            return Err(ConfigError::field(
                "transport.max_health_watches",
                "must be at least 1 (probes that cannot watch use Check)",
            ));
        }
        Some(n) => n as usize,
    };
    Ok(TransportSettings {
        call_timeout,
        http2_keepalive_interval,
        http2_keepalive_timeout,
        max_connection_age,
        max_request_bytes,
        max_concurrent_requests,
        max_concurrent_streams,
        max_queue_delay,
        handshake_timeout,
        request_body_timeout,
        max_connections,
        max_concurrent_requests_per_connection,
        max_health_watches,
    })
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
