//! Where a callback carries its `Sign`/`T` pair. Tencent does not say (see the event doc's
//! open questions), so every plausible place is tried, most likely first, and the place found
//! is reported so operators can see what VOD really does.

use serde_json::{Map, Value};

/// Where the pair was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignLocation {
    /// Top-level body fields `Sign` and `T`.
    Body,
    /// Top-level body fields `sign` and `t` (Tencent Live's spelling).
    BodyLowercase,
    /// Query parameters `Sign`/`T` (or `sign`/`t`).
    Query,
    /// Headers `Sign`/`T`.
    Header,
}

impl SignLocation {
    pub fn as_str(self) -> &'static str {
        match self {
            SignLocation::Body => "body",
            SignLocation::BodyLowercase => "body_lowercase",
            SignLocation::Query => "query",
            SignLocation::Header => "header",
        }
    }
}

/// A `Sign`/`T` pair as the callback carried it. `t` is `None` when present but not an
/// integer, which the caller reports as [`super::CallbackAuthError::MalformedT`].
#[derive(Clone, PartialEq, Eq)]
pub struct SignedPair {
    pub sign: String,
    pub t: Option<i64>,
    pub location: SignLocation,
}

impl std::fmt::Debug for SignedPair {
    // The Sign is a bearer credential until T passes: only its length is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPair")
            .field("sign_len", &self.sign.len())
            .field("t", &self.t)
            .field("location", &self.location)
            .finish()
    }
}

/// Finds the pair: body fields `Sign`/`T`, then `sign`/`t`, then the query string (`query`
/// without the leading `?`), then headers (`header` looks one up by name, case-insensitively
/// as HTTP does). Both halves must come from the same place. A body that is not a JSON object
/// just has no pair in it.
pub fn locate_sign(
    body: &[u8],
    query: Option<&str>,
    header: impl Fn(&str) -> Option<String>,
) -> Option<SignedPair> {
    let in_body = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => in_fields(&fields),
        _ => None,
    };
    outside_body(in_body, query, header)
}

/// The pair in a body's top-level fields (`Sign`/`T`, then `sign`/`t`).
pub(crate) fn in_fields(fields: &Map<String, Value>) -> Option<SignedPair> {
    [
        ("Sign", "T", SignLocation::Body),
        ("sign", "t", SignLocation::BodyLowercase),
    ]
    .into_iter()
    .find_map(
        |(sign, t, location)| match (fields.get(sign), fields.get(t)) {
            (Some(Value::String(s)), Some(t)) => Some(SignedPair {
                sign: s.clone(),
                t: json_int(t),
                location,
            }),
            _ => None,
        },
    )
}

/// [`locate_sign`] for a body whose own pair (if any) was found by [`in_fields`].
pub(crate) fn outside_body(
    in_body: Option<SignedPair>,
    query: Option<&str>,
    header: impl Fn(&str) -> Option<String>,
) -> Option<SignedPair> {
    if in_body.is_some() {
        return in_body;
    }
    if let Some(query) = query {
        let find = |names: [&str; 2]| {
            query.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                names.contains(&name).then(|| value.to_owned())
            })
        };
        if let (Some(sign), Some(t)) = (find(["Sign", "sign"]), find(["T", "t"])) {
            return Some(SignedPair {
                sign,
                t: t.parse().ok(),
                location: SignLocation::Query,
            });
        }
    }
    if let (Some(sign), Some(t)) = (header("Sign"), header("T")) {
        return Some(SignedPair {
            sign,
            t: t.trim().parse().ok(),
            location: SignLocation::Header,
        });
    }
    None
}

/// `T` is an int64 in the SDK; a string of digits is accepted too.
fn json_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn body_fields_come_first_then_lowercase_then_query_then_headers() {
        let headers = |name: &str| match name {
            "Sign" => Some("hh".to_owned()),
            "T" => Some("4".to_owned()),
            _ => None,
        };
        let both = br#"{"EventType":"X","Sign":"bb","T":1,"sign":"ll","t":2}"#;
        let found = locate_sign(both, Some("Sign=qq&T=3"), headers).unwrap();
        assert_eq!(
            (found.sign.as_str(), found.t, found.location),
            ("bb", Some(1), SignLocation::Body)
        );

        let lower = br#"{"EventType":"X","sign":"ll","t":"2"}"#;
        let found = locate_sign(lower, Some("Sign=qq&T=3"), headers).unwrap();
        assert_eq!(
            (found.sign.as_str(), found.t, found.location),
            ("ll", Some(2), SignLocation::BodyLowercase)
        );

        let bare = br#"{"EventType":"X"}"#;
        let found = locate_sign(bare, Some("a=1&T=3&Sign=qq"), headers).unwrap();
        assert_eq!(
            (found.sign.as_str(), found.t, found.location),
            ("qq", Some(3), SignLocation::Query)
        );

        let found = locate_sign(bare, Some("a=1"), headers).unwrap();
        assert_eq!(
            (found.sign.as_str(), found.t, found.location),
            ("hh", Some(4), SignLocation::Header)
        );

        assert_eq!(locate_sign(bare, None, no_headers), None);
        assert_eq!(locate_sign(b"not json", Some("Sign=x"), no_headers), None);
    }

    #[test]
    fn half_a_pair_is_no_pair_and_a_bad_t_is_reported() {
        assert_eq!(locate_sign(br#"{"Sign":"x"}"#, None, no_headers), None);
        let found = locate_sign(br#"{"Sign":"x","T":"soon"}"#, None, no_headers).unwrap();
        assert_eq!(found.t, None);
        assert!(!format!("{found:?}").contains('x'));
    }

    #[test]
    fn the_synthetic_signed_fixture_carries_its_pair_in_the_body() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/vod-events/F10-synthetic-signed-callback.json"
        ))
        .unwrap();
        let found = locate_sign(&body, None, no_headers).unwrap();
        assert_eq!(found.location, SignLocation::Body);
        let key = super::super::SignKey::new("MySignKey1".into()).unwrap();
        let t = found.t.unwrap();
        assert_eq!(
            super::super::verify_sign(&key, &found.sign, t, t - 300),
            Ok(())
        );
    }
}
