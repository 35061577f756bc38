//! The `random` parameter.
//!
//! VOD refuses a one-time signature (`oneTimeValid=1`) whose plaintext it has seen before, so
//! two signatures minted in the same second for the same parameters must differ in `random`.
//! Independent draws from a CSPRNG collide by the birthday bound (about 0.3% for 5,000
//! signatures in one second), so instead each value is a secret, keyed permutation of a
//! counter ("slot"): distinct slots give distinct values, and the sequence cannot be told from
//! random without the key. `random` is a uniqueness nonce, not a security boundary (the MAC
//! is), so a 4-round Feistel network over 32 bits is sufficient here.
//!
//! Uniqueness across a fleet of replicas needs two things: every replica applies the SAME
//! permutation (so it is keyed from the signing key they share, [`RandomPermutation::from_mac`]),
//! and no two replicas ever use the same slot (slots are leased in blocks from a shared counter,
//! or the space is split by [`InstanceId`]; see `service::random_slots`).

use std::sync::atomic::{AtomicU32, Ordering};

use hmac::Mac;

use super::key_ring::HmacSha1;
use super::params::Random;

/// A keyed permutation of the 32-bit space: slot in, `random` out, never two slots to one value.
#[derive(Clone)]
pub(super) struct RandomPermutation {
    round_keys: [u32; 4],
}

/// What the signing key's MAC is applied to, to key the permutation: any fixed text works, as
/// long as no signature plaintext can equal it (a query string always contains `=`).
const PERMUTATION_LABEL: &[u8] = b"vod-signer random permutation v1";

impl RandomPermutation {
    /// Keyed from the operating system's CSPRNG: unique to this process.
    pub(super) fn from_os_entropy() -> Self {
        RandomPermutation {
            round_keys: rand::random(),
        }
    }

    /// Keyed from a signing key's MAC, so every replica holding that key permutes alike.
    pub(crate) fn from_mac(mut mac: HmacSha1) -> Self {
        mac.update(PERMUTATION_LABEL);
        let digest = mac.finalize().into_bytes();
        let word = |i: usize| {
            u32::from_be_bytes([
                digest[4 * i],
                digest[4 * i + 1],
                digest[4 * i + 2],
                digest[4 * i + 3],
            ])
        };
        RandomPermutation {
            round_keys: [word(0), word(1), word(2), word(3)],
        }
    }

    /// The `random` of `slot`.
    pub(super) fn apply(&self, slot: u32) -> Random {
        Random(permute(slot, &self.round_keys))
    }
}

impl std::fmt::Debug for RandomPermutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomPermutation(<keyed>)")
    }
}

/// Hands out `random` values that never repeat within one process (for 2^32 calls).
pub(crate) struct UniqueRandom {
    counter: AtomicU32,
    permutation: RandomPermutation,
}

impl UniqueRandom {
    /// Keyed and started at a random point from the operating system's CSPRNG.
    pub(crate) fn from_os_entropy() -> Self {
        UniqueRandom {
            counter: AtomicU32::new(rand::random()),
            permutation: RandomPermutation::from_os_entropy(),
        }
    }

    /// A fixed sequence, for reproducible tests.
    #[cfg(test)]
    fn with_seed(start: u32, round_keys: [u32; 4]) -> Self {
        UniqueRandom {
            counter: AtomicU32::new(start),
            permutation: RandomPermutation { round_keys },
        }
    }

    /// The next value. One relaxed atomic add: the order between threads does not matter, only
    /// that no two calls see the same counter.
    pub(crate) fn next(&self) -> Random {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.permutation.apply(n)
    }
}

impl std::fmt::Debug for UniqueRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UniqueRandom(<keyed>)")
    }
}

/// Bits of a slot that carry the [`InstanceId`]; the rest count within the instance.
pub(super) const INSTANCE_ID_BITS: u32 = 10;
/// The largest `instance_id`.
pub(crate) const MAX_INSTANCE_ID: u32 = (1 << INSTANCE_ID_BITS) - 1;
const INSTANCE_COUNTER_MASK: u32 = u32::MAX >> INSTANCE_ID_BITS;

/// This replica's share of the slot space, 0 to [`MAX_INSTANCE_ID`]: replicas with different
/// ids never use the same slot. Each instance counts through 2^22 slots before it wraps, far
/// more than it can issue in the one second within which a repeat would matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceId(u32);

impl InstanceId {
    pub fn new(id: u32) -> Option<Self> {
        (id <= MAX_INSTANCE_ID).then_some(InstanceId(id))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Slots of one [`InstanceId`]: the id in the top bits, a counter below.
#[derive(Debug)]
pub struct InstanceSlots {
    id: InstanceId,
    prefix: u32,
    counter: AtomicU32,
}

impl InstanceSlots {
    /// Starts at a random point of the instance's range (a restart does not replay the slots
    /// of the previous run in the same second).
    pub fn new(id: InstanceId) -> Self {
        InstanceSlots {
            id,
            prefix: id.0 << (32 - INSTANCE_ID_BITS),
            counter: AtomicU32::new(rand::random()),
        }
    }

    pub fn id(&self) -> InstanceId {
        self.id
    }

    pub fn next(&self) -> u32 {
        self.prefix | (self.counter.fetch_add(1, Ordering::Relaxed) & INSTANCE_COUNTER_MASK)
    }
}

fn round(half: u16, key: u32) -> u16 {
    // murmur3's finaliser: any function works for a Feistel network to be a bijection; this one
    // mixes every input bit into the output.
    let mut h = u32::from(half) ^ key;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h as u16
}

fn permute(x: u32, keys: &[u32; 4]) -> u32 {
    let (mut left, mut right) = ((x >> 16) as u16, x as u16);
    for &key in keys {
        (left, right) = (right, left ^ round(right, key));
    }
    (u32::from(left) << 16) | u32::from(right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn consecutive_values_never_repeat() {
        let source = UniqueRandom::with_seed(u32::MAX - 50_000, [1, 2, 3, 4]);
        let values: HashSet<u32> = (0..200_000).map(|_| source.next().0).collect();
        assert_eq!(values.len(), 200_000);
    }

    #[test]
    fn instances_never_share_a_slot() {
        let a = InstanceSlots::new(InstanceId::new(1).unwrap());
        let b = InstanceSlots::new(InstanceId::new(2).unwrap());
        let last = InstanceSlots::new(InstanceId::new(MAX_INSTANCE_ID).unwrap());
        let mut seen = HashSet::new();
        for _ in 0..50_000 {
            for slots in [&a, &b, &last] {
                assert!(seen.insert(slots.next()));
            }
        }
        assert_eq!(InstanceId::new(MAX_INSTANCE_ID + 1), None);
    }

    #[test]
    fn the_same_key_gives_the_same_permutation() {
        use hmac::KeyInit;
        let mac = |key: &[u8]| HmacSha1::new_from_slice(key).unwrap();
        let one = RandomPermutation::from_mac(mac(b"key one"));
        let again = RandomPermutation::from_mac(mac(b"key one"));
        let other = RandomPermutation::from_mac(mac(b"key two"));
        let slots: Vec<u32> = (0..100).collect();
        let values = |p: &RandomPermutation| slots.iter().map(|&s| p.apply(s)).collect::<Vec<_>>();
        assert_eq!(values(&one), values(&again));
        assert_ne!(values(&one), values(&other));
    }

    #[test]
    fn values_do_not_follow_the_counter() {
        let source = UniqueRandom::with_seed(0, [0xdead_beef, 7, 11, 13]);
        let values: Vec<u32> = (0..1000).map(|_| source.next().0).collect();
        let increasing = values.windows(2).filter(|w| w[1] > w[0]).count();
        // A permutation that looks random rises about half of the time.
        assert!((350..650).contains(&increasing), "{increasing}");
    }
}
