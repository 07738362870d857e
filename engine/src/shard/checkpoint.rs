//! A consistent copy of a shard's state at one LSN, taken by the shard
//! itself a slice at a time, with copy-on-write in user space.
//!
//! The snapshot thread used to bring a second copy of the state up to date
//! by applying every record a second time: 2.48 of the 4.49 extra samples
//! per 1,000 orders that the log cost (durability.md). Here no record is
//! applied twice. At the checkpoint's LSN the shard copies its small
//! tables whole ([`CheckpointHead`]) and marks every slice of its large
//! ones (accounts, purchases: a 4 KiB page of slots; orders: 64 of them)
//! as not yet saved. Before a write to an unsaved slice, that slice is copied
//! as it is; each turn also copies a few more ([`Shard::checkpoint_step`]),
//! so the checkpoint ends in bounded time whether or not the shard writes.
//! A slice is copied once, and the copies together are the state at the
//! LSN, which the durable layer writes as the parts of a snapshot.
//!
//! This is the idea of CALC (Ren et al., SIGMOD 2016) and of Cao et al.'s
//! Zigzag and Ping-Pong (SIGMOD 2011), cut to fit tables that the shard
//! alone touches. Zigzag and Ping-Pong keep two or three copies of the
//! whole state all the time; CALC keeps a stable version per record and
//! lets a second thread read the live one, which needs a version check on
//! every read and records that another thread may read. A shard's tables
//! are touched by one thread only, so the copy is made by that thread, at
//! slice grain rather than per record: one bit test per write, and a
//! second copy only of the slices written while a checkpoint runs.
//!
//! Tables that grow meanwhile (`probe.rs`): the arrays the checkpoint
//! began with are the ones it copies. Entries moving out of an old array
//! clear its slots, which copies the slice first; the array they move into
//! copies its own slices before they arrive if it existed at the start,
//! and is not the checkpoint's business if it did not. So every entry is
//! copied once, from where it was at the LSN.

use super::purchase_table::PurchaseKey;
use super::rejections::Remembered;
use super::{Hold, Order, Shard, Sku};
use crate::message::TxId;
use crate::types::{AccountId, Money, OrderKey, Qty, ShardId, SkuId};

/// What a checkpoint copies at once when it begins: the tables that stay
/// small (SKUs, holds, fences, remembered rejections) and the totals.
#[derive(Clone, Debug)]
pub struct CheckpointHead {
    pub lsn: u64,
    pub(crate) skus: Vec<(SkuId, Sku)>,
    pub(crate) holds: Vec<(TxId, Hold)>,
    pub(crate) prepared_upto: Vec<(ShardId, u64)>,
    /// Oldest first, as `Rejections::from_oldest_first` wants them.
    pub(crate) rejected: Vec<(OrderKey, Remembered)>,
    /// Locks, semaphores and sagas, as `ShardState::coordination` gives them.
    pub(crate) coordination: Vec<crate::record::Record>,
    pub(crate) revenue: u128,
    pub(crate) deposited: u128,
    pub(crate) withdrawn: u128,
    /// How many entries the large tables held: the parts must add up.
    pub accounts: usize,
    pub orders: usize,
}

/// A slice of a large table as it was at the checkpoint's LSN.
#[derive(Clone, Debug)]
pub struct CheckpointPart(pub(crate) PartKind);

impl CheckpointPart {
    /// Entries the slice holds.
    pub fn len(&self) -> usize {
        match &self.0 {
            PartKind::Accounts(a) => a.len(),
            PartKind::Purchases(p) => p.len(),
            PartKind::Orders { orders, .. } => orders.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug)]
pub(crate) enum PartKind {
    Accounts(Vec<(AccountId, Money)>),
    Purchases(Vec<(PurchaseKey, Qty)>),
    /// Orders in the order they were placed, from position `first` on.
    Orders {
        first: usize,
        orders: Vec<(OrderKey, Order)>,
    },
}

impl Shard {
    /// Begins a checkpoint of the state as it is now, which the caller
    /// knows to be the state after the record at `lsn`. Copies the small
    /// tables now; the large ones come from [`Shard::checkpoint_step`].
    pub fn begin_checkpoint(&mut self, lsn: u64) -> CheckpointHead {
        assert!(!self.is_checkpointing(), "one checkpoint at a time");
        let st = &mut self.state;
        st.accounts.begin_checkpoint();
        st.purchases.begin_checkpoint();
        st.orders.begin_checkpoint();
        self.checkpointing = true;
        CheckpointHead {
            lsn,
            skus: st.skus.iter().map(|(&id, &s)| (id, s)).collect(),
            holds: st.holds.iter().map(|(&tx, h)| (tx, h.clone())).collect(),
            prepared_upto: st.prepared_upto.iter().map(|(&c, &s)| (c, s)).collect(),
            rejected: st.rejected.oldest_first().map(|(&k, &r)| (k, r)).collect(),
            coordination: st.coordination(),
            revenue: st.revenue,
            deposited: st.deposited,
            withdrawn: st.withdrawn,
            accounts: st.accounts.len(),
            orders: st.orders.len(),
        }
    }

    pub fn is_checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// Copies up to `slices` more slices of each large table, and hands
    /// over every copy made so far (writes' copies included) in `out`.
    /// Whether the checkpoint is complete: then `out` has received the
    /// last of it.
    pub fn checkpoint_step(&mut self, slices: usize, out: &mut Vec<CheckpointPart>) -> bool {
        if !self.checkpointing {
            return true;
        }
        let st = &mut self.state;
        let mut accounts = Vec::new();
        let mut done = st.accounts.checkpoint_step(slices, &mut accounts);
        if !accounts.is_empty() {
            out.push(CheckpointPart(PartKind::Accounts(accounts)));
        }
        let mut purchases = Vec::new();
        done &= st.purchases.checkpoint_step(slices, &mut purchases);
        if !purchases.is_empty() {
            out.push(CheckpointPart(PartKind::Purchases(purchases)));
        }
        let mut orders = Vec::new();
        done &= st.orders.checkpoint_step(slices, &mut orders);
        out.extend(
            orders
                .into_iter()
                .map(|(first, orders)| CheckpointPart(PartKind::Orders { first, orders })),
        );
        if done {
            self.checkpointing = false;
        }
        done
    }
}
