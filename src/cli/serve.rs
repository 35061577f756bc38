//! `vod-signer serve`: run the gRPC service until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{exit, fail_usage};
use crate::config::{Config, DEV_CALLER, DEV_SECRET_ID, DEV_TOKEN};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML); relative paths in it start at its directory.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dev",
        conflicts_with = "dev"
    )]
    pub config: Option<PathBuf>,
    /// Run with the built-in development key and caller token, printed at start-up. Both are
    /// published in the source code: for trying the service out only.
    #[arg(long)]
    pub dev: bool,
    /// Listen on this address instead of the configuration's `listen` (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log line format; the filter comes from RUST_LOG (default "info").
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Plain,
        env = "VOD_SIGNER_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Exit code when the server fails after it started (setup problems exit with 2).
const SERVER_FAILED: i32 = 1;

pub fn run(args: ServeArgs) -> i32 {
    // Held until `run` returns: dropping it writes out the log lines still buffered.
    let _log_flush = match init_logging(args.log_format) {
        Ok(guard) => guard,
        Err(e) => return fail_usage(format!("cannot start the log writer thread: {e}")),
    };
    let mut config = match (&args.config, args.dev) {
        (Some(path), _) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => return fail_usage(format!("configuration {}: {e}", path.display())),
        },
        (None, _) => Config::development(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail_usage(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        // Handlers are installed before the port opens, so a signal sent as soon as the
        // service is reachable is never met by the default action (immediate termination).
        let shutdown = match ShutdownSignals::install() {
            Ok(signals) => signals,
            Err(e) => return fail_usage(format!("cannot install signal handlers: {e}")),
        };
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(e) => return fail_usage(format!("cannot listen on {}: {e}", config.listen)),
        };
        if config.development {
            match listener.local_addr() {
                Ok(addr) => print_development_banner(addr),
                Err(e) => return fail_usage(format!("cannot read the listening address: {e}")),
            }
        }
        match crate::server::serve(config, listener, shutdown.wait()).await {
            Ok(()) => exit::OK,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                eprintln!("vod-signer: {e}");
                SERVER_FAILED
            }
        }
    })
}

fn init_logging(format: LogFormat) -> std::io::Result<crate::logging::FlushGuard> {
    crate::logging::init(match format {
        LogFormat::Plain => crate::logging::Format::Plain,
        LogFormat::Json => crate::logging::Format::Json,
    })
}

struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGHUP reloads the configuration (see `server`). Registering it here too means one
        // sent before the server listens for it (`systemctl reload` right after start) is
        // dropped instead of meeting the default action, which would kill the process.
        drop(signal(SignalKind::hangup())?);
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignals {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        let name = tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "ctrl-c", "shutdown requested");
    }
}

/// Everything a newcomer needs to make a first call. The token printed is the published
/// development token; a configured token is never printed anywhere.
fn print_development_banner(addr: SocketAddr) {
    eprintln!(
        "\
=== vod-signer DEVELOPMENT MODE (--dev) ===
Built-in key and caller, published in the source code: NOT secret, NOT for production.
  secretId: {DEV_SECRET_ID} (unknown to VOD: its signatures cannot upload)
  caller:   {DEV_CALLER}
  token:    {DEV_TOKEN}
  address:  {addr}

Try it (grpcurl reads the API from the server's reflection):
  grpcurl -plaintext -H 'authorization: Bearer {DEV_TOKEN}' -d '{{\"user_id\": \"alice\", \"validity_seconds\": 600}}' {addr} vod.signer.v1.UploadSigner/IssueSignature
==========================================="
    );
}
