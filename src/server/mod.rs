//! Server assembly, all in one place: the `UploadSigner` service, gRPC health, server
//! reflection (v1 and v1alpha), deadlines and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::proto::v1::upload_signer_server::{SERVICE_NAME, UploadSignerServer};
use crate::service::{Clock, IssueGate, Shared, SignerService};

/// Upper bound on any call, whatever `grpc-timeout` the client sent (or none): every RPC here
/// is a few microseconds of work, so a call still running after this is stuck.
pub const MAX_CALL_DURATION: Duration = Duration::from_secs(30);

/// Largest request message accepted. The largest legitimate request (every text field at its
/// limit, in 4-byte characters) is under 8 KiB; a signature to verify is at most 32 KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the listening socket's address: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `config` on `listener` until `shutdown` completes, then shuts down gracefully:
/// health turns NOT_SERVING, no new connections are accepted, calls in flight finish (for at
/// most `config.shutdown_grace`), and `Ok(())` is returned.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(config, listener, shutdown, ServeOptions::default()).await
}

/// Knobs that only tests turn: the clock, and a gate that holds `IssueSignature` calls.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct ServeOptions {
    pub clock: Clock,
    pub issue_gate: Option<Arc<IssueGate>>,
}

/// [`serve`] with [`ServeOptions`]; for tests.
#[doc(hidden)]
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().map_err(ServerError::Listener)?;

    // Shared behind an ArcSwap so a reload can replace keys and callers in one step.
    let shared = Arc::new(ArcSwap::from_pointee(Shared::from_config(&config)));
    let signer = SignerService::new(shared, options.clock, options.issue_gate);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let upload_signer =
        UploadSignerServer::new(signer).max_decoding_message_size(MAX_REQUEST_BYTES);

    let (drain_started, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, no new connections, draining calls");
        for service in ["", SERVICE_NAME] {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let _ = drain_started.send(());
    };

    tracing::info!(
        listen = %local_addr,
        active_secret_id = %config.keys.active().secret_id(),
        keys = config.keys.keys().count(),
        callers = config.callers.len(),
        development = config.development,
        "vod-signer serving"
    );

    if config.development {
        tracing::warn!(
            "development configuration: its key and token are published; never use it for real uploads"
        );
    }

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        // `grpc-timeout` from the client is honoured by tonic on every call; this caps it.
        .timeout(MAX_CALL_DURATION)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(upload_signer)
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);

    let grace = config.shutdown_grace;
    // A client that keeps a stream open (a health Watch does, for ever) would hold a graceful
    // shutdown indefinitely; after the grace period the remaining connections are abandoned.
    let grace_expired = async move {
        match drain_started_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended without a shutdown signal; its own result is returned.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = &mut server => {
            result?;
            tracing::info!("shut down");
        }
        () = grace_expired => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "calls or streams still open after the shutdown grace period; closing anyway"
            );
        }
    }
    Ok(())
}
