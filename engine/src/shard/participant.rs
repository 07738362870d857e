//! The SKU shard's side of two-phase commit: Try (prepare), then Confirm or
//! Cancel (decide), with TCC fences so a repeated or late message is harmless.

use super::{Output, Shard};
use crate::message::{OneOrMany, TxId, Vote};
use crate::record::Record;
use crate::types::{AccountId, LineRequest, OrderId};

impl Shard {
    /// The highest sequence this shard prepared for `tx`'s coordinator: any
    /// Try at or below it, not held now, was decided already.
    fn prepared_upto(&self, tx: TxId) -> u64 {
        self.state
            .prepared_upto
            .get(&tx.coordinator)
            .copied()
            .unwrap_or(0)
    }

    /// Try: hold every line or none, and vote.
    pub(crate) fn prepare(
        &mut self,
        tx: TxId,
        account: AccountId,
        order: OrderId,
        lines: &[LineRequest],
        out: &mut Output,
    ) -> Vote {
        if self.fenced.contains(&tx) {
            // Kept, not spent: a repeat of this Try must be refused too.
            return Vote::Fenced;
        }
        if let Some(hold) = self.state.holds.get(&tx) {
            // A repeated Try: answer as before, hold nothing twice.
            let prices = hold.lines.iter().map(|l| l.unit_price);
            return Vote::Yes(OneOrMany::collect(prices));
        }
        let upto = self.prepared_upto(tx);
        if tx.seq <= upto {
            // Tried and already decided; its hold is gone.
            return Vote::Fenced;
        }
        let held = match self.price_order(account, lines) {
            Ok(held) => held,
            Err(reject) => return Vote::No(reject),
        };
        let prices = OneOrMany::collect(held.iter().map(|l| l.unit_price));
        self.commit(
            Record::Prepared {
                tx,
                account,
                order,
                lines: held,
            },
            out,
        );
        Vote::Yes(prices)
    }

    /// Confirm or Cancel a hold.
    pub(crate) fn decide(&mut self, tx: TxId, commit: bool, immediate: bool, out: &mut Output) {
        if let Some(hold) = self.state.holds.get(&tx) {
            let (account, order, lines) = (hold.account, hold.order, hold.lines.clone());
            let record = if commit {
                Record::HoldCommitted {
                    tx,
                    immediate,
                    account,
                    order,
                    lines,
                }
            } else {
                Record::HoldAborted {
                    tx,
                    account,
                    order,
                    lines,
                }
            };
            self.commit(record, out);
            return;
        }
        let upto = self.prepared_upto(tx);
        if tx.seq > upto && !commit {
            // Cancel before Try: fence the Try out when it comes.
            self.fenced.insert(tx);
        }
        // Otherwise a repeated decision, or a Try that voted no: nothing held.
    }
}
