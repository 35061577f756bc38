//! Server assembly: configuration → services → transport. Builds the `UploadSigner` and
//! `UploadTracker` services, gRPC health (following the audit log) and server reflection
//! (v1 and v1alpha), the metrics endpoint, the event receiver and configuration reload
//! (SIGHUP), hands the routes to the transport (`src/transport/`), and bounds the graceful shutdown.

mod audit_health;
mod reload;

pub(crate) use reload::{ReloadError, ReloadHandle, ReloadRequests, reload_channel};

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proto::v1::upload_signer_server::{SERVICE_NAME, UploadSignerServer};
use crate::proto::v1::upload_tracker_server::{
    SERVICE_NAME as TRACKER_SERVICE_NAME, UploadTrackerServer,
};
use crate::pull::{PullTasks, PullTiming};
use crate::quota::{MemoryStore, QuotaStore, Quotas, RedisStore, StoreError};
use crate::receiver::{Credentials, Receiver};
#[cfg(feature = "testsuite")]
use crate::service::IssueHook;
use crate::service::{Clock, ConfigSnapshot, RandomSlots, SignerService, TrackerService};
use crate::tracking::{Tracker, TrackingError};
use crate::vod_api::{ApiClient, ApiClientError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the listening socket's address: {0}")]
    Listener(#[source] std::io::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The quota store could not be set up (a malformed `quota.redis_url`; an unreachable
    /// Redis is not an error at start-up).
    #[error("quota store: {0}")]
    Quota(#[source] StoreError),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The upload store named by `[tracking] store` could not be opened.
    #[error("upload store: {0}")]
    Tracking(#[source] TrackingError),
    /// `[events.pull]` could not be set up (its endpoint, or the system's root certificates).
    #[error("[events.pull]: {0}")]
    Pull(#[source] ApiClientError),
    #[error("cannot listen for VOD events on {addr}: {source}")]
    EventsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves `config` on `listener` until `shutdown` completes, then shuts down gracefully:
/// health turns NOT_SERVING, no new connections are accepted, calls in flight finish (for at
/// most `config.shutdown_grace`), and `Ok(())` is returned.
pub(crate) async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Without the `testsuite` feature this is the only field.
    #[cfg_attr(not(feature = "testsuite"), allow(clippy::needless_update))]
    let options = ServeOptions {
        reload_on_sighup: true,
        ..ServeOptions::default()
    };
    serve_with(config, listener, shutdown, options).await
}

/// How [`serve_with`] starts. [`serve`] sets `reload_on_sighup`; every other field is a hook of
/// the test harness (`crate::testing::TestServer`), compiled only with the `testsuite` feature.
#[derive(Debug, Default)]
pub(crate) struct ServeOptions {
    #[cfg(feature = "testsuite")]
    pub clock: Clock,
    #[cfg(feature = "testsuite")]
    pub issue_hook: Option<Arc<dyn IssueHook>>,
    /// Serve `/metrics` here instead of binding `config.metrics_listen`.
    #[cfg(feature = "testsuite")]
    pub metrics_listener: Option<TcpListener>,
    /// Reload requests from a [`ReloadHandle`], instead of (or without) SIGHUP.
    #[cfg(feature = "testsuite")]
    pub reload: Option<ReloadRequests>,
    /// Reload the configuration file on SIGHUP (what [`serve`] does), unless `reload` is set.
    pub reload_on_sighup: bool,
    /// The audit log output to follow instead of the one `logging::init` installed.
    #[cfg(feature = "testsuite")]
    pub audit_sink: Option<crate::logging::SinkHealth>,
    /// Receive VOD events here instead of binding `[events] listen`.
    #[cfg(feature = "testsuite")]
    pub events_listener: Option<TcpListener>,
    /// Shorter timings for the reliable-mode consumer (`[events.pull]`) than Tencent's.
    #[cfg(feature = "testsuite")]
    pub pull_timing: Option<PullTiming>,
}

/// Aborts a spawned helper task (metrics endpoint, reloads) when the server returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`serve`] with [`ServeOptions`].
pub(crate) async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().map_err(ServerError::Listener)?;
    #[cfg(feature = "testsuite")]
    let ServeOptions {
        clock,
        issue_hook,
        metrics_listener,
        reload,
        reload_on_sighup: sighup,
        audit_sink,
        events_listener,
        pull_timing,
    } = options;
    // Without the test harness, every hook is off.
    #[cfg(not(feature = "testsuite"))]
    let (
        ServeOptions {
            reload_on_sighup: sighup,
        },
        clock,
        metrics_listener,
        reload,
        audit_sink,
    ) = (
        options,
        Clock::System,
        None::<TcpListener>,
        None::<ReloadRequests>,
        None::<crate::logging::SinkHealth>,
    );
    #[cfg(not(feature = "testsuite"))]
    let (events_listener, pull_timing) = (None::<TcpListener>, None::<PullTiming>);

    let audit_sink = audit_sink.or_else(crate::logging::installed_sink);
    let metrics = Arc::new(match &audit_sink {
        Some(sink) => Metrics::with_log_sink(sink),
        None => Metrics::new(),
    });
    let quota_store = match &config.quota.redis_url {
        Some(url) => QuotaStore::Redis(
            RedisStore::new(url.expose(), config.quota.store_timeout)
                .map_err(ServerError::Quota)?,
        ),
        None => QuotaStore::Memory(MemoryStore::default()),
    };
    let quota_endpoint = match &quota_store {
        QuotaStore::Redis(store) => store.endpoint().to_owned(),
        QuotaStore::Memory(_) => "in-process".to_owned(),
    };
    let quotas = Arc::new(Quotas::new(quota_store, config.quota.on_store_error));
    let random_slots = match config.instance_id {
        Some(id) => RandomSlots::instance(id),
        None => RandomSlots::leased(quotas.clone()).unwrap_or_else(RandomSlots::process),
    };
    let random_uniqueness = random_slots.guarantee();

    let tracker = match &config.tracking {
        Some(settings) => Some(
            Tracker::open(settings)
                .await
                .map_err(ServerError::Tracking)?,
        ),
        None => None,
    };

    // The snapshot sits behind an ArcSwap so a reload can replace keys and callers in one step.
    let snapshot = Arc::new(ArcSwap::from_pointee(ConfigSnapshot::from_config(&config)));
    let mut signer = SignerService::new(snapshot.clone(), clock.clone())
        .with_quotas(quotas)
        .with_metrics(metrics.clone())
        .with_random_slots(random_slots)
        .with_audit_sink(audit_sink.clone());
    if let Some(tracker) = &tracker {
        signer = signer.with_tracker(tracker.clone());
    }
    #[cfg(feature = "testsuite")]
    {
        signer = signer.with_issue_hook(issue_hook);
    }
    // Set when shutdown starts: the receiver stops accepting, and open watches end so their
    // clients resume on another replica instead of holding the drain.
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let upload_tracker = UploadTrackerServer::new(TrackerService::new(
        snapshot.clone(),
        tracker.clone(),
        draining_rx.clone(),
    ))
    .max_decoding_message_size(config.transport.max_request_bytes);
    let tls = config
        .tls
        .as_ref()
        .map(|tls| Arc::new(ArcSwap::new(tls.server_config.clone())));

    let mut helpers = Vec::new();
    let metrics_listener = match (metrics_listener, config.metrics_listen) {
        (Some(listener), _) => Some(listener),
        (None, Some(addr)) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::MetricsListen { addr, source })?,
        ),
        (None, None) => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = metrics_listener {
        let metrics = metrics.clone();
        helpers.push(AbortOnDrop(tokio::spawn(async move {
            // Stopped by the abort when the server returns.
            let never = std::future::pending::<()>();
            if let Err(error) = crate::metrics::serve_metrics(listener, metrics, never).await {
                tracing::error!(%error, "metrics endpoint stopped");
            }
        })));
    }

    // Kept for reloads, which replace its path token and SignKey.
    let mut receiver_handle = None;
    let events_addr = match (&tracker, &config.events) {
        (Some(tracker), Some(events)) => {
            let listener = match (events_listener, events.listen) {
                (Some(listener), _) => Some(listener),
                (None, Some(addr)) => Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServerError::EventsListen { addr, source })?,
                ),
                (None, None) => None,
            };
            match (listener, &events.path_token) {
                (Some(listener), Some(path_token)) => {
                    if events.sign_key.is_none() {
                        tracing::warn!(
                            "[events] has no sign_key: callbacks are authenticated by the path \
                             token alone; set ModifyEventConfig's SignKey and sign_key_env"
                        );
                    }
                    let addr = listener.local_addr().ok();
                    let receiver = Arc::new(Receiver::new(
                        tracker.clone(),
                        Credentials {
                            path_token: path_token.clone(),
                            sign_key: events.sign_key.clone(),
                        },
                        metrics.clone(),
                        clock.clone(),
                    ));
                    receiver_handle = Some(receiver.clone());
                    let mut stopped = draining_rx.clone();
                    // Stops accepting with the gRPC server; requests in flight finish.
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    helpers.push(AbortOnDrop(tokio::spawn(async move {
                        if let Err(error) =
                            crate::receiver::serve_events(listener, receiver, shutdown).await
                        {
                            tracing::error!(%error, "event receiver stopped");
                        }
                    })));
                    addr
                }
                _ => None,
            }
        }
        _ => None,
    };

    // Reliable mode: pulled events join the receiver's intake, so either way an event is
    // stored once. Reconciliation runs with or without PULL. Both stop with the drain and are
    // joined before returning.
    let mut pull_tasks = PullTasks::new();
    if let Some(tracker) = &tracker {
        let timing = pull_timing.unwrap_or_default();
        if let Some(pull) = &config.pull {
            let api = ApiClient::new(pull.api.clone()).map_err(ServerError::Pull)?;
            pull_tasks.spawn_consumer(
                api,
                tracker.clone(),
                metrics.clone(),
                timing,
                draining_rx.clone(),
            );
        }
        let reconcile_after = config.tracking.as_ref().map_or(0, |t| {
            u32::try_from(t.reconcile_after.as_secs()).unwrap_or(u32::MAX)
        });
        if let (Some(api), Some(after)) = (
            &config.reconcile_api,
            std::num::NonZeroU32::new(reconcile_after),
        ) {
            // Reconciliation is on by default, against Tencent's HTTPS endpoint: a PUSH-only
            // replica without a system trust store must keep serving, so this is not fatal.
            match ApiClient::new(api.clone()) {
                Ok(api) => {
                    tracing::info!(
                        endpoint = %api.endpoint(),
                        after_seconds = after.get(),
                        "reconciling uploads whose final event is overdue"
                    );
                    pull_tasks.spawn_reconciler(
                        api,
                        tracker.clone(),
                        metrics.clone(),
                        after,
                        timing.backoff,
                        draining_rx.clone(),
                    );
                }
                Err(error) => tracing::error!(
                    %error,
                    "reconciliation is off: cannot set up its VOD API client (set \
                     [tracking] reconcile_after_seconds = 0 to silence this)"
                ),
            }
        }
    }

    let reload_requests = match reload {
        Some(requests) => requests,
        None => {
            let (handle, requests) = reload_channel();
            if sighup {
                helpers.push(reload_on_sighup(handle)?);
            }
            requests
        }
    };
    let reloadable = reload::Reloadable {
        started: config.clone(),
        config: config.clone(),
        snapshot: snapshot.clone(),
        tls: tls.clone(),
        receiver: receiver_handle,
        metrics: metrics.clone(),
    };
    helpers.push(AbortOnDrop(tokio::spawn(reloadable.run(reload_requests))));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let audit_health = audit_sink
        .map(|sink| AbortOnDrop(tokio::spawn(audit_health::follow(sink, health.clone()))));
    if tracker.is_some() {
        health
            .set_service_status(TRACKER_SERVICE_NAME, ServingStatus::Serving)
            .await;
    }

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let transport = &config.transport;
    let upload_signer =
        UploadSignerServer::new(signer).max_decoding_message_size(transport.max_request_bytes);
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(upload_signer)
        .add_service(upload_tracker)
        .prepare();
    let (drain_started, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        // Draining wins over a recovered audit log: no SERVING after this.
        drop(audit_health);
        tracing::info!("shutting down: health NOT_SERVING, no new connections, draining calls");
        for service in ["", SERVICE_NAME, TRACKER_SERVICE_NAME] {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let _ = draining.send(true);
        let _ = drain_started.send(());
    };

    tracing::info!(
        listen = %local_addr,
        active_secret_id = %config.keys.active().secret_id(),
        keys = config.keys.keys().count(),
        callers = config.callers.len(),
        development = config.development,
        tls = config.tls.is_some(),
        client_certificates_required = config.tls.as_ref().is_some_and(|t| t.client_auth),
        metrics = %metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        quota_store = %quota_endpoint,
        on_store_error = config.quota.on_store_error.as_str(),
        random = %random_uniqueness,
        tracking = config.tracking.as_ref().map_or("off", |t| match t.store {
            crate::config::StoreLocation::Sqlite(_) => "sqlite",
            crate::config::StoreLocation::Postgres(_) => "postgres",
        }),
        events = %events_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        "vod-signer serving"
    );
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration");
    }

    if config.development {
        tracing::warn!(
            "development configuration: its key and token are published; never use it for real uploads"
        );
    }

    // Calls are admitted (authenticated, bounded, shed when they queued too long, given
    // their deadline) where HTTP/2 hands them over; see `transport`.
    let server = crate::transport::serve(
        listener,
        tls,
        routes,
        transport,
        snapshot,
        metrics.clone(),
        signal,
    );
    tokio::pin!(server);

    let grace = config.shutdown_grace;
    // A client that keeps a stream open (a health Watch does, for ever) would hold a graceful
    // shutdown indefinitely; after the grace period the remaining connections are abandoned.
    let grace_expired = async move {
        match drain_started_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended without a shutdown signal.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = &mut server => {
            tracing::info!("shut down");
        }
        () = grace_expired => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "calls or streams still open after the shutdown grace period; closing anyway"
            );
        }
    }
    if !pull_tasks.is_empty() {
        // The consumer confirms what it stored before it returns; a confirm takes at most its
        // timeout, so this stays within the grace period unless VOD is unreachable.
        if tokio::time::timeout(grace, pull_tasks.join())
            .await
            .is_err()
        {
            tracing::warn!("the reliable-mode tasks did not stop within the grace period");
        }
    }
    Ok(())
}

/// Reloads the configuration file on every SIGHUP, for as long as the server runs.
#[cfg(unix)]
fn reload_on_sighup(handle: ReloadHandle) -> Result<AbortOnDrop, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;
    Ok(AbortOnDrop(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", "reloading the configuration");
            // The outcome is logged and counted by the reload itself.
            if let Err(ReloadError::Stopped) = handle.reload().await {
                break;
            }
        }
    })))
}

#[cfg(not(unix))]
fn reload_on_sighup(_handle: ReloadHandle) -> Result<AbortOnDrop, ServerError> {
    Ok(AbortOnDrop(tokio::spawn(async {})))
}
