//! The slot arrays under the shard's open-addressed tables (accounts,
//! purchases, the order index), and how they grow without stopping the
//! shard.
//!
//! A table that doubles by moving every entry at once stops its shard for
//! as long as that takes: on a server started with default flags, p99.9
//! reached 206 to 303 ms at peak (issue 25), most of it the kernel zeroing
//! the new array's pages and the moves' cache misses. Here a table that
//! must grow only allocates the new array, as fresh pages the kernel zeroes
//! one at a time on first touch, and then every insert moves a bounded
//! number of old slots across ([`MOVE_SLOTS_PER_INSERT`]), as Redis's dict
//! rehashes a few buckets per operation. Meanwhile a key is in exactly one
//! of the two arrays, and a lookup that misses in the new one tries the old.
//!
//! Linear probing makes moving entries piecemeal delicate: a probe stops at
//! the first empty slot, so a slot emptied in the middle of a run of full
//! ones (a cluster) would hide the entries after it. Moves therefore go a
//! whole cluster at a time, from a slot that was empty when the move began,
//! so every cluster of the old array is either wholly moved (and cleared)
//! or wholly in place. Nothing is ever inserted into the old array, and a
//! removal there shifts entries back within their own cluster only, so that
//! stays true until the last cluster has moved.
//!
//! Large arrays are anonymous mappings rather than heap blocks. The kernel
//! zeroes them lazily, a 4 KiB page per first touch, and the pages behind
//! the move are handed back as it passes them ([`RELEASE_BYTES_MIN`] at a
//! time), since a cleared slot reads as zero either way. So neither the
//! allocation nor the final free of an old array costs a pass over it.
//!
//! The price is paid per operation instead: an insert into a new array
//! often lands on a page not yet touched, and the kernel takes a few
//! microseconds to zero it (4 KiB at about 1 GB/s on this machine). A
//! helper thread that faulted new arrays in ahead of their shards, with
//! `MADV_POPULATE_WRITE`, made the longest turns longer, not shorter
//! (docs/experiments/growth.md), and was not kept.

#![allow(unsafe_code)]

use std::marker::PhantomData;

use memmap2::{MmapMut, MmapRaw};

use crate::prefetch::prefetch_whole;

/// A slot type whose value of all-zero bytes is valid and empty.
///
/// # Safety
///
/// Every bit pattern of zeros must be a valid value of `Self`, and
/// `is_empty` must hold for it: arrays of slots are created by the kernel's
/// zeroed pages, never written slot by slot.
pub(crate) unsafe trait Slot: Copy {
    fn is_empty(&self) -> bool;
}

/// An empty slot: zero bytes, as a fresh page holds.
fn empty<S: Slot>() -> S {
    // SAFETY: `Slot`'s contract makes zero bytes a valid, empty slot.
    unsafe { std::mem::zeroed() }
}

/// Old slots an insert moves to the new array while a table grows. Just
/// after a doubling the new array is at most 3/8 full, and it must not grow
/// again before the move is over: that leaves at least 3/4 of an insert per
/// old slot at the fullest table (accounts, 3/4), so 16 finishes with room
/// to spare.
pub(crate) const MOVE_SLOTS_PER_INSERT: usize = 16;

/// Arrays at least this large are anonymous mappings; smaller ones live
/// on the heap, where a shard's many small tables cost no system calls.
const MAPPED_BYTES_MIN: usize = 1 << 20;

/// Bytes of old slots moved before their pages are handed back in one call.
const RELEASE_BYTES_MIN: usize = 1 << 20;

const PAGE_BYTES: usize = 4096;

enum Mem<S> {
    Heap(Box<[S]>),
    /// With one bit per page: whether anything was ever written there.
    Mapped(MmapRaw, Box<[u64]>, PhantomData<S>),
}

/// A power-of-two array of slots, all empty at birth.
///
/// A mapped array is never read where it was never written. Reading a
/// page first maps the kernel's shared zero page, and the write that
/// follows must then replace it and flush every other CPU's TLB entry for
/// it by interrupt, which in a flash sale took 7% of all samples on one shard alone
/// (docs/experiments/growth.md). A bit per page says whether it was
/// written; a slot on a page that was not is empty without a look.
pub(crate) struct Slots<S: Slot> {
    mem: Mem<S>,
    len: usize,
    /// 64 minus log2 of the length: a hash's home slot is its top bits.
    shift: u32,
    /// While a checkpoint that began before this array changed is running.
    saving: Option<Box<Saving<S>>>,
}

/// Bytes of slots a checkpoint copies at once: a write to a slot whose
/// slice is not saved yet copies that slice first. One page: a turn's
/// writes land on random slices of a large table, and with slices of
/// 64 KiB the first turns of a checkpoint copied up to 65 ms of them
/// (`mercato-grow --checkpoint-every-turns`, growth.md). Tests use slices
/// of a few slots, so that small tables span many.
#[cfg(not(test))]
pub(crate) const CHECKPOINT_SLICE_BYTES: usize = 4 << 10;
#[cfg(test)]
pub(crate) const CHECKPOINT_SLICE_BYTES: usize = 256;

/// A checkpoint's copy-on-write state for one array.
struct Saving<S> {
    /// One bit per slice: copied already, as it was at the checkpoint.
    saved: Vec<u64>,
    slices: usize,
    /// The next slice the checkpoint's own steps look at.
    next: usize,
    /// Copies of slices' full slots, waiting for the table to take them.
    out: Vec<Vec<S>>,
}

fn slice_slots<S>() -> usize {
    (CHECKPOINT_SLICE_BYTES / size_of::<S>().max(1)).max(1)
}

fn pages_of<S>(i: usize) -> (usize, usize) {
    let size = size_of::<S>().max(1);
    (i * size / PAGE_BYTES, ((i + 1) * size - 1) / PAGE_BYTES)
}

fn bit(bits: &[u64], page: usize) -> bool {
    bits[page / 64] & (1 << (page % 64)) != 0
}

impl<S: Slot> Slots<S> {
    pub fn new(len: usize) -> Self {
        assert!(len.is_power_of_two() && len >= 2, "{len} slots");
        let bytes = len
            .checked_mul(size_of::<S>())
            .expect("a table that fits memory");
        let mem = if bytes >= MAPPED_BYTES_MIN {
            let map = MmapMut::map_anon(bytes).expect("memory for a table");
            let pages = bytes.div_ceil(PAGE_BYTES);
            let written = vec![0u64; pages.div_ceil(64)].into_boxed_slice();
            Mem::Mapped(MmapRaw::from(map), written, PhantomData)
        } else {
            Mem::Heap(vec![empty(); len].into_boxed_slice())
        };
        Slots {
            mem,
            len,
            shift: 64 - len.trailing_zeros(),
            saving: None,
        }
    }

    /// From now on, copy each slice before its first write, as the
    /// checkpoint that begins now must see it.
    fn begin_saving(&mut self) {
        let slices = self.len.div_ceil(slice_slots::<S>());
        self.saving = Some(Box::new(Saving {
            saved: vec![0; slices.div_ceil(64)],
            slices,
            next: 0,
            out: Vec::new(),
        }));
    }

    /// Copies slice `k` if the checkpoint has not yet.
    fn save_slice(&mut self, k: usize) {
        let Some(saving) = self.saving.as_ref() else {
            return;
        };
        if saving.saved[k / 64] & (1 << (k % 64)) != 0 {
            return;
        }
        let per = slice_slots::<S>();
        let copy: Vec<S> = (k * per..((k + 1) * per).min(self.len))
            .map(|i| self.slot(i))
            .filter(|s| !s.is_empty())
            .collect();
        let saving = self.saving.as_mut().expect("saving");
        saving.saved[k / 64] |= 1 << (k % 64);
        if !copy.is_empty() {
            saving.out.push(copy);
        }
    }

    /// Before slot `i` changes.
    fn before_write(&mut self, i: usize) {
        if self.saving.is_some() {
            self.save_slice(i / slice_slots::<S>());
        }
    }

    /// Copies up to `slices` more slices for the checkpoint; whether every
    /// slice is copied now.
    fn save_some(&mut self, mut slices: usize) -> bool {
        loop {
            let Some(saving) = self.saving.as_mut() else {
                return true;
            };
            if saving.next == saving.slices {
                return true;
            }
            if slices == 0 {
                return false;
            }
            let k = saving.next;
            saving.next += 1;
            slices -= 1;
            self.save_slice(k);
        }
    }

    /// Hands over the copies made so far; ends the saving once every slice
    /// is copied and handed over.
    fn take_saved(&mut self, into: &mut Vec<Vec<S>>) {
        if let Some(saving) = self.saving.as_mut() {
            into.append(&mut saving.out);
            if saving.next == saving.slices {
                let all = (0..saving.slices).all(|k| saving.saved[k / 64] & (1 << (k % 64)) != 0);
                debug_assert!(all);
                self.saving = None;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether slot `i` may hold something: it lies on written pages only.
    fn written(&self, i: usize) -> bool {
        match &self.mem {
            Mem::Heap(_) => true,
            Mem::Mapped(_, bits, _) => {
                let (first, last) = pages_of::<S>(i);
                bit(bits, first) && bit(bits, last)
            }
        }
    }

    fn base(&self) -> *mut S {
        match &self.mem {
            Mem::Heap(b) => b.as_ptr().cast_mut(),
            Mem::Mapped(m, _, _) => m.as_mut_ptr().cast::<S>(),
        }
    }

    /// Slot `i`, read only if it lies on written pages.
    pub fn slot(&self, i: usize) -> S {
        assert!(i < self.len);
        if !self.written(i) {
            return empty();
        }
        // SAFETY: `i` is in bounds; the array is `len` slots, aligned for
        // `S` (a heap slice, or a page-aligned mapping), and every byte of
        // it is a zero the kernel gave (a valid slot, by `Slot`'s
        // contract) or part of a slot written by `set`. `&self` keeps
        // writers out.
        unsafe { *self.base().add(i) }
    }

    /// A reference to slot `i`, which must hold an entry (and so lies on
    /// written pages).
    pub fn slot_ref(&self, i: usize) -> &S {
        assert!(i < self.len && self.written(i));
        // SAFETY: as in `slot`; the reference lives no longer than `&self`.
        unsafe { &*self.base().add(i) }
    }

    /// A mutable reference to slot `i`, which must hold an entry.
    pub fn slot_mut(&mut self, i: usize) -> &mut S {
        assert!(i < self.len && self.written(i));
        self.before_write(i);
        // SAFETY: as in `slot`, and `&mut self` makes the borrow unique.
        unsafe { &mut *self.base().add(i) }
    }

    /// Writes slot `i`, its pages marked written first.
    pub fn set(&mut self, i: usize, slot: S) {
        assert!(i < self.len);
        self.before_write(i);
        if let Mem::Mapped(_, bits, _) = &mut self.mem {
            let (first, last) = pages_of::<S>(i);
            for page in [first, last] {
                bits[page / 64] |= 1 << (page % 64);
            }
        }
        // SAFETY: as in `slot`, and `&mut self` makes the write unique.
        unsafe { self.base().add(i).write(slot) };
    }

    /// The slots that hold entries, with their indices.
    fn full(&self) -> impl Iterator<Item = (usize, &S)> + Clone {
        (0..self.len)
            .filter(|&i| self.written(i))
            .map(|i| (i, self.slot_ref(i)))
            .filter(|(_, s)| !s.is_empty())
    }

    pub fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.len - 1
    }

    /// The slot `matches` accepts on `hash`'s probe, or the empty slot
    /// that ends it. Ends as long as some slot is empty.
    pub fn find(&self, hash: u64, matches: impl Fn(&S) -> bool) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let s = self.slot(i);
            if s.is_empty() {
                return Err(i);
            }
            if matches(&s) {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn empty_slot(&self, hash: u64) -> usize {
        let mask = self.mask();
        let mut i = self.home(hash);
        while !self.slot(i).is_empty() {
            i = (i + 1) & mask;
        }
        i
    }

    /// Asks the CPU for slot `i`'s cache lines. A prefetch of a page never
    /// written faults nothing in.
    fn prefetch(&self, i: usize) {
        if i < self.len {
            // SAFETY: in bounds; the pointer is only handed to a prefetch
            // hint, which reads nothing a program can see.
            prefetch_whole(unsafe { &*self.base().add(i).cast::<std::mem::MaybeUninit<S>>() });
        }
    }

    /// Writes every page now, so that none is faulted in while the shard
    /// serves: for tables sized at open. These get huge pages where the
    /// kernel has them, since a random probe into a large table of 4 KiB
    /// pages misses in the TLB too; tables that grow while serving do not,
    /// since a huge page's first touch zeroes 2 MiB at once and may wait
    /// for the kernel to compact memory (docs/experiments/growth.md).
    fn touch(&mut self) {
        if let Mem::Mapped(m, bits, _) = &mut self.mem {
            // Failures (a kernel without huge pages, or before 5.14) leave
            // the pages smaller, or to fault in as they are written.
            let _ = m.advise(memmap2::Advice::HugePage);
            let _ = m.advise_range(memmap2::Advice::PopulateWrite, 0, m.len());
            bits.fill(u64::MAX);
        }
    }

    /// Hands back the pages that lie wholly within slots `from..to`, which
    /// must all be empty: they read as zeros, and so as empty, afterwards,
    /// and are marked unwritten.
    fn release(&mut self, from: usize, to: usize) {
        let Mem::Mapped(m, bits, _) = &mut self.mem else {
            return;
        };
        let start = (from * size_of::<S>()).next_multiple_of(PAGE_BYTES);
        let end = to * size_of::<S>() / PAGE_BYTES * PAGE_BYTES;
        if end > start {
            // SAFETY: the range lies within the mapping, and every slot in
            // it is empty, which the zero pages that replace it are too.
            // No reference into the mapping outlives this `&mut self`.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
            for page in start / PAGE_BYTES..end / PAGE_BYTES {
                bits[page / 64] &= !(1 << (page % 64));
            }
        }
    }

    /// Empties slot `i` of a table that removes entries, moving back each
    /// entry of its cluster that a probe from its home would otherwise no
    /// longer reach. Moves stay within the cluster.
    fn remove_at(&mut self, mut i: usize, hash_of: &impl Fn(&S) -> u64) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slot(j);
            if s.is_empty() {
                break;
            }
            // `s` may move to `i` unless its home lies cyclically in (i, j].
            let home = self.home(hash_of(&s));
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.set(i, s);
                i = j;
            }
        }
        self.set(i, empty());
    }
}

impl<S: Slot> Clone for Slots<S> {
    fn clone(&self) -> Self {
        let mut copy = Slots::new(self.len);
        for (i, s) in self.full() {
            copy.set(i, *s);
        }
        copy
    }
}

/// An old array whose entries are moving to the new one.
#[derive(Clone)]
struct Moving<S: Slot> {
    slots: Slots<S>,
    /// A slot that was empty when the move began; it stays empty, so no
    /// cluster spans it. The move goes round from the slot after it, and
    /// ends with it, the end of the last cluster.
    start: usize,
    /// Slots visited so far, from `start` on: every cluster among them has
    /// moved, and they are all empty.
    done: usize,
    /// Of those, how many have had their pages handed back.
    released: usize,
}

impl<S: Slot> Moving<S> {
    fn new(slots: Slots<S>) -> Self {
        let start = (0..slots.len())
            .find(|&i| slots.slot(i).is_empty())
            .expect("a table is never full");
        Moving {
            slots,
            start,
            done: 0,
            released: 0,
        }
    }

    fn release_behind(&mut self, all: bool) {
        let len = self.slots.len();
        let ready = self.done - self.released;
        if !all && ready * size_of::<S>() < RELEASE_BYTES_MIN {
            return;
        }
        let from = (self.start + 1 + self.released) % len;
        let to = from + ready;
        if to <= len {
            self.slots.release(from, to);
        } else {
            self.slots.release(from, len);
            self.slots.release(0, to - len);
        }
        self.released = self.done;
    }
}

/// Where a key's slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// In the array inserts go to, at this index.
    New(usize),
    /// In the old array, not yet moved.
    Old(usize),
}

/// A table's slots: the array inserts go to, and while the table grows,
/// the old array its entries are leaving.
#[derive(Clone)]
pub(crate) struct Probed<S: Slot> {
    new: Slots<S>,
    old: Option<Moving<S>>,
    /// A checkpoint's copies of an old array that finished moving before
    /// they were handed over.
    retired: Vec<Vec<S>>,
}

impl<S: Slot> Probed<S> {
    pub fn new(len: usize) -> Self {
        Probed {
            new: Slots::new(len),
            old: None,
            retired: Vec::new(),
        }
    }

    /// Slots of the array inserts go to.
    pub fn len(&self) -> usize {
        self.new.len()
    }

    #[cfg(test)]
    pub fn is_growing(&self) -> bool {
        self.old.is_some()
    }

    /// The slot of the key `matches` accepts on `hash`'s probe, or the
    /// empty slot of the new array where it would go.
    pub fn find(&self, hash: u64, matches: impl Fn(&S) -> bool) -> Result<Found, usize> {
        match self.new.find(hash, &matches) {
            Ok(i) => Ok(Found::New(i)),
            Err(empty) => match &self.old {
                Some(old) => match old.slots.find(hash, &matches) {
                    Ok(i) => Ok(Found::Old(i)),
                    Err(_) => Err(empty),
                },
                None => Err(empty),
            },
        }
    }

    pub fn get(&self, at: Found) -> &S {
        match at {
            Found::New(i) => self.new.slot_ref(i),
            Found::Old(i) => self
                .old
                .as_ref()
                .expect("a growing table")
                .slots
                .slot_ref(i),
        }
    }

    pub fn get_mut(&mut self, at: Found) -> &mut S {
        match at {
            Found::New(i) => self.new.slot_mut(i),
            Found::Old(i) => self
                .old
                .as_mut()
                .expect("a growing table")
                .slots
                .slot_mut(i),
        }
    }

    /// Writes `slot` into the empty slot `empty` of the new array, which
    /// `find` gave.
    pub fn fill(&mut self, empty: usize, slot: S) -> Found {
        debug_assert!(self.new.slot(empty).is_empty());
        self.new.set(empty, slot);
        Found::New(empty)
    }

    /// Starts moving to a new array of `len` slots, whose empty slot for
    /// `hash` is returned. A move still under way is finished first: at
    /// [`MOVE_SLOTS_PER_INSERT`] that does not happen unless a table is
    /// sized by hand mid-move.
    pub fn grow(&mut self, len: usize, hash_of: &impl Fn(&S) -> u64) {
        self.finish(hash_of);
        let old = std::mem::replace(&mut self.new, Slots::new(len));
        self.old = Some(Moving::new(old));
    }

    /// Moves every entry to a new array of `len` slots with every page
    /// written now: for sizing a table at open, not while it serves.
    pub fn rebuild_touched(&mut self, len: usize, hash_of: &impl Fn(&S) -> u64) {
        self.grow(len, hash_of);
        self.new.touch();
        self.finish(hash_of);
    }

    pub fn finish(&mut self, hash_of: &impl Fn(&S) -> u64) {
        self.step(usize::MAX, hash_of);
    }

    /// Moves old slots to the new array, whole clusters at a time, until
    /// at least `budget` slots have been visited or none are left.
    pub fn step(&mut self, budget: usize, hash_of: &impl Fn(&S) -> u64) {
        let Some(old) = &mut self.old else {
            return;
        };
        let len = old.slots.len();
        let mask = len - 1;
        let mut visited = 0;
        while visited < budget && old.done < len {
            let mut i = (old.start + 1 + old.done) & mask;
            // A whole cluster, so that none is left half moved.
            loop {
                let slot = old.slots.slot(i);
                old.done += 1;
                visited += 1;
                if slot.is_empty() {
                    break;
                }
                let to = self.new.empty_slot(hash_of(&slot));
                self.new.set(to, slot);
                old.slots.set(i, empty());
                i = (i + 1) & mask;
            }
        }
        if old.done == len {
            old.release_behind(true);
            // A checkpoint's copies of it outlive it; its slices not yet
            // copied held nothing when the checkpoint began, or they would
            // have been copied when the move cleared them.
            if let Some(saving) = &mut old.slots.saving {
                self.retired.append(&mut saving.out);
            }
            self.old = None;
        } else {
            old.release_behind(false);
        }
    }

    /// A checkpoint begins: every entry as it is now is copied out before
    /// it changes or moves ([`Probed::checkpoint_step`]).
    pub fn begin_checkpoint(&mut self) {
        assert!(!self.is_checkpointing(), "one checkpoint at a time");
        self.new.begin_saving();
        if let Some(old) = &mut self.old {
            old.slots.begin_saving();
        }
    }

    pub fn is_checkpointing(&self) -> bool {
        self.new.saving.is_some()
            || self.old.as_ref().is_some_and(|o| o.slots.saving.is_some())
            || !self.retired.is_empty()
    }

    /// Copies up to `slices` more slices, and hands over every copy made
    /// so far, writes' copies included; whether the checkpoint's copy of
    /// this table is complete (and handed over) now.
    pub fn checkpoint_step(&mut self, slices: usize, into: &mut Vec<Vec<S>>) -> bool {
        into.append(&mut self.retired);
        let mut done = self.new.save_some(slices);
        self.new.take_saved(into);
        if let Some(old) = &mut self.old {
            done &= old.slots.save_some(slices);
            old.slots.take_saved(into);
        }
        done && !self.is_checkpointing()
    }

    /// Empties the slot at `at` of a table that removes entries.
    pub fn remove(&mut self, at: Found, hash_of: &impl Fn(&S) -> u64) {
        match at {
            Found::New(i) => self.new.remove_at(i, hash_of),
            Found::Old(i) => {
                let old = self.old.as_mut().expect("a growing table");
                old.slots.remove_at(i, hash_of);
            }
        }
    }

    /// Asks the CPU for the slots a probe for `hash` starts at.
    pub fn prefetch(&self, hash: u64) {
        self.new.prefetch(self.new.home(hash));
        if let Some(old) = &self.old {
            old.slots.prefetch(old.slots.home(hash));
        }
    }

    /// Every full slot, the new array's first.
    pub fn iter(&self) -> impl Iterator<Item = &S> + Clone {
        let old = self.old.as_ref().map(|o| o.slots.full().map(|(_, s)| s));
        self.new
            .full()
            .map(|(_, s)| s)
            .chain(old.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Key(u64);

    // SAFETY: a `u64` of zeros is valid and `is_empty` holds for it.
    unsafe impl Slot for Key {
        fn is_empty(&self) -> bool {
            self.0 == 0
        }
    }

    /// A hash that sends every key home to slot 0 or its neighbours, so
    /// that clusters are long and wrap round the end.
    fn crowded(k: &Key) -> u64 {
        (k.0 % 3) << 61
    }

    #[test]
    fn a_move_goes_cluster_by_cluster_and_finds_every_key_meanwhile() {
        let mut table = Probed::<Key>::new(64);
        for k in 1..=40 {
            let empty = table.find(crowded(&Key(k)), |s| *s == Key(k)).unwrap_err();
            table.fill(empty, Key(k));
        }
        table.grow(128, &crowded);
        let mut steps = 0;
        while table.is_growing() {
            table.step(1, &crowded);
            steps += 1;
            for k in 1..=40 {
                let at = table.find(crowded(&Key(k)), |s| *s == Key(k));
                assert_eq!(at.map(|at| *table.get(at)), Ok(Key(k)), "key {k}");
            }
            assert_eq!(table.iter().count(), 40);
        }
        // Clusters move whole, so there were fewer steps than old slots.
        assert!(steps < 64, "{steps} steps");
    }

    /// A table over `Probed` as the shard's tables use it, moving one old
    /// slot per insert so that most operations meet a move half done.
    struct Table {
        slots: Probed<Key>,
        len: usize,
        hash: fn(&Key) -> u64,
    }

    impl Table {
        fn find(&self, k: u64) -> Result<Found, usize> {
            self.slots.find((self.hash)(&Key(k)), |s| *s == Key(k))
        }

        fn insert(&mut self, k: u64) -> bool {
            let Err(empty) = self.find(k) else {
                return false;
            };
            let empty = if (self.len + 1) * 2 > self.slots.len() {
                self.slots.grow(self.slots.len() * 2, &self.hash);
                self.find(k).expect_err("absent")
            } else {
                empty
            };
            self.slots.fill(empty, Key(k));
            self.len += 1;
            self.slots.step(1, &self.hash);
            true
        }

        fn remove(&mut self, k: u64) -> bool {
            let Ok(at) = self.find(k) else {
                return false;
            };
            self.slots.remove(at, &self.hash);
            self.len -= 1;
            true
        }
    }

    fn spread(k: &Key) -> u64 {
        k.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    use proptest::prelude::*;

    proptest! {
        /// Inserts, removals and lookups against a `HashSet`, every key
        /// looked up after every step, under a hash that spreads keys and
        /// one that crowds them into long clusters wrapping round the end.
        #[test]
        fn behaves_as_a_set_while_it_grows(
            ops in prop::collection::vec((1u64..120, 0u8..4), 0..400),
            crowd in any::<bool>(),
        ) {
            let hash = if crowd { crowded } else { spread };
            let mut table = Table { slots: Probed::new(4), len: 0, hash };
            let mut model = std::collections::HashSet::new();
            let mut grew_mid_move = false;
            for &(k, op) in &ops {
                match op {
                    0 => prop_assert_eq!(table.remove(k), model.remove(&k)),
                    _ => prop_assert_eq!(table.insert(k), model.insert(k)),
                }
                grew_mid_move |= table.slots.is_growing();
                prop_assert_eq!(table.slots.iter().count(), model.len());
                for probe in 1..120 {
                    prop_assert_eq!(table.find(probe).is_ok(), model.contains(&probe), "key {}", probe);
                }
            }
            // Enough operations reach the state this is about.
            if ops.iter().filter(|o| o.1 != 0).count() > 200 {
                prop_assert!(grew_mid_move);
            }
        }
    }

    #[test]
    fn large_arrays_are_mapped_and_hand_back_what_has_moved() {
        let len = 1 << 18;
        let mut table = Probed::<Key>::new(len);
        assert!(matches!(table.new.mem, Mem::Mapped(..)));
        let hash = |k: &Key| k.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for k in 1..=(len as u64 / 2) {
            let empty = table.find(hash(&Key(k)), |s| *s == Key(k)).unwrap_err();
            table.fill(empty, Key(k));
        }
        table.grow(2 * len, &hash);
        table.step(len * 3 / 4, &hash);
        let old = table.old.as_ref().expect("still moving");
        assert!(old.released > 0 && old.released <= old.done);
        for k in 1..=(len as u64 / 2) {
            assert!(table.find(hash(&Key(k)), |s| *s == Key(k)).is_ok());
        }
        table.finish(&hash);
        assert!(!table.is_growing());
        assert_eq!(table.iter().count(), len / 2);
    }
}
