//! Opening and stopping an engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use mercato_wal::storage::{OsStorage, Storage};
use mercato_wal::{
    Durability, GROUP_COMMIT_WAIT_US_DEFAULT, Log, LogId, LogOptions, SEGMENT_BYTES_DEFAULT,
};

use crossbeam_queue::ArrayQueue;

use super::doorbell::Doorbell;
use super::gate::Gate;
use super::handle::Handle;
use super::net::{Access, Net, NetConfig, SharedAccess};
use super::ring::{Consumer, Producer, ring};
use super::worker::{Request, Worker};
use crate::clock::{Clock, SystemClock};
use crate::durable::checkpoint::{CHECKPOINT_QUEUE_PIECES_MAX, Piece, write_checkpoint};
use crate::durable::journal::WalJournal;
use crate::durable::marker::shard_dir;
use crate::durable::recovery::{RecoveryReport, recover};
use crate::durable::snapshot as compact;
use crate::error::{EngineError, OpenError};
use crate::journal::{Journal, MemoryJournal, NullJournal};
use crate::limits::{
    INBOUND_DEPTH_MAX, RING_DEPTH_MAX, SHARDS_MAX, SNAPSHOT_POLL_MS, SNAPSHOT_RETRY_MS_MAX,
    SNAPSHOT_RETRY_MS_MIN, SNAPSHOT_SEGMENTS_DEFAULT,
};
use crate::message::PeerMsg;
use crate::record::Record;
use crate::server::conn::ConnLimits;
use crate::shard::{Capacity, Shard};
use crate::sync::{AtomicU64, AtomicUsize};

/// Where each shard's records go until the write-ahead log exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JournalMode {
    /// Count and drop them.
    #[default]
    None,
    /// Keep them all in memory; for tests that replay them. Grows without bound.
    Memory,
}

/// How to open an engine.
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of shards; 0 means one per available core.
    pub shards: u16,
    pub journal: JournalMode,
    pub clock: Arc<dyn Clock>,
    /// Engine-wide SKUs, accounts, orders and remembered failed orders, and
    /// per shard the buyers of limited SKUs (see [`Capacity`]), to size the
    /// tables for up front, with their memory touched at open. Tables still
    /// grow past it; it spares the pauses of growing and of first touching
    /// fresh pages.
    pub capacity: Capacity,
    /// Requests one shard's inbound queue holds before callers get `Busy`.
    pub inbound_depth_max: usize,
    /// Where the write-ahead log lives. `None` keeps everything in memory
    /// (and `journal` says what happens to records).
    pub data_dir: Option<PathBuf>,
    /// When a change counts as safe; see [`Durability`].
    pub durability: Durability,
    /// Size of each preallocated log segment.
    pub segment_bytes: u64,
    /// Under `always`, the least time between the starts of two syncs of a
    /// shard's log; see `mercato_wal::LogOptions::group_commit_wait_us`.
    pub group_commit_wait_us: u64,
    /// The file layer under the log; tests swap in one that fails on cue.
    pub storage: Arc<dyn Storage>,
    /// A shard's log is snapshotted, in the background, once this many of
    /// its segments are closed and not yet covered by a snapshot; 0 never.
    pub snapshot_segments: usize,
    /// The background snapshot thread's niceness on Linux, 0 (the shards'
    /// own priority) to 19; see [`crate::limits::SNAPSHOT_NICE_DEFAULT`].
    /// Higher values are taken as 19. Ignored elsewhere.
    pub snapshot_nice: u8,
    /// Run the background snapshot thread in Linux's idle scheduling class
    /// (`SCHED_IDLE`), below every niceness: a shard that wakes takes its
    /// core at once, and under a load that fills every core a snapshot
    /// waits for it to ease. Ignored elsewhere. Default false.
    pub snapshot_sched_idle: bool,
    /// Bytes of log each shard keeps past its snapshots for the change
    /// feed's durable subscriptions; past it the subscriptions that need
    /// older records are marked lost. Default 1 GiB
    /// (`durable::retention::RETENTION_BYTES_DEFAULT`).
    pub feed_retention_bytes_max: u64,
    /// Keep each shard's state in the snapshot thread between snapshots,
    /// so that a snapshot replays only the log since the last one instead
    /// of first loading the last one. Costs a second copy of every shard's
    /// state for as long as the engine runs. Default false.
    pub snapshot_keep_state: bool,
    /// Serve the binary protocol over TCP; `None` for an embedded engine.
    pub serve: Option<ServeConfig>,
    /// The cache keyspace's memory budget, at least
    /// [`keyspace::budget_bytes_min`](crate::keyspace::budget_bytes_min).
    pub cache_budget_bytes: u64,
    pub cache_policy: crate::cache::PolicyKind,
    /// SKU views and account views the shared view caches hold (each); 0
    /// turns them off, and every read goes to its owner.
    pub view_cache_entries: u64,
    /// A shard loop turn that takes this long is counted and logged (at
    /// most once a second per shard); 0 turns this off. Default
    /// [`crate::limits::SLOW_TURN_MS_DEFAULT`].
    pub slow_turn_ms: u64,
}

/// How `mercato serve` listens. Shard `i` listens on the main port + 1 + `i`
/// (all ports are the system's choice when the main port is 0).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: std::net::SocketAddr,
    /// One token with the `admin` role (`--auth-token`).
    pub auth_token: Option<String>,
    /// Tokens with roles (`--tokens-file`, `access`); with neither these
    /// nor `auth_token`, every connection acts as `admin`.
    pub tokens: crate::access::Tokens,
    /// Connections per shard.
    pub conns_max: usize,
    /// Requests one connection may have unanswered.
    pub in_flight_max: usize,
    /// Answer bytes one connection may have reserved or unwritten; the
    /// largest answer frame (see `limits::ANSWER_BYTES_PER_CONN_MAX`).
    pub answer_bytes_max: usize,
    pub frame_bytes_max: usize,
    /// A new connection that sends no `Hello` this long is closed.
    pub handshake_timeout_ms: u64,
    /// An idle connection is closed after this long; 0: never.
    pub idle_timeout_ms: u64,
    /// Serve TLS only, on every port (`--tls-cert`, `--tls-key`).
    pub tls: Option<crate::server::tls::TlsConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7070)),
            auth_token: None,
            tokens: crate::access::Tokens::default(),
            conns_max: crate::limits::CONNS_PER_SHARD_MAX,
            in_flight_max: crate::limits::IN_FLIGHT_PER_CONN_MAX,
            answer_bytes_max: crate::limits::ANSWER_BYTES_PER_CONN_MAX,
            frame_bytes_max: mercato_protocol::FRAME_BYTES_MAX_DEFAULT,
            handshake_timeout_ms: crate::limits::HANDSHAKE_TIMEOUT_MS_DEFAULT,
            idle_timeout_ms: crate::limits::IDLE_TIMEOUT_MS_DEFAULT,
            tls: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 0,
            journal: JournalMode::None,
            clock: Arc::new(SystemClock),
            capacity: Capacity::default(),
            inbound_depth_max: INBOUND_DEPTH_MAX,
            data_dir: None,
            durability: Durability::Always,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            group_commit_wait_us: GROUP_COMMIT_WAIT_US_DEFAULT,
            storage: Arc::new(OsStorage),
            snapshot_segments: SNAPSHOT_SEGMENTS_DEFAULT,
            snapshot_nice: crate::limits::SNAPSHOT_NICE_DEFAULT,
            snapshot_keep_state: false,
            snapshot_sched_idle: false,
            feed_retention_bytes_max: crate::durable::retention::RETENTION_BYTES_DEFAULT,
            serve: None,
            cache_budget_bytes: crate::limits::CACHE_BUDGET_BYTES_DEFAULT,
            cache_policy: crate::cache::PolicyKind::Lru,
            view_cache_entries: crate::limits::VIEW_CACHE_ENTRIES_DEFAULT,
            slow_turn_ms: crate::limits::SLOW_TURN_MS_DEFAULT,
        }
    }
}

impl Config {
    pub fn with_shards(shards: u16) -> Self {
        Config {
            shards,
            ..Config::default()
        }
    }
}

/// What callers and shard threads share about one shard.
pub(crate) struct ShardSlot {
    pub inbound: ArrayQueue<Request>,
    /// Connections the main port handed to this shard.
    pub accepted: ArrayQueue<std::net::TcpStream>,
    /// Client connections this shard serves.
    pub conns: AtomicUsize,
    /// Client batches this shard's connections have in flight.
    pub net_batches: AtomicUsize,
    /// Connections with answer bytes still waiting for their socket.
    pub net_unflushed: AtomicUsize,
    pub waker: mio::Waker,
    /// Tells senders whether the shard sleeps and needs its waker.
    pub doorbell: Doorbell,
    /// Where the snapshot thread leaves the queue for the shard's next
    /// checkpoint (`durable/checkpoint.rs`); the shard takes it.
    pub checkpoint: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Piece>>>,
    /// Set with `checkpoint`, so the shard looks without taking a lock.
    pub checkpoint_wanted: crate::sync::AtomicBool,
    /// Records of this shard's log up to here are as durable as an answer
    /// needs: what the change feed may tell (`runtime/feed.rs`).
    pub committed_lsn: AtomicU64,
    /// The shard's SKUs, accounts and orders, as it last published them
    /// (with `committed_lsn`): for `Info`.
    pub rows: [AtomicU64; 3],
    /// Lock notices for this shard's client connections, from whichever
    /// shard decided them (`Shared::notify`).
    pub notices: std::sync::Mutex<std::collections::VecDeque<(u64, crate::lock::Notice)>>,
    /// This shard's counters, written by its thread only (`metrics`).
    pub metrics: crossbeam_utils::CachePadded<crate::metrics::ShardMetrics>,
    /// The shard's log, for metrics, once it has one.
    pub log: std::sync::OnceLock<mercato_wal::LogMonitor>,
}

impl ShardSlot {
    /// What the main port balances new connections by.
    pub fn load(&self) -> usize {
        self.inbound.len() + self.conns.load(crate::sync::Ordering::Relaxed)
    }
}

/// The main address, then each shard's.
pub type Addrs = (std::net::SocketAddr, Vec<std::net::SocketAddr>);

/// Bind the main port and one port per shard, and prepare each shard's
/// network side.
fn bind(sc: &ServeConfig, n: usize) -> Result<(Vec<Net>, Addrs, SharedAccess), OpenError> {
    if !(crate::limits::ANSWER_BYTES_MIN..=i32::MAX as usize).contains(&sc.answer_bytes_max) {
        return Err(EngineError::InvalidConfig {
            what: "answer_bytes_max must be from 512 KiB (two cache values) to 2 GiB",
        }
        .into());
    }
    if sc.handshake_timeout_ms == 0 {
        return Err(EngineError::InvalidConfig {
            what: "handshake_timeout_ms must be above 0",
        }
        .into());
    }
    let listen = |addr: std::net::SocketAddr| {
        let l =
            std::net::TcpListener::bind(addr).map_err(|source| OpenError::Bind { addr, source })?;
        l.set_nonblocking(true)
            .map_err(|source| OpenError::Bind { addr, source })?;
        Ok::<_, OpenError>(l)
    };
    let main = listen(sc.listen)?;
    let main_addr = main.local_addr().map_err(|source| OpenError::Bind {
        addr: sc.listen,
        source,
    })?;
    let mut own = Vec::with_capacity(n);
    for i in 0..n {
        let port = if sc.listen.port() == 0 {
            0
        } else {
            sc.listen
                .port()
                .checked_add(1 + i as u16)
                .ok_or(EngineError::InvalidConfig {
                    what: "shard ports run past 65535",
                })?
        };
        let addr = std::net::SocketAddr::new(sc.listen.ip(), port);
        let l = listen(addr)?;
        let actual = l
            .local_addr()
            .map_err(|source| OpenError::Bind { addr, source })?;
        own.push((l, actual));
    }
    let addrs: Vec<std::net::SocketAddr> = own.iter().map(|(_, a)| *a).collect();
    let welcome = mercato_protocol::Welcome {
        version: mercato_protocol::VERSION,
        shards: n as u16,
        shard_hash: 1,
        shard: 0,
        ports: addrs.iter().map(|a| a.port()).collect(),
        frame_bytes_max: sc.frame_bytes_max as u32,
        batch_len_max: crate::limits::BATCH_LEN_MAX as u32,
        in_flight_max: sc.in_flight_max as u32,
        order_lines_max: crate::limits::ORDER_LINES_MAX as u32,
        answer_bytes_max: sc.answer_bytes_max as u32,
    };
    let mut tokens = sc.tokens.clone();
    if let Some(admin) = &sc.auth_token {
        tokens.add(crate::access::Tokens::admin(admin));
    }
    let access = Arc::new(std::sync::RwLock::new(Access {
        tokens: Arc::new(tokens),
        tls: sc.tls.clone(),
    }));
    let config = NetConfig {
        access: access.clone(),
        limits: ConnLimits {
            frame_bytes_max: sc.frame_bytes_max,
            batch_len_max: crate::limits::BATCH_LEN_MAX,
            in_flight_max: sc.in_flight_max,
            answer_bytes_max: sc.answer_bytes_max,
            handshake_timeout_ms: sc.handshake_timeout_ms,
            idle_timeout_ms: sc.idle_timeout_ms,
        },
        conns_max: sc.conns_max,
        welcome,
    };
    let mut main = Some(mio::net::TcpListener::from_std(main));
    let nets = own
        .into_iter()
        .enumerate()
        .map(|(i, (l, _))| {
            let m = if i == 0 { main.take() } else { None };
            Net::new(i, config.clone(), mio::net::TcpListener::from_std(l), m)
        })
        .collect();
    Ok((nets, (main_addr, addrs), access))
}

pub(crate) struct Shared {
    pub shards: Vec<ShardSlot>,
    pub gate: Gate,
    /// Shards that stopped taking new work and emptied their outboxes.
    pub stopped: AtomicUsize,
    /// Shards whose log failed.
    pub failed_logs: AtomicUsize,
    /// The server is stopping: take no new connections or requests, finish
    /// the batches in flight.
    pub draining: crate::sync::AtomicBool,
    /// The background thread is taking a snapshot. An idle shard then does
    /// not yield its core while it spins: a yield hands it to the snapshot
    /// thread until that thread's time slice ends, whereas a shard that
    /// sleeps and is woken takes the core back at once (BENCHMARKS.md, "Idle
    /// shards that do not yield to a snapshot").
    pub snapshotting: crate::sync::AtomicBool,
    /// What the snapshot thread reports: each shard's current failure,
    /// and the failures since open.
    pub snapshot_errors: std::sync::Mutex<Vec<Option<String>>>,
    pub snapshot_failures: std::sync::atomic::AtomicU64,
    pub clock: Arc<dyn Clock>,
    /// The cache keyspace, which every shard and handle serves directly.
    pub keyspace: Arc<crate::keyspace::Keyspace>,
    /// Cached SKU and account views, unless turned off.
    pub views: Option<Arc<crate::views::Views>>,
    /// Numbers sessions (`Shared::new_session`).
    pub sessions_made: std::sync::atomic::AtomicU64,
    /// Embedded sessions (`Handle::session`): where their notices go.
    pub embedded:
        std::sync::Mutex<crate::hash::IdMap<u64, std::sync::mpsc::SyncSender<crate::lock::Notice>>>,
    /// Notices dropped because their session's queue was full.
    pub notices_dropped: std::sync::atomic::AtomicU64,
    /// Where the shards' logs are, if anywhere: the change feed reads them.
    pub data_dir: Option<std::path::PathBuf>,
    /// For `Info`: when the engine opened, and how its logs sync
    /// (`None`: in memory).
    pub opened: std::time::Instant,
    pub durability: Option<Durability>,
    /// Per shard: its checkpoints this run, for `Info` and metrics.
    pub checkpoints: std::sync::Mutex<Vec<CheckpointLog>>,
    /// Change feeds open (`Feed`s not yet dropped).
    pub feeds_open: AtomicUsize,
    /// `Config::slow_turn_ms`, `None` when off.
    pub slow_turn: Option<std::time::Duration>,
}

/// One shard's checkpoints this run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CheckpointLog {
    pub last_at: Option<std::time::Instant>,
    pub duration_ms: u64,
    pub lsn: u64,
    pub written: u64,
    pub failures: u64,
}

/// A session number's low bits say where its notices go: a shard's
/// network loop (`0..SHARDS_MAX`), or the embedded sessions' registry.
const SESSION_ROUTE_BITS: u32 = 9;
const SESSION_EMBEDDED: u64 = SHARDS_MAX as u64;
const _: () = assert!(SHARDS_MAX < 1 << SESSION_ROUTE_BITS);

/// Notices one shard's connections may have waiting for its loop, and one
/// embedded session for its owner; past them, notices are dropped and
/// counted: a waiter that misses its grant sees its wait end on its own
/// clock, and the lease it was given runs out (fencing keeps that safe).
pub(crate) const NOTICES_QUEUED_MAX: usize = 1 << 16;
pub(crate) const SESSION_NOTICES_MAX: usize = 4_096;

impl Shared {
    /// A new session, for a connection served by `shard` or, with `None`,
    /// for an embedded caller; numbered above every session the durable
    /// state names, so no new session ends an old bound lease.
    pub(crate) fn new_session(&self, shard: Option<usize>) -> u64 {
        let n = (self.sessions_made).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let route = shard.map_or(SESSION_EMBEDDED, |s| s as u64);
        n << SESSION_ROUTE_BITS | route
    }

    /// Hands notices to their sessions.
    pub(crate) fn notify(&self, notices: &mut Vec<(u64, crate::lock::Notice)>) {
        use std::sync::atomic::Ordering::Relaxed;
        for (session, notice) in notices.drain(..) {
            let route = session & ((1 << SESSION_ROUTE_BITS) - 1);
            if route == SESSION_EMBEDDED {
                let embedded = self.embedded.lock().expect("sessions lock");
                if let Some(tx) = embedded.get(&session)
                    && tx.try_send(notice).is_err()
                {
                    self.notices_dropped.fetch_add(1, Relaxed);
                }
                continue;
            }
            let Some(slot) = self.shards.get(route as usize) else {
                continue;
            };
            let mut q = slot.notices.lock().expect("notices lock");
            if q.len() >= NOTICES_QUEUED_MAX {
                self.notices_dropped.fetch_add(1, Relaxed);
                continue;
            }
            q.push_back((session, notice));
            drop(q);
            if slot.doorbell.needs_ring() {
                let _ = slot.waker.wake();
            }
        }
    }
}

impl Shared {
    pub(crate) fn snapshot_error(&self) -> Option<String> {
        let errors = self.snapshot_errors.lock().expect("snapshot lock");
        let failing: Vec<&str> = errors.iter().flatten().map(String::as_str).collect();
        (!failing.is_empty()).then(|| failing.join("; "))
    }

    /// The engine's health, for `Info` and `Handle::info`.
    pub(crate) fn info(&self) -> crate::types::ServerInfo {
        use crate::sync::Ordering;
        crate::types::ServerInfo {
            shards: self.shards.len() as u16,
            connections: self
                .shards
                .iter()
                .map(|s| s.conns.load(Ordering::Relaxed) as u64)
                .sum(),
            snapshot_failures: self
                .snapshot_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            snapshot_error: self.snapshot_error(),
            failed_logs: self.failed_logs.load(Ordering::Relaxed) as u16,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.opened.elapsed().as_millis() as u64,
            durability: self
                .durability
                .map_or_else(|| "in memory".to_string(), |d| d.to_string()),
            rss_bytes: crate::rss_bytes(),
            shard_states: (self.shards.iter())
                .zip(self.checkpoints.lock().expect("checkpoints lock").iter())
                .map(|(s, c)| crate::types::ShardInfo {
                    // In memory there is no log, and no LSN to show.
                    committed_lsn: if self.durability.is_some() {
                        s.committed_lsn.load(Ordering::Relaxed)
                    } else {
                        0
                    },
                    skus: s.rows[0].load(Ordering::Relaxed),
                    accounts: s.rows[1].load(Ordering::Relaxed),
                    orders: s.rows[2].load(Ordering::Relaxed),
                    checkpoint_lsn: c.lsn,
                    checkpoint_age_ms: c.last_at.map(|at| at.elapsed().as_millis() as u64),
                })
                .collect(),
        }
    }
}

impl Shared {
    /// Every figure a metrics scrape reports (`metrics`).
    pub(crate) fn metrics(&self) -> crate::metrics::Metrics {
        use crate::metrics::{CacheFigures, CheckpointFigures, LogFigures, Metrics};
        use crate::sync::Ordering;
        let durable = self.durability.is_some();
        let shards = (self.shards.iter())
            .map(|s| {
                let mut f = s.metrics.figures();
                f.conns_open = s.conns.load(Ordering::Relaxed) as u64;
                f.mailbox_depth = s.inbound.len() as u64;
                f.mailbox_capacity = s.inbound.capacity() as u64;
                f.net_batches = s.net_batches.load(Ordering::Relaxed) as u64;
                [f.skus, f.accounts, f.orders] =
                    [0, 1, 2].map(|i| s.rows[i].load(Ordering::Relaxed));
                f.committed_lsn = if durable {
                    s.committed_lsn.load(Ordering::Relaxed)
                } else {
                    0
                };
                f.log = s.log.get().map(|log| {
                    let st = log.stats();
                    LogFigures {
                        written_lsn: log.written_lsn(),
                        synced_lsn: log.synced_lsn(),
                        syncs: st.syncs.get(),
                        records_synced: st.records_synced.get(),
                        bytes_written: st.bytes_written.get(),
                        sync_latency: st.sync_latency.counts(),
                        failed: log.failure().is_some(),
                    }
                });
                f
            })
            .collect();
        let cache = |name, c: crate::cache::CacheStats| CacheFigures {
            name,
            hits: c.hits,
            misses: c.misses,
            evictions: c.evictions,
            entries: c.entries,
            weight: c.weight,
            capacity: c.capacity,
        };
        let mut caches = vec![cache("keyspace", self.keyspace.stats())];
        if let Some(v) = &self.views {
            caches.push(cache("sku_views", v.skus.stats()));
            caches.push(cache("account_views", v.accounts.stats()));
        }
        let checkpoints = (self.checkpoints.lock().expect("checkpoints lock").iter())
            .map(|c| CheckpointFigures {
                age_ms: c.last_at.map(|at| at.elapsed().as_millis() as u64),
                duration_ms: c.duration_ms,
                lsn: c.lsn,
                written: c.written,
                failures: c.failures,
            })
            .collect();
        // What each durable subscription has not acknowledged, per shard:
        // records committed past the position it reads next.
        let subscriptions = match &self.data_dir {
            Some(dir) => {
                crate::durable::retention::with(dir, |s| s.list.clone()).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let feed_lag = (subscriptions.into_iter())
            .take(crate::metrics::SUBSCRIPTIONS_REPORTED_MAX)
            .map(|sub| {
                let lag = (sub.positions.iter().zip(&self.shards))
                    .map(|(&next, s)| {
                        (s.committed_lsn.load(Ordering::Relaxed) + 1).saturating_sub(next)
                    })
                    .collect();
                (sub.name, lag)
            })
            .collect();
        Metrics {
            uptime_ms: self.opened.elapsed().as_millis() as u64,
            rss_bytes: crate::rss_bytes(),
            durable,
            shards,
            caches,
            snapshot_failures: self
                .snapshot_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            checkpoints,
            feeds_open: self.feeds_open.load(Ordering::Relaxed) as u64,
            feed_lag,
            notices_dropped: self
                .notices_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// What each shard held when the engine stopped.
pub struct Stopped {
    pub shards: Vec<Shard>,
    /// Each shard's records, when the journal was [`JournalMode::Memory`].
    pub records: Vec<Vec<Record>>,
    /// Logs that could not be synced and closed, as "shard i: why": what
    /// they held past their last good sync may be lost. `mercato serve`
    /// exits 1 when this is not empty.
    pub log_errors: Vec<String>,
}

/// A running engine. Dropping it shuts it down.
pub struct Engine {
    handle: Handle,
    /// The main address and each shard's, when serving.
    addrs: Option<Addrs>,
    /// Who may connect, when serving (`set_access`).
    access: Option<SharedAccess>,
    threads: Vec<JoinHandle<(Shard, Box<dyn JournalBox>)>>,
    recovery: Option<RecoveryReport>,
    snapshots: Option<Snapshotter>,
    /// Held until the engine is dropped, after its shards and logs stopped
    /// (fields drop after `Drop::drop`).
    _dir_lock: Option<crate::durable::lock::DirLock>,
}

/// The background thread that snapshots shards' logs, and what it shares.
struct Snapshotter {
    shared: Arc<SnapshotShared>,
    thread: Option<JoinHandle<()>>,
}

struct SnapshotShared {
    /// Set to stop the thread.
    stop: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    /// One snapshot at a time, background or on demand; a compactor that
    /// keeps states starts each from the one the last left.
    busy: std::sync::Mutex<compact::Compactor>,
    dir: PathBuf,
    shards: u16,
}

/// Sets the calling thread's niceness to `nice` (at most 19) and, if
/// `idle`, moves it to the idle scheduling class, on Linux, where both are
/// per thread. Lowering one's own priority needs no privilege, so neither
/// can fail for these values; the results are not checked, since a
/// snapshot that keeps the shards' priority is still right.
fn lower_own_priority(nice: u8, idle: bool) {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: `setpriority` and `gettid` take and return plain integers and
    // touch no memory of ours; `gettid` names this thread, which is alive.
    // `sched_setscheduler` reads the one `sched_param` passed, which lives
    // on this stack for the call; pid 0 means the calling thread.
    unsafe {
        let nice = i32::from(nice.min(crate::limits::SNAPSHOT_NICE_MAX));
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
        if idle {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (nice, idle);
}

/// Asks shard `i` for a checkpoint and writes it as its snapshot
/// (`durable/checkpoint.rs`): the shard copies its own state, so no record
/// is applied twice.
fn checkpoint(
    engine: &Shared,
    dir: &Path,
    i: u16,
    shards: u16,
    stopping: &dyn Fn() -> bool,
) -> Result<u64, OpenError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHECKPOINT_QUEUE_PIECES_MAX);
    let slot = &engine.shards[usize::from(i)];
    *slot.checkpoint.lock().expect("checkpoint lock") = Some(tx);
    slot.checkpoint_wanted
        .store(true, crate::sync::Ordering::Release);
    let _ = slot.waker.wake();
    let started = std::time::Instant::now();
    let written = write_checkpoint(dir, i, shards, &rx, stopping);
    // Not taken (the shard stopped first): nobody will.
    slot.checkpoint.lock().expect("checkpoint lock").take();
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut logs = engine.checkpoints.lock().expect("checkpoints lock");
    let log = &mut logs[usize::from(i)];
    match &written {
        Ok(w) => {
            *log = CheckpointLog {
                last_at: Some(std::time::Instant::now()),
                duration_ms,
                lsn: w.lsn,
                written: log.written + 1,
                failures: log.failures,
            };
            tracing::info!(shard = i, lsn = w.lsn, duration_ms, "checkpoint written");
        }
        Err(e) => {
            log.failures += 1;
            tracing::error!(shard = i, duration_ms, error = %e, "checkpoint failed; the log keeps everything, serving on");
        }
    }
    written.map(|w| w.lsn)
}

impl Snapshotter {
    /// A snapshotter without a thread, for [`Engine::snapshot_now`] only.
    fn without_thread(dir: &Path, shards: u16, keep: bool) -> Snapshotter {
        Snapshotter {
            shared: Arc::new(SnapshotShared {
                stop: std::sync::Mutex::new(false),
                wake: std::sync::Condvar::new(),
                busy: std::sync::Mutex::new(compact::Compactor::new(dir, shards, keep)),
                dir: dir.to_path_buf(),
                shards,
            }),
            thread: None,
        }
    }

    fn start(
        dir: PathBuf,
        shards: u16,
        segments: usize,
        (nice, sched_idle): (u8, bool),
        keep: bool,
        engine: Arc<Shared>,
    ) -> Result<Snapshotter, EngineError> {
        let mut snapshotter = Snapshotter::without_thread(&dir, shards, keep);
        let (d, sh) = (dir, snapshotter.shared.clone());
        let thread = std::thread::Builder::new()
            .name("mercato-snapshots".into())
            .spawn(move || {
                lower_own_priority(nice, sched_idle);
                let n = usize::from(shards);
                // Per shard: when it may be tried next, and the wait after
                // its next failure.
                let mut next_try = vec![std::time::Instant::now(); n];
                let mut backoff_ms = vec![SNAPSHOT_RETRY_MS_MIN; n];
                let mut stop = sh.stop.lock().expect("snapshot lock");
                while !*stop {
                    drop(stop);
                    for i in 0..shards {
                        let s = usize::from(i);
                        if std::time::Instant::now() < next_try[s]
                            || compact::closed_segments(&d, i) < segments
                        {
                            continue;
                        }
                        // Not with `snapshot_now`'s compaction at once.
                        let busy = sh.busy.lock().expect("snapshot lock");
                        engine
                            .snapshotting
                            .store(true, crate::sync::Ordering::Relaxed);
                        let stopping = || *sh.stop.lock().expect("snapshot lock");
                        // A panic in a snapshot (a bug, or a state its
                        // format cannot hold) must not end snapshots for
                        // good in silence: it counts as a failure.
                        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            checkpoint(&engine, &d, i, shards, &stopping)
                        }))
                        .unwrap_or_else(|panic| {
                            let why = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "a panic".into());
                            Err(OpenError::SnapshotPanicked { why })
                        });
                        drop(busy);
                        engine
                            .snapshotting
                            .store(false, crate::sync::Ordering::Relaxed);
                        // Kept per shard until one of its snapshots succeeds
                        // again; the engine serves on, since the log still
                        // holds everything.
                        let mut errors = engine.snapshot_errors.lock().expect("snapshot lock");
                        match done {
                            Ok(_) => {
                                errors[s] = None;
                                backoff_ms[s] = SNAPSHOT_RETRY_MS_MIN;
                            }
                            Err(e) => {
                                if matches!(e, OpenError::SnapshotPanicked { .. }) {
                                    let mut logs =
                                        engine.checkpoints.lock().expect("checkpoints lock");
                                    logs[s].failures += 1;
                                    tracing::error!(shard = i, error = %e, "checkpoint panicked");
                                }
                                tracing::warn!(
                                    shard = i,
                                    retry_ms = backoff_ms[s],
                                    "snapshot will be tried again"
                                );
                                errors[s] = Some(format!(
                                    "shard {i}: {e}; retrying in {} ms",
                                    backoff_ms[s]
                                ));
                                engine
                                    .snapshot_failures
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                next_try[s] = std::time::Instant::now()
                                    + std::time::Duration::from_millis(backoff_ms[s]);
                                backoff_ms[s] = (backoff_ms[s] * 2).min(SNAPSHOT_RETRY_MS_MAX);
                            }
                        }
                    }
                    stop = sh.stop.lock().expect("snapshot lock");
                    let timeout = std::time::Duration::from_millis(SNAPSHOT_POLL_MS);
                    stop = sh
                        .wake
                        .wait_timeout(stop, timeout)
                        .expect("snapshot lock")
                        .0;
                }
            })
            .map_err(|e| EngineError::Spawn {
                shard: 0,
                kind: e.kind(),
            })?;
        snapshotter.thread = Some(thread);
        Ok(snapshotter)
    }

    fn stop(&mut self) {
        *self.shared.stop.lock().expect("snapshot lock") = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A journal the engine can hand back at shutdown.
pub(crate) trait JournalBox: Journal {
    /// Close it: its records, when it kept them, and whether everything
    /// it was given reached the disk.
    fn finish(self: Box<Self>) -> (Vec<Record>, Result<(), String>);
}

impl JournalBox for NullJournal {
    fn finish(self: Box<Self>) -> (Vec<Record>, Result<(), String>) {
        (Vec::new(), Ok(()))
    }
}

impl JournalBox for MemoryJournal {
    fn finish(self: Box<Self>) -> (Vec<Record>, Result<(), String>) {
        (self.records, Ok(()))
    }
}

impl JournalBox for WalJournal {
    /// Closing syncs the log, whatever the policy. A log that failed
    /// earlier already answered its callers `Unavailable`; either way the
    /// operator hears of it.
    fn finish(self: Box<Self>) -> (Vec<Record>, Result<(), String>) {
        let failed_before = self.failed();
        let closed = self.close().map_err(|e| e.to_string());
        let closed = match (closed, failed_before) {
            (Ok(()), true) => Err("the log failed while serving".to_string()),
            (closed, _) => closed,
        };
        (Vec::new(), closed)
    }
}

impl Engine {
    /// Start the shards. With a `data_dir`, first recover it: replay every
    /// shard's log, settle what a crash left between shards, and only then
    /// serve.
    pub fn open(config: Config) -> Result<Engine, OpenError> {
        // Before recovery, which may cut a torn tail: nothing on disk is
        // touched unless this engine is the directory's only one.
        let dir_lock = match &config.data_dir {
            Some(dir) => Some(crate::durable::lock::lock(dir)?),
            None => None,
        };
        let mut recovered = match &config.data_dir {
            Some(dir) => Some(recover(dir, config.shards, true)?),
            None => None,
        };
        if let Some(dir) = &config.data_dir {
            let limit = config.feed_retention_bytes_max;
            crate::durable::retention::with(dir, |s| s.retention_bytes_max = limit)
                .map_err(OpenError::from)?;
        }
        let n = match (&recovered, config.shards) {
            (Some(r), _) => r.shards.len(),
            (None, 0) => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(SHARDS_MAX),
            (None, n) => n as usize,
        };
        if n > SHARDS_MAX {
            return Err(EngineError::InvalidConfig {
                what: "more shards than SHARDS_MAX",
            }
            .into());
        }
        if config.inbound_depth_max == 0 {
            return Err(EngineError::InvalidConfig {
                what: "inbound_depth_max must be at least 1",
            }
            .into());
        }
        if config.cache_budget_bytes < crate::keyspace::budget_bytes_min() {
            return Err(EngineError::InvalidConfig {
                what: "cache_budget_bytes must hold two of the largest keyspace entries",
            }
            .into());
        }
        let mut polls = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = mio::Poll::new().map_err(|e| EngineError::Spawn {
                shard: 0,
                kind: e.kind(),
            })?;
            let waker = mio::Waker::new(poll.registry(), mio::Token(0)).map_err(|e| {
                EngineError::Spawn {
                    shard: 0,
                    kind: e.kind(),
                }
            })?;
            slots.push(ShardSlot {
                inbound: ArrayQueue::new(config.inbound_depth_max),
                accepted: ArrayQueue::new(crate::limits::ACCEPTED_QUEUE_MAX),
                conns: AtomicUsize::new(0),
                net_batches: AtomicUsize::new(0),
                net_unflushed: AtomicUsize::new(0),
                waker,
                doorbell: Doorbell::new(),
                checkpoint: std::sync::Mutex::new(None),
                checkpoint_wanted: crate::sync::AtomicBool::new(false),
                notices: std::sync::Mutex::default(),
                committed_lsn: AtomicU64::new(0),
                rows: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
                metrics: Default::default(),
                log: std::sync::OnceLock::new(),
            });
            polls.push(poll);
        }
        let shared = Arc::new(Shared {
            shards: slots,
            gate: Gate::new(),
            stopped: AtomicUsize::new(0),
            failed_logs: AtomicUsize::new(0),
            draining: crate::sync::AtomicBool::new(false),
            snapshotting: crate::sync::AtomicBool::new(false),
            snapshot_errors: std::sync::Mutex::new(vec![None; n]),
            snapshot_failures: std::sync::atomic::AtomicU64::new(0),
            clock: config.clock.clone(),
            keyspace: Arc::new(crate::keyspace::Keyspace::new(
                config.cache_budget_bytes,
                config.cache_policy,
                config.clock.clone(),
            )),
            views: (config.view_cache_entries > 0)
                .then(|| Arc::new(crate::views::Views::new(config.view_cache_entries))),
            sessions_made: std::sync::atomic::AtomicU64::new(1),
            embedded: std::sync::Mutex::default(),
            notices_dropped: std::sync::atomic::AtomicU64::new(0),
            data_dir: config.data_dir.clone(),
            opened: std::time::Instant::now(),
            durability: config.data_dir.is_some().then_some(config.durability),
            checkpoints: std::sync::Mutex::new(vec![CheckpointLog::default(); n]),
            feeds_open: AtomicUsize::new(0),
            slow_turn: (config.slow_turn_ms > 0)
                .then(|| std::time::Duration::from_millis(config.slow_turn_ms)),
        });

        // rings[from][to]: the producer goes to `from`, the consumer to `to`.
        let mut producers: Vec<Vec<Option<Producer<Vec<PeerMsg>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut consumers: Vec<Vec<Option<Consumer<Vec<PeerMsg>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let (p, c) = ring(RING_DEPTH_MAX);
                    producers[from][to] = Some(p);
                    consumers[to][from] = Some(c);
                }
            }
        }

        let mut shards: Vec<Shard> = match &mut recovered {
            Some(r) => std::mem::take(&mut r.shards),
            None => (0..n).map(|i| Shard::new(i as u16, n as u16)).collect(),
        };
        let max_session = shards.iter().map(Shard::max_session).max().unwrap_or(0);
        shared.sessions_made.store(
            (max_session >> SESSION_ROUTE_BITS) + 1,
            std::sync::atomic::Ordering::Relaxed,
        );
        // Touching reserved tables takes seconds (2.4 s for 8,000,000
        // orders over 2 shards here); the shards do it side by side.
        if config.capacity != Capacity::default() {
            let per_shard = config.capacity.per_shard(n as u16);
            std::thread::scope(|s| {
                for shard in shards.iter_mut() {
                    s.spawn(move || shard.reserve(per_shard));
                }
            });
        }
        let mut journals = Vec::with_capacity(n);
        for (i, shard) in shards.iter_mut().enumerate() {
            let journal: Box<dyn JournalBox> = match (&recovered, config.journal) {
                (Some(r), _) => {
                    let dir = config.data_dir.as_ref().expect("recovered from a data_dir");
                    let ringer = shared.clone();
                    let notify = Arc::new(move || {
                        let slot = &ringer.shards[i];
                        if slot.doorbell.needs_ring() {
                            let _ = slot.waker.wake();
                        }
                    });
                    let opts = LogOptions {
                        segment_bytes: config.segment_bytes,
                        group_commit_wait_us: config.group_commit_wait_us,
                        durability: config.durability,
                        storage: config.storage.clone(),
                    };
                    let id = LogId {
                        shard: i as u16,
                        shards: n as u16,
                    };
                    let end = &r.report.shards[i].end;
                    // What the log held before this open is committed:
                    // a feed from `Now` starts after it, even before the
                    // shard's first turn says so.
                    (shared.shards[i].committed_lsn).store(
                        end.next_lsn.saturating_sub(1),
                        crate::sync::Ordering::Release,
                    );
                    let log = Log::start(&shard_dir(dir, i as u16), id, end, opts, notify)?;
                    let _ = shared.shards[i].log.set(log.monitor());
                    let mut journal = WalJournal::new(log);
                    shard.encode_records();
                    // What recovery settled goes first, ahead of any new work.
                    let mut settled = r.settlement[i].clone();
                    crate::journal::Journal::append(&mut journal, &mut settled);
                    // Then every lease gets its whole time again, since the
                    // time the engine was down is not its holder's fault.
                    let mut out = crate::shard::Output::default();
                    shard.restart_leases(config.clock.now_ms(), &mut out);
                    crate::journal::Journal::append_encoded(&mut journal, &mut out.encoded);
                    crate::journal::Journal::submit(&mut journal);
                    Box::new(journal)
                }
                (None, JournalMode::None) => {
                    shard.discard_records();
                    Box::new(NullJournal)
                }
                (None, JournalMode::Memory) => Box::new(MemoryJournal::default()),
            };
            journals.push(journal);
        }

        let (mut nets, addrs, access) = match &config.serve {
            Some(sc) => {
                let (nets, addrs, access) = bind(sc, n)?;
                (
                    nets.into_iter().map(Some).collect(),
                    Some(addrs),
                    Some(access),
                )
            }
            None => ((0..n).map(|_| None).collect::<Vec<_>>(), None, None),
        };
        let mut threads = Vec::with_capacity(n);
        for (i, ((((poll, producers), consumers), shard), journal)) in polls
            .into_iter()
            .zip(producers)
            .zip(consumers)
            .zip(shards)
            .zip(journals)
            .enumerate()
        {
            let mut worker =
                Worker::new(shard, shared.clone(), poll, producers, consumers, journal);
            if let Some(net) = nets[i].take() {
                worker.serve(net).map_err(|e| EngineError::Spawn {
                    shard: i as u16,
                    kind: e.kind(),
                })?;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("mercato-shard-{i}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.gate.close();
                    for s in &shared.shards {
                        let _ = s.waker.wake();
                    }
                    return Err(EngineError::Spawn {
                        shard: i as u16,
                        kind: e.kind(),
                    }
                    .into());
                }
            }
        }
        let snapshots = match (&config.data_dir, config.snapshot_segments) {
            (Some(dir), segments) if segments > 0 => Some(Snapshotter::start(
                dir.clone(),
                n as u16,
                segments,
                (config.snapshot_nice, config.snapshot_sched_idle),
                config.snapshot_keep_state,
                shared.clone(),
            )?),
            (Some(dir), _) => Some(Snapshotter::without_thread(
                dir,
                n as u16,
                config.snapshot_keep_state,
            )),
            (None, _) => None,
        };
        Ok(Engine {
            handle: Handle::new(shared),
            addrs,
            access,
            threads,
            recovery: recovered.map(|r| r.report),
            snapshots,
            _dir_lock: dir_lock,
        })
    }

    /// Snapshot every shard's closed log segments now, from the caller's
    /// thread, and drop what the snapshots cover. The shards keep serving.
    /// Does nothing for an engine without a data directory.
    pub fn snapshot_now(&self) -> Result<Vec<compact::Compacted>, OpenError> {
        let Some(s) = &self.snapshots else {
            return Ok(Vec::new());
        };
        s.shared.busy.lock().expect("snapshot lock").compact_all()
    }

    /// Has every shard copy a checkpoint of its state now and writes each
    /// as the shard's snapshot, as the background snapshots do
    /// (ARCHITECTURE.md, "Snapshots are checkpoints the shards copy
    /// themselves"); returns each shard's snapshot LSN. The shards keep
    /// serving meanwhile. Nothing to do without a data directory.
    pub fn checkpoint_now(&self) -> Result<Vec<u64>, OpenError> {
        let Some(s) = &self.snapshots else {
            return Ok(Vec::new());
        };
        let _busy = s.shared.busy.lock().expect("snapshot lock");
        let stopping = || *s.shared.stop.lock().expect("snapshot lock");
        (0..s.shared.shards)
            .map(|i| {
                checkpoint(
                    self.handle.shared(),
                    &s.shared.dir,
                    i,
                    s.shared.shards,
                    &stopping,
                )
            })
            .collect()
    }

    /// The background snapshots failing now: each shard whose last
    /// snapshot failed, with why and when it is tried again; `None` once
    /// every shard's latest attempt succeeded (or none failed).
    pub fn snapshot_error(&self) -> Option<String> {
        self.handle.shared().snapshot_error()
    }

    /// Background snapshot failures since the engine opened.
    pub fn snapshot_failures(&self) -> u64 {
        self.handle
            .shared()
            .snapshot_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the tokens and the TLS certificate new connections are
    /// checked against (`mercato serve` does on SIGHUP), as PostgreSQL
    /// reloads `pg_hba.conf`: connections already open keep the role and
    /// the TLS session they have. `tokens` is the whole set (an
    /// `--auth-token` included). Refused, changing nothing: a server that
    /// is not serving, a change between TLS and plain (the ports' clients
    /// would all break), and a set without tokens replacing one with
    /// some (it would let everyone in as `admin`).
    pub fn set_access(
        &self,
        tokens: crate::access::Tokens,
        tls: Option<crate::server::tls::TlsConfig>,
    ) -> Result<(), EngineError> {
        let access = self.access.as_ref().ok_or(EngineError::InvalidConfig {
            what: "the engine is not serving",
        })?;
        let mut access = access.write().unwrap_or_else(|e| e.into_inner());
        if access.tls.is_some() != tls.is_some() {
            return Err(EngineError::InvalidConfig {
                what: "TLS cannot be turned on or off while serving",
            });
        }
        if tokens.is_empty() && !access.tokens.is_empty() {
            return Err(EngineError::InvalidConfig {
                what: "no tokens would let every client in as admin",
            });
        }
        *access = Access {
            tokens: Arc::new(tokens),
            tls,
        };
        Ok(())
    }

    /// Where `mercato serve` listens: the main address, then each shard's.
    pub fn addrs(&self) -> Option<Addrs> {
        self.addrs.clone()
    }

    /// Stop taking new connections and requests from clients, and wait up to
    /// `timeout` for the batches they have in flight to be answered and
    /// their answers written to the sockets. Returns whether everything in flight finished. Callers of the
    /// embedded `Handle` are not affected; `shutdown` follows.
    pub fn drain_clients(&self, timeout: std::time::Duration) -> bool {
        let shared = self.handle.shared();
        shared.draining.store(true, crate::sync::Ordering::SeqCst);
        for s in &shared.shards {
            let _ = s.waker.wake();
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let busy: usize = shared
                .shards
                .iter()
                .map(|s| {
                    s.net_batches.load(crate::sync::Ordering::SeqCst)
                        + s.net_unflushed.load(crate::sync::Ordering::SeqCst)
                })
                .sum();
            if busy == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// What recovery found and did, for an engine opened on a data directory.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// A handle for callers; clone it freely.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stop taking work, let every two-phase order in flight finish, and
    /// return the shards' final state.
    pub fn shutdown(mut self) -> Stopped {
        self.stop()
    }

    fn stop(&mut self) -> Stopped {
        if let Some(s) = &mut self.snapshots {
            s.stop();
        }
        self.handle.close();
        let mut stopped = Stopped {
            shards: Vec::new(),
            records: Vec::new(),
            log_errors: Vec::new(),
        };
        for (i, t) in self.threads.drain(..).enumerate() {
            let (shard, journal) = t.join().expect("a shard thread panicked");
            stopped.shards.push(shard);
            let (records, closed) = journal.finish();
            stopped.records.push(records);
            if let Err(why) = closed {
                stopped.log_errors.push(format!("shard {i}: {why}"));
            }
        }
        stopped
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
        }
    }
}
