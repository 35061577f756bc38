//! Minting a signature: `base64(HMAC-SHA1(SecretKey, original) ‖ original)`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use sha1::{Digest, Sha1};

use super::encode;
use super::key_ring::SigningKey;
use super::params::{Random, SecretId, SignRequest};

const MAC_LEN: usize = 20;

/// A signature: a bearer credential for one upload, so its `Debug` shows only a fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(String);

impl Signature {
    /// Wraps a signature string received from elsewhere (nothing is checked: see `KeyRing::verify`).
    pub fn from_string(value: String) -> Self {
        Signature(value)
    }

    /// The full signature, for handing to the uploader. Do not log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// A short, stable identifier that is safe to log: the first 8 bytes of SHA-1 over the
    /// signature, as hex. It cannot be turned back into the signature.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.0)
    }
}

/// Fingerprint of any signature string (see [`Signature::fingerprint`]).
pub fn fingerprint(signature: &str) -> Fingerprint {
    let digest = Sha1::digest(signature.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    Fingerprint(bytes)
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(fingerprint={})", self.fingerprint())
    }
}

/// A loggable stand-in for a signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// The 16 lowercase hex digits; the same text as `to_string()`, without the formatter.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write rather than eight formatted ones: this is on every issuance's path.
        let mut digits = [0u8; 16];
        hex::encode_to_slice(self.0, &mut digits).expect("16 digits for 8 bytes");
        f.write_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A freshly minted signature and the values it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSignature {
    pub signature: Signature,
    pub secret_id: SecretId,
    /// `currentTimeStamp`, Unix seconds.
    pub current_time_stamp: i64,
    /// `expireTime`, Unix seconds.
    pub expire_time: i64,
    pub random: Random,
}

/// Why signing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the clock reads {0}, before the Unix epoch or too far in the future to sign")]
    BadClock(i64),
}

impl SigningKey {
    /// Signs `request` as issued at `now` (Unix seconds) with nonce `random`.
    ///
    /// `now` and `random` come from the caller so the core stays deterministic and testable;
    /// the service uses the system clock and `UniqueRandom`.
    pub fn sign(
        &self,
        request: &SignRequest,
        now: i64,
        random: Random,
    ) -> Result<IssuedSignature, SignError> {
        let expire_time = i64::from(request.validity().as_secs());
        let expire_time = match now.checked_add(expire_time) {
            Some(t) if now >= 0 => t,
            _ => return Err(SignError::BadClock(now)),
        };

        // Layout: [20-byte MAC][original]. The MAC slot is filled after `original` is written,
        // so the bytes MACed are exactly the bytes embedded, and base64 runs over one buffer.
        let params = request.params();
        let mut raw =
            Vec::with_capacity(MAC_LEN + encode::estimated_len(self.encoded_secret_id(), params));
        raw.resize(MAC_LEN, 0);
        encode::push_required(
            &mut raw,
            self.encoded_secret_id(),
            now,
            expire_time,
            random.0,
        );
        encode::push_optional(&mut raw, params);

        let mut mac = self.mac();
        mac.update(&raw[MAC_LEN..]);
        raw[..MAC_LEN].copy_from_slice(&mac.finalize().into_bytes());

        Ok(IssuedSignature {
            signature: Signature(STANDARD.encode(&raw)),
            secret_id: self.secret_id().clone(),
            current_time_stamp: now,
            expire_time,
            random,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_is_16_hex_digits_both_ways() {
        for signature in ["", "a", "c2lnbmF0dXJl", "名字"] {
            let print = fingerprint(signature);
            let text = print.to_string();
            assert_eq!(text, print.to_hex());
            assert_eq!(text.len(), 16);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            // The first 8 bytes of SHA-1 of the text.
            assert_eq!(text, hex::encode(&Sha1::digest(signature.as_bytes())[..8]));
        }
    }
}
