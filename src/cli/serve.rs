//! `vod-signer serve`: run the gRPC service until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{exit, fail_usage};
use crate::config::{
    Config, DEV_CALLER, DEV_PATH_TOKEN, DEV_SECRET_ID, DEV_SIGN_KEY, DEV_TOKEN, StoreLocation,
};

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
    /// Receive VOD's event notifications on this address instead of `[events] listen`
    /// (needs an `[events]` section, which `--dev` has).
    #[arg(long, value_name = "ADDR")]
    pub events_listen: Option<SocketAddr>,
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

pub(super) fn run(args: ServeArgs) -> i32 {
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
    if let Some(addr) = args.events_listen {
        match config.events.as_mut() {
            Some(events) if events.path_token.is_some() => events.listen = Some(addr),
            _ => {
                return fail_usage(
                    "--events-listen needs an [events] section with a path token in the configuration",
                );
            }
        }
    }
    // The development store is a file of this process alone; it goes when the process does.
    let dev_store = match (&config.tracking, config.development) {
        (Some(tracking), true) => match &tracking.store {
            StoreLocation::Sqlite(path) => Some(path.clone()),
            StoreLocation::Postgres(_) => None,
        },
        _ => None,
    };
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
            let events = config.events.as_ref().and_then(|e| e.listen);
            match listener.local_addr() {
                Ok(addr) => print_development_banner(addr, events, dev_store.as_deref()),
                Err(e) => return fail_usage(format!("cannot read the listening address: {e}")),
            }
        }
        let code = match crate::server::serve(config, listener, shutdown.wait()).await {
            Ok(()) => exit::OK,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                eprintln!("vod-signer: {e}");
                SERVER_FAILED
            }
        };
        if let Some(path) = dev_store {
            remove_sqlite_files(&path);
        }
        code
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

/// The SQLite file and the journal files SQLite keeps beside it.
fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(name));
    }
}

/// Everything a newcomer needs to make a first call and follow an upload through its events.
/// The token, path token and SignKey printed are the published development values; configured
/// secrets are never printed anywhere.
fn print_development_banner(
    addr: SocketAddr,
    events: Option<SocketAddr>,
    store: Option<&std::path::Path>,
) {
    eprintln!(
        "\
=== vod-signer DEVELOPMENT MODE (--dev) ===
Built-in key and caller, published in the source code: NOT secret, NOT for production.
  secretId: {DEV_SECRET_ID} (unknown to VOD: its signatures cannot upload)
  caller:   {DEV_CALLER} (tracks its uploads)
  token:    {DEV_TOKEN}
  address:  {addr}

Try it (grpcurl reads the API from the server's reflection):
  grpcurl -plaintext -H 'authorization: Bearer {DEV_TOKEN}' -d '{{\"user_id\": \"alice\", \"validity_seconds\": 600}}' {addr} vod.signer.v1.UploadSigner/IssueSignature"
    );
    let Some(events) = events else {
        eprintln!("===========================================");
        return;
    };
    let store = store.map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    eprintln!(
        "
Events (VOD's callbacks), with a published path token and SignKey:
  receiver: http://{events}/vod/events/{DEV_PATH_TOKEN}
  SignKey:  {DEV_SIGN_KEY}
  store:    {store} (deleted at exit)

The whole loop, as VOD would drive it:
 1. Issue a tracked signature as above and copy its \"uploadId\".
 2. Watch the caller's uploads (in another terminal):
      VOD_SIGNER_TOKEN={DEV_TOKEN} vod-signer uploads --endpoint http://{addr} --token-env VOD_SIGNER_TOKEN watch
 3. Post the NewFileUpload event VOD sends when the app's upload completes:
      UPLOAD_ID=<the uploadId>
      T=$(( $(date +%s) + 600 )); SIGN=$(printf '%s%s' {DEV_SIGN_KEY} \"$T\" | md5sum | cut -d' ' -f1)
      curl -sS -X POST http://{events}/vod/events/{DEV_PATH_TOKEN} -H 'content-type: application/json' -d '{{\"EventType\":\"NewFileUpload\",\"FileUploadEvent\":{{\"FileId\":\"5285890784246869930\",\"MediaBasicInfo\":{{\"Name\":\"clip\",\"Type\":\"mp4\",\"MediaUrl\":\"http://example.invalid/clip.mp4\",\"SourceInfo\":{{\"SourceType\":\"Upload\",\"SourceContext\":\"'\"$UPLOAD_ID\"'\"}}}}}},\"T\":'\"$T\"',\"Sign\":\"'\"$SIGN\"'\"}}'
    The answer is {{\"code\":0}}; the watch prints the upload, now READY (no procedure).

Reliable mode (VOD's PULL queue) against a local stand-in of the VOD API:
  cargo run --example vod_standin -- 127.0.0.1:9100   (queues each event body read on stdin)
  then serve a config file with this secretId and key as the active [[keys]] entry, and
      [events.pull]
      endpoint = \"http://127.0.0.1:9100\"
Reconciliation is OFF in --dev: the development key is unknown to VOD, so its API calls could
only fail. With a config file it runs with [events.pull]'s API, or without PULL against
      [tracking.reconcile_api]
      endpoint = \"http://127.0.0.1:9100\"
  (docs/events.md, \"PULL consumer\" and \"Trying PULL locally\")
==========================================="
    );
}
