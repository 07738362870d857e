//! Where the cached values live: hash tables split into stripes, each behind
//! its own reader-writer lock, found by the top bits of the key's hash.
//!
//! Readers of one stripe share its lock and never wait on one another; the
//! only writer is whoever holds the policy lock, so writers never wait on
//! each other either, and a reader waits at most for one short table edit.
//! The key is hashed once: the same hash picks the stripe and probes the table.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use super::list::Handle;
use crate::sync::RwLock;

/// Stripes per cache: enough that two writers' tables rarely meet readers of
/// the same stripe on a 64-core machine.
#[cfg(not(loom))]
pub(crate) const STORE_STRIPES: usize = 64;
#[cfg(loom)]
pub(crate) const STORE_STRIPES: usize = 2;

const _: () = assert!(STORE_STRIPES.is_power_of_two());

/// A cached entry. `deadline_ms` is 0 when the entry never expires.
#[derive(Debug)]
pub(crate) struct Slot<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) handle: Handle,
    pub(crate) deadline_ms: u64,
}

/// Seeded per process, so a client cannot pick keys that collide; fixed
/// under loom, so a model explores the same stripes on every run.
#[cfg(not(loom))]
type Hasher = foldhash::fast::RandomState;
#[cfg(loom)]
type Hasher = foldhash::fast::FixedState;

type Stripe<K, V> = RwLock<HashTable<Slot<K, V>>>;

#[derive(Debug)]
pub(crate) struct Store<K, V> {
    hasher: Hasher,
    stripes: Box<[CachePadded<Stripe<K, V>>]>,
}

impl<K: Hash + Eq, V> Store<K, V> {
    pub(crate) fn new() -> Self {
        Store {
            hasher: Hasher::default(),
            stripes: (0..STORE_STRIPES)
                .map(|_| CachePadded::new(RwLock::new(HashTable::new())))
                .collect(),
        }
    }

    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    fn stripe(&self, hash: u64) -> &Stripe<K, V> {
        // The table uses the low bits and its control bytes the top seven;
        // the stripe takes bits just below those.
        &self.stripes[(hash >> 50) as usize & (STORE_STRIPES - 1)]
    }

    /// Runs `f` on the entry for `key`, under the stripe's read lock.
    pub(crate) fn read<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&Slot<K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let table = self.stripe(hash).read().expect("cache stripe poisoned");
        table.find(hash, |s| s.key.borrow() == key).map(f)
    }

    /// Runs `f` on the entry for `key`, under the stripe's write lock.
    pub(crate) fn update<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&mut Slot<K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut table = self.stripe(hash).write().expect("cache stripe poisoned");
        table.find_mut(hash, |s| s.key.borrow() == key).map(f)
    }

    pub(crate) fn insert(&self, hash: u64, slot: Slot<K, V>) {
        let mut table = self.stripe(hash).write().expect("cache stripe poisoned");
        debug_assert!(table.find(hash, |s| s.key == slot.key).is_none());
        let hasher = &self.hasher;
        table.insert_unique(hash, slot, |s| hasher.hash_one(&s.key));
    }

    pub(crate) fn remove<Q>(&self, hash: u64, key: &Q) -> Option<Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut table = self.stripe(hash).write().expect("cache stripe poisoned");
        match table.find_entry(hash, |s| s.key.borrow() == key) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Removes the entries `remove` picks, handing each one's hash and
    /// handle to `gone`.
    pub(crate) fn remove_where(
        &self,
        mut remove: impl FnMut(&Slot<K, V>) -> bool,
        mut gone: impl FnMut(u64, Handle),
    ) {
        for stripe in self.stripes.iter() {
            stripe
                .write()
                .expect("cache stripe poisoned")
                .retain(|slot| {
                    let drop = remove(slot);
                    if drop {
                        gone(self.hasher.hash_one(&slot.key), slot.handle);
                    }
                    !drop
                });
        }
    }

    pub(crate) fn clear(&self) {
        for stripe in self.stripes.iter() {
            stripe.write().expect("cache stripe poisoned").clear();
        }
    }
}
