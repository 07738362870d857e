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
    /// A lock or semaphore request, run by the shard its name lives on.
    Lock(LockCommand),
    /// A write that runs only while `token` may still act under `lock`
    /// (`Locks::check_fence`), checked in the same transaction: on the
    /// write's shard, or through a check that holds the lock's next grant
    /// back until the write is decided. A stale token gets
    /// `Reject::Lock(LockError::Stale)` and nothing runs.
    Fenced {
        lock: Box<[u8]>,
        token: u64,
        cmd: Box<Command>,
    },
    /// A saga's progress (`saga/`), kept by the shard its id lives on.
    Saga(SagaCommand),
    /// A cache keyspace write; only as a `Fenced` command's write, which
    /// then runs on the lock's shard (an unfenced one never reaches a
    /// shard: any thread serves the keyspace).
    CacheSet {
        key: Box<[u8]>,
        value: bytes::Bytes,
        ttl_ms: u64,
    },
}

/// Requests to record or read a saga's progress (`saga/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SagaCommand {
    Begin {
        id: u128,
        name: Box<[u8]>,
        payload: Box<[u8]>,
    },
    Step {
        id: u128,
        step: u16,
        phase: StepPhase,
    },
    Abort {
        id: u128,
    },
    End {
        id: u128,
    },
    Get {
        id: u128,
    },
    /// One shard's sagas by id, after `after`.
    List {
        shard: ShardId,
        after: Option<u128>,
        limit: u32,
        unfinished: bool,
    },
}

/// A saga step's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepPhase {
    Started { name: Box<[u8]> },
    Done { data: Box<[u8]> },
    Failed,
    Compensated,
}

/// The shard a saga lives on.
pub fn shard_of_saga(id: u128, shards: u16) -> ShardId {
    shard_of(mercato_protocol::saga_id_key(id), shards)
}

/// How long a lock acquire may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// Answer at once: granted or `Busy`.
    Try,
    /// Queue, for at most this many milliseconds.
    Ms(u64),
    /// Queue until granted, cancelled, or the session ends.
    Forever,
}

/// Requests to a lock or semaphore (`lock/`). A lock is a semaphore of
/// one permit; a name keeps the permits it was first taken with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCommand {
    /// Answered `LockGranted` at once, `LockQueued` with a ticket whose
    /// grant (or end of wait) comes later as a notice to `session`, or a
    /// rejection.
    Acquire {
        name: Box<[u8]>,
        /// The caller's own id for itself, shown by `Inspect`.
        owner: u64,
        permits: u32,
        ttl_ms: u64,
        wait: LockWait,
        /// The session asking, which is told of grants and losses; the
        /// server sets it to the connection's, whatever a client sent.
        session: Option<u64>,
        /// The lease ends when `session` does.
        bind: bool,
    },
    Renew {
        name: Box<[u8]>,
        token: u64,
        ttl_ms: u64,
    },
    Release {
        name: Box<[u8]>,
        token: u64,
    },
    Inspect {
        name: Box<[u8]>,
    },
    /// Withdraw a queued acquire.
    Cancel {
        name: Box<[u8]>,
        ticket: u64,
    },
}

impl LockCommand {
    pub fn name(&self) -> &[u8] {
        match self {
            LockCommand::Acquire { name, .. }
            | LockCommand::Renew { name, .. }
            | LockCommand::Release { name, .. }
            | LockCommand::Inspect { name }
            | LockCommand::Cancel { name, .. } => name,
        }
    }
}

/// The shard a lock (or any named object) lives on.
pub fn shard_of_name(name: &[u8], shards: u16) -> ShardId {
    shard_of(mercato_protocol::name_id(name), shards)
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
                | Command::Lock(LockCommand::Inspect { .. })
                | Command::Saga(SagaCommand::Get { .. } | SagaCommand::List { .. })
        )
    }

    /// Whether the command may carry a fence: a write to the shop's state
    /// or to the cache keyspace.
    pub fn is_fenceable(&self) -> bool {
        matches!(
            self,
            Command::PutSku { .. }
                | Command::Restock { .. }
                | Command::Deposit { .. }
                | Command::Withdraw { .. }
                | Command::PlaceOrder(_)
                | Command::Pay { .. }
                | Command::Cancel { .. }
                | Command::Refund { .. }
                | Command::CacheSet { .. }
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
            Command::Lock(l) => return shard_of_name(l.name(), shards),
            Command::Saga(s) => {
                return match s {
                    SagaCommand::Begin { id, .. }
                    | SagaCommand::Step { id, .. }
                    | SagaCommand::Abort { id }
                    | SagaCommand::End { id }
                    | SagaCommand::Get { id } => shard_of_saga(*id, shards),
                    // A shard past the last is refused where it is run.
                    SagaCommand::List { shard, .. } => (*shard).min(shards - 1),
                };
            }
            Command::Fenced { lock, cmd, .. } => {
                return match **cmd {
                    // Run where the check is: the keyspace is everyone's.
                    Command::CacheSet { .. } => shard_of_name(lock, shards),
                    ref inner => inner.owner(shards),
                };
            }
            // Only a fenced one reaches a shard; any shard may take it.
            Command::CacheSet { .. } => 0,
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
    /// Boxed: the largest reply, whose size every outcome would carry.
    Info(Box<crate::types::ServerInfo>),
    /// A lease: its fencing token, and when it ends on the engine's clock.
    LockGranted {
        token: u64,
        expires_at: u64,
    },
    /// The acquire waits; its grant or the end of its wait comes as a
    /// notice under this ticket.
    LockQueued {
        ticket: u64,
    },
    /// A renewed lease's new end.
    LockRenewed {
        expires_at: u64,
    },
    /// Released or cancelled.
    Done,
    LockInfo(crate::lock::LockInfo),
    Saga(crate::saga::SagaView),
    Sagas {
        sagas: Vec<crate::saga::SagaView>,
        more: bool,
    },
    /// The change feed on this connection starts here, per shard.
    Subscribed {
        positions: Vec<u64>,
    },
    Subscriptions(Vec<crate::durable::retention::Subscription>),
}

/// What one command came to: an answer, or a business rejection.
pub type Outcome = Result<Reply, Reject>;
