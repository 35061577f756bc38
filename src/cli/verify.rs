//! `vod-signer verify`: check a signature locally and print the verdict as JSON.

use clap::Args;
use serde_json::{Map, Value, json};

use super::secret_source::KeyArgs;
use super::{exit, fail_usage, unix_now};
use crate::signature::{KeyRing, SignedParams, VerifyOptions};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signature to check.
    pub signature: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Check as of this Unix time instead of now.
    #[arg(long, value_name = "UNIX")]
    pub at: Option<i64>,
    /// Seconds `currentTimeStamp` may lie in the future.
    #[arg(long, value_name = "SECS", default_value_t = crate::signature::DEFAULT_CLOCK_SKEW_SECONDS)]
    pub clock_skew: u32,
}

/// Every decoded parameter under its wire name; integers as JSON numbers.
pub(super) fn params_json(p: &SignedParams) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("secretId".into(), p.secret_id.as_str().into());
    m.insert("currentTimeStamp".into(), p.current_time_stamp.into());
    m.insert("expireTime".into(), p.expire_time.into());
    m.insert("random".into(), p.random.0.into());
    let u = &p.upload;
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            m.insert(name.into(), v);
        }
    };
    put("classId", u.class_id.map(Value::from));
    put("procedure", u.procedure.as_ref().map(|v| v.as_str().into()));
    put("taskPriority", u.task_priority.map(|v| v.get().into()));
    put(
        "taskNotifyMode",
        u.task_notify_mode.map(|v| v.as_str().into()),
    );
    put(
        "sourceContext",
        u.source_context.as_ref().map(|v| v.as_str().into()),
    );
    put("oneTimeValid", u.one_time_valid.map(|v| u8::from(v).into()));
    put("vodSubAppId", u.vod_sub_app_id.map(Value::from));
    put(
        "sessionContext",
        u.session_context.as_ref().map(|v| v.as_str().into()),
    );
    put(
        "storageRegion",
        u.storage_region.as_ref().map(|v| v.as_str().into()),
    );
    for (name, value) in &p.extra {
        m.entry(name.clone())
            .or_insert_with(|| value.as_str().into());
    }
    m
}

/// The signed parameters none of the documented ones, by name (repeats joined with `,`, as
/// the service's `extra_params`).
pub(super) fn extra_json(p: &SignedParams) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, value) in &p.extra {
        match m.get_mut(name) {
            Some(Value::String(values)) => {
                values.push(',');
                values.push_str(value);
            }
            _ => {
                m.insert(name.clone(), value.as_str().into());
            }
        }
    }
    m
}

pub(super) fn run(args: VerifyArgs) -> i32 {
    let key = match args.key.signing_key() {
        Ok(k) => k,
        Err(e) => return fail_usage(e),
    };
    let ring = KeyRing::single(key);
    let options = VerifyOptions {
        clock_skew_seconds: args.clock_skew,
    };
    let now = args.at.unwrap_or_else(unix_now);
    let (verdict, code) = match ring.verify(&args.signature, now, options) {
        Ok(params) => (
            json!({"valid": true, "failure": null, "detail": null, "params": params_json(&params),
                   "extra_params": extra_json(&params)}),
            exit::OK,
        ),
        Err(e) => (
            json!({
                "valid": false,
                "failure": e.failure.as_str(),
                "detail": e.detail,
                "params": e.params.as_deref().map(params_json).unwrap_or_default(),
                "extra_params": e.params.as_deref().map(extra_json).unwrap_or_default(),
            }),
            exit::NEGATIVE,
        ),
    };
    println!("{verdict}");
    code
}
