//! The service's errors and the one table that turns them into gRPC statuses.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::policy::{AuthError, Denied};
use crate::tracking::TrackingError;

/// `google.rpc.ErrorInfo.domain` of this service's errors.
pub const ERROR_DOMAIN: &str = "vod.signer.v1";

/// One invalid request field, named by its proto field path (`params.source_context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: Cow<'static, str>,
    pub description: String,
}

impl Violation {
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Violation {
            field: Cow::Borrowed(field),
            description: description.into(),
        }
    }

    /// The same violation inside an enclosing message (`request.` for the batch call).
    pub fn nested_in(self, prefix: &str) -> Self {
        Violation {
            field: Cow::Owned(format!("{prefix}{}", self.field)),
            description: self.description,
        }
    }
}

/// Why a call failed. A signature that does not verify is not an error: it is an answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{0}")]
    PermissionDenied(Denied),
    /// A fault of this server (e.g. a clock before 1970), not of the request.
    #[error("{0}")]
    Internal(String),
    /// The caller's `issue_per_user_per_minute` is used up for this user. `retry_after` is
    /// when the next window starts; `None` when the request alone exceeds the limit.
    #[error("caller {caller:?} may issue at most {limit} signatures per user per minute")]
    QuotaExhausted {
        caller: Arc<str>,
        limit: NonZeroU32,
        retry_after: Option<Duration>,
    },
    /// The quota store failed and the configuration says to refuse (`on_store_error`).
    #[error("the quota store is unavailable; issuance is refused until it is back")]
    QuotaUnavailable,
    /// The caller tracks uploads but this server runs without `[tracking]` (it was added by
    /// a reload; the store is opened at start-up only).
    #[error("this caller tracks uploads but the server was started without [tracking]; restart it")]
    TrackingNotConfigured,
    /// The upload store did not answer or refused the write: no signature was issued, no
    /// record read. The detail is logged, not sent.
    #[error("the upload store is unavailable; try again")]
    TrackingUnavailable,
    /// No upload with this id was issued to this caller.
    #[error("no upload {upload_id:?} was issued to this caller")]
    UploadNotFound { upload_id: String },
    /// A watch cursor older than what retention kept.
    #[error("the cursor is older than the retention period; start again without a cursor")]
    CursorExpired,
}

impl From<TrackingError> for ServiceError {
    fn from(e: TrackingError) -> Self {
        match e {
            TrackingError::Unavailable(detail) => {
                tracing::error!(%detail, "upload store unavailable");
                ServiceError::TrackingUnavailable
            }
            TrackingError::CursorExpired => ServiceError::CursorExpired,
            TrackingError::InvalidCursor => ServiceError::InvalidArgument(vec![Violation::new(
                "after_cursor",
                "not a cursor this service issued",
            )]),
            TrackingError::InvalidPageToken => ServiceError::InvalidArgument(vec![Violation::new(
                "page_token",
                "not a page token this service issued",
            )]),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

fn describe(violations: &[Violation]) -> String {
    let mut message = String::from("invalid request: ");
    for (i, v) in violations.iter().enumerate() {
        if i > 0 {
            message.push_str("; ");
        }
        message.push_str(&v.field);
        message.push_str(": ");
        message.push_str(&v.description);
    }
    message
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        ServiceError::Unauthenticated(e)
    }
}

impl From<Denied> for ServiceError {
    fn from(e: Denied) -> Self {
        ServiceError::PermissionDenied(e)
    }
}

impl From<ServiceError> for Status {
    /// The only place a service error becomes a status code.
    fn from(error: ServiceError) -> Status {
        let message = error.to_string();
        match error {
            ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
            ServiceError::InvalidArgument(violations) => {
                let violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .map(|v| FieldViolation::new(v.field, v.description))
                    .collect();
                Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request(violations),
                )
            }
            ServiceError::PermissionDenied(denied) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                // The rule is also machine-readable, for callers that branch on it.
                ErrorDetails::with_error_info(
                    denied.rule.as_str().to_ascii_uppercase(),
                    ERROR_DOMAIN,
                    [
                        ("rule".to_owned(), denied.rule.as_str().to_owned()),
                        ("caller".to_owned(), denied.caller.to_string()),
                    ],
                ),
            ),
            ServiceError::Internal(_) => Status::internal(message),
            ServiceError::QuotaExhausted {
                caller,
                limit,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_error_info(
                    "QUOTA_EXHAUSTED",
                    ERROR_DOMAIN,
                    [
                        ("caller".to_owned(), caller.to_string()),
                        ("issue_per_user_per_minute".to_owned(), limit.to_string()),
                    ],
                );
                // Clients that honour google.rpc.RetryInfo wait for the next window.
                if let Some(delay) = retry_after {
                    details.set_retry_info(Some(delay));
                }
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ServiceError::QuotaUnavailable | ServiceError::TrackingUnavailable => {
                Status::unavailable(message)
            }
            ServiceError::TrackingNotConfigured => Status::failed_precondition(message),
            ServiceError::UploadNotFound { .. } => Status::not_found(message),
            ServiceError::CursorExpired => Status::out_of_range(message),
        }
    }
}
