//! Proto messages to core types and back. Request values are checked here, once, by the core's
//! own constructors; a refused value becomes a violation naming the proto field.

use crate::proto::v1 as pb;
use crate::signature::{
    IssuedSignature, ParamError, ParamName, Procedure, SessionContext, SignedParams, SourceContext,
    StorageRegion, TaskNotifyMode, TaskPriority, UploadParams, Validity, VerifyError,
    VerifyFailure,
};

use super::error::{ServiceError, Violation};

/// Longest accepted `user_id`, in characters. It goes into audit logs, so it is bounded.
pub(super) const MAX_USER_ID_CHARS: usize = 256;

/// An issuance request whose every value is valid on its own; the caller's policy decides next.
#[derive(Debug)]
pub(super) struct IssueInput {
    pub user_id: String,
    /// `None`: the caller's default.
    pub validity: Option<Validity>,
    pub params: UploadParams,
}

/// The proto field a core parameter comes from.
pub(super) fn field_of(name: ParamName) -> &'static str {
    match name {
        ParamName::ExpireTime => "validity_seconds",
        ParamName::ClassId => "params.class_id",
        ParamName::Procedure => "params.procedure",
        ParamName::TaskPriority => "params.task_priority",
        ParamName::TaskNotifyMode => "params.task_notify_mode",
        ParamName::SourceContext => "params.source_context",
        ParamName::OneTimeValid => "params.one_time_valid",
        ParamName::VodSubAppId => "params.vod_sub_app_id",
        ParamName::SessionContext => "params.session_context",
        ParamName::StorageRegion => "params.storage_region",
        // Set by the service, never by a request.
        ParamName::SecretId | ParamName::CurrentTimeStamp | ParamName::Random => "",
    }
}

/// A core parameter error as a violation of the field it came from.
pub(super) fn violation(error: &ParamError) -> Violation {
    Violation::new(field_of(error.param()), error.to_string())
}

fn check_user_id(user_id: &str) -> Result<(), Violation> {
    let field = "user_id";
    if user_id.is_empty() {
        return Err(Violation::new(
            field,
            "required: the end user the upload is for",
        ));
    }
    if user_id.len() > MAX_USER_ID_CHARS && user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(Violation::new(
            field,
            format!("at most {MAX_USER_ID_CHARS} characters are allowed"),
        ));
    }
    if user_id.chars().any(char::is_control) {
        return Err(Violation::new(field, "must not contain control characters"));
    }
    // Audit lines carry the user id: a separator, a bidi override or an invisible character
    // would let one id pass for another, or fake a line, in front of whoever reads them.
    if let Some(c) = user_id.chars().find(|&c| crate::logging::is_deceptive(c)) {
        return Err(Violation::new(
            field,
            format!(
                "must not contain line separators, bidirectional controls or invisible characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Checks every field of an issuance and reports all invalid ones at once.
pub(super) fn issue_input(request: pb::IssueSignatureRequest) -> Result<IssueInput, ServiceError> {
    let mut violations = Vec::new();
    if let Err(v) = check_user_id(&request.user_id) {
        violations.push(v);
    }
    let validity = match request.validity_seconds {
        0 => None,
        secs => match Validity::from_secs(u64::from(secs)) {
            Ok(v) => Some(v),
            Err(e) => {
                violations.push(violation(&e));
                None
            }
        },
    };
    let params = upload_params(request.params.unwrap_or_default(), &mut violations);
    if violations.is_empty() {
        // Rules between fields only make sense once each field is valid.
        if let Err(e) = params.check_for_signing() {
            violations.push(violation(&e));
        }
    }
    if violations.is_empty() {
        Ok(IssueInput {
            user_id: request.user_id,
            validity,
            params,
        })
    } else {
        Err(ServiceError::InvalidArgument(violations))
    }
}

fn collect<T>(result: Result<T, ParamError>, violations: &mut Vec<Violation>) -> Option<T> {
    result.map_err(|e| violations.push(violation(&e))).ok()
}

fn upload_params(params: pb::UploadParams, violations: &mut Vec<Violation>) -> UploadParams {
    let task_notify_mode = match pb::TaskNotifyMode::try_from(params.task_notify_mode) {
        Ok(pb::TaskNotifyMode::Unspecified) => None,
        Ok(pb::TaskNotifyMode::Finish) => Some(TaskNotifyMode::Finish),
        Ok(pb::TaskNotifyMode::Change) => Some(TaskNotifyMode::Change),
        Ok(pb::TaskNotifyMode::None) => Some(TaskNotifyMode::None),
        Err(_) => {
            violations.push(Violation::new(
                "params.task_notify_mode",
                format!(
                    "unknown TaskNotifyMode value {}; use FINISH, CHANGE or NONE",
                    params.task_notify_mode
                ),
            ));
            None
        }
    };
    UploadParams {
        class_id: params.class_id,
        procedure: params
            .procedure
            .and_then(|p| collect(Procedure::new(p), violations)),
        task_priority: params
            .task_priority
            .and_then(|p| collect(TaskPriority::new(i64::from(p)), violations)),
        task_notify_mode,
        source_context: params
            .source_context
            .and_then(|s| collect(SourceContext::new(s), violations)),
        // proto3 `bool` cannot tell "false" from "unset"; both leave `oneTimeValid` out, which
        // VOD reads as 0.
        one_time_valid: params.one_time_valid.then_some(true),
        vod_sub_app_id: params.vod_sub_app_id,
        session_context: params
            .session_context
            .and_then(|s| collect(SessionContext::new(s), violations)),
        storage_region: params
            .storage_region
            .and_then(|s| collect(StorageRegion::new(s), violations)),
    }
}

/// The response for a freshly minted signature.
pub(super) fn issued_response(issued: IssuedSignature) -> pb::IssueSignatureResponse {
    let fingerprint = issued.signature.fingerprint().to_hex();
    pb::IssueSignatureResponse {
        signature: issued.signature.into_string(),
        secret_id: issued.secret_id.to_string(),
        issued_at: issued.current_time_stamp,
        expires_at: issued.expire_time,
        random: issued.random.0,
        fingerprint,
        // Set by the caller for tracked signatures.
        upload_id: String::new(),
    }
}

fn proto_params(params: &UploadParams) -> pb::UploadParams {
    pb::UploadParams {
        class_id: params.class_id,
        procedure: params.procedure.as_ref().map(|p| p.as_str().to_owned()),
        task_priority: params.task_priority.map(|p| i32::from(p.get())),
        task_notify_mode: match params.task_notify_mode {
            None => pb::TaskNotifyMode::Unspecified,
            Some(TaskNotifyMode::Finish) => pb::TaskNotifyMode::Finish,
            Some(TaskNotifyMode::Change) => pb::TaskNotifyMode::Change,
            Some(TaskNotifyMode::None) => pb::TaskNotifyMode::None,
        } as i32,
        source_context: params
            .source_context
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        session_context: params
            .session_context
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        one_time_valid: params.one_time_valid == Some(true),
        vod_sub_app_id: params.vod_sub_app_id,
        storage_region: params
            .storage_region
            .as_ref()
            .map(|s| s.as_str().to_owned()),
    }
}

pub(super) fn proto_failure(failure: VerifyFailure) -> pb::VerifyFailure {
    match failure {
        VerifyFailure::Malformed => pb::VerifyFailure::Malformed,
        VerifyFailure::UnknownSecretId => pb::VerifyFailure::UnknownSecretId,
        VerifyFailure::BadSignature => pb::VerifyFailure::BadSignature,
        VerifyFailure::InvalidParameter => pb::VerifyFailure::InvalidParameter,
        VerifyFailure::ValidityTooLong => pb::VerifyFailure::ValidityTooLong,
        VerifyFailure::NotYetValid => pb::VerifyFailure::NotYetValid,
        VerifyFailure::Expired => pb::VerifyFailure::Expired,
    }
}

fn with_params(response: &mut pb::VerifySignatureResponse, params: &SignedParams) {
    response.secret_id = params.secret_id.to_string();
    response.issued_at = params.current_time_stamp;
    response.expires_at = params.expire_time;
    response.random = params.random.0;
    response.params = Some(proto_params(&params.upload));
    for (name, value) in &params.extra {
        response
            .extra_params
            .entry(name.clone())
            .and_modify(|values| {
                values.push(',');
                values.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
}

/// The answer to a verification: a rejected signature is a normal response.
pub(super) fn verify_response(
    result: &Result<SignedParams, VerifyError>,
) -> pb::VerifySignatureResponse {
    let mut response = pb::VerifySignatureResponse::default();
    match result {
        Ok(params) => {
            response.valid = true;
            with_params(&mut response, params);
        }
        Err(e) => {
            response.set_failure(proto_failure(e.failure));
            response.detail = e.detail.clone();
            if let Some(params) = &e.params {
                with_params(&mut response, params);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: pb::UploadParams) -> pb::IssueSignatureRequest {
        pb::IssueSignatureRequest {
            user_id: "u".into(),
            validity_seconds: 0,
            params: Some(params),
        }
    }

    fn fields(result: Result<IssueInput, ServiceError>) -> Vec<String> {
        match result {
            Err(ServiceError::InvalidArgument(v)) => {
                v.into_iter().map(|v| v.field.into_owned()).collect()
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let mut r = request(pb::UploadParams {
            source_context: Some("x".repeat(251)),
            task_priority: Some(11),
            storage_region: Some("AP CHONGQING".into()),
            ..Default::default()
        });
        r.user_id = String::new();
        r.validity_seconds = 7_776_001;
        assert_eq!(
            fields(issue_input(r)),
            [
                "user_id",
                "validity_seconds",
                "params.task_priority",
                "params.source_context",
                "params.storage_region"
            ]
        );
    }

    #[test]
    fn unknown_notify_mode_and_missing_procedure_are_invalid() {
        let r = request(pb::UploadParams {
            procedure: Some("p".into()),
            task_notify_mode: 9,
            ..Default::default()
        });
        assert_eq!(fields(issue_input(r)), ["params.task_notify_mode"]);
        let r = request(pb::UploadParams {
            task_notify_mode: pb::TaskNotifyMode::Change as i32,
            ..Default::default()
        });
        assert_eq!(fields(issue_input(r)), ["params.task_notify_mode"]);
    }

    #[test]
    fn user_id_limits() {
        assert!(check_user_id(&"é".repeat(MAX_USER_ID_CHARS)).is_ok());
        assert!(check_user_id(&"é".repeat(MAX_USER_ID_CHARS + 1)).is_err());
        assert!(check_user_id("a\nb").is_err());
        assert!(check_user_id("a\u{7f}").is_err());
        for c in [
            '\u{202E}', '\u{2028}', '\u{2029}', '\u{200B}', '\u{FEFF}', '\u{2066}',
        ] {
            let error = check_user_id(&format!("alice{c}x")).unwrap_err();
            assert_eq!(error.field, "user_id");
            assert!(
                error.description.contains(&format!("U+{:04X}", c as u32)),
                "{}",
                error.description
            );
        }
        assert!(check_user_id("名字-é_😀").is_ok());
    }

    #[test]
    fn every_core_failure_has_its_own_proto_value() {
        let mapped: std::collections::HashSet<i32> = VerifyFailure::ALL
            .into_iter()
            .map(|f| proto_failure(f) as i32)
            .collect();
        assert_eq!(mapped.len(), VerifyFailure::ALL.len());
        assert!(!mapped.contains(&(pb::VerifyFailure::Unspecified as i32)));
        for f in VerifyFailure::ALL {
            assert!(proto_failure(f).as_str_name().ends_with(f.as_str()));
        }
    }
}
