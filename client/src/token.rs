//! The caller's bearer token and where it comes from.

use std::fmt;
use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The bearer token that identifies this caller to the service.
///
/// It is a credential: `Debug` prints `BearerToken(<redacted>)`, there is no `Display`, and the
/// bytes are overwritten when the value is dropped. The token is checked once, at construction,
/// to be something an HTTP header can carry, so a bad token fails early rather than on every call.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token. It must be non-empty visible ASCII (no spaces or control characters), as
    /// the `authorization: Bearer <token>` header requires.
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        // Wrap first so the input is zeroized even when it is rejected.
        let token = BearerToken(token.into());
        if token.0.is_empty() {
            return Err(TokenError::new("the bearer token is empty"));
        }
        if !token.0.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::new(
                "the bearer token must be visible ASCII without spaces",
            ));
        }
        Ok(token)
    }

    /// The token itself, for code that must hand it on. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The `authorization` metadata value. Marked sensitive so the HTTP/2 layer never adds it
    /// to its header-compression table and `Debug` of the request does not show it.
    pub(crate) fn authorization_value(&self) -> AsciiMetadataValue {
        let header = Zeroizing::new(format!("Bearer {}", self.0));
        // `new` checked the characters, so this cannot fail; an error here would be a bug.
        let mut value = MetadataValue::try_from(header.as_str())
            .expect("BearerToken::new admits only header-safe characters");
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why no bearer token could be had. Its message never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: String,
}

impl TokenError {
    /// A failure described by `message` (which must not contain the token).
    pub fn new(message: impl Into<String>) -> Self {
        TokenError {
            message: message.into(),
        }
    }
}

/// Supplies the bearer token for each call, so tokens can rotate without rebuilding the client.
///
/// It is asked once per attempt (retries included), so it should be cheap: read a value that a
/// background task refreshes rather than fetch one over the network.
///
/// A [`BearerToken`] is itself a provider of a fixed token, and so is any
/// `Fn() -> Result<BearerToken, TokenError>`:
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use vod_signer_client::{BearerToken, TokenError};
///
/// let current = Arc::new(RwLock::new(BearerToken::new("first-token").unwrap()));
/// let for_client = Arc::clone(&current);
/// let provider = move || -> Result<BearerToken, TokenError> {
///     Ok(for_client.read().map_err(|_| TokenError::new("token lock poisoned"))?.clone())
/// };
/// // ... SignerClient::builder().token_provider(provider) ...
/// *current.write().unwrap() = BearerToken::new("rotated-token").unwrap();
/// # let _ = provider;
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// The token to send on the next attempt.
    fn token(&self) -> Result<BearerToken, TokenError>;
}

impl TokenProvider for BearerToken {
    fn token(&self) -> Result<BearerToken, TokenError> {
        Ok(self.clone())
    }
}

impl<F> TokenProvider for F
where
    F: Fn() -> Result<BearerToken, TokenError> + Send + Sync + 'static,
{
    fn token(&self) -> Result<BearerToken, TokenError> {
        self()
    }
}

pub(crate) type SharedTokenProvider = Arc<dyn TokenProvider>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = BearerToken::new("s3cr3t-value").unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(shown, "BearerToken(<redacted>)");
    }

    #[test]
    fn header_value_is_bearer_and_sensitive() {
        let token = BearerToken::new("abc.DEF-123").unwrap();
        let value = token.authorization_value();
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer abc.DEF-123");
        assert!(!format!("{value:?}").contains("abc"));
    }

    #[test]
    fn rejects_tokens_a_header_cannot_carry() {
        assert!(BearerToken::new("").is_err());
        assert!(BearerToken::new("has space").is_err());
        assert!(BearerToken::new("new\nline").is_err());
        assert!(BearerToken::new("ünïcode").is_err());
        let err = BearerToken::new("bad token").unwrap_err();
        assert!(!err.to_string().contains("bad token"));
    }

    #[test]
    fn closures_are_providers() {
        let provider = || BearerToken::new("t1");
        assert_eq!(provider.token().unwrap().expose_secret(), "t1");
    }
}
