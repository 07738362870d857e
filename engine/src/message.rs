//! Messages between shards: the two-phase commit and settlement traffic.

use crate::error::Reject;
use crate::record::Settle;
use crate::types::{AccountId, LineRequest, Money, OrderId, Qty, ShardId, SkuId};

/// A two-phase transaction: the coordinator's shard and its own sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    pub coordinator: ShardId,
    pub seq: u64,
}

/// One message from one shard to another. Messages for a pair of shards
/// travel in batches on that pair's ring, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    /// Try: hold these lines for `account` (the participant's share of an order).
    Prepare {
        tx: TxId,
        account: AccountId,
        /// The order it is for: the participant's records name it, so
        /// that its stock changes can be told per order (the change feed).
        order: OrderId,
        lines: OneOrMany<LineRequest>,
    },
    /// The participant's answer to a Prepare.
    Vote { tx: TxId, vote: Vote },
    /// Confirm or cancel a hold. Sent only to shards that voted yes.
    Decide {
        tx: TxId,
        commit: bool,
        immediate: bool,
    },
    /// Settle stock an order already holds; cannot fail.
    Settle {
        account: AccountId,
        order: OrderId,
        lines: Box<[(SkuId, Qty)]>,
        settle: Settle,
    },
    /// To a lock's shard: may a write fenced by `token` go ahead? If so,
    /// hold the lock's next grant back until `FenceDone`.
    FenceCheck {
        fx: u64,
        name: Box<[u8]>,
        token: u64,
    },
    /// The answer to a `FenceCheck`.
    FenceVote { fx: u64, result: Result<(), Reject> },
    /// The fenced write is decided (and durable): grants may go on.
    FenceDone { fx: u64 },
}

/// A participant's answer to a Prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Held: the unit prices of its lines, in the order they were sent.
    Yes(OneOrMany<Money>),
    /// Not held, and why.
    No(Reject),
    /// The coordinator's decision arrived before this Prepare, which is refused.
    Fenced,
}

/// A participant's share of an order, or its prices. Most shares are a
/// single line, and this travels to another shard, which would free an
/// allocation on a thread other than the one that made it (a slower path
/// in the allocator, and memory the sender cannot reuse at once): one item
/// is carried in the message itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OneOrMany<T> {
    One(T),
    /// Never exactly one item (see `collect`).
    Many(Box<[T]>),
}

impl<T> OneOrMany<T> {
    pub fn collect(items: impl ExactSizeIterator<Item = T>) -> Self {
        let mut items = items;
        if items.len() == 1 {
            return OneOrMany::One(items.next().expect("one item"));
        }
        let mut many = Vec::with_capacity(items.len());
        many.extend(items);
        OneOrMany::Many(many.into_boxed_slice())
    }

    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item),
            OneOrMany::Many(items) => items,
        }
    }
}

impl<T> std::ops::Deref for OneOrMany<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_is_held_in_place_and_every_count_comes_back() {
        for n in 0..4u64 {
            let got = OneOrMany::collect(0..n as u32);
            assert_eq!(matches!(got, OneOrMany::One(_)), n == 1);
            assert_eq!(got.as_slice(), (0..n as u32).collect::<Vec<_>>());
        }
    }
}
