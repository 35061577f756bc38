//! Reloading the configuration file while serving (SIGHUP, or a [`ReloadHandle`] in tests).
//!
//! A reload reads and checks the whole file first; only a configuration that loads
//! completely (every secret readable, TLS files valid) replaces the running one, in one
//! atomic swap: keys, callers and their policies together, then the TLS certificates. A
//! reload that fails changes nothing, the server keeps serving, and the reason is logged and
//! counted (`vod_signer_config_reloads_total{result="failed"}`).
//!
//! Addresses, the quota store and transport limits are fixed for the life of the process; a
//! reload that changes them applies everything else and logs that those need a restart. The
//! event receiver's path token and SignKey are replaced with the rest.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::rustls::ServerConfig;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::receiver::{Credentials, Receiver};
use crate::service::ConfigSnapshot;

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("nothing to reload: the server was not started from a configuration file")]
    NoSource,
    #[error("reloading {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("the server has stopped")]
    Stopped,
}

/// What a successful reload left for a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadOutcome {
    /// Settings whose value in the file differs from the running one and that apply only
    /// after a restart (`listen`, `quota`, ...); empty when everything took effect.
    pub pending_restart: Vec<&'static str>,
}

type Reply = oneshot::Sender<Result<ReloadOutcome, ReloadError>>;

/// Asks a running server to reload its configuration file.
#[derive(Debug, Clone)]
pub struct ReloadHandle(mpsc::Sender<Reply>);

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    pub async fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let (reply, outcome) = oneshot::channel();
        self.0.send(reply).await.map_err(|_| ReloadError::Stopped)?;
        outcome.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The server's end of a [`ReloadHandle`].
#[derive(Debug)]
pub(crate) struct ReloadRequests(mpsc::Receiver<Reply>);

/// A handle and the requests it sends; pass the requests in `ServeOptions::reload`.
pub(crate) fn reload_channel() -> (ReloadHandle, ReloadRequests) {
    let (sender, receiver) = mpsc::channel(4);
    (ReloadHandle(sender), ReloadRequests(receiver))
}

/// What a reload replaces.
pub(super) struct Reloadable {
    /// The configuration the server started with: its restart-only settings are the ones in
    /// effect, whatever later reloads read, so every reload compares against it.
    pub started: Config,
    /// The configuration as last loaded.
    pub config: Config,
    pub snapshot: Arc<ArcSwap<ConfigSnapshot>>,
    pub tls: Option<Arc<ArcSwap<ServerConfig>>>,
    /// The event receiver, if it runs: its path token and SignKey follow the file.
    pub receiver: Option<Arc<Receiver>>,
    pub metrics: Arc<Metrics>,
}

impl Reloadable {
    /// Serves reload requests until every handle is gone; meant to be spawned.
    pub(super) async fn run(mut self, mut requests: ReloadRequests) {
        while let Some(reply) = requests.0.recv().await {
            // Reading a few small files: brief enough to do on the runtime thread, and it
            // keeps reloads strictly one after another.
            let outcome = self.reload();
            self.metrics.config_reloaded(outcome.is_ok());
            match &outcome {
                Ok(_) => tracing::info!(
                    active_secret_id = %self.config.keys.active().secret_id(),
                    keys = self.config.keys.keys().count(),
                    callers = self.config.callers.len(),
                    "configuration reloaded"
                ),
                Err(error) => tracing::error!(
                    %error,
                    "configuration reload failed; still serving the previous configuration"
                ),
            }
            let _ = reply.send(outcome);
        }
    }

    fn reload(&mut self) -> Result<ReloadOutcome, ReloadError> {
        let path = self.config.source.clone().ok_or(ReloadError::NoSource)?;
        let new = Config::load(&path).map_err(|source| ReloadError::Config {
            path: path.clone(),
            source,
        })?;
        for warning in &new.warnings {
            tracing::warn!(%warning, "configuration");
        }
        // Against the start-up configuration, not the last reload's: a change that waits for
        // a restart keeps being reported by every reload until the restart happens.
        let mut fixed = fixed_fields_changed(&self.started, &new);
        if let Some(receiver) = &self.receiver {
            match new
                .events
                .as_ref()
                .and_then(|e| Some((e.path_token.clone()?, e)))
            {
                Some((path_token, events)) => receiver.replace_credentials(Credentials {
                    path_token,
                    sign_key: events.sign_key.clone(),
                }),
                // The receiver keeps listening with the token it has until a restart turns
                // it off.
                None => fixed.push("events (removing the receiver or its path token)"),
            }
        }
        if !fixed.is_empty() {
            tracing::warn!(
                fields = fixed.join(", "),
                "these settings differ from the running ones and apply only after a restart"
            );
        }

        self.snapshot
            .store(Arc::new(ConfigSnapshot::from_config(&new)));
        if let (Some(current), Some(tls)) = (&self.tls, &new.tls) {
            current.store(tls.server_config.clone());
        }
        self.config = new;
        Ok(ReloadOutcome {
            pending_restart: fixed,
        })
    }
}

fn fixed_fields_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.metrics_listen != new.metrics_listen {
        changed.push("metrics_listen");
    }
    if old.tls.is_some() != new.tls.is_some() {
        changed.push("tls (turning it on or off)");
    } else if old.tls.as_ref().map(|t| t.client_auth) != new.tls.as_ref().map(|t| t.client_auth) {
        // The new verifier is in the swapped configuration already; this only says so.
        tracing::info!("client certificate requirement changed with the reload");
    }
    if old.quota != new.quota {
        changed.push("quota");
    }
    if old.transport != new.transport {
        changed.push("transport");
    }
    if old.shutdown_grace != new.shutdown_grace {
        changed.push("shutdown_grace_seconds");
    }
    if old.instance_id != new.instance_id {
        changed.push("instance_id");
    }
    // The store is opened and the receiver bound once, at start-up.
    if old.tracking != new.tracking {
        changed.push("tracking");
    }
    if old.events.as_ref().map(|e| e.listen) != new.events.as_ref().map(|e| e.listen) {
        changed.push("events.listen");
    }
    // The consumer and the reconciler keep the API client they started with (a rotated
    // active key included, when it is their credential, and a SecretKey rotated under the
    // same SecretId).
    let same_api = |a: Option<&crate::vod_api::ApiSettings>,
                    b: Option<&crate::vod_api::ApiSettings>| match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.endpoint == b.endpoint
                && a.region == b.region
                && a.sub_app_id == b.sub_app_id
                && a.credential.same_as(&b.credential)
        }
        _ => false,
    };
    if !same_api(
        old.pull.as_ref().map(|p| &p.api),
        new.pull.as_ref().map(|p| &p.api),
    ) {
        changed.push("events.pull");
    }
    if !same_api(old.reconcile_api.as_ref(), new.reconcile_api.as_ref()) {
        changed.push("reconciliation API (tracking.reconcile_api, events.pull or the active key)");
    }
    changed
}
