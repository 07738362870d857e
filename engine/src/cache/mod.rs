//! Concurrent LRU and ARC caches shared by every thread.
//!
//! A [`Cache`] is three parts:
//! - a striped hash table holding the values ([`store`](self)), which
//!   readers read without a lock, each announcing the stripe it reads in its
//!   thread's reader seat ([`readers`](self)), and only the policy-lock
//!   holder edits;
//! - striped, lossy buffers of hits: a hit is appended without taking the
//!   policy lock, and applied later by whoever holds it;
//! - the policy (LRU or ARC) behind one mutex, taken by inserts, removes, and
//!   by a reader whose hit buffer is full and who wins a `try_lock`. A cache
//!   built with [`segments`](CacheBuilder::segments) has one store, policy,
//!   mutex and set of hit buffers per segment, each over the keys whose hash
//!   picks it: faster for concurrent inserts, exact per segment only.
//!
//! Guarantees, also under concurrency:
//! - the bound holds: every insert makes room before its entry becomes
//!   visible, so no reader ever sees more than `capacity` of weight;
//! - after `remove` returns, no `get` returns the removed value; past an
//!   entry's deadline no `get` returns it;
//! - nothing deadlocks: a writer waits only for seated reads of the stripes
//!   it closed, which wait for nothing (a reader that meets a closed stripe,
//!   or has no seat, reads under the policy lock instead); and the only
//!   locks, the policy mutexes, are taken one at a time, or all in order by
//!   `clear` and `purge_expired`, and never while a seat is in use.
//!
//! Single-threaded, the policies are exact (with one segment, the default):
//! the LRU is the textbook LRU and the ARC the paper's. Under concurrency a
//! few hits may be dropped when the policy lock is busy, and a thread's hits
//! reach the policy only when that thread next inserts or removes, or when
//! some thread's hit stripe fills; that costs hit ratio, not correctness.
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
mod ghosts;
mod list;
mod policy;
mod readers;
mod store;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use buffer::{Appended, Buffers};
use list::Handle;
use policy::Policy;
pub use policy::PolicyKind;
use store::{Edit, Hasher, STORE_STRIPES, Slot, Store, Writer};

use crossbeam_utils::CachePadded;

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
        let hasher = Hasher::default();
        let stripes = (STORE_STRIPES / (n as usize).next_power_of_two()).max(1);
        let segments = (0..n)
            .map(|i| {
                let (store, writer) = Store::new(hasher.clone(), stripes);
                Segment {
                    store,
                    buffers: Buffers::new(),
                    policy: CachePadded::new(Mutex::new(Locked {
                        // The remainder goes to the first segments.
                        policy: Policy::new(
                            self.policy,
                            self.capacity / n + u64::from(i < self.capacity % n),
                        ),
                        writer,
                        evicted: Vec::new(),
                        hits: Vec::new(),
                        inserts: 0,
                        evictions: 0,
                        expirations: 0,
                    })),
                    busy: CachePadded::new(AtomicBool::new(false)),
                }
            })
            .collect();
        Cache {
            hasher,
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
    /// The right to change the segment's store, so only the lock's holder does.
    writer: Writer,
    /// Scratch space for the keys one policy step evicts.
    evicted: Vec<K>,
    /// Scratch space for the hits one drain applies: at most two laps of
    /// every hit stripe.
    hits: Vec<Handle>,
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
struct Segment<K, V> {
    store: Box<Store<K, V>>,
    buffers: Buffers,
    /// On lines of its own: every insert writes the lock's word, and every
    /// get reads `store` and `buffers`.
    policy: CachePadded<Mutex<Locked<K>>>,
    /// Set while someone holds the policy lock: a hint that lets readers
    /// with a full hit buffer skip the `try_lock`, whose write to the
    /// lock's cache line would otherwise be repeated by every hit while
    /// the lock is held (a tenth of all time on two threads, by `perf`).
    /// Padded too: it is written twice per lock.
    busy: CachePadded<AtomicBool>,
}

impl<K: Hash + Eq + Clone, V> Segment<K, V> {
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

    /// Applies the hits buffered by this thread (and by threads without
    /// a stripe of their own); see [`buffer`](self) for why not all. A
    /// reader whose stripe is full applies every thread's instead.
    fn drain(&self, locked: &mut Locked<K>) {
        let hits = &mut locked.hits;
        self.buffers
            .drain(readers::me(), |handle| hits.push(handle));
        locked.policy.touch_all(hits);
        hits.clear();
    }

    fn drain_all(&self, locked: &mut Locked<K>) {
        let hits = &mut locked.hits;
        self.buffers.drain_all(|handle| hits.push(handle));
        locked.policy.touch_all(hits);
        hits.clear();
    }
}

/// A concurrent cache; see the [module docs](self).
pub struct Cache<K, V> {
    hasher: Hasher,
    segments: Box<[Segment<K, V>]>,
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
        let hash = self.hash(key);
        let seg = self.segment(hash);
        let me = readers::me();
        let found = self.read(seg, me, hash, key, |slot| {
            if slot.deadline_ms != 0 && self.clock.now_ms() >= slot.deadline_ms {
                Err(slot.handle)
            } else {
                Ok((slot.handle, slot.value.clone()))
            }
        });
        match found {
            None => {
                seg.buffers.miss(me);
                None
            }
            Some(Err(handle)) => {
                seg.buffers.miss(me);
                if let Some(mut locked) = seg.try_lock() {
                    Self::expire(seg, &mut locked, hash, key, handle);
                }
                None
            }
            Some(Ok((handle, value))) => {
                if seg.buffers.append(me, handle) == Appended::Full
                    && !seg.busy.load(Ordering::Relaxed)
                {
                    if let Some(mut locked) = seg.try_lock() {
                        // Every thread's hits, not only this one's: once
                        // in 64 hits the cross-core reads cost little, and
                        // readers who never insert then wait less for the
                        // lock and for each other's hits to count.
                        seg.drain_all(&mut locked);
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
        let hash = self.hash(key);
        self.read(self.segment(hash), readers::me(), hash, key, |slot| {
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
        let hash = self.hash(&key);
        let seg = self.segment(hash);
        let mut guard = seg.lock();
        guard.policy.prefetch_admit(&key);
        seg.drain(&mut guard);
        let locked = &mut *guard;
        let capacity = locked.policy.capacity();
        if weight > capacity {
            if let Some(old) = seg.store.edit(&mut locked.writer).remove(hash, &key) {
                locked.policy.remove(old.handle);
            }
            return Err(TooHeavy {
                key,
                value,
                weight,
                capacity,
            });
        }
        // The lock's holder is the store's only writer, so what it finds
        // here stays as it is until it changes it.
        let present = seg
            .store
            .read_locked(&locked.writer, hash, &key, |slot| slot.handle);
        let mut edit = seg.store.edit(&mut locked.writer);
        match present {
            Some(handle) => {
                edit.update(hash, &key, |slot| {
                    slot.value = value;
                    slot.deadline_ms = deadline_ms;
                });
                locked.policy.rewrite(handle, weight, &mut locked.evicted);
            }
            None => {
                let handle = locked
                    .policy
                    .admit(key.clone(), weight, &mut locked.evicted);
                // The key's stripe closes with the evicted keys', under one
                // fence, until the edit ends: no reader sees the cache over
                // its bound, or the new entry before the room made for it.
                self.remove_evicted(
                    &mut edit,
                    Some(hash),
                    &mut locked.evicted,
                    &mut locked.evictions,
                );
                edit.insert(
                    hash,
                    Slot {
                        key,
                        value,
                        handle,
                        deadline_ms,
                    },
                );
            }
        }
        self.remove_evicted(&mut edit, None, &mut locked.evicted, &mut locked.evictions);
        locked.inserts += 1;
        Ok(())
    }

    /// Removes `key`, giving back its value if it was cached and not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let seg = self.segment(hash);
        let mut guard = seg.lock();
        seg.drain(&mut guard);
        let locked = &mut *guard;
        let slot = seg.store.edit(&mut locked.writer).remove(hash, key)?;
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
    /// learn: the value is swapped without draining the hit buffers.
    pub fn refresh(&self, key: &K, value: V) -> bool {
        let hash = self.hash(key);
        let seg = self.segment(hash);
        // Most refreshed keys are not cached: look before taking the lock.
        if self.read(seg, readers::me(), hash, key, |_| ()).is_none() {
            return false;
        }
        let mut guard = seg.lock();
        if !self.weighted {
            let locked = &mut *guard;
            let mut edit = seg.store.edit(&mut locked.writer);
            return edit.update(hash, key, |slot| slot.value = value).is_some();
        }
        let weight = (self.weigher)(key, &value).max(1);
        seg.drain(&mut guard);
        let locked = &mut *guard;
        let mut edit = seg.store.edit(&mut locked.writer);
        let mut value = Some(value);
        let Some(handle) = edit.update(hash, key, |slot| {
            slot.value = value.take().expect("taken once");
            slot.handle
        }) else {
            return false;
        };
        if weight > locked.policy.capacity() {
            edit.remove(hash, key);
            locked.policy.remove(handle);
            return false;
        }
        locked.policy.resize(handle, weight, &mut locked.evicted);
        // A heavier value may push out the entry itself, if it was the oldest.
        self.remove_evicted(&mut edit, None, &mut locked.evicted, &mut locked.evictions);
        true
    }

    /// Removes every entry whose deadline has passed; returns how many.
    pub fn purge_expired(&self) -> u64 {
        let now_ms = self.clock.now_ms();
        let mut locked = self.lock_all();
        let mut gone = 0;
        for (seg, guard) in self.segments.iter().zip(&mut locked) {
            let l = &mut **guard;
            let (policy, expirations) = (&mut l.policy, &mut l.expirations);
            seg.store.edit(&mut l.writer).remove_where(
                |slot| slot.deadline_ms != 0 && now_ms >= slot.deadline_ms,
                |_, handle| {
                    policy.remove(handle);
                    *expirations += 1;
                    gone += 1;
                },
            );
        }
        gone
    }

    /// Removes every entry and forgets ARC's history; counters are kept.
    pub fn clear(&self) {
        let mut locked = self.lock_all();
        for (seg, guard) in self.segments.iter().zip(&mut locked) {
            let l = &mut **guard;
            seg.store.edit(&mut l.writer).clear();
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
        self.segment_index(self.hash(key))
    }

    /// Runs `f` on the entry for `key`: without a lock if this thread has a
    /// reader seat and no writer is in the stripe, else under the policy
    /// lock (which the writer holds while it edits).
    fn read<Q, R>(
        &self,
        seg: &Segment<K, V>,
        me: Option<usize>,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&Slot<K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match seg.store.try_read(me, hash, key, f) {
            Ok(found) => found,
            Err(f) => {
                let locked = seg.lock();
                seg.store.read_locked(&locked.writer, hash, key, f)
            }
        }
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn segment_index(&self, hash: u64) -> usize {
        // The whole hash, mixed again the way ids are placed on shards.
        // Taking a run of its bits instead put 32 consecutive keys in one of
        // 4 segments under about 2% of foldhash's random seeds.
        usize::from(crate::hash::shard_of(hash, self.segments.len() as u16))
    }

    fn segment(&self, hash: u64) -> &Segment<K, V> {
        &self.segments[self.segment_index(hash)]
    }

    /// Every segment's lock, in order (so two callers never deadlock), with
    /// every thread's hits applied.
    fn lock_all(&self) -> Vec<PolicyGuard<'_, K>> {
        (self.segments.iter())
            .map(|seg| {
                let mut locked = seg.lock();
                seg.drain_all(&mut locked);
                locked
            })
            .collect()
    }

    /// Takes the keys the policy evicted out of the store, closing all
    /// their stripes to readers at once, with the stripe of `also` (the key
    /// about to be inserted) if given.
    fn remove_evicted(
        &self,
        edit: &mut Edit<'_, K, V>,
        also: Option<u64>,
        evicted: &mut Vec<K>,
        evictions: &mut u64,
    ) {
        edit.raise(
            also.into_iter()
                .chain(evicted.iter().map(|key| self.hash(key))),
        );
        for key in evicted.drain(..) {
            let removed = edit.remove(self.hash(&key), &key);
            debug_assert!(
                removed.is_some(),
                "the policy evicted a key the store lacks"
            );
            *evictions += 1;
        }
    }

    /// Removes an entry a reader found expired, if it is still that entry.
    fn expire<Q>(
        seg: &Segment<K, V>,
        guard: &mut PolicyGuard<'_, K>,
        hash: u64,
        key: &Q,
        handle: Handle,
    ) where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        seg.drain(guard);
        let locked = &mut **guard;
        // Looked at as the store's writer, so without closing the stripe;
        // it closes only if the entry goes.
        let still =
            (seg.store).read_locked(&locked.writer, hash, key, |slot| slot.handle == handle);
        if still == Some(true) && locked.policy.is_resident(handle) {
            seg.store.edit(&mut locked.writer).remove(hash, key);
            locked.policy.remove(handle);
            locked.expirations += 1;
        }
    }
}
