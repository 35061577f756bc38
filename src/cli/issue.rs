//! `vod-signer issue`: ask a running service for a signature, through `vod-signer-client`.
//!
//! Exit codes:
//! - `issue`: 0 printed; 1 the service refused (unauthenticated, permission denied, invalid
//!   argument, quota exhausted); 2 usage or setup (flags, token variable, CA file); 3 the call
//!   could not complete (unavailable, deadline exceeded, transport).
//! - `check`: 0 valid; 1 invalid; 2 usage or setup; 3 no verdict (refused or not completed).
//!
//! A failure prints the client's typed message to stderr, e.g.
//! `vod-signer: unauthenticated: unknown bearer token`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use vod_signer_client::bff::AppReply;
use vod_signer_client::{
    BearerToken, Error, IssueRequest, SignerClient, SignerClientBuilder, TaskNotifyMode,
};

use super::{exit, fail_usage};

/// Exit code when the call could not complete (no answer, not a refusal).
pub(super) const CALL_FAILED: i32 = 3;

/// How to reach the service; shared by `issue` and `check`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Service endpoint, http://host:port or https://host:port; repeat to spread calls over
    /// several.
    #[arg(long = "endpoint", value_name = "URL", required = true)]
    pub endpoints: Vec<String>,
    /// Environment variable that holds the bearer token (a token is never taken as an
    /// argument: arguments show up in process lists and shell history).
    #[arg(long, value_name = "VAR")]
    pub token_env: String,
    /// Deadline for the call, retries included (e.g. 500ms, 10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// CA certificate (PEM) to trust for https:// endpoints.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --key-file.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
}

impl ClientArgs {
    /// Runs `call` with the client these flags describe, on a runtime of its own; a runtime
    /// or a client that cannot be made is a usage error.
    pub(super) fn run(&self, call: impl AsyncFnOnce(SignerClient) -> i32) -> i32 {
        let runtime = match runtime() {
            Ok(r) => r,
            Err(e) => return fail_usage(e),
        };
        runtime.block_on(async {
            match self.client() {
                Ok(client) => call(client).await,
                Err(e) => fail_usage(e),
            }
        })
    }

    /// The client these flags describe. Must run inside a Tokio runtime.
    pub fn client(&self) -> Result<SignerClient, String> {
        let var = &self.token_env;
        let token = match std::env::var(var) {
            Ok(value) => {
                BearerToken::new(value).map_err(|e| format!("environment variable {var}: {e}"))?
            }
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("environment variable {var} is not set"));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable {var} is not valid UTF-8"));
            }
        };
        if self.ca_file.is_none() && self.endpoints.iter().any(|e| e.starts_with("https://")) {
            return Err("--ca-file is required for https:// endpoints".into());
        }
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("--{flag} {}: {e}", path.display()))
        };
        let mut builder: SignerClientBuilder = SignerClient::builder()
            .endpoints(self.endpoints.iter().cloned())
            .bearer_token(token)
            .default_deadline(self.timeout);
        if let Some(path) = &self.ca_file {
            builder = builder.tls_ca_pem(read("ca-file", path)?);
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            builder = builder.tls_client_identity(read("cert-file", cert)?, read("key-file", key)?);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        // The CLI installs no log subscriber: say it here, once.
        for warning in client.warnings() {
            eprintln!("vod-signer: warning: {warning}");
        }
        Ok(client)
    }
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The end user the upload is for.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// Seconds the signature stays valid (1..=7776000); default: the caller's configured one.
    #[arg(long, value_name = "SECS")]
    pub validity: Option<u64>,
    /// `procedure`: task-flow template to run after upload.
    #[arg(long, value_name = "P")]
    pub procedure: Option<String>,
    /// `sourceContext`: up to 250 characters, returned in the upload callback.
    #[arg(long, value_name = "S")]
    pub source_context: Option<String>,
    /// `oneTimeValid=1`: VOD accepts the signature once.
    #[arg(long)]
    pub one_time: bool,
    /// `classId`: media category.
    #[arg(long, value_name = "N")]
    pub class_id: Option<u64>,
    /// `taskPriority`: -10..=10 (needs --procedure).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub task_priority: Option<i32>,
    /// `taskNotifyMode`: Finish, Change or None (needs --procedure).
    #[arg(long, value_name = "M", value_parser = parse_notify_mode)]
    pub task_notify_mode: Option<TaskNotifyMode>,
    /// `sessionContext`: up to 1000 characters, returned in task-flow callbacks.
    #[arg(long, value_name = "S")]
    pub session_context: Option<String>,
    /// `vodSubAppId`: the VOD sub-application.
    #[arg(long, value_name = "N")]
    pub sub_app_id: Option<u64>,
    /// `storageRegion`, e.g. ap-chongqing.
    #[arg(long, value_name = "R")]
    pub storage_region: Option<String>,
    /// Print the body an app's getSignature expects, {"code":0,"message":"ok","data":{...}},
    /// instead of the bare signature.
    #[arg(long)]
    pub json: bool,
}

fn parse_notify_mode(text: &str) -> Result<TaskNotifyMode, String> {
    match text.to_ascii_lowercase().as_str() {
        "finish" => Ok(TaskNotifyMode::Finish),
        "change" => Ok(TaskNotifyMode::Change),
        "none" => Ok(TaskNotifyMode::None),
        _ => Err("expected Finish, Change or None".into()),
    }
}

impl IssueArgs {
    fn request(&self) -> IssueRequest {
        let mut request = IssueRequest::for_user(self.user.clone());
        if let Some(secs) = self.validity {
            request = request.validity(Duration::from_secs(secs));
        }
        if let Some(v) = &self.procedure {
            request = request.procedure(v.clone());
        }
        if let Some(v) = &self.source_context {
            request = request.source_context(v.clone());
        }
        if self.one_time {
            request = request.one_time();
        }
        if let Some(v) = self.class_id {
            request = request.class_id(v);
        }
        if let Some(v) = self.task_priority {
            request = request.task_priority(v);
        }
        if let Some(v) = self.task_notify_mode {
            request = request.task_notify_mode(v);
        }
        if let Some(v) = &self.session_context {
            request = request.session_context(v.clone());
        }
        if let Some(v) = self.sub_app_id {
            request = request.sub_app_id(v);
        }
        if let Some(v) = &self.storage_region {
            request = request.storage_region(v.clone());
        }
        request
    }
}

/// A one-thread runtime: the CLI makes one call at a time.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Prints a failed call's typed message and picks the exit code: `refused` when the service
/// said no, [`CALL_FAILED`] when there was no answer (see the module docs).
pub(super) fn fail_call(error: &Error, refused: i32) -> i32 {
    eprintln!("vod-signer: {error}");
    match error {
        Error::Config { .. } | Error::Credentials { .. } => exit::USAGE,
        Error::Unauthenticated { .. }
        | Error::PermissionDenied { .. }
        | Error::InvalidArgument { .. }
        | Error::QuotaExhausted { .. } => refused,
        _ => CALL_FAILED,
    }
}

pub(super) fn run(args: IssueArgs) -> i32 {
    args.client.run(async |client| {
        match client.issue(args.request()).await {
            Ok(issued) => {
                // On stderr, so stdout stays the signature (or the app's body) alone.
                if let Some(upload_id) = &issued.upload_id {
                    eprintln!("upload_id: {upload_id}");
                }
                if args.json {
                    println!("{}", AppReply::ok(&issued).to_json());
                } else {
                    println!("{}", issued.signature.expose_secret());
                }
                exit::OK
            }
            Err(e) => fail_call(&e, exit::NEGATIVE),
        }
    })
}
