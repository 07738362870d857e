//! Where one segment's cached values live: hash tables split into stripes,
//! found by the top bits of the key's hash.
//!
//! The only writer of a store is whoever holds its segment's policy lock,
//! through the store's one [`Writer`]. A reader with a seat
//! ([`readers`](super::readers)) writes nothing shared: it names the stripe
//! in its own seat and reads on unless the writer has raised the stripe's
//! flag; the writer raises the flags of the stripes it is about to change,
//! fences once, and waits until no seat names them. A reader without a seat,
//! or who met a raised flag, reads under the policy lock instead, which the
//! writer holds while it edits. The key is hashed once: the same hash picks
//! the segment, the stripe, and probes the table.

// The tables sit in cells that the seats and flags above guard.
#![allow(unsafe_code)]

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use super::list::Handle;
use super::readers::{self, IDLE, Seat};
use crate::sync::{AtomicBool, Ordering, UnsafeCell, fence, spin_wait};

/// Stripes per cache, shared out among its segments: enough that a writer
/// rarely makes readers of another stripe wait, and few enough that a
/// writer's stripes fit one `u64` mask.
#[cfg(not(loom))]
pub(crate) const STORE_STRIPES: usize = 64;
#[cfg(loom)]
pub(crate) const STORE_STRIPES: usize = 2;

const _: () = assert!(STORE_STRIPES.is_power_of_two() && STORE_STRIPES <= 64);

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
pub(crate) type Hasher = foldhash::fast::RandomState;
#[cfg(loom)]
pub(crate) type Hasher = foldhash::fast::FixedState;

type Table<K, V> = HashTable<Slot<K, V>>;

#[derive(Debug)]
struct Stripe<K, V> {
    /// Raised by the writer for as long as it may change the table.
    writing: AtomicBool,
    table: UnsafeCell<Table<K, V>>,
}

impl<K, V> Stripe<K, V> {
    /// What a seat names while reading this stripe: its address, unique
    /// among live stripes and never `IDLE`.
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn find<Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&Slot<K, V>) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table.with(|table| {
            // SAFETY: the callers either checked, after naming the stripe in
            // their seat, that its flag was down (`try_read`; the writer
            // raises it, fences, and waits for such readers before it edits),
            // or hold the store's writer and are not editing (`read_locked`).
            let table = unsafe { &*table };
            table.find(hash, |s| s.key.borrow() == key).map(f)
        })
    }
}

/// Empties a seat when its read ends, also if the read panics.
struct Leave(&'static Seat);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.reading.store(IDLE, Ordering::Release);
    }
}

#[derive(Debug)]
pub(crate) struct Store<K, V> {
    hasher: Hasher,
    stripes: Box<[CachePadded<Stripe<K, V>>]>,
}

/// The right to change one store: there is one per store, kept under its
/// segment's policy lock, so two writers never meet on a stripe.
#[derive(Debug)]
pub(crate) struct Writer {
    store: usize,
}

// SAFETY: a table is read by seated readers that saw its flag down, or by
// the holder of the store's one `Writer` between edits, and written only by
// that holder with the flag up and no seat naming the stripe (see
// `try_read`, `read_locked` and `Edit::raise`): so `&Store` hands out `&K`
// and `&V` to many threads at once (hence `Sync` on both), and moves keys
// and values in from whichever thread writes (hence `Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Store<K, V> {}

impl<K: Hash + Eq, V> Store<K, V> {
    /// A store of `stripes` stripes (a power of two, at most
    /// `STORE_STRIPES`) and the one `Writer` that may change it. The writer
    /// names the store by its address, hence the box.
    pub(crate) fn new(hasher: Hasher, stripes: usize) -> (Box<Self>, Writer) {
        debug_assert!(stripes.is_power_of_two() && stripes <= STORE_STRIPES);
        let store = Box::new(Store {
            hasher,
            stripes: (0..stripes)
                .map(|_| {
                    CachePadded::new(Stripe {
                        writing: AtomicBool::new(false),
                        table: UnsafeCell::new(HashTable::new()),
                    })
                })
                .collect(),
        });
        let writer = Writer { store: store.id() };
        (store, writer)
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn stripe_index(&self, hash: u64) -> usize {
        // The table uses the low bits and its control bytes the top seven;
        // the stripe takes bits just below those.
        (hash >> 50) as usize & (self.stripes.len() - 1)
    }

    /// Runs `f` on the entry for `key` without any lock, if the caller has
    /// a free reader seat (`me`) and the writer is not changing the stripe;
    /// otherwise gives `f` back, for [`read_locked`](Self::read_locked).
    pub(crate) fn try_read<Q, R, F>(
        &self,
        me: Option<usize>,
        hash: u64,
        key: &Q,
        f: F,
    ) -> Result<Option<R>, F>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        F: FnOnce(&Slot<K, V>) -> R,
    {
        let Some(seat) = me.and_then(readers::idle_seat) else {
            return Err(f);
        };
        let stripe = &self.stripes[self.stripe_index(hash)];
        seat.reading.store(stripe.id(), Ordering::Relaxed);
        // Orders the seat's write before the flag's read; the writer's
        // fence orders its flag's write before its read of the seats.
        fence(Ordering::SeqCst);
        if stripe.writing.load(Ordering::Acquire) {
            seat.reading.store(IDLE, Ordering::Relaxed);
            return Err(f);
        }
        let _leave = Leave(seat);
        Ok(stripe.find(hash, key, f))
    }

    /// Runs `f` on the entry for `key`, for the holder of the store's
    /// writer: holding it, nobody else edits, and `&` keeps the holder
    /// from editing meanwhile.
    pub(crate) fn read_locked<Q, R>(
        &self,
        writer: &Writer,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&Slot<K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        assert_eq!(writer.store, self.id(), "a writer reads its own store");
        self.stripes[self.stripe_index(hash)].find(hash, key, f)
    }

    /// Starts a change of this store; `writer` must be this store's.
    pub(crate) fn edit<'a>(&'a self, writer: &'a mut Writer) -> Edit<'a, K, V> {
        assert_eq!(writer.store, self.id(), "a writer edits its own store");
        Edit {
            store: self,
            raised: 0,
        }
    }
}

/// A change in progress: the stripes whose flags it raised stay closed to
/// readers until it is dropped.
pub(crate) struct Edit<'a, K, V> {
    store: &'a Store<K, V>,
    /// Bit `i`: stripe `i`'s flag is up and no reader is in it.
    raised: u64,
}

impl<K, V> Drop for Edit<'_, K, V> {
    fn drop(&mut self) {
        let mut raised = self.raised;
        while raised != 0 {
            let i = raised.trailing_zeros() as usize;
            // `Release`: a reader that sees the flag down sees the edit.
            self.store.stripes[i]
                .writing
                .store(false, Ordering::Release);
            raised &= raised - 1;
        }
    }
}

impl<K: Hash + Eq, V> Edit<'_, K, V> {
    /// Closes the stripes of `hashes` to readers, with one fence for all.
    pub(crate) fn raise(&mut self, hashes: impl IntoIterator<Item = u64>) {
        let store = self.store;
        let mut new = 0u64;
        for hash in hashes {
            new |= 1 << store.stripe_index(hash);
        }
        new &= !self.raised;
        if new == 0 {
            return;
        }
        let mut bits = new;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            store.stripes[i].writing.store(true, Ordering::Relaxed);
            bits &= bits - 1;
        }
        self.raised |= new;
        fence(Ordering::SeqCst);
        let mut bits = new;
        while bits != 0 {
            let stripe = &store.stripes[bits.trailing_zeros() as usize];
            let mut round = 0;
            while readers::seats().any_reading(stripe.id()) {
                spin_wait(round);
                round = round.saturating_add(1);
            }
            bits &= bits - 1;
        }
    }

    fn table(&mut self, hash: u64) -> &mut Table<K, V> {
        self.raise([hash]);
        let stripe = &self.store.stripes[self.store.stripe_index(hash)];
        stripe.table.with_mut(|table| {
            // SAFETY: this edit holds the store's one writer and raised the
            // stripe's flag; every reader that came before has left, and
            // those after see the flag and keep out until the edit drops.
            // The `&mut self` borrow keeps two such references from living
            // at once.
            unsafe { &mut *table }
        })
    }

    /// Runs `f` on the entry for `key`.
    pub(crate) fn update<Q, R>(
        &mut self,
        hash: u64,
        key: &Q,
        f: impl FnOnce(&mut Slot<K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        (self.table(hash))
            .find_mut(hash, |s| s.key.borrow() == key)
            .map(f)
    }

    pub(crate) fn insert(&mut self, hash: u64, slot: Slot<K, V>) {
        let store = self.store;
        let hasher = &store.hasher;
        let table = self.table(hash);
        debug_assert!(table.find(hash, |s| s.key == slot.key).is_none());
        table.insert_unique(hash, slot, |s| hasher.hash_one(&s.key));
    }

    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.table(hash).find_entry(hash, |s| s.key.borrow() == key) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    /// Removes the entries `remove` picks, handing each one's hash and
    /// handle to `gone`.
    pub(crate) fn remove_where(
        &mut self,
        mut remove: impl FnMut(&Slot<K, V>) -> bool,
        mut gone: impl FnMut(u64, Handle),
    ) {
        let store = self.store;
        let hasher = &store.hasher;
        for i in 0..self.store.stripes.len() {
            // Any hash of stripe `i` will do: build one from its index.
            let hash = (i as u64) << 50;
            self.table(hash).retain(|slot| {
                let drop = remove(slot);
                if drop {
                    gone(hasher.hash_one(&slot.key), slot.handle);
                }
                !drop
            });
        }
    }

    pub(crate) fn clear(&mut self) {
        for i in 0..self.store.stripes.len() {
            self.table((i as u64) << 50).clear();
        }
    }
}
