//! The verifier as it was before parsing and typed decoding were fused into one pass
//! (`decode.rs`), kept (test-only) so property tests can check that the fast path returns
//! exactly what this one did, error kinds and messages included. The key choice and the time
//! checks and the checks on the signature text before and after base64, which the fusion did
//! not touch, are the live ones (`verify::{trimmed, split, key_for, check_times}`); parsing and
//! typed decoding are the old code, verbatim.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{ParamError, ParamName, VerifyError, VerifyFailure, clip};
use super::key_ring::KeyRing;
use super::params::{
    Procedure, Random, SecretId, SessionContext, SignedParams, SourceContext, StorageRegion,
    TaskNotifyMode, TaskPriority, UploadParams,
};
use super::query::{HEX_VALUE, NAME_STOP, NOT_HEX, QueryError};
use super::verify::{VerifyOptions, check_times, key_for, split, trimmed};

/// `query::parse` as it was.
pub(crate) mod query {
    use super::*;

    /// Decodes one name or value whose first `%` or `+` is at `first` (components without one are
    /// borrowed as they are). The output is never longer than the input, so it is written into a
    /// buffer of the input's size without growing it. Encoded text (JSON contexts, CJK) has short
    /// runs between escapes, so a plain byte loop beats searching for the next escape.
    fn decode_from(raw: &str, first: usize) -> Result<String, QueryError> {
        let bytes = raw.as_bytes();
        let mut out = vec![0u8; bytes.len()];
        out[..first].copy_from_slice(&bytes[..first]);
        let (mut i, mut len) = (first, first);
        while i < bytes.len() {
            out[len] = match bytes[i] {
                b'%' => {
                    let hex = |at: usize| {
                        bytes
                            .get(at)
                            .map_or(NOT_HEX, |&d| HEX_VALUE[usize::from(d)])
                    };
                    let (hi, lo) = (hex(i + 1), hex(i + 2));
                    if (hi | lo) == NOT_HEX {
                        return Err(QueryError::BadEscape);
                    }
                    i += 3;
                    hi << 4 | lo
                }
                b'+' => {
                    i += 1;
                    b' '
                }
                b => {
                    i += 1;
                    b
                }
            };
            len += 1;
        }
        out.truncate(len);
        String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
    }

    /// Decoded `name=value` pairs, borrowed from `original` where nothing needed decoding.
    pub(crate) type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

    /// Splits `original` into decoded pairs, in order, repeats kept (the caller decides about them).
    ///
    /// Names are short and scanned byte by byte up to their `=`; values, which hold nearly all the
    /// bytes, are searched with `memchr3` for the `&` that ends them or a first escape. Components
    /// without an escape are borrowed, so a typical signature allocates only for encoded text.
    pub(crate) fn parse(original: &str) -> Result<Pairs<'_>, QueryError> {
        let bytes = original.as_bytes();
        let mut pairs = Vec::with_capacity(8);
        let mut start = 0;
        loop {
            // The name: up to the first `=`; an `&` first means the pair has none.
            let mut name_escape = None;
            let mut equals = None;
            let mut name_end = bytes.len();
            let mut i = start;
            while i < bytes.len() {
                let b = bytes[i];
                if NAME_STOP[usize::from(b)] {
                    match b {
                        b'=' => {
                            equals = Some(i);
                            break;
                        }
                        b'&' => {
                            name_end = i;
                            break;
                        }
                        _ => {
                            name_escape.get_or_insert(i);
                        }
                    }
                }
                i += 1;
            }
            let Some(equals) = equals else {
                return Err(if start == name_end {
                    QueryError::EmptyPair
                } else {
                    QueryError::MissingEquals
                });
            };
            if equals == start {
                return Err(QueryError::EmptyName);
            }
            // The value: up to the next `&`, noting its first escape on the way.
            let value_start = equals + 1;
            let (value_escape, end) = match memchr::memchr3(b'&', b'%', b'+', &bytes[value_start..])
            {
                None => (None, bytes.len()),
                Some(n) if bytes[value_start + n] == b'&' => (None, value_start + n),
                Some(n) => {
                    let first = value_start + n;
                    let end =
                        memchr::memchr(b'&', &bytes[first..]).map_or(bytes.len(), |m| first + m);
                    (Some(first), end)
                }
            };
            // All split points are ASCII bytes, so every slice below is on a char boundary.
            let component = |from: usize, to: usize, escape: Option<usize>| match escape {
                None => Ok(Cow::Borrowed(&original[from..to])),
                Some(first) => decode_from(&original[from..to], first - from).map(Cow::Owned),
            };
            let name = component(start, equals, name_escape)?;
            let value = component(value_start, end, value_escape)?;
            pairs.push((name, value));
            if end == bytes.len() {
                return Ok(pairs);
            }
            start = end + 1;
        }
    }
}

/// `KeyRing::verify` as it was.
pub(crate) fn verify(
    ring: &KeyRing,
    signature: &str,
    now: i64,
    options: VerifyOptions,
) -> Result<SignedParams, VerifyError> {
    use VerifyFailure::*;

    let signature = trimmed(signature)?;
    let raw = STANDARD.decode(signature).map_err(|e| {
        VerifyError::new(
            Malformed,
            format!("the signature is not standard base64: {e}"),
        )
    })?;
    let (tag, original_bytes, original) = split(&raw)?;
    let pairs = query::parse(original).map_err(|e| VerifyError::new(Malformed, e.describe()))?;

    let secret_id = pairs
        .iter()
        .find(|(name, _)| name == "secretId")
        .map(|(_, value)| value.as_ref());
    let key = key_for(ring, secret_id, original_bytes, tag)?;

    let params = decode_params(pairs, key.secret_id())
        .map_err(|e| VerifyError::new(InvalidParameter, e.to_string()))?;

    check_times(params, now, options)
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
