//! The accept loop and the HTTP/2 connections, served by hyper directly.
//!
//! tonic's own `Server` hides the moment a stream arrives (see `admission`), so connections
//! are served here with hyper's HTTP/2 server and the same settings tonic would apply:
//! keepalive PINGs, a bound on streams per connection, a maximum connection age, and a
//! graceful shutdown that stops accepting, lets open calls finish and then returns.

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::TransportSettings;

/// Where connections come from: plain TCP, or TLS streams whose handshake is done.
pub(super) enum Incoming<T> {
    Tcp(TcpListener),
    Tls(tokio::sync::mpsc::Receiver<T>),
}

/// What serving connections needs of the service: hyper's `Service` for HTTP/2 streams,
/// shared by every connection.
pub(super) trait StreamService:
    hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<crate::metrics::MeteredBody>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
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
            Future: Send + 'static,
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

/// Serves every connection from `incoming` with `service` until `shutdown` completes; then
/// stops accepting (the listening socket is closed at once), asks every connection to finish
/// gracefully (GOAWAY; calls in flight complete) and returns when all have closed.
pub(super) async fn serve<T, S>(
    incoming: Incoming<T>,
    builder: http2::Builder<TokioExecutor>,
    service: S,
    max_connection_age: Option<Duration>,
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
            io = next(&mut incoming) => match io {
                Some(Connection::Tcp(tcp)) => spawn(tcp, &builder, &service, max_connection_age, stopped.clone()),
                Some(Connection::Tls(tls)) => spawn(tls, &builder, &service, max_connection_age, stopped.clone()),
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
    Tcp(TcpStream),
    Tls(T),
}

async fn next<T>(incoming: &mut Incoming<T>) -> Option<Connection<T>> {
    match incoming {
        Incoming::Tcp(listener) => loop {
            match listener.accept().await {
                Ok((tcp, _peer)) => {
                    // gRPC calls are small request/response exchanges: Nagle would only
                    // delay them.
                    let _ = tcp.set_nodelay(true);
                    return Some(Connection::Tcp(tcp));
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

/// Serves one connection on a task of its own, until the peer closes it, it reaches its
/// maximum age, or the server shuts down (both of the latter gracefully).
fn spawn<I, S>(
    io: I,
    builder: &http2::Builder<TokioExecutor>,
    service: &S,
    max_age: Option<Duration>,
    mut stopped: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: StreamService,
{
    let connection = builder.serve_connection(TokioIo::new(io), service.clone());
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let aged = async {
            match max_age {
                Some(age) => tokio::time::sleep(age).await,
                None => std::future::pending().await,
            }
        };
        let mut aged = std::pin::pin!(aged);
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                () = &mut aged, if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = stopped.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        // `stopped` is dropped here: the server's shutdown waits for every receiver.
    });
}
