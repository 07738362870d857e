//! The order table: every order a shard holds, found by its key.
//!
//! Orders are never removed, and almost every order on the hot path is a new
//! key. In a `HashMap` sized for millions, a new key's whole entry (about 80
//! bytes) is written at a random slot: a cache miss, often a TLB miss too,
//! that nothing can start early, because the slot's address stays inside the
//! map. A profile of the 1-line state-machine bench put over half its samples
//! in that insert (BENCHMARKS.md).
//!
//! Here the orders sit in an append-only arena in the order they were
//! placed, so a new order lands next to the one before it. A key is found
//! through an index of 8-byte slots, each a 32-bit tag of the key's hash and
//! the order's arena position, probed linearly and never more than half full:
//! eight slots share a cache line, so a probe seldom leaves its first line,
//! and that line's address follows from the hash alone. A shard can
//! therefore ask for it ahead of the orders it is about to run
//! ([`OrderTable::prefetch`]). The arena grows a chunk at a time, so growing
//! never copies the orders already placed.
//!
//! The table also keeps each account's orders as a list, newest first, for
//! `list_orders`: beside every order, the [`Link`] to the order its account
//! placed before it; the account holds the link to its newest. A new
//! order's link is written next to the one placed just before it, a line
//! already in cache, where a list of ids per account costs a cache miss on
//! every order and a reallocation into fresh memory on every doubling
//! (BENCHMARKS.md, "Why this bench spreads so widely").

use std::num::NonZeroU32;
use std::ops::Index;

use super::Order;
use super::probe::{MOVE_SLOTS_PER_INSERT, Probed, Slot};
use crate::hash::keyed_hash;
use crate::types::OrderKey;

/// Orders per arena chunk: about 1.3 MB of entries, so a new chunk is rare
/// and the last one wastes little.
const CHUNK_BITS: u32 = 14;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// One cache line of slots.
const INDEX_SLOTS_MIN: usize = 8;
/// An index slot holds an arena position plus one in 32 bits, and 0 marks an
/// empty slot. Long before a shard holds this many orders it has run out of
/// memory (at 80 bytes an order, 340 GB), so reaching it is a bug.
pub(crate) const ORDERS_PER_SHARD_MAX: usize = u32::MAX as usize - 1;

/// Where an order sits in its shard's table: its arena position plus one,
/// so that "no order" costs no space. Positions never change, since orders
/// are neither removed nor moved.
pub(crate) type Link = Option<NonZeroU32>;

const _: () = assert!(std::mem::size_of::<(OrderKey, Order)>() == 72);

#[derive(Clone)]
pub(crate) struct OrderTable {
    /// At least twice `len` slots. A slot is 0 when empty, else the hash's
    /// low 32 bits above the arena position plus one. A key's first slot
    /// is its hash's top bits, which the tag (the low bits) does not repeat.
    index: Probed<u64>,
    /// Chunk `c` holds positions `c * CHUNK_LEN ..`; all but the last are full.
    chunks: Vec<Vec<(OrderKey, Order)>>,
    /// Beside each order, in chunks of the same shape, the link to the order
    /// its account placed before it (0 for none): kept apart so the orders'
    /// entries stay 72 bytes.
    older: Vec<Vec<u32>>,
    len: usize,
    /// While a checkpoint runs: the orders it must see as they were.
    saving: Option<ArenaSaving>,
}

/// Orders a checkpoint copies at once: 64 entries of 72 bytes, about the
/// page of `probe::CHECKPOINT_SLICE_BYTES`.
#[cfg(not(test))]
const SLICE_ORDERS: usize = 64;
/// A few orders, in tests, so that small tables span many slices.
#[cfg(test)]
const SLICE_ORDERS: usize = 8;
const _: () = assert!(CHUNK_LEN % SLICE_ORDERS == 0);

/// A checkpoint's copy-on-write state for the arena. Orders placed after
/// it began are not its business; of those before, each slice is copied
/// before its first change, or by the checkpoint's own steps.
#[derive(Clone, Debug)]
struct ArenaSaving {
    /// Orders the table held when the checkpoint began.
    len: usize,
    saved: Vec<bool>,
    next: usize,
    out: Vec<(usize, Vec<(OrderKey, Order)>)>,
}

fn hash_of(key: &OrderKey) -> u64 {
    keyed_hash(key)
}

fn slot(hash: u64, position: usize) -> u64 {
    (hash << 32) | (position as u64 + 1)
}

// SAFETY: a zero `u64` is valid, and 0 is what `is_empty` looks for.
#[allow(unsafe_code)]
unsafe impl Slot for u64 {
    fn is_empty(&self) -> bool {
        *self == 0
    }
}

fn position(slot: u64) -> usize {
    (slot as u32 - 1) as usize
}

/// An index slot's full hash, which moving it needs and the slot keeps
/// only the low half of: from its order's key, in the arena.
fn rehash(chunks: &[Vec<(OrderKey, Order)>]) -> impl Fn(&u64) -> u64 + '_ {
    |s| hash_of(&entry_in(chunks, position(*s)).0)
}

fn entry_in(chunks: &[Vec<(OrderKey, Order)>], at: usize) -> &(OrderKey, Order) {
    &chunks[at >> CHUNK_BITS][at & (CHUNK_LEN - 1)]
}

impl Default for OrderTable {
    fn default() -> Self {
        OrderTable {
            index: Probed::new(INDEX_SLOTS_MIN),
            chunks: Vec::new(),
            older: Vec::new(),
            len: 0,
            saving: None,
        }
    }
}

impl OrderTable {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Orders the table holds before its index must grow.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.index.len() / 2
    }

    /// The link to the order its account placed before `key`'s, if the
    /// table holds `key`'s order (`Some(None)` when it was the first).
    pub fn older_than(&self, key: &OrderKey) -> Option<Link> {
        let at = self.find(key, hash_of(key)).ok()?;
        Some(self.older_at(at))
    }

    /// The order at `link` and those its account placed before it, newest
    /// first.
    pub fn walk_older(&self, link: Link) -> impl Iterator<Item = (&OrderKey, &Order)> + '_ {
        std::iter::successors(link, |at| self.older_at(at.get() as usize - 1)).map(|at| {
            let (key, order) = self.entry(at.get() as usize - 1);
            (key, order)
        })
    }

    fn older_at(&self, at: usize) -> Link {
        NonZeroU32::new(self.older[at >> CHUNK_BITS][at & (CHUNK_LEN - 1)])
    }

    pub fn get(&self, key: &OrderKey) -> Option<&Order> {
        let at = self.find(key, hash_of(key)).ok()?;
        Some(&self.entry(at).1)
    }

    pub fn get_mut(&mut self, key: &OrderKey) -> Option<&mut Order> {
        let at = self.find(key, hash_of(key)).ok()?;
        self.save_slice(at / SLICE_ORDERS);
        Some(&mut self.chunks[at >> CHUNK_BITS][at & (CHUNK_LEN - 1)].1)
    }

    /// Adds `order` under `key`, after `older`, the link to the order its
    /// account placed last, and returns the new order's link. A key the
    /// table already holds is refused, and `order` handed back.
    pub fn insert(
        &mut self,
        key: OrderKey,
        order: Order,
        older: Link,
    ) -> Result<NonZeroU32, Order> {
        let hash = hash_of(&key);
        let empty = match self.find(&key, hash) {
            Ok(_) => return Err(order),
            Err(empty) => empty,
        };
        assert!(
            self.len < ORDERS_PER_SHARD_MAX,
            "a shard holds at most {ORDERS_PER_SHARD_MAX} orders"
        );
        let empty = if (self.len + 1) * 2 > self.index.len() {
            self.index.grow(self.index.len() * 2, &rehash(&self.chunks));
            self.find(&key, hash).expect_err("a new key")
        } else {
            empty
        };
        self.index.fill(empty, slot(hash, self.len));
        self.push((key, order), older.map_or(0, NonZeroU32::get));
        self.index
            .step(MOVE_SLOTS_PER_INSERT, &rehash(&self.chunks));
        Ok(NonZeroU32::new(self.len as u32).expect("one more than the new order's position"))
    }

    /// Asks the CPU for the index line `key`'s lookup or insert will read
    /// first, so a later call finds it in cache.
    pub fn prefetch(&self, key: &OrderKey) {
        self.index.prefetch(hash_of(key));
    }

    /// Room for `additional` more orders without growing the index or
    /// allocating a chunk.
    pub fn reserve(&mut self, additional: usize) {
        let want = self.len.saturating_add(additional);
        if want * 2 > self.index.len() {
            self.rebuild_index(want * 2);
        }
        let chunks = want.div_ceil(CHUNK_LEN);
        if let (Some(first), Some(older)) = (self.chunks.first_mut(), self.older.first_mut()) {
            first.reserve_exact(want.min(CHUNK_LEN) - first.len());
            older.reserve_exact(want.min(CHUNK_LEN) - older.len());
        } else if want > 0 {
            self.chunks.push(Vec::with_capacity(want.min(CHUNK_LEN)));
            self.older.push(Vec::with_capacity(want.min(CHUNK_LEN)));
        }
        while self.chunks.len() < chunks {
            self.chunks.push(Vec::with_capacity(CHUNK_LEN));
            self.older.push(Vec::with_capacity(CHUNK_LEN));
        }
    }

    /// `reserve`, with every page of the reserved memory faulted in now:
    /// the index is always built touched, and the arena's spare room is
    /// filled with `placeholder` and emptied again.
    pub fn reserve_touched(&mut self, entries: usize, placeholder: impl Fn() -> (OrderKey, Order)) {
        self.reserve(entries.saturating_sub(self.len));
        for chunk in &mut self.chunks {
            let live = chunk.len();
            while chunk.len() < chunk.capacity() {
                chunk.push(placeholder());
            }
            chunk.truncate(live);
        }
        for older in &mut self.older {
            let live = older.len();
            older.resize(older.capacity(), 0);
            older.truncate(live);
        }
    }

    /// A checkpoint begins: each order placed so far is copied out, as it
    /// is now, before it changes ([`OrderTable::checkpoint_step`]). The
    /// index is not copied: loading rebuilds it.
    pub fn begin_checkpoint(&mut self) {
        assert!(self.saving.is_none(), "one checkpoint at a time");
        let slices = self.len.div_ceil(SLICE_ORDERS);
        self.saving = Some(ArenaSaving {
            len: self.len,
            saved: vec![false; slices],
            next: 0,
            out: Vec::new(),
        });
    }

    /// Copies up to `slices` more slices and hands over every copy so
    /// far, each with the position of its first order; whether the copy
    /// is complete now.
    pub fn checkpoint_step(
        &mut self,
        slices: usize,
        into: &mut Vec<(usize, Vec<(OrderKey, Order)>)>,
    ) -> bool {
        for _ in 0..slices {
            let Some(saving) = self.saving.as_mut() else {
                break;
            };
            if saving.next == saving.saved.len() {
                break;
            }
            let k = saving.next;
            saving.next += 1;
            self.save_slice(k);
        }
        let Some(saving) = self.saving.as_mut() else {
            return true;
        };
        // Slices next to each other go as one: the writer makes a part of
        // each, and the steps copy slices in order.
        saving.out.sort_unstable_by_key(|(first, _)| *first);
        for (first, orders) in saving.out.drain(..) {
            match into.last_mut() {
                Some((at, run)) if *at + run.len() == first => run.extend(orders),
                _ => into.push((first, orders)),
            }
        }
        let done = saving.next == saving.saved.len();
        if done {
            self.saving = None;
        }
        done
    }

    fn save_slice(&mut self, k: usize) {
        let Some(saving) = self.saving.as_mut() else {
            return;
        };
        if k >= saving.saved.len() || saving.saved[k] {
            return;
        }
        saving.saved[k] = true;
        let from = k * SLICE_ORDERS;
        let to = ((k + 1) * SLICE_ORDERS).min(saving.len);
        let copy = (from..to)
            .map(|at| entry_in(&self.chunks, at).clone())
            .collect();
        saving.out.push((from, copy));
    }

    /// Every order, in the order they were placed.
    pub fn iter(&self) -> impl Iterator<Item = (&OrderKey, &Order)> + Clone {
        self.chunks.iter().flatten().map(|(k, o)| (k, o))
    }

    pub fn values(&self) -> impl Iterator<Item = &Order> {
        self.iter().map(|(_, o)| o)
    }

    fn entry(&self, at: usize) -> &(OrderKey, Order) {
        entry_in(&self.chunks, at)
    }

    fn push(&mut self, entry: (OrderKey, Order), older: u32) {
        let chunk = self.len >> CHUNK_BITS;
        if chunk == self.chunks.len() {
            // The first chunk grows as it fills, so a small shard stays small.
            let room = if chunk == 0 { 0 } else { CHUNK_LEN };
            self.chunks.push(Vec::with_capacity(room));
            self.older.push(Vec::with_capacity(room));
        }
        self.chunks[chunk].push(entry);
        self.older[chunk].push(older);
        self.len += 1;
    }

    /// The arena position of `key`, or the empty index slot where it
    /// would go. Ends because the index is never more than half full.
    fn find(&self, key: &OrderKey, hash: u64) -> Result<usize, usize> {
        let tag = hash as u32;
        let chunks = &self.chunks;
        let at = self.index.find(hash, |&s| {
            (s >> 32) as u32 == tag && entry_in(chunks, position(s)).0 == *key
        })?;
        Ok(position(*self.index.get(at)))
    }

    /// An index of at least `slots` slots, every page written now, filled
    /// from the arena: for sizing at open.
    fn rebuild_index(&mut self, slots: usize) {
        let len = slots.next_power_of_two().max(INDEX_SLOTS_MIN);
        self.index.rebuild_touched(len, &rehash(&self.chunks));
    }
}

impl Index<&OrderKey> for OrderTable {
    type Output = Order;

    fn index(&self, key: &OrderKey) -> &Order {
        self.get(key).expect("an order in the table")
    }
}

/// Equal when both hold the same orders at the same positions, linked
/// alike: what two shards that applied the same records hold, and what a
/// snapshot restores, since it lists orders in the order they were placed.
/// Accounts name their newest order by position, so equal accounts need
/// equal positions too.
impl PartialEq for OrderTable {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.iter().eq(other.iter())
            && self.older.iter().flatten().eq(other.older.iter().flatten())
    }
}

impl Eq for OrderTable {}

impl std::fmt::Debug for OrderTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::IdMap;
    use crate::order_lines::OrderLines;
    use crate::types::{Line, OrderState};
    use proptest::prelude::*;

    fn order(n: u64) -> Order {
        Order {
            lines: OrderLines::collect(
                [Line {
                    sku: n,
                    qty: 1,
                    unit_price: 10,
                }]
                .into_iter(),
            ),
            state: OrderState::Reserved,
            created_at: n,
            ttl_ms: 0,
            restocked: false,
            fingerprint: n,
        }
    }

    /// The table against a `HashMap` after every step: what it finds,
    /// what it misses, how many it holds and what `insert` refuses; and at
    /// the end each account's orders, walked newest first from the link
    /// its last insert returned, against the order they were placed in.
    fn check_against_map(ops: &[(u64, u128)], reserve_at: Option<usize>) {
        let mut table = OrderTable::default();
        let mut model: IdMap<OrderKey, Order> = IdMap::default();
        let mut newest: IdMap<u64, Link> = IdMap::default();
        let mut placed: IdMap<u64, Vec<OrderKey>> = IdMap::default();
        for (n, &(account, id)) in ops.iter().enumerate() {
            if reserve_at == Some(n) {
                table.reserve_touched(table.len() + 3 * CHUNK_LEN / 2, || {
                    (OrderKey::new(0, 0), order(u64::MAX))
                });
            }
            let key = OrderKey::new(account, id);
            let o = order(n as u64);
            let last = newest.entry(account).or_default();
            match table.insert(key, o.clone(), *last) {
                Ok(link) => {
                    assert!(model.insert(key, o).is_none(), "{key:?} accepted twice");
                    *last = Some(link);
                    placed.entry(account).or_default().push(key);
                }
                Err(refused) => {
                    assert_eq!(refused, o, "the refused order handed back");
                    assert!(model.contains_key(&key), "{key:?} refused but new");
                }
            }
            assert_eq!(table.len(), model.len());
            assert!(table.capacity() >= table.len());
        }
        for (k, o) in &model {
            assert_eq!(table.get(k), Some(o));
            assert_eq!(&table[k], o);
        }
        for &(account, id) in ops {
            let absent = OrderKey::new(account, id ^ (1 << 100));
            assert_eq!(table.get(&absent), model.get(&absent));
            assert_eq!(table.older_than(&absent), None);
        }
        assert_eq!(table.iter().count(), model.len());
        for (account, keys) in &placed {
            let walked: Vec<OrderKey> =
                table.walk_older(newest[account]).map(|(k, _)| *k).collect();
            let newest_first: Vec<OrderKey> = keys.iter().rev().copied().collect();
            assert_eq!(walked, newest_first, "account {account}");
            // From the newest order's key, the walk goes on with the ones before it.
            let second = table.older_than(&keys[keys.len() - 1]).expect("held");
            let rest: Vec<OrderKey> = table.walk_older(second).map(|(k, _)| *k).collect();
            assert_eq!(rest, newest_first[1..]);
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(
            ops in prop::collection::vec((0u64..50, 0u128..20), 0..400),
            reserve_at in prop::option::of(0usize..400),
        ) {
            check_against_map(&ops, reserve_at);
        }
    }

    #[test]
    fn holds_many_orders_across_chunks_and_index_growth() {
        // Keys that share an account and differ only in the id's high half,
        // and the reverse, so a weak hash would pile them onto few slots.
        let ops: Vec<(u64, u128)> = (0..3 * CHUNK_LEN as u64)
            .map(|i| {
                if i % 2 == 0 {
                    (7, u128::from(i) << 64)
                } else {
                    (i, 1)
                }
            })
            .collect();
        check_against_map(&ops, None);
        check_against_map(&ops, Some(CHUNK_LEN / 2));
    }

    #[test]
    fn keeps_orders_in_the_order_they_were_placed() {
        let mut table = OrderTable::default();
        for i in (0..100u64).rev() {
            table.insert(OrderKey::new(i, 0), order(i), None).unwrap();
        }
        let accounts: Vec<u64> = table.iter().map(|(k, _)| k.account).collect();
        assert_eq!(accounts, (0..100u64).rev().collect::<Vec<_>>());
    }

    #[test]
    fn a_full_index_doubles() {
        let mut table = OrderTable::default();
        crate::shard::assert_grows_by_doubling(1_000, |i| {
            table.insert(OrderKey::new(i, 1), order(i), None).unwrap();
            table.capacity()
        });
    }

    #[test]
    fn changes_an_order_in_place_and_compares_by_position_and_link() {
        let mut a = OrderTable::default();
        let mut b = OrderTable::default();
        let mut c = OrderTable::default();
        let mut reversed = OrderTable::default();
        for i in 0..50u64 {
            a.insert(OrderKey::new(i, 1), order(i), None).unwrap();
            b.insert(OrderKey::new(i, 1), order(i), None).unwrap();
            let older = (i > 0).then(|| NonZeroU32::new(i as u32)).flatten();
            c.insert(OrderKey::new(i, 1), order(i), older).unwrap();
            reversed
                .insert(OrderKey::new(49 - i, 1), order(49 - i), None)
                .unwrap();
        }
        assert_eq!(a, b);
        assert_ne!(a, c, "same orders, linked otherwise");
        assert_ne!(a, reversed, "same orders at other positions");
        a.get_mut(&OrderKey::new(3, 1)).expect("placed").state = OrderState::Paid;
        assert_ne!(a, b);
        assert_eq!(a[&OrderKey::new(3, 1)].state, OrderState::Paid);
        assert!(a.get_mut(&OrderKey::new(3, 2)).is_none());
        b.insert(OrderKey::new(50, 1), order(50), None).unwrap();
        assert_ne!(a, b, "another length");
    }

    #[test]
    fn reserving_touched_adds_no_order_and_keeps_the_live_ones() {
        let mut table = OrderTable::default();
        let mut older = None;
        for i in 0..10u64 {
            older = Some(
                table
                    .insert(OrderKey::new(1, i.into()), order(i), older)
                    .unwrap(),
            );
        }
        let before = table.clone();
        table.reserve_touched(2 * CHUNK_LEN + 5, || (OrderKey::new(1, 0), order(99)));
        assert_eq!(table, before);
        assert_eq!(table.len(), 10);
        assert!(table.capacity() >= 2 * CHUNK_LEN + 5);
        assert_eq!(table.chunks.len(), 3, "every reserved chunk allocated");
        assert!(table.chunks.iter().all(|c| c.capacity() == CHUNK_LEN));
        assert!(table.older.iter().all(|c| c.capacity() == CHUNK_LEN));
        assert_eq!(
            table[&OrderKey::new(1, 0)],
            order(0),
            "no placeholder found"
        );
        assert_eq!(table.walk_older(older).count(), 10, "links kept");
    }
}
