//! Concurrent LRU and ARC caches shared by every thread.
//!
//! A [`Cache`] is three parts:
//! - a striped hash table holding the values ([`store`](self)), which readers
//!   share and only the policy-lock holder edits;
//! - striped, lossy buffers of hits: a hit is appended without taking the
//!   policy lock, and applied later by whoever holds it;
//! - the policy (LRU or ARC) behind one mutex, taken by inserts, removes, and
//!   by a reader whose hit buffer is full and who wins a `try_lock`. A cache
//!   built with [`segments`](CacheBuilder::segments) has one policy, mutex
//!   and set of hit buffers per segment, each over the keys whose hash picks
//!   it: faster for concurrent inserts, exact per segment only.
//!
//! Guarantees, also under concurrency:
//! - the bound holds: every insert makes room before its entry becomes
//!   visible, so no reader ever sees more than `capacity` of weight;
//! - after `remove` returns, no `get` returns the removed value; past an
//!   entry's deadline no `get` returns it;
//! - nothing waits on anything while holding a stripe lock, and stripe locks
//!   are taken one at a time, so nothing deadlocks.
//!
//! Single-threaded, the policies are exact (with one segment, the default):
//! the LRU is the textbook LRU and the ARC the paper's. Under concurrency a
//! few hits may be dropped when the policy lock is busy; that costs hit
//! ratio, not correctness.
//!
//! ```
//! use mercato_engine::cache::{Cache, PolicyKind};
//!
//! let cache = Cache::<u64, String>::builder(2).policy(PolicyKind::Lru).build();
//! cache.insert(1, "one".into()).unwrap();
//! cache.insert(2, "two".into()).unwrap();
//! assert_eq!(cache.get(&1).as_deref(), Some("one")); // 2 is now the oldest
//! cache.insert(3, "three".into()).unwrap();
//! assert_eq!(cache.get(&2), None);
//! assert_eq!(cache.stats().evictions, 1);
//! ```

mod buffer;
mod list;
mod policy;
mod store;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use buffer::{Appended, Buffers};
use list::Handle;
use policy::Policy;
pub use policy::PolicyKind;
use store::{Slot, Store};

use crate::clock::{Clock, SystemClock};
use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};

/// Segments a cache may be split into.
pub const SEGMENTS_MAX: usize = 256;
const _: () = assert!(
    SEGMENTS_MAX <= u16::MAX as usize,
    "segments are picked as a u16"
);

/// Gives an entry its weight, in whatever unit the capacity is in.
pub type Weigher<K, V> = fn(&K, &V) -> u64;

/// Counters since the cache was built, and its present size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Entries the policy pushed out to make room.
    pub evictions: u64,
    /// Entries removed because their deadline had passed.
    pub expirations: u64,
    pub entries: u64,
    pub weight: u64,
    pub capacity: u64,
    pub policy: PolicyKind,
}

/// An entry heavier than the whole cache; it is handed back, and any older
/// value under its key is removed, since it is no longer the current one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cache entry of weight {weight} cannot fit a cache of capacity {capacity}")]
pub struct TooHeavy<K, V> {
    pub key: K,
    pub value: V,
    pub weight: u64,
    pub capacity: u64,
}

/// Builds a [`Cache`].
pub struct CacheBuilder<K, V> {
    capacity: u64,
    segments: usize,
    policy: PolicyKind,
    weigher: Weigher<K, V>,
    weighted: bool,
    clock: Arc<dyn Clock>,
}

impl<K: Hash + Eq + Clone, V> CacheBuilder<K, V> {
    pub fn policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self
    }

    /// Bounds the cache by total weight instead of by entry count. A weight
    /// of 0 counts as 1, so the entry count stays bounded too.
    pub fn weigher(mut self, weigher: Weigher<K, V>) -> Self {
        self.weigher = weigher;
        self.weighted = true;
        self
    }

    /// Splits the cache into `segments` (at most `SEGMENTS_MAX`, and no
    /// more than the capacity) that each hold their share of the capacity
    /// with their own policy, lock and hit buffers; a key's hash picks its
    /// segment. Threads inserting different keys then rarely meet on a
    /// lock. The price is exactness: each segment is an exact LRU or ARC
    /// of its keys, the whole is not, and an entry must fit one segment.
    /// The default, 1, is the exact cache.
    pub fn segments(mut self, segments: usize) -> Self {
        self.segments = segments;
        self
    }

    /// The clock deadlines are read from (tests pass a `ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn build(self) -> Cache<K, V> {
        let n = (self.segments.clamp(1, SEGMENTS_MAX) as u64).min(self.capacity.max(1));
        let segments = (0..n)
            .map(|i| Segment {
                buffers: Buffers::new(),
                policy: Mutex::new(Locked {
                    // The remainder goes to the first segments.
                    policy: Policy::new(
                        self.policy,
                        self.capacity / n + u64::from(i < self.capacity % n),
                    ),
                    evicted: Vec::new(),
                    inserts: 0,
                    evictions: 0,
                    expirations: 0,
                }),
                busy: AtomicBool::new(false),
            })
            .collect();
        Cache {
            store: Store::new(),
            segments,
            capacity: self.capacity,
            kind: self.policy,
            weigher: self.weigher,
            weighted: self.weighted,
            clock: self.clock,
        }
    }
}

struct Locked<K> {
    policy: Policy<K>,
    /// Scratch space for the keys one policy step evicts.
    evicted: Vec<K>,
    // Counted under the lock, where the events happen: plain integers, no
    // shared atomics on the hot path.
    inserts: u64,
    evictions: u64,
    expirations: u64,
}

/// The policy lock, held; clears the busy hint as it is let go. The hint
/// may be stale either way for a moment: a reader then skips one drain, or
/// tries a lock that is taken, as it would without the hint.
struct PolicyGuard<'a, K> {
    guard: MutexGuard<'a, Locked<K>>,
    busy: &'a AtomicBool,
}

impl<K> std::ops::Deref for PolicyGuard<'_, K> {
    type Target = Locked<K>;

    fn deref(&self) -> &Locked<K> {
        &self.guard
    }
}

impl<K> std::ops::DerefMut for PolicyGuard<'_, K> {
    fn deref_mut(&mut self) -> &mut Locked<K> {
        &mut self.guard
    }
}

impl<K> Drop for PolicyGuard<'_, K> {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Relaxed);
    }
}

/// One policy and what serves it: the whole cache unless it was built
/// with [`segments`](CacheBuilder::segments).
struct Segment<K> {
    buffers: Buffers,
    policy: Mutex<Locked<K>>,
    /// Set while someone holds the policy lock: a hint that lets readers
    /// with a full hit buffer skip the `try_lock`, whose write to the
    /// lock's cache line would otherwise be repeated by every hit while
    /// the lock is held (a tenth of all time on two threads, by `perf`).
    busy: AtomicBool,
}

impl<K: Hash + Eq + Clone> Segment<K> {
    fn lock(&self) -> PolicyGuard<'_, K> {
        self.held(self.policy.lock().expect("cache policy poisoned"))
    }

    fn try_lock(&self) -> Option<PolicyGuard<'_, K>> {
        Some(self.held(self.policy.try_lock().ok()?))
    }

    /// Raises the busy hint for as long as `guard` is held.
    fn held<'a>(&'a self, guard: MutexGuard<'a, Locked<K>>) -> PolicyGuard<'a, K> {
        self.busy.store(true, Ordering::Relaxed);
        PolicyGuard {
            guard,
            busy: &self.busy,
        }
    }

    fn drain(&self, locked: &mut Locked<K>) {
        self.buffers.drain(|handle| locked.policy.touch(handle));
    }
}

/// A concurrent cache; see the [module docs](self).
pub struct Cache<K, V> {
    store: Store<K, V>,
    segments: Box<[Segment<K>]>,
    capacity: u64,
    kind: PolicyKind,
    weigher: Weigher<K, V>,
    weighted: bool,
    clock: Arc<dyn Clock>,
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    /// A cache of at most `capacity` entries (or weight, with a weigher).
    pub fn builder(capacity: u64) -> CacheBuilder<K, V> {
        CacheBuilder {
            capacity,
            segments: 1,
            policy: PolicyKind::Lru,
            weigher: |_, _| 1,
            weighted: false,
            clock: Arc::new(SystemClock),
        }
    }

    pub fn policy(&self) -> PolicyKind {
        self.kind
    }

    /// The bound given to the builder: entries, or weight with a weigher.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The value under `key`, if cached and not expired. A hit takes no
    /// policy lock and writes only to this thread's hit buffer.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.store.hash(key);
        let seg = self.segment(hash);
        let found = self.store.read(hash, key, |slot| {
            if slot.deadline_ms != 0 && self.clock.now_ms() >= slot.deadline_ms {
                Err(slot.handle)
            } else {
                Ok((slot.handle, slot.value.clone()))
            }
        });
        match found {
            None => {
                seg.buffers.miss();
                None
            }
            Some(Err(handle)) => {
                seg.buffers.miss();
                if let Some(mut locked) = seg.try_lock() {
                    self.expire(seg, &mut locked, hash, key, handle);
                }
                None
            }
            Some(Ok((handle, value))) => {
                if seg.buffers.append(handle) == Appended::Full && !seg.busy.load(Ordering::Relaxed)
                {
                    if let Some(mut locked) = seg.try_lock() {
                        seg.drain(&mut locked);
                        locked.policy.touch(handle);
                    }
                }
                Some(value)
            }
        }
    }

    /// The value under `key` like [`get`](Self::get), but neither counted
    /// nor taken as a use: for inspection and tests.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.store.hash(key);
        self.store
            .read(hash, key, |slot| {
                let live = slot.deadline_ms == 0 || self.clock.now_ms() < slot.deadline_ms;
                live.then(|| slot.value.clone())
            })
            .flatten()
    }

    /// Caches `value` under `key` with no deadline, replacing any older one.
    pub fn insert(&self, key: K, value: V) -> Result<(), TooHeavy<K, V>> {
        self.insert_with_ttl(key, value, 0)
    }

    /// Caches `value` under `key` until `ttl_ms` from now (0: no deadline).
    /// Replacing a cached value refreshes its recency; under ARC it is not
    /// counted as a second use, which only a `get` proves.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl_ms: u64) -> Result<(), TooHeavy<K, V>> {
        let weight = (self.weigher)(&key, &value).max(1);
        let deadline_ms = match ttl_ms {
            0 => 0,
            ttl => self.clock.now_ms().saturating_add(ttl),
        };
        let hash = self.store.hash(&key);
        let seg = self.segment(hash);
        let mut locked = seg.lock();
        seg.drain(&mut locked);
        let capacity = locked.policy.capacity();
        if weight > capacity {
            if let Some(old) = self.store.remove(hash, &key) {
                locked.policy.remove(old.handle);
            }
            return Err(TooHeavy {
                key,
                value,
                weight,
                capacity,
            });
        }
        let mut value = Some(value);
        let replaced = self.store.update(hash, &key, |slot| {
            slot.value = value.take().expect("taken once");
            slot.deadline_ms = deadline_ms;
            slot.handle
        });
        let locked = &mut *locked;
        match replaced {
            Some(handle) => locked.policy.rewrite(handle, weight, &mut locked.evicted),
            None => {
                let handle = locked
                    .policy
                    .admit(key.clone(), weight, &mut locked.evicted);
                // Room is made before the entry is visible, so readers never
                // see the cache over its bound.
                self.remove_evicted(locked);
                self.store.insert(
                    hash,
                    Slot {
                        key,
                        value: value.take().expect("not yet taken"),
                        handle,
                        deadline_ms,
                    },
                );
            }
        }
        self.remove_evicted(locked);
        locked.inserts += 1;
        Ok(())
    }

    /// Removes `key`, giving back its value if it was cached and not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.store.hash(key);
        let seg = self.segment(hash);
        let mut locked = seg.lock();
        seg.drain(&mut locked);
        let slot = self.store.remove(hash, key)?;
        locked.policy.remove(slot.handle);
        if slot.deadline_ms != 0 && self.clock.now_ms() >= slot.deadline_ms {
            locked.expirations += 1;
            return None;
        }
        Some(slot.value)
    }

    /// Replaces the value under `key` only if it is cached, without counting
    /// a use: an owner keeping a cached view current, not a reader.
    ///
    /// Without a weigher every entry weighs 1, so the policy has nothing to
    /// learn: the value is swapped under its stripe's lock alone, and the
    /// policy lock is not taken.
    pub fn refresh(&self, key: &K, value: V) -> bool {
        let hash = self.store.hash(key);
        if !self.weighted {
            // Most refreshed keys are not cached: look under the shared lock
            // before taking the exclusive one.
            if self.store.read(hash, key, |_| ()).is_none() {
                return false;
            }
            return self
                .store
                .update(hash, key, |slot| slot.value = value)
                .is_some();
        }
        let weight = (self.weigher)(key, &value).max(1);
        let seg = self.segment(hash);
        let mut locked = seg.lock();
        seg.drain(&mut locked);
        let mut value = Some(value);
        let Some(handle) = self.store.update(hash, key, |slot| {
            slot.value = value.take().expect("taken once");
            slot.handle
        }) else {
            return false;
        };
        let locked = &mut *locked;
        if weight > locked.policy.capacity() {
            self.store.remove(hash, key);
            locked.policy.remove(handle);
            return false;
        }
        locked.policy.resize(handle, weight, &mut locked.evicted);
        // A heavier value may push out the entry itself, if it was the oldest.
        self.remove_evicted(locked);
        true
    }

    /// Removes every entry whose deadline has passed; returns how many.
    pub fn purge_expired(&self) -> u64 {
        let now_ms = self.clock.now_ms();
        let mut locked = self.lock_all();
        let mut gone = 0;
        self.store.remove_where(
            |slot| slot.deadline_ms != 0 && now_ms >= slot.deadline_ms,
            |hash, handle| {
                let l = &mut locked[self.segment_index(hash)];
                l.policy.remove(handle);
                l.expirations += 1;
                gone += 1;
            },
        );
        gone
    }

    /// Removes every entry and forgets ARC's history; counters are kept.
    pub fn clear(&self) {
        let mut locked = self.lock_all();
        self.store.clear();
        for (seg, l) in self.segments.iter().zip(&mut locked) {
            l.policy.clear();
            seg.buffers.discard();
        }
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            policy: self.kind,
            ..CacheStats::default()
        };
        for seg in self.segments.iter() {
            let locked = seg.lock();
            stats.hits += seg.buffers.hits();
            stats.misses += seg.buffers.misses();
            stats.inserts += locked.inserts;
            stats.evictions += locked.evictions;
            stats.expirations += locked.expirations;
            stats.entries += locked.policy.resident_len() as u64;
            stats.weight += locked.policy.resident_weight();
            stats.capacity += locked.policy.capacity();
        }
        stats
    }

    /// Which segment holds `key`: for tests that model each segment.
    #[doc(hidden)]
    pub fn segment_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
    {
        self.segment_index(self.store.hash(key))
    }

    fn segment_index(&self, hash: u64) -> usize {
        // The whole hash, mixed again the way ids are placed on shards.
        // Taking a run of its bits instead put 32 consecutive keys in one of
        // 4 segments under about 2% of foldhash's random seeds.
        usize::from(crate::hash::shard_of(hash, self.segments.len() as u16))
    }

    fn segment(&self, hash: u64) -> &Segment<K> {
        &self.segments[self.segment_index(hash)]
    }

    /// Every segment's lock, in order (so two callers never deadlock), with
    /// its hits applied.
    fn lock_all(&self) -> Vec<PolicyGuard<'_, K>> {
        (self.segments.iter())
            .map(|seg| {
                let mut locked = seg.lock();
                seg.drain(&mut locked);
                locked
            })
            .collect()
    }

    fn remove_evicted(&self, locked: &mut Locked<K>) {
        for key in locked.evicted.drain(..) {
            let removed = self.store.remove(self.store.hash(&key), &key);
            debug_assert!(
                removed.is_some(),
                "the policy evicted a key the store lacks"
            );
            locked.evictions += 1;
        }
    }

    /// Removes an entry a reader found expired, if it is still that entry.
    fn expire<Q>(
        &self,
        seg: &Segment<K>,
        locked: &mut Locked<K>,
        hash: u64,
        key: &Q,
        handle: Handle,
    ) where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        seg.drain(locked);
        let still = self.store.read(hash, key, |slot| slot.handle == handle);
        if still == Some(true) && locked.policy.is_resident(handle) {
            self.store.remove(hash, key);
            locked.policy.remove(handle);
            locked.expirations += 1;
        }
    }
}
