//! Compares what the verifier decoded with a producer's own inputs (JSON values by wire name).

use serde_json::Value;
use std::collections::BTreeMap;
use vod_signer::signature::SignedParams;

pub fn assert_params_match(label: &str, args: &BTreeMap<String, Value>, p: &SignedParams) {
    for (name, expected) in args {
        let actual: Value = match name.as_str() {
            "secretId" => p.secret_id.as_str().into(),
            "currentTimeStamp" => p.current_time_stamp.into(),
            "expireTime" => p.expire_time.into(),
            "random" => p.random.0.into(),
            "classId" => p.upload.class_id.into(),
            "vodSubAppId" => p.upload.vod_sub_app_id.into(),
            "procedure" => p.upload.procedure.as_ref().map(|x| x.as_str()).into(),
            "sourceContext" => p.upload.source_context.as_ref().map(|x| x.as_str()).into(),
            "sessionContext" => p.upload.session_context.as_ref().map(|x| x.as_str()).into(),
            "storageRegion" => p.upload.storage_region.as_ref().map(|x| x.as_str()).into(),
            "taskPriority" => p.upload.task_priority.map(|x| x.get()).into(),
            "taskNotifyMode" => p.upload.task_notify_mode.map(|x| x.as_str()).into(),
            "oneTimeValid" => p.upload.one_time_valid.map(u8::from).into(),
            other => panic!("{label}: an argument the test does not know: {other}"),
        };
        assert_eq!(&actual, expected, "{label}: {name}");
    }
    let known = 4 + [
        p.upload.class_id.is_some(),
        p.upload.procedure.is_some(),
        p.upload.task_priority.is_some(),
        p.upload.task_notify_mode.is_some(),
        p.upload.source_context.is_some(),
        p.upload.one_time_valid.is_some(),
        p.upload.vod_sub_app_id.is_some(),
        p.upload.session_context.is_some(),
        p.upload.storage_region.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    assert_eq!(
        known,
        args.len(),
        "{label}: the verifier decoded parameters the producer did not sign"
    );
    assert!(
        p.extra.is_empty(),
        "{label}: unexpected extra parameters {:?}",
        p.extra
    );
}
