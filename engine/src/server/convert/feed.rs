//! The change feed between the wire and the engine: events, filters,
//! refusals.

use mercato_protocol as wire;

use crate::error::FeedReject;
use crate::feed::{BalanceReason, Event, StockReason};
use crate::runtime::FeedError;

fn lines(l: &crate::order_lines::OrderLines) -> Vec<wire::Line> {
    l.iter().map(super::line).collect()
}

/// An engine event in its wire form.
pub fn event(e: Event) -> wire::FeedEvent {
    use wire::FeedEvent as W;
    match e {
        Event::SkuPut {
            sku,
            price,
            per_user_limit,
        } => W::SkuPut {
            sku,
            price,
            per_user_limit,
        },
        Event::Stock {
            sku,
            reason,
            order,
            available,
            reserved,
            sold,
        } => W::Stock {
            sku,
            reason: match reason {
                StockReason::Restock => wire::StockReason::Restock,
                StockReason::Order => wire::StockReason::Order,
                StockReason::Paid => wire::StockReason::Paid,
                StockReason::Cancel => wire::StockReason::Cancel,
                StockReason::Expiry => wire::StockReason::Expiry,
                StockReason::Refund => wire::StockReason::Refund,
                StockReason::Released => wire::StockReason::Released,
            },
            order: order.map(|k| (k.account, k.id())),
            available,
            reserved,
            sold,
        },
        Event::StockSet {
            sku,
            available,
            reserved,
            sold,
        } => W::StockSet {
            sku,
            available,
            reserved,
            sold,
        },
        Event::Balance {
            account,
            reason,
            order,
            delta,
        } => W::Balance {
            account,
            reason: match reason {
                BalanceReason::Deposit => wire::BalanceReason::Deposit,
                BalanceReason::Withdraw => wire::BalanceReason::Withdraw,
                BalanceReason::Order => wire::BalanceReason::Order,
                BalanceReason::Refund => wire::BalanceReason::Refund,
            },
            order,
            amount: delta.unsigned_abs() as u64,
            credit: delta >= 0,
        },
        Event::OrderPlaced(v) => W::OrderPlaced(super::order(v)),
        Event::OrderPaid { key, lines: l } => W::OrderPaid {
            account: key.account,
            order: key.id(),
            lines: lines(&l),
        },
        Event::OrderCancelled { key, lines: l } => W::OrderCancelled {
            account: key.account,
            order: key.id(),
            lines: lines(&l),
        },
        Event::OrderExpired { key, lines: l } => W::OrderExpired {
            account: key.account,
            order: key.id(),
            lines: lines(&l),
        },
        Event::OrderRefunded {
            key,
            restock,
            lines: l,
        } => W::OrderRefunded {
            account: key.account,
            order: key.id(),
            restock,
            lines: lines(&l),
        },
        Event::SkuCopy(v) => W::SkuCopy(super::sku(v)),
        Event::AccountCopy(v) => W::AccountCopy(super::account(v)),
        Event::OrderCopy(v) => W::OrderCopy(super::order(v)),
    }
}

/// The `FEED_KIND_*` bit of an event.
pub fn kind(e: &Event) -> u32 {
    match e {
        Event::SkuPut { .. } => wire::FEED_KIND_SKU,
        Event::Stock { .. } | Event::StockSet { .. } => wire::FEED_KIND_STOCK,
        Event::Balance { .. } => wire::FEED_KIND_BALANCE,
        Event::OrderPlaced(_)
        | Event::OrderPaid { .. }
        | Event::OrderCancelled { .. }
        | Event::OrderExpired { .. }
        | Event::OrderRefunded { .. } => wire::FEED_KIND_ORDER,
        Event::SkuCopy(_) | Event::AccountCopy(_) | Event::OrderCopy(_) => wire::FEED_KIND_COPY,
    }
}

/// Whether `filter` lets `e` through.
pub fn passes(filter: &wire::FeedFilter, e: &Event) -> bool {
    if filter.kinds != 0 && filter.kinds & kind(e) == 0 {
        return false;
    }
    if !filter.skus.is_empty() && !e.sku().is_some_and(|s| filter.skus.contains(&s)) {
        return false;
    }
    if !filter.accounts.is_empty() && !e.account().is_some_and(|a| filter.accounts.contains(&a)) {
        return false;
    }
    true
}

pub fn start(s: wire::FeedStart) -> crate::runtime::FeedStart {
    match s {
        wire::FeedStart::Now => crate::runtime::FeedStart::Now,
        wire::FeedStart::At(v) => crate::runtime::FeedStart::At(v),
        wire::FeedStart::Snapshot => crate::runtime::FeedStart::Snapshot,
    }
}

/// A feed error as the refusal a client is told.
pub fn refusal(e: &FeedError) -> FeedReject {
    match *e {
        FeedError::NoLog => FeedReject::NoLog,
        FeedError::Positions { given, shards } => FeedReject::Positions {
            given: given as u32,
            shards: shards as u32,
        },
        FeedError::Ahead {
            shard,
            lsn,
            committed,
        } => FeedReject::Ahead {
            shard,
            lsn,
            committed,
        },
        FeedError::Lost { shard, lsn, oldest } => FeedReject::Lost { shard, lsn, oldest },
        FeedError::InvalidName { .. } => FeedReject::InvalidName,
        FeedError::SubscriptionLost { .. } => FeedReject::SubscriptionLost,
        FeedError::BadAck { .. } => FeedReject::BadAck,
        _ => FeedReject::Storage,
    }
}

pub fn reject(r: FeedReject) -> wire::FeedReject {
    use wire::FeedReject as W;
    match r {
        FeedReject::NoLog => W::NoLog,
        FeedReject::Positions { given, shards } => W::Positions { given, shards },
        FeedReject::Ahead {
            shard,
            lsn,
            committed,
        } => W::Ahead {
            shard,
            lsn,
            committed,
        },
        FeedReject::Lost { shard, lsn, oldest } => W::Lost { shard, lsn, oldest },
        FeedReject::InvalidName => W::InvalidName,
        FeedReject::SubscriptionLost => W::SubscriptionLost,
        FeedReject::BadAck => W::BadAck,
        FeedReject::AlreadySubscribed => W::AlreadySubscribed,
        FeedReject::NotSubscribed => W::NotSubscribed,
        FeedReject::Storage => W::Storage,
        FeedReject::FilterTooLong { max } => W::FilterTooLong { max },
    }
}
