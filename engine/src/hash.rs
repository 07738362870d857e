//! Hashing for ids: the fixed `shard_of` placement, a hash keyed per
//! process for every table whose keys a client chooses, and a fixed hash
//! for what must hash the same in every process.
//!
//! Order ids, account ids, SKU ids and cache keys are chosen by clients. A
//! table probed from a fixed, invertible hash of such a key lets anyone who
//! reads this file pick thousands of keys with one home slot, and every
//! insert then walks all the ones before it: quadratic work on a shard
//! thread. So those tables hash with foldhash keyed by a seed drawn once
//! per process ([`keyed_hash`], [`IdMap`]), as Rust's `RandomState`,
//! foldhash and ahash do. It costs the warmed state-machine bench 11% to
//! 16%; a keyed multiply-shift, as cheap as the fixed hash, was worse,
//! since linear probing on dense keys needs more than pairwise
//! independence (docs/experiments/robustness.md).
//!
//! Nothing on disk depends on it: snapshots hold plain vectors and tables
//! are rebuilt on load. `shard_of` stays fixed (the data directory and
//! clients depend on it), and so does [`IdHasher`], kept for fingerprints
//! that are logged.

use std::hash::{BuildHasher, Hash, Hasher};

/// Names the placement function; a data directory records it so a later build
/// with another function refuses to open it instead of misplacing every id.
pub const SHARD_OF_NAME: &str = "splitmix64-lemire-v1";

/// The shard that owns `id` among `shards`. It must never change for a given
/// data directory: the log and snapshots hold state already placed by it.
#[inline]
pub fn shard_of(id: u64, shards: u16) -> u16 {
    debug_assert!(shards > 0);
    // One definition for the engine and its clients: the protocol's, which
    // PROTOCOL.md documents as shard hash 1.
    mercato_protocol::shard_of(id, shards)
}

/// The hash of a key a client chose, keyed by this process's seed: the
/// same within a process, unknown outside it.
#[inline]
pub fn keyed_hash<T: Hash + ?Sized>(key: &T) -> u64 {
    foldhash::fast::SeedableRandomState::with_seed(0, foldhash::SharedSeed::global_random())
        .hash_one(key)
}

/// A multiply-rotate hasher, fixed across processes: for values that are
/// logged (an order's fingerprint), never for a table a client can fill.
#[derive(Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7C_C1_B7_27_22_0A_95;

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.hash = (self.hash.rotate_left(5) ^ x).wrapping_mul(SEED);
    }
    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes its control byte from the top bits; fold the low
        // bits up so keys differing only there still spread.
        self.hash ^ (self.hash >> 29)
    }
}

/// `HashMap` keyed by ids, hashed with a per-process random seed.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// `HashSet` of ids, hashed with a per-process random seed.
pub type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_spreads_sequential_ids_evenly() {
        for shards in 1..=4u16 {
            let mut counts = vec![0u32; shards as usize];
            for id in 0..40_000u64 {
                counts[shard_of(id, shards) as usize] += 1;
            }
            let even = 40_000 / u32::from(shards);
            for c in counts {
                assert!(
                    c.abs_diff(even) < even / 20,
                    "{shards} shards: {c} vs {even}"
                );
            }
        }
    }

    #[test]
    fn shard_of_is_fixed() {
        // A data directory depends on these exact values; a change must bump SHARD_OF_NAME.
        let got: Vec<u16> = (0..8).map(|id| shard_of(id, 4)).collect();
        assert_eq!(got, [3, 2, 2, 0, 1, 1, 2, 1]);
        assert_eq!(shard_of(u64::MAX, 1), 0);
    }
}
