//! Parsing `original` the way the official samples' parsers do: `&`-separated `name=value`
//! pairs, percent-escapes decoded as UTF-8, and `+` read as a space (PHP, Java and Python
//! samples encode a space as `+`, Node and C# as `%20`).

use std::borrow::Cow;

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
static HEX_VALUE: [u8; 256] = {
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
const NOT_HEX: u8 = 0xff;

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

/// Bytes that end or escape a name: `=`, `&`, `%` and `+`.
static NAME_STOP: [bool; 256] = {
    let mut table = [false; 256];
    table[b'=' as usize] = true;
    table[b'&' as usize] = true;
    table[b'%' as usize] = true;
    table[b'+' as usize] = true;
    table
};

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
        let (value_escape, end) = match memchr::memchr3(b'&', b'%', b'+', &bytes[value_start..]) {
            None => (None, bytes.len()),
            Some(n) if bytes[value_start + n] == b'&' => (None, value_start + n),
            Some(n) => {
                let first = value_start + n;
                let end = memchr::memchr(b'&', &bytes[first..]).map_or(bytes.len(), |m| first + m);
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn owned(pairs: Vec<(Cow<'_, str>, Cow<'_, str>)>) -> Vec<(String, String)> {
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
