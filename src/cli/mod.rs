//! The `vod-signer` command line. Each subcommand lives in its own file; this one only parses
//! arguments and maps outcomes to exit codes (0 ok, 1 a negative answer, 2 usage or setup error).

mod check;
mod issue;
mod secret_source;
mod serve;
mod sign;
mod uploads;
mod verify;

use clap::{Parser, Subcommand};

/// Issue and verify Tencent Cloud VOD client-upload signatures.
#[derive(Debug, Parser)]
#[command(name = "vod-signer", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign locally with a SecretKey from an environment variable or a file; prints the signature.
    Sign(sign::SignArgs),
    /// Verify a signature locally; prints one JSON object (exit 0 valid, 1 invalid).
    Verify(verify::VerifyArgs),
    /// Run the gRPC service (UploadSigner, health, reflection) until SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Ask a running service for a signature; prints it (or, with --json, the app-facing body).
    /// Exit 0 ok, 1 refused, 2 usage, 3 no answer.
    Issue(issue::IssueArgs),
    /// Ask a running service to verify a signature; prints one JSON object (exit 0 valid,
    /// 1 invalid, 2 usage, 3 no verdict).
    Check(check::CheckArgs),
    /// Ask a running service about tracked uploads: `get`, `list` or `watch` (JSON lines).
    /// Exit 0 ok, 1 refused or not found, 2 usage, 3 no answer.
    Uploads(uploads::UploadsArgs),
}

/// Exit codes shared by every subcommand.
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    pub(crate) const NEGATIVE: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Issue(args) => issue::run(args),
        Command::Check(args) => check::run(args),
        Command::Uploads(args) => uploads::run(args),
    }
}

/// Prints a setup or usage problem and returns the matching exit code.
pub(crate) fn fail_usage(message: impl std::fmt::Display) -> i32 {
    eprintln!("vod-signer: {message}");
    exit::USAGE
}

/// Seconds since the Unix epoch from the system clock.
pub fn unix_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}
