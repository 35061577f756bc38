//! What the service answers, as Rust types.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::proto;
use crate::request::UploadParams;

/// An upload signature: a bearer credential for one upload.
///
/// Hand it to the uploading app with [`Signature::expose_secret`] and nowhere else. `Debug`
/// shows only the service's fingerprint, there is no `Display`, and the string is overwritten
/// when the value is dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Signature {
    value: String,
    #[zeroize(skip)]
    fingerprint: String,
}

impl Signature {
    /// The signature itself, for relaying to the uploader. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The fingerprint the service computed: short hex that identifies the signature in logs
    /// and cannot be turned back into it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(fingerprint={})", self.fingerprint)
    }
}

/// A freshly minted signature and what it encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSignature {
    /// The signature to relay to the uploading app.
    pub signature: Signature,
    /// The key that signed it (`secretId`, also readable inside the signature).
    pub secret_id: String,
    /// `currentTimeStamp`.
    pub issued_at: SystemTime,
    /// `expireTime`.
    pub expires_at: SystemTime,
    /// `random`.
    pub random: u32,
    /// Loggable stand-in for the signature (same as [`Signature::fingerprint`]).
    pub fingerprint: String,
    /// The upload record the service created for this signature, when the caller tracks its
    /// uploads (`track_uploads`); ask about it with
    /// [`SignerClient::get_upload`](crate::SignerClient::get_upload).
    pub upload_id: Option<String>,
}

impl IssuedSignature {
    pub(crate) fn from_proto(r: proto::IssueSignatureResponse) -> Self {
        IssuedSignature {
            signature: Signature {
                value: r.signature,
                fingerprint: r.fingerprint.clone(),
            },
            secret_id: r.secret_id,
            issued_at: from_unix(r.issued_at),
            expires_at: from_unix(r.expires_at),
            random: r.random,
            fingerprint: r.fingerprint,
            upload_id: (!r.upload_id.is_empty()).then_some(r.upload_id),
        }
    }
}

/// The parameters decoded from a signature whose MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureContents {
    /// `secretId`: the key that signed it.
    pub secret_id: String,
    /// `currentTimeStamp`.
    pub issued_at: SystemTime,
    /// `expireTime`.
    pub expires_at: SystemTime,
    /// `random`.
    pub random: u32,
    /// The optional parameters it carries.
    pub params: UploadParams,
}

/// Why the service rejected a signature. Checks run in this order; the first failure is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// Not base64, too short to hold the MAC, or the plaintext is not a UTF-8 query string.
    Malformed,
    /// No key of the service has this `secretId`.
    UnknownSecretId,
    /// The HMAC does not match.
    BadSignature,
    /// A parameter is missing, repeated, not a number, out of range or too long.
    InvalidParameter,
    /// `expireTime - currentTimeStamp` is over 90 days.
    ValidityTooLong,
    /// `currentTimeStamp` is in the future beyond the allowed clock skew.
    NotYetValid,
    /// `expireTime` has passed.
    Expired,
    /// A reason this client does not know (a newer service); the number is the wire value.
    Unrecognized(i32),
}

impl VerifyFailure {
    /// The stable upper-case name (`EXPIRED`, …), as the service's enum and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyFailure::Malformed => "MALFORMED",
            VerifyFailure::UnknownSecretId => "UNKNOWN_SECRET_ID",
            VerifyFailure::BadSignature => "BAD_SIGNATURE",
            VerifyFailure::InvalidParameter => "INVALID_PARAMETER",
            VerifyFailure::ValidityTooLong => "VALIDITY_TOO_LONG",
            VerifyFailure::NotYetValid => "NOT_YET_VALID",
            VerifyFailure::Expired => "EXPIRED",
            VerifyFailure::Unrecognized(_) => "UNRECOGNIZED",
        }
    }

    fn from_proto(value: i32) -> Self {
        use proto::VerifyFailure as P;
        match P::try_from(value) {
            Ok(P::Malformed) => VerifyFailure::Malformed,
            Ok(P::UnknownSecretId) => VerifyFailure::UnknownSecretId,
            Ok(P::BadSignature) => VerifyFailure::BadSignature,
            Ok(P::InvalidParameter) => VerifyFailure::InvalidParameter,
            Ok(P::ValidityTooLong) => VerifyFailure::ValidityTooLong,
            Ok(P::NotYetValid) => VerifyFailure::NotYetValid,
            Ok(P::Expired) => VerifyFailure::Expired,
            // UNSPECIFIED on an invalid answer is a service bug; keep the number rather than
            // invent a reason.
            Ok(P::Unspecified) | Err(_) => VerifyFailure::Unrecognized(value),
        }
    }
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The service's verdict on a signature. A bad signature is an answer, not an [`Error`](crate::Error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The signature is authentic and currently usable.
    Valid(SignatureContents),
    /// The signature was rejected.
    Invalid {
        /// The first check that failed.
        failure: VerifyFailure,
        /// The service's human-readable explanation.
        detail: String,
        /// What the signature says, when its MAC checked out (e.g. an expired one).
        contents: Option<SignatureContents>,
    },
}

impl Verification {
    /// Whether the signature is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid(_))
    }

    pub(crate) fn from_proto(r: proto::VerifySignatureResponse) -> Self {
        // The service fills the decoded fields exactly when the MAC checked out; `secret_id`
        // is never empty then, so it tells whether there is anything to decode.
        let contents = (!r.secret_id.is_empty()).then(|| SignatureContents {
            secret_id: r.secret_id,
            issued_at: from_unix(r.issued_at),
            expires_at: from_unix(r.expires_at),
            random: r.random,
            params: UploadParams::from_proto(r.params.unwrap_or_default()),
        });
        match (r.valid, contents) {
            (true, Some(contents)) => Verification::Valid(contents),
            (true, None) => Verification::Invalid {
                // A "valid" verdict without the decoded parameters contradicts the contract;
                // refusing it is safer than trusting it.
                failure: VerifyFailure::Unrecognized(0),
                detail: "the service said valid but sent no decoded parameters".into(),
                contents: None,
            },
            (false, contents) => Verification::Invalid {
                failure: VerifyFailure::from_proto(r.failure),
                detail: r.detail,
                contents,
            },
        }
    }
}

pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Seconds since the Unix epoch (negative before it), as the wire and Tencent count time.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> proto::IssueSignatureResponse {
        proto::IssueSignatureResponse {
            signature: "c2VjcmV0LXNpZ25hdHVyZQ==".into(),
            secret_id: "AKID1".into(),
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_600,
            random: 42,
            fingerprint: "0123456789abcdef".into(),
            upload_id: String::new(),
        }
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_signature() {
        let s = IssuedSignature::from_proto(issued());
        let shown = format!("{s:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("Signature(fingerprint=0123456789abcdef)"));
        assert_eq!(s.signature.expose_secret(), "c2VjcmV0LXNpZ25hdHVyZQ==");
        assert_eq!(unix_seconds(s.issued_at), 1_700_000_000);
        assert_eq!(
            s.expires_at.duration_since(s.issued_at).unwrap(),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn times_before_the_epoch_round_trip() {
        assert_eq!(unix_seconds(from_unix(-5)), -5);
        assert_eq!(unix_seconds(from_unix(0)), 0);
    }

    #[test]
    fn invalid_verdicts_keep_reason_and_contents() {
        let expired = Verification::from_proto(proto::VerifySignatureResponse {
            valid: false,
            failure: proto::VerifyFailure::Expired as i32,
            secret_id: "AKID1".into(),
            issued_at: 10,
            expires_at: 20,
            random: 7,
            params: None,
            detail: "expired at 20".into(),
        });
        let Verification::Invalid {
            failure,
            detail,
            contents: Some(contents),
        } = expired
        else {
            panic!("{expired:?}")
        };
        assert_eq!(failure, VerifyFailure::Expired);
        assert_eq!(detail, "expired at 20");
        assert_eq!(contents.random, 7);

        let malformed = Verification::from_proto(proto::VerifySignatureResponse {
            valid: false,
            failure: proto::VerifyFailure::Malformed as i32,
            detail: "not base64".into(),
            ..Default::default()
        });
        assert!(matches!(
            malformed,
            Verification::Invalid {
                failure: VerifyFailure::Malformed,
                contents: None,
                ..
            }
        ));
    }

    #[test]
    fn a_valid_verdict_without_contents_is_not_trusted() {
        let v = Verification::from_proto(proto::VerifySignatureResponse {
            valid: true,
            ..Default::default()
        });
        assert!(!v.is_valid());
    }

    #[test]
    fn unknown_failure_numbers_are_kept() {
        assert_eq!(
            VerifyFailure::from_proto(42),
            VerifyFailure::Unrecognized(42)
        );
    }
}
