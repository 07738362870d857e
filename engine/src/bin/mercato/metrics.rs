//! `mercato serve --metrics-listen ADDR`: the engine's figures
//! (`Handle::metrics`) in Prometheus' text format at `GET /metrics`, over
//! plain HTTP, from a small thread of its own.
//!
//! The thread accepts; each connection gets a short-lived thread that
//! answers one request and closes it (a scraper asks every few seconds,
//! so there is nothing to keep open). At most `HTTP_CONNS_MAX` are served
//! at once, each for at most `HTTP_TIMEOUT_MS`: clients that connect and
//! stall cannot keep a scrape out for long, and more of them are told 503
//! at once. Each scrape reads the shards' own counters, so the shards do
//! no work for it.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mercato_engine::metrics::{
    FAILURE_CODES, HistogramCounts, LATENCY_BOUNDS_US, Metrics, REJECT_REASONS, REQUEST_KINDS,
};
use mercato_engine::runtime::Handle;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Bytes of an HTTP request read at most; a scrape's is a few hundred.
const HTTP_REQUEST_BYTES_MAX: usize = 8 << 10;
/// How long one connection may take to send its request or read the
/// answer.
const HTTP_TIMEOUT_MS: u64 = 5_000;
/// Connections served at once; past it a new one is answered 503.
const HTTP_CONNS_MAX: usize = 8;
/// Connections waiting for their 503; past it one is closed unanswered.
const HTTP_REFUSALS_QUEUED_MAX: usize = 64;
/// How long a refused connection's request is read for, so the 503 is
/// not lost to a reset by closing on unread bytes.
const HTTP_REFUSAL_READ_MS: u64 = 100;

/// Binds `addr` and serves scrapes from a thread named `mercato-metrics`
/// until the process ends. Returns the bound address.
pub fn start(addr: SocketAddr, handle: Handle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let refusals = refuser()?;
    std::thread::Builder::new()
        .name("mercato-metrics".into())
        .spawn(move || {
            let serving = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                let s = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics port could not accept");
                        continue;
                    }
                };
                if serving.fetch_add(1, Ordering::AcqRel) >= HTTP_CONNS_MAX {
                    serving.fetch_sub(1, Ordering::AcqRel);
                    // Closed unanswered when even the refusals queue up.
                    let _ = refusals.try_send(s);
                    continue;
                }
                let (handle, ours) = (handle.clone(), serving.clone());
                let spawned = std::thread::Builder::new()
                    .name("mercato-metrics-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(s, &handle) {
                            tracing::debug!(error = %e, "metrics connection ended early");
                        }
                        ours.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "no thread for a metrics connection");
                    serving.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// A thread that answers 503 to the connections past `HTTP_CONNS_MAX`,
/// one after another, so the accepting thread never waits on them.
fn refuser() -> std::io::Result<std::sync::mpsc::SyncSender<TcpStream>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<TcpStream>(HTTP_REFUSALS_QUEUED_MAX);
    std::thread::Builder::new()
        .name("mercato-metrics-busy".into())
        .spawn(move || {
            for mut s in rx {
                let wait = Some(Duration::from_millis(HTTP_REFUSAL_READ_MS));
                let _ = s.set_read_timeout(wait);
                let _ = s.set_write_timeout(wait);
                // Whatever came, or not, within the wait.
                let _ = read_head(&mut s);
                let _ = respond(&mut s, "503 Service Unavailable", "text/plain", "busy\n");
            }
        })?;
    Ok(tx)
}

/// An HTTP request's head, as far as it came.
enum Head {
    /// Up to and with the blank line.
    Whole(Vec<u8>),
    /// `HTTP_REQUEST_BYTES_MAX` came without the blank line.
    TooLarge,
    /// The client closed first.
    Closed,
}

fn read_head(s: &mut TcpStream) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= HTTP_REQUEST_BYTES_MAX {
            return Ok(Head::TooLarge);
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Head::Whole(head))
}

fn serve(mut s: TcpStream, handle: &Handle) -> std::io::Result<()> {
    let timeout = Some(Duration::from_millis(HTTP_TIMEOUT_MS));
    s.set_read_timeout(timeout)?;
    s.set_write_timeout(timeout)?;
    let req = match read_head(&mut s)? {
        Head::Whole(req) => req,
        Head::TooLarge => {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
        Head::Closed => return Ok(()),
    };
    let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let body = render(&handle.metrics());
            let ct = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            respond(&mut s, "200 OK", ct, &body)
        }
        (Some(b"GET"), _) => respond(&mut s, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// The figures in Prometheus' text format.
pub fn render(m: &Metrics) -> String {
    let mut registry = Registry::with_prefix("mercato");
    registry.register_collector(Box::new(Figures(m.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

#[derive(Debug)]
struct Figures(Metrics);

type Labels = Vec<(Cow<'static, str>, Cow<'static, str>)>;

fn labels(pairs: &[(&'static str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (Cow::Borrowed(*k), Cow::Owned(v.clone())))
        .collect()
}

fn shard(i: usize) -> Labels {
    labels(&[("shard", i.to_string())])
}

/// `PlaceOrder` as `place_order`, the way Prometheus labels are written.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// One family of samples, written as one descriptor and its samples.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, ty)?;
    for (l, v) in samples {
        let fam = metric.encode_family(l)?;
        match ty {
            MetricType::Counter => ConstCounter::new(*v).encode(fam)?,
            _ => ConstGauge::new(*v).encode(fam)?,
        }
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, &HistogramCounts)],
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (l, h) in samples {
        let bounds = LATENCY_BOUNDS_US.iter().map(|&us| us as f64 / 1e6);
        let buckets: Vec<(f64, u64)> = bounds
            .chain([f64::INFINITY])
            .zip(h.buckets.iter().copied())
            .collect();
        let mut fam = metric.encode_family(l)?;
        fam.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_us as f64 / 1e6,
            h.count(),
            &buckets,
            None,
        )?;
    }
    Ok(())
}

impl Collector for Figures {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter as C, Gauge as G};
        let m = &self.0;
        let per_shard = |f: &dyn Fn(&mercato_engine::metrics::ShardFigures) -> u64| {
            (m.shards.iter().enumerate())
                .map(|(i, s)| (shard(i), f(s) as f64))
                .collect::<Vec<_>>()
        };
        let e = &mut enc;

        family(
            e,
            "build_info",
            "The server's version.",
            G,
            &[(
                labels(&[("version", env!("CARGO_PKG_VERSION").into())]),
                1.0,
            )],
        )?;
        family(
            e,
            "uptime_seconds",
            "Since the engine opened.",
            G,
            &[(Labels::new(), m.uptime_ms as f64 / 1e3)],
        )?;
        family(
            e,
            "resident_memory_bytes",
            "The process's resident memory.",
            G,
            &[(Labels::new(), m.rss_bytes as f64)],
        )?;

        // Requests and answers.
        let mut requests = Vec::new();
        let mut rejections = Vec::new();
        let mut failures = Vec::new();
        for (i, s) in m.shards.iter().enumerate() {
            let by = |names: &[&str], counts: &[u64], key: &'static str, out: &mut Vec<_>| {
                for (name, &n) in names.iter().zip(counts) {
                    // Kinds never seen are left out: a scrape of a quiet
                    // server stays short, and `rate()` treats a series'
                    // first sample as its start.
                    if n > 0 {
                        out.push((
                            labels(&[("shard", i.to_string()), (key, snake(name))]),
                            n as f64,
                        ));
                    }
                }
            };
            by(REQUEST_KINDS, &s.requests, "kind", &mut requests);
            by(REJECT_REASONS, &s.rejected, "reason", &mut rejections);
            by(FAILURE_CODES, &s.failed, "code", &mut failures);
        }
        family(
            e,
            "requests",
            "Requests read from clients, by shard and kind.",
            C,
            &requests,
        )?;
        family(
            e,
            "answers_done",
            "Requests that ran and succeeded.",
            C,
            &per_shard(&|s| s.done),
        )?;
        family(
            e,
            "answers_rejected",
            "Business rejections, by reason.",
            C,
            &rejections,
        )?;
        family(
            e,
            "answers_failed",
            "Requests that did not run (busy, shutdown, unavailable), by code.",
            C,
            &failures,
        )?;
        let busy_at = FAILURE_CODES.iter().position(|&c| c == "Busy").unwrap_or(0);
        family(
            e,
            "busy_answers",
            "Requests answered Busy: a shard's mailbox was full.",
            C,
            &per_shard(&|s| s.failed.get(busy_at).copied().unwrap_or(0)),
        )?;
        let latency: Vec<_> = (m.shards.iter().enumerate())
            .map(|(i, s)| (shard(i), &s.reply_latency))
            .collect();
        histogram(
            e,
            "reply_latency_seconds",
            "From reading a client's batch to handing its answers to the connection, once per answer.",
            &latency,
        )?;

        // Queues.
        family(
            e,
            "mailbox_depth",
            "Requests waiting in the shard's inbound queue.",
            G,
            &per_shard(&|s| s.mailbox_depth),
        )?;
        family(
            e,
            "mailbox_capacity",
            "The inbound queue's size; past it callers get Busy.",
            G,
            &per_shard(&|s| s.mailbox_capacity),
        )?;
        family(
            e,
            "outbox_depth",
            "Message batches waiting for a full ring to another shard.",
            G,
            &per_shard(&|s| s.outbox_depth),
        )?;
        family(
            e,
            "held_reply_groups",
            "Groups of replies waiting for the log.",
            G,
            &per_shard(&|s| s.held_replies),
        )?;
        family(
            e,
            "batches_in_flight",
            "Client batches read and not yet answered.",
            G,
            &per_shard(&|s| s.net_batches),
        )?;
        family(
            e,
            "slow_turns",
            "Shard loop turns over --slow-turn-ms.",
            C,
            &per_shard(&|s| s.slow_turns),
        )?;

        // Tables.
        let mut rows = Vec::new();
        for (i, s) in m.shards.iter().enumerate() {
            for (table, n) in [
                ("skus", s.skus),
                ("accounts", s.accounts),
                ("orders", s.orders),
            ] {
                rows.push((
                    labels(&[("shard", i.to_string()), ("table", table.into())]),
                    n as f64,
                ));
            }
        }
        family(e, "table_rows", "Rows per shard and table.", G, &rows)?;
        family(
            e,
            "table_bytes",
            "The main tables' entries at their in-memory size.",
            G,
            &per_shard(&|s| s.table_bytes),
        )?;

        // Connections.
        family(
            e,
            "connections_open",
            "Client connections open.",
            G,
            &per_shard(&|s| s.conns_open),
        )?;
        family(
            e,
            "connections_opened",
            "Client connections accepted.",
            C,
            &per_shard(&|s| s.conns_opened),
        )?;
        family(
            e,
            "connections_refused",
            "Connections refused for --conns-max.",
            C,
            &per_shard(&|s| s.conns_refused),
        )?;
        family(
            e,
            "received_bytes",
            "Bytes read from clients.",
            C,
            &per_shard(&|s| s.bytes_in),
        )?;
        family(
            e,
            "sent_bytes",
            "Bytes written to clients.",
            C,
            &per_shard(&|s| s.bytes_out),
        )?;

        // The log.
        if m.durable {
            family(
                e,
                "committed_lsn",
                "Records up to here are as durable as an answer needs.",
                G,
                &per_shard(&|s| s.committed_lsn),
            )?;
            let logs: Vec<_> = (m.shards.iter().enumerate())
                .filter_map(|(i, s)| s.log.as_ref().map(|l| (i, l)))
                .collect();
            let each = |f: &dyn Fn(&mercato_engine::metrics::LogFigures) -> u64| {
                logs.iter()
                    .map(|(i, l)| (shard(*i), f(l) as f64))
                    .collect::<Vec<_>>()
            };
            family(
                e,
                "log_written_lsn",
                "Records up to here reached the log's files.",
                G,
                &each(&|l| l.written_lsn),
            )?;
            family(
                e,
                "log_synced_lsn",
                "Records up to here were synced to disk.",
                G,
                &each(&|l| l.synced_lsn),
            )?;
            family(
                e,
                "log_syncs",
                "fdatasync calls on the log.",
                C,
                &each(&|l| l.syncs),
            )?;
            family(
                e,
                "log_records_synced",
                "Records made durable by syncs; divide by log_syncs for records per sync.",
                C,
                &each(&|l| l.records_synced),
            )?;
            family(
                e,
                "log_written_bytes",
                "Bytes written to the log.",
                C,
                &each(&|l| l.bytes_written),
            )?;
            family(
                e,
                "log_failed",
                "1 when the shard's log failed and it answers Unavailable.",
                G,
                &each(&|l| u64::from(l.failed)),
            )?;
            let sync: Vec<_> = logs
                .iter()
                .map(|(i, l)| (shard(*i), &l.sync_latency))
                .collect();
            histogram(
                e,
                "log_sync_latency_seconds",
                "How long each fdatasync took.",
                &sync,
            )?;

            let cps: Vec<_> = m.checkpoints.iter().enumerate().collect();
            let ages: Vec<_> = (cps.iter())
                .filter_map(|(i, c)| c.age_ms.map(|a| (shard(*i), a as f64 / 1e3)))
                .collect();
            family(
                e,
                "checkpoint_age_seconds",
                "Since the shard's last checkpoint was written (absent before the first).",
                G,
                &ages,
            )?;
            let cp = |f: &dyn Fn(&mercato_engine::metrics::CheckpointFigures) -> f64| {
                cps.iter()
                    .map(|(i, c)| (shard(*i), f(c)))
                    .collect::<Vec<_>>()
            };
            family(
                e,
                "checkpoint_duration_seconds",
                "How long the last checkpoint took to copy and write.",
                G,
                &cp(&|c| c.duration_ms as f64 / 1e3),
            )?;
            family(
                e,
                "checkpoint_lsn",
                "The LSN the last checkpoint covers.",
                G,
                &cp(&|c| c.lsn as f64),
            )?;
            family(
                e,
                "checkpoints",
                "Checkpoints written.",
                C,
                &cp(&|c| c.written as f64),
            )?;
            family(
                e,
                "checkpoint_failures",
                "Checkpoints that failed (the log keeps everything meanwhile).",
                C,
                &cp(&|c| c.failures as f64),
            )?;
            family(
                e,
                "snapshot_failures",
                "Background snapshot failures, all shards.",
                C,
                &[(Labels::new(), m.snapshot_failures as f64)],
            )?;

            family(
                e,
                "feeds_open",
                "Change feeds being followed.",
                G,
                &[(Labels::new(), m.feeds_open as f64)],
            )?;
            let mut lag = Vec::new();
            for (name, per_shard) in &m.feed_lag {
                for (i, &n) in per_shard.iter().enumerate() {
                    lag.push((
                        labels(&[("subscription", name.clone()), ("shard", i.to_string())]),
                        n as f64,
                    ));
                }
            }
            family(
                e,
                "feed_lag_records",
                "Committed records a durable subscription has not acknowledged.",
                G,
                &lag,
            )?;
        }

        // Caches.
        let cache = |f: &dyn Fn(&mercato_engine::metrics::CacheFigures) -> u64| {
            (m.caches.iter())
                .map(|c| (labels(&[("cache", c.name.into())]), f(c) as f64))
                .collect::<Vec<_>>()
        };
        family(
            e,
            "cache_hits",
            "Cache lookups that found their entry.",
            C,
            &cache(&|c| c.hits),
        )?;
        family(
            e,
            "cache_misses",
            "Cache lookups that did not.",
            C,
            &cache(&|c| c.misses),
        )?;
        family(
            e,
            "cache_evictions",
            "Entries the policy pushed out for room.",
            C,
            &cache(&|c| c.evictions),
        )?;
        family(
            e,
            "cache_entries",
            "Entries held.",
            G,
            &cache(&|c| c.entries),
        )?;
        family(
            e,
            "cache_weight",
            "What the entries weigh (bytes for the keyspace, entries for views).",
            G,
            &cache(&|c| c.weight),
        )?;
        family(
            e,
            "cache_capacity",
            "The most the entries may weigh.",
            G,
            &cache(&|c| c.capacity),
        )?;
        family(
            e,
            "lock_notices_dropped",
            "Lock notices dropped for a full queue.",
            C,
            &[(Labels::new(), m.notices_dropped as f64)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_snake_case_labels() {
        assert_eq!(snake("PlaceOrder"), "place_order");
        assert_eq!(snake("Info"), "info");
    }

    #[test]
    fn a_histogram_is_cumulative_and_ends_at_inf() {
        let mut m = Metrics::default();
        let mut s = mercato_engine::metrics::ShardFigures::default();
        let mut buckets = vec![0; LATENCY_BOUNDS_US.len() + 1];
        buckets[0] = 2;
        buckets[3] = 1;
        s.reply_latency = HistogramCounts {
            buckets,
            sum_us: 120,
        };
        m.shards.push(s);
        let text = render(&m);
        assert!(
            text.contains("mercato_reply_latency_seconds_bucket{shard=\"0\",le=\"1e-05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mercato_reply_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("mercato_reply_latency_seconds_count{shard=\"0\"} 3\n"),
            "{text}"
        );
    }
}
