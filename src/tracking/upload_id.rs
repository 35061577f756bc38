//! The id of one tracked upload: the signature's `sourceContext` (and `sessionContext`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest id accepted from a caller or an event.
pub(super) const MAX_UPLOAD_ID_CHARS: usize = 64;
const PREFIX: &str = "up_";

/// An opaque, URL-safe upload id. Generated ids are `up_` and 128 CSPRNG bits in base64url
/// (25 characters), so they cannot be guessed; any `[A-Za-z0-9_-]{1,64}` parses, so an id
/// that an older version issued stays valid.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UploadId(String);

impl UploadId {
    pub fn generate() -> Self {
        let bits: [u8; 16] = rand::random();
        UploadId(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bits)))
    }

    pub fn parse(value: &str) -> Result<Self, UploadIdError> {
        if value.is_empty() {
            return Err(UploadIdError::Empty);
        }
        if value.len() > MAX_UPLOAD_ID_CHARS {
            return Err(UploadIdError::TooLong);
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(UploadIdError::NotUrlSafe);
        }
        Ok(UploadId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadIdError {
    #[error("the upload id is empty")]
    Empty,
    #[error("the upload id is longer than {MAX_UPLOAD_ID_CHARS} characters")]
    TooLong,
    #[error("the upload id may contain only letters, digits, '_' and '-'")]
    NotUrlSafe,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_url_safe_distinct_and_parse_back() {
        let a = UploadId::generate();
        let b = UploadId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 25);
        assert_eq!(UploadId::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(UploadId::parse(""), Err(UploadIdError::Empty));
        assert_eq!(
            UploadId::parse(&"a".repeat(65)),
            Err(UploadIdError::TooLong)
        );
        assert_eq!(UploadId::parse("a/b"), Err(UploadIdError::NotUrlSafe));
        assert_eq!(
            UploadId::parse("{\"UserId\":1}"),
            Err(UploadIdError::NotUrlSafe)
        );
    }
}
