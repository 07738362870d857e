//! The two replacement policies, single-threaded and exact: the cache runs
//! them under its lock and feeds them every hit it recorded, in order.
//!
//! Weights generalise the textbook algorithms: every size below is a sum of
//! weights, so with every weight 1 (a cache bounded by entries) they are the
//! textbook algorithms step for step.
//!
//! - LRU: one list; a hit moves its entry to the head, a new entry goes to
//!   the head, and entries leave from the tail while the total is over
//!   capacity.
//! - ARC: Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement
//!   Cache" (FAST 2003), Figure 4, with the target `p` kept as a real number.
//!   `T1` holds entries seen once recently, `T2` entries seen at least twice;
//!   `B1` and `B2` remember the keys (not the values) lately evicted from
//!   each, and a new key found there moves `p`.

use std::hash::{BuildHasher, Hash};

use super::ghosts::Ghosts;
use super::list::{Handle, Lists, Tag};

/// Which replacement policy a cache runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyKind {
    #[default]
    Lru,
    Arc,
}

impl std::str::FromStr for PolicyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lru" => Ok(PolicyKind::Lru),
            "arc" => Ok(PolicyKind::Arc),
            other => Err(format!(
                "unknown cache policy {other:?}: expected lru or arc"
            )),
        }
    }
}

/// The policy state: the lists, the capacity and, for ARC, the target size
/// of `T1` and the index of remembered keys.
#[derive(Debug)]
pub(crate) struct Policy<K> {
    kind: PolicyKind,
    lists: Lists<K>,
    capacity: u64,
    p: f64,
    /// Which nodes of `B1` and `B2` hold which keys.
    ghosts: Ghosts,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Clone> Policy<K> {
    pub(crate) fn new(kind: PolicyKind, capacity: u64) -> Self {
        Policy {
            kind,
            lists: Lists::new(),
            capacity,
            p: 0.0,
            ghosts: Ghosts::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Total weight of the entries in the cache (not of remembered keys).
    pub(crate) fn resident_weight(&self) -> u64 {
        self.lists.ends(Tag::T1).weight + self.lists.ends(Tag::T2).weight
    }

    pub(crate) fn resident_len(&self) -> usize {
        self.lists.ends(Tag::T1).len + self.lists.ends(Tag::T2).len
    }

    /// A hit on a resident entry. A stale handle (its entry evicted or
    /// replaced since the hit was buffered) is ignored.
    pub(crate) fn touch(&mut self, handle: Handle) {
        match (self.kind, self.lists.live(handle)) {
            (PolicyKind::Lru, Some(Tag::T1)) => self.lists.move_to(handle, Tag::T1),
            (PolicyKind::Arc, Some(Tag::T1 | Tag::T2)) => self.lists.move_to(handle, Tag::T2),
            _ => {}
        }
    }

    /// Starts fetching what admitting `key` will read first: for ARC the
    /// slot of the remembered-keys index where its lookup starts and the
    /// tails that eviction and forgetting take from; for the LRU its one
    /// tail. Called before the buffered hits are applied, so that the
    /// misses overlap that work. An insert that then finds its key cached
    /// fetched them for nothing; the insert bench, mostly such inserts,
    /// still gained (BENCHMARKS.md).
    pub(crate) fn prefetch_admit(&self, key: &K) {
        match self.kind {
            PolicyKind::Lru => self.lists.prefetch_tail(Tag::T1),
            PolicyKind::Arc => {
                self.ghosts.prefetch(self.hasher.hash_one(key));
                for tag in [Tag::T1, Tag::T2, Tag::B1, Tag::B2] {
                    self.lists.prefetch_tail(tag);
                }
            }
        }
    }

    /// Applies buffered hits in order, as [`touch`](Self::touch) each. The
    /// nodes they move lie anywhere in the arena: their lines, then their
    /// neighbours' (which the moves unlink), are asked for first, so the
    /// misses overlap instead of coming one move at a time.
    pub(crate) fn touch_all(&mut self, hits: &[Handle]) {
        for &handle in hits {
            self.lists.prefetch_node(handle);
        }
        for &handle in hits {
            self.lists.prefetch_neighbours(handle);
        }
        for &handle in hits {
            self.touch(handle);
        }
    }

    /// Admits a new key of `weight`, which must not exceed the capacity.
    /// Keys evicted to make room are pushed onto `evicted`.
    pub(crate) fn admit(&mut self, key: K, weight: u64, evicted: &mut Vec<K>) -> Handle {
        debug_assert!(weight <= self.capacity);
        match self.kind {
            PolicyKind::Lru => {
                self.make_room(weight, false, evicted);
                self.lists.push(key, weight, Tag::T1)
            }
            PolicyKind::Arc => self.admit_arc(key, weight, evicted),
        }
    }

    /// A resident entry was written again, perhaps with a new weight. A write
    /// refreshes recency but is not a reuse: under ARC the entry goes to the
    /// head of the list it is on and does not climb from T1 to T2. (Two
    /// readers that miss the same key at once both insert it; counting the
    /// second insert as a second use would fill T2 with keys read once.)
    /// `weight` must not exceed the capacity.
    pub(crate) fn rewrite(&mut self, handle: Handle, weight: u64, evicted: &mut Vec<K>) {
        debug_assert!(weight <= self.capacity);
        if let Some(tag @ (Tag::T1 | Tag::T2)) = self.lists.live(handle) {
            self.lists.move_to(handle, tag);
        }
        self.lists.set_weight(handle, weight);
        // The entry sits at the head of its list, so it is the last candidate;
        // it alone fits, so the loop stops before reaching it.
        self.make_room(0, false, evicted);
    }

    /// A resident entry's weight changed without a use: room is made as for
    /// any entry, and the entry itself may be the one to go.
    pub(crate) fn resize(&mut self, handle: Handle, weight: u64, evicted: &mut Vec<K>) {
        debug_assert!(weight <= self.capacity);
        self.lists.set_weight(handle, weight);
        self.make_room(0, false, evicted);
    }

    /// Forgets a resident entry without remembering its key (an explicit
    /// remove or an expiry, not a replacement decision).
    pub(crate) fn remove(&mut self, handle: Handle) {
        if matches!(self.lists.live(handle), Some(Tag::T1 | Tag::T2)) {
            self.lists.remove(handle);
        }
    }

    pub(crate) fn is_resident(&self, handle: Handle) -> bool {
        matches!(self.lists.live(handle), Some(Tag::T1 | Tag::T2))
    }

    pub(crate) fn clear(&mut self) {
        self.lists.clear();
        self.ghosts.clear();
        self.p = 0.0;
    }

    /// Evicts until `incoming` more weight fits.
    fn make_room(&mut self, incoming: u64, in_b2: bool, evicted: &mut Vec<K>) {
        while self.resident_weight() + incoming > self.capacity {
            match self.kind {
                PolicyKind::Lru => {
                    let victim = self
                        .lists
                        .tail(Tag::T1)
                        .expect("over capacity, so not empty");
                    evicted.push(self.lists.remove(victim));
                    self.lists.prefetch_tail(Tag::T1);
                }
                PolicyKind::Arc => self.replace(in_b2, evicted),
            }
        }
    }

    fn admit_arc(&mut self, key: K, weight: u64, evicted: &mut Vec<K>) -> Handle {
        let c = self.capacity;
        let (b1, b2) = (
            self.lists.ends(Tag::B1).weight,
            self.lists.ends(Tag::B2).weight,
        );
        let hash = self.hasher.hash_one(&key);
        let lists = &self.lists;
        if let Some(at) = self.ghosts.take(hash, |at| *lists.key_at(at) == key) {
            let ghost = self.lists.handle_at(at);
            let in_b2 = self.lists.live(ghost) == Some(Tag::B2);
            // Case II (a ghost in B1: recency was undervalued, so grow T1's
            // target) and case III (in B2: shrink it). The step is larger
            // when the other ghost list is the longer one.
            let w = weight as f64;
            if in_b2 {
                let step = if b2 >= b1 { 1.0 } else { b1 as f64 / b2 as f64 };
                self.p = (self.p - step * w).max(0.0);
            } else {
                let step = if b1 >= b2 { 1.0 } else { b2 as f64 / b1 as f64 };
                self.p = (self.p + step * w).min(c as f64);
            }
            self.lists.remove(ghost);
            self.make_room(weight, in_b2, evicted);
            return self.lists.push(key, weight, Tag::T2);
        }
        // Case IV: a key not seen lately.
        let t1 = self.lists.ends(Tag::T1).weight;
        let t2 = self.lists.ends(Tag::T2).weight;
        if t1 + b1 + weight > c {
            // L1 = T1 + B1 is full.
            if t1 < c {
                self.drop_ghosts(Tag::B1, |p| {
                    p.lists.ends(Tag::T1).weight + p.lists.ends(Tag::B1).weight + weight > c
                });
                self.make_room(weight, false, evicted);
            } else {
                // B1 is empty and T1 fills the cache: its oldest entry goes
                // without a ghost.
                while self.resident_weight() + weight > c {
                    let victim = self.lists.tail(Tag::T1).expect("T1 fills the cache");
                    evicted.push(self.lists.remove(victim));
                }
            }
        } else if t1 + b1 + t2 + b2 + weight > c {
            self.drop_ghosts(Tag::B2, |p| p.total_weight() + weight > 2 * c);
            self.make_room(weight, false, evicted);
        }
        self.lists.push(key, weight, Tag::T1)
    }

    /// The paper's REPLACE: evict from T1 into B1 when T1 is over its target
    /// (or at it, for a key that was in B2), else from T2 into B2.
    fn replace(&mut self, in_b2: bool, evicted: &mut Vec<K>) {
        let t1 = self.lists.ends(Tag::T1);
        let t1_weight = t1.weight as f64;
        let from_t1 = t1.len >= 1 && ((in_b2 && t1_weight == self.p) || t1_weight > self.p);
        let (from, to) = if from_t1 || self.lists.ends(Tag::T2).len == 0 {
            (Tag::T1, Tag::B1)
        } else {
            (Tag::T2, Tag::B2)
        };
        let victim = self.lists.tail(from).expect("over capacity, so not empty");
        self.lists.move_to(victim, to);
        let key = self.lists.key(victim).clone();
        self.ghosts
            .insert(self.hasher.hash_one(&key), victim.index());
        evicted.push(key);
    }

    fn drop_ghosts(&mut self, tag: Tag, while_: impl Fn(&Self) -> bool) {
        while while_(self) {
            let Some(ghost) = self.lists.tail(tag) else {
                break;
            };
            let key = self.lists.remove(ghost);
            self.ghosts
                .remove(self.hasher.hash_one(&key), ghost.index());
        }
    }

    fn total_weight(&self) -> u64 {
        [Tag::T1, Tag::T2, Tag::B1, Tag::B2]
            .iter()
            .map(|&t| self.lists.ends(t).weight)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recent() {
        let mut p = Policy::new(PolicyKind::Lru, 2);
        let mut out = Vec::new();
        let a = p.admit('a', 1, &mut out);
        p.admit('b', 1, &mut out);
        p.touch(a);
        p.admit('c', 1, &mut out);
        assert_eq!(out, ['b']);
    }

    #[test]
    fn arc_keeps_twice_seen_keys_through_a_scan() {
        let mut p = Policy::new(PolicyKind::Arc, 2);
        let mut out = Vec::new();
        let a = p.admit(0u32, 1, &mut out);
        p.touch(a); // 0 is in T2 now
        for k in 1..10 {
            p.admit(k, 1, &mut out);
        }
        assert!(!out.contains(&0), "a scan of one-time keys evicted {out:?}");
        assert!(p.is_resident(a));
    }

    #[test]
    fn a_ghost_hit_moves_the_target() {
        let mut p = Policy::new(PolicyKind::Arc, 2);
        let mut out = Vec::new();
        p.admit(1u32, 1, &mut out);
        let two = p.admit(2, 1, &mut out);
        p.touch(two); // T1 = [1], T2 = [2]
        p.admit(3, 1, &mut out); // T1 is over its target 0: 1 goes to B1
        assert_eq!(out, [1]);
        assert_eq!(p.p, 0.0);
        p.admit(1, 1, &mut out); // case II
        assert_eq!(p.p, 1.0);
    }
}
