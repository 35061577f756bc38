//! TLS connections whose certificates can change while the server runs.
//!
//! tonic's own `ServerTlsConfig` is fixed when the server starts, so certificates could not
//! reload with the configuration. Here every handshake takes the rustls configuration current
//! at that moment from an [`ArcSwap`]: a reload swaps it, new connections use the new
//! certificates (and client CA), and established connections keep theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use super::connections::{Accepted, take_place};
use crate::metrics::Metrics;

/// Connections whose handshakes are done, waiting for the server to take them.
const READY_BACKLOG: usize = 64;

/// Accepts TCP connections on `listener` (each taking one of `places`, or closed at once) and
/// yields them once their TLS handshake (with the configuration in `config` at accept time)
/// has succeeded within `handshake_timeout`; a client still handshaking then is dropped,
/// since idle half-open connections would otherwise pile up. Handshakes run concurrently, so
/// a slow client does not hold up the others. A failed handshake, e.g. a client without the
/// certificate mTLS requires, closes that connection, is logged at debug level (a port scan
/// should not flood the log) and counted in `metrics`.
///
/// Accepting stops when the returned receiver is dropped (the server has shut down).
pub(super) fn incoming(
    listener: TcpListener,
    config: Arc<ArcSwap<ServerConfig>>,
    places: Arc<tokio::sync::Semaphore>,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
) -> mpsc::Receiver<Accepted<TlsStream<TcpStream>>> {
    let (ready, stream) = mpsc::channel(READY_BACKLOG);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = ready.closed() => break,
            };
            let Some(place) = take_place(&places, &metrics, peer) else {
                continue;
            };
            let at = Instant::now();
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.load_full());
            let ready = ready.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(io)) => {
                        let _ = ready.send(Accepted { io, place, at }).await;
                    }
                    Ok(Err(error)) => {
                        metrics.tls_handshake_failed(false);
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics.tls_handshake_failed(true);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    stream
}
