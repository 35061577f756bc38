//! The transport: everything between the listening socket and the gRPC routes.
//!
//! One call, from the socket to the response:
//!
//! 1. `connections` accepts the TCP connection (one of `max_connections`, see
//!    `connection_places`), runs its TLS
//!    handshake if `[tls]` is set (`tls`), and serves HTTP/2 on it with hyper; a client that
//!    sends no preface in time is dropped (`preface`);
//! 2. `streams` counts the stream hyper hands over, for a quick shutdown and to bound health
//!    watches;
//! 3. `admission` decides at the stream's arrival: an `UploadSigner` call needs a known
//!    bearer token and a place among the calls in flight (`slots`), and its request message
//!    must arrive soon (`body_timeout`); the arrival time goes with the request;
//! 4. when the call starts, two tower layers: `deadline` (the client's `grpc-timeout`, capped;
//!    `grpc_timeout`) and `shed` (an `UploadSigner` call that queued too long is refused);
//! 5. the gRPC routes (health, reflection, `UploadSigner`, `UploadTracker`) answer it.

mod admission;
mod body_timeout;
mod connection_places;
mod connections;
mod deadline;
mod grpc_timeout;
mod preface;
mod shed;
mod slots;
mod streams;
mod tls;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tonic::service::Routes;
use tower_layer::Layer;

use crate::config::TransportSettings;
use crate::metrics::Metrics;
use crate::service::ConfigSnapshot;

/// Serves `routes` on `listener` (over TLS with the configuration current in `tls` at each
/// accept, if set) with the limits of `transport`, until `shutdown` completes; then stops
/// accepting, lets calls in flight finish, and returns once every connection has closed.
/// Callers are authenticated at arrival against the latest `snapshot`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ArcSwap<ServerConfig>>>,
    routes: Routes,
    transport: &TransportSettings,
    snapshot: Arc<ArcSwap<ConfigSnapshot>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let routes = deadline::DeadlineLayer::new(transport.call_timeout)
        .layer(shed::ShedLayer::new(transport.max_queue_delay, metrics.clone()).layer(routes));
    let service = admission::Admission::new(
        routes,
        admission::Limits {
            max_in_flight: transport.max_concurrent_requests,
            max_queue_delay: transport.max_queue_delay,
            call_timeout: transport.call_timeout,
            max_in_flight_per_connection: transport.max_concurrent_requests_per_connection,
            request_body_timeout: transport.request_body_timeout,
        },
        snapshot,
        metrics.clone(),
    );
    let limits = connections::ConnectionLimits::new(transport, tls, metrics);
    connections::serve(
        listener,
        connections::http2_builder(transport),
        move || service.for_connection(),
        limits,
        shutdown,
    )
    .await;
}
