//! ARC's index of remembered keys: which list node holds a key lately
//! evicted, if any.
//!
//! ARC asks it on every miss and changes it on most evictions. A
//! `HashMap<K, Handle>` costs each of those two cache misses in a row (its
//! control bytes, then its slot) and holds a second copy of every key. Here
//! an 8-byte slot holds a tag of the key's hash and the node's index; the
//! key stays in the node, read only when a tag matches. Slots are probed
//! linearly from a place the tag gives, the table is never more than half
//! full, and a removal shifts later slots back, so there are no tombstones.

/// One cache line of slots.
const SLOTS_MIN: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Ghosts {
    /// Power-of-two length (or empty). 0 is an empty slot; else the hash's
    /// high 32 bits above the node's index plus one.
    slots: Vec<u64>,
    len: usize,
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn slot(tag: u32, index: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(index) + 1)
}

fn index_of(slot: u64) -> u32 {
    (slot as u32).wrapping_sub(1)
}

impl Ghosts {
    /// Where a probe for `tag` starts: its top bits, so it can be found
    /// again from the slot alone when a removal shifts slots back.
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.slots.len() as u64) >> 32) as usize
    }

    /// Takes out the node holding a key of hash `hash`, among those whose
    /// index `is_key` accepts (it compares the node's key), and gives its
    /// index: one probe finds and removes it.
    pub(crate) fn take(&mut self, hash: u64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let i = self.position(hash, |s| (s >> 32) as u32 == tag && is_key(index_of(s)))?;
        let index = index_of(self.slots[i]);
        self.remove_at(i);
        Some(index)
    }

    /// Starts fetching the slot where a probe for `hash` begins.
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.home(tag_of(hash))) {
            crate::prefetch::prefetch(slot);
        }
    }

    /// Remembers that node `index` holds a key of hash `hash`.
    pub(crate) fn insert(&mut self, hash: u64, index: u32) {
        debug_assert!(index < u32::MAX, "index plus one fits the slot");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(slot(tag_of(hash), index));
        self.len += 1;
    }

    /// Forgets node `index`, remembered under `hash`; nothing if it is not.
    pub(crate) fn remove(&mut self, hash: u64, index: u32) {
        let want = slot(tag_of(hash), index);
        if let Some(i) = self.position(hash, |s| s == want) {
            self.remove_at(i);
        }
    }

    /// The first slot of `hash`'s probe that `matches`, if any before an
    /// empty slot.
    fn position(&self, hash: u64, matches: impl Fn(u64) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(tag_of(hash));
        loop {
            match self.slots[i] {
                0 => return None,
                s if matches(s) => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Empties slot `i` and shifts back each later slot of its run that a
    /// probe from its home would no longer reach past the hole.
    fn remove_at(&mut self, i: usize) {
        let mask = self.slots.len() - 1;
        self.slots[i] = 0;
        self.len -= 1;
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.slots[j] != 0 {
            let home = self.home((self.slots[j] >> 32) as u32);
            // `j` may move into the hole unless its home lies in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                self.slots[j] = 0;
                hole = j;
            }
            j = (j + 1) & mask;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.len = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// `take` without taking.
    #[cfg(test)]
    fn find(&self, hash: u64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let i = self.position(hash, |s| (s >> 32) as u32 == tag && is_key(index_of(s)))?;
        Some(index_of(self.slots[i]))
    }

    fn place(&mut self, s: u64) {
        let mask = self.slots.len() - 1;
        let mut i = self.home((s >> 32) as u32);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(SLOTS_MIN);
        let old = std::mem::replace(&mut self.slots, vec![0; len]);
        for s in old.into_iter().filter(|&s| s != 0) {
            self.place(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a map from node to hash: inserts, removals by index
        /// and by key (of nodes held and not held) and lookups, with hashes
        /// crowded onto few tags so that probes run long and removals shift.
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec((0u32..64, 0u64..16, any::<bool>()), 0..400)) {
            let mut ghosts = Ghosts::default();
            let mut model = std::collections::BTreeMap::<u32, u64>::new();
            for (index, h, add) in ops {
                let hash = h << 60 | h;
                if add && !model.contains_key(&index) {
                    ghosts.insert(hash, index);
                    model.insert(index, hash);
                } else if let Some(&held) = model.get(&index) {
                    if add {
                        ghosts.remove(held, index);
                    } else {
                        prop_assert_eq!(ghosts.take(held, |n| n == index), Some(index));
                    }
                    model.remove(&index);
                } else {
                    ghosts.remove(hash, index);
                    prop_assert_eq!(ghosts.take(hash, |n| n == index), None);
                }
                prop_assert_eq!(ghosts.len(), model.len());
                for (&i, &hash) in &model {
                    prop_assert_eq!(ghosts.find(hash, |n| n == i), Some(i));
                }
                prop_assert_eq!(ghosts.find(hash, |n| n == 99), None);
            }
        }
    }
}
