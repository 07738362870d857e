//! What a run of feed events does to the sink's tables, folded per row
//! before it goes to the database: a thousand stock moves of one SKU
//! become one update, an order placed and paid in the same batch one
//! insert. Pure, so its rules are tested without a database.

use std::collections::HashMap;

use mercato_client::wire::{self, FeedEvent as E};

/// A SKU row's change: its price and limit set, and its units moved by, or
/// (`set`) set to, the three figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkuChange {
    pub put: Option<(u64, u32)>,
    pub set: bool,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// An account row's change: its balance moved by, or (`set`) set to,
/// `amount`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub set: bool,
    pub amount: i128,
}

/// An order row's change: a new order (its lines with it), or a new state
/// of one the database has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderChange {
    New(wire::OrderView),
    State {
        state: wire::OrderState,
        restocked: bool,
    },
}

/// The rows a batch of events changes, and where the feed stands after it.
#[derive(Debug, Default)]
pub struct Pending {
    pub skus: HashMap<u64, SkuChange>,
    pub accounts: HashMap<u64, AccountChange>,
    pub orders: HashMap<(u64, u128), OrderChange>,
    /// Events folded in.
    pub events: u64,
    /// Orders placed (or copied) among them.
    pub orders_new: u64,
}

impl Pending {
    pub fn add(&mut self, event: &E) {
        self.events += 1;
        match event {
            E::SkuPut {
                sku,
                price,
                per_user_limit,
            } => self.sku(*sku).put = Some((*price, *per_user_limit)),
            E::Stock {
                sku,
                available,
                reserved,
                sold,
                ..
            } => {
                let c = self.sku(*sku);
                c.available += available;
                c.reserved += reserved;
                c.sold += sold;
            }
            E::StockSet {
                sku,
                available,
                reserved,
                sold,
            } => self.stock_set(*sku, *available, *reserved, *sold),
            E::SkuCopy(v) => {
                self.sku(v.id).put = Some((v.price, v.per_user_limit));
                self.stock_set(v.id, v.available, v.reserved, v.sold);
            }
            E::Balance {
                account,
                amount,
                credit,
                ..
            } => {
                let a = self.accounts.entry(*account).or_default();
                let amount = i128::from(*amount);
                a.amount += if *credit { amount } else { -amount };
            }
            E::AccountCopy(v) => {
                self.accounts.insert(
                    v.id,
                    AccountChange {
                        set: true,
                        amount: i128::from(v.balance),
                    },
                );
            }
            E::OrderPlaced(v) | E::OrderCopy(v) => {
                self.orders_new += 1;
                self.orders
                    .insert((v.account, v.id), OrderChange::New(v.clone()));
            }
            E::OrderPaid { account, order, .. } => {
                self.order_state(*account, *order, wire::OrderState::Paid, false)
            }
            E::OrderCancelled { account, order, .. } => {
                self.order_state(*account, *order, wire::OrderState::Cancelled, false)
            }
            E::OrderExpired { account, order, .. } => {
                self.order_state(*account, *order, wire::OrderState::Expired, false)
            }
            E::OrderRefunded {
                account,
                order,
                restock,
                ..
            } => self.order_state(*account, *order, wire::OrderState::Refunded, *restock),
        }
    }

    fn sku(&mut self, sku: u64) -> &mut SkuChange {
        self.skus.entry(sku).or_default()
    }

    /// Figures set outright: what came before in the batch no longer counts.
    fn stock_set(&mut self, sku: u64, available: u32, reserved: u32, sold: u32) {
        let c = self.sku(sku);
        c.set = true;
        c.available = i64::from(available);
        c.reserved = i64::from(reserved);
        c.sold = i64::from(sold);
    }

    fn order_state(&mut self, account: u64, order: u128, state: wire::OrderState, restocked: bool) {
        match self.orders.get_mut(&(account, order)) {
            Some(OrderChange::New(v)) => {
                v.state = state;
                v.restocked = restocked;
            }
            _ => {
                self.orders
                    .insert((account, order), OrderChange::State { state, restocked });
            }
        }
    }
}

/// The `state` column's text for an order state.
pub fn state_name(s: wire::OrderState) -> &'static str {
    match s {
        wire::OrderState::Reserved => "reserved",
        wire::OrderState::Paid => "paid",
        wire::OrderState::Cancelled => "cancelled",
        wire::OrderState::Expired => "expired",
        wire::OrderState::Refunded => "refunded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(account: u64, id: u128, state: wire::OrderState) -> wire::OrderView {
        wire::OrderView {
            id,
            account,
            lines: vec![wire::Line {
                sku: 7,
                qty: 2,
                unit_price: 300,
            }],
            total: 600,
            state,
            created_at: 1,
            expires_at: 2,
            restocked: false,
        }
    }

    fn stock(sku: u64, available: i64, reserved: i64, sold: i64) -> E {
        E::Stock {
            sku,
            reason: wire::StockReason::Order,
            order: None,
            available,
            reserved,
            sold,
        }
    }

    #[test]
    fn moves_add_up_and_a_set_forgets_what_came_before() {
        let mut p = Pending::default();
        p.add(&stock(7, 10, 0, 0));
        p.add(&stock(7, -2, 2, 0));
        assert_eq!((p.skus[&7].available, p.skus[&7].reserved), (8, 2));
        assert!(!p.skus[&7].set);
        p.add(&E::StockSet {
            sku: 7,
            available: 5,
            reserved: 0,
            sold: 1,
        });
        p.add(&stock(7, -1, 0, 1));
        let c = p.skus[&7];
        assert!(c.set);
        assert_eq!((c.available, c.reserved, c.sold), (4, 0, 2));
        assert_eq!(c.put, None);
        p.add(&E::SkuPut {
            sku: 7,
            price: 300,
            per_user_limit: 0,
        });
        assert_eq!(p.skus[&7].put, Some((300, 0)));
        assert_eq!(p.events, 5);
    }

    #[test]
    fn balances_move_by_credits_and_debits_until_a_copy_sets_them() {
        let mut p = Pending::default();
        let balance = |amount, credit| E::Balance {
            account: 3,
            reason: wire::BalanceReason::Deposit,
            order: None,
            amount,
            credit,
        };
        p.add(&balance(100, true));
        p.add(&balance(30, false));
        assert_eq!(
            p.accounts[&3],
            AccountChange {
                set: false,
                amount: 70
            }
        );
        p.add(&E::AccountCopy(wire::AccountView { id: 3, balance: 9 }));
        p.add(&balance(4, false));
        assert_eq!(
            p.accounts[&3],
            AccountChange {
                set: true,
                amount: 5
            }
        );
    }

    #[test]
    fn an_order_placed_and_paid_in_one_batch_is_one_new_row() {
        let mut p = Pending::default();
        p.add(&E::OrderPlaced(order(3, 11, wire::OrderState::Reserved)));
        p.add(&E::OrderPaid {
            account: 3,
            order: 11,
            lines: Vec::new(),
        });
        p.add(&E::OrderRefunded {
            account: 3,
            order: 12,
            restock: true,
            lines: Vec::new(),
        });
        let OrderChange::New(v) = &p.orders[&(3, 11)] else {
            panic!("a new order stays new");
        };
        assert_eq!(v.state, wire::OrderState::Paid);
        assert_eq!(
            p.orders[&(3, 12)],
            OrderChange::State {
                state: wire::OrderState::Refunded,
                restocked: true
            }
        );
        assert_eq!(p.orders_new, 1);
    }
}
