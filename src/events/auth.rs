//! The `SignKey` callback authentication: `Sign = lowercase hex MD5(SignKey ‖ decimal T)`,
//! where `T` is the Unix time at which the notification's signature expires.

use std::fmt;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A `T` that passed this long ago is still accepted: the clocks of VOD and of this host differ.
pub(super) const T_SKEW_SECONDS: i64 = 60;
/// VOD sets `T` ten minutes ahead by default; a `T` further ahead than this is refused, so a
/// leaked pair cannot stay valid for long.
pub(super) const MAX_T_AHEAD_SECONDS: i64 = 15 * 60;

const MAX_SIGN_KEY_CHARS: usize = 32;

/// `ModifyEventConfig`'s `SignKey`: 1 to 32 ASCII letters and digits.
///
/// `Debug` prints a placeholder; there is no `Display`; the bytes are zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SignKey(String);

impl SignKey {
    /// Checks and wraps a key. Trailing line breaks (from files and `echo`) are removed: they
    /// are never part of a key and would make every check fail.
    pub fn new(mut value: String) -> Result<Self, SignKeyError> {
        while value.ends_with(['\n', '\r']) {
            value.pop();
        }
        let error = if value.is_empty() {
            Some(SignKeyError::Empty)
        } else if value.len() > MAX_SIGN_KEY_CHARS {
            Some(SignKeyError::TooLong)
        } else if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Some(SignKeyError::NotAlphanumeric)
        } else {
            None
        };
        match error {
            Some(error) => {
                value.zeroize();
                Err(error)
            }
            None => Ok(SignKey(value)),
        }
    }

    /// The `Sign` VOD computes for `t`: what a test server or a replayed fixture needs.
    pub fn sign(&self, t: i64) -> String {
        let mut md5 = Md5::new();
        md5.update(self.0.as_bytes());
        md5.update(t.to_string().as_bytes());
        hex::encode(md5.finalize())
    }
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignKey(<redacted>)")
    }
}

/// Why a `SignKey` was refused. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignKeyError {
    #[error("the SignKey is empty")]
    Empty,
    #[error("the SignKey is longer than {MAX_SIGN_KEY_CHARS} characters")]
    TooLong,
    #[error("the SignKey may contain only ASCII letters and digits")]
    NotAlphanumeric,
}

/// Why a callback was not authenticated (HTTP 401). Never contains the key or the `Sign`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackAuthError {
    #[error("the callback carries no Sign/T pair (body fields, query parameters or headers)")]
    Missing,
    #[error("the callback's T is not a decimal Unix time")]
    MalformedT,
    #[error("the callback's Sign does not match MD5(SignKey + T)")]
    BadSign,
    #[error("the callback's signature expired at T={t}, {ago} s ago")]
    Expired { t: i64, ago: i64 },
    #[error(
        "the callback's T={t} is {ahead} s in the future, more than the {MAX_T_AHEAD_SECONDS} s allowed"
    )]
    TooFarAhead { t: i64, ahead: i64 },
}

/// Checks a `Sign`/`T` pair at Unix time `now`. The `Sign` is compared case-insensitively and
/// in constant time; the time window is checked only once the `Sign` matches, so a forger
/// learns nothing about the window.
pub fn verify_sign(key: &SignKey, sign: &str, t: i64, now: i64) -> Result<(), CallbackAuthError> {
    let expected = key.sign(t);
    let given = sign.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(CallbackAuthError::BadSign);
    }
    if t < now.saturating_sub(T_SKEW_SECONDS) {
        return Err(CallbackAuthError::Expired {
            t,
            ago: now.saturating_sub(t),
        });
    }
    if t > now.saturating_add(MAX_T_AHEAD_SECONDS) {
        return Err(CallbackAuthError::TooFarAhead {
            t,
            ahead: t.saturating_sub(now),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: &str) -> SignKey {
        SignKey::new(value.to_owned()).unwrap()
    }

    #[test]
    fn the_published_md5_key_then_t_vectors_match() {
        // Tencent Live's published vector of the same construction, and the doc's VOD one.
        assert_eq!(
            key("5d41402abc4b2a76b9719d911017c592").sign(1_626_839_220),
            "5ee8ca6c28cbe415b40352969cdf8249"
        );
        assert_eq!(
            key("MySignKey1").sign(1_767_225_600),
            "471a2346e4d4a4ac993244755c50a500"
        );
    }

    #[test]
    fn a_valid_pair_passes_in_either_case() {
        let t = 1_767_225_600;
        let now = t - 600;
        assert_eq!(
            verify_sign(
                &key("MySignKey1"),
                "471a2346e4d4a4ac993244755c50a500",
                t,
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify_sign(
                &key("MySignKey1"),
                "471A2346E4D4A4AC993244755C50A500",
                t,
                now
            ),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_key_or_sign_is_refused() {
        let t = 1_767_225_600;
        assert_eq!(
            verify_sign(&key("MySignKey2"), "471a2346e4d4a4ac993244755c50a500", t, t),
            Err(CallbackAuthError::BadSign)
        );
        assert_eq!(
            verify_sign(&key("MySignKey1"), "471a2346e4d4a4ac993244755c50a501", t, t),
            Err(CallbackAuthError::BadSign)
        );
        assert_eq!(
            verify_sign(&key("MySignKey1"), "", t, t),
            Err(CallbackAuthError::BadSign)
        );
    }

    #[test]
    fn t_first_then_key_is_not_the_algorithm() {
        // MPS signs Timestamp + key; VOD signs key + T. A receiver must not accept the former.
        let mut md5 = Md5::new();
        md5.update(b"1767225600MySignKey1");
        let reversed = hex::encode(md5.finalize());
        assert_eq!(
            verify_sign(&key("MySignKey1"), &reversed, 1_767_225_600, 1_767_225_600),
            Err(CallbackAuthError::BadSign)
        );
    }

    #[test]
    fn the_time_window_is_60_s_behind_and_15_min_ahead() {
        let k = key("MySignKey1");
        let now = 1_800_000_000;
        for (t, expected) in [
            (now - 60, Ok(())),
            (
                now - 61,
                Err(CallbackAuthError::Expired {
                    t: now - 61,
                    ago: 61,
                }),
            ),
            (now + 900, Ok(())),
            (
                now + 901,
                Err(CallbackAuthError::TooFarAhead {
                    t: now + 901,
                    ahead: 901,
                }),
            ),
        ] {
            assert_eq!(
                verify_sign(&k, &k.sign(t), t, now),
                expected,
                "T = now {:+}",
                t - now
            );
        }
    }

    #[test]
    fn sign_keys_are_checked_and_never_printed() {
        assert_eq!(SignKey::new(String::new()).err(), Some(SignKeyError::Empty));
        assert_eq!(
            SignKey::new("a".repeat(33)).err(),
            Some(SignKeyError::TooLong)
        );
        assert_eq!(
            SignKey::new("my-key".into()).err(),
            Some(SignKeyError::NotAlphanumeric)
        );
        let k = SignKey::new("MySignKey1\n".into()).unwrap();
        assert_eq!(k.sign(1_767_225_600), "471a2346e4d4a4ac993244755c50a500");
        assert!(!format!("{k:?}").contains("MySignKey1"));
    }
}
