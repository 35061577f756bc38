//! Errors of the signing core. Transports map these to their own codes in one place each.

use std::fmt;

use super::params::SignedParams;

/// The wire name of every documented parameter, so errors can name the field exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamName {
    SecretId,
    CurrentTimeStamp,
    ExpireTime,
    Random,
    ClassId,
    Procedure,
    TaskPriority,
    TaskNotifyMode,
    SourceContext,
    OneTimeValid,
    VodSubAppId,
    SessionContext,
    StorageRegion,
}

impl ParamName {
    /// All documented parameters, required ones first, in the order the signer writes them.
    pub const ALL: [ParamName; 13] = [
        ParamName::SecretId,
        ParamName::CurrentTimeStamp,
        ParamName::ExpireTime,
        ParamName::Random,
        ParamName::ClassId,
        ParamName::Procedure,
        ParamName::TaskPriority,
        ParamName::TaskNotifyMode,
        ParamName::SourceContext,
        ParamName::OneTimeValid,
        ParamName::VodSubAppId,
        ParamName::SessionContext,
        ParamName::StorageRegion,
    ];

    /// The name as it appears in `original`.
    pub fn wire_name(self) -> &'static str {
        match self {
            ParamName::SecretId => "secretId",
            ParamName::CurrentTimeStamp => "currentTimeStamp",
            ParamName::ExpireTime => "expireTime",
            ParamName::Random => "random",
            ParamName::ClassId => "classId",
            ParamName::Procedure => "procedure",
            ParamName::TaskPriority => "taskPriority",
            ParamName::TaskNotifyMode => "taskNotifyMode",
            ParamName::SourceContext => "sourceContext",
            ParamName::OneTimeValid => "oneTimeValid",
            ParamName::VodSubAppId => "vodSubAppId",
            ParamName::SessionContext => "sessionContext",
            ParamName::StorageRegion => "storageRegion",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<ParamName> {
        // A `match` on the string compiles to a length switch and one comparison, where a scan
        // of `ALL` compared up to 13 names for every parameter of every verified signature.
        Some(match name {
            "secretId" => ParamName::SecretId,
            "currentTimeStamp" => ParamName::CurrentTimeStamp,
            "expireTime" => ParamName::ExpireTime,
            "random" => ParamName::Random,
            "classId" => ParamName::ClassId,
            "procedure" => ParamName::Procedure,
            "taskPriority" => ParamName::TaskPriority,
            "taskNotifyMode" => ParamName::TaskNotifyMode,
            "sourceContext" => ParamName::SourceContext,
            "oneTimeValid" => ParamName::OneTimeValid,
            "vodSubAppId" => ParamName::VodSubAppId,
            "sessionContext" => ParamName::SessionContext,
            "storageRegion" => ParamName::StorageRegion,
            _ => return None,
        })
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// Shortens a caller-supplied value before it is echoed in an error message.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        None => value.to_owned(),
        Some((at, _)) => format!("{}…", &value[..at]),
    }
}

/// A parameter value VOD would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{name} is required but missing")]
    Missing { name: ParamName },
    #[error("{name} appears more than once")]
    Repeated { name: ParamName },
    #[error("{name} must not be empty")]
    Empty { name: ParamName },
    #[error("{name} must be a decimal integer, got {value:?}")]
    NotAnInteger { name: ParamName, value: String },
    #[error("{name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        name: ParamName,
        min: i64,
        max: u64,
        value: String,
    },
    #[error("{name} is {chars} characters long; at most {max} are allowed")]
    TooLong {
        name: ParamName,
        chars: usize,
        max: usize,
    },
    #[error("taskNotifyMode must be Finish, Change or None, got {value:?}")]
    UnknownNotifyMode { value: String },
    #[error("{name} {reason}")]
    Invalid {
        name: ParamName,
        reason: &'static str,
    },
    #[error("{name} only applies together with a non-empty procedure")]
    RequiresProcedure { name: ParamName },
    #[error("validity must be at least 1 second")]
    ValidityTooShort,
    #[error("validity of {secs} s is longer than VOD's limit of 7776000 s (90 days)")]
    ValidityTooLong { secs: u64 },
}

impl ParamError {
    /// The parameter the error is about (`expireTime` for validity errors).
    pub fn param(&self) -> ParamName {
        match self {
            ParamError::Missing { name }
            | ParamError::Repeated { name }
            | ParamError::Empty { name }
            | ParamError::NotAnInteger { name, .. }
            | ParamError::OutOfRange { name, .. }
            | ParamError::TooLong { name, .. }
            | ParamError::Invalid { name, .. }
            | ParamError::RequiresProcedure { name } => *name,
            ParamError::UnknownNotifyMode { .. } => ParamName::TaskNotifyMode,
            ParamError::ValidityTooShort | ParamError::ValidityTooLong { .. } => {
                ParamName::ExpireTime
            }
        }
    }
}

/// Why a signature was rejected, in the order the verifier checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyFailure {
    /// Not base64, shorter than the 20-byte MAC, or the plaintext is not a UTF-8 query string.
    Malformed,
    /// No key with this `secretId` is configured.
    UnknownSecretId,
    /// The MAC does not match (compared in constant time).
    BadSignature,
    /// A parameter is missing, repeated, not a number, out of range or too long.
    InvalidParameter,
    /// `expireTime - currentTimeStamp` exceeds 90 days.
    ValidityTooLong,
    /// `currentTimeStamp` is later than now plus the allowed clock skew.
    NotYetValid,
    /// `expireTime` has passed.
    Expired,
}

impl VerifyFailure {
    pub const ALL: [VerifyFailure; 7] = [
        VerifyFailure::Malformed,
        VerifyFailure::UnknownSecretId,
        VerifyFailure::BadSignature,
        VerifyFailure::InvalidParameter,
        VerifyFailure::ValidityTooLong,
        VerifyFailure::NotYetValid,
        VerifyFailure::Expired,
    ];

    /// The stable name used by the CLI's JSON and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyFailure::Malformed => "MALFORMED",
            VerifyFailure::UnknownSecretId => "UNKNOWN_SECRET_ID",
            VerifyFailure::BadSignature => "BAD_SIGNATURE",
            VerifyFailure::InvalidParameter => "INVALID_PARAMETER",
            VerifyFailure::ValidityTooLong => "VALIDITY_TOO_LONG",
            VerifyFailure::NotYetValid => "NOT_YET_VALID",
            VerifyFailure::Expired => "EXPIRED",
        }
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected signature: the reason, a human-readable detail, and, when the MAC was good and
/// the parameters decoded, what the signature said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failure}: {detail}")]
pub struct VerifyError {
    pub failure: VerifyFailure,
    pub detail: String,
    pub params: Option<Box<SignedParams>>,
}

impl VerifyError {
    pub(crate) fn new(failure: VerifyFailure, detail: impl Into<String>) -> Self {
        VerifyError {
            failure,
            detail: detail.into(),
            params: None,
        }
    }

    pub(crate) fn with_params(
        failure: VerifyFailure,
        detail: String,
        params: SignedParams,
    ) -> Self {
        VerifyError {
            failure,
            detail,
            params: Some(Box::new(params)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for name in ParamName::ALL {
            assert_eq!(ParamName::from_wire_name(name.wire_name()), Some(name));
        }
        assert_eq!(ParamName::from_wire_name("secretid"), None);
        assert_eq!(ParamName::from_wire_name(""), None);
    }
}
