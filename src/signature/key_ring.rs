//! Keys: a SecretKey with its `secretId`, and the ring of keys a deployment signs and verifies
//! with. Rotating keys means adding the new one as active while the old one stays for verifying.

use std::fmt;

use hmac::{Hmac, KeyInit};
use sha1::Sha1;

use super::encode;
use super::params::{Random, SecretId};
use super::random::RandomPermutation;
use super::secret::SecretKey;

pub(crate) type HmacSha1 = Hmac<Sha1>;

// The keyed HMAC state is two `Sha1Core`s (inner and outer) inside `HmacCore`; with the
// `zeroize` feature of `sha1` each wipes itself on drop. Fail the build if that stops holding.
fn assert_wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
const _: fn() = assert_wiped_on_drop::<sha1::block_api::Sha1Core>;

/// One API key, ready to sign: the HMAC state is keyed once here, so each signature only
/// clones it (a few dozen bytes) instead of hashing the key again. The keyed state is as
/// sensitive as the key; the `zeroize` feature of `hmac`/`sha1` wipes it on drop.
#[derive(Clone)]
pub struct SigningKey {
    secret_id: SecretId,
    encoded_secret_id: String,
    mac: HmacSha1,
    /// Keyed from this key, so every replica holding it turns a slot into the same `random`.
    permutation: RandomPermutation,
}

impl SigningKey {
    pub fn new(secret_id: SecretId, secret_key: &SecretKey) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = HmacSha1::new_from_slice(secret_key.expose())
            .expect("HMAC-SHA1 accepts keys of any length");
        let mut encoded = Vec::with_capacity(secret_id.as_str().len());
        encode::push_encoded(&mut encoded, secret_id.as_str());
        let encoded_secret_id =
            String::from_utf8(encoded).expect("percent-encoding produces ASCII");
        SigningKey {
            secret_id,
            encoded_secret_id,
            permutation: RandomPermutation::from_mac(mac.clone()),
            mac,
        }
    }

    pub fn secret_id(&self) -> &SecretId {
        &self.secret_id
    }

    pub(crate) fn encoded_secret_id(&self) -> &str {
        &self.encoded_secret_id
    }

    /// The `random` for `slot`: distinct slots give distinct values, and every replica with
    /// this key gives the same one (slots are what replicas must not share).
    pub fn random_for_slot(&self, slot: u32) -> Random {
        self.permutation.apply(slot)
    }

    pub(crate) fn mac(&self) -> HmacSha1 {
        self.mac.clone()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Why a key ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("a key ring needs at least one key")]
    Empty,
    #[error("secretId {0} is listed more than once")]
    DuplicateSecretId(String),
    #[error("exactly one key must be active, found {0}")]
    ActiveCount(usize),
}

/// Several keys, one of which signs; all of them verify.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    active: usize,
}

impl KeyRing {
    /// Builds a ring from `(key, active)` pairs; exactly one must be active.
    pub fn new(keys: Vec<(SigningKey, bool)>) -> Result<Self, KeyRingError> {
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        for (i, (key, _)) in keys.iter().enumerate() {
            if keys[..i].iter().any(|(k, _)| k.secret_id == key.secret_id) {
                return Err(KeyRingError::DuplicateSecretId(key.secret_id.to_string()));
            }
        }
        let active: Vec<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, (_, a))| *a)
            .map(|(i, _)| i)
            .collect();
        if active.len() != 1 {
            return Err(KeyRingError::ActiveCount(active.len()));
        }
        Ok(KeyRing {
            active: active[0],
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// A ring of one key, which signs and verifies.
    pub fn single(key: SigningKey) -> Self {
        KeyRing {
            keys: vec![key],
            active: 0,
        }
    }

    /// The key new signatures are made with.
    pub fn active(&self) -> &SigningKey {
        &self.keys[self.active]
    }

    /// The key for `secret_id`, if this ring has it. Rings hold a handful of keys, so a linear
    /// scan beats hashing the id.
    pub fn get(&self, secret_id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.secret_id.as_str() == secret_id)
    }

    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }
}
