//! The account table: every account a shard holds, inline in one array.
//!
//! Every order reads and writes its buyer's account, and with a million
//! accounts the table is larger than the last-level cache. In a `HashMap`
//! a lookup reads the control bytes first and the slot after them, two
//! misses in a row whose addresses only the map knows, so `warm` had to run
//! the whole lookup to bring an account in. Here the accounts sit inline,
//! probed linearly from a slot that follows from the id's hash alone, and
//! [`AccountTable::prefetch`] asks for it without waiting (BENCHMARKS.md,
//! "Accounts inline").
//!
//! Accounts are never removed, so a probe ends at the first empty slot. An
//! empty slot is marked by a `newest` link that no order has: a shard
//! holds fewer orders than `u32::MAX` (see `order_table`), so no account's
//! newest order is at `u32::MAX`.

use std::num::NonZeroU32;

use super::Account;
use super::order_table::{Link, ORDERS_PER_SHARD_MAX};
use super::probe::{Found, MOVE_SLOTS_PER_INSERT, Probed, Slot};
use crate::hash::keyed_hash;
use crate::types::AccountId;

const _: () = assert!(
    ORDERS_PER_SHARD_MAX < u32::MAX as usize,
    "the last link must stay free to mark empty slots"
);

/// An account's newest order, stored as the complement of its link, so
/// that zero bytes (a fresh page) read as the link no order has
/// (`u32::MAX`): an empty slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Newest(u32);

impl Newest {
    pub fn get(self) -> Link {
        NonZeroU32::new(!self.0)
    }

    pub fn set(&mut self, link: Link) {
        debug_assert!(
            link.is_none_or(|l| l.get() != u32::MAX),
            "no order has the last link"
        );
        self.0 = !link.map_or(0, NonZeroU32::get);
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for Newest {
    fn default() -> Self {
        Newest(!0)
    }
}

impl std::fmt::Debug for Newest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

type AccountSlot = (AccountId, Account);

// SAFETY: zero bytes are an id, a balance and a `Newest` of zero, all
// valid, and a `Newest` of zero is what `is_empty` looks for.
#[allow(unsafe_code)]
unsafe impl Slot for AccountSlot {
    fn is_empty(&self) -> bool {
        self.1.newest.is_empty()
    }
}

/// One cache line's worth of slots, and more.
const SLOTS_MIN: usize = 4;

/// The table grows when it would be fuller than 3/4: just after growing
/// it is 3/8 full, 64 bytes an account at 24-byte slots, the memory target.
fn over_full(entries: usize, slots: usize) -> bool {
    entries as u128 * 4 > slots as u128 * 3
}

#[derive(Clone)]
pub(crate) struct AccountTable {
    slots: Probed<AccountSlot>,
    len: usize,
}

const _: () = assert!(std::mem::size_of::<(AccountId, Account)>() == 24);

fn hash_of(id: AccountId) -> u64 {
    keyed_hash(&id)
}

fn hash_of_slot(slot: &AccountSlot) -> u64 {
    hash_of(slot.0)
}

/// The fewest slots that hold `entries` accounts.
fn slots_for(entries: usize) -> usize {
    let mut len = SLOTS_MIN;
    while over_full(entries, len) {
        len = len
            .checked_mul(2)
            .expect("an account table that fits memory");
    }
    len
}

impl Default for AccountTable {
    fn default() -> Self {
        AccountTable {
            slots: Probed::new(SLOTS_MIN),
            len: 0,
        }
    }
}

impl AccountTable {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Accounts the table holds before it must grow.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len() * 3 / 4
    }

    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.find(*id).ok().map(|at| &self.slots.get(at).1)
    }

    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut Account> {
        let at = self.find(*id).ok()?;
        Some(&mut self.slots.get_mut(at).1)
    }

    /// The account `id`, opened with nothing in it if it is new.
    pub fn get_or_insert(&mut self, id: AccountId) -> &mut Account {
        let at = match self.find(id) {
            Ok(at) => at,
            Err(empty) => self.fill(empty, id, Account::default()),
        };
        &mut self.slots.get_mut(at).1
    }

    /// Puts `account` under `id`, handing back any account it replaces.
    pub fn insert(&mut self, id: AccountId, account: Account) -> Option<Account> {
        debug_assert!(!account.newest.is_empty(), "no order has the last link");
        match self.find(id) {
            Ok(at) => Some(std::mem::replace(&mut self.slots.get_mut(at).1, account)),
            Err(empty) => {
                self.fill(empty, id, account);
                None
            }
        }
    }

    /// Asks the CPU for the slot `id`'s lookup starts at, all of it.
    pub fn prefetch(&self, id: &AccountId) {
        self.slots.prefetch(hash_of(*id));
    }

    /// Room for `entries` accounts without growing, with the memory
    /// written now rather than faulted in while the shard serves.
    pub fn reserve_touched(&mut self, entries: usize) {
        if over_full(entries, self.slots.len()) {
            self.slots
                .rebuild_touched(slots_for(entries), &hash_of_slot);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&AccountId, &Account)> + Clone {
        self.slots.iter().map(|(id, a)| (id, a))
    }

    /// A checkpoint begins: every account as it is now is copied out
    /// before it changes or moves.
    pub fn begin_checkpoint(&mut self) {
        self.slots.begin_checkpoint();
    }

    /// Copies up to `slices` more slices and hands over every copy so far
    /// as (id, balance); whether the copy is complete now.
    pub fn checkpoint_step(&mut self, slices: usize, into: &mut Vec<(AccountId, u64)>) -> bool {
        let mut copies = Vec::new();
        let done = self.slots.checkpoint_step(slices, &mut copies);
        into.extend(copies.iter().flatten().map(|(id, a)| (*id, a.balance)));
        done
    }

    pub fn values(&self) -> impl Iterator<Item = &Account> {
        self.iter().map(|(_, a)| a)
    }

    /// Finishes any move under way.
    #[cfg(test)]
    fn settle(&mut self) {
        self.slots.finish(&hash_of_slot);
    }

    /// Slots a lookup of `id` visits in the array inserts go to: the
    /// tests count probes, not time.
    #[cfg(test)]
    fn probes(&self, id: AccountId) -> usize {
        let n = std::cell::Cell::new(0);
        let _ = self.slots.find(hash_of(id), |s| {
            n.set(n.get() + 1);
            s.0 == id
        });
        n.get()
    }

    /// The slot holding `id`, or the empty slot where it would go.
    fn find(&self, id: AccountId) -> Result<Found, usize> {
        self.slots.find(hash_of(id), |s| s.0 == id)
    }

    fn fill(&mut self, empty: usize, id: AccountId, account: Account) -> Found {
        let empty = if over_full(self.len + 1, self.slots.len()) {
            self.slots.grow(self.slots.len() * 2, &hash_of_slot);
            self.find(id).expect_err("a new account")
        } else {
            empty
        };
        let at = self.slots.fill(empty, (id, account));
        self.len += 1;
        // Moves only old slots into other empty slots of the new array:
        // `at` stays where it is.
        self.slots.step(MOVE_SLOTS_PER_INSERT, &hash_of_slot);
        at
    }
}

/// Equal when both hold the same accounts, wherever their slots are.
impl PartialEq for AccountTable {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(id, a)| other.get(id) == Some(a))
    }
}

impl Eq for AccountTable {}

impl std::fmt::Debug for AccountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::IdMap;

    /// The hash this table used before it was keyed: a fixed multiply and
    /// shift whose constant anyone can read, and so invert.
    fn old_hash(id: u64) -> u64 {
        let h = id.wrapping_mul(0x517C_C1B7_2722_0A95);
        h ^ (h >> 29)
    }

    /// `n` ids whose old hashes share their top 40 bits, and so their home
    /// slot in any table of up to 2^40 slots.
    fn colliding_ids(n: u64) -> Vec<u64> {
        // The multiplier's inverse modulo 2^64, by Newton's iteration.
        let m: u64 = 0x517C_C1B7_2722_0A95;
        let mut inv = m;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        }
        (0..n)
            .map(|i| {
                let f = (0xAB_CDEF_0123u64 << 24) | i;
                // Undo `h ^ h >> 29`, then the multiply.
                let h = f ^ (f >> 29) ^ (f >> 58);
                h.wrapping_mul(inv)
            })
            .collect()
    }

    /// Probes of every lookup in a linear-probing table of `slots` slots
    /// homed by the top bits of `hash`, as this table probes.
    fn simulated_probes(ids: &[u64], slots: usize, hash: fn(u64) -> u64) -> usize {
        let shift = 64 - slots.trailing_zeros();
        let mut table = vec![None; slots];
        let mut probes = 0;
        for &id in ids {
            let mut i = (hash(id) >> shift) as usize;
            probes += 1;
            while table[i].is_some() {
                i = (i + 1) % slots;
                probes += 1;
            }
            table[i] = Some(id);
        }
        probes
    }

    #[test]
    fn ids_chosen_to_collide_cost_no_more_probes_than_random_ids() {
        let n = 4_000;
        let hostile = colliding_ids(n);
        let home = old_hash(hostile[0]) >> 24;
        assert!(hostile.iter().all(|&id| old_hash(id) >> 24 == home));
        let mut rng = crate::workload::Rng::new(7);
        let random: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        // Under the old hash these ids pile onto one slot: each insert
        // walks all those before it.
        let old_hostile = simulated_probes(&hostile, 8_192, old_hash);
        let old_random = simulated_probes(&random, 8_192, old_hash);
        assert!(
            old_hostile > 100 * old_random,
            "{old_hostile} vs {old_random}"
        );
        // Under the keyed hash they cost what random ids cost.
        let probes = |ids: &[u64]| {
            let mut t = AccountTable::default();
            for &id in ids {
                t.get_or_insert(id);
            }
            t.settle();
            ids.iter().map(|&id| t.probes(id)).sum::<usize>()
        };
        let (hostile, random) = (probes(&hostile), probes(&random));
        assert!(hostile <= 2 * random, "{hostile} probes against {random}");
    }
    use proptest::prelude::*;

    fn account(n: u64) -> Account {
        let mut a = Account {
            balance: n,
            ..Account::default()
        };
        a.newest.set(NonZeroU32::new(n as u32 % 7));
        a
    }

    proptest! {
        /// The table against a `HashMap`: deposits, replacements, lookups
        /// of ids held and not held, with a reservation somewhere between.
        #[test]
        fn behaves_as_a_map(
            ops in prop::collection::vec((0u64..300, any::<bool>()), 0..600),
            reserve_at in prop::option::of((0usize..600, 0usize..2_000)),
        ) {
            let mut table = AccountTable::default();
            let mut model: IdMap<AccountId, Account> = IdMap::default();
            for (n, &(id, replace)) in ops.iter().enumerate() {
                if let Some((at, entries)) = reserve_at && at == n {
                    table.reserve_touched(entries);
                    prop_assert!(table.capacity() >= entries);
                }
                // Ids spread over the whole range too, not only small ones.
                let id = if id % 3 == 0 { id.wrapping_mul(0x9e37_79b9_7f4a_7c15) } else { id };
                if replace {
                    prop_assert_eq!(table.insert(id, account(n as u64)), model.insert(id, account(n as u64)));
                } else {
                    table.get_or_insert(id).balance += 1;
                    model.entry(id).or_default().balance += 1;
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.capacity() >= table.len());
                // Right while a move is under way too: every id so far.
                for &(other, _) in &ops[..=n] {
                    let other = if other % 3 == 0 { other.wrapping_mul(0x9e37_79b9_7f4a_7c15) } else { other };
                    prop_assert_eq!(table.get(&other), model.get(&other));
                }
            }
            for (id, a) in &model {
                prop_assert_eq!(table.get(id), Some(a));
            }
            prop_assert_eq!(table.get(&u64::MAX), model.get(&u64::MAX));
            let mut listed: Vec<_> = table.iter().map(|(&id, &a)| (id, a)).collect();
            listed.sort_by_key(|&(id, _)| id);
            let mut want: Vec<_> = model.into_iter().collect();
            want.sort_by_key(|&(id, _)| id);
            prop_assert_eq!(listed, want);
        }
    }

    #[test]
    fn a_full_table_doubles() {
        let mut table = AccountTable::default();
        crate::shard::assert_grows_by_doubling(1_000, |i| {
            table.get_or_insert(i);
            table.capacity()
        });
    }

    #[test]
    fn compares_by_content_and_finds_an_id_of_zero() {
        let mut a = AccountTable::default();
        let mut b = AccountTable::default();
        b.reserve_touched(1_000);
        for id in 0..50u64 {
            a.get_or_insert(id).balance = id;
            b.get_or_insert(49 - id).balance = 49 - id;
        }
        assert_eq!(a, b, "same accounts in tables of other sizes");
        assert_eq!(a.get(&0), Some(&Account::default()));
        a.get_mut(&3).expect("held").balance += 1;
        assert_ne!(a, b);
        assert!(a.get_mut(&50).is_none());
    }
}
