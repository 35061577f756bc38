//! TLS connections whose certificates can change while the server runs.
//!
//! tonic's own `ServerTlsConfig` is fixed when the server starts, so certificates could not
//! reload with the configuration. Here every handshake takes the rustls configuration current
//! at that moment from an [`ArcSwap`]: a reload swaps it, new connections use the new
//! certificates (and client CA), and established connections keep theirs.
//!
//! The handshake runs on the connection's own task (see `connections`), so handshakes proceed
//! side by side and a slow client holds up nobody else; the stream it yields is served like
//! a plain TCP one.

use std::net::SocketAddr;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::metrics::Metrics;

/// The TLS stream over `tcp` once its handshake (with the configuration in `config` now) has
/// succeeded before `deadline`, or `None`: a client still handshaking then is dropped, since
/// idle half-open connections would otherwise pile up. A failed handshake, e.g. a client
/// without the certificate mTLS requires, is logged at debug level (a port scan should not
/// flood the log) and counted in `metrics`.
pub(super) async fn handshake(
    tcp: TcpStream,
    config: &ArcSwap<ServerConfig>,
    deadline: Instant,
    metrics: &Metrics,
    peer: Option<SocketAddr>,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(config.load_full());
    match tokio::time::timeout_at(deadline.into(), acceptor.accept(tcp)).await {
        Ok(Ok(io)) => Some(io),
        Ok(Err(error)) => {
            metrics.tls_handshake_failed(false);
            tracing::debug!(?peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.tls_handshake_failed(true);
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}
