//! The caches single-threaded, against naive reference models: a list kept
//! in recency order for LRU, and the ARC paper's Figure 4 written out with
//! double-ended queues. On one thread no hit is ever dropped, so every
//! answer, every eviction and the final contents must agree exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mercato_engine::ManualClock;
use mercato_engine::cache::{Cache, PolicyKind, TooHeavy};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Get(u8),
    Insert(u8, u64),
    Remove(u8),
}

fn ops(keys: u8) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        5 => (0..keys).prop_map(Op::Get),
        4 => (0..keys, 1..4u64).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0..keys).prop_map(Op::Remove),
    ];
    proptest::collection::vec(op, 1..400)
}

/// LRU by weight: front is most recent.
struct LruModel {
    capacity: u64,
    order: VecDeque<(u8, u64)>,
    evictions: u64,
}

impl LruModel {
    fn take(&mut self, key: u8) -> Option<u64> {
        let at = self.order.iter().position(|&(k, _)| k == key)?;
        self.order.remove(at).map(|(_, v)| v)
    }

    fn get(&mut self, key: u8) -> Option<u64> {
        let v = self.take(key)?;
        self.order.push_front((key, v));
        Some(v)
    }

    fn insert(&mut self, key: u8, value: u64) {
        self.take(key);
        self.order.push_front((key, value));
        while self.order.iter().map(|&(_, v)| v).sum::<u64>() > self.capacity {
            let (k, _) = self.order.pop_back().unwrap();
            assert_ne!(k, key, "the newest entry fits alone");
            self.evictions += 1;
        }
    }
}

/// The paper's ARC over unit-weight entries; `p` is a real number.
struct ArcModel {
    c: usize,
    p: f64,
    t1: VecDeque<u8>,
    t2: VecDeque<u8>,
    b1: VecDeque<u8>,
    b2: VecDeque<u8>,
    values: HashMap<u8, u64>,
    evictions: u64,
}

fn pull(list: &mut VecDeque<u8>, key: u8) -> bool {
    match list.iter().position(|&k| k == key) {
        Some(at) => {
            list.remove(at);
            true
        }
        None => false,
    }
}

impl ArcModel {
    fn new(c: usize) -> Self {
        ArcModel {
            c,
            p: 0.0,
            t1: VecDeque::new(),
            t2: VecDeque::new(),
            b1: VecDeque::new(),
            b2: VecDeque::new(),
            values: HashMap::new(),
            evictions: 0,
        }
    }

    fn hit(&mut self, key: u8) -> bool {
        if pull(&mut self.t1, key) || pull(&mut self.t2, key) {
            self.t2.push_front(key);
            return true;
        }
        false
    }

    fn get(&mut self, key: u8) -> Option<u64> {
        if self.hit(key) {
            self.values.get(&key).copied()
        } else {
            None
        }
    }

    fn replace(&mut self, in_b2: bool) {
        // Only when full: after explicit removes a ghost hit needs no room.
        if self.t1.len() + self.t2.len() < self.c {
            return;
        }
        let t1 = self.t1.len() as f64;
        let victim = if !self.t1.is_empty() && ((in_b2 && t1 == self.p) || t1 > self.p)
            || self.t2.is_empty()
        {
            let k = self.t1.pop_back().unwrap();
            self.b1.push_front(k);
            k
        } else {
            let k = self.t2.pop_back().unwrap();
            self.b2.push_front(k);
            k
        };
        self.values.remove(&victim);
        self.evictions += 1;
    }

    fn insert(&mut self, key: u8, value: u64) {
        // Writing a resident key refreshes its place in its own list.
        for list in [&mut self.t1, &mut self.t2] {
            if pull(list, key) {
                list.push_front(key);
                self.values.insert(key, value);
                return;
            }
        }
        let (b1, b2) = (self.b1.len() as f64, self.b2.len() as f64);
        if pull(&mut self.b1, key) {
            self.p = (self.p + if b1 >= b2 { 1.0 } else { b2 / b1 }).min(self.c as f64);
            self.replace(false);
            self.t2.push_front(key);
        } else if pull(&mut self.b2, key) {
            self.p = (self.p - if b2 >= b1 { 1.0 } else { b1 / b2 }).max(0.0);
            self.replace(true);
            self.t2.push_front(key);
        } else {
            let l1 = self.t1.len() + self.b1.len();
            let l2 = self.t2.len() + self.b2.len();
            if l1 == self.c {
                if self.t1.len() < self.c {
                    self.b1.pop_back();
                    self.replace(false);
                } else {
                    let k = self.t1.pop_back().unwrap();
                    self.values.remove(&k);
                    self.evictions += 1;
                }
            } else if l1 + l2 >= self.c {
                if l1 + l2 == 2 * self.c {
                    self.b2.pop_back();
                }
                self.replace(false);
            }
            self.t1.push_front(key);
        }
        self.values.insert(key, value);
    }

    fn remove(&mut self, key: u8) -> Option<u64> {
        if pull(&mut self.t1, key) || pull(&mut self.t2, key) {
            return self.values.remove(&key);
        }
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lru_matches_the_model(capacity in 1..12u64, ops in ops(16)) {
        let cache = Cache::<u8, u64>::builder(capacity).weigher(|_, v| *v).build();
        let mut model = LruModel { capacity, order: VecDeque::new(), evictions: 0 };
        for op in ops {
            match op {
                Op::Get(k) => prop_assert_eq!(cache.get(&k), model.get(k), "get {}", k),
                Op::Insert(k, v) => {
                    let got = cache.insert(k, v);
                    if v > capacity {
                        prop_assert!(got.is_err());
                        model.take(k);
                    } else {
                        prop_assert!(got.is_ok());
                        model.insert(k, v);
                    }
                }
                Op::Remove(k) => prop_assert_eq!(cache.remove(&k), model.take(k), "remove {}", k),
            }
        }
        let stats = cache.stats();
        prop_assert_eq!(stats.evictions, model.evictions);
        prop_assert_eq!(stats.entries, model.order.len() as u64);
        prop_assert!(stats.weight <= capacity);
        for (k, v) in model.order.clone() {
            prop_assert_eq!(cache.get(&k), Some(v));
        }
    }

    /// A segmented cache is one exact policy per segment, each with its
    /// share of the capacity (the first ones take the remainder).
    #[test]
    fn segments_are_exact_policies_of_their_keys(
        capacity in 1..12u64,
        segments in 1..5usize,
        arc in any::<bool>(),
        ops in ops(24),
    ) {
        let kind = if arc { PolicyKind::Arc } else { PolicyKind::Lru };
        let cache = Cache::<u8, u64>::builder(capacity).policy(kind).segments(segments).build();
        let n = (segments as u64).min(capacity);
        let share = |i: u64| capacity / n + u64::from(i < capacity % n);
        let mut lru: Vec<LruModel> = (0..n)
            .map(|i| LruModel { capacity: share(i), order: VecDeque::new(), evictions: 0 })
            .collect();
        let mut arcs: Vec<ArcModel> = (0..n).map(|i| ArcModel::new(share(i) as usize)).collect();
        for op in ops {
            let key = match op { Op::Get(k) | Op::Insert(k, _) | Op::Remove(k) => k };
            let seg = cache.segment_of(&key);
            prop_assert!((seg as u64) < n);
            match (op, arc) {
                (Op::Get(k), false) => prop_assert_eq!(cache.get(&k), lru[seg].get(k)),
                (Op::Get(k), true) => prop_assert_eq!(cache.get(&k), arcs[seg].get(k)),
                (Op::Insert(k, _), false) => {
                    prop_assert!(cache.insert(k, 1).is_ok());
                    lru[seg].insert(k, 1);
                }
                (Op::Insert(k, v), true) => {
                    prop_assert!(cache.insert(k, v).is_ok());
                    arcs[seg].insert(k, v);
                }
                (Op::Remove(k), false) => prop_assert_eq!(cache.remove(&k), lru[seg].take(k)),
                (Op::Remove(k), true) => prop_assert_eq!(cache.remove(&k), arcs[seg].remove(k)),
            }
        }
        let stats = cache.stats();
        prop_assert_eq!(stats.capacity, capacity);
        prop_assert!(stats.entries <= capacity);
        let (entries, evictions) = if arc {
            (arcs.iter().map(|m| m.values.len() as u64).sum(), arcs.iter().map(|m| m.evictions).sum())
        } else {
            (lru.iter().map(|m| m.order.len() as u64).sum(), lru.iter().map(|m| m.evictions).sum())
        };
        prop_assert_eq!((stats.entries, stats.evictions), (entries, evictions));
    }

    #[test]
    fn arc_matches_the_paper(capacity in 1..10usize, ops in ops(24)) {
        let cache = Cache::<u8, u64>::builder(capacity as u64).policy(PolicyKind::Arc).build();
        let mut model = ArcModel::new(capacity);
        for op in ops {
            match op {
                Op::Get(k) => prop_assert_eq!(cache.get(&k), model.get(k), "get {}", k),
                Op::Insert(k, v) => {
                    prop_assert!(cache.insert(k, v).is_ok());
                    model.insert(k, v);
                }
                Op::Remove(k) => prop_assert_eq!(cache.remove(&k), model.remove(k), "remove {}", k),
            }
        }
        let stats = cache.stats();
        prop_assert_eq!(stats.evictions, model.evictions);
        prop_assert_eq!(stats.entries, model.values.len() as u64);
        let mut resident: Vec<u8> = model.values.keys().copied().collect();
        resident.sort_unstable();
        for k in resident {
            prop_assert_eq!(cache.get(&k), model.values.get(&k).copied());
        }
    }
}

#[test]
fn counters_count() {
    let cache = Cache::<u32, u32>::builder(2).build();
    assert_eq!(cache.get(&1), None);
    cache.insert(1, 10).unwrap();
    cache.insert(2, 20).unwrap();
    assert_eq!(cache.get(&1), Some(10));
    cache.insert(3, 30).unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.evictions), (1, 1, 3, 1));
    assert_eq!((s.entries, s.weight, s.capacity), (2, 2, 2));
    cache.clear();
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.stats().entries, 0);
}

#[test]
fn an_entry_heavier_than_the_cache_is_handed_back_and_the_old_value_dropped() {
    let cache = Cache::<u32, Vec<u8>>::builder(8)
        .weigher(|_, v| v.len() as u64)
        .build();
    cache.insert(1, vec![0; 4]).unwrap();
    let err = cache.insert(1, vec![7; 9]).unwrap_err();
    assert_eq!(
        err,
        TooHeavy {
            key: 1,
            value: vec![7; 9],
            weight: 9,
            capacity: 8
        }
    );
    assert_eq!(
        cache.get(&1),
        None,
        "the stale value must not outlive the failed write"
    );
}

#[test]
fn entries_expire_at_their_deadline() {
    let clock = Arc::new(ManualClock::new(1_000));
    let cache = Cache::<u32, u32>::builder(10).clock(clock.clone()).build();
    cache.insert_with_ttl(1, 10, 50).unwrap();
    cache.insert_with_ttl(2, 20, 100).unwrap();
    cache.insert(3, 30).unwrap();
    clock.advance(49);
    assert_eq!(cache.get(&1), Some(10));
    clock.advance(1);
    assert_eq!(cache.get(&1), None, "at its deadline the entry is gone");
    assert_eq!(cache.stats().expirations, 1, "the reader removed it");
    assert_eq!(cache.get(&2), Some(20));
    clock.advance(50);
    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(cache.remove(&2), None);
    assert_eq!(cache.get(&3), Some(30), "no deadline, no expiry");
    let s = cache.stats();
    assert_eq!((s.expirations, s.entries), (2, 1));
    // A new value under an expired key starts a new life.
    cache.insert_with_ttl(1, 11, 10).unwrap();
    assert_eq!(cache.get(&1), Some(11));
}

#[test]
fn refresh_changes_only_cached_entries_and_not_their_recency() {
    let cache = Cache::<u32, u32>::builder(2).build();
    assert!(!cache.refresh(&1, 10), "nothing to refresh");
    assert_eq!(cache.get(&1), None);
    cache.insert(1, 10).unwrap();
    cache.insert(2, 20).unwrap();
    assert!(cache.refresh(&1, 11));
    cache.insert(3, 30).unwrap();
    assert_eq!(
        cache.get(&1),
        None,
        "a refresh is not a use, so 1 was still the oldest"
    );
    assert_eq!(cache.get(&2), Some(20));
}

#[test]
fn a_segmented_cache_expires_clears_and_counts_across_its_segments() {
    let clock = Arc::new(ManualClock::new(0));
    let cache = Cache::<u64, u64>::builder(64)
        .segments(4)
        .clock(clock.clone())
        .build();
    for k in 0..32 {
        let ttl = if k % 2 == 0 { 10 } else { 0 };
        cache.insert_with_ttl(k, k, ttl).unwrap();
    }
    let segments: std::collections::HashSet<usize> =
        (0..32).map(|k| cache.segment_of(&k)).collect();
    assert!(segments.len() > 1, "32 keys spread over the segments");
    clock.advance(10);
    assert_eq!(cache.purge_expired(), 16);
    let stats = cache.stats();
    assert_eq!(
        (stats.entries, stats.expirations, stats.capacity),
        (16, 16, 64)
    );
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
    cache.clear();
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.get(&1), None);
    // Asking for more segments than capacity gives one entry to each.
    let small = Cache::<u64, u64>::builder(3).segments(16).build();
    for k in 0..100 {
        small.insert(k, k).unwrap();
    }
    assert_eq!(small.stats().entries, 3);
}
