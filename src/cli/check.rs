//! `vod-signer check`: ask a running service to verify a signature; prints the verdict as JSON
//! in the same shape as `vod-signer verify`. Exit codes: see `issue.rs`.

use std::io::Read;

use clap::Args;
use serde_json::{Map, Value, json};
use vod_signer_client::{SignatureContents, Verification, unix_seconds};

use super::issue::{CALL_FAILED, ClientArgs, fail_call};
use super::{exit, fail_usage};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The signature to check, or `-` to read it from standard input (keeps it out of the
    /// process list).
    pub signature: String,
}

/// Every decoded parameter under its wire name, as `vod-signer verify` prints them.
fn contents_json(c: &SignatureContents) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("secretId".into(), c.secret_id.as_str().into());
    m.insert("currentTimeStamp".into(), unix_seconds(c.issued_at).into());
    m.insert("expireTime".into(), unix_seconds(c.expires_at).into());
    m.insert("random".into(), c.random.into());
    let p = &c.params;
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            m.insert(name.into(), v);
        }
    };
    put("classId", p.class_id.map(Value::from));
    put("procedure", p.procedure.as_deref().map(Value::from));
    put("taskPriority", p.task_priority.map(Value::from));
    put(
        "taskNotifyMode",
        p.task_notify_mode.map(|v| v.as_str().into()),
    );
    put(
        "sourceContext",
        p.source_context.as_deref().map(Value::from),
    );
    put("oneTimeValid", p.one_time_valid.then(|| Value::from(1)));
    put("vodSubAppId", p.vod_sub_app_id.map(Value::from));
    put(
        "sessionContext",
        p.session_context.as_deref().map(Value::from),
    );
    put(
        "storageRegion",
        p.storage_region.as_deref().map(Value::from),
    );
    // Unknown signed parameters, as `vod-signer verify` prints them: among the parameters,
    // and on their own so a checker cannot miss them.
    for (name, value) in &c.extra_params {
        m.entry(name.clone())
            .or_insert_with(|| value.as_str().into());
    }
    m
}

fn extra_json(c: &SignatureContents) -> Map<String, Value> {
    c.extra_params
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().into()))
        .collect()
}

fn signature(args: &CheckArgs) -> Result<String, String> {
    if args.signature != "-" {
        return Ok(args.signature.clone());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the signature from standard input: {e}"))?;
    Ok(text.trim().to_owned())
}

pub(super) fn run(args: CheckArgs) -> i32 {
    let signature = match signature(&args) {
        Ok(s) => s,
        Err(e) => return fail_usage(e),
    };
    args.client.run(async move |client| {
        let (verdict, code) = match client.verify(&signature).await {
            Ok(Verification::Valid(contents)) => (
                json!({"valid": true, "failure": null, "detail": null,
                       "params": contents_json(&contents),
                       "extra_params": extra_json(&contents)}),
                exit::OK,
            ),
            Ok(Verification::Invalid {
                failure,
                detail,
                contents,
            }) => (
                json!({"valid": false, "failure": failure.as_str(), "detail": detail,
                       "params": contents.as_ref().map(contents_json).unwrap_or_default(),
                       "extra_params": contents.as_ref().map(extra_json).unwrap_or_default()}),
                exit::NEGATIVE,
            ),
            // 1 means "invalid", so a refused call must not exit with it.
            Err(e) => return fail_call(&e, CALL_FAILED),
        };
        println!("{verdict}");
        code
    })
}
