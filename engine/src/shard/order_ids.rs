//! An account's order ids, ascending, in one machine word.
//!
//! Most buyers in a sale place one order, and clients number orders with
//! small counters. So the first id, when it is below 2^63, is held in the
//! word itself: a buyer's first order allocates nothing, where a list would
//! allocate a block and touch one more cache line on the order path
//! (callgrind put the list's first growth at about 135 instructions). From
//! the second id on, or for a large first id, the word is a `ThinVec`: one
//! pointer, with length and capacity in the allocation, so an account stays
//! at 16 bytes where a `Vec` would add 24 to every entry of the account table.

#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

use thin_vec::ThinVec;

use crate::prefetch::prefetch;
use crate::types::OrderId;

/// An id as two halves, high first, so halves compare as numbers and align
/// to 8: mimalloc serves a 16-aligned `u128` buffer by a slower path, which
/// callgrind showed costing about 270 instructions per order.
type Halves = [u64; 2];

fn halves(id: OrderId) -> Halves {
    [(id >> 64) as u64, id as u64]
}

fn whole([hi, lo]: Halves) -> OrderId {
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The word: with its low bit set, one id (`word >> 1`); with it clear, a
/// `ThinVec`, whose pointer is at least 8-aligned and so has that bit clear.
union Word {
    inline: usize,
    list: ManuallyDrop<ThinVec<Halves>>,
}

/// What the word holds, borrowed.
enum Held<'a> {
    One(Halves),
    List(&'a ThinVec<Halves>),
}

pub(crate) struct OrderIds(Word);

const _: () = assert!(std::mem::size_of::<OrderIds>() == 8);
const _: () = assert!(
    std::mem::size_of::<usize>() == 8,
    "ids are inlined in 63 bits"
);

impl OrderIds {
    fn one(id: u64) -> Self {
        debug_assert!(id < 1 << 63);
        OrderIds(Word {
            inline: ((id as usize) << 1) | 1,
        })
    }

    fn list(list: ThinVec<Halves>) -> Self {
        OrderIds(Word {
            list: ManuallyDrop::new(list),
        })
    }

    /// The id that fits in the word, if `id` does.
    fn small(id: Halves) -> Option<u64> {
        (id[0] == 0 && id[1] < 1 << 63).then_some(id[1])
    }

    fn held(&self) -> Held<'_> {
        // SAFETY: both fields are 8 plain bytes and every bit pattern is a
        // valid `usize`, so reading `inline` is sound whichever was written.
        let word = unsafe { self.0.inline };
        if word & 1 == 1 {
            Held::One([0, (word >> 1) as u64])
        } else {
            // SAFETY: the low bit is clear, which only a `ThinVec` written by
            // `list` leaves (see `Word`), so `list` is the live field.
            Held::List(unsafe { &self.0.list })
        }
    }

    fn list_mut(&mut self) -> Option<&mut ThinVec<Halves>> {
        // SAFETY: as in `held`.
        let word = unsafe { self.0.inline };
        if word & 1 == 1 {
            None
        } else {
            // SAFETY: as in `held`; `&mut self` makes the borrow unique.
            Some(unsafe { &mut self.0.list })
        }
    }

    fn as_slice(&self) -> (Option<Halves>, &[Halves]) {
        match self.held() {
            Held::One(id) => (Some(id), &[]),
            Held::List(list) => (None, list),
        }
    }

    /// Every id, ascending, as stored (for snapshots).
    pub fn halves(&self) -> impl Iterator<Item = Halves> + '_ {
        let (one, list) = self.as_slice();
        one.into_iter().chain(list.iter().copied())
    }

    /// The ids strictly after `after`, ascending.
    pub fn after(&self, after: Option<OrderId>) -> impl Iterator<Item = OrderId> + '_ {
        let (one, list) = self.as_slice();
        let after = after.map(halves);
        let one = one.filter(|&id| after.is_none_or(|a| id > a));
        let start = after.map_or(0, |a| list.partition_point(|&x| x <= a));
        one.into_iter()
            .chain(list[start..].iter().copied())
            .map(whole)
    }

    /// Ids already ascending, from a snapshot.
    pub fn from_halves(ids: impl ExactSizeIterator<Item = Halves>) -> Self {
        let mut list = ThinVec::with_capacity(ids.len());
        list.extend(ids);
        debug_assert!(list.windows(2).all(|w| w[0] < w[1]));
        match list.as_slice() {
            [id] => match Self::small(*id) {
                Some(small) => Self::one(small),
                None => Self::list(list),
            },
            _ => Self::list(list),
        }
    }

    /// Asks the CPU for the lines `insert` will read: the list's start,
    /// with its length just before it, and its end, where a new id (as a
    /// rule the largest yet) goes. The list is a heap block of its own, so
    /// finding the account in cache does not bring it along.
    pub fn prefetch(&self) {
        if let Held::List(list) = self.held() {
            if let (Some(first), Some(last)) = (list.first(), list.last()) {
                prefetch(first);
                prefetch(last);
            }
        }
    }

    pub fn insert(&mut self, id: OrderId) {
        let id = halves(id);
        let Some(list) = self.list_mut() else {
            let Held::One(first) = self.held() else {
                unreachable!("not a list, so one id")
            };
            let mut list = ThinVec::with_capacity(2);
            list.extend(if first < id { [first, id] } else { [id, first] });
            *self = Self::list(list);
            return;
        };
        if list.is_empty() {
            if let Some(small) = Self::small(id) {
                *self = Self::one(small);
                return;
            }
        }
        if list.len() == list.capacity() {
            list.reserve_exact(list.len().max(1));
        }
        let at = list.partition_point(|&x| x < id);
        list.insert(at, id);
    }
}

impl Default for OrderIds {
    fn default() -> Self {
        Self::list(ThinVec::new())
    }
}

impl Drop for OrderIds {
    fn drop(&mut self) {
        // SAFETY: as in `held`.
        if unsafe { self.0.inline } & 1 == 0 {
            // SAFETY: the low bit is clear, so `list` is the live field; it
            // is dropped once, here, and never read again.
            unsafe { ManuallyDrop::drop(&mut self.0.list) }
        }
    }
}

impl Clone for OrderIds {
    fn clone(&self) -> Self {
        match self.held() {
            Held::One(id) => Self::one(id[1]),
            Held::List(list) => Self::list(list.clone()),
        }
    }
}

impl PartialEq for OrderIds {
    fn eq(&self, other: &Self) -> bool {
        self.halves().eq(other.halves())
    }
}

impl Eq for OrderIds {}

impl std::fmt::Debug for OrderIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.after(None)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserting ids in a given order keeps them ascending and unique, in
    /// every form the word takes, through clone, compare and a snapshot.
    fn check(ids: &[OrderId]) {
        let mut got = OrderIds::default();
        let mut want: Vec<OrderId> = Vec::new();
        for &id in ids {
            got.insert(id);
            want.push(id);
            want.sort_unstable();
            assert_eq!(got.after(None).collect::<Vec<_>>(), want, "after {id}");
        }
        for &a in &want {
            let tail: Vec<_> = want.iter().copied().filter(|&x| x > a).collect();
            assert_eq!(got.after(Some(a)).collect::<Vec<_>>(), tail);
        }
        let copy = got.clone();
        assert_eq!(copy, got);
        let restored = OrderIds::from_halves(got.halves().collect::<Vec<_>>().into_iter());
        assert_eq!(restored, got);
        assert_eq!(format!("{restored:?}"), format!("{want:?}"));
    }

    #[test]
    fn ids_stay_ascending_in_every_form() {
        let big = 1u128 << 63;
        let huge = u128::MAX - 3;
        check(&[]);
        check(&[0]);
        check(&[7]);
        check(&[big - 1]);
        check(&[big]);
        check(&[huge]);
        check(&[9, 3]);
        check(&[3, 9, 1, 12, 5, 0]);
        check(&[big, 2]);
        check(&[2, big, huge, 1]);
        check(&(0..100).rev().collect::<Vec<_>>());
    }

    #[test]
    fn a_first_small_id_is_held_in_the_word() {
        let mut ids = OrderIds::default();
        ids.insert(41);
        assert!(matches!(ids.held(), Held::One([0, 41])));
        ids.insert(40);
        assert!(matches!(ids.held(), Held::List(l) if l.len() == 2));

        let mut big = OrderIds::default();
        big.insert(1 << 63);
        assert!(matches!(big.held(), Held::List(l) if l.len() == 1));
        let one = OrderIds::from_halves([[0, 5]].into_iter());
        assert!(matches!(one.held(), Held::One([0, 5])));
    }

    #[test]
    fn an_inline_id_equals_the_same_id_in_a_list() {
        let inline = OrderIds::from_halves([[0, 5]].into_iter());
        let mut one = ThinVec::new();
        one.push([0, 5]);
        let list = OrderIds::list(one);
        assert_eq!(inline, list);
        assert_ne!(inline, OrderIds::default());
    }
}
