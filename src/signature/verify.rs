//! Checking a signature made by us or by any official sample.
//!
//! Checks run in a fixed order and the first failure is reported: MALFORMED,
//! UNKNOWN_SECRET_ID, BAD_SIGNATURE, INVALID_PARAMETER, VALIDITY_TOO_LONG, NOT_YET_VALID,
//! EXPIRED. Nothing from the plaintext is trusted before the MAC has been checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::decode::Decoded;
use super::error::{ParamError, ParamName, VerifyError, VerifyFailure, clip};
use super::key_ring::{KeyRing, SigningKey};
use super::params::{MAX_VALIDITY_SECONDS, SignedParams};

pub(super) const MAC_LEN: usize = 20;

/// Signatures that decode to at most this many bytes are decoded into a buffer on the stack,
/// which saves a `malloc` and `free` per verification (the buffer is still zero-filled, which
/// for 1 KiB costs a few dozen vector stores). Typical signatures decode to a few hundred bytes;
/// larger ones (long encoded contexts) decode into a `Vec`, where the allocation is small next
/// to the rest of the work.
const STACK_DECODE_LEN: usize = 1024;

/// The longest signature text the verifier will decode. A maximal legitimate signature (every
/// text field at its limit in 4-byte UTF-8, percent-encoded) is under 24 KiB.
pub(super) const MAX_SIGNATURE_LEN: usize = 32 * 1024;

/// Clock skew allowed for `currentTimeStamp` in the future, by default.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 300;

/// Options of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How far `currentTimeStamp` may lie in the future (the signer's clock may run ahead).
    pub clock_skew_seconds: u32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
        }
    }
}

pub(super) fn mac_matches(key: &SigningKey, original: &[u8], tag: &[u8]) -> bool {
    let mut mac = key.mac();
    mac.update(original);
    // `verify_slice` compares in constant time.
    mac.verify_slice(tag).is_ok()
}

impl KeyRing {
    /// Verifies `signature` at time `now` (Unix seconds).
    pub fn verify(
        &self,
        signature: &str,
        now: i64,
        options: VerifyOptions,
    ) -> Result<SignedParams, VerifyError> {
        use VerifyFailure::*;

        let signature = trimmed(signature)?;
        let not_base64 = |e: base64::DecodeError| {
            VerifyError::new(
                Malformed,
                format!("the signature is not standard base64: {e}"),
            )
        };
        let mut stack = [0u8; STACK_DECODE_LEN];
        let heap;
        let raw: &[u8] = if base64::decoded_len_estimate(signature.len()) <= STACK_DECODE_LEN {
            // The buffer holds the decoder's conservative estimate, so `decode_slice` fails
            // exactly when `decode` would, with the same `DecodeError`.
            let len = STANDARD
                .decode_slice(signature, &mut stack)
                .map_err(|e| match e {
                    base64::DecodeSliceError::DecodeError(e) => not_base64(e),
                    base64::DecodeSliceError::OutputSliceTooSmall => {
                        unreachable!("the buffer holds the decoded length estimate")
                    }
                })?;
            &stack[..len]
        } else {
            heap = STANDARD.decode(signature).map_err(not_base64)?;
            &heap
        };
        let (tag, original_bytes, original) = split(raw)?;
        let mut decoded = Decoded::new();
        if let Err(e) = decoded.read(original) {
            return Err(VerifyError::new(Malformed, e.describe()));
        }

        let key = key_for(self, decoded.secret_id.as_deref(), original_bytes, tag)?;

        let params = match decoded.into_params(key.secret_id()) {
            Ok(params) => params,
            Err(e) => return Err(VerifyError::new(InvalidParameter, e.to_string())),
        };

        check_times(params, now, options)
    }
}

/// The signature text without surrounding whitespace, or MALFORMED if that is empty or longer
/// than [`MAX_SIGNATURE_LEN`].
pub(crate) fn trimmed(signature: &str) -> Result<&str, VerifyError> {
    // Java's sample strips line breaks itself; tolerate them around the value too.
    let signature = signature.trim_matches(|c: char| c.is_ascii_whitespace());
    if signature.is_empty() {
        return Err(VerifyError::new(
            VerifyFailure::Malformed,
            "the signature is empty",
        ));
    }
    if signature.len() > MAX_SIGNATURE_LEN {
        return Err(VerifyError::new(
            VerifyFailure::Malformed,
            format!(
                "the signature is {} characters long; at most {MAX_SIGNATURE_LEN} are accepted",
                signature.len()
            ),
        ));
    }
    Ok(signature)
}

/// The decoded signature split into the MAC tag, the plaintext bytes and the plaintext as
/// text, or MALFORMED.
pub(crate) fn split(raw: &[u8]) -> Result<(&[u8], &[u8], &str), VerifyError> {
    if raw.len() < MAC_LEN {
        return Err(VerifyError::new(
            VerifyFailure::Malformed,
            format!(
                "the signature decodes to {} bytes, fewer than the 20-byte HMAC-SHA1",
                raw.len()
            ),
        ));
    }
    let (tag, original_bytes) = raw.split_at(MAC_LEN);
    let original = std::str::from_utf8(original_bytes).map_err(|_| {
        VerifyError::new(VerifyFailure::Malformed, "the plaintext is not valid UTF-8")
    })?;
    Ok((tag, original_bytes, original))
}

/// The key that made the MAC of `original`, chosen by its `secretId` (the first one in the
/// plaintext), or the failure: UNKNOWN_SECRET_ID, BAD_SIGNATURE, or INVALID_PARAMETER when the
/// plaintext names no key but one of ours made the MAC anyway.
pub(crate) fn key_for<'a>(
    ring: &'a KeyRing,
    secret_id: Option<&str>,
    original: &[u8],
    tag: &[u8],
) -> Result<&'a SigningKey, VerifyError> {
    use VerifyFailure::*;

    match secret_id {
        Some(id) => {
            let key = ring.get(id).ok_or_else(|| {
                VerifyError::new(
                    UnknownSecretId,
                    format!("no key with secretId {:?} is configured", clip(id)),
                )
            })?;
            if !mac_matches(key, original, tag) {
                return Err(VerifyError::new(
                    BadSignature,
                    format!("the HMAC does not match key {}", key.secret_id()),
                ));
            }
            Ok(key)
        }
        None => {
            // Without a secretId there is no key to pick; if one of ours made the MAC, the
            // signer merely left the parameter out, which is an invalid parameter.
            if ring.keys().any(|k| mac_matches(k, original, tag)) {
                let e = ParamError::Missing {
                    name: ParamName::SecretId,
                };
                return Err(VerifyError::new(InvalidParameter, e.to_string()));
            }
            Err(VerifyError::new(
                UnknownSecretId,
                "the plaintext has no secretId and no configured key made its HMAC",
            ))
        }
    }
}

/// The checks on a MAC-checked signature's times, in order: INVALID_PARAMETER (expiry not after
/// issue), VALIDITY_TOO_LONG, NOT_YET_VALID, EXPIRED.
pub(crate) fn check_times(
    params: SignedParams,
    now: i64,
    options: VerifyOptions,
) -> Result<SignedParams, VerifyError> {
    use VerifyFailure::*;

    // Differences in i128: `now` comes from the caller (`verify --at`) and may be any i64,
    // and the difference of two i64 may not fit one.
    let diff = |a: i64, b: i64| i128::from(a) - i128::from(b);
    let validity = diff(params.expire_time, params.current_time_stamp);
    if validity < 1 {
        return Err(VerifyError::new(
            InvalidParameter,
            format!(
                "expireTime {} is not after currentTimeStamp {}",
                params.expire_time, params.current_time_stamp
            ),
        ));
    }
    if validity > i128::from(MAX_VALIDITY_SECONDS) {
        let detail = format!(
            "expireTime - currentTimeStamp is {validity} s; VOD allows at most {MAX_VALIDITY_SECONDS} s (90 days)"
        );
        return Err(VerifyError::with_params(ValidityTooLong, detail, params));
    }
    let skew = i64::from(options.clock_skew_seconds);
    if params.current_time_stamp > now.saturating_add(skew) {
        let detail = format!(
            "currentTimeStamp {} is {} s in the future (allowed clock skew {skew} s)",
            params.current_time_stamp,
            diff(params.current_time_stamp, now)
        );
        return Err(VerifyError::with_params(NotYetValid, detail, params));
    }
    if params.expire_time <= now {
        let detail = format!(
            "expired at {} ({} s ago)",
            params.expire_time,
            diff(now, params.expire_time)
        );
        return Err(VerifyError::with_params(Expired, detail, params));
    }
    Ok(params)
}
