//! Building `original`: the query string that is MACed and embedded in the signature.

use super::error::ParamName;
use super::params::UploadParams;

/// RFC 3986 unreserved characters stay as they are; everything else (space included, as `%20`)
/// is percent-encoded as UTF-8. Every official sample's parser decodes this form.
const fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

static UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = unreserved(b as u8);
        b += 1;
    }
    table
};

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `value` percent-encoded (upper-case hex, as `percent-encoding` and the samples do).
///
/// Hand-rolled rather than `percent_encoding::utf8_percent_encode`: that iterator yields one
/// `&str` per escaped byte, and appending those one by one cost about as much as the MAC
/// itself on long non-ASCII contexts (BENCHMARKS.md). Here the worst case (every byte escaped) is
/// reserved once and every byte is written in place, with no capacity check per byte.
pub(crate) fn push_encoded(out: &mut Vec<u8>, value: &str) {
    let start = out.len();
    out.resize(start + 3 * value.len(), 0);
    let mut at = start;
    for &b in value.as_bytes() {
        if UNRESERVED[usize::from(b)] {
            out[at] = b;
            at += 1;
        } else {
            out[at..at + 3].copy_from_slice(&[
                b'%',
                UPPER_HEX[usize::from(b >> 4)],
                UPPER_HEX[usize::from(b & 0x0f)],
            ]);
            at += 3;
        }
    }
    out.truncate(at);
}

fn push_pair(out: &mut Vec<u8>, name: ParamName, value: &[u8]) {
    out.push(b'&');
    out.extend_from_slice(name.wire_name().as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
}

fn push_int(out: &mut Vec<u8>, name: ParamName, value: impl itoa::Integer) {
    let mut buf = itoa::Buffer::new();
    push_pair(out, name, buf.format(value).as_bytes());
}

fn push_text(out: &mut Vec<u8>, name: ParamName, value: &str) {
    push_pair(out, name, b"");
    push_encoded(out, value);
}

/// Appends the four required parameters, in the documented order. `encoded_secret_id` is
/// already percent-encoded (it is encoded once per key, not once per signature).
pub(crate) fn push_required(
    out: &mut Vec<u8>,
    encoded_secret_id: &str,
    current_time_stamp: i64,
    expire_time: i64,
    random: u32,
) {
    out.extend_from_slice(b"secretId=");
    out.extend_from_slice(encoded_secret_id.as_bytes());
    push_int(out, ParamName::CurrentTimeStamp, current_time_stamp);
    push_int(out, ParamName::ExpireTime, expire_time);
    push_int(out, ParamName::Random, random);
}

/// Appends the optional parameters that are set, in the order of Tencent's parameter table.
pub(crate) fn push_optional(out: &mut Vec<u8>, params: &UploadParams) {
    if let Some(v) = params.class_id {
        push_int(out, ParamName::ClassId, v);
    }
    if let Some(v) = &params.procedure {
        push_text(out, ParamName::Procedure, v.as_str());
    }
    if let Some(v) = params.task_priority {
        push_int(out, ParamName::TaskPriority, v.get());
    }
    if let Some(v) = params.task_notify_mode {
        push_pair(out, ParamName::TaskNotifyMode, v.as_str().as_bytes());
    }
    if let Some(v) = &params.source_context {
        push_text(out, ParamName::SourceContext, v.as_str());
    }
    if let Some(v) = params.one_time_valid {
        push_pair(out, ParamName::OneTimeValid, if v { b"1" } else { b"0" });
    }
    if let Some(v) = params.vod_sub_app_id {
        push_int(out, ParamName::VodSubAppId, v);
    }
    if let Some(v) = &params.session_context {
        push_text(out, ParamName::SessionContext, v.as_str());
    }
    if let Some(v) = &params.storage_region {
        push_text(out, ParamName::StorageRegion, v.as_str());
    }
}

/// A generous upper bound of `original`'s length, so building it never reallocates.
pub(crate) fn estimated_len(encoded_secret_id: &str, params: &UploadParams) -> usize {
    // Required part: names and separators (~50) plus three integers (≤ 20 digits each).
    let mut len = encoded_secret_id.len() + 120;
    let text = |s: Option<&str>| s.map_or(0, |s| 24 + 3 * s.len());
    len += text(params.procedure.as_ref().map(|v| v.as_str()));
    len += text(params.source_context.as_ref().map(|v| v.as_str()));
    len += text(params.session_context.as_ref().map(|v| v.as_str()));
    len += text(params.storage_region.as_ref().map(|v| v.as_str()));
    len + 160
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    use proptest::prelude::*;

    /// The set this module encoded with before `push_encoded` was hand-rolled.
    const REFERENCE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    fn encoded(value: &str) -> String {
        let mut out = b"prefix=".to_vec();
        push_encoded(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_byte_is_encoded_as_the_percent_encoding_crate_does() {
        for c in (0..=0x7f_u8)
            .map(char::from)
            .chain(['é', '名', '🎬', '\u{7f}'])
        {
            let value = format!("a{c}b{c}");
            assert_eq!(
                encoded(&value),
                format!("prefix={}", utf8_percent_encode(&value, REFERENCE)),
                "{c:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn matches_the_percent_encoding_crate(value in any::<String>()) {
            prop_assert_eq!(
                encoded(&value),
                format!("prefix={}", utf8_percent_encode(&value, REFERENCE))
            );
        }
    }
}
