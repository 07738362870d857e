//! `mercato serve`: the engine behind the binary protocol, until SIGINT or
//! SIGTERM. Settings come from flags, or from a TOML file (`--config`) that
//! flags override.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mercato_engine::cache::PolicyKind;
use mercato_engine::limits::{
    ANSWER_BYTES_PER_CONN_MAX, CACHE_BUDGET_BYTES_DEFAULT, CONNS_PER_SHARD_MAX,
    HANDSHAKE_TIMEOUT_MS_DEFAULT, IDLE_TIMEOUT_MS_DEFAULT, IN_FLIGHT_PER_CONN_MAX,
    SNAPSHOT_NICE_DEFAULT, SNAPSHOT_SEGMENTS_DEFAULT, VIEW_CACHE_ENTRIES_DEFAULT,
};
use mercato_engine::shard::Capacity;
use mercato_engine::{Config, Durability, Engine, ServeConfig};

/// Every setting of `mercato serve`, as a flag and as a key of the TOML file.
#[derive(clap::Args, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A TOML file with any of the settings below (as `listen = "..."`,
    /// `data_dir = "..."`, ...); flags given too win.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The main port; shard i listens on the next port + i. Port 0 lets the
    /// system choose every port. Default 127.0.0.1:7070.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Shards; 0 means one per core (or the data directory's count).
    #[arg(long)]
    shards: Option<u16>,
    /// Keep a write-ahead log here; without it the server is in memory only.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// always (default), interval=MS (milliseconds) or never (with a data directory).
    #[arg(long)]
    durability: Option<String>,
    /// Under `always`, the least time in microseconds from the start of one
    /// sync of a shard's log to the next while the shard stays busy, so that
    /// each carries more records; a shard with nothing to do has its log
    /// synced at once. 0 syncs as soon as records arrive. Default 2000.
    #[arg(long)]
    group_commit_wait_us: Option<u64>,
    /// One token with the `admin` role, which clients must send in their
    /// Hello. Prefer `--tokens-file`: a token on the command line shows in
    /// `ps`.
    #[arg(long)]
    auth_token: Option<String>,
    /// Tokens with roles, one `ROLE TOKEN` per line (admin, trader or
    /// reader; tokens of at least 16 bytes, or `sha256:HEX`, the token's
    /// SHA-256 in hex; `#` starts a comment). The environment variable
    /// `MERCATO_TOKENS` may hold the same lines. Without tokens, every
    /// client acts as admin.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Client connections per shard; past it a new one is told
    /// TooManyConnections and closed. Default 4096.
    #[arg(long)]
    conns_max: Option<usize>,
    /// Requests one connection may have unanswered. Default 16384.
    #[arg(long)]
    in_flight_max: Option<usize>,
    /// Answer bytes one connection may have reserved for running batches
    /// or waiting to be read, and the largest answer frame: a batch that
    /// could answer more is refused before it runs. Default 16 MiB
    /// (16777216); at least 512 KiB.
    #[arg(long, alias = "out-bytes-max")]
    #[serde(alias = "out_bytes_max")]
    answer_bytes_max: Option<usize>,
    /// A new connection that has not sent its Hello within this many
    /// milliseconds is closed. Default 10000.
    #[arg(long)]
    handshake_timeout_ms: Option<u64>,
    /// A connection with nothing running and nothing sent either way for
    /// this many milliseconds is closed; 0 never. Default 300000.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Memory budget of the cache keyspace, in bytes (default 64 MiB).
    #[arg(long)]
    cache_budget_bytes: Option<u64>,
    /// Replacement policy of the cache keyspace: lru (default) or arc.
    #[arg(long)]
    cache_policy: Option<String>,
    /// SKU and account views cached for reads from any shard, each
    /// (default 65536); 0 sends every read to its owner.
    #[arg(long)]
    view_cache_entries: Option<u64>,
    /// SKUs (over all shards) to size the tables for at start-up, with
    /// their memory touched, so that serving never stops to grow a table;
    /// tables still grow past it. Default 0.
    #[arg(long)]
    skus_capacity: Option<usize>,
    /// Accounts to size the tables for at start-up, as for SKUs.
    #[arg(long)]
    accounts_capacity: Option<usize>,
    /// Orders to size the tables for at start-up, as for SKUs.
    #[arg(long)]
    orders_capacity: Option<usize>,
    /// (SKU, account) pairs holding units of SKUs with a per-user limit,
    /// reserved on every shard, since a limited SKU's buyers share its shard.
    #[arg(long)]
    purchases_capacity: Option<usize>,
    /// Failed orders remembered for retries to size the tables for at
    /// start-up, as for SKUs; a shard never remembers more than two
    /// generations of 917,504, so it reserves no more.
    #[arg(long)]
    rejections_capacity: Option<usize>,
    /// MiB of heap faulted in at start-up and kept from then on, so that
    /// memory the server grows into while serving was touched before (see
    /// README). Default 0.
    #[arg(long)]
    heap_prefault_mb: Option<usize>,
    /// Snapshot a shard's log once this many of its segments are closed;
    /// 0 never snapshots, and the log then grows without bound. Default 4.
    #[arg(long)]
    snapshot_segments: Option<usize>,
    /// Bytes per log segment, at least 131072 (128 KiB). Default 64 MiB
    /// (67108864).
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// The snapshot thread's niceness on Linux, 0 (the shards') to 19.
    /// Default 10.
    #[arg(long)]
    snapshot_nice: Option<u8>,
    /// Keep each shard's state in the snapshot thread between snapshots:
    /// each then replays only the log since the last, at the cost of a
    /// second copy of the state in memory. Default off; the flag alone
    /// turns it on.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    snapshot_keep_state: Option<bool>,
    /// Run the snapshot thread in Linux's idle scheduling class, so that a
    /// shard that wakes always takes its core at once. Default off; the
    /// flag alone turns it on.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    snapshot_sched_idle: Option<bool>,
    /// Bytes of log each shard keeps past its snapshots for the change
    /// feed's durable subscriptions; past it they are marked lost. Default
    /// 1 GiB.
    #[arg(long)]
    feed_retention_bytes_max: Option<u64>,
    /// Serve Prometheus metrics over plain HTTP at http://ADDR/metrics,
    /// e.g. 127.0.0.1:9464. Off by default.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// error, warn, info (default), debug, trace or off; the environment
    /// variable `MERCATO_LOG` sets it when this flag is not given.
    #[arg(long)]
    log_level: Option<String>,
    /// text (default) or json: one JSON object per line, for a log shipper.
    #[arg(long)]
    log_format: Option<String>,
    /// Serve TLS only, on every port, with this PEM certificate chain (and
    /// `--tls-key`). Off by default: plain TCP.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask every client for a certificate signed by one in this PEM file,
    /// and refuse those without. Needs `--tls-cert`.
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// A shard loop turn that takes this many milliseconds is counted
    /// (`mercato_slow_turns_total`) and logged, once a second at most per
    /// shard; 0 turns it off. Default 50.
    #[arg(long)]
    slow_turn_ms: Option<u64>,
}

impl Args {
    /// Flags over the file's values.
    fn over(self, file: Args) -> Args {
        Args {
            config: None,
            listen: self.listen.or(file.listen),
            shards: self.shards.or(file.shards),
            data_dir: self.data_dir.or(file.data_dir),
            durability: self.durability.or(file.durability),
            group_commit_wait_us: self.group_commit_wait_us.or(file.group_commit_wait_us),
            auth_token: self.auth_token.or(file.auth_token),
            tokens_file: self.tokens_file.or(file.tokens_file),
            conns_max: self.conns_max.or(file.conns_max),
            in_flight_max: self.in_flight_max.or(file.in_flight_max),
            answer_bytes_max: self.answer_bytes_max.or(file.answer_bytes_max),
            handshake_timeout_ms: self.handshake_timeout_ms.or(file.handshake_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(file.idle_timeout_ms),
            cache_budget_bytes: self.cache_budget_bytes.or(file.cache_budget_bytes),
            cache_policy: self.cache_policy.or(file.cache_policy),
            view_cache_entries: self.view_cache_entries.or(file.view_cache_entries),
            skus_capacity: self.skus_capacity.or(file.skus_capacity),
            accounts_capacity: self.accounts_capacity.or(file.accounts_capacity),
            orders_capacity: self.orders_capacity.or(file.orders_capacity),
            purchases_capacity: self.purchases_capacity.or(file.purchases_capacity),
            rejections_capacity: self.rejections_capacity.or(file.rejections_capacity),
            heap_prefault_mb: self.heap_prefault_mb.or(file.heap_prefault_mb),
            snapshot_segments: self.snapshot_segments.or(file.snapshot_segments),
            segment_bytes: self.segment_bytes.or(file.segment_bytes),
            snapshot_nice: self.snapshot_nice.or(file.snapshot_nice),
            snapshot_keep_state: self.snapshot_keep_state.or(file.snapshot_keep_state),
            snapshot_sched_idle: self.snapshot_sched_idle.or(file.snapshot_sched_idle),
            feed_retention_bytes_max: (self.feed_retention_bytes_max)
                .or(file.feed_retention_bytes_max),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            log_level: self.log_level.or(file.log_level),
            log_format: self.log_format.or(file.log_format),
            slow_turn_ms: self.slow_turn_ms.or(file.slow_turn_ms),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
        }
    }
}

/// How long a stopping server waits for requests in flight.
const DRAIN_MS_MAX: u64 = 10_000;

/// What `mercato serve` does around the engine.
struct Outside {
    heap_prefault_mb: usize,
    metrics_listen: Option<SocketAddr>,
    log_level: tracing_subscriber::filter::LevelFilter,
    log_json: bool,
    /// Read again on SIGHUP.
    access: AccessFiles,
}

/// Where the tokens and the TLS certificate come from: read at start, and
/// again on SIGHUP (`Engine::set_access`).
struct AccessFiles {
    tokens_file: Option<PathBuf>,
    auth_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

impl AccessFiles {
    /// `--tokens-file` and `MERCATO_TOKENS` (`--auth-token` aside).
    fn tokens(&self) -> Result<mercato_engine::access::Tokens, String> {
        let mut tokens = mercato_engine::access::Tokens::default();
        if let Some(path) = &self.tokens_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let t = mercato_engine::access::Tokens::parse(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tokens.add(t);
        }
        if let Ok(text) = std::env::var("MERCATO_TOKENS") {
            let t = mercato_engine::access::Tokens::parse(&text)
                .map_err(|e| format!("MERCATO_TOKENS: {e}"))?;
            tokens.add(t);
        }
        Ok(tokens)
    }

    fn tls(&self) -> Result<Option<mercato_engine::server::tls::TlsConfig>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => mercato_engine::server::tls::TlsConfig::from_files(
                cert,
                key,
                self.tls_client_ca.as_deref(),
            )
            .map(Some)
            .map_err(|e| e.to_string()),
            (None, None) if self.tls_client_ca.is_some() => {
                Err("--tls-client-ca needs --tls-cert and --tls-key".into())
            }
            (None, None) => Ok(None),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }

    /// Everything again, `--auth-token` included, for a reload.
    fn reload(&self, engine: &Engine) -> Result<usize, String> {
        let mut tokens = self.tokens()?;
        if let Some(admin) = &self.auth_token {
            tokens.add(mercato_engine::access::Tokens::admin(admin));
        }
        let n = tokens.len();
        engine
            .set_access(tokens, self.tls()?)
            .map_err(|e| e.to_string())?;
        Ok(n)
    }
}

/// The engine's configuration, and what the binary does around it.
fn settings(a: Args) -> Result<(Config, Outside), String> {
    let a = match &a.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file: Args =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            a.over(file)
        }
        None => a,
    };
    let durability: Durability = a
        .durability
        .as_deref()
        .unwrap_or("always")
        .parse()
        .map_err(|e: mercato_wal::WalError| e.to_string())?;
    let cache_policy: PolicyKind = a.cache_policy.as_deref().unwrap_or("lru").parse()?;
    let heap_prefault_mb = a.heap_prefault_mb.unwrap_or(0);
    let level = match (&a.log_level, std::env::var("MERCATO_LOG")) {
        (Some(l), _) => l.clone(),
        (None, Ok(l)) if !l.is_empty() => l,
        _ => "info".into(),
    };
    let log_level = level.parse().map_err(|_| {
        format!("log level {level:?}: expected error, warn, info, debug, trace or off")
    })?;
    let log_json = match a.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => return Err(format!("log format {other:?}: expected text or json")),
    };
    let access = AccessFiles {
        tokens_file: a.tokens_file.clone(),
        auth_token: a.auth_token.clone(),
        tls_cert: a.tls_cert.clone(),
        tls_key: a.tls_key.clone(),
        tls_client_ca: a.tls_client_ca.clone(),
    };
    let tls = access.tls()?;
    let tokens = access.tokens()?;
    let outside = Outside {
        heap_prefault_mb,
        metrics_listen: a.metrics_listen,
        log_level,
        log_json,
        access,
    };
    let config = Config {
        data_dir: a.data_dir,
        durability,
        group_commit_wait_us: a
            .group_commit_wait_us
            .unwrap_or(mercato_wal::GROUP_COMMIT_WAIT_US_DEFAULT),
        cache_budget_bytes: a.cache_budget_bytes.unwrap_or(CACHE_BUDGET_BYTES_DEFAULT),
        cache_policy,
        view_cache_entries: a.view_cache_entries.unwrap_or(VIEW_CACHE_ENTRIES_DEFAULT),
        capacity: Capacity {
            skus: a.skus_capacity.unwrap_or(0),
            accounts: a.accounts_capacity.unwrap_or(0),
            orders: a.orders_capacity.unwrap_or(0),
            purchases: a.purchases_capacity.unwrap_or(0),
            rejections: a.rejections_capacity.unwrap_or(0),
        },
        snapshot_segments: a.snapshot_segments.unwrap_or(SNAPSHOT_SEGMENTS_DEFAULT),
        segment_bytes: a
            .segment_bytes
            .unwrap_or(mercato_wal::SEGMENT_BYTES_DEFAULT),
        snapshot_nice: a.snapshot_nice.unwrap_or(SNAPSHOT_NICE_DEFAULT),
        snapshot_keep_state: a.snapshot_keep_state.unwrap_or(false),
        snapshot_sched_idle: a.snapshot_sched_idle.unwrap_or(false),
        feed_retention_bytes_max: (a.feed_retention_bytes_max)
            .unwrap_or(mercato_engine::durable::retention::RETENTION_BYTES_DEFAULT),
        serve: Some(ServeConfig {
            listen: a.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070))),
            auth_token: a.auth_token,
            tokens,
            conns_max: a.conns_max.unwrap_or(CONNS_PER_SHARD_MAX),
            in_flight_max: a.in_flight_max.unwrap_or(IN_FLIGHT_PER_CONN_MAX),
            answer_bytes_max: a.answer_bytes_max.unwrap_or(ANSWER_BYTES_PER_CONN_MAX),
            handshake_timeout_ms: a
                .handshake_timeout_ms
                .unwrap_or(HANDSHAKE_TIMEOUT_MS_DEFAULT),
            idle_timeout_ms: a.idle_timeout_ms.unwrap_or(IDLE_TIMEOUT_MS_DEFAULT),
            tls,
            ..ServeConfig::default()
        }),
        slow_turn_ms: a
            .slow_turn_ms
            .unwrap_or(mercato_engine::limits::SLOW_TURN_MS_DEFAULT),
        ..Config::with_shards(a.shards.unwrap_or(0))
    };
    Ok((config, outside))
}

/// Logs go to stderr, as text or one JSON object per line.
fn start_logging(level: tracing_subscriber::filter::LevelFilter, json: bool) {
    let fmt = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if json {
        fmt.json().try_init()
    } else {
        fmt.try_init()
    };
}

/// One line per shard on what recovery found, and one for the whole.
fn log_recovery(report: &mercato_engine::durable::recovery::RecoveryReport, took: Duration) {
    if report.created {
        tracing::info!("new data directory");
        return;
    }
    for s in &report.shards {
        let torn_bytes = s.torn.as_ref().map_or(0, |t| t.bytes);
        tracing::info!(
            shard = s.shard,
            snapshot_lsn = s.snapshot_lsn,
            records_replayed = s.records,
            torn_tail_cut_bytes = torn_bytes,
            "shard recovered"
        );
        for why in &s.snapshots_skipped {
            tracing::warn!(shard = s.shard, why = %why, "a newer snapshot could not be loaded; recovered from an older one");
        }
    }
    tracing::info!(
        records_replayed = report.shards.iter().map(|s| s.records).sum::<u64>(),
        holds_settled = report.holds_settled,
        corrections = report.corrections,
        took_ms = took.as_millis() as u64,
        "recovery done"
    );
}

pub fn run(a: Args) -> i32 {
    let (config, outside) = match settings(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mercato serve: {e}");
            return 2;
        }
    };
    start_logging(outside.log_level, outside.log_json);
    // A reason to stop goes to the log; with logs off, to stderr as plain
    // text, so it is never lost (and a JSON log gets no plain line).
    let logs_off = outside.log_level == tracing_subscriber::filter::LevelFilter::OFF;
    let fatal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "{what}");
        if logs_off {
            eprintln!("mercato serve: {what}: {e}");
        }
        2
    };
    let sc = config.serve.as_ref().expect("serve settings");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %sc.listen,
        shards = config.shards,
        data_dir = config.data_dir.as_ref().map(|d| d.display().to_string()),
        durability = %config.durability,
        tokens = sc.tokens.len() + usize::from(sc.auth_token.is_some()),
        tls = sc.tls.is_some(),
        metrics_listen = outside.metrics_listen.map(|a| a.to_string()),
        "mercato serve starting"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let signals = [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGHUP, &reload),
    ];
    for (signal, flag) in signals {
        if let Err(e) = signal_hook::flag::register(signal, (*flag).clone()) {
            return fatal(&format!("cannot handle signal {signal}"), &e);
        }
    }
    let opening = std::time::Instant::now();
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => return fatal("cannot start", &e),
    };
    if let Some(report) = engine.recovery() {
        log_recovery(report, opening.elapsed());
    }
    if outside.heap_prefault_mb > 0 {
        mercato_engine::alloc::prefault_heap(outside.heap_prefault_mb << 20);
    }

    let (main, shards) = engine.addrs().expect("a serving engine has addresses");
    let ports: Vec<String> = shards.iter().map(|a| a.port().to_string()).collect();
    // One line a script can wait for and parse.
    let metrics = match outside
        .metrics_listen
        .map(|a| (a, crate::metrics::start(a, engine.handle())))
    {
        None => None,
        Some((_, Ok(bound))) => Some(bound),
        Some((addr, Err(e))) => return fatal(&format!("cannot serve metrics on {addr}"), &e),
    };
    println!("listening on {main}; shard ports {}", ports.join(","));
    // A second line, after the one scripts wait for.
    if let Some(bound) = metrics {
        println!("metrics on http://{bound}/metrics");
    }
    tracing::info!(addr = %main, shard_ports = %ports.join(","), metrics = metrics.map(|m| m.to_string()), "serving");
    // Each new snapshot failure goes to the log, with the shards still
    // failing and when each is tried again; the server serves on.
    let mut failures_seen = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            match outside.access.reload(&engine) {
                Ok(tokens) => tracing::info!(
                    tokens,
                    "reloaded tokens and TLS certificate for new connections"
                ),
                Err(why) => {
                    tracing::error!(why = %why, "reload refused; new connections still get the old tokens and certificate")
                }
            }
        }
        let failures = engine.snapshot_failures();
        if failures > failures_seen {
            failures_seen = failures;
            let why = engine.snapshot_error().unwrap_or_default();
            tracing::warn!(failures, why = %why, "snapshot failed; still serving");
        }
    }
    tracing::info!("stopping; finishing requests in flight");
    if !engine.drain_clients(Duration::from_millis(DRAIN_MS_MAX)) {
        tracing::warn!(
            drain_ms = DRAIN_MS_MAX,
            "some requests were still in flight"
        );
    }
    // Shutting down syncs every shard's log, whatever the policy; a log
    // that could not be synced may have lost what it held, so say so and
    // exit 1.
    let stopped = engine.shutdown();
    for why in &stopped.log_errors {
        tracing::error!(why = %why, "the log did not close cleanly");
    }
    tracing::info!(clean = stopped.log_errors.is_empty(), "stopped");
    i32::from(!stopped.log_errors.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(toml_text: &str) -> Config {
        let args: Args = toml::from_str(toml_text).unwrap();
        settings(args).unwrap().0
    }

    #[test]
    fn operations_settings_come_from_the_file_and_default_as_documented() {
        let args: Args = toml::from_str(
            "metrics_listen = \"127.0.0.1:9464\"\nlog_level = \"warn\"\n\
             log_format = \"json\"\nslow_turn_ms = 7\n",
        )
        .unwrap();
        let (config, outside) = settings(args).unwrap();
        assert_eq!(config.slow_turn_ms, 7);
        assert_eq!(
            outside.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(
            outside.log_level,
            tracing_subscriber::filter::LevelFilter::WARN
        );
        assert!(outside.log_json);
        let (config, outside) = settings(Args::default()).unwrap();
        assert_eq!(
            config.slow_turn_ms,
            mercato_engine::limits::SLOW_TURN_MS_DEFAULT
        );
        assert_eq!(outside.metrics_listen, None);
        assert!(!outside.log_json);
        assert!(config.serve.unwrap().tls.is_none());
        // Bad values are refused with what was expected.
        let bad = |text: &str| settings(toml::from_str(text).unwrap()).err().unwrap();
        assert!(bad("log_format = \"xml\"").contains("text or json"));
        assert!(bad("log_level = \"loud\"").contains("expected error, warn"));
        assert!(bad("tls_cert = \"c.pem\"").contains("go together"));
        assert!(bad("tls_client_ca = \"ca.pem\"").contains("needs --tls-cert"));
    }

    #[test]
    fn log_and_snapshot_settings_reach_the_engine_and_default_as_documented() {
        let set = config_of(
            "snapshot_segments = 0\nsnapshot_nice = 19\nsnapshot_keep_state = true\n\
             snapshot_sched_idle = true\ngroup_commit_wait_us = 300\n",
        );
        let of = |c: &Config| {
            (
                c.snapshot_segments,
                c.snapshot_nice,
                c.snapshot_keep_state,
                c.snapshot_sched_idle,
                c.group_commit_wait_us,
            )
        };
        assert_eq!(of(&set), (0, 19, true, true, 300));
        let unset = config_of("");
        assert_eq!(
            of(&unset),
            (
                SNAPSHOT_SEGMENTS_DEFAULT,
                SNAPSHOT_NICE_DEFAULT,
                false,
                false,
                mercato_wal::GROUP_COMMIT_WAIT_US_DEFAULT
            )
        );
    }

    #[test]
    fn the_keep_state_flag_alone_turns_it_on() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| {
            let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
            settings(cli.args).unwrap().0.snapshot_keep_state
        };
        assert!(parse(&["serve", "--snapshot-keep-state"]));
        assert!(!parse(&["serve", "--snapshot-keep-state", "false"]));
        assert!(!parse(&["serve"]));
    }
}
