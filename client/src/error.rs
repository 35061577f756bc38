//! The one error type of this crate, and the single place where gRPC statuses become it.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One bad field of a request, as the service reported it (`google.rpc.BadRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field, as a proto path (e.g. `params.source_context`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// Why a call failed. Every message starts with its kind (`"unauthenticated: …"`), so the
/// `Display` text alone tells an operator what happened. No message ever contains the bearer
/// token or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service did not accept the bearer token (missing, unknown or revoked).
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// The service's explanation.
        message: String,
    },
    /// The token is valid but the caller's policy forbids this request.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The policy rule that refused the request, as the service words it.
        message: String,
    },
    /// The request itself is wrong; `field_violations` says which fields and why.
    #[error("invalid argument: {message}{}", Violations(field_violations))]
    InvalidArgument {
        /// The service's summary.
        message: String,
        /// One entry per bad field (may be empty when the service sent no details).
        field_violations: Vec<FieldViolation>,
    },
    /// The caller has used up a quota; try again after `retry_after` when it is given.
    #[error("quota exhausted: {message}{}", RetryAfter(*retry_after))]
    QuotaExhausted {
        /// The service's explanation.
        message: String,
        /// How long to wait before trying again (`google.rpc.RetryInfo`), when the service says.
        retry_after: Option<Duration>,
    },
    /// No endpoint could serve the call before its deadline: nothing listening, connection lost,
    /// or the service said UNAVAILABLE on every attempt. Worth retrying later.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What the last attempt ran into.
        message: String,
    },
    /// The call's deadline passed before an answer arrived.
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded {
        /// Which deadline, and how many attempts were made.
        message: String,
    },
    /// The connection failed in a way retrying will not fix: a TLS handshake or certificate
    /// problem, an `https://` endpoint without TLS, or a broken HTTP/2 exchange.
    #[error("transport: {message}")]
    Transport {
        /// The failure and its causes, outermost first.
        message: String,
    },
    /// The token provider could not supply a token; nothing was sent.
    #[error("credentials: {message}")]
    Credentials {
        /// The provider's explanation.
        message: String,
    },
    /// The client was configured wrongly (no endpoint, a bad URL, an unreadable certificate…).
    #[error("config: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// Any other gRPC status (e.g. INTERNAL, NOT_FOUND).
    #[error("{}: {message}", CodeName(*code))]
    Other {
        /// The status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again soon. The client already retries these
    /// within the call's deadline, so seeing one means the deadline ran out.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// The wait the service asked for, on [`Error::QuotaExhausted`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::QuotaExhausted { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    /// The mapping from gRPC status to error kind; everything the wire can say ends up here.
    pub(crate) fn from_status(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated => Error::Unauthenticated { message },
            Code::PermissionDenied => Error::PermissionDenied { message },
            Code::InvalidArgument => Error::InvalidArgument {
                field_violations: status
                    .get_details_bad_request()
                    .map(|details| {
                        details
                            .field_violations
                            .into_iter()
                            .map(|v| FieldViolation {
                                field: v.field,
                                description: v.description,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                message,
            },
            Code::ResourceExhausted => Error::QuotaExhausted {
                retry_after: status
                    .get_details_retry_info()
                    .and_then(|info| info.retry_delay),
                message,
            },
            Code::DeadlineExceeded => Error::DeadlineExceeded { message },
            Code::Unavailable => match LocalFailure::of(&status) {
                // A connection that could not be set up for a reason other than the network
                // (TLS, missing TLS support) will fail the same way next time.
                Some(LocalFailure::Connect { network: false }) => Error::Transport {
                    message: chain_message(&status),
                },
                Some(_) => Error::Unavailable {
                    message: chain_message(&status),
                },
                None => Error::Unavailable { message },
            },
            code => match LocalFailure::of(&status) {
                // Made up on this side from an HTTP/2 or I/O error rather than sent by the
                // service: the exchange itself broke.
                Some(_) => Error::Transport {
                    message: chain_message(&status),
                },
                None => Error::Other { code, message },
            },
        }
    }
}

/// A status tonic made on this side from an error (server-sent statuses carry no source).
enum LocalFailure {
    /// The connection could not be set up; `network` when the cause is the network or nobody
    /// listening, which a later attempt may not meet.
    Connect { network: bool },
    /// Anything else that broke locally.
    Other,
}

impl LocalFailure {
    fn of(status: &Status) -> Option<Self> {
        let source = status.source()?;
        let mut connect = false;
        let mut network = false;
        let mut next: Option<&(dyn StdError + 'static)> = Some(source);
        while let Some(err) = next {
            if err.is::<tonic::ConnectError>() {
                connect = true;
            }
            if let Some(io) = err.downcast_ref::<io::Error>() {
                network |= is_network(io.kind());
            }
            next = err.source();
        }
        Some(if connect {
            LocalFailure::Connect { network }
        } else {
            LocalFailure::Other
        })
    }
}

fn is_network(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | TimedOut
            | AddrNotAvailable
            | BrokenPipe
            | UnexpectedEof
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// The status message followed by each distinct cause, so "tcp connect error" also says why.
fn chain_message(status: &Status) -> String {
    let mut message = status.message().to_owned();
    let mut next = status.source();
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        next = err.source();
    }
    message
}

/// `message` of a `tonic::transport::Error` (from the builder) with its causes.
pub(crate) fn error_chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        next = cause.source();
    }
    message
}

struct Violations<'a>(&'a [FieldViolation]);

impl fmt::Display for Violations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            let sep = if i == 0 { " [" } else { "; " };
            write!(f, "{sep}{}: {}", v.field, v.description)?;
        }
        if !self.0.is_empty() {
            f.write_str("]")?;
        }
        Ok(())
    }
}

struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " (retry after {:.3}s)", d.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// gRPC code names in the lower-case words the other messages use ("not found", "internal").
struct CodeName(Code);

impl fmt::Display for CodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            Code::Ok => "ok",
            Code::Cancelled => "cancelled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid argument",
            Code::DeadlineExceeded => "deadline exceeded",
            Code::NotFound => "not found",
            Code::AlreadyExists => "already exists",
            Code::PermissionDenied => "permission denied",
            Code::ResourceExhausted => "resource exhausted",
            Code::FailedPrecondition => "failed precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out of range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data loss",
            Code::Unauthenticated => "unauthenticated",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation as WireViolation};

    #[test]
    fn quota_exhausted_carries_retry_info() {
        let status = Status::with_error_details(
            Code::ResourceExhausted,
            "caller bff-web: 100 signatures per minute",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(2500))),
        );
        let err = Error::from_status(status);
        assert_eq!(
            err,
            Error::QuotaExhausted {
                message: "caller bff-web: 100 signatures per minute".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
        assert_eq!(err.retry_after(), Some(Duration::from_millis(2500)));
        assert_eq!(
            err.to_string(),
            "quota exhausted: caller bff-web: 100 signatures per minute (retry after 2.500s)"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn quota_exhausted_without_retry_info() {
        let err = Error::from_status(Status::resource_exhausted("slow down"));
        assert_eq!(err.retry_after(), None);
        assert_eq!(err.to_string(), "quota exhausted: slow down");
    }

    #[test]
    fn invalid_argument_lists_field_violations() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "bad request",
            ErrorDetails::with_bad_request(vec![
                WireViolation::new("user_id", "must not be empty"),
                WireViolation::new("params.task_priority", "must be within -10..=10"),
            ]),
        );
        let err = Error::from_status(status);
        let Error::InvalidArgument {
            field_violations, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(field_violations.len(), 2);
        assert_eq!(field_violations[1].field, "params.task_priority");
        assert_eq!(
            err.to_string(),
            "invalid argument: bad request [user_id: must not be empty; \
             params.task_priority: must be within -10..=10]"
        );
    }

    #[test]
    fn each_code_maps_to_its_kind() {
        let cases = [
            (
                Status::unauthenticated("no token"),
                "unauthenticated: no token",
            ),
            (
                Status::permission_denied("procedure not allowed"),
                "permission denied: procedure not allowed",
            ),
            (Status::unavailable("draining"), "unavailable: draining"),
            (
                Status::deadline_exceeded("took too long"),
                "deadline exceeded: took too long",
            ),
            (Status::internal("boom"), "internal: boom"),
            (Status::not_found("what"), "not found: what"),
        ];
        for (status, text) in cases {
            assert_eq!(Error::from_status(status).to_string(), text);
        }
        assert!(Error::from_status(Status::unavailable("x")).is_retryable());
        assert!(matches!(
            Error::from_status(Status::internal("x")),
            Error::Other {
                code: Code::Internal,
                ..
            }
        ));
    }

    #[test]
    fn refused_connection_is_unavailable_but_tls_failure_is_transport() {
        let refused =
            tonic::ConnectError(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let err = Error::from_status(Status::from_error(Box::new(refused)));
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");

        let tls = tonic::ConnectError(Box::new(io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        )));
        let err = Error::from_status(Status::from_error(Box::new(tls)));
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }
}
