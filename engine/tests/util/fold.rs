//! A shop rebuilt from change-feed events alone, for the feed's tests.

use std::collections::HashMap;

use mercato_engine::OrderState;
use mercato_engine::feed::Event;

/// An order as events tell it: state, restocked, (SKU, qty, price) lines.
pub type OrderFold = (OrderState, bool, Vec<(u64, u32, u64)>);

/// SKUs as (price, per-user limit, available, reserved, sold), balances,
/// and orders, folded from events.
#[derive(Default, Debug)]
pub struct Shop {
    pub skus: HashMap<u64, (u64, u32, i64, i64, i64)>,
    pub balances: HashMap<u64, i128>,
    pub orders: HashMap<(u64, u128), OrderFold>,
}

fn lines(v: &mercato_engine::OrderView) -> Vec<(u64, u32, u64)> {
    v.lines
        .iter()
        .map(|l| (l.sku, l.qty, l.unit_price))
        .collect()
}

impl Shop {
    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::SkuPut {
                sku,
                price,
                per_user_limit,
            } => {
                let s = self.skus.entry(*sku).or_default();
                s.0 = *price;
                s.1 = *per_user_limit;
            }
            Event::Stock {
                sku,
                available,
                reserved,
                sold,
                ..
            } => {
                let s = self.skus.get_mut(sku).expect("stock of a known SKU");
                s.2 += available;
                s.3 += reserved;
                s.4 += sold;
            }
            Event::StockSet {
                sku,
                available,
                reserved,
                sold,
            } => {
                let s = self.skus.get_mut(sku).expect("a known SKU");
                (s.2, s.3, s.4) = (
                    i64::from(*available),
                    i64::from(*reserved),
                    i64::from(*sold),
                );
            }
            Event::SkuCopy(v) => {
                self.skus.insert(
                    v.id,
                    (
                        v.price,
                        v.per_user_limit,
                        i64::from(v.available),
                        i64::from(v.reserved),
                        i64::from(v.sold),
                    ),
                );
            }
            Event::Balance { account, delta, .. } => {
                *self.balances.entry(*account).or_default() += delta;
            }
            Event::AccountCopy(v) => {
                self.balances.insert(v.id, i128::from(v.balance));
            }
            Event::OrderPlaced(v) => {
                let old = (self.orders).insert((v.account, v.id), (v.state, false, lines(v)));
                assert!(old.is_none(), "order {} placed twice", v.id);
            }
            Event::OrderCopy(v) => {
                (self.orders).insert((v.account, v.id), (v.state, v.restocked, lines(v)));
            }
            Event::OrderPaid { key, .. } => self.set(key, OrderState::Paid, false),
            Event::OrderCancelled { key, .. } => self.set(key, OrderState::Cancelled, false),
            Event::OrderExpired { key, .. } => self.set(key, OrderState::Expired, false),
            Event::OrderRefunded { key, restock, .. } => {
                self.set(key, OrderState::Refunded, *restock)
            }
        }
    }

    fn set(&mut self, key: &mercato_engine::OrderKey, state: OrderState, restocked: bool) {
        let o = (self.orders)
            .get_mut(&(key.account, key.id()))
            .expect("an order placed before");
        o.0 = state;
        o.1 = restocked;
    }
}
