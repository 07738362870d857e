//! Commands a caller sends and the replies it gets back.

use crate::error::Reject;
use crate::hash::shard_of;
use crate::types::{
    AccountId, AccountView, LineRequest, Money, OrderId, OrderView, Payment, Qty, ShardId, SkuId,
    SkuView,
};

/// `place_order`'s arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceOrder {
    pub id: OrderId,
    pub account: AccountId,
    pub lines: Vec<LineRequest>,
    pub payment: Payment,
}

/// Everything a caller can ask of the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Create a SKU with no stock, or replace its price and per-user limit.
    PutSku {
        sku: SkuId,
        price: Money,
        per_user_limit: Qty,
    },
    Restock {
        sku: SkuId,
        qty: Qty,
    },
    /// Credits an account, creating it on its first deposit.
    Deposit {
        account: AccountId,
        amount: Money,
    },
    Withdraw {
        account: AccountId,
        amount: Money,
    },
    PlaceOrder(PlaceOrder),
    Pay {
        account: AccountId,
        order: OrderId,
    },
    Cancel {
        account: AccountId,
        order: OrderId,
    },
    Refund {
        account: AccountId,
        order: OrderId,
        restock: bool,
    },
    GetSku {
        sku: SkuId,
    },
    GetAccount {
        account: AccountId,
    },
    GetOrder {
        account: AccountId,
        order: OrderId,
    },
    /// An account's orders, newest placed first: from its newest, or from
    /// the one placed just before `after`, which must be one of its orders
    /// (else `UnknownOrder`). Passing the last id of a page gets the next.
    ListOrders {
        account: AccountId,
        after: Option<OrderId>,
        limit: u32,
    },
}

impl Command {
    /// Whether the command only reads (and so changes nothing).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::GetSku { .. }
                | Command::GetAccount { .. }
                | Command::GetOrder { .. }
                | Command::ListOrders { .. }
        )
    }

    /// The shard that owns this command: the SKU's for catalog commands, the
    /// account's for everything else (an order lives with its account).
    pub fn owner(&self, shards: u16) -> ShardId {
        let key = match self {
            Command::PutSku { sku, .. }
            | Command::Restock { sku, .. }
            | Command::GetSku { sku } => *sku,
            Command::Deposit { account, .. }
            | Command::Withdraw { account, .. }
            | Command::Pay { account, .. }
            | Command::Cancel { account, .. }
            | Command::Refund { account, .. }
            | Command::GetAccount { account }
            | Command::GetOrder { account, .. }
            | Command::ListOrders { account, .. } => *account,
            Command::PlaceOrder(p) => p.account,
        };
        shard_of(key, shards)
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Sku(SkuView),
    Account(AccountView),
    Order(OrderView),
    /// A page of an account's orders, newest first; `more`: older ones
    /// follow the last here (pass its id as `after`). A page holds at most
    /// `limit` orders and `LIST_PAGE_BYTES_MAX` bytes of them.
    Orders {
        orders: Vec<OrderView>,
        more: bool,
    },
    /// A cache keyspace read: the value, if cached and live.
    Value(Option<bytes::Bytes>),
    /// A cache keyspace write was stored.
    Stored,
    /// A cache keyspace delete: whether a live value was there.
    Deleted(bool),
    CacheStats(crate::cache::CacheStats),
    /// The engine's health (`Info`).
    Info(crate::types::ServerInfo),
}

/// What one command came to: an answer, or a business rejection.
pub type Outcome = Result<Reply, Reject>;
