//! What a Tencent Cloud API 3.0 call can fail with.
//!
//! API 3.0 answers HTTP 200 with `Response.Error.{Code, Message}` for a refused call; the code
//! is dotted (`AuthFailure.SignatureExpire`, `InvalidParameterValue.EventHandles`), and its
//! first segment is the class a caller acts on.

use std::time::Duration;

/// The class of an API error code: what the caller does next depends on it, and metrics are
/// labelled with it (a closed set, so the label cannot grow without bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 100 requests/s per API was exceeded: wait, then retry.
    RequestLimitExceeded,
    /// Wrong or expired credentials, a skewed clock, an unknown SecretId.
    AuthFailure,
    /// `InvalidParameter*`: ConfirmEvents answers this (Tencent's error 4000) for a handle
    /// whose 30 s confirm window has passed.
    InvalidParameter,
    UnauthorizedOperation,
    ResourceNotFound,
    FailedOperation,
    InternalError,
    /// Any other code Tencent returns.
    Other,
    /// No answer within the client timeout.
    Timeout,
    /// The connection failed (refused, reset, TLS).
    Transport,
    /// An answer that is not API 3.0 JSON.
    BadResponse,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::RequestLimitExceeded,
        ErrorClass::AuthFailure,
        ErrorClass::InvalidParameter,
        ErrorClass::UnauthorizedOperation,
        ErrorClass::ResourceNotFound,
        ErrorClass::FailedOperation,
        ErrorClass::InternalError,
        ErrorClass::Other,
        ErrorClass::Timeout,
        ErrorClass::Transport,
        ErrorClass::BadResponse,
    ];

    /// The class of a Tencent error code such as `AuthFailure.SecretIdNotFound`.
    pub fn of_code(code: &str) -> ErrorClass {
        let head = code.split('.').next().unwrap_or(code);
        match head {
            "RequestLimitExceeded" => ErrorClass::RequestLimitExceeded,
            "AuthFailure" => ErrorClass::AuthFailure,
            "InvalidParameter" | "InvalidParameterValue" | "MissingParameter" => {
                ErrorClass::InvalidParameter
            }
            "UnauthorizedOperation" => ErrorClass::UnauthorizedOperation,
            "ResourceNotFound" => ErrorClass::ResourceNotFound,
            "FailedOperation" => ErrorClass::FailedOperation,
            "InternalError" => ErrorClass::InternalError,
            _ => ErrorClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RequestLimitExceeded => "RequestLimitExceeded",
            ErrorClass::AuthFailure => "AuthFailure",
            ErrorClass::InvalidParameter => "InvalidParameter",
            ErrorClass::UnauthorizedOperation => "UnauthorizedOperation",
            ErrorClass::ResourceNotFound => "ResourceNotFound",
            ErrorClass::FailedOperation => "FailedOperation",
            ErrorClass::InternalError => "InternalError",
            ErrorClass::Other => "Other",
            ErrorClass::Timeout => "Timeout",
            ErrorClass::Transport => "Transport",
            ErrorClass::BadResponse => "BadResponse",
        }
    }
}

/// A failed API call. Messages carry Tencent's text and the action, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Tencent refused the call (`Response.Error`).
    #[error("{action}: {code}: {message} (RequestId {request_id})")]
    Refused {
        action: &'static str,
        class: ErrorClass,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("{action}: no answer within {after:?}")]
    Timeout {
        action: &'static str,
        after: Duration,
    },
    #[error("{action}: cannot reach {endpoint}: {detail}")]
    Transport {
        action: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("{action}: unexpected answer: {detail}")]
    BadResponse {
        action: &'static str,
        detail: String,
    },
}

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Refused { class, .. } => *class,
            ApiError::Timeout { .. } => ErrorClass::Timeout,
            ApiError::Transport { .. } => ErrorClass::Transport,
            ApiError::BadResponse { .. } => ErrorClass::BadResponse,
        }
    }

    /// The full Tencent code (`AuthFailure.SignatureFailure`), or the class for local failures.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Refused { code, .. } => code,
            other => other.class().as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_their_first_segment() {
        for (code, class) in [
            ("RequestLimitExceeded", ErrorClass::RequestLimitExceeded),
            ("AuthFailure.SignatureExpire", ErrorClass::AuthFailure),
            ("AuthFailure", ErrorClass::AuthFailure),
            (
                "InvalidParameterValue.EventHandles",
                ErrorClass::InvalidParameter,
            ),
            ("InvalidParameter", ErrorClass::InvalidParameter),
            (
                "FailedOperation.InvalidVodUser",
                ErrorClass::FailedOperation,
            ),
            ("InternalError", ErrorClass::InternalError),
            ("LimitExceeded.Something", ErrorClass::Other),
            ("", ErrorClass::Other),
        ] {
            assert_eq!(ErrorClass::of_code(code), class, "{code}");
        }
    }

    #[test]
    fn every_class_has_a_distinct_label() {
        let labels: std::collections::HashSet<_> =
            ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), ErrorClass::ALL.len());
    }
}
