//! What happens to an order after it is placed: pay, cancel, refund and
//! expiry. The coordinator decides alone, because it owns the order and the
//! account; the SKU shards then settle stock they already hold, which cannot fail.

use super::{Output, Shard};
use crate::command::{Outcome, Reply};
use crate::error::Reject;
use crate::hash::shard_of;
use crate::limits::EXPIRIES_PER_TURN_MAX;
use crate::message::PeerMsg;
use crate::record::{Record, Settle};
use crate::types::{OrderKey, OrderState, ShardId, TimestampMs};

impl Shard {
    pub(crate) fn pay(&mut self, key: OrderKey, now: TimestampMs, out: &mut Output) -> Outcome {
        let o = self.live_reserved(key, now, out)?;
        let balance = self
            .state
            .accounts
            .get(&key.account)
            .map_or(0, |a| a.balance);
        if balance < o {
            return Err(Reject::InsufficientFunds {
                account: key.account,
                balance,
                needed: o,
            });
        }
        let lines = self.state.orders[&key].lines.clone();
        self.commit(Record::Paid { key, lines }, out);
        self.settle(key, Settle::Sell, out);
        self.order_view(key).map(Reply::Order)
    }

    pub(crate) fn cancel(&mut self, key: OrderKey, now: TimestampMs, out: &mut Output) -> Outcome {
        self.live_reserved(key, now, out)?;
        let lines = self.state.orders[&key].lines.clone();
        self.commit(Record::Cancelled { key, lines }, out);
        self.settle(key, Settle::Release { expired: false }, out);
        self.order_view(key).map(Reply::Order)
    }

    pub(crate) fn refund(&mut self, key: OrderKey, restock: bool, out: &mut Output) -> Outcome {
        let o = self.state.orders.get(&key).ok_or(Reject::UnknownOrder {
            account: key.account,
            order: key.id(),
        })?;
        if o.state != OrderState::Paid {
            return Err(Reject::InvalidState {
                order: key.id(),
                state: o.state,
            });
        }
        let balance = self
            .state
            .accounts
            .get(&key.account)
            .map_or(0, |a| a.balance);
        if balance.checked_add(o.total()).is_none() {
            return Err(Reject::BalanceOverflow {
                account: key.account,
                balance,
                amount: o.total(),
            });
        }
        let lines = o.lines.clone();
        self.commit(
            Record::Refunded {
                key,
                restock,
                lines,
            },
            out,
        );
        self.settle(key, Settle::Return { restock }, out);
        self.order_view(key).map(Reply::Order)
    }

    /// The order's total if it is `Reserved` and its time has not run out. One
    /// whose time ran out but that the sweep has not reached yet expires here,
    /// so an answer never depends on when the sweep last ran.
    fn live_reserved(
        &mut self,
        key: OrderKey,
        now: TimestampMs,
        out: &mut Output,
    ) -> Result<u64, Reject> {
        let o = self.state.orders.get(&key).ok_or(Reject::UnknownOrder {
            account: key.account,
            order: key.id(),
        })?;
        if o.state != OrderState::Reserved {
            return Err(Reject::InvalidState {
                order: key.id(),
                state: o.state,
            });
        }
        if o.expires_at() <= now {
            self.expire(key, out);
            return Err(Reject::InvalidState {
                order: key.id(),
                state: OrderState::Expired,
            });
        }
        Ok(o.total())
    }

    /// Expire `Reserved` orders whose time has come, a bounded number per call.
    pub fn expire_due(&mut self, now: TimestampMs, out: &mut Output) -> usize {
        let mut n = 0;
        while n < EXPIRIES_PER_TURN_MAX {
            match self.state.expiry.first() {
                Some(&(at, key)) if at <= now => {
                    self.expire(key, out);
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }

    fn expire(&mut self, key: OrderKey, out: &mut Output) {
        let lines = self.state.orders[&key].lines.clone();
        self.commit(Record::Expired { key, lines }, out);
        self.settle(key, Settle::Release { expired: true }, out);
    }

    /// Tell every SKU shard of the order what to do with the stock it holds:
    /// one record or message per shard, whatever the number of lines.
    fn settle(&mut self, key: OrderKey, settle: Settle, out: &mut Output) {
        let lines = &self.state.orders[&key].lines;
        let mut by_shard: Vec<(ShardId, Vec<(u64, u32)>)> = Vec::new();
        for l in lines.iter() {
            let s = shard_of(l.sku, self.shards);
            match by_shard.iter_mut().find(|(t, _)| *t == s) {
                Some((_, v)) => v.push((l.sku, l.qty)),
                None => by_shard.push((s, vec![(l.sku, l.qty)])),
            }
        }
        for (s, lines) in by_shard {
            let lines = lines.into_boxed_slice();
            if s == self.id {
                self.commit(
                    Record::StockSettled {
                        account: key.account,
                        order: key.id(),
                        lines,
                        settle,
                    },
                    out,
                );
            } else {
                if let Some(t) = &mut self.touched {
                    t.remote.extend(lines.iter().map(|&(sku, _)| sku));
                }
                self.send(
                    s,
                    PeerMsg::Settle {
                        account: key.account,
                        order: key.id(),
                        lines,
                        settle,
                    },
                    out,
                );
            }
        }
    }
}
