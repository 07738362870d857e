//! The change feed (issue 27): a shard's log, read as the business events
//! it records. This is its first part, the decoder; the subscriptions,
//! their retention, the protocol's push and the sinks come next.
//!
//! One decoder ([`events_of`]) turns a record into events, for the feed
//! and for `mercato wal dump` alike. It needs nothing but the record: the
//! records that change an order's state carry its lines, and a two-phase
//! participant's records carry the order they hold stock for, so a reader
//! that starts anywhere in a log can decode from there.
//!
//! What a consumer sees, as Debezium and Canal users would expect:
//! - stock and balances as signed changes, each with its reason and, when
//!   an order caused it, the order; a consumer adds them up (a recovery's
//!   correction sets a SKU's figures outright);
//! - an order's placing once, committed, at its coordinator, with its
//!   lines; then its payment, cancellation, expiry or refund, each with
//!   its lines;
//! - none of two-phase commit's own bookkeeping: a participant's hold is a
//!   stock change of its order, and a hold given back (the order failed
//!   elsewhere) is a `Released` change.

mod event;

pub use event::{BalanceReason, Event, Position, StockReason, events_of};
