//! Typed decoding of `original` in the same pass that parses it.
//!
//! Each pair goes straight into its field as the parser finds it, instead of first being moved
//! into a vector of pairs and then out again (that data movement cost more than the scanning).
//! The verifier's order of checks still holds: a malformed text is reported whatever else is
//! wrong with it, so a parameter error only stops the typed decoding, not the parsing; it is
//! kept (the first one, in order of appearance) and reported once the MAC has been checked.

use std::borrow::Cow;

use super::error::{ParamError, ParamName, clip};
use super::params::{
    Procedure, Random, SecretId, SessionContext, SignedParams, SourceContext, StorageRegion,
    TaskNotifyMode, TaskPriority, UploadParams,
};
use super::query::{self, QueryError};

/// What a well-formed `original` said, before its MAC has been checked.
pub(crate) struct Decoded<'a> {
    /// The value of the first `secretId`. It picks the key, so it is needed even when another
    /// parameter is invalid, and it is not validated: a key is only found for a valid id.
    pub(crate) secret_id: Option<Cow<'a, str>>,
    /// Every other parameter, or the first error among them in order of appearance.
    fields: Result<Fields, ParamError>,
}

#[derive(Default)]
struct Fields {
    current_time_stamp: Option<i64>,
    expire_time: Option<i64>,
    random: Option<Random>,
    upload: UploadParams,
    extra: Vec<(String, String)>,
    seen_class_id: bool,
    seen_sub_app_id: bool,
}

impl<'a> Decoded<'a> {
    /// Nothing decoded yet.
    pub(crate) fn new() -> Self {
        Decoded {
            secret_id: None,
            fields: Ok(Fields::default()),
        }
    }

    /// Parses `original` and decodes its parameters in one pass, into `self`. Only a malformed
    /// text is an error here; parameter errors wait until [`Decoded::into_params`]. (It fills a
    /// value the caller owns rather than returning one: a `Result<Decoded, _>` is a few hundred
    /// bytes, which returning it and passing it through `map_err` copied twice.)
    pub(crate) fn read(&mut self, original: &'a str) -> Result<(), QueryError> {
        for pair in query::pairs(original) {
            let query::Pair { param, name, value } = pair?;
            if param == Some(ParamName::SecretId) && self.secret_id.is_none() {
                self.secret_id = Some(value);
                continue;
            }
            if let Ok(f) = &mut self.fields
                && let Err(e) = f.take(param, name, value)
            {
                self.fields = Err(e);
            }
        }
        Ok(())
    }
}

impl Decoded<'_> {
    /// The parameters, once the MAC has been checked with the key that the first `secretId`
    /// named: `key_id` is that key's (shared, already validated) `SecretId`, reused rather than
    /// validated and allocated again.
    #[inline]
    pub(crate) fn into_params(self, key_id: &SecretId) -> Result<SignedParams, ParamError> {
        let fields = self.fields?;
        let missing = |name| ParamError::Missing { name };
        let secret_id = match self.secret_id {
            Some(id) => {
                debug_assert_eq!(id, key_id.as_str());
                key_id.clone()
            }
            None => return Err(missing(ParamName::SecretId)),
        };
        Ok(SignedParams {
            secret_id,
            current_time_stamp: fields
                .current_time_stamp
                .ok_or_else(|| missing(ParamName::CurrentTimeStamp))?,
            expire_time: fields
                .expire_time
                .ok_or_else(|| missing(ParamName::ExpireTime))?,
            random: fields.random.ok_or_else(|| missing(ParamName::Random))?,
            upload: fields.upload,
            extra: fields.extra,
        })
    }
}

impl Fields {
    /// Takes one pair other than the first `secretId`. Owned (percent-decoded) values are moved
    /// into their types, not copied; integers without escapes are read from `original` itself.
    fn take(
        &mut self,
        param: Option<ParamName>,
        name: Cow<'_, str>,
        value: Cow<'_, str>,
    ) -> Result<(), ParamError> {
        const TIME_MAX: u64 = i64::MAX as u64;
        let Some(param) = param else {
            self.extra.push((name.into_owned(), value.into_owned()));
            return Ok(());
        };
        let upload = &mut self.upload;
        match param {
            // The first `secretId` never gets here. A repeat is refused, but an invalid value
            // is reported as such first, as the value of every other parameter is.
            ParamName::SecretId => {
                SecretId::new(&value)?;
                Err(ParamError::Repeated { name: param })
            }
            ParamName::CurrentTimeStamp => set_once(
                &mut self.current_time_stamp,
                param,
                parse_int(param, &value, 0, TIME_MAX)? as i64,
            ),
            ParamName::ExpireTime => set_once(
                &mut self.expire_time,
                param,
                parse_int(param, &value, 0, TIME_MAX)? as i64,
            ),
            ParamName::Random => set_once(
                &mut self.random,
                param,
                Random(parse_int(param, &value, 0, u64::from(u32::MAX))? as u32),
            ),
            ParamName::ClassId => {
                optional_int(&mut self.seen_class_id, &mut upload.class_id, param, &value)
            }
            ParamName::VodSubAppId => optional_int(
                &mut self.seen_sub_app_id,
                &mut upload.vod_sub_app_id,
                param,
                &value,
            ),
            ParamName::Procedure => set_once(&mut upload.procedure, param, Procedure::new(value)?),
            ParamName::TaskPriority => set_once(
                &mut upload.task_priority,
                param,
                TaskPriority::new(parse_int(param, &value, -10, 10)? as i64)?,
            ),
            ParamName::TaskNotifyMode => set_once(
                &mut upload.task_notify_mode,
                param,
                value.parse::<TaskNotifyMode>()?,
            ),
            ParamName::SourceContext => set_once(
                &mut upload.source_context,
                param,
                SourceContext::new(value)?,
            ),
            ParamName::SessionContext => set_once(
                &mut upload.session_context,
                param,
                SessionContext::new(value)?,
            ),
            ParamName::StorageRegion => set_once(
                &mut upload.storage_region,
                param,
                StorageRegion::new(value)?,
            ),
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
                set_once(&mut upload.one_time_valid, param, flag)
            }
        }
    }
}

fn parse_int(name: ParamName, value: &str, min: i64, max: u64) -> Result<i128, ParamError> {
    let not_an_integer = || ParamError::NotAnInteger {
        name,
        value: clip(value),
    };
    let (negative, digits) = match value.strip_prefix('-') {
        Some(digits) => (true, digits.as_bytes()),
        None => (false, value.as_bytes()),
    };
    if digits.is_empty() || digits.len() > 20 {
        return Err(not_an_integer());
    }
    // Checks and accumulates in one pass. Up to 19 digits stay below 10^19 < 2^64, so they
    // accumulate in a `u64` (a multiply by 10 there is two cheap `lea`s, where `u128` needs a
    // chain of multiplies); a 20th digit is added in `u128`, where at most 20 digits cannot
    // overflow and stay exact as `i128`. (This matches `str::parse::<i128>` for every input that
    // is 1 to 20 ASCII digits after an optional `-`.)
    let (head, last) = digits.split_at(digits.len().min(19));
    let mut n = 0u64;
    for &b in head {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(not_an_integer());
        }
        n = n * 10 + u64::from(d);
    }
    let mut magnitude = u128::from(n);
    for &b in last {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(not_an_integer());
        }
        magnitude = magnitude * 10 + u128::from(d);
    }
    let magnitude = magnitude as i128;
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
