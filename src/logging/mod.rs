//! Logging of the server: every line goes through one background writer thread (`writer`),
//! and audit events (one per issued signature) have a formatter of their own (`audit`).

mod audit;
mod deceptive;
mod rate_limit;
mod writer;

pub(crate) use audit::{AuditLayer, TARGET as AUDIT_TARGET};
pub(crate) use deceptive::is_deceptive;
pub(crate) use rate_limit::RateLimit;
pub(crate) use writer::FlushGuard;
pub use writer::{DEFAULT_HIGH_WATER, SinkHealth, spawn as spawn_writer};

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The health of the output [`init`] installed, once it has.
static INSTALLED_SINK: OnceLock<SinkHealth> = OnceLock::new();

/// The health of the log output installed by [`init`] (stderr), or `None` if logging was set
/// up some other way (tests). The server stops issuing while it is broken: audit lines are
/// written there.
pub(crate) fn installed_sink() -> Option<SinkHealth> {
    INSTALLED_SINK.get().cloned()
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter from `RUST_LOG`, or `info` when it is unset or invalid (said once on stderr).
fn env_filter(warn: bool) -> EnvFilter {
    match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            if warn && std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("vod-signer: ignoring RUST_LOG ({e}); logging at info");
            }
            EnvFilter::new("info")
        }
    }
}

/// Installs the global subscriber: lines in `format` on stderr, filtered by `RUST_LOG`.
/// Keep the returned guard while the server runs; dropping it writes out the lines still
/// buffered. Fails only if the writer thread cannot be started.
pub(crate) fn init(format: Format) -> std::io::Result<FlushGuard> {
    let (writer, guard) = writer::spawn(std::io::stderr(), writer::DEFAULT_HIGH_WATER)?;
    let _ = INSTALLED_SINK.set(guard.health());
    let is_audit = |meta: &tracing::Metadata<'_>| meta.target() == AUDIT_TARGET;
    let general = tracing_subscriber::fmt::layer()
        .with_writer(writer.clone())
        // Colour codes only help a person at a terminal; in a file they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let general = match format {
        Format::Plain => general.boxed(),
        Format::Json => general.json().boxed(),
    }
    .with_filter(env_filter(true).and(filter_fn(move |meta| !is_audit(meta))));
    // The same RUST_LOG decides whether audit lines are written (`audit=off` turns them off).
    let audit =
        AuditLayer::new(writer, format).with_filter(env_filter(false).and(filter_fn(is_audit)));
    // `try_init` fails only if a subscriber is already set (as in tests); that one stays.
    let _ = tracing_subscriber::registry()
        .with(general)
        .with(audit)
        .try_init();
    Ok(guard)
}
