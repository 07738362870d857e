//! Messages between shards: the two-phase commit and settlement traffic.

use crate::error::Reject;
use crate::record::Settle;
use crate::types::{AccountId, LineRequest, Money, Qty, ShardId, SkuId};

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
        lines: Box<[LineRequest]>,
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
        lines: Box<[(SkuId, Qty)]>,
        settle: Settle,
    },
}

/// A participant's answer to a Prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Held: the unit prices of its lines, in the order they were sent.
    Yes(Box<[Money]>),
    /// Not held, and why.
    No(Reject),
    /// The coordinator's decision arrived before this Prepare, which is refused.
    Fenced,
}
