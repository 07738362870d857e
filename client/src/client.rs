//! [`Client`]: one connection per shard, writes sent to their owner, answers
//! put back in the caller's order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mercato_protocol::{self as wire, ErrorCode};

use crate::balance::{Balancer, Health, Peer, Policy, weight_from_load};
use crate::error::ClientError;
use crate::shard_conn::{Reply, ShardConn};

/// How a client connects and waits.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub auth_token: Option<String>,
    /// How long a call waits for its answers.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Passive health: this many failures within `fail_timeout_ms` leave a
    /// shard alone for `fail_timeout_ms` before it is reconnected.
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
    /// Times `place_order` is resent, under the same order id, after a lost
    /// connection or a timeout. The engine answers a repeat as it answered
    /// the first, so a resend never places an order twice.
    pub place_order_retries: u32,
    /// Connect to each shard's own port (from `Welcome`). Off, every
    /// connection goes to the address given to `connect` and the server
    /// forwards what another shard owns: for proxies and address rewriting.
    pub shard_aware: bool,
    /// Where `get_sku` and `get_account` go. `None`: to their owner, like
    /// writes, which costs the server least (it never looks in the shared
    /// view cache for a shard's own reads). A policy spreads them over the
    /// healthy shards, which answer from the view cache and forward misses:
    /// for reads piling onto one shard, such as a flash sale's SKU. While
    /// this client has a write unanswered, reads go to their owner, so a
    /// pipelined read still sees the writes sent before it.
    pub read_balance: Option<Policy>,
    /// Each shard's share of balanced reads. `None`: follow the load each
    /// shard reports in its answers (`balance::weight_from_load`).
    pub read_weights: Option<Vec<u32>>,
    /// Connect with TLS, checking the server as these settings say;
    /// `None` (the default) speaks plain TCP.
    pub tls: Option<crate::TlsSettings>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            auth_token: None,
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            max_fails: 3,
            fail_timeout_ms: 1_000,
            place_order_retries: 2,
            shard_aware: true,
            read_balance: None,
            read_weights: None,
            tls: None,
        }
    }
}

/// One page of an account's orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<wire::OrderView>,
    /// Older orders follow the last here: ask again with its id as `after`.
    pub more: bool,
}

/// A blocking call's answer: the client failed (outer), or the engine
/// answered (inner), as with the embedded engine.
pub type CallResult<T> = Result<Result<T, wire::Reject>, ClientError>;

struct Slot {
    conn: Option<Arc<ShardConn>>,
    health: Health,
}

/// A connection to a mercato server, shared by any number of threads.
pub struct Client {
    config: ClientConfig,
    welcome: wire::Welcome,
    addrs: Vec<SocketAddr>,
    slots: Vec<Mutex<Slot>>,
    started: Instant,
    balancer: Option<Mutex<Box<dyn Balancer>>>,
    /// Tickets holding writes whose answers were not yet taken.
    writes_in_flight: Arc<AtomicUsize>,
    /// Requests sent to each shard since `connect`.
    sent: Vec<AtomicU64>,
}

/// A batch in flight: [`Ticket::wait`] gives its answers in order.
pub struct Ticket {
    len: usize,
    parts: Vec<(u16, Vec<usize>, Receiver<Reply>)>,
    deadline: Instant,
    timeout_ms: u64,
    /// The client's count of tickets with writes, if this one is counted.
    writes: Option<Arc<AtomicUsize>>,
}

impl Client {
    /// Shake hands on `addr` (any of the server's ports), learn the shard
    /// layout, and connect to every shard's own port.
    pub fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, ClientError> {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let (first, welcome) = ShardConn::open(
            addr,
            config.auth_token.as_deref(),
            connect_timeout,
            config.tls.as_ref(),
        )?;
        first.close();
        let addrs: Vec<SocketAddr> = if config.shard_aware {
            welcome
                .ports
                .iter()
                .map(|&p| SocketAddr::new(addr.ip(), p))
                .collect()
        } else {
            vec![addr; welcome.ports.len()]
        };
        let sent = (0..welcome.shards).map(|_| AtomicU64::new(0)).collect();
        let client = Client {
            slots: (0..welcome.shards)
                .map(|_| {
                    Mutex::new(Slot {
                        conn: None,
                        health: Health::new(config.max_fails, config.fail_timeout_ms),
                    })
                })
                .collect(),
            balancer: (config.read_balance)
                .map(|p| Mutex::new(p.balancer(u64::from(std::process::id())))),
            config,
            welcome,
            addrs,
            started: Instant::now(),
            writes_in_flight: Arc::default(),
            sent,
        };
        if let Some(w) = &client.config.read_weights {
            if w.len() != client.welcome.shards as usize {
                return Err(ClientError::Config {
                    what: format!(
                        "{} read weights for {} shards",
                        w.len(),
                        client.welcome.shards
                    ),
                });
            }
        }
        for s in 0..client.welcome.shards {
            client.conn(s)?;
        }
        Ok(client)
    }

    pub fn shards(&self) -> u16 {
        self.welcome.shards
    }

    pub fn welcome(&self) -> &wire::Welcome {
        &self.welcome
    }

    /// Requests sent to each shard's connection since `connect`: how the
    /// routing and the read balancer spread them.
    pub fn sent(&self) -> Vec<u64> {
        self.sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The live connection to `shard`, reconnecting if it broke and its
    /// health allows.
    fn conn(&self, shard: u16) -> Result<Arc<ShardConn>, ClientError> {
        let mut slot = self.slots[shard as usize].lock().unwrap();
        if let Some(c) = &slot.conn {
            if c.alive.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(c.clone());
            }
        }
        if !slot.health.is_up(self.now_ms()) {
            return Err(ClientError::Disconnected { shard });
        }
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        match ShardConn::open(
            self.addrs[shard as usize],
            self.config.auth_token.as_deref(),
            timeout,
            self.config.tls.as_ref(),
        ) {
            Ok((c, _)) => {
                let c = Arc::new(c);
                slot.conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                slot.health.failure(self.now_ms());
                Err(e)
            }
        }
    }

    fn note(&self, shard: u16, ok: bool) {
        let mut slot = self.slots[shard as usize].lock().unwrap();
        if ok {
            slot.health.success();
        } else {
            slot.health.failure(self.now_ms());
        }
    }

    /// The shard that owns a request: the account's for orders and wallets,
    /// the SKU's for the catalog. Any shard serves the cache keyspace; its
    /// requests are spread by a hash of the key, so one connection per shard
    /// carries them all.
    pub fn owner(&self, r: &wire::Request) -> u16 {
        use wire::Request as R;
        let id = match r {
            R::CacheSet { key, .. } | R::CacheGet { key } | R::CacheDel { key } => key_hash(key),
            // Answered by the shard the connection talks to.
            R::CacheStats
            | R::Info
            | R::Subscribe { .. }
            | R::FeedAck { .. }
            | R::Unsubscribe
            | R::SubscriptionList
            | R::SubscriptionDrop { .. } => return 0,
            R::PutSku { sku, .. } | R::Restock { sku, .. } | R::GetSku { sku } => *sku,
            R::Deposit { account, .. }
            | R::Withdraw { account, .. }
            | R::PlaceOrder { account, .. }
            | R::Pay { account, .. }
            | R::Cancel { account, .. }
            | R::Refund { account, .. }
            | R::GetAccount { account }
            | R::GetOrder { account, .. }
            | R::ListOrders { account, .. } => *account,
            R::LockAcquire { name, .. }
            | R::LockRenew { name, .. }
            | R::LockRelease { name, .. }
            | R::LockInspect { name }
            | R::LockCancel { name, .. } => wire::name_id(name),
            // A fenced keyspace write runs on its lock's shard; any other
            // fenced write on its own.
            R::SagaBegin { id, .. }
            | R::SagaStep { id, .. }
            | R::SagaAbort { id }
            | R::SagaEnd { id }
            | R::SagaGet { id } => wire::saga_id_key(*id),
            R::SagaList { shard, .. } => return (*shard).min(self.welcome.shards - 1),
            R::Fenced { lock, write, .. } => match &**write {
                wire::FencedWrite::CacheSet { .. } => wire::name_id(lock),
                w => return self.owner(&w.clone().into_request()),
            },
        };
        wire::shard_of(id, self.welcome.shards)
    }

    /// Send a batch and return at once; the ticket waits for the answers.
    pub fn submit_ticket(&self, requests: Vec<wire::Request>) -> Result<Ticket, ClientError> {
        let max = self.welcome.batch_len_max as usize;
        if requests.len() > max {
            return Err(ClientError::BatchTooLong {
                len: requests.len(),
                max,
            });
        }
        let len = requests.len();
        let mut by_shard: Vec<(Vec<usize>, Vec<wire::Request>)> = (0..self.welcome.shards)
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        let mut writes = self.writes_in_flight.load(Ordering::Acquire) > 0;
        let mut batch_writes = false;
        // One pick per batch, so its reads travel in one frame.
        let mut picked: Option<Option<usize>> = None;
        for (i, r) in requests.into_iter().enumerate() {
            let owner = self.owner(&r) as usize;
            let s = if spreadable(&r) && !writes {
                picked
                    .get_or_insert_with(|| self.pick_read())
                    .unwrap_or(owner)
            } else {
                owner
            };
            batch_writes |= writes_engine(&r);
            writes |= batch_writes;
            by_shard[s].0.push(i);
            by_shard[s].1.push(r);
        }
        for (_, reqs) in &by_shard {
            self.check_fits(reqs)?;
        }
        let mut parts = Vec::new();
        for (s, (positions, reqs)) in by_shard.into_iter().enumerate() {
            if reqs.is_empty() {
                continue;
            }
            let conn = self.conn(s as u16)?;
            let n = reqs.len() as u64;
            let rx = conn
                .send(reqs)
                .inspect_err(|_| self.note(s as u16, false))?;
            self.sent[s].fetch_add(n, Ordering::Relaxed);
            parts.push((s as u16, positions, rx));
        }
        let writes = batch_writes.then(|| {
            self.writes_in_flight.fetch_add(1, Ordering::AcqRel);
            self.writes_in_flight.clone()
        });
        Ok(Ticket {
            len,
            parts,
            deadline: Instant::now() + Duration::from_millis(self.config.timeout_ms),
            timeout_ms: self.config.timeout_ms,
            writes,
        })
    }

    /// The shard for a batch's spreadable reads, if a balancer is set and
    /// finds a usable one.
    fn pick_read(&self) -> Option<usize> {
        let balancer = self.balancer.as_ref()?;
        let peers = self.peers();
        balancer.lock().unwrap().pick(&peers)
    }

    /// What the balancer sees of each shard now.
    fn peers(&self) -> Vec<Peer> {
        let now = self.now_ms();
        (self.slots.iter().enumerate())
            .map(|(s, slot)| {
                let slot = slot.lock().unwrap();
                let (outstanding, load) = slot.conn.as_ref().map_or((0, 0), |c| {
                    (
                        c.outstanding.load(Ordering::Relaxed),
                        c.load.load(Ordering::Relaxed),
                    )
                });
                let weight = match &self.config.read_weights {
                    Some(w) => w[s],
                    None => weight_from_load(load),
                };
                Peer {
                    weight,
                    outstanding,
                    up: slot.health.is_up(now),
                }
            })
            .collect()
    }

    /// Send a whole batch over `shard`'s connection, whatever its requests'
    /// owners: that shard answers reads from the shared view cache and the
    /// keyspace itself and forwards the rest. For spreading reads.
    pub fn submit_to(
        &self,
        shard: u16,
        requests: Vec<wire::Request>,
    ) -> Result<Vec<wire::Answer>, ClientError> {
        if shard >= self.welcome.shards {
            return Err(ClientError::Protocol {
                what: format!("no shard {shard} of {}", self.welcome.shards),
            });
        }
        let max = self.welcome.batch_len_max as usize;
        if requests.len() > max {
            return Err(ClientError::BatchTooLong {
                len: requests.len(),
                max,
            });
        }
        self.check_fits(&requests)?;
        let len = requests.len();
        let conn = self.conn(shard)?;
        let rx = conn
            .send(requests)
            .inspect_err(|_| self.note(shard, false))?;
        self.sent[shard as usize].fetch_add(len as u64, Ordering::Relaxed);
        let result = Ticket {
            len,
            parts: vec![(shard, (0..len).collect(), rx)],
            deadline: Instant::now() + Duration::from_millis(self.config.timeout_ms),
            timeout_ms: self.config.timeout_ms,
            writes: None,
        }
        .wait();
        self.note(shard, result.is_ok());
        result
    }

    /// Whether one shard's part of a batch fits one frame the server
    /// reads and one answer frame it may send (PROTOCOL.md, "Limits"); a
    /// part that does not is refused here rather than sent to be refused.
    fn check_fits(&self, requests: &[wire::Request]) -> Result<(), ClientError> {
        let w = &self.welcome;
        let sizes = [
            (
                "request",
                wire::requests_bytes_max(requests),
                w.frame_bytes_max as usize,
            ),
            (
                "answer",
                wire::answers_bytes_max(requests),
                w.answer_bytes_max as usize,
            ),
        ];
        for (what, bytes, max) in sizes {
            if bytes > max {
                return Err(ClientError::BatchTooLarge { what, bytes, max });
            }
        }
        Ok(())
    }

    /// Run a batch; answers in the batch's order.
    pub fn submit(&self, requests: Vec<wire::Request>) -> Result<Vec<wire::Answer>, ClientError> {
        let t = self.submit_ticket(requests)?;
        let shards: Vec<u16> = t.parts.iter().map(|p| p.0).collect();
        let result = t.wait();
        let ok = result.is_ok();
        for s in shards {
            self.note(s, ok);
        }
        result
    }

    /// A new connection to `shard`'s port, not shared with other calls.
    pub(crate) fn fresh_conn(&self, shard: u16) -> Result<ShardConn, ClientError> {
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let addr = self.addrs[shard as usize];
        ShardConn::open(
            addr,
            self.config.auth_token.as_deref(),
            timeout,
            self.config.tls.as_ref(),
        )
        .map(|(c, _)| c)
    }

    /// The connection to `shard`, for calls whose session is it.
    pub(crate) fn shard_conn(&self, shard: u16) -> Result<Arc<ShardConn>, ClientError> {
        self.conn(shard)
    }

    /// One request over `shard`'s own connection.
    pub(crate) fn one_on(&self, shard: u16, r: wire::Request) -> CallResult<wire::Reply> {
        answer_of(self.submit_to(shard, vec![r])?.pop())
    }

    pub(crate) fn one(&self, r: wire::Request) -> CallResult<wire::Reply> {
        answer_of(self.submit(vec![r])?.pop())
    }
}

fn answer_of(answer: Option<wire::Answer>) -> CallResult<wire::Reply> {
    let Some(answer) = answer else {
        return Err(ClientError::Protocol {
            what: "no answer to a request".into(),
        });
    };
    match answer {
        wire::Answer::Done(reply) => Ok(Ok(reply)),
        wire::Answer::Rejected(reject) => Ok(Err(reject)),
        wire::Answer::Failed { code } => Err(ClientError::Failed {
            code: ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal),
        }),
    }
}

impl Client {
    pub fn put_sku(&self, sku: u64, price: u64, per_user_limit: u32) -> CallResult<wire::SkuView> {
        sku_of(self.one(wire::Request::PutSku {
            sku,
            price,
            per_user_limit,
        }))
    }

    pub fn restock(&self, sku: u64, qty: u32) -> CallResult<wire::SkuView> {
        sku_of(self.one(wire::Request::Restock { sku, qty }))
    }

    pub fn deposit(&self, account: u64, amount: u64) -> CallResult<wire::AccountView> {
        account_of(self.one(wire::Request::Deposit { account, amount }))
    }

    pub fn withdraw(&self, account: u64, amount: u64) -> CallResult<wire::AccountView> {
        account_of(self.one(wire::Request::Withdraw { account, amount }))
    }

    /// Place an order; resent under the same id after a lost connection or
    /// a timeout (see [`ClientConfig::place_order_retries`]).
    pub fn place_order(
        &self,
        id: u128,
        account: u64,
        lines: Vec<wire::LineRequest>,
        payment: wire::Payment,
    ) -> CallResult<wire::OrderView> {
        let request = wire::Request::PlaceOrder {
            id,
            account,
            lines,
            payment,
        };
        let mut tries = 0;
        loop {
            match self.one(request.clone()) {
                Err(ClientError::Disconnected { .. } | ClientError::Timeout { .. })
                    if tries < self.config.place_order_retries =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10 << tries));
                }
                other => return order_of(other),
            }
        }
    }

    pub fn pay(&self, account: u64, order: u128) -> CallResult<wire::OrderView> {
        order_of(self.one(wire::Request::Pay { account, order }))
    }

    pub fn cancel(&self, account: u64, order: u128) -> CallResult<wire::OrderView> {
        order_of(self.one(wire::Request::Cancel { account, order }))
    }

    pub fn refund(&self, account: u64, order: u128, restock: bool) -> CallResult<wire::OrderView> {
        order_of(self.one(wire::Request::Refund {
            account,
            order,
            restock,
        }))
    }

    pub fn get_sku(&self, sku: u64) -> CallResult<wire::SkuView> {
        sku_of(self.one(wire::Request::GetSku { sku }))
    }

    pub fn get_account(&self, account: u64) -> CallResult<wire::AccountView> {
        account_of(self.one(wire::Request::GetAccount { account }))
    }

    pub fn get_order(&self, account: u64, order: u128) -> CallResult<wire::OrderView> {
        order_of(self.one(wire::Request::GetOrder { account, order }))
    }

    /// Up to `limit` of `account`'s orders, newest first; with `after`, the
    /// ones placed before that order (PROTOCOL.md, `ListOrders`). A page
    /// stops early at `wire::LIST_PAGE_BYTES_MAX` bytes of orders; `more`
    /// says older ones follow the last.
    pub fn list_orders(
        &self,
        account: u64,
        after: Option<u128>,
        limit: u32,
    ) -> CallResult<OrderPage> {
        match self.one(wire::Request::ListOrders {
            account,
            after,
            limit,
        })? {
            Ok(wire::Reply::Orders { orders, more }) => Ok(Ok(OrderPage { orders, more })),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("list_orders answered {other:?}"),
            }),
            Err(reject) => Ok(Err(reject)),
        }
    }

    /// Stores `value` under `key` in the server's cache keyspace for
    /// `ttl_ms` (0: no deadline).
    pub fn cache_set(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> CallResult<()> {
        let r = self.one(wire::Request::CacheSet {
            key: key.to_vec(),
            value: value.to_vec(),
            ttl_ms,
        });
        reply_as(r, "cache_set", |reply| match reply {
            wire::Reply::Stored => Ok(()),
            other => Err(other),
        })
    }

    pub fn cache_get(&self, key: &[u8]) -> CallResult<Option<Vec<u8>>> {
        let r = self.one(wire::Request::CacheGet { key: key.to_vec() });
        reply_as(r, "cache_get", |reply| match reply {
            wire::Reply::Value(v) => Ok(v),
            other => Err(other),
        })
    }

    /// Removes `key`; true if it held a live value.
    pub fn cache_del(&self, key: &[u8]) -> CallResult<bool> {
        let r = self.one(wire::Request::CacheDel { key: key.to_vec() });
        reply_as(r, "cache_del", |reply| match reply {
            wire::Reply::Deleted(found) => Ok(found),
            other => Err(other),
        })
    }

    /// The keyspace's counters (one keyspace, whichever shard answers).
    pub fn cache_stats(&self) -> Result<wire::CacheStats, ClientError> {
        match self.one(wire::Request::CacheStats)? {
            Ok(wire::Reply::CacheStats(s)) => Ok(s),
            other => Err(ClientError::Protocol {
                what: format!("cache_stats answered {other:?}"),
            }),
        }
    }

    /// The server's health (asked of shard 0, which answers for the whole
    /// server): connections, snapshot failures, failed logs.
    pub fn info(&self) -> Result<wire::ServerInfo, ClientError> {
        match self.submit_to(0, vec![wire::Request::Info])?.pop() {
            Some(wire::Answer::Done(wire::Reply::Info(i))) => Ok(*i),
            other => Err(ClientError::Protocol {
                what: format!("info answered {other:?}"),
            }),
        }
    }

    /// Each shard's load as last reported, and this client's requests
    /// outstanding there.
    pub fn stats(&self) -> Vec<(u16, u32, u32)> {
        (0..self.welcome.shards)
            .map(|s| {
                let slot = self.slots[s as usize].lock().unwrap();
                match &slot.conn {
                    Some(c) => (
                        s,
                        c.load.load(std::sync::atomic::Ordering::Relaxed),
                        c.outstanding.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    None => (s, 0, 0),
                }
            })
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for s in &self.slots {
            if let Some(c) = &s.lock().unwrap().conn {
                c.close();
            }
        }
    }
}

impl Ticket {
    /// Wait for every shard's answers, within the call's timeout.
    pub fn wait(mut self) -> Result<Vec<wire::Answer>, ClientError> {
        let mut out: Vec<Option<wire::Answer>> = (0..self.len).map(|_| None).collect();
        for (shard, positions, rx) in std::mem::take(&mut self.parts) {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let answers = match rx.recv_timeout(left) {
                Ok(r) => r?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(ClientError::Timeout {
                        shard,
                        timeout_ms: self.timeout_ms,
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ClientError::Disconnected { shard });
                }
            };
            if answers.answers.len() != positions.len() {
                return Err(ClientError::Protocol {
                    what: format!(
                        "{} answers to {} requests",
                        answers.answers.len(),
                        positions.len()
                    ),
                });
            }
            for (p, a) in positions.into_iter().zip(answers.answers) {
                out[p] = Some(a);
            }
        }
        Ok(out
            .into_iter()
            .map(|a| a.expect("every position answered"))
            .collect())
    }
}

/// Answered, given up on or dropped: either way the client stops holding
/// its reads back for this ticket's writes.
impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(w) = self.writes.take() {
            w.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads any shard may answer, from the shared view cache.
fn spreadable(r: &wire::Request) -> bool {
    matches!(
        r,
        wire::Request::GetSku { .. } | wire::Request::GetAccount { .. }
    )
}

/// Requests that change the engine's state: reads behind one must see it.
/// (The keyspace is one shared cache, current on every shard at once.)
fn writes_engine(r: &wire::Request) -> bool {
    use wire::Request as R;
    !matches!(
        r,
        R::GetSku { .. }
            | R::GetAccount { .. }
            | R::GetOrder { .. }
            | R::ListOrders { .. }
            | R::CacheSet { .. }
            | R::CacheGet { .. }
            | R::CacheDel { .. }
            | R::CacheStats
    )
}

/// FNV-1a: cheap, and only spreads keys over connections.
fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The reply of the kind `pick` takes, or a protocol error naming `what`
/// when the server answered another kind: a server, even a wrong one,
/// must not be able to panic its client.
fn reply_as<T>(
    r: CallResult<wire::Reply>,
    what: &str,
    pick: impl FnOnce(wire::Reply) -> Result<T, wire::Reply>,
) -> CallResult<T> {
    match r? {
        Ok(reply) => pick(reply).map(Ok).map_err(|other| ClientError::Protocol {
            what: format!("{what} answered {other:?}"),
        }),
        Err(reject) => Ok(Err(reject)),
    }
}

fn sku_of(r: CallResult<wire::Reply>) -> CallResult<wire::SkuView> {
    reply_as(r, "a SKU command", |reply| match reply {
        wire::Reply::Sku(v) => Ok(v),
        other => Err(other),
    })
}

fn account_of(r: CallResult<wire::Reply>) -> CallResult<wire::AccountView> {
    reply_as(r, "an account command", |reply| match reply {
        wire::Reply::Account(v) => Ok(v),
        other => Err(other),
    })
}

fn order_of(r: CallResult<wire::Reply>) -> CallResult<wire::OrderView> {
    reply_as(r, "an order command", |reply| match reply {
        wire::Reply::Order(v) => Ok(v),
        other => Err(other),
    })
}
