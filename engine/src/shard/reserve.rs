//! Sizing a shard's tables up front, with their memory already touched.
//!
//! Reserving alone is not enough. The kernel hands out zero pages lazily, so
//! a freshly reserved table of millions of entries pays for its zeroing one
//! page fault at a time while the shard serves. In a flash sale on an order
//! table reserved but not touched, throughput halved and p99.9 reached
//! 870 ms (BENCHMARKS.md). Filling the table once with placeholders and
//! clearing it faults every page in at open, and `clear` keeps the memory.

use std::hash::Hash;

use super::{Capacity, Order, Shard, Sku};
use crate::error::Reject;
use crate::hash::IdMap;
use crate::types::{OrderKey, OrderState};

impl Shard {
    /// Size the tables for this many SKUs, accounts, orders, limited
    /// purchases and remembered rejections, with their memory touched, so the shard never stops to
    /// grow a table (a table of millions of entries takes tens of
    /// milliseconds to rehash) nor to fault in its pages while it serves.
    /// Costs time at open in proportion to the capacity.
    pub fn reserve(&mut self, capacity: Capacity) {
        let st = &mut self.state;
        reserve_touched(&mut st.skus, capacity.skus, |i| i, Sku::default);
        st.accounts.reserve_touched(capacity.accounts);
        st.orders.reserve_touched(capacity.orders, || {
            let order = Order {
                lines: Box::<[_]>::default().into(),
                state: OrderState::Paid,
                created_at: 0,
                ttl_ms: 0,
                restocked: false,
                fingerprint: 0,
            };
            (OrderKey::new(0, 0), order)
        });
        st.purchases.reserve_touched(capacity.purchases);
        let generation = st.rejected.generation_len();
        let mut left = capacity.rejections;
        for table in st.rejected.tables_mut() {
            let entries = left.min(generation);
            left -= entries;
            let placeholder = || (0, Reject::EmptyOrder);
            reserve_touched(table, entries, |i| OrderKey::new(i, 0), placeholder);
        }
    }
}

/// Make `map` hold at least `entries` without growing, in a table whose
/// pages are already faulted in. Placeholders go into a fresh table that is
/// then cleared, so no placeholder can meet a real key; the live entries move
/// over afterwards.
fn reserve_touched<K: Eq + Hash, V>(
    map: &mut IdMap<K, V>,
    entries: usize,
    key: impl Fn(u64) -> K,
    value: impl Fn() -> V,
) {
    if map.capacity() >= entries {
        return;
    }
    let mut fresh = IdMap::with_capacity_and_hasher(entries, Default::default());
    for i in 0..fresh.capacity() as u64 {
        fresh.insert(key(i), value());
    }
    fresh.clear();
    fresh.extend(map.drain());
    *map = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, PlaceOrder};
    use crate::shard::Output;
    use crate::types::{LineRequest, Payment};

    fn busy_shard() -> Shard {
        let mut shard = Shard::new(0, 1);
        let mut out = Output::default();
        let mut run = |cmd| shard.apply(1, cmd, 5, &mut out);
        for sku in 0..3 {
            run(Command::PutSku {
                sku,
                price: 10,
                per_user_limit: 2,
            });
            run(Command::Restock { sku, qty: 100 });
        }
        for account in 0..4 {
            run(Command::Deposit {
                account,
                amount: 1_000,
            });
            run(Command::PlaceOrder(PlaceOrder {
                id: 7,
                account,
                lines: vec![LineRequest::new(account % 3, 2)],
                payment: Payment::Immediate,
            }));
        }
        assert!(out.replies.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        // Remembered failures, under order id 0, where placeholder keys live.
        out.replies.clear();
        for account in 0..4 {
            shard.apply(
                1,
                Command::PlaceOrder(PlaceOrder {
                    id: 0,
                    account,
                    lines: vec![LineRequest::new(99, 1)],
                    payment: Payment::Immediate,
                }),
                5,
                &mut out,
            );
        }
        assert!(out.replies.iter().all(|(_, r)| r.is_err()), "{out:?}");
        shard
    }

    #[test]
    fn reserving_keeps_every_entry_and_leaves_no_placeholder() {
        let mut shard = busy_shard();
        let before = shard.state.clone();
        let want = Capacity {
            skus: 300,
            accounts: 400,
            orders: 500,
            purchases: 600,
            rejections: 700,
        };
        shard.reserve(want);
        assert_eq!(shard.state, before);
        let st = &shard.state;
        assert!(st.skus.capacity() >= 300 && st.accounts.capacity() >= 400);
        assert!(st.orders.capacity() >= 500 && st.purchases.capacity() >= 600);
        // Placeholder keys start at 0, where real entries live too.
        assert_eq!(st.orders.len(), 4);
        assert_eq!(st.purchases.len(), 4);
        assert_eq!(st.accounts.get(&0).map(|a| a.balance), Some(980));
        let mut rejected = st.rejected.clone();
        let [newer, older] = rejected.tables_mut();
        assert!(newer.capacity() >= 700 && older.capacity() == 0);
        assert_eq!(newer.len(), 4);
        let first = st.rejected.get(&OrderKey::new(0, 0));
        assert!(matches!(first, Some((_, Reject::UnknownSku { sku: 99 }))));

        // A table already big enough is left alone.
        let orders_at = st.orders.capacity();
        shard.reserve(Capacity { orders: 10, ..want });
        assert_eq!(shard.state.orders.capacity(), orders_at);
        assert_eq!(shard.state, before);
    }
}
