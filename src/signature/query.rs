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

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one name or value. Borrows when nothing needs decoding (the common case for names
/// and numbers), so verifying a typical signature allocates only for encoded text.
pub(crate) fn decode_component(raw: &str) -> Result<Cow<'_, str>, QueryError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
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
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| QueryError::NotUtf8)
}

/// Splits `original` into decoded pairs, in order, repeats kept (the caller decides about them).
pub(crate) fn parse(original: &str) -> Result<Vec<(Cow<'_, str>, Cow<'_, str>)>, QueryError> {
    let mut pairs = Vec::with_capacity(8);
    for pair in original.split('&') {
        if pair.is_empty() {
            return Err(QueryError::EmptyPair);
        }
        let (name, value) = pair.split_once('=').ok_or(QueryError::MissingEquals)?;
        if name.is_empty() {
            return Err(QueryError::EmptyName);
        }
        pairs.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(pairs)
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
}
