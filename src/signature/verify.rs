//! Checking a signature made by us or by any official sample.
//!
//! Checks run in a fixed order and the first failure is reported: MALFORMED,
//! UNKNOWN_SECRET_ID, BAD_SIGNATURE, INVALID_PARAMETER, VALIDITY_TOO_LONG, NOT_YET_VALID,
//! EXPIRED. Nothing from the plaintext is trusted before the MAC has been checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::error::{ParamError, ParamName, VerifyError, VerifyFailure, clip};
use super::key_ring::{KeyRing, SigningKey};
use super::params::{
    MAX_VALIDITY_SECONDS, Procedure, Random, SecretId, SessionContext, SignedParams, SourceContext,
    StorageRegion, TaskNotifyMode, TaskPriority, UploadParams,
};
use super::query;

const MAC_LEN: usize = 20;

/// The longest signature text the verifier will decode. A maximal legitimate signature (every
/// text field at its limit in 4-byte UTF-8, percent-encoded) is under 24 KiB.
pub const MAX_SIGNATURE_LEN: usize = 32 * 1024;

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

fn mac_matches(key: &SigningKey, original: &[u8], tag: &[u8]) -> bool {
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

        // Java's sample strips line breaks itself; tolerate them around the value too.
        let signature = signature.trim_matches(|c: char| c.is_ascii_whitespace());
        if signature.is_empty() {
            return Err(VerifyError::new(Malformed, "the signature is empty"));
        }
        if signature.len() > MAX_SIGNATURE_LEN {
            return Err(VerifyError::new(
                Malformed,
                format!(
                    "the signature is {} characters long; at most {MAX_SIGNATURE_LEN} are accepted",
                    signature.len()
                ),
            ));
        }
        let raw = STANDARD.decode(signature).map_err(|e| {
            VerifyError::new(
                Malformed,
                format!("the signature is not standard base64: {e}"),
            )
        })?;
        if raw.len() < MAC_LEN {
            return Err(VerifyError::new(
                Malformed,
                format!(
                    "the signature decodes to {} bytes, fewer than the 20-byte HMAC-SHA1",
                    raw.len()
                ),
            ));
        }
        let (tag, original_bytes) = raw.split_at(MAC_LEN);
        let original = std::str::from_utf8(original_bytes)
            .map_err(|_| VerifyError::new(Malformed, "the plaintext is not valid UTF-8"))?;
        let pairs =
            query::parse(original).map_err(|e| VerifyError::new(Malformed, e.describe()))?;

        let secret_id = pairs
            .iter()
            .find(|(name, _)| name == "secretId")
            .map(|(_, value)| value.as_ref());
        let key = match secret_id {
            Some(id) => {
                let key = self.get(id).ok_or_else(|| {
                    VerifyError::new(
                        UnknownSecretId,
                        format!("no key with secretId {:?} is configured", clip(id)),
                    )
                })?;
                if !mac_matches(key, original_bytes, tag) {
                    return Err(VerifyError::new(
                        BadSignature,
                        format!("the HMAC does not match key {}", key.secret_id()),
                    ));
                }
                key
            }
            None => {
                // Without a secretId there is no key to pick; if one of ours made the MAC, the
                // signer merely left the parameter out, which is an invalid parameter.
                if self.keys().any(|k| mac_matches(k, original_bytes, tag)) {
                    let e = ParamError::Missing {
                        name: ParamName::SecretId,
                    };
                    return Err(VerifyError::new(InvalidParameter, e.to_string()));
                }
                return Err(VerifyError::new(
                    UnknownSecretId,
                    "the plaintext has no secretId and no configured key made its HMAC",
                ));
            }
        };

        let params = decode_params(pairs, key.secret_id())
            .map_err(|e| VerifyError::new(InvalidParameter, e.to_string()))?;

        let validity = params.expire_time - params.current_time_stamp;
        if validity < 1 {
            return Err(VerifyError::new(
                InvalidParameter,
                format!(
                    "expireTime {} is not after currentTimeStamp {}",
                    params.expire_time, params.current_time_stamp
                ),
            ));
        }
        if validity > i64::from(MAX_VALIDITY_SECONDS) {
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
                params.current_time_stamp - now
            );
            return Err(VerifyError::with_params(NotYetValid, detail, params));
        }
        if params.expire_time <= now {
            let detail = format!(
                "expired at {} ({} s ago)",
                params.expire_time,
                now - params.expire_time
            );
            return Err(VerifyError::with_params(Expired, detail, params));
        }
        Ok(params)
    }
}

fn parse_int(name: ParamName, value: &str, min: i64, max: u64) -> Result<i128, ParamError> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, value),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParamError::NotAnInteger {
            name,
            value: clip(value),
        });
    }
    // At most 20 digits, so below 10^20: no overflow in u128, and exact as i128. (Cheaper than
    // `str::parse::<i128>`, which this matches for every input that passed the check above.)
    let magnitude = digits
        .bytes()
        .fold(0u128, |n, d| n * 10 + u128::from(d - b'0')) as i128;
    let n = if negative { -magnitude } else { magnitude };
    if n < i128::from(min) || n > i128::from(max) {
        return Err(ParamError::OutOfRange {
            name,
            min,
            max,
            value: clip(value),
        });
    }
    Ok(n)
}

fn set_once<T>(slot: &mut Option<T>, name: ParamName, value: T) -> Result<(), ParamError> {
    if slot.is_some() {
        return Err(ParamError::Repeated { name });
    }
    *slot = Some(value);
    Ok(())
}

/// An optional integer may be empty (the official Node sample signs `classId=` style defaults
/// for text; Tencent documents an empty `vodSubAppId` as the primary app); empty means unset.
fn optional_int(
    seen: &mut bool,
    slot: &mut Option<u64>,
    name: ParamName,
    value: &str,
) -> Result<(), ParamError> {
    if std::mem::replace(seen, true) {
        return Err(ParamError::Repeated { name });
    }
    if !value.is_empty() {
        *slot = Some(parse_int(name, value, 0, u64::MAX)? as u64);
    }
    Ok(())
}

/// Decodes the parameters of a MAC-checked `original`. `key_id` is the `secretId` of the key
/// that checked the MAC: when the plaintext names it, as it must have, that (shared) `SecretId`
/// is reused rather than validated and allocated again. Owned (percent-decoded) values are
/// moved into their types, not copied.
pub(crate) fn decode_params(
    pairs: query::Pairs<'_>,
    key_id: &SecretId,
) -> Result<SignedParams, ParamError> {
    const TIME_MAX: u64 = i64::MAX as u64;
    let mut secret_id = None;
    let mut current_time_stamp = None;
    let mut expire_time = None;
    let mut random = None;
    let mut upload = UploadParams::default();
    let mut extra = Vec::new();
    let (mut seen_class_id, mut seen_sub_app_id) = (false, false);

    for (name, value) in pairs {
        let Some(param) = ParamName::from_wire_name(&name) else {
            extra.push((name.into_owned(), value.into_owned()));
            continue;
        };
        match param {
            ParamName::SecretId => {
                let id = if value == key_id.as_str() {
                    key_id.clone()
                } else {
                    SecretId::new(&value)?
                };
                set_once(&mut secret_id, param, id)?
            }
            ParamName::CurrentTimeStamp => set_once(
                &mut current_time_stamp,
                param,
                parse_int(param, &value, 0, TIME_MAX)? as i64,
            )?,
            ParamName::ExpireTime => set_once(
                &mut expire_time,
                param,
                parse_int(param, &value, 0, TIME_MAX)? as i64,
            )?,
            ParamName::Random => set_once(
                &mut random,
                param,
                Random(parse_int(param, &value, 0, u64::from(u32::MAX))? as u32),
            )?,
            ParamName::ClassId => {
                optional_int(&mut seen_class_id, &mut upload.class_id, param, &value)?
            }
            ParamName::VodSubAppId => optional_int(
                &mut seen_sub_app_id,
                &mut upload.vod_sub_app_id,
                param,
                &value,
            )?,
            ParamName::Procedure => set_once(&mut upload.procedure, param, Procedure::new(value)?)?,
            ParamName::TaskPriority => set_once(
                &mut upload.task_priority,
                param,
                TaskPriority::new(parse_int(param, &value, -10, 10)? as i64)?,
            )?,
            ParamName::TaskNotifyMode => set_once(
                &mut upload.task_notify_mode,
                param,
                value.parse::<TaskNotifyMode>()?,
            )?,
            ParamName::SourceContext => set_once(
                &mut upload.source_context,
                param,
                SourceContext::new(value)?,
            )?,
            ParamName::SessionContext => set_once(
                &mut upload.session_context,
                param,
                SessionContext::new(value)?,
            )?,
            ParamName::StorageRegion => set_once(
                &mut upload.storage_region,
                param,
                StorageRegion::new(value)?,
            )?,
            ParamName::OneTimeValid => {
                let flag = match &*value {
                    "0" => false,
                    "1" => true,
                    other => {
                        return Err(ParamError::OutOfRange {
                            name: param,
                            min: 0,
                            max: 1,
                            value: clip(other),
                        });
                    }
                };
                set_once(&mut upload.one_time_valid, param, flag)?
            }
        }
    }

    let missing = |name| ParamError::Missing { name };
    Ok(SignedParams {
        secret_id: secret_id.ok_or_else(|| missing(ParamName::SecretId))?,
        current_time_stamp: current_time_stamp
            .ok_or_else(|| missing(ParamName::CurrentTimeStamp))?,
        expire_time: expire_time.ok_or_else(|| missing(ParamName::ExpireTime))?,
        random: random.ok_or_else(|| missing(ParamName::Random))?,
        upload,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `parse_int` as it was, with `str::parse::<i128>`, kept to check the hand-rolled one.
    fn reference_parse_int(value: &str, min: i64, max: u64) -> Result<i128, ParamError> {
        let name = ParamName::Random;
        let digits = value.strip_prefix('-').unwrap_or(value);
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParamError::NotAnInteger {
                name,
                value: clip(value),
            });
        }
        let n: i128 = value.parse().map_err(|_| ParamError::NotAnInteger {
            name,
            value: clip(value),
        })?;
        if n < i128::from(min) || n > i128::from(max) {
            return Err(ParamError::OutOfRange {
                name,
                min,
                max,
                value: clip(value),
            });
        }
        Ok(n)
    }

    #[test]
    fn integer_edges() {
        for value in [
            "0",
            "-0",
            "-",
            "",
            "+1",
            "--1",
            "00000000000000000001",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "999999999999999999999",
            "-9223372036854775808",
            "9223372036854775807",
            "9223372036854775808",
            "4294967295",
            "4294967296",
            "1.0",
            " 1",
        ] {
            for (min, max) in [
                (0, u64::MAX),
                (0, i64::MAX as u64),
                (-10, 10),
                (0, 4294967295),
            ] {
                assert_eq!(
                    parse_int(ParamName::Random, value, min, max),
                    reference_parse_int(value, min, max),
                    "{value:?} in {min}..={max}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn hand_rolled_parse_int_matches_std(value in "-?[0-9]{0,22}|.{0,6}", min in -20i64..=0, max in any::<u64>()) {
            prop_assert_eq!(
                parse_int(ParamName::Random, &value, min, max),
                reference_parse_int(&value, min, max)
            );
        }
    }
}
