//! `[transport]`: limits on calls and connections.
//!
//! ```toml
//! [transport]
//! call_timeout_seconds = 30
//! http2_keepalive_interval_seconds = 30
//! http2_keepalive_timeout_seconds = 10
//! max_connection_age_seconds = 600      # optional
//! max_connection_age_grace_seconds = 30 # optional
//! max_request_bytes = 65536
//! handshake_timeout_seconds = 5
//! request_body_timeout_ms = 5000
//! max_connections = 1024
//! max_concurrent_requests_per_connection = 64
//! max_health_watches = 64
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Default and ceiling of `call_timeout_seconds`: every call is microseconds of work, so one
/// still running after this is stuck; a larger ceiling would only keep stuck calls around.
pub(super) const DEFAULT_CALL_TIMEOUT_SECONDS: u32 = 30;
pub(super) const MAX_CALL_TIMEOUT_SECONDS: u32 = 300;
/// Default and ceiling of `max_request_bytes`. The largest legitimate request (every text
/// field at its limit, in 4-byte characters) is under 8 KiB; a signature to verify is at most
/// 32 KiB.
pub(super) const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
pub(super) const MAX_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_KEEPALIVE_INTERVAL_SECONDS: u32 = 30;
/// Default of `max_concurrent_requests`: calls accepted and not yet answered, queued or
/// running. A call is tens of microseconds of CPU, so 256 calls are a few milliseconds of work
/// for two cores; beyond that, calls only wait longer, and the wait is not fair (calls that
/// arrived on one connection run in a batch). Under heavy closed-loop load this bound served
/// more calls per second, with a shorter tail, than no bound (BENCHMARKS.md, "Measurements
/// behind design choices"). Clients retry UNAVAILABLE with backoff.
pub(super) const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 256;
/// Default of `max_concurrent_streams` (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection).
/// 0 in the file advertises no limit, and one client could then open any number of streams.
/// Equal to the default share of one connection (`max_concurrent_requests_per_connection`):
/// a client that wants more waits in its own HTTP/2 stack (backpressure) instead of being
/// refused, and a refusal costs both sides the work of a call that is not served.
pub(super) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 64;
/// Default of `max_concurrent_requests_per_connection`: a quarter of the default
/// `max_concurrent_requests`, so no single connection can take every place; capped at
/// `max_concurrent_requests` when that is set lower.
pub(super) const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CONNECTION: u32 = 64;
/// Default and ceiling of `handshake_timeout_seconds`: from accept to the end of the TLS
/// handshake (if any) and the client's HTTP/2 preface. A real client does both in a few round
/// trips; a socket that stays silent only holds a file descriptor and memory.
pub(super) const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u32 = 5;
pub(super) const MAX_HANDSHAKE_TIMEOUT_SECONDS: u32 = 60;
/// Default and ceiling of `request_body_timeout_ms`: how long after its headers a call's
/// request message may take to arrive. Callers send the message with the headers; a stream
/// whose message does not come holds a place among the calls in flight for nothing.
pub(super) const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u32 = 5_000;
pub(super) const MAX_REQUEST_BODY_TIMEOUT_MS: u32 = 60_000;
/// Default of `max_connections`: open client connections (including those still in their
/// handshake). Each costs a file descriptor and some memory; the process's descriptor limit
/// must be above it.
pub(super) const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default of `max_health_watches`: health `Watch` streams stay open until the client goes
/// away, so they are bounded on their own; a probe can always use `Check`.
pub(super) const DEFAULT_MAX_HEALTH_WATCHES: u32 = 64;
/// Default of `max_queue_delay_ms`: how long an accepted `UploadSigner` call may wait for a
/// worker thread before it is refused instead of started. A call is microseconds of work, so
/// a wait this long means the server is past saturation; the answer would come late for
/// every call behind it too.
pub(super) const DEFAULT_MAX_QUEUE_DELAY_MS: u32 = 20;
/// Upper end of `max_queue_delay_ms`: beyond this the bound would not bound anything.
pub(super) const MAX_MAX_QUEUE_DELAY_MS: u32 = 60_000;
const DEFAULT_KEEPALIVE_TIMEOUT_SECONDS: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    call_timeout_seconds: Option<u32>,
    http2_keepalive_interval_seconds: Option<u32>,
    http2_keepalive_timeout_seconds: Option<u32>,
    max_connection_age_seconds: Option<u32>,
    max_connection_age_grace_seconds: Option<u32>,
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
    /// How long a connection past `max_connection_age` may keep calls open (a health or
    /// upload `Watch`, a slow call) before it is closed anyway, as tonic's
    /// `max_connection_age_grace`; `None` waits for them.
    pub max_connection_age_grace: Option<Duration>,
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
            max_connection_age_grace: None,
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
    let max_connection_age_grace = match raw.max_connection_age_grace_seconds {
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
        max_connection_age_grace,
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
