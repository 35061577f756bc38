//! The signature's parameters as types that can only hold values VOD accepts.
//!
//! Every limit is checked once, when a value is constructed; code that holds a `Validity` or a
//! `SourceContext` never has to check it again. The same constructors serve the signer (values
//! from a CLI flag or an RPC field) and the verifier (values decoded from someone's `original`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::error::{ParamError, ParamName};

/// Longest validity VOD accepts: 90 days.
pub const MAX_VALIDITY_SECONDS: u32 = 7_776_000;
/// `sourceContext` limit, in characters (Unicode scalar values), not bytes.
pub const MAX_SOURCE_CONTEXT_CHARS: usize = 250;
/// `sessionContext` limit, in characters.
pub const MAX_SESSION_CONTEXT_CHARS: usize = 1000;
/// Tencent documents no limit for a task-flow name; this bound keeps signatures small and
/// refuses obvious garbage. Console-created template names are far shorter.
pub const MAX_PROCEDURE_CHARS: usize = 256;
/// Region names are short slugs such as `ap-chongqing`.
pub(super) const MAX_STORAGE_REGION_CHARS: usize = 64;
/// Tencent SecretIds are 36 ASCII characters; leave room for other key formats.
pub(super) const MAX_SECRET_ID_CHARS: usize = 128;
/// Lowest and highest `taskPriority`.
pub(super) const TASK_PRIORITY_RANGE: std::ops::RangeInclusive<i8> = -10..=10;

fn char_count_at_most(name: ParamName, value: &str, max: usize) -> Result<(), ParamError> {
    // Cheap pre-check: a string of at most `max` bytes has at most `max` characters.
    if value.len() <= max {
        return Ok(());
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(ParamError::TooLong { name, chars, max });
    }
    Ok(())
}

/// The `secretId` of an API key: 1 to 128 printable ASCII characters, no spaces.
///
/// Cloning is cheap (shared), because every issued signature reports the key it used.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretId(Arc<str>);

impl SecretId {
    pub fn new(value: &str) -> Result<Self, ParamError> {
        let name = ParamName::SecretId;
        if value.is_empty() {
            return Err(ParamError::Empty { name });
        }
        char_count_at_most(name, value, MAX_SECRET_ID_CHARS)?;
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ParamError::Invalid {
                name,
                reason: "must be printable ASCII without spaces",
            });
        }
        Ok(SecretId(Arc::from(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A SecretId is not secret (it is embedded in every signature in clear).
        write!(f, "SecretId({:?})", &*self.0)
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a signature stays valid: 1 second to 90 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Validity(u32);

impl Validity {
    pub fn from_secs(secs: u64) -> Result<Self, ParamError> {
        if secs == 0 {
            return Err(ParamError::ValidityTooShort);
        }
        if secs > u64::from(MAX_VALIDITY_SECONDS) {
            return Err(ParamError::ValidityTooLong { secs });
        }
        Ok(Validity(secs as u32))
    }

    /// The longest validity VOD accepts.
    pub const MAX: Validity = Validity(MAX_VALIDITY_SECONDS);

    pub fn as_secs(self) -> u32 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl TryFrom<Duration> for Validity {
    type Error = ParamError;
    fn try_from(value: Duration) -> Result<Self, ParamError> {
        if value.subsec_nanos() != 0 {
            return Err(ParamError::Invalid {
                name: ParamName::ExpireTime,
                reason: "validity must be a whole number of seconds",
            });
        }
        Validity::from_secs(value.as_secs())
    }
}

/// The nonce of a signature; every `u32` is in VOD's documented range 0..=4294967295.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Random(pub u32);

/// `taskNotifyMode`: how VOD reports a task flow's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskNotifyMode {
    /// One notification when the whole flow is done (VOD's default).
    Finish,
    /// A notification on every subtask state change.
    Change,
    /// No callback.
    None,
}

impl TaskNotifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskNotifyMode::Finish => "Finish",
            TaskNotifyMode::Change => "Change",
            TaskNotifyMode::None => "None",
        }
    }
}

impl FromStr for TaskNotifyMode {
    type Err = ParamError;
    fn from_str(value: &str) -> Result<Self, ParamError> {
        match value {
            "Finish" => Ok(TaskNotifyMode::Finish),
            "Change" => Ok(TaskNotifyMode::Change),
            "None" => Ok(TaskNotifyMode::None),
            other => Err(ParamError::UnknownNotifyMode {
                value: super::error::clip(other),
            }),
        }
    }
}

impl fmt::Display for TaskNotifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `taskPriority`: -10..=10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskPriority(i8);

impl TaskPriority {
    pub fn new(value: i64) -> Result<Self, ParamError> {
        let (min, max) = (*TASK_PRIORITY_RANGE.start(), *TASK_PRIORITY_RANGE.end());
        if value < i64::from(min) || value > i64::from(max) {
            return Err(ParamError::OutOfRange {
                name: ParamName::TaskPriority,
                min: i64::from(min),
                max: u64::from(max as u8),
                value: value.to_string(),
            });
        }
        Ok(TaskPriority(value as i8))
    }

    pub fn get(self) -> i8 {
        self.0
    }
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $ty:ident, $param:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(value: impl Into<String>) -> Result<Self, ParamError> {
                let value = value.into();
                char_count_at_most($param, &value, $max)?;
                Ok($ty(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// `procedure`: the task-flow template started after upload (empty is allowed, as the
    /// official Node sample signs `procedure=`).
    Procedure,
    ParamName::Procedure,
    MAX_PROCEDURE_CHARS
);
bounded_text!(
    /// `sourceContext`: up to 250 characters, returned in the NewFileUpload callback.
    SourceContext,
    ParamName::SourceContext,
    MAX_SOURCE_CONTEXT_CHARS
);
bounded_text!(
    /// `sessionContext`: up to 1000 characters, returned in ProcedureStateChanged callbacks.
    SessionContext,
    ParamName::SessionContext,
    MAX_SESSION_CONTEXT_CHARS
);

/// `storageRegion`: a region slug such as `ap-chongqing` (lowercase ASCII letters, digits, `-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageRegion(String);

impl StorageRegion {
    pub fn new(value: impl Into<String>) -> Result<Self, ParamError> {
        let value = value.into();
        let name = ParamName::StorageRegion;
        char_count_at_most(name, &value, MAX_STORAGE_REGION_CHARS)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ParamError::Invalid {
                name,
                reason: "must be a region slug such as ap-chongqing (a-z, 0-9, '-')",
            });
        }
        Ok(StorageRegion(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The optional parameters of a signature; `None` means the parameter is not in `original`.
///
/// Each field's type enforces its own limit. The one rule between fields (`taskPriority` and
/// `taskNotifyMode` only mean something with `procedure`) is checked by [`UploadParams::check_for_signing`],
/// because the verifier must still accept signatures other implementations made without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadParams {
    pub class_id: Option<u64>,
    pub procedure: Option<Procedure>,
    pub task_priority: Option<TaskPriority>,
    pub task_notify_mode: Option<TaskNotifyMode>,
    pub source_context: Option<SourceContext>,
    pub one_time_valid: Option<bool>,
    pub vod_sub_app_id: Option<u64>,
    pub session_context: Option<SessionContext>,
    pub storage_region: Option<StorageRegion>,
}

impl UploadParams {
    /// Rules between fields that a signer must respect.
    pub fn check_for_signing(&self) -> Result<(), ParamError> {
        let has_procedure = self
            .procedure
            .as_ref()
            .is_some_and(|p| !p.as_str().is_empty());
        if !has_procedure {
            if self.task_priority.is_some() {
                return Err(ParamError::RequiresProcedure {
                    name: ParamName::TaskPriority,
                });
            }
            if self.task_notify_mode.is_some() {
                return Err(ParamError::RequiresProcedure {
                    name: ParamName::TaskNotifyMode,
                });
            }
        }
        Ok(())
    }
}

/// What to sign beyond the four required parameters, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    validity: Validity,
    params: UploadParams,
}

impl SignRequest {
    pub fn new(validity: Validity, params: UploadParams) -> Result<Self, ParamError> {
        params.check_for_signing()?;
        Ok(SignRequest { validity, params })
    }

    pub fn validity(&self) -> Validity {
        self.validity
    }

    pub fn params(&self) -> &UploadParams {
        &self.params
    }
}

/// Everything a verified `original` said, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedParams {
    pub secret_id: SecretId,
    pub current_time_stamp: i64,
    pub expire_time: i64,
    pub random: Random,
    pub upload: UploadParams,
    /// Parameters that are not among the 13 documented ones, in order of appearance. They were
    /// covered by the MAC, so they are reported rather than rejected.
    pub extra: Vec<(String, String)>,
}
