//! Failed orders remembered for idempotent retries, in two generations.
//!
//! A retry of a failed order must get its first answer, and memory must not
//! grow with every failure. New failures go into the newer table; when it
//! holds [`REJECTIONS_GENERATION_LEN`], the older one is forgotten whole and
//! the newer becomes the older. So the latest `REJECTIONS_GENERATION_LEN`
//! failures are always remembered, and at most twice that.
//!
//! This replaced one table trimmed first in, first out. Removing one entry
//! per insert left tombstones, which made the table rehash in place now and
//! then, and the queue of keys cost 24 bytes per entry. Here nothing is
//! removed one by one, and a forgotten generation's memory, cleared, takes
//! the next generation: past the first rotation nothing is allocated. Each
//! table is sized for a whole generation when its first entry arrives, so
//! neither ever rehashes.

use crate::error::Reject;
use crate::hash::IdMap;
use crate::limits::REJECTIONS_GENERATION_LEN;
use crate::types::OrderKey;

/// A remembered failure: the request's fingerprint and the answer it got.
pub(crate) type Remembered = (u64, Reject);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejections {
    newer: IdMap<OrderKey, Remembered>,
    /// Empty until the first rotation, then exactly one full generation.
    older: IdMap<OrderKey, Remembered>,
    /// `REJECTIONS_GENERATION_LEN`, smaller only in tests.
    generation_len: usize,
}

impl Default for Rejections {
    fn default() -> Self {
        Rejections::with_generation_len(REJECTIONS_GENERATION_LEN)
    }
}

impl Rejections {
    fn with_generation_len(generation_len: usize) -> Self {
        Rejections {
            newer: IdMap::default(),
            older: IdMap::default(),
            generation_len,
        }
    }

    pub fn get(&self, key: &OrderKey) -> Option<&Remembered> {
        match self.newer.get(key) {
            // Every new order asks, and most were never refused: skip
            // hashing and probing an older generation that is not there.
            None if !self.older.is_empty() => self.older.get(key),
            found => found,
        }
    }

    pub fn insert(&mut self, key: OrderKey, remembered: Remembered) {
        if self.newer.len() >= self.generation_len {
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        if self.newer.is_empty() && self.newer.capacity() < self.generation_len {
            // A whole generation's room while the table is empty, when
            // sizing moves nothing: a table that doubled as it filled
            // rehashed up to 458,752 entries at once and stopped its shard
            // for tens of milliseconds (docs/experiments/growth.md). The
            // memory is faulted in as entries land in it.
            self.newer.reserve(self.generation_len);
        }
        self.newer.insert(key, remembered);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    /// Every entry, the older generation first (for snapshots). Within a
    /// generation the order does not matter.
    pub fn oldest_first(&self) -> impl Iterator<Item = (&OrderKey, &Remembered)> + Clone {
        self.older.iter().chain(self.newer.iter())
    }

    /// Rebuild from `oldest_first`: the older generation is empty or holds
    /// exactly one full generation, so the count alone says where it ends.
    pub fn from_oldest_first(
        entries: impl ExactSizeIterator<Item = (OrderKey, Remembered)>,
    ) -> Self {
        Self::rebuild(Rejections::default(), entries)
    }

    fn rebuild(
        mut r: Rejections,
        entries: impl ExactSizeIterator<Item = (OrderKey, Remembered)>,
    ) -> Self {
        let total = entries.len();
        let older_len = if total > r.generation_len {
            r.generation_len
        } else {
            0
        };
        let mut entries = entries;
        r.older.extend(entries.by_ref().take(older_len));
        r.newer.extend(entries);
        r
    }

    /// Both tables, the one filled first first, for sizing them up front.
    /// The first rotation hands the newer table the older one's memory, so
    /// a second generation grows nothing only if that memory was sized too.
    pub fn tables_mut(&mut self) -> [&mut IdMap<OrderKey, Remembered>; 2] {
        [&mut self.newer, &mut self.older]
    }

    pub fn generation_len(&self) -> usize {
        self.generation_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small generations, so the tests rotate often and run fast.
    const N: usize = 1_000;

    fn key(i: u64) -> OrderKey {
        OrderKey::new(i, u128::from(i) + 7)
    }

    fn answer(i: u64) -> Remembered {
        (i, Reject::UnknownSku { sku: i })
    }

    #[test]
    fn the_latest_generation_is_always_remembered_and_at_most_two() {
        let n = N as u64;
        let mut r = Rejections::with_generation_len(N);
        for i in 0..(2 * n + 5) {
            r.insert(key(i), answer(i));
            // Everything from the last full generation on is still there.
            let from = (i + 1).saturating_sub(n);
            for probe in [from, i, (from + i) / 2] {
                assert_eq!(r.get(&key(probe)), Some(&answer(probe)), "{probe} at {i}");
            }
            assert!(r.len() as u64 <= 2 * n);
        }
        // Past two rotations, the first generation is gone.
        assert_eq!(r.get(&key(0)), None);
        assert_eq!(r.get(&key(n - 1)), None);
        assert_eq!(r.len() as u64, n + 5);
    }

    #[test]
    fn no_generation_grows_once_it_has_an_entry() {
        let mut r = Rejections::with_generation_len(N);
        let mut sized = 0;
        for i in 0..(3 * N as u64) {
            r.insert(key(i), answer(i));
            if r.newer.len() == 1 {
                // A generation's first entry sizes it for the whole of it...
                sized = r.newer.capacity();
                assert!(sized >= N, "{sized} at {i}");
            } else {
                // ...so it never rehashes while the shard serves.
                assert_eq!(r.newer.capacity(), sized, "at {i}");
            }
        }
    }

    #[test]
    fn a_snapshot_order_rebuilds_the_same_generations() {
        let n = N as u64;
        for total in [0, 3, n, n + 1, 2 * n - 1, 2 * n + 3] {
            let mut r = Rejections::with_generation_len(N);
            for i in 0..total {
                r.insert(key(i), answer(i));
            }
            let entries: Vec<_> = r.oldest_first().map(|(k, v)| (*k, *v)).collect();
            let back = Rejections::rebuild(Rejections::with_generation_len(N), entries.into_iter());
            assert_eq!(back, r, "{total} entries");
            // And the next insert rotates both the same way.
            let (mut a, mut b) = (r, back);
            for i in total..total + n {
                a.insert(key(i), answer(i));
                b.insert(key(i), answer(i));
            }
            assert_eq!(a, b, "{total} entries, one generation later");
        }
    }
}
