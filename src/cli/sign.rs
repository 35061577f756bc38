//! `vod-signer sign`: mint a signature locally.

use clap::Args;

use super::secret_source::KeyArgs;
use super::{exit, fail_usage, unix_now};
use crate::signature::{
    ParamError, Procedure, SessionContext, SignRequest, SourceContext, StorageRegion,
    TaskNotifyMode, TaskPriority, UniqueRandom, UploadParams, Validity,
};

/// Validity when `--validity` is not given: one day, as in Tencent's samples. Uploaders fetch a
/// new signature for every step, so shorter is fine where the clock is trustworthy.
pub(super) const DEFAULT_VALIDITY_SECS: u64 = 86_400;

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Seconds the signature stays valid (1..=7776000, i.e. at most 90 days).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_VALIDITY_SECS)]
    pub validity: u64,
    /// `classId`: media category.
    #[arg(long, value_name = "N")]
    pub class_id: Option<u64>,
    /// `procedure`: task-flow template to run after upload.
    #[arg(long, value_name = "P")]
    pub procedure: Option<String>,
    /// `taskPriority`: -10..=10 (needs --procedure).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub task_priority: Option<i64>,
    /// `taskNotifyMode`: Finish, Change or None (needs --procedure).
    #[arg(long, value_name = "M")]
    pub task_notify_mode: Option<String>,
    /// `sourceContext`: up to 250 characters, returned in the upload callback.
    #[arg(long, value_name = "S")]
    pub source_context: Option<String>,
    /// `sessionContext`: up to 1000 characters, returned in task-flow callbacks.
    #[arg(long, value_name = "S")]
    pub session_context: Option<String>,
    /// `oneTimeValid=1`: VOD accepts the signature once.
    #[arg(long)]
    pub one_time: bool,
    /// `vodSubAppId`: the VOD sub-application.
    #[arg(long, value_name = "N")]
    pub sub_app_id: Option<u64>,
    /// `storageRegion`, e.g. ap-chongqing.
    #[arg(long, value_name = "R")]
    pub storage_region: Option<String>,
}

fn flag(name: &str) -> impl Fn(ParamError) -> String + '_ {
    move |e| format!("--{name}: {e}")
}

impl SignArgs {
    /// The request these flags describe, every limit checked.
    pub fn request(&self) -> Result<SignRequest, String> {
        let validity = Validity::from_secs(self.validity).map_err(flag("validity"))?;
        let params = UploadParams {
            class_id: self.class_id,
            procedure: self
                .procedure
                .clone()
                .map(Procedure::new)
                .transpose()
                .map_err(flag("procedure"))?,
            task_priority: self
                .task_priority
                .map(TaskPriority::new)
                .transpose()
                .map_err(flag("task-priority"))?,
            task_notify_mode: self
                .task_notify_mode
                .as_deref()
                .map(str::parse::<TaskNotifyMode>)
                .transpose()
                .map_err(flag("task-notify-mode"))?,
            source_context: self
                .source_context
                .clone()
                .map(SourceContext::new)
                .transpose()
                .map_err(flag("source-context"))?,
            one_time_valid: self.one_time.then_some(true),
            vod_sub_app_id: self.sub_app_id,
            session_context: self
                .session_context
                .clone()
                .map(SessionContext::new)
                .transpose()
                .map_err(flag("session-context"))?,
            storage_region: self
                .storage_region
                .clone()
                .map(StorageRegion::new)
                .transpose()
                .map_err(flag("storage-region"))?,
        };
        SignRequest::new(validity, params).map_err(|e| e.to_string())
    }
}

pub(super) fn run(args: SignArgs) -> i32 {
    let request = match args.request() {
        Ok(r) => r,
        Err(e) => return fail_usage(e),
    };
    let key = match args.key.signing_key() {
        Ok(k) => k,
        Err(e) => return fail_usage(e),
    };
    let random = UniqueRandom::from_os_entropy().next();
    match key.sign(&request, unix_now(), random) {
        Ok(issued) => {
            println!("{}", issued.signature.as_str());
            exit::OK
        }
        Err(e) => fail_usage(e),
    }
}
