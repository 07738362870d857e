//! Units of per-user-limited SKUs that each buyer holds in live orders.
//!
//! In a flash sale every buyer's first order adds a new (SKU, account) pair
//! on the SKU's shard. In a `HashMap` that write lands on a slot whose
//! address only the map knows, and it missed in cache on almost every order:
//! over TCP it was the biggest single stall of the hot shard (BENCHMARKS.md).
//! This table keeps its entries inline in one array, probed linearly and never
//! more than half full, so the slot a pair starts at follows from its hash,
//! and a shard can prefetch it for the orders and prepares it is about to
//! run ([`PurchaseTable::prefetch`]).
//!
//! A count of zero is never stored (a pair whose units all came back is
//! removed), so a zero count marks an empty slot. Removal shifts the entries
//! after it back, so there are no tombstones and a probe always ends at the
//! first empty slot.

use super::probe::{Found, MOVE_SLOTS_PER_INSERT, Probed, Slot as ProbeSlot};
use crate::hash::keyed_hash;
use crate::types::{AccountId, Qty, SkuId};

pub(crate) type PurchaseKey = (SkuId, AccountId);

/// One cache line's worth of slots at least.
const SLOTS_MIN: usize = 4;

#[derive(Clone, Copy, Default)]
struct Slot {
    key: PurchaseKey,
    /// 0: the slot is empty.
    qty: Qty,
}

// SAFETY: zero bytes are a key and a count of zero, valid, and a count of
// zero is what `is_empty` looks for.
#[allow(unsafe_code)]
unsafe impl ProbeSlot for Slot {
    fn is_empty(&self) -> bool {
        self.qty == 0
    }
}

#[derive(Clone)]
pub(crate) struct PurchaseTable {
    /// Never more than half full.
    slots: Probed<Slot>,
    len: usize,
}

fn hash_of(key: &PurchaseKey) -> u64 {
    keyed_hash(&(key.0, key.1))
}

fn hash_of_slot(slot: &Slot) -> u64 {
    hash_of(&slot.key)
}

impl Default for PurchaseTable {
    fn default() -> Self {
        PurchaseTable {
            slots: Probed::new(SLOTS_MIN),
            len: 0,
        }
    }
}

impl PurchaseTable {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Pairs the table holds before it must grow.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len() / 2
    }

    pub fn get(&self, key: &PurchaseKey) -> Option<&Qty> {
        self.find(key).ok().map(|at| &self.slots.get(at).qty)
    }

    pub fn contains_key(&self, key: &PurchaseKey) -> bool {
        self.find(key).is_ok()
    }

    /// Counts `qty` more units (at least one) for `key`.
    pub fn add(&mut self, key: PurchaseKey, qty: Qty) {
        debug_assert!(qty > 0);
        match self.find(&key) {
            Ok(at) => self.slots.get_mut(at).qty += qty,
            Err(empty) => self.fill(empty, key, qty),
        }
    }

    /// Counts `qty` fewer units for `key`, never below zero, and forgets the
    /// pair when none are left.
    pub fn subtract(&mut self, key: &PurchaseKey, qty: Qty) {
        if let Ok(at) = self.find(key) {
            let left = self.slots.get(at).qty.saturating_sub(qty);
            if left == 0 {
                self.remove(at);
            } else {
                self.slots.get_mut(at).qty = left;
            }
        }
    }

    /// Sets the count of `key`; a count of 0 removes the pair.
    pub fn insert(&mut self, key: PurchaseKey, qty: Qty) {
        match (self.find(&key), qty) {
            (Ok(at), 0) => self.remove(at),
            (Ok(at), _) => self.slots.get_mut(at).qty = qty,
            (Err(_), 0) => {}
            (Err(empty), _) => self.fill(empty, key, qty),
        }
    }

    /// Asks the CPU for the slot `key`'s lookup starts at.
    pub fn prefetch(&self, key: &PurchaseKey) {
        self.slots.prefetch(hash_of(key));
    }

    /// Room for `entries` pairs without growing, with the memory faulted in
    /// now rather than while the shard serves.
    pub fn reserve_touched(&mut self, entries: usize) {
        if entries * 2 > self.slots.len() {
            let len = (entries * 2).next_power_of_two().max(SLOTS_MIN);
            self.slots.rebuild_touched(len, &hash_of_slot);
        }
    }

    /// A checkpoint begins: every count as it is now is copied out before
    /// it changes or moves.
    pub fn begin_checkpoint(&mut self) {
        self.slots.begin_checkpoint();
    }

    /// Copies up to `slices` more slices and hands over every copy so
    /// far; whether the copy is complete now.
    pub fn checkpoint_step(&mut self, slices: usize, into: &mut Vec<(PurchaseKey, Qty)>) -> bool {
        let mut copies = Vec::new();
        let done = self.slots.checkpoint_step(slices, &mut copies);
        into.extend(copies.iter().flatten().map(|s| (s.key, s.qty)));
        done
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PurchaseKey, &Qty)> + Clone {
        self.slots.iter().map(|s| (&s.key, &s.qty))
    }

    /// The slot holding `key`, or the empty slot where it would go. Ends
    /// because the table is never more than half full.
    fn find(&self, key: &PurchaseKey) -> Result<Found, usize> {
        self.slots.find(hash_of(key), |s| s.key == *key)
    }

    fn fill(&mut self, empty: usize, key: PurchaseKey, qty: Qty) {
        let empty = if (self.len + 1) * 2 > self.slots.len() {
            self.slots.grow(self.slots.len() * 2, &hash_of_slot);
            self.find(&key).expect_err("a new pair")
        } else {
            empty
        };
        self.slots.fill(empty, Slot { key, qty });
        self.len += 1;
        self.slots.step(MOVE_SLOTS_PER_INSERT, &hash_of_slot);
    }

    fn remove(&mut self, at: Found) {
        self.slots.remove(at, &hash_of_slot);
        self.len -= 1;
    }
}

/// Equal when both hold the same counts, wherever their slots are.
impl PartialEq for PurchaseTable {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, q)| other.get(k) == Some(q))
    }
}

impl Eq for PurchaseTable {}

impl std::fmt::Debug for PurchaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::IdMap;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Add(PurchaseKey, Qty),
        Subtract(PurchaseKey, Qty),
        Insert(PurchaseKey, Qty),
        Remove(PurchaseKey),
        Reserve(usize),
    }

    fn key() -> impl Strategy<Value = PurchaseKey> {
        (0u64..4, 0u64..40)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (key(), 1u32..5).prop_map(|(k, q)| Op::Add(k, q)),
            3 => (key(), 1u32..5).prop_map(|(k, q)| Op::Subtract(k, q)),
            1 => (key(), 0u32..5).prop_map(|(k, q)| Op::Insert(k, q)),
            1 => key().prop_map(Op::Remove),
            1 => (0usize..200).prop_map(Op::Reserve),
        ]
    }

    /// Runs `ops` on the table and on a `HashMap`, comparing every count
    /// after each step, present or not.
    fn check(ops: &[Op]) {
        let mut table = PurchaseTable::default();
        let mut model: IdMap<PurchaseKey, Qty> = IdMap::default();
        for op in ops {
            match *op {
                Op::Add(k, q) => {
                    table.add(k, q);
                    *model.entry(k).or_default() += q;
                }
                Op::Subtract(k, q) => {
                    table.subtract(&k, q);
                    if let Some(n) = model.get_mut(&k) {
                        *n = n.saturating_sub(q);
                        if *n == 0 {
                            model.remove(&k);
                        }
                    }
                }
                Op::Insert(k, 0) | Op::Remove(k) => {
                    table.insert(k, 0);
                    model.remove(&k);
                }
                Op::Insert(k, q) => {
                    table.insert(k, q);
                    model.insert(k, q);
                }
                Op::Reserve(n) => table.reserve_touched(n),
            }
            assert_eq!(table.len(), model.len());
            assert!(table.capacity() >= table.len());
            for sku in 0..4 {
                for account in 0..40 {
                    let k = (sku, account);
                    assert_eq!(table.get(&k), model.get(&k), "{k:?} after {op:?}");
                }
            }
        }
        assert_eq!(table.iter().count(), model.len());
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(op(), 0..300)) {
            check(&ops);
        }
    }

    #[test]
    fn removal_keeps_every_other_pair_reachable() {
        // Fill a table to its bound, so probe runs are long and wrap around
        // the end, then remove every other pair and look up the rest.
        let mut table = PurchaseTable::default();
        table.reserve_touched(64);
        let keys: Vec<PurchaseKey> = (0..64).map(|i| (i % 3, i)).collect();
        for &k in &keys {
            table.add(k, 2);
        }
        assert_eq!(table.len(), 64);
        for k in keys.iter().step_by(2) {
            table.subtract(k, 2);
        }
        for (n, k) in keys.iter().enumerate() {
            let want = if n % 2 == 0 { None } else { Some(&2) };
            assert_eq!(table.get(k), want, "{k:?}");
        }
        assert_eq!(table.len(), 32);
    }

    #[test]
    fn a_full_table_doubles() {
        let mut table = PurchaseTable::default();
        crate::shard::assert_grows_by_doubling(1_000, |i| {
            table.add((1, i), 1);
            table.capacity()
        });
    }

    #[test]
    fn compares_by_content() {
        let mut a = PurchaseTable::default();
        let mut b = PurchaseTable::default();
        b.reserve_touched(100);
        for i in 0..20 {
            a.add((1, i), 1);
            b.add((1, 19 - i), 1);
        }
        assert_eq!(a, b);
        a.add((1, 3), 1);
        assert_ne!(a, b);
    }
}
