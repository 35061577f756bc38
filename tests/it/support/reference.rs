//! A verifier written from the signature spec (`../shared/docs/vod-signature-spec.md` §1–2), as
//! plainly as possible, to be the oracle of the property tests. It shares no code and no tables
//! with `vod_signer::signature`: only std and the `hmac`, `sha1` and `base64` crates. Where the
//! spec is silent, it applies the service's own limits, restated here as plain numbers (a
//! 32 KiB signature, a 256-character procedure, a 64-character region slug). Speed is no
//! concern here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Longest signature text the service accepts.
const MAX_SIGNATURE_BYTES: usize = 32 * 1024;
/// `expireTime - currentTimeStamp` may be at most 90 days (spec §2, row 3).
const MAX_VALIDITY: i128 = 90 * 24 * 60 * 60;

/// One configured API key.
pub struct Key {
    pub secret_id: String,
    pub secret_key: Vec<u8>,
}

/// What a valid signature says, every value decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub secret_id: String,
    pub current_time_stamp: i64,
    pub expire_time: i64,
    pub random: u32,
    pub class_id: Option<u64>,
    pub procedure: Option<String>,
    pub task_priority: Option<i64>,
    pub task_notify_mode: Option<String>,
    pub source_context: Option<String>,
    pub one_time_valid: Option<bool>,
    pub vod_sub_app_id: Option<u64>,
    pub session_context: Option<String>,
    pub storage_region: Option<String>,
    /// Parameters the spec does not name, in their order.
    pub extra: Vec<(String, String)>,
}

/// Why a signature is refused, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not base64, too short for the MAC, or the plaintext is not a UTF-8 query string.
    Malformed,
    UnknownSecretId,
    BadSignature,
    /// A parameter is missing, repeated, or not what the spec allows.
    InvalidParameter,
    ValidityTooLong,
    NotYetValid,
    Expired,
}

/// A refused signature: why, and what it said when the MAC was good and its parameters read
/// (a signature refused for its times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub why: Rejection,
    pub params: Option<Box<Params>>,
}

impl From<Rejection> for Refused {
    fn from(why: Rejection) -> Refused {
        Refused { why, params: None }
    }
}

/// Checks `signature` against `keys` at time `now` (Unix seconds), allowing `currentTimeStamp`
/// up to `clock_skew` seconds in the future.
pub fn verify(keys: &[Key], signature: &str, now: i64, clock_skew: i64) -> Result<Params, Refused> {
    use Rejection::*;

    // Base64 of [20-byte HMAC-SHA1][original] (spec §1, "Wire layout").
    let text = signature.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.is_empty() || text.len() > MAX_SIGNATURE_BYTES {
        return Err(Malformed.into());
    }
    let raw = STANDARD.decode(text).map_err(|_| Malformed)?;
    if raw.len() < 20 {
        return Err(Malformed.into());
    }
    let (tag, original) = raw.split_at(20);
    let original = String::from_utf8(original.to_vec()).map_err(|_| Malformed)?;
    let pairs = parse_query(&original).ok_or(Malformed)?;

    // The key is the one `secretId` names; its HMAC over the exact plaintext bytes must match.
    let made_by = |key: &Key| hmac_sha1(&key.secret_key, original.as_bytes()) == tag;
    let secret_id = match pairs.iter().find(|(name, _)| name == "secretId") {
        Some((_, id)) => id.clone(),
        None if keys.iter().any(made_by) => return Err(InvalidParameter.into()),
        None => return Err(UnknownSecretId.into()),
    };
    let key = keys
        .iter()
        .find(|key| key.secret_id == secret_id)
        .ok_or(UnknownSecretId)?;
    if !made_by(key) {
        return Err(BadSignature.into());
    }

    let params = read_params(secret_id, &pairs).ok_or(InvalidParameter)?;

    let validity = i128::from(params.expire_time) - i128::from(params.current_time_stamp);
    let refused = |why| {
        Err(Refused {
            why,
            params: Some(Box::new(params.clone())),
        })
    };
    if validity < 1 {
        return Err(InvalidParameter.into());
    }
    if validity > MAX_VALIDITY {
        return refused(ValidityTooLong);
    }
    if i128::from(params.current_time_stamp) > i128::from(now) + i128::from(clock_skew) {
        return refused(NotYetValid);
    }
    if params.expire_time <= now {
        return refused(Expired);
    }
    Ok(params)
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `name=value&name=value`, every part URL-decoded (`+` is a space, spec §1.2). `None` if a
/// pair is empty, has no `=` or no name, or an escape or the decoded text is broken.
fn parse_query(original: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in original.split('&') {
        let (name, value) = pair.split_once('=')?;
        let name = url_decode(name)?;
        if name.is_empty() {
            return None;
        }
        pairs.push((name, url_decode(value)?));
    }
    Some(pairs)
}

fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The parameters of spec §2 from the decoded pairs (the first `secretId` already taken).
/// `None` if one is missing, repeated or out of its range.
fn read_params(secret_id: String, pairs: &[(String, String)]) -> Option<Params> {
    let mut params = Params {
        secret_id,
        ..Params::default()
    };
    let (mut current, mut expire, mut random) = (None, None, None);
    let mut seen: Vec<&str> = Vec::new();
    let mut secret_ids = 0;
    for (name, value) in pairs {
        if name == "secretId" {
            secret_ids += 1;
            if secret_ids > 1 {
                return None;
            }
            continue;
        }
        let known = [
            "currentTimeStamp",
            "expireTime",
            "random",
            "classId",
            "procedure",
            "taskPriority",
            "taskNotifyMode",
            "sourceContext",
            "oneTimeValid",
            "vodSubAppId",
            "sessionContext",
            "storageRegion",
        ];
        if !known.contains(&name.as_str()) {
            params.extra.push((name.clone(), value.clone()));
            continue;
        }
        if seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name);
        let chars = value.chars().count();
        match name.as_str() {
            "currentTimeStamp" => current = Some(integer(value, 0, i64::MAX as i128)? as i64),
            "expireTime" => expire = Some(integer(value, 0, i64::MAX as i128)? as i64),
            "random" => random = Some(integer(value, 0, u32::MAX as i128)? as u32),
            "classId" if value.is_empty() => {}
            "classId" => params.class_id = Some(integer(value, 0, u64::MAX as i128)? as u64),
            "vodSubAppId" if value.is_empty() => {}
            "vodSubAppId" => {
                params.vod_sub_app_id = Some(integer(value, 0, u64::MAX as i128)? as u64)
            }
            "procedure" if chars <= 256 => params.procedure = Some(value.clone()),
            "taskPriority" => params.task_priority = Some(integer(value, -10, 10)? as i64),
            "taskNotifyMode" if ["Finish", "Change", "None"].contains(&value.as_str()) => {
                params.task_notify_mode = Some(value.clone())
            }
            "sourceContext" if chars <= 250 => params.source_context = Some(value.clone()),
            "sessionContext" if chars <= 1000 => params.session_context = Some(value.clone()),
            "oneTimeValid" if value == "0" => params.one_time_valid = Some(false),
            "oneTimeValid" if value == "1" => params.one_time_valid = Some(true),
            "storageRegion"
                if chars <= 64
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                params.storage_region = Some(value.clone())
            }
            _ => return None,
        }
    }
    params.current_time_stamp = current?;
    params.expire_time = expire?;
    params.random = random?;
    Some(params)
}

/// A decimal integer (an optional `-`, then at most 20 digits) within `min..=max`.
fn integer(value: &str, min: i128, max: i128) -> Option<i128> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || digits.len() > 20 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i128 = value.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}
