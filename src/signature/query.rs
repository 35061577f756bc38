//! Parsing `original` the way the official samples' parsers do: `&`-separated `name=value`
//! pairs, percent-escapes decoded as UTF-8, and `+` read as a space (PHP, Java and Python
//! samples encode a space as `+`, Node and C# as `%20`).

use std::borrow::Cow;

use super::error::ParamName;

/// Why `original` is not a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    EmptyPair,
    MissingEquals,
    EmptyName,
    BadEscape,
    NotUtf8,
}

impl QueryError {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            QueryError::EmptyPair => "the plaintext has an empty name=value pair",
            QueryError::MissingEquals => "the plaintext has a pair without '='",
            QueryError::EmptyName => "the plaintext has a pair with an empty name",
            QueryError::BadEscape => "the plaintext has a '%' not followed by two hex digits",
            QueryError::NotUtf8 => "a percent-decoded value is not valid UTF-8",
        }
    }
}

/// The value of a hex digit, or `NOT_HEX`.
pub(super) static HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    table
};
pub(super) const NOT_HEX: u8 = 0xff;

/// Decodes one name or value whose first `%` or `+` is at `first` (components without one are
/// borrowed as they are). Encoded text (JSON contexts, CJK) has short runs between escapes, so a
/// plain byte loop beats searching for the next escape; percent-encoded CJK and emoji are runs
/// of escapes, taken two at a time. The output is never longer than the input, so one
/// allocation of the input's size suffices, and it is not zero-filled first.
fn decode_from(raw: &str, first: usize) -> Result<String, QueryError> {
    let hex = |d: &u8| HEX_VALUE[usize::from(*d)];
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut rest = &bytes[first..];
    loop {
        rest = match rest {
            [b'%', h1, l1, b'%', h2, l2, after @ ..] => {
                let (h1, l1, h2, l2) = (hex(h1), hex(l1), hex(h2), hex(l2));
                // A digit is below 16, so the `or` is `NOT_HEX` exactly when one is not a digit.
                if (h1 | l1 | h2 | l2) == NOT_HEX {
                    return Err(QueryError::BadEscape);
                }
                out.extend_from_slice(&[h1 << 4 | l1, h2 << 4 | l2]);
                after
            }
            [b'%', hi, lo, after @ ..] => {
                let (hi, lo) = (hex(hi), hex(lo));
                if (hi | lo) == NOT_HEX {
                    return Err(QueryError::BadEscape);
                }
                out.push(hi << 4 | lo);
                after
            }
            [b'%', ..] => return Err(QueryError::BadEscape),
            [b'+', after @ ..] => {
                out.push(b' ');
                after
            }
            [b, after @ ..] => {
                out.push(*b);
                after
            }
            [] => break,
        };
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

/// Bytes that end or escape a name: `=`, `&`, `%` and `+`.
pub(super) static NAME_STOP: [bool; 256] = {
    let mut table = [false; 256];
    table[b'=' as usize] = true;
    table[b'&' as usize] = true;
    table[b'%' as usize] = true;
    table[b'+' as usize] = true;
    table
};

/// Bytes that end a value or start an escape in it: `&`, `%` and `+`.
static VALUE_STOP: [bool; 256] = {
    let mut table = [false; 256];
    table[b'&' as usize] = true;
    table[b'%' as usize] = true;
    table[b'+' as usize] = true;
    table
};

/// One decoded pair: the documented parameter its name names, if any, and the name and value,
/// borrowed from `original` where nothing needed decoding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pair<'a> {
    pub(crate) param: Option<ParamName>,
    pub(crate) name: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
}

/// The documented parameter whose name, followed by `=`, starts `rest`, and that name's length.
///
/// Signers write the documented names as they are, so nearly every pair is recognised here by
/// its first byte and one fixed-length comparison, without scanning the name for escapes and
/// looking the scanned name up. Anything else (unknown names, escaped names, a name without
/// `=`) is left to the general scan, which also recognises escaped spellings of known names.
#[inline]
fn known_name(rest: &[u8]) -> Option<(ParamName, usize)> {
    use ParamName::*;
    // Each comparison is with a literal, so its length is a constant and it compiles to a few
    // word comparisons instead of a call to `memcmp`.
    macro_rules! first_of {
        ($($wire:literal => $param:expr),+) => {{
            $(
                if rest.starts_with($wire) {
                    return Some(($param, $wire.len() - 1));
                }
            )+
            None
        }};
    }
    match rest.first()? {
        b's' => first_of!(
            b"secretId=" => SecretId,
            b"sourceContext=" => SourceContext,
            b"sessionContext=" => SessionContext,
            b"storageRegion=" => StorageRegion
        ),
        b'c' => first_of!(b"currentTimeStamp=" => CurrentTimeStamp, b"classId=" => ClassId),
        b'e' => first_of!(b"expireTime=" => ExpireTime),
        b'r' => first_of!(b"random=" => Random),
        b'p' => first_of!(b"procedure=" => Procedure),
        b't' => first_of!(b"taskPriority=" => TaskPriority, b"taskNotifyMode=" => TaskNotifyMode),
        b'o' => first_of!(b"oneTimeValid=" => OneTimeValid),
        b'v' => first_of!(b"vodSubAppId=" => VodSubAppId),
        _ => None,
    }
}

/// The decoded pairs of `original`, in order, repeats kept (the caller decides about them).
///
/// An iterator rather than a `Vec`: the verifier consumes each pair as it is found, so no pair
/// is moved into and out of a vector. After the first error it yields nothing more.
pub(crate) fn pairs(original: &str) -> Pairs<'_> {
    Pairs {
        original,
        start: Some(0),
    }
}

pub(crate) struct Pairs<'a> {
    original: &'a str,
    /// Where the next pair starts; `None` once the end or an error was reached.
    start: Option<usize>,
}

impl<'a> Pairs<'a> {
    /// Scans a name that `known_name` did not recognise: up to the first `=`, noting its first
    /// escape; an `&` first means the pair has none. Returns the `=`'s position and the escape.
    #[inline]
    fn scan_name(&self, start: usize) -> Result<(usize, Option<usize>), QueryError> {
        let bytes = self.original.as_bytes();
        let mut name_escape = None;
        let mut name_end = bytes.len();
        let mut i = start;
        while i < bytes.len() {
            let b = bytes[i];
            if NAME_STOP[usize::from(b)] {
                match b {
                    b'=' => {
                        if i == start {
                            return Err(QueryError::EmptyName);
                        }
                        return Ok((i, name_escape));
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
        Err(if start == name_end {
            QueryError::EmptyPair
        } else {
            QueryError::MissingEquals
        })
    }

    /// Finds the end of the value starting at `from` (the next `&`, or the end) and its first
    /// escape. Values of documented integers are a few bytes long, where a byte loop beats
    /// setting up `memchr3`; longer values (text) are searched with it past their first 16 bytes.
    #[inline]
    fn scan_value(&self, from: usize) -> (Option<usize>, usize) {
        const SHORT: usize = 16;
        let bytes = self.original.as_bytes();
        let short_end = bytes.len().min(from + SHORT);
        let stop = match bytes[from..short_end]
            .iter()
            .position(|&b| VALUE_STOP[usize::from(b)])
        {
            Some(n) => Some(from + n),
            None if short_end == bytes.len() => None,
            None => memchr::memchr3(b'&', b'%', b'+', &bytes[short_end..]).map(|n| short_end + n),
        };
        match stop {
            None => (None, bytes.len()),
            Some(at) if bytes[at] == b'&' => (None, at),
            Some(first) => {
                let end = memchr::memchr(b'&', &bytes[first..]).map_or(bytes.len(), |m| first + m);
                (Some(first), end)
            }
        }
    }
}

/// `original[from..to]`, decoded if it has an escape (the first at `escape`). Always inlined,
/// so that its `Result<Cow, _>` can stay in registers rather than go through memory (moving the
/// parser's results through memory was most of its cost before it was fused).
#[inline(always)]
fn component(
    original: &str,
    from: usize,
    to: usize,
    escape: Option<usize>,
) -> Result<Cow<'_, str>, QueryError> {
    // All split points are ASCII bytes, so every slice is on a char boundary.
    match escape {
        None => Ok(Cow::Borrowed(&original[from..to])),
        Some(first) => decode_from(&original[from..to], first - from).map(Cow::Owned),
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Pair<'a>, QueryError>;

    /// Components without an escape are borrowed, so a typical signature allocates only for
    /// encoded text.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let start = self.start.take()?;
        let original = self.original;
        let bytes = original.as_bytes();
        let (known, equals, name_escape) = match known_name(&bytes[start..]) {
            Some((param, len)) => (Some(param), start + len, None),
            None => match self.scan_name(start) {
                Ok((equals, escape)) => (None, equals, escape),
                Err(e) => return Some(Err(e)),
            },
        };
        let value_start = equals + 1;
        let (value_escape, end) = self.scan_value(value_start);
        let name = match component(original, start, equals, name_escape) {
            Ok(name) => name,
            Err(e) => return Some(Err(e)),
        };
        let value = match component(original, value_start, end, value_escape) {
            Ok(value) => value,
            Err(e) => return Some(Err(e)),
        };
        let param = known.or_else(|| ParamName::from_wire_name(&name));
        if end < bytes.len() {
            self.start = Some(end + 1);
        }
        Some(Ok(Pair { param, name, value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pairs as the `Vec` parser that `pairs` replaced returned them.
    type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

    fn parse(original: &str) -> Result<Pairs<'_>, QueryError> {
        pairs(original)
            .map(|pair| {
                let Pair { param, name, value } = pair?;
                assert_eq!(param, ParamName::from_wire_name(&name));
                Ok((name, value))
            })
            .collect()
    }

    #[test]
    fn plus_and_percent_20_are_both_spaces() {
        let pairs = parse("a=x+y&b=x%20y").unwrap();
        assert_eq!(pairs[0].1, "x y");
        assert_eq!(pairs[1].1, "x y");
    }

    #[test]
    fn empty_values_are_kept() {
        let pairs = parse("procedure=&sourceContext=").unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].1, "");
    }

    #[test]
    fn broken_forms_are_refused() {
        assert_eq!(parse("a=1&&b=2"), Err(QueryError::EmptyPair));
        assert_eq!(parse("a"), Err(QueryError::MissingEquals));
        assert_eq!(parse("=1"), Err(QueryError::EmptyName));
        assert_eq!(parse("a=%4"), Err(QueryError::BadEscape));
        assert_eq!(parse("a=%zz"), Err(QueryError::BadEscape));
        assert_eq!(parse("a=%FF"), Err(QueryError::NotUtf8));
    }

    #[test]
    fn multibyte_escapes_decode_as_utf8() {
        let pairs = parse("s=%E5%90%8D%E5%AD%97").unwrap();
        assert_eq!(pairs[0].1, "名字");
    }

    /// The parser as it was before it was fused into one pass, kept to check the fast one.
    fn reference_parse(original: &str) -> Result<Vec<(String, String)>, QueryError> {
        fn hex(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            }
        }
        fn decode(raw: &str) -> Result<String, QueryError> {
            let bytes = raw.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    b'%' => {
                        let hi = bytes.get(i + 1).copied().and_then(hex);
                        let lo = bytes.get(i + 2).copied().and_then(hex);
                        match (hi, lo) {
                            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                            _ => return Err(QueryError::BadEscape),
                        }
                        i += 3;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
        }
        let mut pairs = Vec::new();
        for pair in original.split('&') {
            if pair.is_empty() {
                return Err(QueryError::EmptyPair);
            }
            let (name, value) = pair.split_once('=').ok_or(QueryError::MissingEquals)?;
            if name.is_empty() {
                return Err(QueryError::EmptyName);
            }
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(pairs)
    }

    fn owned(pairs: Pairs<'_>) -> Vec<(String, String)> {
        pairs
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn fast_parser_matches_the_reference(
            original in "([a-zA-Z0-9%+=&~._-]|%[0-9a-fA-F]{2}|%E5%90%8D|名|%F0%9F%8E%AC){0,40}"
        ) {
            proptest::prop_assert_eq!(parse(&original).map(owned), reference_parse(&original));
        }

        #[test]
        fn fast_parser_matches_the_reference_on_any_text(original in proptest::prelude::any::<String>()) {
            proptest::prop_assert_eq!(parse(&original).map(owned), reference_parse(&original));
        }
    }
}
