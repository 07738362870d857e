//! Applying one record to the state. Handlers validate before they build a
//! record, so nothing here can fail; a broken precondition is a bug and the
//! debug assertions say which. Records are taken by value so an order's
//! lines move into the state instead of being copied.

use super::{Hold, Order, Shard};
use crate::record::{NewOrder, Record, Settle};
use crate::types::{AccountId, Line, OrderKey, OrderState, Payment, Qty, SkuId};

impl Shard {
    pub(crate) fn apply_record(&mut self, record: Record) {
        if let Some(t) = &mut self.touched {
            match &record {
                Record::SkuPut { sku, .. }
                | Record::Restocked { sku, .. }
                | Record::StockCorrected { sku, .. } => t.skus.push(*sku),
                Record::Deposited { account, .. } | Record::Withdrew { account, .. } => {
                    t.accounts.push(*account)
                }
                Record::Paid { key, .. } | Record::Refunded { key, .. } => {
                    t.accounts.push(key.account)
                }
                // Stock and balance moves inside orders are noted where they
                // happen: take_stock, settle_line, insert_order.
                _ => {}
            }
        }
        let st = &mut self.state;
        match record {
            Record::Lock(r) => st.locks.apply(&r),
            Record::Saga(r) => st.sagas.apply(&r),
            Record::SkuPut {
                sku,
                price,
                per_user_limit,
            } => {
                let s = st.skus.entry(sku).or_default();
                s.price = price;
                s.per_user_limit = per_user_limit;
            }
            Record::Restocked { sku, qty } => {
                let s = st.skus.get_mut(&sku).expect("restock of a known sku");
                s.available += qty;
                s.stocked += qty;
            }
            Record::Deposited { account, amount } => {
                st.accounts.get_or_insert(account).balance += amount;
                st.deposited += u128::from(amount);
            }
            Record::Withdrew { account, amount } => {
                let a = st
                    .accounts
                    .get_mut(&account)
                    .expect("withdraw from a known account");
                a.balance -= amount;
                st.withdrawn += u128::from(amount);
            }
            Record::OrderPlaced(order) => {
                let immediate = order.payment == Payment::Immediate;
                for line in order.lines.iter() {
                    self.take_stock(order.key.account, &line, immediate);
                }
                self.insert_order(order);
            }
            Record::OrderCommitted { order, tx: _ } => self.insert_order(order),
            Record::OrderRejected {
                key,
                fingerprint,
                reject,
            } => self.remember_rejection(key, fingerprint, reject),
            Record::Paid { key, .. } => {
                let o = st.orders.get_mut(&key).expect("pay a known order");
                debug_assert_eq!(o.state, OrderState::Reserved);
                o.state = OrderState::Paid;
                st.expiry.remove(&(o.expires_at(), key));
                let total = o.total();
                let a = st.accounts.get_mut(&key.account).expect("order's account");
                a.balance -= total;
                st.revenue += u128::from(total);
            }
            Record::Cancelled { key, .. } => self.end_reservation(key, OrderState::Cancelled),
            Record::Expired { key, .. } => self.end_reservation(key, OrderState::Expired),
            Record::Refunded { key, restock, .. } => {
                let o = st.orders.get_mut(&key).expect("refund a known order");
                debug_assert_eq!(o.state, OrderState::Paid);
                o.state = OrderState::Refunded;
                o.restocked = restock;
                let total = o.total();
                let a = st.accounts.get_mut(&key.account).expect("order's account");
                a.balance += total;
                st.revenue -= u128::from(total);
            }
            Record::Prepared {
                tx,
                account,
                order,
                lines,
            } => {
                for line in lines.iter() {
                    self.take_stock(account, &line, false);
                }
                let st = &mut self.state;
                let upto = st.prepared_upto.entry(tx.coordinator).or_insert(0);
                *upto = (*upto).max(tx.seq);
                st.holds.insert(
                    tx,
                    Hold {
                        account,
                        order,
                        lines,
                    },
                );
            }
            Record::HoldCommitted { tx, immediate, .. } => {
                let hold = st.holds.remove(&tx).expect("commit a held tx");
                if immediate {
                    for line in hold.lines.iter() {
                        self.settle_line(hold.account, line.sku, line.qty, Settle::Sell);
                    }
                }
            }
            Record::HoldAborted { tx, .. } => {
                let hold = st.holds.remove(&tx).expect("abort a held tx");
                for line in hold.lines.iter() {
                    let release = Settle::Release { expired: false };
                    self.settle_line(hold.account, line.sku, line.qty, release);
                }
            }
            Record::StockSettled {
                account,
                lines,
                settle,
                ..
            } => {
                for &(sku, qty) in lines.iter() {
                    self.settle_line(account, sku, qty, settle);
                }
            }
            Record::StockCorrected {
                sku,
                available,
                reserved,
                sold,
            } => {
                let s = st.skus.get_mut(&sku).expect("correct a known sku");
                debug_assert_eq!(
                    u64::from(available) + u64::from(reserved) + u64::from(sold),
                    u64::from(s.stocked)
                );
                s.available = available;
                s.reserved = reserved;
                s.sold = sold;
            }
            Record::PurchasesCorrected { sku, account, qty } => {
                st.purchases.insert((sku, account), qty);
            }
        }
    }

    fn end_reservation(&mut self, key: OrderKey, state: OrderState) {
        let st = &mut self.state;
        let o = st.orders.get_mut(&key).expect("end a known order");
        debug_assert_eq!(o.state, OrderState::Reserved);
        o.state = state;
        st.expiry.remove(&(o.expires_at(), key));
    }

    /// available → reserved (or straight to sold), counted against the per-user limit.
    fn take_stock(&mut self, account: AccountId, line: &Line, sell: bool) {
        if let Some(t) = &mut self.touched {
            t.skus.push(line.sku);
        }
        let st = &mut self.state;
        let s = st
            .skus
            .get_mut(&line.sku)
            .expect("order line of a known sku");
        s.available -= line.qty;
        if sell {
            s.sold += line.qty;
        } else {
            s.reserved += line.qty;
        }
        if s.per_user_limit > 0 {
            st.purchases.add((line.sku, account), line.qty);
        }
    }

    fn settle_line(&mut self, account: AccountId, sku: SkuId, qty: Qty, settle: Settle) {
        if let Some(t) = &mut self.touched {
            t.skus.push(sku);
        }
        let st = &mut self.state;
        let s = st.skus.get_mut(&sku).expect("settle a known sku");
        let returned = match settle {
            Settle::Sell => {
                s.reserved -= qty;
                s.sold += qty;
                false
            }
            Settle::Release { .. } => {
                s.reserved -= qty;
                s.available += qty;
                true
            }
            Settle::Return { restock } => {
                if restock {
                    s.sold -= qty;
                    s.available += qty;
                }
                true
            }
        };
        // Units count against the limit while an order holds them. A limit
        // set after the units were taken never counted them, hence saturating.
        if returned {
            st.purchases.subtract(&(sku, account), qty);
        }
    }

    fn insert_order(&mut self, order: NewOrder) {
        if let Some(t) = &mut self.touched {
            t.accounts.push(order.key.account);
        }
        let st = &mut self.state;
        let (state, ttl_ms) = order.initial_state();
        let a = st
            .accounts
            .get_mut(&order.key.account)
            .expect("order's account");
        if state == OrderState::Paid {
            a.balance -= order.total;
            st.revenue += u128::from(order.total);
        } else {
            st.expiry
                .insert((order.created_at + u64::from(ttl_ms), order.key));
        }
        let placed = st.orders.insert(
            order.key,
            Order {
                lines: order.lines,
                state,
                created_at: order.created_at,
                ttl_ms,
                restocked: false,
                fingerprint: order.fingerprint,
            },
            a.newest.get(),
        );
        // A new key: every command checks its order id before it places.
        a.newest.set(Some(placed.expect("an order is placed once")));
    }
}
