//! Round trip: any request the core agrees to sign must verify, with exactly the parameters
//! that were signed. Catches encoder/parser disagreements (percent-encoding, separators,
//! Unicode) that fixed test vectors miss.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vod_signer::signature::{
    KeyRing, Procedure, Random, SecretId, SecretKey, SessionContext, SignRequest, SigningKey,
    SourceContext, StorageRegion, TaskNotifyMode, TaskPriority, UploadParams, Validity,
    VerifyOptions,
};

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::single(SigningKey::new(
        SecretId::new("AKIDfuzzOnly").unwrap(),
        &SecretKey::from_string("fuzz-only-published-key".to_owned()).unwrap(),
    ))
});

#[derive(Arbitrary, Debug)]
struct Input {
    now: u32,
    validity: u32,
    random: u32,
    class_id: Option<u64>,
    procedure: Option<String>,
    task_priority: Option<i8>,
    task_notify_mode: Option<u8>,
    source_context: Option<String>,
    one_time_valid: bool,
    vod_sub_app_id: Option<u64>,
    session_context: Option<String>,
    storage_region: Option<String>,
}

/// `Some(value)` if the core accepts it; a value it refuses is simply left out.
fn accepted<T, E>(value: Option<Result<T, E>>) -> Option<T> {
    value.and_then(Result::ok)
}

fuzz_target!(|input: Input| {
    let Ok(validity) = Validity::from_secs(u64::from(input.validity)) else {
        return;
    };
    let params = UploadParams {
        class_id: input.class_id,
        procedure: accepted(input.procedure.map(Procedure::new)),
        task_priority: accepted(input.task_priority.map(|p| TaskPriority::new(i64::from(p)))),
        task_notify_mode: input.task_notify_mode.map(|m| match m % 3 {
            0 => TaskNotifyMode::Finish,
            1 => TaskNotifyMode::Change,
            _ => TaskNotifyMode::None,
        }),
        source_context: accepted(input.source_context.map(SourceContext::new)),
        one_time_valid: input.one_time_valid.then_some(true),
        vod_sub_app_id: input.vod_sub_app_id,
        session_context: accepted(input.session_context.map(SessionContext::new)),
        storage_region: accepted(input.storage_region.map(StorageRegion::new)),
    };
    let Ok(request) = SignRequest::new(validity, params) else {
        return;
    };
    let now = i64::from(input.now);
    let issued = RING
        .active()
        .sign(&request, now, Random(input.random))
        .expect("a request SignRequest::new accepted signs");
    let verified = RING
        .verify(issued.signature.as_str(), now, VerifyOptions::default())
        .unwrap_or_else(|e| panic!("our own signature does not verify: {e:?}"));
    assert_eq!(verified.current_time_stamp, now);
    assert_eq!(verified.expire_time, now + i64::from(validity.as_secs()));
    assert_eq!(verified.random, Random(input.random));
    assert_eq!(&verified.upload, request.params());
    assert!(verified.extra.is_empty());
});
