//! The caller's side: route each command to its shard, queue it, wait.

use std::sync::Arc;
use std::time::Duration;

use super::collector::Collector;
use super::engine::Shared;
use super::route::Split;
use super::worker::Request;
use crate::audit::{AuditPart, AuditReport, audit, quiescent};
use crate::command::{Command, Outcome, PlaceOrder, Reply};
use crate::error::{EngineError, Reject};
use crate::limits::{BATCH_LEN_MAX, VIEW_BATCH_LEN_MAX};
use crate::sync::{AtomicUsize, Ordering};
use crate::types::{
    AccountId, AccountView, LineRequest, Money, OrderId, OrderPage, OrderView, Payment, Qty, SkuId,
    SkuView,
};

/// A cheap, cloneable way in to a running engine, shared by any number of threads.
pub struct Handle {
    shared: Arc<Shared>,
    /// This handle's tickets holding writes and not yet answered: while
    /// any is, its reads go to their owners so they see those writes.
    writes_in_flight: Arc<AtomicUsize>,
}

/// A clone is a new caller: it does not wait for the original's tickets.
impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::new(self.shared.clone())
    }
}

/// A batch in flight, from [`Handle::submit_ticket`].
pub struct Ticket {
    collector: Arc<Collector<Result<Outcome, EngineError>>>,
}

impl Ticket {
    /// Block until every command of the batch is answered.
    pub fn wait(self) -> Vec<Result<Outcome, EngineError>> {
        self.collector.wait()
    }
}

/// A blocking call's answer: the engine failed (outer), or it answered (inner).
pub type CallResult<T> = Result<Result<T, Reject>, EngineError>;

/// How many times `audit` asks the shards again while messages are in flight.
const AUDIT_ATTEMPTS_MAX: u32 = 1_000;

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Handle {
            shared,
            writes_in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn close(&self) {
        self.shared.gate.close();
        for s in &self.shared.shards {
            let _ = s.waker.wake();
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> u16 {
        self.shared.shards.len() as u16
    }

    /// Run a batch; answers come back in the batch's order. Commands for
    /// different shards run in parallel; two commands on one shard run in
    /// batch order. A shard whose queue is full answers its commands `Busy`.
    pub fn submit(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<Result<Outcome, EngineError>>, EngineError> {
        self.submit_inner(cmds, false)
    }

    /// Like [`Handle::submit`], but waits for room in a full queue instead of
    /// answering `Busy`: for callers that would only retry anyway.
    pub fn submit_waiting(&self, cmds: Vec<Command>) -> Result<Vec<Outcome>, EngineError> {
        self.submit_inner(cmds, true)?.into_iter().collect()
    }

    /// Queue a batch and return at once; [`Ticket::wait`] gives the answers,
    /// in the batch's order. A caller may keep several tickets out, to have
    /// more work in flight than one blocking call allows. Like
    /// [`Handle::submit_waiting`], it waits for room in a full queue.
    pub fn submit_ticket(&self, cmds: Vec<Command>) -> Result<Ticket, EngineError> {
        self.queue(cmds, true, true)
    }

    fn submit_inner(
        &self,
        cmds: Vec<Command>,
        wait: bool,
    ) -> Result<Vec<Result<Outcome, EngineError>>, EngineError> {
        Ok(self.queue(cmds, wait, false)?.wait())
    }

    /// `track`: the caller may queue more before this batch is answered,
    /// so its writes must keep later reads off the view caches until then.
    fn queue(&self, cmds: Vec<Command>, wait: bool, track: bool) -> Result<Ticket, EngineError> {
        if cmds.len() > BATCH_LEN_MAX {
            return Err(EngineError::BatchTooLong {
                len: cmds.len(),
                max: BATCH_LEN_MAX,
            });
        }
        let _pass = self.shared.gate.enter().ok_or(EngineError::Shutdown)?;
        let n = self.shards() as usize;
        let views = (self.shared.views.as_deref()).filter(|_| cmds.len() <= VIEW_BATCH_LEN_MAX);
        let in_flight = &self.writes_in_flight;
        let mut split = Split::new(n, None, in_flight.load(Ordering::Acquire) > 0);
        let len = cmds.len();
        let mut answered = Vec::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            if let Some(reply) = split.add(views, i as u32, cmd) {
                answered.push((i, Ok(Ok(reply))));
            }
        }
        let collector = if track && split.writes {
            in_flight.fetch_add(1, Ordering::AcqRel);
            let in_flight = in_flight.clone();
            Arc::new(Collector::with_on_done(
                len,
                Box::new(move || {
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                }),
            ))
        } else {
            Arc::new(Collector::new(len))
        };
        collector.fill(answered);
        for (shard, part) in split.parts.into_iter().enumerate() {
            if part.cmds.is_empty() {
                continue;
            }
            let req = Request::Commands {
                collector: collector.clone(),
                cmds: part.cmds,
                missed: part.missed,
            };
            if let Err((Request::Commands { cmds, .. }, error)) = self.push(shard, req, wait) {
                collector.fill(cmds.into_iter().map(|(i, _)| (i as usize, Err(error))));
            }
        }
        Ok(Ticket { collector })
    }

    /// Queue a request, waiting for room if `wait`. A request not queued comes
    /// back with the reason: `Busy`, or `Shutdown` if the engine began to stop
    /// while we waited (a stopping shard takes nothing more from its queue
    /// until every caller has left the gate, so waiting on would never end).
    fn push(
        &self,
        shard: usize,
        mut req: Request,
        wait: bool,
    ) -> Result<(), (Request, EngineError)> {
        let mut backoff = 0u32;
        loop {
            match self.shared.shards[shard].inbound.push(req) {
                Ok(()) => {
                    self.wake(shard);
                    return Ok(());
                }
                Err(back) if !wait => {
                    let depth_max = self.shared.shards[shard].inbound.capacity();
                    return Err((
                        back,
                        EngineError::Busy {
                            shard: shard as u16,
                            depth_max,
                        },
                    ));
                }
                Err(back) if self.shared.gate.is_closed() => {
                    return Err((back, EngineError::Shutdown));
                }
                Err(back) => {
                    req = back;
                    // The shard is behind; make sure it is awake, then give it the core.
                    self.wake(shard);
                    backoff += 1;
                    if backoff < 16 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }

    /// Queues `req` on `shard`, waiting for room.
    pub(crate) fn push_request(&self, shard: usize, req: Request) -> Result<(), EngineError> {
        self.push(shard, req, true).map_err(|(_, e)| e)
    }

    fn wake(&self, shard: usize) {
        let slot = &self.shared.shards[shard];
        if slot.doorbell.needs_ring() {
            let _ = slot.waker.wake();
        }
    }

    /// Run one command.
    pub fn call(&self, cmd: Command) -> Result<Outcome, EngineError> {
        self.submit(vec![cmd])?
            .pop()
            .expect("one answer per command")
    }

    fn call_as<T>(&self, cmd: Command, pick: impl FnOnce(Reply) -> Option<T>) -> CallResult<T> {
        Ok(self
            .call(cmd)?
            .map(|r| pick(r).expect("the reply kind matches the command")))
    }

    pub fn put_sku(&self, sku: SkuId, price: Money, per_user_limit: Qty) -> CallResult<SkuView> {
        self.call_as(
            Command::PutSku {
                sku,
                price,
                per_user_limit,
            },
            sku_of,
        )
    }

    pub fn restock(&self, sku: SkuId, qty: Qty) -> CallResult<SkuView> {
        self.call_as(Command::Restock { sku, qty }, sku_of)
    }

    pub fn deposit(&self, account: AccountId, amount: Money) -> CallResult<AccountView> {
        self.call_as(Command::Deposit { account, amount }, account_of)
    }

    pub fn withdraw(&self, account: AccountId, amount: Money) -> CallResult<AccountView> {
        self.call_as(Command::Withdraw { account, amount }, account_of)
    }

    pub fn place_order(
        &self,
        id: OrderId,
        account: AccountId,
        lines: Vec<LineRequest>,
        payment: Payment,
    ) -> CallResult<OrderView> {
        self.call_as(
            Command::PlaceOrder(PlaceOrder {
                id,
                account,
                lines,
                payment,
            }),
            order_of,
        )
    }

    pub fn pay(&self, account: AccountId, order: OrderId) -> CallResult<OrderView> {
        self.call_as(Command::Pay { account, order }, order_of)
    }

    pub fn cancel(&self, account: AccountId, order: OrderId) -> CallResult<OrderView> {
        self.call_as(Command::Cancel { account, order }, order_of)
    }

    pub fn refund(
        &self,
        account: AccountId,
        order: OrderId,
        restock: bool,
    ) -> CallResult<OrderView> {
        self.call_as(
            Command::Refund {
                account,
                order,
                restock,
            },
            order_of,
        )
    }

    /// From the shared view cache when it holds the SKU (see
    /// [`views`](crate::views) for what a reader gets), else from its owner.
    pub fn get_sku(&self, sku: SkuId) -> CallResult<SkuView> {
        self.call_as(Command::GetSku { sku }, sku_of)
    }

    /// From the shared view cache when it holds the account, else from its owner.
    pub fn get_account(&self, account: AccountId) -> CallResult<AccountView> {
        self.call_as(Command::GetAccount { account }, account_of)
    }

    /// Stores `value` under `key` in the cache keyspace for `ttl_ms` (0: no
    /// deadline). Served in the calling thread from the shared keyspace; not
    /// logged. A bad key or value is rejected and changes nothing.
    pub fn cache_set(
        &self,
        key: &[u8],
        value: impl Into<bytes::Bytes>,
        ttl_ms: u64,
    ) -> Result<(), Reject> {
        self.shared.keyspace.set(key, value.into(), ttl_ms)
    }

    pub fn cache_get(&self, key: &[u8]) -> Result<Option<bytes::Bytes>, Reject> {
        self.shared.keyspace.get(key)
    }

    /// Removes `key`; true if it held a live value.
    pub fn cache_del(&self, key: &[u8]) -> Result<bool, Reject> {
        self.shared.keyspace.del(key)
    }

    /// The keyspace's counters, size, budget and policy.
    pub fn cache_stats(&self) -> crate::cache::CacheStats {
        self.shared.keyspace.stats()
    }

    /// The engine's health: connections, snapshot failures, failed logs.
    pub fn info(&self) -> crate::types::ServerInfo {
        self.shared.info()
    }

    /// Every figure an operator's metrics show (`metrics`): per shard
    /// requests, answers, latencies, queues, log and tables, and the
    /// caches, checkpoints and feeds. Reads counters; costs the shards
    /// nothing.
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.shared.metrics()
    }

    /// The SKU and account view caches' counters, if they are on.
    pub fn view_stats(&self) -> Option<(crate::cache::CacheStats, crate::cache::CacheStats)> {
        self.shared.views.as_ref().map(|v| v.stats())
    }

    pub fn get_order(&self, account: AccountId, order: OrderId) -> CallResult<OrderView> {
        self.call_as(Command::GetOrder { account, order }, order_of)
    }

    /// Up to `limit` of `account`'s orders, newest first, going on from the
    /// order `after` names (see [`Command::ListOrders`]). A page stops
    /// early at `LIST_PAGE_BYTES_MAX` bytes of orders; `more` says whether
    /// older orders follow.
    pub fn list_orders(
        &self,
        account: AccountId,
        after: Option<OrderId>,
        limit: u32,
    ) -> CallResult<OrderPage> {
        self.call_as(
            Command::ListOrders {
                account,
                after,
                limit,
            },
            |r| match r {
                Reply::Orders { orders, more } => Some(OrderPage { orders, more }),
                _ => None,
            },
        )
    }

    /// Check DESIGN.md's invariants across all shards. Waits, within a bound,
    /// for a moment with no message between shards in flight, so the
    /// cross-shard check runs too; `quiescent` in the report says whether it did.
    pub fn audit(&self) -> Result<AuditReport, EngineError> {
        let mut parts = self.audit_parts()?;
        for _ in 1..AUDIT_ATTEMPTS_MAX {
            if quiescent(&parts) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            parts = self.audit_parts()?;
        }
        Ok(audit(&parts))
    }

    /// One look, without waiting for a quiet engine: stock and money are
    /// checked always, the cross-shard check only if nothing was in flight.
    /// Cheap enough to run between the commands of a busy engine.
    pub fn audit_now(&self) -> Result<AuditReport, EngineError> {
        Ok(audit(&self.audit_parts()?))
    }

    fn audit_parts(&self) -> Result<Vec<AuditPart>, EngineError> {
        let n = self.shards() as usize;
        let collector = Arc::new(Collector::new(n));
        {
            let _pass = self.shared.gate.enter().ok_or(EngineError::Shutdown)?;
            for shard in 0..n {
                let req = Request::Audit {
                    collector: collector.clone(),
                    slot: shard,
                };
                // An audit is rare and must not fail for a busy queue;
                // if the engine stops meanwhile, its slot would never fill.
                if let Err((_, error)) = self.push(shard, req, true) {
                    return Err(error);
                }
            }
        }
        Ok(collector.wait())
    }
}

fn sku_of(r: Reply) -> Option<SkuView> {
    match r {
        Reply::Sku(v) => Some(v),
        _ => None,
    }
}

fn account_of(r: Reply) -> Option<AccountView> {
    match r {
        Reply::Account(v) => Some(v),
        _ => None,
    }
}

fn order_of(r: Reply) -> Option<OrderView> {
    match r {
        Reply::Order(v) => Some(v),
        _ => None,
    }
}
