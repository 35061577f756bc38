//! One harness for every test that needs a running server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{IssueGate, ManualClock, bind_retrying, http_get};
use crate::config::Config;
use crate::logging::SinkHealth;
use crate::proto::v1::upload_signer_client::UploadSignerClient;
use crate::proto::v1::upload_tracker_client::UploadTrackerClient;
use crate::pull::PullTiming;
use crate::server::{ReloadHandle, ServeOptions, ServerError, reload_channel, serve_with};

/// A real server (gRPC, and on request `/metrics` and the event receiver) on loopback ports
/// inside the test process. Dropping it sends the shutdown signal.
pub struct TestServer {
    /// The gRPC address.
    pub addr: SocketAddr,
    /// `/metrics`, when the builder asked for [`TestServerBuilder::metrics`].
    pub metrics_addr: Option<SocketAddr>,
    /// The VOD event receiver, when the builder asked for [`TestServerBuilder::events`].
    pub events_addr: Option<SocketAddr>,
    /// Reloads the configuration file (what SIGHUP does in production).
    pub reload: ReloadHandle,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

/// What [`TestServer::builder`] starts: a configuration and the hooks to turn.
pub struct TestServerBuilder {
    config: Config,
    listener: Option<TcpListener>,
    listen_on: Option<SocketAddr>,
    metrics: bool,
    events: bool,
    options: ServeOptions,
}

impl TestServerBuilder {
    /// Listen for gRPC on `addr` (to restart a server where its clients expect it) instead of
    /// a fresh port.
    pub fn listen_on(mut self, addr: SocketAddr) -> Self {
        self.listen_on = Some(addr);
        self
    }

    /// Serve gRPC on `listener`, bound by the test beforehand.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Read the time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: &ManualClock) -> Self {
        self.options.clock = clock.clock();
        self
    }

    /// Hold every `IssueSignature` call at `gate` until the test releases it.
    pub fn issue_gate(mut self, gate: &Arc<IssueGate>) -> Self {
        self.options.issue_hook = Some(gate.clone());
        self
    }

    /// Serve `/metrics` on a fresh loopback port (instead of `metrics_listen`).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Receive VOD events on a fresh loopback port (instead of `[events] listen`).
    pub fn events(mut self) -> Self {
        self.events = true;
        self
    }

    /// Run the reliable-mode consumer with `timing` instead of Tencent's.
    pub fn pull_timing(mut self, timing: PullTiming) -> Self {
        self.options.pull_timing = Some(timing);
        self
    }

    /// Follow `sink` as the audit log output instead of the one `logging::init` installed.
    pub fn audit_sink(mut self, sink: SinkHealth) -> Self {
        self.options.audit_sink = Some(sink);
        self
    }

    /// Binds the listeners and spawns the server; calls are accepted once this returns.
    pub async fn start(self) -> TestServer {
        let TestServerBuilder {
            config,
            listener,
            listen_on,
            metrics,
            events,
            mut options,
        } = self;
        let listener = match listener {
            Some(listener) => listener,
            None => bind_retrying(listen_on.unwrap_or_else(loopback)).await,
        };
        let addr = listener.local_addr().expect("a bound address");
        let mut metrics_addr = None;
        if metrics {
            let listener = bind_retrying(loopback()).await;
            metrics_addr = listener.local_addr().ok();
            options.metrics_listener = Some(listener);
        }
        let mut events_addr = None;
        if events {
            let listener = bind_retrying(loopback()).await;
            events_addr = listener.local_addr().ok();
            options.events_listener = Some(listener);
        }
        let (reload, requests) = reload_channel();
        options.reload = Some(requests);
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let handle = tokio::spawn(serve_with(config, listener, shutdown, options));
        TestServer {
            addr,
            metrics_addr,
            events_addr,
            reload,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl TestServer {
    pub fn builder(config: Config) -> TestServerBuilder {
        TestServerBuilder {
            config,
            listener: None,
            listen_on: None,
            metrics: false,
            events: false,
            options: ServeOptions::default(),
        }
    }

    /// `config` on a fresh loopback port, with no hooks turned.
    pub async fn start(config: Config) -> TestServer {
        TestServer::builder(config).start().await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("a valid URL")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    pub async fn signer(&self) -> UploadSignerClient<Channel> {
        UploadSignerClient::new(self.channel().await)
    }

    pub async fn tracker(&self) -> UploadTrackerClient<Channel> {
        UploadTrackerClient::new(self.channel().await)
    }

    /// `GET /metrics`, as text; the server must have been built with
    /// [`TestServerBuilder::metrics`].
    pub async fn metrics(&self) -> String {
        let addr = self
            .metrics_addr
            .expect("the test server was started without .metrics()");
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Sends the shutdown signal without waiting for the server to finish.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `serve` has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Signals shutdown and waits (at most `limit`) for `serve` to return; its result.
    pub async fn stopped(&mut self, limit: Duration) -> Result<(), ServerError> {
        self.signal_shutdown();
        let handle = self.handle.take().expect("server already stopped");
        tokio::time::timeout(limit, handle)
            .await
            .expect("the server did not stop in time")
            .expect("the server task panicked")
    }

    /// Signals shutdown and checks that `serve` returns `Ok` within 15 s.
    pub async fn stop(mut self) {
        self.stopped(Duration::from_secs(15))
            .await
            .expect("the server returns Ok");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}
