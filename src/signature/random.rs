//! The `random` parameter.
//!
//! VOD refuses a one-time signature (`oneTimeValid=1`) whose plaintext it has seen before, so
//! two signatures minted in the same second for the same parameters must differ in `random`.
//! Independent draws from a CSPRNG collide by the birthday bound (about 0.3% for 5,000
//! signatures in one second), so instead each value is a secret, CSPRNG-keyed permutation of a
//! process-wide counter: no value repeats within 2^32 issuances of one process, and the sequence
//! cannot be told from random without the key. `random` is a uniqueness nonce, not a security
//! boundary (the MAC is), so a 4-round Feistel network over 32 bits is sufficient here.

use std::sync::atomic::{AtomicU32, Ordering};

use super::params::Random;

/// Hands out `random` values that never repeat within one process (for 2^32 calls).
pub struct UniqueRandom {
    counter: AtomicU32,
    round_keys: [u32; 4],
}

impl UniqueRandom {
    /// Keyed and started at a random point from the operating system's CSPRNG.
    pub fn from_os_entropy() -> Self {
        let seed: [u32; 5] = rand::random();
        UniqueRandom {
            counter: AtomicU32::new(seed[0]),
            round_keys: [seed[1], seed[2], seed[3], seed[4]],
        }
    }

    /// A fixed sequence, for reproducible tests and benchmarks.
    pub fn with_seed(start: u32, round_keys: [u32; 4]) -> Self {
        UniqueRandom {
            counter: AtomicU32::new(start),
            round_keys,
        }
    }

    /// The next value. One relaxed atomic add: the order between threads does not matter, only
    /// that no two calls see the same counter.
    pub fn next(&self) -> Random {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Random(permute(n, &self.round_keys))
    }
}

impl std::fmt::Debug for UniqueRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UniqueRandom(<keyed>)")
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
    fn values_do_not_follow_the_counter() {
        let source = UniqueRandom::with_seed(0, [0xdead_beef, 7, 11, 13]);
        let values: Vec<u32> = (0..1000).map(|_| source.next().0).collect();
        let increasing = values.windows(2).filter(|w| w[1] > w[0]).count();
        // A permutation that looks random rises about half of the time.
        assert!((350..650).contains(&increasing), "{increasing}");
    }
}
