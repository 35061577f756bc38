//! Why an event notification was not accepted, and the one table that turns that into an HTTP
//! status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::events::{CallbackAuthError, EventParseError};

/// Why the receiver answered something other than 200.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiveError {
    /// The path is not `/vod/events/<the configured token>`. Says nothing about why, so a
    /// prober cannot tell a wrong token from a wrong path.
    #[error("not found")]
    NotFound,
    #[error("only POST is accepted here")]
    MethodNotAllowed,
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    Unreadable(String),
    #[error("{0}")]
    NotAnEvent(#[from] EventParseError),
    #[error("{0}")]
    Unauthenticated(#[from] CallbackAuthError),
    /// The store did not confirm the write: VOD (or whoever sent it) must send it again.
    #[error("the event store is unavailable; the event was not stored")]
    StoreUnavailable,
    #[error("the event could not be stored: {0}")]
    Internal(String),
}

impl ReceiveError {
    /// The only place a receive error becomes a status code.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ReceiveError::NotFound => StatusCode::NOT_FOUND,
            ReceiveError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ReceiveError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiveError::Unreadable(_) | ReceiveError::NotAnEvent(_) => StatusCode::BAD_REQUEST,
            ReceiveError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ReceiveError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ReceiveError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `outcome` label of `vod_signer_events_received_total`.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            ReceiveError::NotFound => "not_found",
            ReceiveError::MethodNotAllowed => "method_not_allowed",
            ReceiveError::TooLarge { .. } => "too_large",
            ReceiveError::Unreadable(_) | ReceiveError::NotAnEvent(_) => "bad_request",
            ReceiveError::Unauthenticated(_) => "unauthenticated",
            ReceiveError::StoreUnavailable => "store_unavailable",
            ReceiveError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ReceiveError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "code": status.as_u16(),
            "message": self.to_string(),
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
