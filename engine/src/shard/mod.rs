//! One shard's pure state machine: no I/O, no threads, no clock of its own.
//!
//! Inputs are client commands ([`Shard::apply`]), messages from other shards
//! ([`Shard::deliver`]) and the passage of time ([`Shard::expire_due`]); each
//! takes `now` from the caller. Outputs land in an [`Output`]: replies to
//! callers, messages to other shards and log records. State changes only
//! through [`Record`]s applied by `apply_record`, so replaying a shard's
//! records rebuilds its state exactly.

mod account_table;
mod apply;
mod checkpoint;
mod lifecycle;
mod locking;
mod order;
mod order_table;
mod participant;
mod probe;
mod purchase_table;
mod rejections;
mod reserve;
mod sagas;

use std::collections::BTreeSet;

use crate::audit::AuditPart;
use crate::command::{Command, Outcome, Reply};
use crate::error::Reject;
use crate::hash::{IdMap, IdSet, shard_of};
use crate::limits::{LIST_ORDERS_LIMIT_MAX, LIST_PAGE_BYTES_MAX, SHARDS_MAX};
use crate::message::{PeerMsg, TxId};
use crate::record::Record;
use crate::types::{
    AccountId, AccountView, Money, OrderId, OrderKey, OrderState, OrderView, Qty, ShardId, SkuId,
    SkuView, TimestampMs,
};

use crate::order_lines::OrderLines;
pub(crate) use account_table::{AccountTable, Newest};
pub(crate) use checkpoint::PartKind;
pub use checkpoint::{CheckpointHead, CheckpointPart};
pub use order::fingerprint;
pub(crate) use order_table::OrderTable;
pub(crate) use purchase_table::PurchaseTable;
pub(crate) use rejections::Rejections;

/// How many entries a shard's tables should hold before they need to grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub skus: usize,
    pub accounts: usize,
    pub orders: usize,
    /// (SKU, account) pairs holding units of SKUs with a per-user limit. All
    /// buyers of one limited SKU land on its shard, so every shard reserves
    /// this many rather than a share.
    pub purchases: usize,
    /// Failed orders remembered for retries. No shard remembers more than
    /// two generations (`REJECTIONS_GENERATION_LEN`), so none reserves more.
    pub rejections: usize,
}

impl Capacity {
    /// One shard's share of an engine-wide figure, with room for an uneven spread.
    pub fn per_shard(self, shards: u16) -> Capacity {
        let share = |n: usize| n / shards as usize + n / (shards as usize * 16) + 1;
        Capacity {
            skus: share(self.skus),
            accounts: share(self.accounts),
            orders: share(self.orders),
            purchases: self.purchases,
            rejections: share(self.rejections),
        }
    }
}

/// Names the caller a reply belongs to; the runtime chooses it.
pub type Token = u64;

/// What one call into the shard produced. The caller drains it.
#[derive(Debug, Default)]
pub struct Output {
    pub replies: Vec<(Token, Outcome)>,
    pub sends: Vec<(ShardId, PeerMsg)>,
    pub records: Vec<Record>,
    /// Records already encoded for the write-ahead log, when the shard was
    /// told to (`Shard::encode_records`): see `durable::codec::encode_framed`.
    pub encoded: Vec<u8>,
    /// What sessions are told without asking (lock grants to waiters,
    /// leases lost), by session; held, like replies, until the records
    /// they follow from are durable.
    pub notices: Vec<(u64, crate::lock::Notice)>,
}

/// A SKU with no stock, price or limit is the default: how `put_sku` finds
/// a new one before setting it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sku {
    pub price: Money,
    pub available: Qty,
    pub reserved: Qty,
    pub sold: Qty,
    pub per_user_limit: Qty,
    /// Every unit ever restocked; `available + reserved + sold` must equal it.
    pub stocked: Qty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Account {
    pub balance: Money,
    /// The account's newest order, which links to the ones before it
    /// (`order_table`), for `list_orders`.
    pub newest: Newest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Order {
    pub lines: OrderLines,
    pub state: OrderState,
    pub created_at: TimestampMs,
    /// Reservation time of a `Deferred` order, 0 for `Immediate`. 30 days
    /// of milliseconds fit a `u32`, and a smaller order fits more in cache.
    pub ttl_ms: u32,
    pub restocked: bool,
    pub fingerprint: u64,
}

impl Order {
    /// The order's total, derived from its lines rather than stored: it was
    /// checked for overflow when the order was placed, and 8 bytes less per
    /// order keeps more of the order table in cache.
    pub fn total(&self) -> Money {
        self.lines
            .iter()
            .map(|l| l.unit_price * u64::from(l.qty))
            .sum()
    }

    /// When a `Deferred` order lapses; 0 for `Immediate`.
    pub fn expires_at(&self) -> TimestampMs {
        if self.ttl_ms == 0 {
            0
        } else {
            self.created_at + u64::from(self.ttl_ms)
        }
    }
}

/// Stock a participant holds for a two-phase order until the coordinator decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub account: AccountId,
    /// The order the stock is held for, which the participant's records
    /// name.
    pub order: OrderId,
    pub lines: OrderLines,
}

/// Everything the log rebuilds. Two shards that applied the same records compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardState {
    pub(crate) skus: IdMap<SkuId, Sku>,
    pub(crate) accounts: AccountTable,
    pub(crate) orders: OrderTable,
    /// Units of a limited SKU an account holds in live orders.
    pub(crate) purchases: PurchaseTable,
    pub(crate) holds: IdMap<TxId, Hold>,
    /// Highest prepared sequence per coordinator: the fence against a late Try.
    pub(crate) prepared_upto: IdMap<ShardId, u64>,
    pub(crate) expiry: BTreeSet<(TimestampMs, OrderKey)>,
    pub(crate) rejected: Rejections,
    pub(crate) revenue: u128,
    pub(crate) deposited: u128,
    pub(crate) withdrawn: u128,
    /// Locks and semaphores whose names hash here (`lock/`).
    pub(crate) locks: crate::lock::Locks,
    /// Sagas whose ids hash here (`saga/`).
    pub(crate) sagas: crate::saga::Sagas,
}

impl ShardState {
    /// The main tables' entries at their in-memory size, for metrics: a
    /// floor on what they take (their spare room and the smaller tables
    /// are not counted).
    pub(crate) fn table_bytes(&self) -> u64 {
        let skus = self.skus.len() * std::mem::size_of::<(SkuId, Sku)>();
        let accounts = self.accounts.len() * std::mem::size_of::<(AccountId, Account)>();
        let orders = self.orders.len() * std::mem::size_of::<(OrderKey, Order)>();
        (skus + accounts + orders) as u64
    }

    /// Locks and sagas as the records that rebuild them, for snapshots.
    pub(crate) fn coordination(&self) -> Vec<Record> {
        let locks = self.locks.image().into_iter().map(Record::Lock);
        let sagas = self.sagas.image().into_iter().map(Record::Saga);
        locks.chain(sagas).collect()
    }
}

/// A two-phase order this shard coordinates, waiting for votes.
#[derive(Debug)]
pub(crate) struct PendingTx {
    pub key: OrderKey,
    /// The order's lines as they will be stored; votes fill in the prices.
    pub lines: OrderLines,
    pub payment: crate::types::Payment,
    pub fingerprint: u64,
    pub created_at: TimestampMs,
    pub votes_missing: u16,
    pub voted_yes: ShardSet,
    /// The rejection of the earliest failing line so far, with that line's index.
    pub reject: Option<(usize, Reject)>,
    /// The caller, and any retries of the same order that arrived meanwhile.
    pub waiter: Token,
    pub more_waiters: Vec<Token>,
}

/// A set of shards as a fixed bitmap: no allocation per transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ShardSet([u64; SHARDS_MAX / 64]);

const _: () = assert!(SHARDS_MAX % 64 == 0);

impl ShardSet {
    pub fn insert(&mut self, s: ShardId) {
        self.0[usize::from(s) / 64] |= 1 << (s % 64);
    }

    pub fn contains(&self, s: ShardId) -> bool {
        self.0[usize::from(s) / 64] & (1 << (s % 64)) != 0
    }

    /// The members, ascending; visits set bits only.
    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        self.0.into_iter().enumerate().flat_map(|(word, mut bits)| {
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some((word * 64) as ShardId + bit as ShardId)
            })
        })
    }
}

/// One shard: its durable state plus the coordinator's volatile bookkeeping.
#[derive(Debug)]
pub struct Shard {
    id: ShardId,
    pub(crate) shards: u16,
    pub(crate) state: ShardState,
    pub(crate) pending: IdMap<TxId, PendingTx>,
    pub(crate) pending_keys: IdMap<OrderKey, TxId>,
    pub(crate) next_seq: u64,
    /// Decisions that overtook their Try (cancel-before-try); that Try is refused.
    pub(crate) fenced: IdSet<TxId>,
    pub(crate) sent: Vec<u64>,
    pub(crate) received: Vec<u64>,
    /// How records are handed out: as values in `Output::records` (for a
    /// test or a journal in memory), encoded in `Output::encoded` (for the
    /// write-ahead log), or not at all.
    records_out: RecordsOut,
    /// SKUs and accounts whose views changed, when someone keeps views
    /// current (`track_touched`).
    pub(crate) touched: Option<Touched>,
    /// Whether a checkpoint is copying the state (`checkpoint.rs`).
    checkpointing: bool,
    /// Numbers lock tickets.
    next_ticket: u64,
    /// Fenced writes here waiting for their lock's shard to vote, by
    /// number; those whose vote passed, by caller, until they are
    /// answered; and holds this shard's locks keep for writes elsewhere.
    fence_seq: u64,
    fence_pending: IdMap<u64, (Token, Command)>,
    fence_watch: IdMap<Token, (ShardId, u64)>,
    fence_holds: IdMap<(ShardId, u64), Box<[u8]>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordsOut {
    Keep,
    Encode,
    Discard,
}

/// Ids whose views changed since they were last taken; may repeat.
#[derive(Debug, Default)]
pub struct Touched {
    pub skus: Vec<SkuId>,
    pub accounts: Vec<AccountId>,
    /// SKUs of other shards whose views a message sent here (a Decide or a
    /// Settle) will change there: until they do, their cached views are stale.
    pub remote: Vec<SkuId>,
    /// SKUs of this shard that a Decide or Settle from another shard settled:
    /// the other half of `remote`, one entry per entry there.
    pub settled: Vec<SkuId>,
}

impl Shard {
    pub fn new(id: ShardId, shards: u16) -> Self {
        assert!(shards > 0 && id < shards, "shard {id} of {shards}");
        Shard {
            id,
            shards,
            state: ShardState::default(),
            pending: IdMap::default(),
            pending_keys: IdMap::default(),
            next_seq: 1,
            fenced: IdSet::default(),
            sent: vec![0; shards as usize],
            received: vec![0; shards as usize],
            records_out: RecordsOut::Keep,
            touched: None,
            checkpointing: false,
            next_ticket: 0,
            fence_seq: 0,
            fence_pending: IdMap::default(),
            fence_watch: IdMap::default(),
            fence_holds: IdMap::default(),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The durable part of the state, for comparing a replayed shard with a live one.
    pub fn state(&self) -> &ShardState {
        &self.state
    }

    /// Two-phase orders this shard coordinates or holds stock for. Fences
    /// left by early decisions are not counted: they wait for a Try that may
    /// never come, and hold nothing.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
            + self.state.holds.len()
            + self.fence_pending.len()
            + self.fence_watch.len()
            + self.fence_holds.len()
    }

    /// Rebuild state from a record read back from the log.
    pub fn replay(&mut self, record: Record) {
        self.apply_record(record);
    }

    /// Stop handing out records: for an engine with no journal.
    pub fn discard_records(&mut self) {
        self.records_out = RecordsOut::Discard;
    }

    /// Hand records out encoded for the write-ahead log, in
    /// `Output::encoded`, instead of as values: the record is encoded while
    /// it is in cache, and an order's lines are not copied only to be
    /// encoded and dropped later.
    pub fn encode_records(&mut self) {
        self.records_out = RecordsOut::Encode;
    }

    /// When the next `Deferred` order lapses, if any.
    pub fn next_expiry(&self) -> Option<TimestampMs> {
        self.state.expiry.first().map(|(at, _)| *at)
    }

    pub(crate) fn owns(&self, id: u64) -> bool {
        shard_of(id, self.shards) == self.id
    }

    /// Apply a record and pass it on to the journal.
    pub(crate) fn commit(&mut self, record: Record, out: &mut Output) {
        match self.records_out {
            RecordsOut::Keep => out.records.push(record.clone()),
            RecordsOut::Encode => crate::durable::codec::encode_framed(&record, &mut out.encoded),
            RecordsOut::Discard => {}
        }
        self.apply_record(record);
    }

    /// Pass a record already applied on to the journal.
    pub(crate) fn log(&mut self, record: Record, out: &mut Output) {
        match self.records_out {
            RecordsOut::Keep => out.records.push(record),
            RecordsOut::Encode => crate::durable::codec::encode_framed(&record, &mut out.encoded),
            RecordsOut::Discard => {}
        }
    }

    pub(crate) fn send(&mut self, to: ShardId, msg: PeerMsg, out: &mut Output) {
        debug_assert_ne!(to, self.id);
        self.sent[to as usize] += 1;
        out.sends.push((to, msg));
    }

    /// Bring into cache what `cmds` are about to touch in the big tables.
    ///
    /// An order's account and order-table slot are random in tables of
    /// millions, and each lookup on the order path waits for the one before.
    /// Here they depend on nothing, so their misses overlap: the account's
    /// slot, the order's index line and any per-user-limit count are
    /// prefetched (their addresses follow from the keys' hashes; a new key
    /// is not in the order or purchase table, so a lookup would stop before
    /// the line its insert writes), the remembered rejections looked up,
    /// and the `apply` calls that follow find the lines in cache. Worth it
    /// for a few commands at a time: more, and the first are evicted again.
    pub fn warm<'a>(&self, cmds: impl IntoIterator<Item = &'a Command>) {
        let st = &self.state;
        let mut touched = 0u64;
        for cmd in cmds {
            if let Command::PlaceOrder(p) = cmd {
                let key = OrderKey::new(p.account, p.id);
                self.warm_order(&key);
                touched ^= st.rejected.get(&key).map_or(0, |r| r.0);
                for l in p.lines.iter().filter(|l| self.owns(l.sku)) {
                    self.warm_purchase(l.sku, p.account);
                }
            }
        }
        std::hint::black_box(touched);
    }

    /// Prefetches the account of the order `key` and the order's index
    /// line: what inserting the order touches.
    fn warm_order(&self, key: &OrderKey) {
        let st = &self.state;
        st.orders.prefetch(key);
        st.accounts.prefetch(&key.account);
    }

    /// Prefetches the per-user-limit count of (`sku`, `account`), if `sku`
    /// has a limit: other SKUs never touch that table, and a prefetch into
    /// it would only evict something useful.
    fn warm_purchase(&self, sku: SkuId, account: AccountId) {
        if self
            .state
            .skus
            .get(&sku)
            .is_some_and(|s| s.per_user_limit > 0)
        {
            self.state.purchases.prefetch(&(sku, account));
        }
    }

    /// `warm` for messages from other shards: a vote's order and account at
    /// the coordinator; a prepare's per-user-limit counts, and a decision's
    /// hold and stock, at the participant.
    pub fn warm_messages<'a>(&self, msgs: impl IntoIterator<Item = &'a PeerMsg>) {
        let mut touched = 0u64;
        for msg in msgs {
            match msg {
                PeerMsg::Vote { tx, .. } => {
                    if let Some(p) = self.pending.get(tx) {
                        self.warm_order(&p.key);
                    }
                }
                PeerMsg::Prepare { account, lines, .. } => {
                    for l in lines.iter() {
                        self.warm_purchase(l.sku, *account);
                    }
                }
                // Settling reads the hold, then the stock of each of its
                // SKUs. Two syncs have passed since the Prepare touched
                // them, so under a durable load both are cold by now.
                PeerMsg::Decide { tx, .. } => {
                    if let Some(hold) = self.state.holds.get(tx) {
                        for l in hold.lines.iter() {
                            touched ^= self.warm_sku(l.sku);
                        }
                    }
                }
                PeerMsg::Settle { lines, .. } => {
                    for &(sku, _) in lines.iter() {
                        touched ^= self.warm_sku(sku);
                    }
                }
                _ => {}
            }
        }
        std::hint::black_box(touched);
    }

    /// Looks up `sku`'s stock entry; returns a value read from it.
    fn warm_sku(&self, sku: SkuId) -> u64 {
        self.state
            .skus
            .get(&sku)
            .map_or(0, |s| u64::from(s.reserved))
    }

    /// `warm` for records read back from the log: what replaying them
    /// touches in the big tables (an order's index line and its account;
    /// per-user-limit counts).
    pub(crate) fn warm_records(&self, records: &[Record]) {
        for record in records {
            match record {
                Record::OrderPlaced(o) => {
                    self.warm_order(&o.key);
                    for l in o.lines.iter() {
                        self.warm_purchase(l.sku, o.key.account);
                    }
                }
                Record::OrderCommitted { order, .. } => self.warm_order(&order.key),
                Record::Paid { key, .. }
                | Record::Cancelled { key, .. }
                | Record::Expired { key, .. }
                | Record::Refunded { key, .. } => self.warm_order(key),
                Record::Prepared { account, lines, .. } => {
                    for l in lines.iter() {
                        self.warm_purchase(l.sku, *account);
                    }
                }
                Record::Deposited { account, .. } | Record::Withdrew { account, .. } => {
                    self.state.accounts.prefetch(account);
                }
                _ => {}
            }
        }
    }

    /// Run one client command that this shard owns.
    pub fn apply(&mut self, token: Token, cmd: Command, now: TimestampMs, out: &mut Output) {
        let before = out.replies.len();
        self.apply_inner(token, cmd, now, out);
        self.settle_fences(out, before);
    }

    fn apply_inner(&mut self, token: Token, cmd: Command, now: TimestampMs, out: &mut Output) {
        debug_assert_eq!(
            cmd.owner(self.shards),
            self.id,
            "{cmd:?} sent to the wrong shard"
        );
        let outcome = match cmd {
            Command::PutSku {
                sku,
                price,
                per_user_limit,
            } => {
                self.commit(
                    Record::SkuPut {
                        sku,
                        price,
                        per_user_limit,
                    },
                    out,
                );
                self.sku_view(sku)
            }
            Command::Restock { sku, qty } => self.restock(sku, qty, out),
            Command::Deposit { account, amount } => self.deposit(account, amount, out),
            Command::Withdraw { account, amount } => self.withdraw(account, amount, out),
            Command::PlaceOrder(p) => return self.place_order(token, p, now, out),
            Command::Pay { account, order } => self.pay(OrderKey::new(account, order), now, out),
            Command::Cancel { account, order } => {
                self.cancel(OrderKey::new(account, order), now, out)
            }
            Command::Refund {
                account,
                order,
                restock,
            } => self.refund(OrderKey::new(account, order), restock, out),
            Command::GetSku { sku } => self.sku_view(sku),
            Command::GetAccount { account } => self.account_view(account),
            Command::GetOrder { account, order } => self
                .order_view(OrderKey::new(account, order))
                .map(Reply::Order),
            Command::ListOrders {
                account,
                after,
                limit,
            } => self.list_orders(account, after, limit),
            Command::Lock(l) => self.lock_command(l, now, out),
            Command::Saga(s) => self.saga_command(s, now, out),
            Command::Fenced {
                lock,
                token: fence,
                cmd,
            } => return self.fenced(token, lock, fence, *cmd, now, out),
            // An unfenced keyspace write never reaches a shard, and the
            // runtime runs a fenced one itself.
            Command::CacheSet { .. } => Err(Reject::Lock(crate::lock::LockError::NotFenceable)),
        };
        out.replies.push((token, outcome));
    }

    /// Handle one message from shard `from`.
    pub fn deliver(&mut self, from: ShardId, msg: PeerMsg, now: TimestampMs, out: &mut Output) {
        let before = out.replies.len();
        self.deliver_inner(from, msg, now, out);
        self.settle_fences(out, before);
    }

    fn deliver_inner(&mut self, from: ShardId, msg: PeerMsg, now: TimestampMs, out: &mut Output) {
        self.received[from as usize] += 1;
        match msg {
            msg @ (PeerMsg::FenceCheck { .. }
            | PeerMsg::FenceVote { .. }
            | PeerMsg::FenceDone { .. }) => self.on_fence_msg(from, msg, now, out),
            PeerMsg::Prepare {
                tx,
                account,
                order,
                lines,
            } => {
                let vote = self.prepare(tx, account, order, &lines, out);
                self.send(from, PeerMsg::Vote { tx, vote }, out);
            }
            PeerMsg::Vote { tx, vote } => self.on_vote(tx, from, vote, now, out),
            PeerMsg::Decide {
                tx,
                commit,
                immediate,
            } => {
                if let (Some(t), Some(hold)) = (&mut self.touched, self.state.holds.get(&tx)) {
                    t.settled.extend(hold.lines.iter().map(|l| l.sku));
                }
                self.decide(tx, commit, immediate, out)
            }
            PeerMsg::Settle {
                account,
                order,
                lines,
                settle,
            } => {
                if let Some(t) = &mut self.touched {
                    t.settled.extend(lines.iter().map(|&(sku, _)| sku));
                }
                self.commit(
                    Record::StockSettled {
                        account,
                        order,
                        lines,
                        settle,
                    },
                    out,
                )
            }
        }
    }

    fn restock(&mut self, sku: SkuId, qty: Qty, out: &mut Output) -> Outcome {
        let s = self
            .state
            .skus
            .get(&sku)
            .ok_or(Reject::UnknownSku { sku })?;
        if qty == 0 {
            return Err(Reject::ZeroQuantity { sku });
        }
        if s.stocked.checked_add(qty).is_none() {
            return Err(Reject::StockOverflow {
                sku,
                stocked: s.stocked,
                qty,
            });
        }
        self.commit(Record::Restocked { sku, qty }, out);
        self.sku_view(sku)
    }

    fn deposit(&mut self, account: AccountId, amount: Money, out: &mut Output) -> Outcome {
        if amount == 0 {
            return Err(Reject::ZeroAmount);
        }
        let balance = self.state.accounts.get(&account).map_or(0, |a| a.balance);
        if balance.checked_add(amount).is_none() {
            return Err(Reject::BalanceOverflow {
                account,
                balance,
                amount,
            });
        }
        self.commit(Record::Deposited { account, amount }, out);
        self.account_view(account)
    }

    fn withdraw(&mut self, account: AccountId, amount: Money, out: &mut Output) -> Outcome {
        let a = self
            .state
            .accounts
            .get(&account)
            .ok_or(Reject::UnknownAccount { account })?;
        if amount == 0 {
            return Err(Reject::ZeroAmount);
        }
        if a.balance < amount {
            return Err(Reject::InsufficientFunds {
                account,
                balance: a.balance,
                needed: amount,
            });
        }
        self.commit(Record::Withdrew { account, amount }, out);
        self.account_view(account)
    }

    /// Start (or stop) noting which SKUs' and accounts' views change.
    pub fn track_touched(&mut self, on: bool) {
        self.touched = on.then(Touched::default);
    }

    /// The ids noted since the last call, moved into `into` (emptied first).
    pub fn take_touched(&mut self, into: &mut Touched) {
        into.skus.clear();
        into.accounts.clear();
        into.remote.clear();
        into.settled.clear();
        if let Some(t) = &mut self.touched {
            std::mem::swap(t, into);
        }
    }

    pub fn sku_view_of(&self, sku: SkuId) -> Option<SkuView> {
        match self.sku_view(sku) {
            Ok(Reply::Sku(v)) => Some(v),
            _ => None,
        }
    }

    pub fn account_view_of(&self, account: AccountId) -> Option<AccountView> {
        match self.account_view(account) {
            Ok(Reply::Account(v)) => Some(v),
            _ => None,
        }
    }

    fn sku_view(&self, sku: SkuId) -> Outcome {
        let s = self
            .state
            .skus
            .get(&sku)
            .ok_or(Reject::UnknownSku { sku })?;
        Ok(Reply::Sku(SkuView {
            id: sku,
            price: s.price,
            available: s.available,
            reserved: s.reserved,
            sold: s.sold,
            per_user_limit: s.per_user_limit,
        }))
    }

    fn account_view(&self, account: AccountId) -> Outcome {
        let a = self
            .state
            .accounts
            .get(&account)
            .ok_or(Reject::UnknownAccount { account })?;
        Ok(Reply::Account(AccountView {
            id: account,
            balance: a.balance,
        }))
    }

    /// The order `id` of `account`, if this shard holds it.
    pub fn order(&self, account: AccountId, id: OrderId) -> Option<OrderView> {
        self.order_view(OrderKey::new(account, id)).ok()
    }

    pub(crate) fn order_view(&self, key: OrderKey) -> Result<OrderView, Reject> {
        let o = self.state.orders.get(&key).ok_or(Reject::UnknownOrder {
            account: key.account,
            order: key.id(),
        })?;
        Ok(view_of(&key, o))
    }

    fn list_orders(&self, account: AccountId, after: Option<OrderId>, limit: u32) -> Outcome {
        let a = self
            .state
            .accounts
            .get(&account)
            .ok_or(Reject::UnknownAccount { account })?;
        if limit == 0 || limit > LIST_ORDERS_LIMIT_MAX {
            return Err(Reject::InvalidLimit {
                limit,
                max: LIST_ORDERS_LIMIT_MAX,
            });
        }
        let orders = &self.state.orders;
        let start = match after {
            None => a.newest.get(),
            Some(order) => orders
                .older_than(&OrderKey::new(account, order))
                .ok_or(Reject::UnknownOrder { account, order })?,
        };
        let mut walk = orders.walk_older(start).peekable();
        let mut views = Vec::new();
        let mut page_bytes = 0;
        while let Some((key, o)) = walk.peek() {
            // At least one order a page, so paging always moves on.
            let bytes = mercato_protocol::order_view_bytes(o.lines.len());
            let full = views.len() == limit as usize
                || (!views.is_empty() && page_bytes + bytes > LIST_PAGE_BYTES_MAX);
            if full {
                break;
            }
            page_bytes += bytes;
            views.push(view_of(key, o));
            walk.next();
        }
        let more = walk.peek().is_some();
        Ok(Reply::Orders {
            orders: views,
            more,
        })
    }

    /// Remember a failed order so its retry gets the same answer; the
    /// oldest are forgotten a generation at a time (`Rejections`), because
    /// memory must not grow with every failure.
    pub(crate) fn remember_rejection(&mut self, key: OrderKey, fingerprint: u64, reject: Reject) {
        self.state.rejected.insert(key, (fingerprint, reject));
    }

    /// A copy of this shard's SKUs, accounts and orders as change-feed
    /// events (`feed::Event::SkuCopy`, ...), each SKU and account by id,
    /// orders by account, then id.
    pub fn copy_events(&self) -> Vec<crate::feed::Event> {
        use crate::feed::Event;
        let st = &self.state;
        let mut skus: Vec<SkuId> = st.skus.keys().copied().collect();
        skus.sort_unstable();
        let mut accounts: Vec<AccountId> = st.accounts.iter().map(|(&a, _)| a).collect();
        accounts.sort_unstable();
        let mut orders: Vec<OrderKey> = st.orders.iter().map(|(&k, _)| k).collect();
        orders.sort_unstable_by_key(|k| (k.account, k.id()));
        let skus = skus
            .into_iter()
            .filter_map(|s| self.sku_view_of(s))
            .map(Event::SkuCopy);
        let accounts = (accounts.into_iter())
            .filter_map(|a| self.account_view_of(a))
            .map(Event::AccountCopy);
        let orders = (orders.into_iter())
            .filter_map(|k| self.order_view(k).ok())
            .map(Event::OrderCopy);
        skus.chain(accounts).chain(orders).collect()
    }

    /// This shard's contribution to a whole-engine audit.
    pub fn audit_part(&self) -> AuditPart {
        AuditPart::of(self)
    }
}

/// What a reader sees of the order `o` held under `key`.
fn view_of(key: &OrderKey, o: &Order) -> OrderView {
    OrderView {
        id: key.id(),
        account: key.account,
        lines: o.lines.clone(),
        total: o.total(),
        state: o.state,
        created_at: o.created_at,
        expires_at: o.expires_at(),
        restocked: o.restocked,
    }
}

/// For the tables' tests: feeds `add` the numbers below `n`, each to put
/// one more entry in a table and return its capacity, and checks that the
/// capacity doubles each time it grows and ends below twice `n`.
#[cfg(test)]
pub(crate) fn assert_grows_by_doubling(n: u64, mut add: impl FnMut(u64) -> usize) {
    let mut capacities: Vec<usize> = Vec::new();
    for i in 0..n {
        let capacity = add(i);
        if capacities.last() != Some(&capacity) {
            capacities.push(capacity);
        }
    }
    let first = capacities[0];
    let doubled: Vec<usize> = (0..capacities.len()).map(|k| first << k).collect();
    assert_eq!(capacities, doubled);
    assert!(*capacities.last().expect("one") < 2 * n as usize);
}
