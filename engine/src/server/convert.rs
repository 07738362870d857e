//! Wire types to engine types and back. The protocol crate mirrors the
//! engine's commands, views and rejections field for field; this is the one
//! place that knows both.

pub mod feed;
mod saga;

use mercato_protocol as wire;

use crate::cache::PolicyKind;
use crate::command::{Command, LockCommand, LockWait, Outcome, PlaceOrder, Reply};
use crate::error::{EngineError, Reject};
use crate::keyspace::Keyspace;
use crate::lock::{LockError, LostBy, Notice};
use crate::types::{AccountView, Line, LineRequest, OrderState, OrderView, Payment, SkuView};

/// Where a wire request is answered.
#[derive(Debug)]
pub enum Routed {
    /// By its owner shard.
    Command(Command),
    /// A cache keyspace request, answered by whichever shard received it.
    Keyspace(wire::Request),
    /// `Info`, answered by whichever shard received it.
    Info,
    /// A change-feed request, answered by the connection's own shard,
    /// which pushes its feed.
    Feed(wire::Request),
}

/// Runs a keyspace request against the shared keyspace.
pub fn keyspace(r: wire::Request, ks: &Keyspace) -> Outcome {
    use wire::Request as W;
    match r {
        W::CacheSet { key, value, ttl_ms } => {
            ks.set(&key, value.into(), ttl_ms).map(|()| Reply::Stored)
        }
        W::CacheGet { key } => ks.get(&key).map(Reply::Value),
        W::CacheDel { key } => ks.del(&key).map(Reply::Deleted),
        W::CacheStats => Ok(Reply::CacheStats(ks.stats())),
        other => unreachable!("route() sends only keyspace requests here, not {other:?}"),
    }
}

pub fn route(r: wire::Request) -> Routed {
    use wire::Request as W;
    Routed::Command(match r {
        W::CacheSet { .. } | W::CacheGet { .. } | W::CacheDel { .. } | W::CacheStats => {
            return Routed::Keyspace(r);
        }
        W::Info => return Routed::Info,
        W::Subscribe { .. }
        | W::FeedAck { .. }
        | W::Unsubscribe
        | W::SubscriptionList
        | W::SubscriptionDrop { .. } => return Routed::Feed(r),
        r @ (W::SagaBegin { .. }
        | W::SagaStep { .. }
        | W::SagaAbort { .. }
        | W::SagaEnd { .. }
        | W::SagaGet { .. }
        | W::SagaList { .. }) => saga::command(r).expect("a saga request"),
        W::LockAcquire {
            name,
            owner,
            permits,
            ttl_ms,
            wait,
            bind,
        } => Command::Lock(LockCommand::Acquire {
            name: name.into(),
            owner,
            permits,
            ttl_ms,
            wait: match wait {
                wire::LockWait::Try => LockWait::Try,
                wire::LockWait::Ms(ms) => LockWait::Ms(ms),
                wire::LockWait::Forever => LockWait::Forever,
            },
            // The connection's, set where it is known (`Net::dispatch`).
            session: None,
            bind,
        }),
        W::LockRenew {
            name,
            token,
            ttl_ms,
        } => Command::Lock(LockCommand::Renew {
            name: name.into(),
            token,
            ttl_ms,
        }),
        W::LockRelease { name, token } => Command::Lock(LockCommand::Release {
            name: name.into(),
            token,
        }),
        W::LockInspect { name } => Command::Lock(LockCommand::Inspect { name: name.into() }),
        W::LockCancel { name, ticket } => Command::Lock(LockCommand::Cancel {
            name: name.into(),
            ticket,
        }),
        W::Fenced { lock, token, write } => {
            let cmd = match (*write).into_request() {
                W::CacheSet { key, value, ttl_ms } => Command::CacheSet {
                    key: key.into(),
                    value: value.into(),
                    ttl_ms,
                },
                w => match route(w) {
                    Routed::Command(c) => c,
                    _ => unreachable!("every other fenced write is a command"),
                },
            };
            Command::Fenced {
                lock: lock.into(),
                token,
                cmd: Box::new(cmd),
            }
        }
        W::PutSku {
            sku,
            price,
            per_user_limit,
        } => Command::PutSku {
            sku,
            price,
            per_user_limit,
        },
        W::Restock { sku, qty } => Command::Restock { sku, qty },
        W::Deposit { account, amount } => Command::Deposit { account, amount },
        W::Withdraw { account, amount } => Command::Withdraw { account, amount },
        W::PlaceOrder {
            id,
            account,
            lines,
            payment,
        } => Command::PlaceOrder(PlaceOrder {
            id,
            account,
            lines: lines
                .into_iter()
                .map(|l| LineRequest {
                    sku: l.sku,
                    qty: l.qty,
                    expected_unit_price: l.expected_unit_price,
                })
                .collect(),
            payment: match payment {
                wire::Payment::Immediate => Payment::Immediate,
                wire::Payment::Deferred { ttl_ms } => Payment::Deferred { ttl_ms },
            },
        }),
        W::Pay { account, order } => Command::Pay { account, order },
        W::Cancel { account, order } => Command::Cancel { account, order },
        W::Refund {
            account,
            order,
            restock,
        } => Command::Refund {
            account,
            order,
            restock,
        },
        W::GetSku { sku } => Command::GetSku { sku },
        W::GetAccount { account } => Command::GetAccount { account },
        W::GetOrder { account, order } => Command::GetOrder { account, order },
        W::ListOrders {
            account,
            after,
            limit,
        } => Command::ListOrders {
            account,
            after,
            limit,
        },
    })
}

/// The wire form of a command, for clients written with the engine's types
/// (such as `mercato-load`).
pub fn request(c: Command) -> wire::Request {
    use wire::Request as W;
    match c {
        Command::PutSku {
            sku,
            price,
            per_user_limit,
        } => W::PutSku {
            sku,
            price,
            per_user_limit,
        },
        Command::Restock { sku, qty } => W::Restock { sku, qty },
        Command::Deposit { account, amount } => W::Deposit { account, amount },
        Command::Withdraw { account, amount } => W::Withdraw { account, amount },
        Command::PlaceOrder(p) => W::PlaceOrder {
            id: p.id,
            account: p.account,
            lines: p
                .lines
                .into_iter()
                .map(|l| wire::LineRequest {
                    sku: l.sku,
                    qty: l.qty,
                    expected_unit_price: l.expected_unit_price,
                })
                .collect(),
            payment: match p.payment {
                Payment::Immediate => wire::Payment::Immediate,
                Payment::Deferred { ttl_ms } => wire::Payment::Deferred { ttl_ms },
            },
        },
        Command::Pay { account, order } => W::Pay { account, order },
        Command::Cancel { account, order } => W::Cancel { account, order },
        Command::Refund {
            account,
            order,
            restock,
        } => W::Refund {
            account,
            order,
            restock,
        },
        Command::GetSku { sku } => W::GetSku { sku },
        Command::GetAccount { account } => W::GetAccount { account },
        Command::GetOrder { account, order } => W::GetOrder { account, order },
        Command::ListOrders {
            account,
            after,
            limit,
        } => W::ListOrders {
            account,
            after,
            limit,
        },
        Command::Lock(l) => match l {
            LockCommand::Acquire {
                name,
                owner,
                permits,
                ttl_ms,
                wait,
                bind,
                ..
            } => W::LockAcquire {
                name: name.into(),
                owner,
                permits,
                ttl_ms,
                wait: match wait {
                    LockWait::Try => wire::LockWait::Try,
                    LockWait::Ms(ms) => wire::LockWait::Ms(ms),
                    LockWait::Forever => wire::LockWait::Forever,
                },
                bind,
            },
            LockCommand::Renew {
                name,
                token,
                ttl_ms,
            } => W::LockRenew {
                name: name.into(),
                token,
                ttl_ms,
            },
            LockCommand::Release { name, token } => W::LockRelease {
                name: name.into(),
                token,
            },
            LockCommand::Inspect { name } => W::LockInspect { name: name.into() },
            LockCommand::Cancel { name, ticket } => W::LockCancel {
                name: name.into(),
                ticket,
            },
        },
        Command::Saga(s) => saga::request(s),
        Command::Fenced { lock, token, cmd } => W::Fenced {
            lock: lock.into(),
            token,
            write: Box::new(fenced_write(*cmd)),
        },
        Command::CacheSet { key, value, ttl_ms } => W::CacheSet {
            key: key.into(),
            value: value.to_vec(),
            ttl_ms,
        },
    }
}

/// A write a fence guards, in its wire form; what cannot be fenced goes
/// as a `CacheSet` of an empty key, which the server refuses.
fn fenced_write(c: Command) -> wire::FencedWrite {
    use wire::FencedWrite as F;
    match request(c) {
        wire::Request::PutSku {
            sku,
            price,
            per_user_limit,
        } => F::PutSku {
            sku,
            price,
            per_user_limit,
        },
        wire::Request::Restock { sku, qty } => F::Restock { sku, qty },
        wire::Request::Deposit { account, amount } => F::Deposit { account, amount },
        wire::Request::Withdraw { account, amount } => F::Withdraw { account, amount },
        wire::Request::PlaceOrder {
            id,
            account,
            lines,
            payment,
        } => F::PlaceOrder {
            id,
            account,
            lines,
            payment,
        },
        wire::Request::Pay { account, order } => F::Pay { account, order },
        wire::Request::Cancel { account, order } => F::Cancel { account, order },
        wire::Request::Refund {
            account,
            order,
            restock,
        } => F::Refund {
            account,
            order,
            restock,
        },
        wire::Request::CacheSet { key, value, ttl_ms } => F::CacheSet { key, value, ttl_ms },
        _ => F::CacheSet {
            key: Vec::new(),
            value: Vec::new(),
            ttl_ms: 0,
        },
    }
}

/// A lock notice in its wire form.
pub fn notice(n: Notice) -> wire::Notice {
    match n {
        Notice::Granted {
            ticket,
            name,
            token,
            expires_at,
        } => wire::Notice::LockGranted {
            ticket,
            name: name.into(),
            token,
            expires_at,
        },
        Notice::WaitEnded { ticket, name } => wire::Notice::LockWaitEnded {
            ticket,
            name: name.into(),
        },
        Notice::Lost { name, token, by } => wire::Notice::LockLost {
            name: name.into(),
            token,
            expired: by == LostBy::Expired,
        },
    }
}

fn lock_reject(e: LockError) -> wire::LockReject {
    use wire::LockReject as W;
    match e {
        LockError::InvalidName { len } => W::InvalidName { len: len as u64 },
        LockError::InvalidTtl { ttl_ms } => W::InvalidTtl { ttl_ms },
        LockError::InvalidPermits { permits } => W::InvalidPermits { permits },
        LockError::PermitsMismatch { permits } => W::PermitsMismatch { permits },
        LockError::Busy { token } => W::Busy { token },
        LockError::TooManyWaiters => W::TooManyWaiters,
        LockError::Timeout => W::Timeout,
        LockError::Stale { token, last } => W::Stale { token, last },
        LockError::NotHeld => W::NotHeld,
        LockError::Unknown => W::Unknown,
        LockError::UnknownTicket => W::UnknownTicket,
        LockError::NotFenceable => W::NotFenceable,
        LockError::NoSession => W::NoSession,
    }
}

pub fn answer(a: Result<Outcome, EngineError>) -> wire::Answer {
    match a {
        Ok(Ok(reply)) => wire::Answer::Done(self::reply(reply)),
        Ok(Err(reject)) => wire::Answer::Rejected(self::reject(reject)),
        Err(e) => wire::Answer::Failed {
            code: failure(e) as u16,
        },
    }
}

pub fn failure(e: EngineError) -> wire::ErrorCode {
    match e {
        EngineError::Busy { .. } => wire::ErrorCode::Busy,
        EngineError::Shutdown => wire::ErrorCode::Shutdown,
        EngineError::Unavailable { .. } => wire::ErrorCode::Unavailable,
        EngineError::BatchTooLong { .. } => wire::ErrorCode::BatchTooLong,
        _ => wire::ErrorCode::Internal,
    }
}

fn state(s: OrderState) -> wire::OrderState {
    match s {
        OrderState::Reserved => wire::OrderState::Reserved,
        OrderState::Paid => wire::OrderState::Paid,
        OrderState::Cancelled => wire::OrderState::Cancelled,
        OrderState::Expired => wire::OrderState::Expired,
        OrderState::Refunded => wire::OrderState::Refunded,
    }
}

fn sku(v: SkuView) -> wire::SkuView {
    wire::SkuView {
        id: v.id,
        price: v.price,
        available: v.available,
        reserved: v.reserved,
        sold: v.sold,
        per_user_limit: v.per_user_limit,
    }
}

fn account(v: AccountView) -> wire::AccountView {
    wire::AccountView {
        id: v.id,
        balance: v.balance,
    }
}

fn line(l: Line) -> wire::Line {
    wire::Line {
        sku: l.sku,
        qty: l.qty,
        unit_price: l.unit_price,
    }
}

fn order(v: OrderView) -> wire::OrderView {
    wire::OrderView {
        id: v.id,
        account: v.account,
        lines: v.lines.iter().map(line).collect(),
        total: v.total,
        state: state(v.state),
        created_at: v.created_at,
        expires_at: v.expires_at,
        restocked: v.restocked,
    }
}

fn reply(r: Reply) -> wire::Reply {
    match r {
        Reply::Sku(v) => wire::Reply::Sku(sku(v)),
        Reply::Account(v) => wire::Reply::Account(account(v)),
        Reply::Order(v) => wire::Reply::Order(order(v)),
        Reply::Orders { orders, more } => wire::Reply::Orders {
            orders: orders.into_iter().map(order).collect(),
            more,
        },
        Reply::Value(v) => wire::Reply::Value(v.map(|b| b.to_vec())),
        Reply::Stored => wire::Reply::Stored,
        Reply::Deleted(found) => wire::Reply::Deleted(found),
        Reply::CacheStats(s) => wire::Reply::CacheStats(wire::CacheStats {
            hits: s.hits,
            misses: s.misses,
            inserts: s.inserts,
            evictions: s.evictions,
            expirations: s.expirations,
            entries: s.entries,
            bytes: s.weight,
            budget_bytes: s.capacity,
            policy: match s.policy {
                PolicyKind::Lru => 0,
                PolicyKind::Arc => 1,
            },
        }),
        Reply::Info(i) => wire::Reply::Info(Box::new(wire::ServerInfo {
            shards: i.shards,
            connections: i.connections,
            snapshot_failures: i.snapshot_failures,
            snapshot_error: text_within(
                i.snapshot_error.unwrap_or_default(),
                wire::INFO_TEXT_BYTES_MAX,
            ),
            failed_logs: i.failed_logs,
            version: text_within(i.version, wire::INFO_TEXT_BYTES_MAX),
            uptime_ms: i.uptime_ms,
            durability: text_within(i.durability, wire::INFO_TEXT_BYTES_MAX),
            rss_bytes: i.rss_bytes,
            shard_states: (i.shard_states.iter())
                .take(wire::SHARDS_MAX)
                .map(|s| wire::ShardInfo {
                    committed_lsn: s.committed_lsn,
                    skus: s.skus,
                    accounts: s.accounts,
                    orders: s.orders,
                    checkpoint_lsn: s.checkpoint_lsn,
                    checkpoint_age_ms: s.checkpoint_age_ms,
                })
                .collect(),
        })),
        Reply::LockGranted { token, expires_at } => wire::Reply::LockGranted { token, expires_at },
        Reply::LockQueued { ticket } => wire::Reply::LockQueued { ticket },
        Reply::LockRenewed { expires_at } => wire::Reply::LockRenewed { expires_at },
        Reply::Done => wire::Reply::Done,
        Reply::Saga(v) => wire::Reply::Saga(saga::view(v)),
        Reply::Subscribed { positions } => wire::Reply::Subscribed { positions },
        Reply::Subscriptions(list) => wire::Reply::Subscriptions(
            list.into_iter()
                .take(wire::SUBSCRIPTIONS_LISTED_MAX)
                .map(|s| wire::SubscriptionInfo {
                    name: s.name,
                    positions: s.positions,
                    lost: s.lost,
                })
                .collect(),
        ),
        Reply::Sagas { sagas, more } => wire::Reply::Sagas {
            sagas: sagas.into_iter().map(saga::view).collect(),
            more,
        },
        Reply::LockInfo(i) => wire::Reply::LockInfo(wire::LockInfo {
            permits: i.permits,
            holders: (i.holders.into_iter())
                .map(|(token, owner, expires_at)| wire::LockHolder {
                    token,
                    owner,
                    expires_at,
                    remaining_ms: expires_at.saturating_sub(i.now),
                })
                .collect(),
            last_token: i.last_token,
            waiters: i.waiters as u32,
        }),
    }
}

/// `text`, cut at a character boundary to at most `max` bytes, so that an
/// answer stays within the bound reserved for it.
fn text_within(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn reject(r: Reject) -> wire::Reject {
    use wire::Reject as W;
    match r {
        Reject::OutOfStock {
            sku,
            available,
            requested,
        } => W::OutOfStock {
            sku,
            available,
            requested,
        },
        Reject::InsufficientFunds {
            account,
            balance,
            needed,
        } => W::InsufficientFunds {
            account,
            balance,
            needed,
        },
        Reject::PerUserLimit {
            sku,
            limit,
            already,
            requested,
        } => W::PerUserLimit {
            sku,
            limit,
            already,
            requested,
        },
        Reject::PriceChanged {
            sku,
            expected,
            actual,
        } => W::PriceChanged {
            sku,
            expected,
            actual,
        },
        Reject::UnknownSku { sku } => W::UnknownSku { sku },
        Reject::UnknownAccount { account } => W::UnknownAccount { account },
        Reject::UnknownOrder { account, order } => W::UnknownOrder { account, order },
        Reject::InvalidState { order, state: s } => W::InvalidState {
            order,
            state: state(s),
        },
        Reject::TooManyLines { count, max } => W::TooManyLines {
            count: count as u64,
            max: max as u64,
        },
        Reject::EmptyOrder => W::EmptyOrder,
        Reject::ZeroQuantity { sku } => W::ZeroQuantity { sku },
        Reject::DuplicateSku { sku } => W::DuplicateSku { sku },
        Reject::InvalidTtl { ttl_ms, max_ms } => W::InvalidTtl { ttl_ms, max_ms },
        Reject::ZeroAmount => W::ZeroAmount,
        Reject::BalanceOverflow {
            account,
            balance,
            amount,
        } => W::BalanceOverflow {
            account,
            balance,
            amount,
        },
        Reject::StockOverflow { sku, stocked, qty } => W::StockOverflow { sku, stocked, qty },
        Reject::TotalOverflow => W::TotalOverflow,
        Reject::IdempotencyConflict { order } => W::IdempotencyConflict { order },
        Reject::InvalidLimit { limit, max } => W::InvalidLimit { limit, max },
        Reject::ShardUnavailable { shard } => W::ShardUnavailable { shard },
        Reject::InvalidKey { len, max } => W::InvalidKey { len, max },
        Reject::ValueTooLarge { len, max } => W::ValueTooLarge { len, max },
        Reject::Lock(e) => W::Lock(lock_reject(e)),
        Reject::Saga(e) => W::Saga(saga::reject(e)),
        Reject::Feed(e) => W::Feed(feed::reject(e)),
        Reject::Forbidden { role, needs } => W::Forbidden {
            role: role.to_wire(),
            needs: needs.to_wire(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Engine};

    /// A whole shop through the wire types: every command converts, runs,
    /// and its answer converts back with the same content.
    #[test]
    fn commands_and_answers_cross_the_wire_types() {
        let engine = Engine::open(Config::with_shards(2)).unwrap();
        let h = engine.handle();
        let reqs = vec![
            wire::Request::PutSku {
                sku: 1,
                price: 250,
                per_user_limit: 2,
            },
            wire::Request::Restock { sku: 1, qty: 10 },
            wire::Request::Deposit {
                account: 9,
                amount: 10_000,
            },
            wire::Request::PlaceOrder {
                id: 5,
                account: 9,
                lines: vec![wire::LineRequest {
                    sku: 1,
                    qty: 2,
                    expected_unit_price: Some(250),
                }],
                payment: wire::Payment::Deferred { ttl_ms: 60_000 },
            },
            wire::Request::Pay {
                account: 9,
                order: 5,
            },
            wire::Request::Refund {
                account: 9,
                order: 5,
                restock: true,
            },
            wire::Request::GetSku { sku: 1 },
            wire::Request::GetAccount { account: 9 },
            wire::Request::GetOrder {
                account: 9,
                order: 5,
            },
            wire::Request::ListOrders {
                account: 9,
                after: None,
                limit: 10,
            },
            wire::Request::Withdraw {
                account: 9,
                amount: u64::MAX,
            },
            wire::Request::Cancel {
                account: 9,
                order: 77,
            },
        ];
        let cmds: Vec<Command> = reqs
            .into_iter()
            .map(|r| match route(r) {
                Routed::Command(c) => c,
                Routed::Keyspace(r) => panic!("{r:?} is not an engine command"),
                Routed::Info => panic!("Info is not an engine command"),
                Routed::Feed(r) => panic!("{r:?} is not an engine command"),
            })
            .collect();
        let answers: Vec<wire::Answer> = h.submit(cmds).unwrap().into_iter().map(answer).collect();
        assert!(
            matches!(&answers[3], wire::Answer::Done(wire::Reply::Order(o)) if o.state == wire::OrderState::Reserved && o.total == 500)
        );
        assert!(
            matches!(&answers[5], wire::Answer::Done(wire::Reply::Order(o)) if o.state == wire::OrderState::Refunded && o.restocked)
        );
        assert!(
            matches!(&answers[6], wire::Answer::Done(wire::Reply::Sku(s)) if s.available == 10)
        );
        assert!(
            matches!(&answers[7], wire::Answer::Done(wire::Reply::Account(a)) if a.balance == 10_000)
        );
        assert!(
            matches!(&answers[9], wire::Answer::Done(wire::Reply::Orders { orders, more: false }) if orders.len() == 1)
        );
        assert!(matches!(
            answers[10],
            wire::Answer::Rejected(wire::Reject::InsufficientFunds {
                account: 9,
                balance: 10_000,
                ..
            })
        ));
        assert!(matches!(
            answers[11],
            wire::Answer::Rejected(wire::Reject::UnknownOrder {
                account: 9,
                order: 77
            })
        ));
        drop(h);
        engine.shutdown();
        assert_eq!(
            answer(Err(EngineError::Shutdown)),
            wire::Answer::Failed {
                code: wire::ErrorCode::Shutdown as u16
            }
        );
    }
}
