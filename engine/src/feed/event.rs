//! Business events, and the decoder of records into them.

use crate::order_lines::OrderLines;
use crate::record::{NewOrder, Record, Settle};
use crate::types::{AccountId, Money, OrderId, OrderKey, OrderView, Payment, Qty, ShardId, SkuId};

/// Where an event is: its shard's log, and the record's LSN there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub shard: ShardId,
    pub lsn: u64,
}

/// Why a SKU's stock changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StockReason {
    Restock,
    /// An order took units: reserved them, or sold them at once.
    Order,
    /// A reserved order was paid: its units went from reserved to sold.
    Paid,
    Cancel,
    Expiry,
    Refund,
    /// A two-phase order failed elsewhere and gave its held units back.
    Released,
}

/// Why an account's balance changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BalanceReason {
    Deposit,
    Withdraw,
    /// An order was paid (at once, or later).
    Order,
    Refund,
}

/// One business change, as the feed tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A SKU was created, or its price or per-user limit set.
    SkuPut {
        sku: SkuId,
        price: Money,
        per_user_limit: Qty,
    },
    /// A SKU's stock moved: signed changes to its available, reserved and
    /// sold units.
    Stock {
        sku: SkuId,
        reason: StockReason,
        order: Option<OrderKey>,
        available: i64,
        reserved: i64,
        sold: i64,
    },
    /// Recovery set a SKU's figures outright, where a crash lost a
    /// settlement between shards.
    StockSet {
        sku: SkuId,
        available: Qty,
        reserved: Qty,
        sold: Qty,
    },
    /// An account's balance moved by `delta` (an account appears with its
    /// first deposit).
    Balance {
        account: AccountId,
        reason: BalanceReason,
        order: Option<OrderId>,
        delta: i128,
    },
    /// An order was placed (committed): reserved, or paid at once.
    OrderPlaced(OrderView),
    OrderPaid {
        key: OrderKey,
        lines: OrderLines,
    },
    OrderCancelled {
        key: OrderKey,
        lines: OrderLines,
    },
    OrderExpired {
        key: OrderKey,
        lines: OrderLines,
    },
    OrderRefunded {
        key: OrderKey,
        restock: bool,
        lines: OrderLines,
    },
    /// A feed started from a copy of the state (`FeedStart::Snapshot`)
    /// begins with one of these per SKU, account and order, all at the
    /// copy's position; the stream goes on from the next LSN.
    SkuCopy(crate::types::SkuView),
    AccountCopy(crate::types::AccountView),
    OrderCopy(OrderView),
}

impl Event {
    /// The SKU an event is about, if any: for filters.
    pub fn sku(&self) -> Option<SkuId> {
        match self {
            Event::SkuPut { sku, .. } | Event::Stock { sku, .. } | Event::StockSet { sku, .. } => {
                Some(*sku)
            }
            Event::SkuCopy(v) => Some(v.id),
            _ => None,
        }
    }

    /// The account an event is about, if any: for filters.
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Event::Balance { account, .. } => Some(*account),
            Event::OrderPlaced(v) | Event::OrderCopy(v) => Some(v.account),
            Event::AccountCopy(v) => Some(v.id),
            Event::OrderPaid { key, .. }
            | Event::OrderCancelled { key, .. }
            | Event::OrderExpired { key, .. }
            | Event::OrderRefunded { key, .. } => Some(key.account),
            _ => None,
        }
    }
}

fn total(lines: &OrderLines) -> i128 {
    lines
        .iter()
        .map(|l| i128::from(l.unit_price) * i128::from(l.qty))
        .sum()
}

/// A placed order's events: the order, and its payment if at once.
fn placed(o: &NewOrder, out: &mut Vec<Event>) {
    out.push(Event::OrderPlaced(o.view()));
    if o.payment == Payment::Immediate {
        out.push(Event::Balance {
            account: o.key.account,
            reason: BalanceReason::Order,
            order: Some(o.key.id()),
            delta: -i128::from(o.total),
        });
    }
}

fn stock(
    sku: SkuId,
    reason: StockReason,
    order: Option<OrderKey>,
    (available, reserved, sold): (i64, i64, i64),
) -> Event {
    Event::Stock {
        sku,
        reason,
        order,
        available,
        reserved,
        sold,
    }
}

/// The stock moves of a two-phase hold's lines, each by `moved(qty)`.
fn held(
    account: AccountId,
    order: OrderId,
    lines: &OrderLines,
    reason: StockReason,
    moved: impl Fn(i64) -> (i64, i64, i64),
    out: &mut Vec<Event>,
) {
    let key = Some(OrderKey::new(account, order));
    for l in lines.iter() {
        out.push(stock(l.sku, reason, key, moved(i64::from(l.qty))));
    }
}

/// Appends the events `record` stands for to `out`. Records that are only
/// bookkeeping (two-phase votes' fences, remembered rejections, per-user
/// counts, locks, sagas) stand for none.
pub fn events_of(record: &Record, out: &mut Vec<Event>) {
    match record {
        Record::SkuPut {
            sku,
            price,
            per_user_limit,
        } => out.push(Event::SkuPut {
            sku: *sku,
            price: *price,
            per_user_limit: *per_user_limit,
        }),
        Record::Restocked { sku, qty } => {
            out.push(stock(
                *sku,
                StockReason::Restock,
                None,
                (i64::from(*qty), 0, 0),
            ));
        }
        Record::Deposited { account, amount } => out.push(Event::Balance {
            account: *account,
            reason: BalanceReason::Deposit,
            order: None,
            delta: i128::from(*amount),
        }),
        Record::Withdrew { account, amount } => out.push(Event::Balance {
            account: *account,
            reason: BalanceReason::Withdraw,
            order: None,
            delta: -i128::from(*amount),
        }),
        Record::OrderPlaced(o) => {
            placed(o, out);
            let immediate = o.payment == Payment::Immediate;
            for l in o.lines.iter() {
                let q = i64::from(l.qty);
                let moved = if immediate { (-q, 0, q) } else { (-q, q, 0) };
                out.push(stock(l.sku, StockReason::Order, Some(o.key), moved));
            }
        }
        // Its lines' stock moves where they are held (`Prepared`, then
        // `HoldCommitted`), this shard included.
        Record::OrderCommitted { order, .. } => placed(order, out),
        Record::Paid { key, lines } => {
            out.push(Event::OrderPaid {
                key: *key,
                lines: lines.clone(),
            });
            out.push(Event::Balance {
                account: key.account,
                reason: BalanceReason::Order,
                order: Some(key.id()),
                delta: -total(lines),
            });
        }
        Record::Cancelled { key, lines } => out.push(Event::OrderCancelled {
            key: *key,
            lines: lines.clone(),
        }),
        Record::Expired { key, lines } => out.push(Event::OrderExpired {
            key: *key,
            lines: lines.clone(),
        }),
        Record::Refunded {
            key,
            restock,
            lines,
        } => {
            out.push(Event::OrderRefunded {
                key: *key,
                restock: *restock,
                lines: lines.clone(),
            });
            out.push(Event::Balance {
                account: key.account,
                reason: BalanceReason::Refund,
                order: Some(key.id()),
                delta: total(lines),
            });
        }
        Record::Prepared {
            account,
            order,
            lines,
            ..
        } => held(
            *account,
            *order,
            lines,
            StockReason::Order,
            |q| (-q, q, 0),
            out,
        ),
        // A reservation stays reserved; a sale at once moves to sold.
        Record::HoldCommitted {
            immediate: true,
            account,
            order,
            lines,
            ..
        } => held(
            *account,
            *order,
            lines,
            StockReason::Order,
            |q| (0, -q, q),
            out,
        ),
        Record::HoldCommitted { .. } => {}
        Record::HoldAborted {
            account,
            order,
            lines,
            ..
        } => held(
            *account,
            *order,
            lines,
            StockReason::Released,
            |q| (q, -q, 0),
            out,
        ),
        Record::StockSettled {
            account,
            order,
            lines,
            settle,
        } => {
            let key = Some(OrderKey::new(*account, *order));
            for &(sku, qty) in lines.iter() {
                let q = i64::from(qty);
                let (reason, moved) = match settle {
                    Settle::Sell => (StockReason::Paid, (0, -q, q)),
                    Settle::Release { expired: false } => (StockReason::Cancel, (q, -q, 0)),
                    Settle::Release { expired: true } => (StockReason::Expiry, (q, -q, 0)),
                    Settle::Return { restock: true } => (StockReason::Refund, (q, 0, -q)),
                    // Refunded without restocking: the units stay sold.
                    Settle::Return { restock: false } => continue,
                };
                out.push(stock(sku, reason, key, moved));
            }
        }
        Record::StockCorrected {
            sku,
            available,
            reserved,
            sold,
        } => out.push(Event::StockSet {
            sku: *sku,
            available: *available,
            reserved: *reserved,
            sold: *sold,
        }),
        Record::OrderRejected { .. }
        | Record::PurchasesCorrected { .. }
        | Record::Lock(_)
        | Record::Saga(_) => {}
    }
}
