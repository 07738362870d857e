//! The bodies frames carry, as rkyv archives that are validated on receipt.
//!
//! These types mirror the engine's commands, views and rejections field for
//! field, but belong to this crate: a client links the protocol, never the
//! engine. PROTOCOL.md gives each one's layout.

use rkyv::{Archive, Deserialize, Serialize};

/// Client → server, the first frame on a connection.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// Must match the server's token when it has one.
    pub auth_token: Option<String>,
    /// Free text for the server's logs, at most
    /// [`crate::HELLO_CLIENT_BYTES_MAX`] bytes.
    pub client: String,
}

/// Server → client: what a shard-aware client needs to route.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub shards: u16,
    /// How ids map to shards. 1: `shard = (splitmix64(id) * shards) >> 64`,
    /// where splitmix64 is the finalizer of Steele, Lea and Flood's
    /// SplitMix64 (see PROTOCOL.md).
    pub shard_hash: u8,
    /// The shard this connection talks to.
    pub shard: u16,
    /// Each shard's own port, by shard index.
    pub ports: Vec<u16>,
    pub frame_bytes_max: u32,
    pub batch_len_max: u32,
    /// Requests one connection may have unanswered.
    pub in_flight_max: u32,
    pub order_lines_max: u32,
    /// The most answer bytes one connection may have reserved and not yet
    /// read, and so the largest `Answers` frame body the server sends: a
    /// batch whose answers could pass it is refused before it runs
    /// ([`crate::answers_bytes_max`]), and one that fits only once earlier
    /// answers are read waits for them.
    pub answer_bytes_max: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRequest {
    pub sku: u64,
    pub qty: u32,
    pub expected_unit_price: Option<u64>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payment {
    Immediate,
    Deferred { ttl_ms: u64 },
}

/// One command, as the engine's `Command`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    PutSku {
        sku: u64,
        price: u64,
        per_user_limit: u32,
    },
    Restock {
        sku: u64,
        qty: u32,
    },
    Deposit {
        account: u64,
        amount: u64,
    },
    Withdraw {
        account: u64,
        amount: u64,
    },
    PlaceOrder {
        id: u128,
        account: u64,
        lines: Vec<LineRequest>,
        payment: Payment,
    },
    Pay {
        account: u64,
        order: u128,
    },
    Cancel {
        account: u64,
        order: u128,
    },
    Refund {
        account: u64,
        order: u128,
        restock: bool,
    },
    GetSku {
        sku: u64,
    },
    GetAccount {
        account: u64,
    },
    GetOrder {
        account: u64,
        order: u128,
    },
    ListOrders {
        account: u64,
        after: Option<u128>,
        limit: u32,
    },
    /// Cache keyspace: store `value` under `key` for `ttl_ms` (0: no
    /// deadline). Any shard serves the keyspace requests.
    CacheSet {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: u64,
    },
    CacheGet {
        key: Vec<u8>,
    },
    CacheDel {
        key: Vec<u8>,
    },
    CacheStats,
    /// The server's health: answered by the shard the connection talks to.
    Info,
    /// Take a permit of the lock or semaphore `name` (a lock is one of
    /// `permits: 1`; a name keeps the permits it was first taken with).
    /// Answered `LockGranted`, `LockQueued` (the grant, or the end of the
    /// wait, comes later as a `Notice` frame on this connection), or a
    /// rejection. `bind`: the lease ends when this connection closes.
    LockAcquire {
        name: Vec<u8>,
        owner: u64,
        permits: u32,
        ttl_ms: u64,
        wait: LockWait,
        bind: bool,
    },
    LockRenew {
        name: Vec<u8>,
        token: u64,
        ttl_ms: u64,
    },
    LockRelease {
        name: Vec<u8>,
        token: u64,
    },
    LockInspect {
        name: Vec<u8>,
    },
    /// Withdraw a queued acquire.
    LockCancel {
        name: Vec<u8>,
        ticket: u64,
    },
    /// `write`, run only while `token` may still act under the lock
    /// `lock`: refused with `Reject::Lock(Stale)` once a newer token was
    /// granted, checked in the same transaction as the write.
    Fenced {
        lock: Vec<u8>,
        token: u64,
        /// Boxed, so that every other request stays as small as before.
        write: Box<FencedWrite>,
    },
    /// Record a saga's start; answered with the saga (`Reply::Saga`).
    /// Sagas live on the shard of `saga_id_key(id)`.
    SagaBegin {
        id: u128,
        name: Vec<u8>,
        payload: Vec<u8>,
    },
    /// Record a step's progress.
    SagaStep {
        id: u128,
        step: u16,
        phase: StepPhase,
    },
    /// No more steps: from here the saga can only be compensated.
    SagaAbort {
        id: u128,
    },
    /// End it: committed when every step is done, compensated when every
    /// step is compensated after an abort.
    SagaEnd {
        id: u128,
    },
    SagaGet {
        id: u128,
    },
    /// One shard's sagas by id, after `after`: all, or only those not
    /// ended (`unfinished`). Answered `Reply::Sagas`.
    SagaList {
        shard: u16,
        after: Option<u128>,
        limit: u32,
        unfinished: bool,
    },
    /// Follow the change feed on this connection: answered
    /// `Reply::Subscribed` with where it starts, then `Feed` frames as
    /// changes commit. `name` makes it durable (resumed from what it
    /// acknowledged, held in the log). One subscription per connection.
    Subscribe {
        name: Option<String>,
        start: FeedStart,
        filter: FeedFilter,
    },
    /// Save a named subscription's positions (from a batch's `next`).
    FeedAck {
        positions: Vec<u64>,
    },
    /// Stop this connection's feed.
    Unsubscribe,
    /// The durable subscriptions: `Reply::Subscriptions`.
    SubscriptionList,
    /// Forget one: `Reply::Deleted(existed)`.
    SubscriptionDrop {
        name: String,
    },
}

/// Where a feed starts.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FeedStart {
    Now,
    /// The LSN to read next, per shard.
    At(Vec<u64>),
    /// A copy of the state, then the stream after it.
    Snapshot,
}

/// Which events a subscription is sent; empty lists mean all.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct FeedFilter {
    /// Bits of `FEED_KIND_*`; 0 means every kind.
    pub kinds: u32,
    pub skus: Vec<u64>,
    pub accounts: Vec<u64>,
}

/// `FeedFilter::kinds` bits.
pub const FEED_KIND_SKU: u32 = 1;
pub const FEED_KIND_STOCK: u32 = 2;
pub const FEED_KIND_BALANCE: u32 = 4;
pub const FEED_KIND_ORDER: u32 = 8;
pub const FEED_KIND_COPY: u32 = 16;

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockReason {
    Restock,
    Order,
    Paid,
    Cancel,
    Expiry,
    Refund,
    Released,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceReason {
    Deposit,
    Withdraw,
    Order,
    Refund,
}

/// One business change (the engine's `feed::Event`).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    SkuPut {
        sku: u64,
        price: u64,
        per_user_limit: u32,
    },
    /// Signed changes of a SKU's units.
    Stock {
        sku: u64,
        reason: StockReason,
        /// (account, order) that caused it, if one did.
        order: Option<(u64, u128)>,
        available: i64,
        reserved: i64,
        sold: i64,
    },
    StockSet {
        sku: u64,
        available: u32,
        reserved: u32,
        sold: u32,
    },
    /// A balance went up (`credit`) or down by `amount`.
    Balance {
        account: u64,
        reason: BalanceReason,
        order: Option<u128>,
        amount: u64,
        credit: bool,
    },
    OrderPlaced(OrderView),
    OrderPaid {
        account: u64,
        order: u128,
        lines: Vec<Line>,
    },
    OrderCancelled {
        account: u64,
        order: u128,
        lines: Vec<Line>,
    },
    OrderExpired {
        account: u64,
        order: u128,
        lines: Vec<Line>,
    },
    OrderRefunded {
        account: u64,
        order: u128,
        restock: bool,
        lines: Vec<Line>,
    },
    SkuCopy(SkuView),
    AccountCopy(AccountView),
    OrderCopy(OrderView),
}

/// An event at its position.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    pub shard: u16,
    pub lsn: u64,
    pub event: FeedEvent,
}

/// A `Feed` frame's body: events in log order per shard (a record's
/// events never split over two frames, except a copy's), and per shard
/// the LSN to read next once these are dealt with (what to acknowledge).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FeedBatch {
    pub items: Vec<FeedItem>,
    pub next: Vec<u64>,
    /// The subscription ended: `error` says why (it fell behind what the
    /// log keeps, say); no frame follows.
    pub error: Option<String>,
    /// Set on exactly one batch of a feed that began with a copy of the
    /// state (`FeedStart::Snapshot`): the last that holds copy items. It
    /// may hold none, when the state is empty or filtered out. What comes
    /// before it, it included, is the copy; what follows is the stream.
    pub copy_done: bool,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub name: String,
    pub positions: Vec<u64>,
    pub lost: bool,
}

/// A saga step's progress, as `SagaStep` records it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum StepPhase {
    /// About to run its action.
    Started {
        name: Vec<u8>,
    },
    /// Its action succeeded; `data` is what its compensation needs.
    Done {
        data: Vec<u8>,
    },
    Failed,
    /// Its compensation ran (after an abort; newest step first).
    Compensated,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaState {
    Running,
    Compensating,
    Committed,
    Compensated,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    Started,
    Done,
    Failed,
    Compensated,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StepView {
    pub name: Vec<u8>,
    pub state: StepState,
    pub data: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SagaView {
    pub id: u128,
    pub name: Vec<u8>,
    pub payload: Vec<u8>,
    pub state: SagaState,
    pub steps: Vec<StepView>,
    pub began_at: u64,
    /// 0 until it ends.
    pub ended_at: u64,
}

/// Why a saga call was refused.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaReject {
    InvalidName { len: u64 },
    DataTooLarge { len: u64 },
    Unknown,
    Conflict,
    TooManySteps,
    OutOfOrder { step: u16, next: u16 },
    StepMismatch { step: u16 },
    WrongState { state: SagaState },
    WrongStepState { step: u16, state: StepState },
    NotReady,
    InvalidLimit { limit: u32, max: u32 },
    NoSuchShard { shard: u16 },
}

/// The id a saga is placed by: its id's bytes, little-endian, through
/// [`crate::name_id`].
pub fn saga_id_key(id: u128) -> u64 {
    crate::name_id(&id.to_le_bytes())
}

/// How long a `LockAcquire` may wait.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    Try,
    Ms(u64),
    /// Until granted, cancelled, or the connection closes.
    Forever,
}

/// The writes a fence may guard: as the requests of the same names.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FencedWrite {
    PutSku {
        sku: u64,
        price: u64,
        per_user_limit: u32,
    },
    Restock {
        sku: u64,
        qty: u32,
    },
    Deposit {
        account: u64,
        amount: u64,
    },
    Withdraw {
        account: u64,
        amount: u64,
    },
    PlaceOrder {
        id: u128,
        account: u64,
        lines: Vec<LineRequest>,
        payment: Payment,
    },
    Pay {
        account: u64,
        order: u128,
    },
    Cancel {
        account: u64,
        order: u128,
    },
    Refund {
        account: u64,
        order: u128,
        restock: bool,
    },
    CacheSet {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: u64,
    },
}

impl FencedWrite {
    /// The same write as a plain request.
    pub fn into_request(self) -> Request {
        match self {
            FencedWrite::PutSku {
                sku,
                price,
                per_user_limit,
            } => Request::PutSku {
                sku,
                price,
                per_user_limit,
            },
            FencedWrite::Restock { sku, qty } => Request::Restock { sku, qty },
            FencedWrite::Deposit { account, amount } => Request::Deposit { account, amount },
            FencedWrite::Withdraw { account, amount } => Request::Withdraw { account, amount },
            FencedWrite::PlaceOrder {
                id,
                account,
                lines,
                payment,
            } => Request::PlaceOrder {
                id,
                account,
                lines,
                payment,
            },
            FencedWrite::Pay { account, order } => Request::Pay { account, order },
            FencedWrite::Cancel { account, order } => Request::Cancel { account, order },
            FencedWrite::Refund {
                account,
                order,
                restock,
            } => Request::Refund {
                account,
                order,
                restock,
            },
            FencedWrite::CacheSet { key, value, ttl_ms } => {
                Request::CacheSet { key, value, ttl_ms }
            }
        }
    }
}

/// One holder of a lock or semaphore.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub token: u64,
    pub owner: u64,
    pub expires_at: u64,
    /// What is left of the lease when the server looked, in ms.
    pub remaining_ms: u64,
}

/// What `LockInspect` shows.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub permits: u32,
    /// At most `permits`, by token.
    pub holders: Vec<LockHolder>,
    pub last_token: u64,
    pub waiters: u32,
}

/// Server → client, unasked, in a `Notice` frame: what became of a queued
/// acquire, or a lease lost.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    LockGranted {
        ticket: u64,
        name: Vec<u8>,
        token: u64,
        expires_at: u64,
    },
    /// The wait ran out; the acquire did not get the lock.
    LockWaitEnded { ticket: u64, name: Vec<u8> },
    /// A lease this connection took ended without its release: it ran out
    /// (`expired`), or its session ended.
    LockLost {
        name: Vec<u8>,
        token: u64,
        expired: bool,
    },
}

/// A batch of requests in one frame; answered in order, in one frame.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Requests {
    pub requests: Vec<Request>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkuView {
    pub id: u64,
    pub price: u64,
    pub available: u32,
    pub reserved: u32,
    pub sold: u32,
    pub per_user_limit: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub id: u64,
    pub balance: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub sku: u64,
    pub qty: u32,
    pub unit_price: u64,
}

#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    Reserved,
    Paid,
    Cancelled,
    Expired,
    Refunded,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub id: u128,
    pub account: u64,
    pub lines: Vec<Line>,
    pub total: u64,
    pub state: OrderState,
    pub created_at: u64,
    pub expires_at: u64,
    pub restocked: bool,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Sku(SkuView),
    Account(AccountView),
    Order(OrderView),
    /// One page of an account's orders, newest first. `more`: the account
    /// has older orders than the last here; ask again with its id as
    /// `after`. A page holds at most `limit` orders and at most
    /// [`crate::LIST_PAGE_BYTES_MAX`] bytes of them.
    Orders {
        orders: Vec<OrderView>,
        more: bool,
    },
    Value(Option<Vec<u8>>),
    Stored,
    Deleted(bool),
    CacheStats(CacheStats),
    /// Boxed: it is the largest reply, and every answer would carry its size.
    Info(Box<ServerInfo>),
    LockGranted {
        token: u64,
        expires_at: u64,
    },
    LockQueued {
        ticket: u64,
    },
    LockRenewed {
        expires_at: u64,
    },
    /// Released, or cancelled.
    Done,
    LockInfo(LockInfo),
    Saga(SagaView),
    /// A page of one shard's sagas by id; `more`: later ids follow.
    Sagas {
        sagas: Vec<SagaView>,
        more: bool,
    },
    /// The feed on this connection starts here: the LSN per shard.
    Subscribed {
        positions: Vec<u64>,
    },
    /// At most `SUBSCRIPTIONS_LISTED_MAX`.
    Subscriptions(Vec<SubscriptionInfo>),
}

/// What `Info` tells about the server.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub shards: u16,
    /// Client connections open, all shards.
    pub connections: u64,
    /// Background snapshot failures since the server started.
    pub snapshot_failures: u64,
    /// The shards whose snapshots fail now, why, and when each is tried
    /// again; empty when none does. At most
    /// [`crate::INFO_TEXT_BYTES_MAX`] bytes.
    pub snapshot_error: String,
    /// Shards whose log failed: they answer `Unavailable` until restarted.
    pub failed_logs: u16,
    /// The server's version; at most [`crate::INFO_TEXT_BYTES_MAX`] bytes.
    pub version: String,
    pub uptime_ms: u64,
    /// `always`, `interval=MS`, `never` or `in memory`; at most
    /// [`crate::INFO_TEXT_BYTES_MAX`] bytes.
    pub durability: String,
    /// The server process's resident memory (0 where unknown).
    pub rss_bytes: u64,
    /// Per shard, at most [`crate::SHARDS_MAX`].
    pub shard_states: Vec<ShardInfo>,
}

/// One shard in `Info`: its committed LSN and table sizes, as it last
/// published them.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub committed_lsn: u64,
    pub skus: u64,
    pub accounts: u64,
    pub orders: u64,
    /// The LSN the shard's last checkpoint this run covers (0: none yet).
    pub checkpoint_lsn: u64,
    /// Milliseconds since that checkpoint was written; `None` before one.
    pub checkpoint_age_ms: Option<u64>,
}

/// The cache keyspace's counters and size.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub entries: u64,
    /// Bytes charged against the budget.
    pub bytes: u64,
    pub budget_bytes: u64,
    /// 0: LRU, 1: ARC.
    pub policy: u8,
}

/// A business rejection: the engine's `Reject`, with its data.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    OutOfStock {
        sku: u64,
        available: u32,
        requested: u32,
    },
    InsufficientFunds {
        account: u64,
        balance: u64,
        needed: u64,
    },
    PerUserLimit {
        sku: u64,
        limit: u32,
        already: u32,
        requested: u32,
    },
    PriceChanged {
        sku: u64,
        expected: u64,
        actual: u64,
    },
    UnknownSku {
        sku: u64,
    },
    UnknownAccount {
        account: u64,
    },
    UnknownOrder {
        account: u64,
        order: u128,
    },
    InvalidState {
        order: u128,
        state: OrderState,
    },
    TooManyLines {
        count: u64,
        max: u64,
    },
    EmptyOrder,
    ZeroQuantity {
        sku: u64,
    },
    DuplicateSku {
        sku: u64,
    },
    InvalidTtl {
        ttl_ms: u64,
        max_ms: u64,
    },
    ZeroAmount,
    BalanceOverflow {
        account: u64,
        balance: u64,
        amount: u64,
    },
    StockOverflow {
        sku: u64,
        stocked: u32,
        qty: u32,
    },
    TotalOverflow,
    IdempotencyConflict {
        order: u128,
    },
    InvalidLimit {
        limit: u32,
        max: u32,
    },
    ShardUnavailable {
        shard: u16,
    },
    InvalidKey {
        len: u64,
        max: u64,
    },
    ValueTooLarge {
        len: u64,
        max: u64,
    },
    Lock(LockReject),
    Saga(SagaReject),
    Feed(FeedReject),
    /// The connection's token does not allow this request: `role` is the
    /// token's, `needs` the least that would. Nothing changed.
    Forbidden {
        role: Role,
        needs: Role,
    },
}

/// What a token lets its connection do; each role holds the ones before it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads and the change feed.
    Reader,
    /// Orders (place, pay, cancel), cache writes, locks and sagas.
    Trader,
    /// The catalogue, stock, money in and out, refunds, subscriptions.
    Admin,
}

/// Why a change-feed request was refused.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedReject {
    NoLog,
    Positions {
        given: u32,
        shards: u32,
    },
    Ahead {
        shard: u16,
        lsn: u64,
        committed: u64,
    },
    Lost {
        shard: u16,
        lsn: u64,
        oldest: u64,
    },
    InvalidName,
    SubscriptionLost,
    BadAck,
    AlreadySubscribed,
    NotSubscribed,
    Storage,
    FilterTooLong {
        max: u32,
    },
}

/// Why a lock request (or a fenced write) was refused.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockReject {
    InvalidName {
        len: u64,
    },
    InvalidTtl {
        ttl_ms: u64,
    },
    InvalidPermits {
        permits: u32,
    },
    PermitsMismatch {
        permits: u32,
    },
    Busy {
        token: u64,
    },
    TooManyWaiters,
    Timeout,
    /// A newer token was granted: the write or release did not run.
    Stale {
        token: u64,
        last: u64,
    },
    NotHeld,
    Unknown,
    UnknownTicket,
    NotFenceable,
    NoSession,
}

/// The answer to one request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Done(Reply),
    Rejected(Reject),
    /// The request did not run; `code` is an [`crate::ErrorCode`].
    Failed {
        code: u16,
    },
}

/// The answers to one `Requests` frame, in its order.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    /// The answering shard's load (requests queued or in flight), for the
    /// client's balancer.
    pub load: u32,
    pub answers: Vec<Answer>,
}

/// A protocol error the server reports before it may close.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    /// An [`crate::ErrorCode`].
    pub code: u16,
    pub message: String,
}
