//! What the engine counts for its operator, and the figures a scrape reads.
//!
//! Each shard keeps its own [`ShardMetrics`], written only by its own
//! thread (its network side and its loop) with plain loads and stores
//! ([`Counter`]): counting costs a shard no locked instruction and no cache
//! line another core writes. A scrape ([`crate::Handle::metrics`]) reads
//! every shard's counters and the gauges the engine already keeps (queue
//! depths, LSNs, table sizes, caches) into a [`Metrics`], plain data that
//! an exporter turns into whatever format it serves (`mercato serve
//! --metrics-listen` serves Prometheus' text format). Nothing here does I/O.

mod kinds;

pub use kinds::{FAILURE_CODES, REJECT_REASONS, REQUEST_KINDS};
pub use mercato_wal::stats::{Counter, Histogram, HistogramCounts, LATENCY_BOUNDS_US};

use mercato_protocol as wire;

/// Subscriptions a scrape reports the lag of, so a scrape stays small
/// however many there are.
pub const SUBSCRIPTIONS_REPORTED_MAX: usize = 100;

/// One shard's counters; see the module's note for who writes them.
#[derive(Debug)]
pub struct ShardMetrics {
    /// Requests read from clients, by [`REQUEST_KINDS`].
    requests: [Counter; REQUEST_KINDS.len()],
    /// Answers sent: done, rejected by [`REJECT_REASONS`], failed by
    /// [`FAILURE_CODES`].
    done: Counter,
    rejected: [Counter; REJECT_REASONS.len()],
    failed: [Counter; FAILURE_CODES.len()],
    /// From reading a batch to handing its answers to the connection, once
    /// per answer.
    reply_latency: Histogram,
    conns_opened: Counter,
    /// Refused for `conns_max`.
    conns_refused: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    /// Loop turns over the slow-turn threshold.
    slow_turns: Counter,
    /// Messages waiting in this shard's outbox for a full ring, and
    /// replies held for the log, as the loop last published them.
    outbox_depth: Counter,
    held_replies: Counter,
    table_bytes: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: std::array::from_fn(|_| Counter::default()),
            done: Counter::default(),
            rejected: std::array::from_fn(|_| Counter::default()),
            failed: std::array::from_fn(|_| Counter::default()),
            reply_latency: Histogram::default(),
            conns_opened: Counter::default(),
            conns_refused: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            slow_turns: Counter::default(),
            outbox_depth: Counter::default(),
            held_replies: Counter::default(),
            table_bytes: Counter::default(),
        }
    }
}

/// The shard's own thread only, like every method that changes a count.
impl ShardMetrics {
    #[inline]
    pub(crate) fn request(&self, r: &wire::Request) {
        self.requests[kinds::request_index(r)].add(1);
    }

    #[inline]
    pub(crate) fn answer(&self, a: &wire::Answer) {
        match a {
            wire::Answer::Done(_) => self.done.add(1),
            wire::Answer::Rejected(r) => self.rejected[kinds::reject_index(r)].add(1),
            wire::Answer::Failed { code } => self.failed[kinds::failure_index(*code)].add(1),
        }
    }

    #[inline]
    pub(crate) fn replied(&self, us: u64, answers: u64) {
        self.reply_latency.observe_n(us, answers);
    }

    pub(crate) fn conn_opened(&self) {
        self.conns_opened.add(1);
    }

    pub(crate) fn conn_refused(&self) {
        self.conns_refused.add(1);
    }

    #[inline]
    pub(crate) fn read(&self, bytes: usize) {
        self.bytes_in.add(bytes as u64);
    }

    #[inline]
    pub(crate) fn wrote(&self, bytes: usize) {
        self.bytes_out.add(bytes as u64);
    }

    pub(crate) fn slow_turn(&self) {
        self.slow_turns.add(1);
    }

    #[inline]
    pub(crate) fn depths(&self, outbox: usize, held_replies: usize, table_bytes: u64) {
        self.outbox_depth.set(outbox as u64);
        self.held_replies.set(held_replies as u64);
        self.table_bytes.set(table_bytes);
    }
}

/// Everything a scrape reports, read at one moment (each figure on its
/// own; see [`Counter`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub uptime_ms: u64,
    /// The process's resident memory (0 where unknown).
    pub rss_bytes: u64,
    /// `true` when the engine keeps a log.
    pub durable: bool,
    pub shards: Vec<ShardFigures>,
    pub caches: Vec<CacheFigures>,
    pub snapshot_failures: u64,
    /// Per shard, from the last checkpoint written this run.
    pub checkpoints: Vec<CheckpointFigures>,
    /// Change feeds open: connections following one, and embedded `Feed`s.
    pub feeds_open: u64,
    /// Durable subscriptions (at most [`SUBSCRIPTIONS_REPORTED_MAX`]) and,
    /// per shard, how many committed records each has not acknowledged.
    pub feed_lag: Vec<(String, Vec<u64>)>,
    /// Lock notices dropped for a full queue.
    pub notices_dropped: u64,
}

/// One shard's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardFigures {
    /// By [`REQUEST_KINDS`].
    pub requests: Vec<u64>,
    pub done: u64,
    /// By [`REJECT_REASONS`].
    pub rejected: Vec<u64>,
    /// By [`FAILURE_CODES`].
    pub failed: Vec<u64>,
    pub reply_latency: HistogramCounts,
    pub conns_open: u64,
    pub conns_opened: u64,
    pub conns_refused: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub slow_turns: u64,
    /// Requests waiting in the shard's inbound queue, and its capacity.
    pub mailbox_depth: u64,
    pub mailbox_capacity: u64,
    pub outbox_depth: u64,
    pub held_replies: u64,
    /// Client batches in flight on this shard's connections.
    pub net_batches: u64,
    pub skus: u64,
    pub accounts: u64,
    pub orders: u64,
    /// What the tables take, roughly: their entries at their in-memory size.
    pub table_bytes: u64,
    pub committed_lsn: u64,
    /// The log's, when there is one.
    pub log: Option<LogFigures>,
}

/// One shard's log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogFigures {
    pub written_lsn: u64,
    pub synced_lsn: u64,
    pub syncs: u64,
    pub records_synced: u64,
    pub bytes_written: u64,
    pub sync_latency: HistogramCounts,
    pub failed: bool,
}

/// One shard's checkpoints this run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointFigures {
    /// Since the last one was written; `None` before any.
    pub age_ms: Option<u64>,
    pub duration_ms: u64,
    pub lsn: u64,
    pub written: u64,
    pub failures: u64,
}

/// One cache's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheFigures {
    /// `keyspace`, `sku_views` or `account_views`.
    pub name: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub entries: u64,
    pub weight: u64,
    pub capacity: u64,
}

impl ShardMetrics {
    pub(crate) fn figures(&self) -> ShardFigures {
        ShardFigures {
            requests: self.requests.iter().map(Counter::get).collect(),
            done: self.done.get(),
            rejected: self.rejected.iter().map(Counter::get).collect(),
            failed: self.failed.iter().map(Counter::get).collect(),
            reply_latency: self.reply_latency.counts(),
            conns_opened: self.conns_opened.get(),
            conns_refused: self.conns_refused.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            slow_turns: self.slow_turns.get(),
            outbox_depth: self.outbox_depth.get(),
            held_replies: self.held_replies.get(),
            table_bytes: self.table_bytes.get(),
            ..ShardFigures::default()
        }
    }
}
