//! The accept loop and the HTTP/2 connections, served by hyper directly.
//!
//! tonic's own `Server` hides the moment a stream arrives (see `admission`), so connections
//! are served here with hyper's HTTP/2 server and the same settings tonic would apply:
//! keepalive PINGs, a bound on streams per connection, a maximum connection age, and a
//! graceful shutdown that stops accepting, lets open calls finish and then returns.
//!
//! Connections that would otherwise cost resources for nothing are closed: beyond
//! `max_connections` at once when accepted; without the client's HTTP/2 preface (and TLS
//! handshake) within `handshake_timeout_seconds`; at shutdown, as soon as no stream is open
//! on them, instead of waiting for a client that may never answer the GOAWAY.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::preface::PrefaceSeen;
use super::streams::{ConnectionStreams, Streams, Watches};
use crate::config::TransportSettings;
use crate::metrics::Metrics;

/// Where connections come from: plain TCP, or TLS streams whose handshake is done.
pub(super) enum Incoming<T> {
    Tcp(TcpListener),
    Tls(tokio::sync::mpsc::Receiver<Accepted<T>>),
}

/// A connection that holds one of the `max_connections` places, and when it was accepted.
pub(super) struct Accepted<T> {
    pub io: T,
    pub place: OwnedSemaphorePermit,
    pub at: Instant,
}

/// The places of `max_connections`, shared by the plain and the TLS accept loops.
pub(super) fn places(max_connections: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)))
}

/// A place for a connection just accepted, or `None` (counted, logged) if every one is taken:
/// the caller then closes it at once, so its client learns and can go elsewhere, instead of
/// waiting in the listen queue.
pub(super) fn take_place(
    places: &Arc<Semaphore>,
    metrics: &Metrics,
    peer: std::net::SocketAddr,
) -> Option<OwnedSemaphorePermit> {
    match places.clone().try_acquire_owned() {
        Ok(place) => Some(place),
        Err(_) => {
            metrics.connection_refused();
            tracing::debug!(%peer, "connection closed at once: max_connections are open");
            None
        }
    }
}

/// What every connection is served with, besides its stream service.
pub(super) struct ConnectionLimits {
    pub max_connection_age: Option<Duration>,
    pub handshake_timeout: Duration,
    pub watches: Arc<Watches>,
    pub places: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

/// How long an idle connection gets at shutdown to finish the GOAWAY exchange on its own
/// before it is dropped: a loopback or LAN client answers in well under this.
const IDLE_LINGER: Duration = Duration::from_millis(100);

/// What serving connections needs of the service: hyper's `Service` for HTTP/2 streams,
/// shared by every connection.
pub(super) trait StreamService:
    hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<crate::metrics::MeteredBody>,
        Error = std::convert::Infallible,
        Future: Send + Unpin + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> StreamService for S where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<crate::metrics::MeteredBody>,
            Error = std::convert::Infallible,
            Future: Send + Unpin + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The HTTP/2 settings of every connection, from `[transport]`.
pub(super) fn http2_builder(transport: &TransportSettings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        // Keepalive PINGs and their timeout need a timer.
        .timer(TokioTimer::new())
        // Dead peers (a vanished NAT entry, a crashed client) are noticed and their
        // connections closed instead of being kept for ever.
        .keep_alive_interval(transport.http2_keepalive_interval)
        .keep_alive_timeout(transport.http2_keepalive_timeout)
        .max_concurrent_streams(transport.max_concurrent_streams);
    builder
}

/// Serves every connection from `incoming` with the service `for_connection` makes for each,
/// until `shutdown` completes; then stops accepting (the listening socket is closed at once),
/// asks every connection to finish gracefully (GOAWAY; calls in flight complete), closes the
/// idle ones, and returns when all have closed.
pub(super) async fn serve<T, S>(
    incoming: Incoming<T>,
    builder: http2::Builder<TokioExecutor>,
    for_connection: impl Fn() -> S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: StreamService,
{
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut incoming = incoming;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            io = next(&mut incoming, &limits) => match io {
                Some(Connection::Tcp(tcp)) => spawn(tcp, &builder, for_connection(), &limits, stopped.clone()),
                Some(Connection::Tls(tls)) => spawn(tls, &builder, for_connection(), &limits, stopped.clone()),
                None => break,
            },
        }
    }
    // Dropping the listener closes the socket: new clients are refused at once instead of
    // completing a TCP handshake nobody will answer.
    drop(incoming);
    drop(stopped);
    let _ = stop.send(());
    stop.closed().await;
}

enum Connection<T> {
    Tcp(Accepted<TcpStream>),
    Tls(Accepted<T>),
}

async fn next<T>(incoming: &mut Incoming<T>, limits: &ConnectionLimits) -> Option<Connection<T>> {
    match incoming {
        Incoming::Tcp(listener) => loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let Some(place) = take_place(&limits.places, &limits.metrics, peer) else {
                        continue;
                    };
                    // gRPC calls are small request/response exchanges: Nagle would only
                    // delay them.
                    let _ = tcp.set_nodelay(true);
                    return Some(Connection::Tcp(Accepted {
                        io: tcp,
                        place,
                        at: Instant::now(),
                    }));
                }
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        },
        Incoming::Tls(ready) => ready.recv().await.map(Connection::Tls),
    }
}

/// Serves one connection on a task of its own, until the peer closes it, it stays silent
/// past the handshake timeout, it reaches its maximum age, or the server shuts down (both of
/// the latter gracefully).
fn spawn<I, S>(
    accepted: Accepted<I>,
    builder: &http2::Builder<TokioExecutor>,
    service: S,
    limits: &ConnectionLimits,
    mut stopped: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: StreamService,
{
    let Accepted { io, place, at } = accepted;
    let (io, preface) = PrefaceSeen::watch(io);
    let streams = Arc::new(ConnectionStreams::default());
    let service = Streams::new(service, streams.clone(), limits.watches.clone());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let max_age = limits.max_connection_age;
    let handshake_deadline = at + limits.handshake_timeout;
    let metrics = limits.metrics.clone();
    tokio::spawn(async move {
        // Held for as long as the connection is open.
        let _place = place;
        let mut connection = std::pin::pin!(connection);
        let aged = async {
            match max_age {
                Some(age) => tokio::time::sleep(age).await,
                None => std::future::pending().await,
            }
        };
        let mut aged = std::pin::pin!(aged);
        let handshake = tokio::time::sleep_until(handshake_deadline.into());
        let mut handshake = std::pin::pin!(handshake);
        let mut handshake_checked = false;
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = &mut handshake, if !handshake_checked => {
                    if !preface.is_seen() {
                        metrics.connection_silent();
                        tracing::debug!("connection closed: no HTTP/2 preface within the handshake timeout");
                        return;
                    }
                    handshake_checked = true;
                }
                () = &mut aged, if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                // A change or the sender gone: either way the server is stopping.
                _ = stopped.changed() => break,
            }
        }
        connection.as_mut().graceful_shutdown();
        // Calls in flight finish; then a client that does not close by itself is not waited
        // for (the server's grace period still bounds the wait for the calls).
        let drained = async {
            loop {
                streams.idle().await;
                tokio::time::sleep(IDLE_LINGER).await;
                if streams.is_idle() {
                    return;
                }
            }
        };
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            () = drained => {}
        }
        // `stopped` is dropped here: the server's shutdown waits for every receiver.
    });
}
