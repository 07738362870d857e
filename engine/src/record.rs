//! Log records: the only way shard state changes.
//!
//! A command handler validates, then builds records and hands each to
//! `Shard::commit`, which applies it to the state and passes it to the journal.
//! Replaying the same records through the same `apply` therefore rebuilds the
//! state exactly, by construction rather than by a second code path.

use crate::error::Reject;
use crate::message::TxId;
use crate::order_lines::OrderLines;
use crate::types::{
    AccountId, Money, OrderId, OrderKey, OrderState, OrderView, Payment, Qty, SkuId, TimestampMs,
};

/// A fresh order as written by its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub key: OrderKey,
    pub lines: OrderLines,
    pub total: Money,
    pub payment: Payment,
    pub created_at: TimestampMs,
    /// Hash of the request, to tell an identical retry from a conflicting one.
    pub fingerprint: u64,
}

impl NewOrder {
    /// The state a new order starts in, and its reservation time (0 for
    /// `Immediate`). Validation bounds the TTL by `ORDER_TTL_MS_MAX`, which
    /// fits a `u32`.
    pub fn initial_state(&self) -> (OrderState, u32) {
        match self.payment {
            Payment::Immediate => (OrderState::Paid, 0),
            Payment::Deferred { ttl_ms } => (OrderState::Reserved, ttl_ms as u32),
        }
    }

    /// What the caller is told: the order as it stands once this record is
    /// applied, built without looking the order up again.
    pub fn view(&self) -> OrderView {
        let (state, ttl_ms) = self.initial_state();
        OrderView {
            id: self.key.id(),
            account: self.key.account,
            lines: self.lines.clone(),
            total: self.total,
            state,
            created_at: self.created_at,
            expires_at: if ttl_ms == 0 {
                0
            } else {
                self.created_at + u64::from(ttl_ms)
            },
            restocked: false,
        }
    }
}

/// What a SKU shard does with stock an order already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Settle {
    /// reserved → sold (a `Deferred` order was paid).
    Sell,
    /// reserved → available: the order was cancelled, or it expired.
    Release { expired: bool },
    /// sold → available when `restock`, else the units stay sold (refund).
    Return { restock: bool },
}

/// One state change of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    SkuPut {
        sku: SkuId,
        price: Money,
        per_user_limit: Qty,
    },
    Restocked {
        sku: SkuId,
        qty: Qty,
    },
    Deposited {
        account: AccountId,
        amount: Money,
    },
    Withdrew {
        account: AccountId,
        amount: Money,
    },
    /// An order whose SKUs all live on its account's shard: reserve (and for
    /// `Immediate`, sell and debit) in one record.
    OrderPlaced(NewOrder),
    /// Coordinator's commit point of a two-phase order; its SKU lines on other
    /// shards were prepared under `tx`. Lines on this shard are settled by the
    /// `HoldCommitted` that follows.
    OrderCommitted {
        order: NewOrder,
        tx: TxId,
    },
    /// A failed order, remembered so a retry gets the same answer.
    OrderRejected {
        key: OrderKey,
        fingerprint: u64,
        reject: Reject,
    },
    // An order's change of state names its lines, though the shard has
    // them: a reader of the log alone (the change feed, `wal dump`) can
    // then tell what changed without the state.
    Paid {
        key: OrderKey,
        lines: OrderLines,
    },
    Cancelled {
        key: OrderKey,
        lines: OrderLines,
    },
    Expired {
        key: OrderKey,
        lines: OrderLines,
    },
    Refunded {
        key: OrderKey,
        restock: bool,
        lines: OrderLines,
    },
    /// Participant: stock moved from available to reserved under a hold.
    Prepared {
        tx: TxId,
        account: AccountId,
        order: OrderId,
        lines: OrderLines,
    },
    /// Participant: the hold became the order's reservation, or a sale.
    /// The hold's account, order and lines ride along for log readers.
    HoldCommitted {
        tx: TxId,
        immediate: bool,
        account: AccountId,
        order: OrderId,
        lines: OrderLines,
    },
    /// Participant: the hold's stock went back on sale.
    HoldAborted {
        tx: TxId,
        account: AccountId,
        order: OrderId,
        lines: OrderLines,
    },
    /// SKU shard: settle stock that an order already holds.
    StockSettled {
        account: AccountId,
        order: OrderId,
        lines: Box<[(SkuId, Qty)]>,
        settle: Settle,
    },
    /// Recovery: a SKU's stock set to what the recovered orders say it must
    /// be, where settlement messages were lost in a crash.
    StockCorrected {
        sku: SkuId,
        available: Qty,
        reserved: Qty,
        sold: Qty,
    },
    /// Recovery: units of a limited SKU an account holds in live orders.
    PurchasesCorrected {
        sku: SkuId,
        account: AccountId,
        qty: Qty,
    },
    /// A lock's or semaphore's lease granted, renewed or ended.
    Lock(crate::lock::LockRecord),
    /// A saga's progress.
    Saga(crate::saga::SagaRecord),
}
