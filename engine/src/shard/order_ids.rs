//! An account's order ids, ascending, in one machine word.
//!
//! Most buyers in a sale place one order, so the word holds a buyer's only
//! order without allocating: a list would allocate a block and put one more
//! dependent cache miss on the order path (callgrind put the list's first
//! growth at about 135 instructions; an A/B of the embedded flash sale with
//! ids that fit against ids that did not, before the second form below
//! existed, gave about 10% more orders per second).
//! - An id below 2^63, as clients that number orders with counters use, is
//!   held in the word itself.
//! - Any larger id, a UUID for instance, is held as the arena position of its
//!   order in the shard's [`OrderTable`]: the order is there anyway, and its
//!   key holds the id. Reading it costs a visit to the order, which only
//!   listing and a second order make.
//!
//! From the second id on the word is a `ThinVec`: one pointer, with length
//! and capacity in the allocation, so an account stays at 16 bytes where a
//! `Vec` would add 24 to every entry of the account table.
//!
//! A position is only meaningful with its own shard's table, so every method
//! that reads ids takes the table, and two words compare equal when they
//! hold the same form and content (see `PartialEq`).

#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

use thin_vec::ThinVec;

use super::order_table::OrderTable;
use crate::prefetch::prefetch_at;
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

/// The word, told apart by its low two bits: `x1`, one id (`word >> 1`);
/// `10`, the arena position of the only order (`word >> 2`); `00`, a
/// `ThinVec`, whose pointer is at least 8-aligned and so has both bits clear.
union Word {
    inline: usize,
    list: ManuallyDrop<ThinVec<Halves>>,
}

const TAG_MASK: usize = 0b11;
const TAG_AT: usize = 0b10;

/// What the word holds, borrowed.
enum Held<'a> {
    One(Halves),
    /// The arena position of the only order, whose id did not fit the word.
    At(u32),
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

    fn at(position: u32) -> Self {
        OrderIds(Word {
            inline: ((position as usize) << 2) | TAG_AT,
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
        } else if word & TAG_MASK == TAG_AT {
            Held::At((word >> 2) as u32)
        } else {
            // SAFETY: both low bits are clear, which only a `ThinVec` written
            // by `list` leaves (see `Word`), so `list` is the live field.
            Held::List(unsafe { &self.0.list })
        }
    }

    fn list_mut(&mut self) -> Option<&mut ThinVec<Halves>> {
        // SAFETY: as in `held`.
        let word = unsafe { self.0.inline };
        if word & TAG_MASK != 0 {
            None
        } else {
            // SAFETY: as in `held`; `&mut self` makes the borrow unique.
            Some(unsafe { &mut self.0.list })
        }
    }

    /// The id held in the word, if any, and the list.
    fn as_slice(&self, orders: &OrderTable) -> (Option<Halves>, &[Halves]) {
        match self.held() {
            Held::One(id) => (Some(id), &[]),
            Held::At(position) => (Some(halves(orders.key_at(position).id())), &[]),
            Held::List(list) => (None, list),
        }
    }

    /// Every id, ascending (for snapshots).
    pub fn halves<'a>(
        &'a self,
        orders: &'a OrderTable,
    ) -> impl Iterator<Item = Halves> + Clone + 'a {
        let (one, list) = self.as_slice(orders);
        one.into_iter().chain(list.iter().copied())
    }

    /// The ids strictly after `after`, ascending.
    pub fn after<'a>(
        &'a self,
        after: Option<OrderId>,
        orders: &'a OrderTable,
    ) -> impl Iterator<Item = OrderId> + 'a {
        let (one, list) = self.as_slice(orders);
        let after = after.map(halves);
        let one = one.filter(|&id| after.is_none_or(|a| id > a));
        let start = after.map_or(0, |a| list.partition_point(|&x| x <= a));
        one.into_iter()
            .chain(list[start..].iter().copied())
            .map(whole)
    }

    /// Ids already ascending, from a snapshot, of the account `account`
    /// whose orders `orders` already holds: a single large id is found
    /// there, so the word takes the form `insert` gave it.
    pub fn from_halves(
        ids: impl ExactSizeIterator<Item = Halves>,
        account: crate::types::AccountId,
        orders: &OrderTable,
    ) -> Self {
        let mut list = ThinVec::with_capacity(ids.len());
        list.extend(ids);
        debug_assert!(list.windows(2).all(|w| w[0] < w[1]));
        match list.as_slice() {
            [id] => match Self::small(*id) {
                Some(small) => Self::one(small),
                None => orders
                    .position(&crate::types::OrderKey::new(account, whole(*id)))
                    .map_or_else(|| Self::list(list), Self::at),
            },
            _ => Self::list(list),
        }
    }

    /// Asks the CPU for the lines `insert` will read: the list's length,
    /// just before its first id, and the line after, where a short list's
    /// next id goes. Both addresses follow from the word alone; reading the
    /// length to find the list's end would stall on the very miss this is
    /// meant to start (27% of `warm`'s samples in a flash-sale profile).
    /// The list is a heap block of its own, so finding the account in
    /// cache does not bring it along.
    pub fn prefetch(&self) {
        if let Held::List(list) = self.held() {
            let first = list.as_ptr();
            prefetch_at(first.wrapping_sub(1));
            prefetch_at(first.wrapping_add(3));
        }
    }

    /// Adds `id`, whose order will take arena position `position` in
    /// `orders` (the table's length, as the order is not in it yet).
    pub fn insert(&mut self, id: OrderId, position: usize, orders: &OrderTable) {
        let id = halves(id);
        let Some(list) = self.list_mut() else {
            let first = match self.held() {
                Held::One(first) => first,
                Held::At(at) => halves(orders.key_at(at).id()),
                Held::List(_) => unreachable!("not a list, so one id"),
            };
            let mut list = ThinVec::with_capacity(2);
            list.extend(if first < id { [first, id] } else { [id, first] });
            *self = Self::list(list);
            return;
        };
        if list.is_empty() {
            *self = match (Self::small(id), u32::try_from(position)) {
                (Some(small), _) => Self::one(small),
                (None, Ok(at)) => Self::at(at),
                (None, Err(_)) => unreachable!("an order table holds under 2^32 orders"),
            };
            return;
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
        if unsafe { self.0.inline } & TAG_MASK == 0 {
            // SAFETY: both low bits are clear, so `list` is the live field;
            // it is dropped once, here, and never read again.
            unsafe { ManuallyDrop::drop(&mut self.0.list) }
        }
    }
}

impl Clone for OrderIds {
    fn clone(&self) -> Self {
        match self.held() {
            Held::One(id) => Self::one(id[1]),
            Held::At(at) => Self::at(at),
            Held::List(list) => Self::list(list.clone()),
        }
    }
}

/// Same form and same content. Two shards that applied the same records
/// placed their orders at the same positions, and a snapshot keeps
/// positions (it lists orders in the order they were placed), so this is
/// the equality `ShardState`'s promises need; it cannot resolve positions,
/// having no table.
impl PartialEq for OrderIds {
    fn eq(&self, other: &Self) -> bool {
        match (self.held(), other.held()) {
            (Held::One(a), Held::One(b)) => a == b,
            (Held::At(a), Held::At(b)) => a == b,
            (Held::List(a), Held::List(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for OrderIds {}

impl std::fmt::Debug for OrderIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.held() {
            Held::One(id) => f.debug_list().entry(&whole(id)).finish(),
            Held::At(at) => write!(f, "[order at position {at}]"),
            Held::List(list) => f
                .debug_list()
                .entries(list.iter().map(|&h| whole(h)))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order_lines::OrderLines;
    use crate::shard::Order;
    use crate::types::{OrderKey, OrderState};

    const ACCOUNT: u64 = 7;

    /// An account's ids and the order table they point into, grown
    /// together as `insert_order` grows them.
    #[derive(Default)]
    struct Book {
        ids: OrderIds,
        orders: OrderTable,
    }

    impl Book {
        fn place(&mut self, id: OrderId) {
            let position = self.orders.len();
            self.ids.insert(id, position, &self.orders);
            let order = Order {
                lines: OrderLines::collect(std::iter::empty()),
                state: OrderState::Paid,
                created_at: 0,
                ttl_ms: 0,
                restocked: false,
                fingerprint: 0,
            };
            assert!(
                self.orders
                    .insert(OrderKey::new(ACCOUNT, id), order)
                    .is_none()
            );
        }

        fn all(&self) -> Vec<OrderId> {
            self.ids.after(None, &self.orders).collect()
        }
    }

    /// Inserting ids in a given order keeps them ascending and unique, in
    /// every form the word takes, through clone, compare and a snapshot.
    fn check(ids: &[OrderId]) {
        let mut book = Book::default();
        let mut want: Vec<OrderId> = Vec::new();
        for &id in ids {
            book.place(id);
            want.push(id);
            want.sort_unstable();
            assert_eq!(book.all(), want, "after {id}");
        }
        for &a in &want {
            let tail: Vec<_> = want.iter().copied().filter(|&x| x > a).collect();
            assert_eq!(
                book.ids.after(Some(a), &book.orders).collect::<Vec<_>>(),
                tail
            );
        }
        let copy = book.ids.clone();
        assert_eq!(copy, book.ids);
        let saved: Vec<Halves> = book.ids.halves(&book.orders).collect();
        assert_eq!(saved.iter().map(|&h| whole(h)).collect::<Vec<_>>(), want);
        let restored = OrderIds::from_halves(saved.into_iter(), ACCOUNT, &book.orders);
        assert_eq!(restored, book.ids, "a snapshot gives the same form");
        if want.len() != 1 || want[0] < 1 << 63 {
            assert_eq!(format!("{restored:?}"), format!("{want:?}"));
        }
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
        check(&[huge, big]);
        check(&[2, big, huge, 1]);
        check(&(0..100).rev().collect::<Vec<_>>());
    }

    #[test]
    fn a_first_id_is_held_in_the_word_whatever_its_size() {
        let mut small = Book::default();
        small.place(41);
        assert!(matches!(small.ids.held(), Held::One([0, 41])));
        small.place(40);
        assert!(matches!(small.ids.held(), Held::List(l) if l.len() == 2));

        let mut big = Book::default();
        // Another order first, so that the position is not 0.
        big.place(3);
        big.ids = OrderIds::default();
        big.place(1 << 64);
        assert!(
            matches!(big.ids.held(), Held::At(1)),
            "a large id is held by its order's position"
        );
        assert_eq!(big.all(), [1 << 64]);
        assert_eq!(format!("{:?}", big.ids), "[order at position 1]");
        big.place(1 << 63);
        assert!(matches!(big.ids.held(), Held::List(l) if l.len() == 2));
        assert_eq!(big.all(), [1 << 63, 1 << 64]);

        let one = OrderIds::from_halves([[0, 5]].into_iter(), ACCOUNT, &big.orders);
        assert!(matches!(one.held(), Held::One([0, 5])));
        let missing = OrderIds::from_halves([[9, 5]].into_iter(), ACCOUNT, &big.orders);
        assert!(
            matches!(missing.held(), Held::List(l) if l.len() == 1),
            "an id with no order to point at stays in a list"
        );
    }

    #[test]
    fn forms_compare_by_form_and_content() {
        let mut a = Book::default();
        a.place(1 << 70);
        let mut b = Book::default();
        b.place(1 << 70);
        assert_eq!(a.ids, b.ids);
        b.place(5);
        assert_ne!(a.ids, b.ids);
        assert_ne!(a.ids, OrderIds::default());
        assert_ne!(OrderIds::one(5), OrderIds::at(5));
    }
}
