//! What a caller asks for: typed requests that become `vod.signer.v1` messages at the edge.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, FieldViolation};
use crate::proto;

/// The longest validity Tencent accepts: `expireTime - currentTimeStamp` of at most 90 days.
pub const MAX_VALIDITY: Duration = Duration::from_secs(7_776_000);

/// How VOD reports a task flow's progress (`taskNotifyMode`); only meaningful with a procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskNotifyMode {
    /// One notification when the whole flow is done (what VOD does when the mode is not set).
    Finish,
    /// A notification on every subtask state change.
    Change,
    /// No callback.
    None,
}

impl TaskNotifyMode {
    /// The value as it appears in a signature (`Finish`, `Change`, `None`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskNotifyMode::Finish => "Finish",
            TaskNotifyMode::Change => "Change",
            TaskNotifyMode::None => "None",
        }
    }

    fn to_proto(mode: Option<Self>) -> proto::TaskNotifyMode {
        match mode {
            Option::None => proto::TaskNotifyMode::Unspecified,
            Some(TaskNotifyMode::Finish) => proto::TaskNotifyMode::Finish,
            Some(TaskNotifyMode::Change) => proto::TaskNotifyMode::Change,
            Some(TaskNotifyMode::None) => proto::TaskNotifyMode::None,
        }
    }

    /// `None` for UNSPECIFIED and for values this client does not know (a newer server).
    fn from_proto(value: i32) -> Option<Self> {
        match proto::TaskNotifyMode::try_from(value) {
            Ok(proto::TaskNotifyMode::Finish) => Some(TaskNotifyMode::Finish),
            Ok(proto::TaskNotifyMode::Change) => Some(TaskNotifyMode::Change),
            Ok(proto::TaskNotifyMode::None) => Some(TaskNotifyMode::None),
            Ok(proto::TaskNotifyMode::Unspecified) | Err(_) => Option::None,
        }
    }
}

impl fmt::Display for TaskNotifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The optional parameters of a signature, under Rust names; a `None` field is left out of the
/// signature. The service checks the limits (and the caller's policy) and reports violations as
/// [`Error::InvalidArgument`] with one [`FieldViolation`] per bad field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadParams {
    /// `classId`: media category.
    pub class_id: Option<u64>,
    /// `procedure`: task-flow template run after the upload (at most 256 characters).
    pub procedure: Option<String>,
    /// `taskPriority`: -10..=10; needs `procedure`.
    pub task_priority: Option<i32>,
    /// `taskNotifyMode`; needs `procedure`.
    pub task_notify_mode: Option<TaskNotifyMode>,
    /// `sourceContext`: at most 250 characters, returned in the NewFileUpload callback.
    pub source_context: Option<String>,
    /// `sessionContext`: at most 1000 characters, returned in ProcedureStateChanged callbacks.
    pub session_context: Option<String>,
    /// `oneTimeValid=1`: VOD accepts the signature only once.
    pub one_time_valid: bool,
    /// `vodSubAppId`: the VOD sub-application.
    pub vod_sub_app_id: Option<u64>,
    /// `storageRegion`, e.g. `ap-chongqing`.
    pub storage_region: Option<String>,
}

impl UploadParams {
    pub(crate) fn to_proto(&self) -> proto::UploadParams {
        proto::UploadParams {
            class_id: self.class_id,
            procedure: self.procedure.clone(),
            task_priority: self.task_priority,
            task_notify_mode: TaskNotifyMode::to_proto(self.task_notify_mode) as i32,
            source_context: self.source_context.clone(),
            session_context: self.session_context.clone(),
            one_time_valid: self.one_time_valid,
            vod_sub_app_id: self.vod_sub_app_id,
            storage_region: self.storage_region.clone(),
        }
    }

    pub(crate) fn from_proto(p: proto::UploadParams) -> Self {
        UploadParams {
            class_id: p.class_id,
            procedure: p.procedure,
            task_priority: p.task_priority,
            task_notify_mode: TaskNotifyMode::from_proto(p.task_notify_mode),
            source_context: p.source_context,
            session_context: p.session_context,
            one_time_valid: p.one_time_valid,
            vod_sub_app_id: p.vod_sub_app_id,
            storage_region: p.storage_region,
        }
    }
}

/// A request for a signature for one end user's upload.
///
/// ```
/// use std::time::Duration;
/// use vod_signer_client::{IssueRequest, TaskNotifyMode};
///
/// let request = IssueRequest::for_user("u-1")
///     .procedure("LongVideoPreset")
///     .task_notify_mode(TaskNotifyMode::Finish)
///     .source_context("order-42")
///     .validity(Duration::from_secs(600))
///     .one_time()
///     .deadline(Duration::from_secs(2));
/// assert_eq!(request.params().source_context.as_deref(), Some("order-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    user_id: String,
    validity: Option<Duration>,
    params: UploadParams,
    deadline: Option<Duration>,
}

impl IssueRequest {
    /// A request for the end user `user_id`, with the caller's default validity and no optional
    /// parameters.
    pub fn for_user(user_id: impl Into<String>) -> Self {
        IssueRequest {
            user_id: user_id.into(),
            validity: None,
            params: UploadParams::default(),
            deadline: None,
        }
    }

    /// How long the signature stays valid: whole seconds, from 1 s to [`MAX_VALIDITY`]. Without
    /// it the service uses the caller's configured default.
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = Some(validity);
        self
    }

    /// `classId`: media category.
    pub fn class_id(mut self, class_id: u64) -> Self {
        self.params.class_id = Some(class_id);
        self
    }

    /// `procedure`: the task-flow template to run after the upload.
    pub fn procedure(mut self, procedure: impl Into<String>) -> Self {
        self.params.procedure = Some(procedure.into());
        self
    }

    /// `taskPriority`: -10..=10; needs a procedure.
    pub fn task_priority(mut self, priority: i32) -> Self {
        self.params.task_priority = Some(priority);
        self
    }

    /// `taskNotifyMode`; needs a procedure.
    pub fn task_notify_mode(mut self, mode: TaskNotifyMode) -> Self {
        self.params.task_notify_mode = Some(mode);
        self
    }

    /// `sourceContext`: up to 250 characters, echoed in the NewFileUpload callback (a good place
    /// for your own user or order id).
    pub fn source_context(mut self, context: impl Into<String>) -> Self {
        self.params.source_context = Some(context.into());
        self
    }

    /// `sessionContext`: up to 1000 characters, echoed in task-flow callbacks.
    pub fn session_context(mut self, context: impl Into<String>) -> Self {
        self.params.session_context = Some(context.into());
        self
    }

    /// `oneTimeValid=1`: VOD accepts the signature once. Uploaders then need a fresh signature
    /// for every step and every retry, which this service mints anyway.
    pub fn one_time(mut self) -> Self {
        self.params.one_time_valid = true;
        self
    }

    /// `vodSubAppId`: the VOD sub-application.
    pub fn sub_app_id(mut self, sub_app_id: u64) -> Self {
        self.params.vod_sub_app_id = Some(sub_app_id);
        self
    }

    /// `storageRegion`, e.g. `ap-chongqing`.
    pub fn storage_region(mut self, region: impl Into<String>) -> Self {
        self.params.storage_region = Some(region.into());
        self
    }

    /// Replaces all optional parameters at once.
    pub fn with_params(mut self, params: UploadParams) -> Self {
        self.params = params;
        self
    }

    /// The deadline for this call, retries included, instead of the client's default.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The end user the signature is for.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The optional parameters as set so far.
    pub fn params(&self) -> &UploadParams {
        &self.params
    }

    pub(crate) fn deadline_override(&self) -> Option<Duration> {
        self.deadline
    }

    /// The wire message. Only what the wire cannot carry is checked here (validity that is not
    /// whole seconds or is out of the contract's 1..=90 days); every other rule is the service's.
    pub(crate) fn to_proto(&self) -> Result<proto::IssueSignatureRequest, Error> {
        let validity_seconds = match self.validity {
            None => 0,
            Some(v) => validity_seconds(v)?,
        };
        Ok(proto::IssueSignatureRequest {
            user_id: self.user_id.clone(),
            validity_seconds,
            params: Some(self.params.to_proto()),
        })
    }
}

fn validity_seconds(validity: Duration) -> Result<u32, Error> {
    let problem = if validity.subsec_nanos() != 0 {
        Some("must be a whole number of seconds")
    } else if validity.is_zero() {
        Some("must be at least 1 second")
    } else if validity > MAX_VALIDITY {
        Some("must be at most 7776000 seconds (90 days)")
    } else {
        None
    };
    match problem {
        None => Ok(validity.as_secs() as u32),
        Some(description) => Err(Error::InvalidArgument {
            message: format!("validity {validity:?}"),
            field_violations: vec![FieldViolation {
                field: "validity_seconds".into(),
                description: description.into(),
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let r = IssueRequest::for_user("u-1")
            .class_id(7)
            .procedure("p")
            .task_priority(-3)
            .task_notify_mode(TaskNotifyMode::Change)
            .source_context("s")
            .session_context("c")
            .one_time()
            .sub_app_id(1500)
            .storage_region("ap-chongqing")
            .validity(Duration::from_secs(600));
        let wire = r.to_proto().unwrap();
        assert_eq!(wire.user_id, "u-1");
        assert_eq!(wire.validity_seconds, 600);
        let p = wire.params.unwrap();
        assert_eq!(p.class_id, Some(7));
        assert_eq!(p.procedure.as_deref(), Some("p"));
        assert_eq!(p.task_priority, Some(-3));
        assert_eq!(p.task_notify_mode, proto::TaskNotifyMode::Change as i32);
        assert_eq!(p.source_context.as_deref(), Some("s"));
        assert_eq!(p.session_context.as_deref(), Some("c"));
        assert!(p.one_time_valid);
        assert_eq!(p.vod_sub_app_id, Some(1500));
        assert_eq!(p.storage_region.as_deref(), Some("ap-chongqing"));
        // And back: the decoded form of what was sent is what was asked for.
        assert_eq!(UploadParams::from_proto(p), r.params);
    }

    #[test]
    fn unset_validity_means_the_callers_default() {
        let wire = IssueRequest::for_user("u").to_proto().unwrap();
        assert_eq!(wire.validity_seconds, 0);
        let p = wire.params.unwrap();
        assert_eq!(
            p.task_notify_mode,
            proto::TaskNotifyMode::Unspecified as i32
        );
        assert!(!p.one_time_valid);
    }

    #[test]
    fn validity_the_wire_cannot_carry_is_rejected_locally() {
        for bad in [
            Duration::ZERO,
            Duration::from_millis(1500),
            MAX_VALIDITY + Duration::from_secs(1),
            Duration::from_secs(u64::from(u32::MAX) + 1),
        ] {
            match IssueRequest::for_user("u").validity(bad).to_proto() {
                Err(Error::InvalidArgument {
                    field_violations, ..
                }) => assert_eq!(field_violations[0].field, "validity_seconds"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(
            IssueRequest::for_user("u")
                .validity(MAX_VALIDITY)
                .to_proto()
                .unwrap()
                .validity_seconds,
            7_776_000
        );
    }

    #[test]
    fn unknown_notify_modes_decode_as_unset() {
        assert_eq!(TaskNotifyMode::from_proto(99), None);
        assert_eq!(TaskNotifyMode::from_proto(3), Some(TaskNotifyMode::None));
    }
}
