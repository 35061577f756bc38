//! The accept loop and the HTTP/2 connections, served by hyper directly.
//!
//! tonic's own `Server` hides the moment a stream arrives (see `admission`), so connections
//! are served here with hyper's HTTP/2 server and the same settings tonic would apply:
//! keepalive PINGs, a bound on streams per connection, a maximum connection age with a grace
//! period, the peer's address in every request (tonic's [`TcpConnectInfo`], so
//! `Request::remote_addr` works), and a graceful shutdown that stops accepting, lets open
//! calls finish and then returns.
//!
//! One loop accepts every connection, plain or TLS: a TLS handshake runs on the connection's
//! own task (see `tls`), so a slow client holds up nobody else, and the encrypted stream is
//! then served exactly like a plain one.
//!
//! Connections that would otherwise cost resources for nothing are closed: at
//! `max_connections`, the oldest one that no known caller has used yet, to make room for a
//! newcomer (see `connection_places`), or the newcomer when all are in use; without the
//! client's TLS handshake and HTTP/2 preface within `handshake_timeout_seconds`; at shutdown,
//! as soon as no stream is open on them, instead of waiting for a client that may never answer
//! the GOAWAY.
//!
//! hyper-util's `server::graceful` is not used: a connection it watches can no longer be asked
//! to shut down by anyone else (the age limit needs that), and it waits for every connection
//! to finish the GOAWAY exchange, which an idle or half-open client may never do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::server::TcpConnectInfo;

use super::connection_places::{ConnectionPlace, ConnectionPlaces, Taken};
use super::preface::PrefaceSeen;
use super::streams::{ConnectionStreams, Streams, Watches};
use crate::config::TransportSettings;
use crate::metrics::Metrics;

/// What every connection is served with, besides its stream service.
pub(super) struct ConnectionLimits {
    pub max_connection_age: Option<Duration>,
    /// How long a connection past its age may take to finish its calls before it is closed
    /// anyway; `None` waits for them.
    pub max_connection_age_grace: Option<Duration>,
    pub handshake_timeout: Duration,
    pub watches: Arc<Watches>,
    /// The places of `max_connections`.
    pub places: Arc<ConnectionPlaces>,
    /// The TLS configuration current at each accept (a reload swaps it), or plain TCP.
    pub tls: Option<Arc<ArcSwap<ServerConfig>>>,
    pub metrics: Arc<Metrics>,
}

impl ConnectionLimits {
    pub(super) fn new(
        transport: &TransportSettings,
        tls: Option<Arc<ArcSwap<ServerConfig>>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ConnectionLimits {
            // Long-lived client connections would otherwise stay on the replicas that existed
            // when they connected; closing them gracefully lets new replicas take a share.
            max_connection_age: transport.max_connection_age,
            max_connection_age_grace: transport.max_connection_age_grace,
            handshake_timeout: transport.handshake_timeout,
            watches: Watches::new(transport.max_health_watches),
            places: ConnectionPlaces::new(transport.max_connections),
            tls,
            metrics,
        }
    }
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

/// Serves every connection accepted on `listener` with the service `for_connection` makes
/// for each, until `shutdown` completes; then stops accepting (the listening socket is closed
/// at once), asks every connection to finish gracefully (GOAWAY; calls in flight complete),
/// closes the idle ones, and returns when all have closed.
pub(super) async fn serve<S>(
    listener: TcpListener,
    builder: http2::Builder<TokioExecutor>,
    for_connection: impl Fn() -> S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: StreamService,
{
    let limits = Arc::new(limits);
    let local_addr = listener.local_addr().ok();
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(place) = take_place(&limits, peer) else {
            continue;
        };
        // gRPC calls are small request/response exchanges: Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let accepted = Accepted {
            tcp,
            info: TcpConnectInfo {
                local_addr,
                remote_addr: Some(peer),
            },
            place,
            at: Instant::now(),
        };
        tokio::spawn(connection(
            accepted,
            builder.clone(),
            for_connection(),
            limits.clone(),
            stopped.clone(),
        ));
    }
    // Dropping the listener closes the socket: new clients are refused at once instead of
    // completing a TCP handshake nobody will answer.
    drop(listener);
    drop(stopped);
    let _ = stop.send(());
    stop.closed().await;
}

/// A connection that holds one of the `max_connections` places, and when it was accepted.
struct Accepted {
    tcp: TcpStream,
    info: TcpConnectInfo,
    place: ConnectionPlace,
    at: Instant,
}

/// A place for a connection just accepted, or `None` (counted, logged) if every one is taken
/// by a connection a known caller uses: it is then closed at once, so its client learns and
/// can go elsewhere, instead of waiting in the listen queue.
fn take_place(limits: &ConnectionLimits, peer: SocketAddr) -> Option<ConnectionPlace> {
    match limits.places.take() {
        Taken::Free(place) => Some(place),
        Taken::Evicted(place) => {
            limits.metrics.connection_evicted();
            tracing::debug!(%peer, "max_connections are open: the oldest connection no known caller has used is closed for this one");
            Some(place)
        }
        Taken::Full => {
            limits.metrics.connection_refused();
            tracing::debug!(%peer, "connection closed at once: max_connections are open, all used by known callers");
            None
        }
    }
}

/// One connection, on a task of its own: its TLS handshake if any, then HTTP/2.
async fn connection<S: StreamService>(
    accepted: Accepted,
    builder: http2::Builder<TokioExecutor>,
    service: S,
    limits: Arc<ConnectionLimits>,
    mut stopped: watch::Receiver<()>,
) {
    let Accepted {
        tcp,
        info,
        place,
        at,
    } = accepted;
    let handshake_deadline = at + limits.handshake_timeout;
    let Some(tls) = &limits.tls else {
        return http2(
            tcp,
            info,
            &place,
            handshake_deadline,
            builder,
            service,
            &limits,
            stopped,
        )
        .await;
    };
    let peer = info.remote_addr;
    let handshake = super::tls::handshake(tcp, tls, handshake_deadline, &limits.metrics, peer);
    let io = tokio::select! {
        io = handshake => io,
        // The server is stopping: a handshake in progress is not worth waiting for.
        _ = stopped.changed() => None,
        () = place.evicted() => None,
    };
    if let Some(io) = io {
        http2(
            io,
            info,
            &place,
            handshake_deadline,
            builder,
            service,
            &limits,
            stopped,
        )
        .await;
    }
    // The place is held until here, for as long as the connection is open.
    drop(place);
}

/// Serves HTTP/2 on `io` until the peer closes it, it stays silent past the handshake
/// deadline, a newcomer takes its place before a known caller used it (at once), it reaches
/// its maximum age (gracefully, then at once after the grace period), or the server shuts down
/// (gracefully).
#[allow(clippy::too_many_arguments)]
async fn http2<I, S>(
    io: I,
    info: TcpConnectInfo,
    place: &ConnectionPlace,
    handshake_deadline: Instant,
    builder: http2::Builder<TokioExecutor>,
    service: S,
    limits: &ConnectionLimits,
    mut stopped: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: StreamService,
{
    let (io, preface) = PrefaceSeen::watch(io);
    let streams = Arc::new(ConnectionStreams::default());
    let service = Streams::new(
        service,
        streams.clone(),
        limits.watches.clone(),
        info,
        place.voucher(),
    );
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let aged = sleep_for(limits.max_connection_age);
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
                    limits.metrics.connection_silent();
                    tracing::debug!("connection closed: no HTTP/2 preface within the handshake timeout");
                    return;
                }
                handshake_checked = true;
            }
            () = place.evicted() => {
                tracing::debug!("connection closed: a newer one took its place before a known caller used it");
                return;
            }
            () = &mut aged => {
                if closing {
                    tracing::debug!("connection closed: calls still open after max_connection_age and its grace period");
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
                // From now on the same timer counts the grace period.
                aged.set(sleep_for(limits.max_connection_age_grace));
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
}

/// Sleeps for `duration`, or for ever.
async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use tonic::body::Body;

    use super::*;
    use crate::metrics::MeteredBody;

    type Answer =
        Pin<Box<dyn Future<Output = Result<hyper::Response<MeteredBody>, Infallible>> + Send>>;

    /// A stand-in for the gRPC routes: `/peer` answers with the peer address the request
    /// carries, `/hang` never answers.
    fn routes(request: hyper::Request<Incoming>) -> Answer {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr)
            .map_or_else(|| "none".to_owned(), |addr| addr.to_string());
        let hang = request.uri().path() == "/hang";
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            let mut response = hyper::Response::new(MeteredBody::unwatched(Body::empty()));
            response.headers_mut().insert(
                "x-peer",
                peer.parse().expect("an address is a header value"),
            );
            Ok(response)
        })
    }

    /// Serves the stand-in with `transport`'s limits on a loopback port until dropped.
    async fn start(transport: TransportSettings) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits::new(&transport, None, Arc::new(Metrics::new()));
        let builder = http2_builder(&transport);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            serve(listener, builder, || service_fn(routes), limits, shutdown).await;
        });
        (addr, stop)
    }

    async fn connect(
        addr: SocketAddr,
    ) -> (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<()>,
        SocketAddr,
    ) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        (send, connection, local)
    }

    fn request(path: &str) -> hyper::Request<()> {
        hyper::Request::post(format!("http://localhost{path}"))
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn every_request_carries_its_peer_address() {
        let (addr, _stop) = start(TransportSettings::default()).await;
        let (send, _connection, local) = connect(addr).await;
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(request("/peer"), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.headers()["x-peer"], local.to_string().as_str());
    }

    /// Whether the server closes a connection holding a call that never ends, within `limit`.
    async fn busy_connection_closed_within(transport: TransportSettings, limit: Duration) -> bool {
        let (addr, _stop) = start(transport).await;
        let (send, connection, _) = connect(addr).await;
        let mut send = send.ready().await.unwrap();
        let (_response, _body) = send.send_request(request("/hang"), true).unwrap();
        tokio::time::timeout(limit, connection).await.is_ok()
    }

    #[tokio::test]
    async fn an_aged_connection_is_closed_after_its_grace_period_even_with_a_call_open() {
        let aged = |grace| TransportSettings {
            max_connection_age: Some(Duration::from_secs(1)),
            max_connection_age_grace: grace,
            ..TransportSettings::default()
        };
        let (with_grace, without_grace) = tokio::join!(
            busy_connection_closed_within(
                aged(Some(Duration::from_secs(1))),
                Duration::from_secs(5)
            ),
            busy_connection_closed_within(aged(None), Duration::from_secs(4)),
        );
        assert!(
            with_grace,
            "the connection outlived max_connection_age and its grace"
        );
        assert!(
            !without_grace,
            "without a grace period an aged connection waits for its open call"
        );
    }
}
