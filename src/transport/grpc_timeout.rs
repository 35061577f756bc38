//! The `grpc-timeout` request header: how long the client will wait for this call.
//!
//! Format (gRPC over HTTP/2): at most 8 ASCII digits and a unit, `H` hours, `M` minutes, `S`
//! seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds.

use std::time::Duration;

use tonic::codegen::http::HeaderMap;

/// The client's timeout, or `None` when the header is absent or malformed (a malformed value
/// is ignored rather than failing the call: the server's own cap still applies).
pub(super) fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    parse(headers.get("grpc-timeout")?.as_bytes())
}

fn parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        assert_eq!(parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse(b"99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse(b"0n"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_ignored() {
        for value in [
            &b""[..],
            b"S",
            b"5",
            b"5s",
            b"123456789S",
            b"-1S",
            b"1.5S",
            b" 5S",
        ] {
            assert_eq!(parse(value), None, "{:?}", String::from_utf8_lossy(value));
        }
    }
}
