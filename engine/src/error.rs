//! The engine's two kinds of "no".
//!
//! A [`Reject`] is a business outcome: the order was valid to ask for but the
//! state of the shop said no (out of stock, not enough money). It is a normal
//! answer, logged for idempotency, and it changed nothing.
//! An [`EngineError`] is a failure of the engine itself or of the call: the
//! engine is shutting down, a queue is full, a batch is too long. The command
//! was not run.

use crate::types::{AccountId, Money, OrderId, OrderState, Qty, SkuId};

/// A command the engine understood and refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    #[error("sku {sku}: {available} available, {requested} requested")]
    OutOfStock {
        sku: SkuId,
        available: Qty,
        requested: Qty,
    },
    #[error("account {account}: balance {balance}, needed {needed}")]
    InsufficientFunds {
        account: AccountId,
        balance: Money,
        needed: Money,
    },
    #[error(
        "sku {sku}: per-user limit {limit}, account already holds {already}, asked for {requested}"
    )]
    PerUserLimit {
        sku: SkuId,
        limit: Qty,
        already: Qty,
        requested: Qty,
    },
    #[error("sku {sku}: expected unit price {expected}, actual {actual}")]
    PriceChanged {
        sku: SkuId,
        expected: Money,
        actual: Money,
    },
    #[error("unknown sku {sku}")]
    UnknownSku { sku: SkuId },
    #[error("unknown account {account}")]
    UnknownAccount { account: AccountId },
    #[error("unknown order {order} of account {account}")]
    UnknownOrder { account: AccountId, order: OrderId },
    #[error("order {order} is {state:?}, which does not allow this")]
    InvalidState { order: OrderId, state: OrderState },
    #[error("an order has 1 to {max} lines, this one has {count}")]
    TooManyLines { count: usize, max: usize },
    #[error("an order needs at least one line")]
    EmptyOrder,
    #[error("sku {sku}: quantity must be at least 1")]
    ZeroQuantity { sku: SkuId },
    #[error("sku {sku} appears twice in one order; put the whole quantity on one line")]
    DuplicateSku { sku: SkuId },
    #[error("ttl {ttl_ms} ms is outside 1..={max_ms} ms")]
    InvalidTtl { ttl_ms: u64, max_ms: u64 },
    #[error("amount must be at least 1")]
    ZeroAmount,
    #[error("account {account}: balance {balance} plus {amount} overflows")]
    BalanceOverflow {
        account: AccountId,
        balance: Money,
        amount: Money,
    },
    #[error("sku {sku}: {stocked} units stocked plus {qty} overflows")]
    StockOverflow { sku: SkuId, stocked: Qty, qty: Qty },
    #[error("order total overflows u64")]
    TotalOverflow,
    #[error("order {order} was first placed with other content")]
    IdempotencyConflict { order: OrderId },
    #[error("list limit {limit} is outside 1..={max}")]
    InvalidLimit { limit: u32, max: u32 },
    /// A shard holding this order's stock cannot write its log, so it held
    /// nothing; the order was not placed.
    #[error("shard {shard} cannot write its log; nothing was held there")]
    ShardUnavailable { shard: u16 },
    /// A cache keyspace key that is empty or longer than `max` bytes.
    #[error("cache key of {len} bytes; keys are 1..={max} bytes")]
    InvalidKey { len: u64, max: u64 },
    #[error("cache value of {len} bytes is over the {max}-byte limit")]
    ValueTooLarge { len: u64, max: u64 },
    /// A lock or semaphore request refused, or a fenced write whose token
    /// is stale.
    #[error("lock: {0}")]
    Lock(crate::lock::LockError),
    #[error("saga: {0}")]
    Saga(crate::saga::SagaError),
    #[error("feed: {0}")]
    Feed(FeedReject),
    /// The connection's token does not allow the request (`access`).
    #[error("a {} token may not do this; it needs {}", role.name(), needs.name())]
    Forbidden {
        role: crate::access::Role,
        needs: crate::access::Role,
    },
}

/// Why a change-feed request over the protocol was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FeedReject {
    #[error("the server keeps no log, so it has no change feed")]
    NoLog,
    #[error("{given} positions for {shards} shards")]
    Positions { given: u32, shards: u32 },
    #[error("shard {shard}: LSN {lsn} is past the committed {committed}")]
    Ahead {
        shard: u16,
        lsn: u64,
        committed: u64,
    },
    #[error("shard {shard}: records from LSN {lsn} are no longer kept (oldest {oldest})")]
    Lost { shard: u16, lsn: u64, oldest: u64 },
    #[error("not a subscription name")]
    InvalidName,
    #[error("the subscription is lost: the log let its records go")]
    SubscriptionLost,
    #[error("those positions cannot be acknowledged")]
    BadAck,
    #[error("this connection follows a feed already")]
    AlreadySubscribed,
    #[error("this connection follows no feed")]
    NotSubscribed,
    #[error("the log or the subscriptions file could not be read")]
    Storage,
    #[error("a filter lists at most {max} SKUs and {max} accounts")]
    FilterTooLong { max: u32 },
}

/// A call the engine could not run. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The shard's inbound queue is full; retry after a pause.
    #[error("shard {shard} is busy: its inbound queue holds {depth_max} requests")]
    Busy { shard: u16, depth_max: usize },
    /// The engine is shutting down or has shut down.
    #[error("the engine is shut down")]
    Shutdown,
    /// A `submit` batch longer than the limit.
    #[error("a batch holds at most {max} commands, this one {len}")]
    BatchTooLong { len: usize, max: usize },
    /// The configuration cannot run.
    #[error("invalid configuration: {what}")]
    InvalidConfig { what: &'static str },
    /// The shard's write-ahead log failed (a write or sync error). It
    /// takes no more writes, and whether this command took effect is
    /// unknown: it was not acknowledged, and recovery decides.
    #[error("shard {shard} is unavailable: its log failed")]
    Unavailable { shard: u16 },
    /// A shard thread could not be started.
    #[error("could not start shard thread {shard}: {kind:?}")]
    Spawn {
        shard: u16,
        kind: std::io::ErrorKind,
    },
}

/// Why [`crate::Engine::open`] failed. Nothing was served; a data directory
/// is left as it was, except that a torn tail may have been cut off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The log refused: corruption (with file and offset), a foreign or
    /// newer layout, or an I/O failure.
    #[error(transparent)]
    Wal(#[from] mercato_wal::WalError),
    #[error("{path} was created with {found} shards; this engine asked for {asked}")]
    WrongShardCount {
        path: std::path::PathBuf,
        found: u16,
        asked: u16,
    },
    #[error("{path} has data format {found}; this build reads format {supported}")]
    WrongFormat {
        path: std::path::PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} is not a mercato data directory marker: {what}")]
    BadMarker {
        path: std::path::PathBuf,
        what: &'static str,
    },
    /// A snapshot's compaction panicked (a bug, or a state its format
    /// cannot hold); counted as a failed snapshot and tried again later.
    #[error("the snapshot panicked: {why}")]
    SnapshotPanicked { why: String },
    /// Another engine, in this process or another, has the data directory
    /// open (`durable::lock`).
    #[error("{path} is locked: another engine has this data directory open")]
    Locked { path: std::path::PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
