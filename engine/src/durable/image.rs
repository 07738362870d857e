//! A shard's state as a snapshot archives it, and how it gets there.
//!
//! The archive holds plain vectors, not hash tables: loading walks them in
//! place, straight out of the memory map (`snapshot::load`). Writing goes
//! straight from the shard's tables: [`ImageView`] archives as an
//! [`Image`] without one being built, since an image is a copy of the
//! whole shard (one vector per order for its lines) that the compactor
//! used to allocate, fill and free for every snapshot. The bytes are the
//! same as an `Image`'s (tested below), so the format did not change.

use rkyv::munge::munge;
use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};

use super::codec;
use crate::message::TxId;
use crate::record::Record;
use crate::shard::{CheckpointHead, CheckpointPart, Hold, Order, PartKind, Shard, Sku};
use crate::types::{Line, OrderKey, ShardId};
use mercato_wal::Lsn;

#[derive(Archive, Serialize)]
// `Image`, `OrderImage` and `HoldImage` are written through the views
// below; only tests build them, as the views' reference.
pub(super) struct Image {
    pub(super) shard: u16,
    pub(super) shards: u16,
    pub(super) lsn: u64,
    pub(super) skus: Vec<SkuImage>,
    pub(super) accounts: Vec<AccountImage>,
    pub(super) orders: Vec<OrderImage>,
    pub(super) purchases: Vec<PurchaseImage>,
    pub(super) holds: Vec<HoldImage>,
    pub(super) prepared_upto: Vec<PreparedImage>,
    /// Remembered rejections, the older generation first, as `OrderRejected`
    /// record bodies.
    pub(super) rejected: Vec<Vec<u8>>,
    /// Locks and semaphores, as the records that rebuild them
    /// (`Locks::image`), each its kind byte then its body.
    pub(super) coordination: Vec<Vec<u8>>,
    pub(super) revenue: u128,
    pub(super) deposited: u128,
    pub(super) withdrawn: u128,
}

#[derive(Archive, Serialize)]
pub(super) struct SkuImage {
    pub(super) id: u64,
    pub(super) price: u64,
    pub(super) available: u32,
    pub(super) reserved: u32,
    pub(super) sold: u32,
    pub(super) per_user_limit: u32,
    pub(super) stocked: u32,
}

/// An account's orders are not listed here: loading links each order to its
/// account's newest as it restores the orders in the order they were placed.
#[derive(Archive, Serialize)]
pub(super) struct AccountImage {
    pub(super) id: u64,
    pub(super) balance: u64,
}

#[derive(Archive, Serialize)]
pub(super) struct LineImage {
    pub(super) sku: u64,
    pub(super) qty: u32,
    pub(super) unit_price: u64,
}

#[derive(Archive, Serialize)]
pub(super) struct OrderImage {
    pub(super) account: u64,
    pub(super) id: [u64; 2],
    pub(super) lines: Vec<LineImage>,
    pub(super) state: u8,
    pub(super) created_at: u64,
    pub(super) ttl_ms: u32,
    pub(super) restocked: bool,
    pub(super) fingerprint: u64,
}

#[derive(Archive, Serialize)]
pub(super) struct PurchaseImage {
    pub(super) sku: u64,
    pub(super) account: u64,
    pub(super) qty: u32,
}

#[derive(Archive, Serialize)]
pub(super) struct HoldImage {
    pub(super) coordinator: u16,
    pub(super) seq: u64,
    pub(super) account: u64,
    /// The order's id, high half first.
    pub(super) order: [u64; 2],
    pub(super) lines: Vec<LineImage>,
}

#[derive(Archive, Serialize)]
pub(super) struct PreparedImage {
    pub(super) coordinator: u16,
    pub(super) seq: u64,
}

/// An iterator told its length, which rkyv needs to lay a vector out from
/// an iterator. [`vec_of`] counts it first, so the length is exact.
#[derive(Clone)]
struct Counted<I> {
    iter: I,
    left: usize,
}

fn counted<I: Iterator>(iter: I, len: usize) -> Counted<I> {
    Counted { iter, left: len }
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.iter.next()?;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

/// Serialize `items` as the out-of-line part of an `ArchivedVec` of them.
/// They are counted by a pass of their own rather than by the table's
/// length, so that the archive's length and its elements cannot disagree.
fn vec_of<U, I, S>(items: I, s: &mut S) -> Result<Laid, S::Error>
where
    U: Serialize<S>,
    I: Iterator<Item = U> + Clone,
    S: Fallible + Allocator + Writer + ?Sized,
{
    let len = items.clone().count();
    let at = ArchivedVec::<U::Archived>::serialize_from_iter::<U, _, _>(counted(items, len), s)?;
    Ok(Laid { at, len })
}

/// What resolving a vector needs: where its elements went, and how many.
pub(super) struct Laid {
    at: VecResolver,
    len: usize,
}

fn line_image(l: Line) -> LineImage {
    LineImage {
        sku: l.sku,
        qty: l.qty,
        unit_price: l.unit_price,
    }
}

fn sku_image((&id, s): (&u64, &Sku)) -> SkuImage {
    SkuImage {
        id,
        price: s.price,
        available: s.available,
        reserved: s.reserved,
        sold: s.sold,
        per_user_limit: s.per_user_limit,
        stocked: s.stocked,
    }
}

fn lines_image(lines: impl Iterator<Item = Line>) -> Vec<LineImage> {
    lines
        .map(|l| LineImage {
            sku: l.sku,
            qty: l.qty,
            unit_price: l.unit_price,
        })
        .collect()
}

fn rejection_body(key: OrderKey, (fingerprint, reject): (u64, crate::error::Reject)) -> Vec<u8> {
    let mut body = Vec::new();
    let record = Record::OrderRejected {
        key,
        fingerprint,
        reject,
    };
    codec::encode(&record, &mut body);
    body
}

fn order_image(key: &OrderKey, o: &Order) -> OrderImage {
    let id = key.id();
    OrderImage {
        account: key.account,
        id: [(id >> 64) as u64, id as u64],
        lines: lines_image(o.lines.iter()),
        state: codec::state_code(o.state),
        created_at: o.created_at,
        ttl_ms: o.ttl_ms,
        restocked: o.restocked,
        fingerprint: o.fingerprint,
    }
}

/// An image of `head`'s scalars and nothing else, to fill in.
fn blank(shard: ShardId, shards: u16, head: &CheckpointHead) -> Image {
    Image {
        shard,
        shards,
        lsn: head.lsn,
        skus: Vec::new(),
        accounts: Vec::new(),
        orders: Vec::new(),
        purchases: Vec::new(),
        holds: Vec::new(),
        prepared_upto: Vec::new(),
        rejected: Vec::new(),
        coordination: Vec::new(),
        revenue: head.revenue,
        deposited: head.deposited,
        withdrawn: head.withdrawn,
    }
}

/// The first part of a checkpoint's snapshot: the tables it copied whole
/// when it began.
pub(super) fn head_image(shard: ShardId, shards: u16, head: &CheckpointHead) -> Image {
    let mut image = blank(shard, shards, head);
    image.skus = head.skus.iter().map(|(id, s)| sku_image((id, s))).collect();
    image.holds = (head.holds.iter())
        .map(|(tx, h)| HoldImage {
            coordinator: tx.coordinator,
            seq: tx.seq,
            account: h.account,
            order: [(h.order >> 64) as u64, h.order as u64],
            lines: lines_image(h.lines.iter()),
        })
        .collect();
    image.prepared_upto = (head.prepared_upto.iter())
        .map(|&(coordinator, seq)| PreparedImage { coordinator, seq })
        .collect();
    image.rejected = (head.rejected.iter())
        .map(|&(key, r)| rejection_body(key, r))
        .collect();
    image.coordination = head.coordination.iter().map(coordination_bytes).collect();
    image
}

/// A coordination record as a snapshot keeps it: its kind, then its body.
pub(super) fn coordination_bytes(r: &Record) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes[0] = codec::encode(r, &mut bytes);
    debug_assert!(bytes.len() <= COORDINATION_BYTES_MAX, "{}", bytes.len());
    bytes
}

/// A part of a checkpoint's snapshot: one slice it copied.
pub(super) fn part_image(
    shard: ShardId,
    shards: u16,
    head: &CheckpointHead,
    part: &CheckpointPart,
) -> Image {
    let mut image = blank(shard, shards, head);
    match &part.0 {
        PartKind::Accounts(a) => {
            image.accounts = (a.iter())
                .map(|&(id, balance)| AccountImage { id, balance })
                .collect();
        }
        PartKind::Purchases(p) => {
            image.purchases = (p.iter())
                .map(|&((sku, account), qty)| PurchaseImage { sku, account, qty })
                .collect();
        }
        PartKind::Orders { orders, .. } => {
            image.orders = orders.iter().map(|(k, o)| order_image(k, o)).collect();
        }
    }
    image
}

/// Lines, archived as the `Vec<LineImage>` of an order or a hold.
fn lay_lines<'a, S>(lines: crate::order_lines::Lines<'a>, s: &mut S) -> Result<Laid, S::Error>
where
    S: Fallible + Allocator + Writer + ?Sized,
{
    vec_of(lines.map(line_image), s)
}

/// A shard's state as of an LSN, archived as an [`Image`] of it: all of
/// it, or (with `part`) the items of one table in one range, every other
/// table left empty.
pub(super) struct ImageView<'a> {
    pub shard: &'a Shard,
    pub lsn: Lsn,
    pub part: Option<Part>,
}

/// The image's tables, in the order a snapshot lays them out: accounts
/// before orders, which link to them when loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    Skus,
    Accounts,
    Orders,
    Purchases,
    Holds,
    Prepared,
    Rejected,
    Coordination,
}

/// One archive of a snapshot: the items `start..start + len` of `table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Part {
    pub table: Table,
    pub start: usize,
    pub len: usize,
}

/// The most bytes one part of a snapshot may take. rkyv's relative
/// pointers are 32-bit, so one archive cannot pass 2 GiB (the snapshot
/// thread used to panic there, and snapshots stopped); a snapshot of any
/// size is a sequence of parts, each far below that.
pub(super) const PART_BYTES_MAX: usize = 1 << 30;
const _: () = assert!(PART_BYTES_MAX < i32::MAX as usize);

/// The largest body of a remembered rejection (`OrderRejected`): a key,
/// a fingerprint and a rejection of a few words, far below it.
pub(super) const REJECTION_BODY_BYTES_MAX: usize = 256;
/// The longest coordination record a snapshot holds: a saga's `Begun`
/// with the longest name and payload (a lock's `Granted` is shorter).
const COORDINATION_BYTES_MAX: usize =
    1 + 16 + 2 + crate::saga::SAGA_NAME_BYTES_MAX + 2 + crate::saga::SAGA_DATA_BYTES_MAX + 8;
const _: () = assert!(1 + 2 + crate::lock::LOCK_NAME_BYTES_MAX + 64 <= COORDINATION_BYTES_MAX);

/// Padding one out-of-line block may take, at the largest alignment here.
const BLOCK_SLACK_BYTES: usize = 16;

/// The most bytes one item of `table` takes in a part, its lines included.
fn item_bytes_max(table: Table) -> usize {
    use core::mem::size_of;
    let lines = crate::limits::ORDER_LINES_MAX * size_of::<ArchivedLineImage>() + BLOCK_SLACK_BYTES;
    match table {
        Table::Skus => size_of::<ArchivedSkuImage>(),
        Table::Accounts => size_of::<ArchivedAccountImage>(),
        Table::Orders => size_of::<ArchivedOrderImage>() + lines,
        Table::Purchases => size_of::<ArchivedPurchaseImage>(),
        Table::Holds => size_of::<ArchivedHoldImage>() + lines,
        Table::Prepared => size_of::<ArchivedPreparedImage>(),
        Table::Rejected => {
            size_of::<ArchivedVec<u8>>() + REJECTION_BODY_BYTES_MAX + BLOCK_SLACK_BYTES
        }
        Table::Coordination => {
            size_of::<ArchivedVec<u8>>() + COORDINATION_BYTES_MAX + BLOCK_SLACK_BYTES
        }
    }
}

/// The parts a snapshot of `shard` is written in, each at most
/// `part_bytes_max` bytes: every table cut in ranges by the most its items
/// can take. At least one part, which carries the scalars of an empty
/// shard.
pub(super) fn parts(shard: &Shard, part_bytes_max: usize) -> Vec<Part> {
    let st = &shard.state;
    let overhead = core::mem::size_of::<ArchivedImage>() + 8 * BLOCK_SLACK_BYTES;
    let tables = [
        (Table::Skus, st.skus.len()),
        (Table::Accounts, st.accounts.len()),
        (Table::Orders, st.orders.len()),
        (Table::Purchases, st.purchases.iter().count()),
        (Table::Holds, st.holds.len()),
        (Table::Prepared, st.prepared_upto.len()),
        (Table::Rejected, st.rejected.oldest_first().count()),
        (Table::Coordination, st.coordination().len()),
    ];
    let mut out = Vec::new();
    for (table, count) in tables {
        let per_part = (part_bytes_max.saturating_sub(overhead) / item_bytes_max(table)).max(1);
        let mut start = 0;
        while start < count {
            let len = per_part.min(count - start);
            out.push(Part { table, start, len });
            start += len;
        }
    }
    if out.is_empty() {
        out.push(Part {
            table: Table::Skus,
            start: 0,
            len: 0,
        });
    }
    out
}

impl ImageView<'_> {
    /// Which items of `table` this view holds: skip this many, take that many.
    fn range(&self, table: Table) -> (usize, usize) {
        match self.part {
            None => (0, usize::MAX),
            Some(p) if p.table == table => (p.start, p.len),
            Some(_) => (0, 0),
        }
    }
}

pub(super) struct ImageViewResolver {
    skus: Laid,
    accounts: Laid,
    orders: Laid,
    purchases: Laid,
    holds: Laid,
    prepared_upto: Laid,
    rejected: Laid,
    coordination: Laid,
}

impl Archive for ImageView<'_> {
    type Archived = ArchivedImage;
    type Resolver = ImageViewResolver;

    fn resolve(&self, r: ImageViewResolver, out: Place<ArchivedImage>) {
        let st = &self.shard.state;
        munge!(let ArchivedImage {
            shard, shards, lsn, skus, accounts, orders, purchases, holds,
            prepared_upto, rejected, coordination, revenue, deposited, withdrawn
        } = out);
        self.shard.id().resolve((), shard);
        self.shard.shards.resolve((), shards);
        self.lsn.resolve((), lsn);
        ArchivedVec::resolve_from_len(r.skus.len, r.skus.at, skus);
        ArchivedVec::resolve_from_len(r.accounts.len, r.accounts.at, accounts);
        ArchivedVec::resolve_from_len(r.orders.len, r.orders.at, orders);
        ArchivedVec::resolve_from_len(r.purchases.len, r.purchases.at, purchases);
        ArchivedVec::resolve_from_len(r.holds.len, r.holds.at, holds);
        ArchivedVec::resolve_from_len(r.prepared_upto.len, r.prepared_upto.at, prepared_upto);
        ArchivedVec::resolve_from_len(r.rejected.len, r.rejected.at, rejected);
        ArchivedVec::resolve_from_len(r.coordination.len, r.coordination.at, coordination);
        st.revenue.resolve((), revenue);
        st.deposited.resolve((), deposited);
        st.withdrawn.resolve((), withdrawn);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for ImageView<'_> {
    /// In the order of `Image`'s fields, as its derived impl does.
    fn serialize(&self, s: &mut S) -> Result<ImageViewResolver, S::Error> {
        let st = &self.shard.state;
        let pick = |t| self.range(t);
        let (skip, take) = pick(Table::Skus);
        let skus = vec_of(st.skus.iter().map(sku_image).skip(skip).take(take), s)?;
        let accounts = (st.accounts.iter()).map(|(&id, a)| AccountImage {
            id,
            balance: a.balance,
        });
        let (skip, take) = pick(Table::Accounts);
        let accounts = vec_of(accounts.skip(skip).take(take), s)?;
        let orders = st
            .orders
            .iter()
            .map(|(&key, order)| OrderView { key, order });
        let (skip, take) = pick(Table::Orders);
        let orders = vec_of(orders.skip(skip).take(take), s)?;
        let purchases = st
            .purchases
            .iter()
            .map(|(&(sku, account), &qty)| PurchaseImage { sku, account, qty });
        let (skip, take) = pick(Table::Purchases);
        let purchases = vec_of(purchases.skip(skip).take(take), s)?;
        let holds = st.holds.iter().map(|(&tx, hold)| HoldView { tx, hold });
        let (skip, take) = pick(Table::Holds);
        let holds = vec_of(holds.skip(skip).take(take), s)?;
        let prepared = st
            .prepared_upto
            .iter()
            .map(|(&coordinator, &seq)| PreparedImage { coordinator, seq });
        let (skip, take) = pick(Table::Prepared);
        let prepared_upto = vec_of(prepared.skip(skip).take(take), s)?;
        let rejected = st
            .rejected
            .oldest_first()
            .map(|(&key, &(fingerprint, reject))| RejectionView {
                record: Record::OrderRejected {
                    key,
                    fingerprint,
                    reject,
                },
            });
        let (skip, take) = pick(Table::Rejected);
        let rejected = vec_of(rejected.skip(skip).take(take), s)?;
        let (skip, take) = pick(Table::Coordination);
        let coordination = if take == 0 {
            Vec::new()
        } else {
            st.coordination()
        };
        let coordination = coordination.iter().map(coordination_bytes);
        let coordination = vec_of(coordination.skip(skip).take(take), s)?;
        Ok(ImageViewResolver {
            skus,
            accounts,
            orders,
            purchases,
            holds,
            prepared_upto,
            rejected,
            coordination,
        })
    }
}

/// An order, archived as an [`OrderImage`].
struct OrderView<'a> {
    key: OrderKey,
    order: &'a Order,
}

impl Archive for OrderView<'_> {
    type Archived = ArchivedOrderImage;
    type Resolver = Laid;

    fn resolve(&self, r: Laid, out: Place<ArchivedOrderImage>) {
        let o = self.order;
        let id = self.key.id();
        munge!(let ArchivedOrderImage {
            account, id: out_id, lines, state, created_at, ttl_ms, restocked, fingerprint
        } = out);
        self.key.account.resolve((), account);
        [(id >> 64) as u64, id as u64].resolve([(), ()], out_id);
        ArchivedVec::resolve_from_len(r.len, r.at, lines);
        codec::state_code(o.state).resolve((), state);
        o.created_at.resolve((), created_at);
        o.ttl_ms.resolve((), ttl_ms);
        o.restocked.resolve((), restocked);
        o.fingerprint.resolve((), fingerprint);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for OrderView<'_> {
    fn serialize(&self, s: &mut S) -> Result<Laid, S::Error> {
        lay_lines(self.order.lines.iter(), s)
    }
}

/// A two-phase hold, archived as a [`HoldImage`].
struct HoldView<'a> {
    tx: TxId,
    hold: &'a Hold,
}

impl Archive for HoldView<'_> {
    type Archived = ArchivedHoldImage;
    type Resolver = Laid;

    fn resolve(&self, r: Laid, out: Place<ArchivedHoldImage>) {
        munge!(let ArchivedHoldImage { coordinator, seq, account, order, lines } = out);
        self.tx.coordinator.resolve((), coordinator);
        self.tx.seq.resolve((), seq);
        self.hold.account.resolve((), account);
        let id = self.hold.order;
        [(id >> 64) as u64, id as u64].resolve([(), ()], order);
        ArchivedVec::resolve_from_len(r.len, r.at, lines);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for HoldView<'_> {
    fn serialize(&self, s: &mut S) -> Result<Laid, S::Error> {
        lay_lines(self.hold.lines.iter(), s)
    }
}

/// A remembered rejection, archived as the body of its `OrderRejected`
/// record.
struct RejectionView {
    record: Record,
}

impl Archive for RejectionView {
    type Archived = ArchivedVec<u8>;
    type Resolver = Laid;

    fn resolve(&self, r: Laid, out: Place<ArchivedVec<u8>>) {
        ArchivedVec::resolve_from_len(r.len, r.at, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for RejectionView {
    fn serialize(&self, s: &mut S) -> Result<Laid, S::Error> {
        let mut body = Vec::new();
        codec::encode(&self.record, &mut body);
        debug_assert!(body.len() <= REJECTION_BODY_BYTES_MAX, "{}", body.len());
        let at = ArchivedVec::<u8>::serialize_from_slice(&body, s)?;
        Ok(Laid {
            at,
            len: body.len(),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::command::{Command, PlaceOrder};
    use crate::durable::codec::state_code;
    use crate::hash::shard_of;
    use crate::shard::Output;
    use crate::types::{LineRequest, Payment};

    /// Run `cmd` at the shard that owns `id` and deliver every message it
    /// causes, except, with `cut`, those its first message's receiver
    /// sends back: that leaves a participant holding stock for it.
    fn run(shards: &mut [Shard], id: u64, cmd: Command, cut: bool) {
        let mut out = Output::default();
        let first = usize::from(shard_of(id, 2));
        shards[first].apply(1, cmd, 5, &mut out);
        let mut queue: Vec<(usize, usize, crate::message::PeerMsg)> = Vec::new();
        let mut hops = 0;
        loop {
            queue.extend(
                out.sends
                    .drain(..)
                    .map(|(to, m)| (first, usize::from(to), m)),
            );
            let Some((from, to, msg)) = queue.pop() else {
                break;
            };
            hops += 1;
            shards[to].deliver(from as u16, msg, 5, &mut out);
            if cut && hops == 1 {
                out.sends.clear();
            }
            queue.extend(out.sends.drain(..).map(|(t, m)| (to, usize::from(t), m)));
        }
    }

    pub(in crate::durable) fn shard_pair_with_everything() -> Vec<Shard> {
        let mut shards = vec![Shard::new(0, 2), Shard::new(1, 2)];
        for sku in 0..6 {
            let put = Command::PutSku {
                sku,
                price: 10 + sku,
                per_user_limit: if sku == 0 { 1 } else { 0 },
            };
            run(&mut shards, sku, put, false);
            run(&mut shards, sku, Command::Restock { sku, qty: 100 }, false);
        }
        for account in 0..8 {
            let deposit = Command::Deposit {
                account,
                amount: 10_000,
            };
            run(&mut shards, account, deposit, false);
        }
        let order = |id: u128, account: u64, lines: Vec<LineRequest>, payment| {
            Command::PlaceOrder(PlaceOrder {
                id,
                account,
                lines,
                payment,
            })
        };
        for account in 0..8u64 {
            let deferred = Payment::Deferred { ttl_ms: 60_000 };
            let lines = vec![LineRequest::new(account % 6, 1), LineRequest::new(5, 2)];
            let id = u128::from(account) + 1;
            run(
                &mut shards,
                account,
                order(id, account, lines, deferred),
                false,
            );
            // A second unit of the limited SKU is refused and remembered.
            for n in 0..2 {
                let lines = vec![LineRequest::new(0, 1)];
                let id = (u128::from(account + 1) << 80) | n;
                let cmd = order(id, account, lines, Payment::Immediate);
                run(&mut shards, account, cmd, false);
            }
        }
        let cancel = Command::Cancel {
            account: 3,
            order: 4,
        };
        run(&mut shards, 3, cancel, false);
        // Left half-way: the SKUs' shard holds stock for it.
        for account in 0..8 {
            let lines = vec![
                LineRequest::new(1, 1),
                LineRequest::new(2, 1),
                LineRequest::new(3, 1),
            ];
            let cmd = order(
                1_000 + u128::from(account),
                account,
                lines,
                Payment::Immediate,
            );
            run(&mut shards, account, cmd, true);
        }
        // Locks (held, released, a semaphore) and sagas (running,
        // compensating, ended) on both shards.
        for i in 0..6u8 {
            let name: Box<[u8]> = vec![b'l', i].into();
            let at = mercato_protocol::name_id(&name);
            let acquire = |permits| {
                Command::Lock(crate::command::LockCommand::Acquire {
                    name: name.clone(),
                    owner: u64::from(i),
                    permits,
                    ttl_ms: 1_000,
                    wait: crate::command::LockWait::Try,
                    session: None,
                    bind: false,
                })
            };
            let permits = if i == 5 { 3 } else { 1 };
            run(&mut shards, at, acquire(permits), false);
            if i % 2 == 0 {
                let release = crate::command::LockCommand::Release {
                    name: name.clone(),
                    token: 1,
                };
                run(&mut shards, at, Command::Lock(release), false);
                run(&mut shards, at, acquire(permits), false);
            }
            use crate::command::{SagaCommand as S, StepPhase as P};
            let id = u128::from(i) << 70;
            let key = mercato_protocol::saga_id_key(id);
            let saga = |c| Command::Saga(c);
            run(
                &mut shards,
                key,
                saga(S::Begin {
                    id,
                    name: b"checkout".to_vec().into(),
                    payload: vec![i; 9].into(),
                }),
                false,
            );
            for step in 0..u16::from(i % 3 + 1) {
                let started = P::Started {
                    name: vec![b's', step as u8].into(),
                };
                run(
                    &mut shards,
                    key,
                    saga(S::Step {
                        id,
                        step,
                        phase: started,
                    }),
                    false,
                );
                let done = P::Done {
                    data: vec![7; usize::from(i)].into(),
                };
                run(
                    &mut shards,
                    key,
                    saga(S::Step {
                        id,
                        step,
                        phase: done,
                    }),
                    false,
                );
            }
            if i % 3 == 1 {
                run(&mut shards, key, saga(S::Abort { id }), false);
                run(
                    &mut shards,
                    key,
                    saga(S::Step {
                        id,
                        step: 1,
                        phase: P::Compensated,
                    }),
                    false,
                );
            }
            if i % 3 == 2 {
                run(&mut shards, key, saga(S::End { id }), false);
            }
        }
        shards
    }

    /// The image of `shard` as of LSN `lsn`.
    fn image_of(shard: &Shard, lsn: Lsn) -> Image {
        let st = &shard.state;
        Image {
            shard: shard.id(),
            shards: shard.shards,
            lsn,
            skus: st
                .skus
                .iter()
                .map(|(&id, s)| SkuImage {
                    id,
                    price: s.price,
                    available: s.available,
                    reserved: s.reserved,
                    sold: s.sold,
                    per_user_limit: s.per_user_limit,
                    stocked: s.stocked,
                })
                .collect(),
            accounts: st
                .accounts
                .iter()
                .map(|(&id, a)| AccountImage {
                    id,
                    balance: a.balance,
                })
                .collect(),
            orders: st
                .orders
                .iter()
                .map(|(k, o)| {
                    let id = k.id();
                    OrderImage {
                        account: k.account,
                        id: [(id >> 64) as u64, id as u64],
                        lines: lines_image(o.lines.iter()),
                        state: state_code(o.state),
                        created_at: o.created_at,
                        ttl_ms: o.ttl_ms,
                        restocked: o.restocked,
                        fingerprint: o.fingerprint,
                    }
                })
                .collect(),
            purchases: st
                .purchases
                .iter()
                .map(|(&(sku, account), &qty)| PurchaseImage { sku, account, qty })
                .collect(),
            holds: st
                .holds
                .iter()
                .map(|(tx, h)| HoldImage {
                    coordinator: tx.coordinator,
                    seq: tx.seq,
                    account: h.account,
                    order: [(h.order >> 64) as u64, h.order as u64],
                    lines: lines_image(h.lines.iter()),
                })
                .collect(),
            prepared_upto: st
                .prepared_upto
                .iter()
                .map(|(&coordinator, &seq)| PreparedImage { coordinator, seq })
                .collect(),
            rejected: st
                .rejected
                .oldest_first()
                .map(|(key, &(fingerprint, reject))| {
                    let mut body = Vec::new();
                    codec::encode(
                        &Record::OrderRejected {
                            key: *key,
                            fingerprint,
                            reject,
                        },
                        &mut body,
                    );
                    body
                })
                .collect(),
            coordination: st.coordination().iter().map(coordination_bytes).collect(),
            revenue: st.revenue,
            deposited: st.deposited,
            withdrawn: st.withdrawn,
        }
    }

    /// The parts of a snapshot of what a checkpoint copied: the head's
    /// tables first, then a part per copied slice, orders by position.
    pub(in crate::durable) fn checkpoint_images(
        shard: ShardId,
        shards: u16,
        head: &CheckpointHead,
        parts: &[CheckpointPart],
    ) -> Vec<Image> {
        let mut parts: Vec<&CheckpointPart> = parts.iter().collect();
        parts.sort_by_key(|p| match p.0 {
            PartKind::Orders { first, .. } => (1, first),
            _ => (0, 0),
        });
        let mut images = vec![head_image(shard, shards, head)];
        images.extend(
            parts
                .into_iter()
                .map(|p| part_image(shard, shards, head, p)),
        );
        images
    }

    #[test]
    fn a_view_archives_to_the_bytes_of_the_image_it_stands_for() {
        let shards = shard_pair_with_everything();
        for shard in &shards {
            let st = &shard.state;
            assert!(
                !st.skus.is_empty()
                    && st.orders.len() > 0
                    && st.rejected.len() > 0
                    && !st.locks.is_empty()
                    && !st.sagas.is_empty(),
                "a test shard must hold every kind of entry"
            );
            let built = rkyv::to_bytes::<rkyv::rancor::Error>(&image_of(shard, 77)).unwrap();
            let view = ImageView {
                shard,
                lsn: 77,
                part: None,
            };
            let viewed = rkyv::to_bytes::<rkyv::rancor::Error>(&view).unwrap();
            assert_eq!(built.as_slice(), viewed.as_slice(), "shard {}", shard.id());
        }
        assert!(
            shards.iter().any(|s| !s.state.holds.is_empty()),
            "a two-phase hold must be archived too"
        );
    }
}
