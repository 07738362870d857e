//! The domain's plain data: ids, money, quantities, order lines and views.
//!
//! Money is a count of minor units (cents) and never a float. Quantities are
//! `u32`. Every timestamp is milliseconds since the Unix epoch, assigned by the
//! engine from its injected clock and written into the log, so replay is exact.

/// A SKU id, chosen by the operator.
pub type SkuId = u64;
/// An account (wallet) id, chosen by the operator.
pub type AccountId = u64;
/// An order id, chosen by the client; with the account it is the idempotency key.
pub type OrderId = u128;
/// Minor units of money (cents).
pub type Money = u64;
/// A number of units of one SKU.
pub type Qty = u32;
/// Milliseconds since the Unix epoch.
pub type TimestampMs = u64;
/// Index of a shard, `0..shards`.
pub type ShardId = u16;

/// Orders are owned by their account's shard, so an order is named by both.
///
/// The id is held as two `u64` halves, high half first so the derived order
/// is numeric: a `u128` field would align the key to 16 bytes and pad it from
/// 24 to 32 bytes in every entry of the order table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    pub account: AccountId,
    id: [u64; 2],
}

impl OrderKey {
    pub fn new(account: AccountId, id: OrderId) -> Self {
        OrderKey {
            account,
            id: [(id >> 64) as u64, id as u64],
        }
    }

    pub fn id(&self) -> OrderId {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

impl std::hash::Hash for OrderKey {
    // Three words; the derived impl would hash the array as a slice, with a
    // length prefix and a byte-wise write, on the hottest lookup there is.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.account);
        state.write_u64(self.id[0]);
        state.write_u64(self.id[1]);
    }
}

/// One line of an order as the buyer asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LineRequest {
    pub sku: SkuId,
    pub qty: Qty,
    /// When set, the order fails with `PriceChanged` unless the SKU still costs this.
    pub expected_unit_price: Option<Money>,
}

impl LineRequest {
    pub fn new(sku: SkuId, qty: Qty) -> Self {
        LineRequest {
            sku,
            qty,
            expected_unit_price: None,
        }
    }
}

/// One line of an accepted order, with the price it was sold at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub sku: SkuId,
    pub qty: Qty,
    pub unit_price: Money,
}

/// How an order is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Payment {
    /// Reserve, debit and leave the order `Paid`, all at once.
    Immediate,
    /// Reserve only; the order is `Reserved` until paid, cancelled or expired.
    Deferred { ttl_ms: u64 },
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderState {
    Reserved,
    Paid,
    Cancelled,
    Expired,
    Refunded,
}

/// What a reader sees of a SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkuView {
    pub id: SkuId,
    pub price: Money,
    pub available: Qty,
    pub reserved: Qty,
    pub sold: Qty,
    pub per_user_limit: Qty,
}

/// What a reader sees of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub id: AccountId,
    pub balance: Money,
}

/// The engine's health, as `Info` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServerInfo {
    pub shards: u16,
    /// Client connections open, all shards (0 embedded).
    pub connections: u64,
    /// Background snapshot failures since the engine opened.
    pub snapshot_failures: u64,
    /// The shards whose snapshots fail now, why, and when each is tried
    /// again.
    pub snapshot_error: Option<String>,
    /// Shards whose log failed.
    pub failed_logs: u16,
    pub version: String,
    /// Since the engine opened.
    pub uptime_ms: u64,
    /// `always`, `interval=MS`, `never`, or `in memory`.
    pub durability: String,
    /// The process's resident memory (Linux; 0 elsewhere).
    pub rss_bytes: u64,
    /// Each shard's committed LSN and table sizes, as it last published
    /// them.
    pub shard_states: Vec<ShardInfo>,
}

/// One shard, as `Info` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShardInfo {
    pub committed_lsn: u64,
    pub skus: u64,
    pub accounts: u64,
    pub orders: u64,
    /// The LSN the shard's last checkpoint this run covers (0: none yet).
    pub checkpoint_lsn: u64,
    /// Since that checkpoint was written; `None` before one.
    pub checkpoint_age_ms: Option<u64>,
}

/// One page of `list_orders`: the orders, newest first, and whether the
/// account has older ones (ask again with the last id as `after`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    pub more: bool,
}

/// What a reader sees of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub id: OrderId,
    pub account: AccountId,
    /// A one-line order's line is held in place: the answer to every order
    /// placed would otherwise allocate on the shard and free on the
    /// caller's thread (`OrderLines::iter`, `to_vec`).
    pub lines: crate::order_lines::OrderLines,
    pub total: Money,
    pub state: OrderState,
    pub created_at: TimestampMs,
    /// For a `Deferred` order, when its reservation lapses; 0 for `Immediate`.
    pub expires_at: TimestampMs,
    /// For a `Refunded` order, whether its units went back on sale.
    pub restocked: bool,
}
