//! Response bodies for a BFF that relays signatures to uploading apps.
//!
//! Tencent's upload SDKs take the signature from a `getSignature` callback that the app writes,
//! and Tencent's samples have the app's backend answer
//! `{"code":0,"message":"ok","data":{"signature":"…"}}`. [`AppReply`] builds that body from an
//! [`SignerClient::issue`](crate::SignerClient::issue) result, and a body of the same shape,
//! with a non-zero `code`, for each failure:
//!
//! | failure                      | HTTP | `code` | `message`                        | also                 |
//! |------------------------------|------|--------|----------------------------------|----------------------|
//! | success                      | 200  | 0      | `ok`                             | `data.signature`     |
//! | [`Error::InvalidArgument`]   | 400  | 40001  | the service's message            | `fieldViolations`    |
//! | [`Error::PermissionDenied`]  | 403  | 40301  | the policy rule that refused it  |                      |
//! | [`Error::QuotaExhausted`]    | 429  | 42901  | the service's message            | `retryAfterSeconds` if known |
//! | [`Error::Unauthenticated`]   | 500  | 50001  | fixed text                       |                      |
//! | [`Error::Credentials`]       | 500  | 50002  | fixed text                       |                      |
//! | [`Error::Transport`], [`Error::Config`], other statuses | 502 | 50201 | fixed text |          |
//! | [`Error::Unavailable`]       | 503  | 50301  | fixed text                       | `retryAfterSeconds: 1` |
//! | [`Error::DeadlineExceeded`]  | 504  | 50401  | fixed text                       |                      |
//!
//! Every error body also has `kind`, a stable snake_case name (`quota_exhausted`, …). The 4xx
//! rows concern what the app asked for, so the service's explanation is passed on; the 5xx rows
//! are this backend's own trouble (its token, its network), so the app gets a fixed text and
//! the details belong in the BFF's log (the error's `Display` is safe to log).
//!
//! **Mint a fresh signature on every `getSignature` call; never cache one.** Tencent's Web
//! upload SDK calls `getSignature` for ApplyUploadUGC, again for CommitUploadUGC, on each retry
//! and when it re-applies for a long upload; a one-time signature (`oneTimeValid=1`) that is
//! handed out twice makes the second upload step fail. Send [`AppReply::HEADERS`] with every
//! reply so no proxy or browser cache keeps one either.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Error;
use crate::response::IssuedSignature;

/// A reply for the app: the HTTP status to send and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppReply {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: AppBody,
}

impl AppReply {
    /// Headers to send with every reply: JSON, and never cached (a cached signature is a reused
    /// signature).
    pub const HEADERS: [(&'static str, &'static str); 2] = [
        ("content-type", "application/json; charset=utf-8"),
        ("cache-control", "no-store"),
    ];

    /// The reply for the outcome of one issuance.
    pub fn from_result(result: &Result<IssuedSignature, Error>) -> Self {
        match result {
            Ok(issued) => AppReply::ok(issued),
            Err(error) => AppReply::from_error(error),
        }
    }

    /// `200 {"code":0,"message":"ok","data":{"signature":"…"}}`.
    pub fn ok(issued: &IssuedSignature) -> Self {
        AppReply {
            status: 200,
            body: AppBody {
                code: 0,
                message: "ok".into(),
                kind: None,
                data: Some(AppData {
                    signature: issued.signature.expose_secret().to_owned(),
                }),
                retry_after_seconds: None,
                field_violations: Vec::new(),
            },
        }
    }

    /// The documented error reply for `error` (see the [module docs](self)).
    pub fn from_error(error: &Error) -> Self {
        let (status, code, kind, message): (u16, i32, &str, String) = match error {
            Error::InvalidArgument { message, .. } => {
                (400, 40001, "invalid_argument", message.clone())
            }
            Error::PermissionDenied { message } => {
                (403, 40301, "permission_denied", message.clone())
            }
            Error::QuotaExhausted { message, .. } => {
                (429, 42901, "quota_exhausted", message.clone())
            }
            Error::Unauthenticated { .. } => (
                500,
                50001,
                "unauthenticated",
                "the signature service did not accept this server's credentials".into(),
            ),
            Error::Credentials { .. } => (
                500,
                50002,
                "credentials",
                "this server has no credentials for the signature service".into(),
            ),
            Error::Unavailable { .. } => (
                503,
                50301,
                "unavailable",
                "the signature service is unavailable; try again".into(),
            ),
            Error::DeadlineExceeded { .. } => (
                504,
                50401,
                "deadline_exceeded",
                "the signature service did not answer in time".into(),
            ),
            Error::Transport { .. } | Error::Config { .. } | Error::Other { .. } => (
                502,
                50201,
                "upstream_error",
                "the signature service failed".into(),
            ),
        };
        let retry_after_seconds = match error {
            Error::QuotaExhausted { retry_after, .. } => retry_after.map(|d| {
                // Round up: retrying a fraction of a second early would just fail again.
                let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                whole.max(1)
            }),
            Error::Unavailable { .. } => Some(1),
            _ => None,
        };
        let field_violations = match error {
            Error::InvalidArgument {
                field_violations, ..
            } => field_violations
                .iter()
                .map(|v| AppFieldViolation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        AppReply {
            status,
            body: AppBody {
                code,
                message,
                kind: Some(kind.into()),
                data: None,
                retry_after_seconds,
                field_violations,
            },
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        // Plain strings and numbers only: serializing cannot fail.
        serde_json::to_string(&self.body).expect("AppBody always serializes")
    }
}

/// The JSON body, success or failure: apps read `code` first (0 means success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppBody {
    /// 0 on success, otherwise one of the codes in the [module docs](self).
    pub code: i32,
    /// `ok`, or what went wrong.
    pub message: String,
    /// Stable snake_case name of the failure; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The signature, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<AppData>,
    /// Whole seconds to wait before asking again, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// The bad fields, on `invalid_argument`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_violations: Vec<AppFieldViolation>,
}

/// `data` of a success body. Holds the signature, so `Debug` hides it and it is zeroized on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AppData {
    /// The signature to pass to the upload SDK.
    pub signature: String,
}

impl fmt::Debug for AppData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppData { signature: <redacted> }")
    }
}

/// One bad field in an `invalid_argument` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppFieldViolation {
    /// The request field.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::error::FieldViolation;
    use crate::proto;

    fn issued() -> IssuedSignature {
        IssuedSignature::from_proto(proto::IssueSignatureResponse {
            signature: "SIG+/=".into(),
            secret_id: "AKID".into(),
            issued_at: 1,
            expires_at: 2,
            random: 3,
            fingerprint: "ff".into(),
            upload_id: String::new(),
        })
    }

    fn json_of(reply: &AppReply) -> Value {
        serde_json::from_str(&reply.to_json()).unwrap()
    }

    #[test]
    fn success_is_the_shape_tencents_samples_expect() {
        let reply = AppReply::from_result(&Ok(issued()));
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.to_json(),
            r#"{"code":0,"message":"ok","data":{"signature":"SIG+/="}}"#
        );
        assert!(!format!("{reply:?}").contains("SIG+"));
    }

    #[test]
    fn each_error_kind_has_its_body() {
        let quota = AppReply::from_error(&Error::QuotaExhausted {
            message: "100 per minute".into(),
            retry_after: Some(Duration::from_millis(2100)),
        });
        assert_eq!(quota.status, 429);
        assert_eq!(
            json_of(&quota),
            json!({"code":42901,"message":"100 per minute","kind":"quota_exhausted","retryAfterSeconds":3})
        );

        let invalid = AppReply::from_error(&Error::InvalidArgument {
            message: "bad".into(),
            field_violations: vec![FieldViolation {
                field: "user_id".into(),
                description: "required".into(),
            }],
        });
        assert_eq!(invalid.status, 400);
        assert_eq!(
            json_of(&invalid)["fieldViolations"],
            json!([{"field":"user_id","description":"required"}])
        );

        let denied = AppReply::from_error(&Error::PermissionDenied {
            message: "procedure X not allowed".into(),
        });
        assert_eq!((denied.status, denied.body.code), (403, 40301));
        assert_eq!(denied.body.message, "procedure X not allowed");

        // Backend trouble: fixed text, nothing from the service's message reaches the app.
        for (error, status, code) in [
            (
                Error::Unauthenticated {
                    message: "token for caller bff-web revoked".into(),
                },
                500,
                50001,
            ),
            (
                Error::Unavailable {
                    message: "tcp connect error 10.0.0.5".into(),
                },
                503,
                50301,
            ),
            (
                Error::DeadlineExceeded {
                    message: "10.0.0.5".into(),
                },
                504,
                50401,
            ),
            (
                Error::Other {
                    code: tonic::Code::Internal,
                    message: "10.0.0.5 stack".into(),
                },
                502,
                50201,
            ),
        ] {
            let reply = AppReply::from_error(&error);
            assert_eq!((reply.status, reply.body.code), (status, code), "{error}");
            assert!(!reply.to_json().contains("10.0.0.5"), "{}", reply.to_json());
            assert!(!reply.to_json().contains("bff-web"), "{}", reply.to_json());
            assert!(reply.body.data.is_none());
        }
    }

    #[test]
    fn sub_second_retry_after_rounds_up_to_one() {
        let reply = AppReply::from_error(&Error::QuotaExhausted {
            message: "m".into(),
            retry_after: Some(Duration::from_millis(1)),
        });
        assert_eq!(reply.body.retry_after_seconds, Some(1));
        let unknown = AppReply::from_error(&Error::QuotaExhausted {
            message: "m".into(),
            retry_after: None,
        });
        assert!(!unknown.to_json().contains("retryAfterSeconds"));
    }

    #[test]
    fn bodies_parse_back() {
        let reply = AppReply::ok(&issued());
        let body: AppBody = serde_json::from_str(&reply.to_json()).unwrap();
        assert_eq!(body, reply.body);
    }
}
