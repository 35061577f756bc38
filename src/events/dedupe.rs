//! The identity of an event, independent of how it was delivered.
//!
//! VOD has no event ID. The same event reaches us as a PUSH body (no `EventHandle`, maybe
//! `Sign`/`T`, `null`s omitted) and as a PULL `EventSet` item (an `EventHandle`, explicit
//! `null`s), and again on every retry with a fresh `Sign`/`T`. So the key is a hash of the body
//! without those delivery fields, with `null` fields dropped and object keys sorted.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::EventParseError;

/// Top-level fields that differ between deliveries of one event.
const DELIVERY_FIELDS: [&str; 5] = ["EventHandle", "Sign", "T", "sign", "t"];

/// The hex SHA-256 of the canonical body; equal for every delivery of one event.
pub fn dedupe_key(raw: &[u8]) -> Result<String, EventParseError> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| EventParseError::NotJson(e.to_string()))?;
    let Value::Object(mut body) = value else {
        return Err(EventParseError::NotObject);
    };
    for field in DELIVERY_FIELDS {
        body.remove(field);
    }
    let canonical = canonical(Value::Object(body));
    let bytes = serde_json::to_vec(&canonical).expect("a JSON value always serialises");
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().filter(|(_, v)| !v.is_null()).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_fields_nulls_and_key_order_do_not_change_the_key() {
        let push = br#"{"EventType":"X","XEvent":{"A":1,"B":"b"},"T":5,"Sign":"s"}"#;
        let pull = br#"{"EventHandle":"h","EventType":"X","YEvent":null,"XEvent":{"B":"b","A":1,"C":null}}"#;
        assert_eq!(dedupe_key(push).unwrap(), dedupe_key(pull).unwrap());
    }

    #[test]
    fn content_changes_the_key() {
        let a = br#"{"EventType":"X","XEvent":{"Status":"PROCESSING"}}"#;
        let b = br#"{"EventType":"X","XEvent":{"Status":"FINISH"}}"#;
        assert_ne!(dedupe_key(a).unwrap(), dedupe_key(b).unwrap());
        assert_eq!(dedupe_key(b"[1]"), Err(EventParseError::NotObject));
    }
}
