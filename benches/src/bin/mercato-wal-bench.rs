//! `mercato-wal-bench`: the disk's own limits and the log's group commit, in
//! one run, so the ratio between them is measured on the same disk at the
//! same moment.
//!
//! 1. sequential bandwidth: 1 MiB writes for the given time, with an
//!    fdatasync after every 64 MiB, so the page cache cannot flatter it;
//! 2. fdatasync rate and latency: 4 KiB written and synced, over and over,
//!    by `--sync-threads` threads on one file (more than one shows whether
//!    syncs that overlap finish sooner than syncs that queue);
//! 3. the log: one thread appends 64-byte records as fast as it can with
//!    durability `always`, handing them to the flusher every 64 records;
//!    throughput counts only records the flusher reported synced.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mercato_wal::{Durability, Log, LogId, LogOptions, ReadOptions, read_log};

#[derive(Parser)]
#[command(name = "mercato-wal-bench", about = "Disk limits and log group commit")]
struct Args {
    /// A directory on the disk to measure; it is created and removed.
    #[arg(long, default_value = "target/wal-bench")]
    dir: PathBuf,
    /// Seconds for the sync-rate and log measurements each.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long)]
    json: bool,
    /// The log's policy; `never` shows what the appender alone can do.
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Threads writing and syncing the one file of the sync-rate step.
    #[arg(long, default_value_t = 1)]
    sync_threads: u64,
}

const RECORD_BYTES: usize = 64;
const SUBMIT_EVERY: u64 = 64;

fn bandwidth(dir: &std::path::Path, seconds: u64) -> f64 {
    let path = dir.join("bandwidth");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_data().unwrap();
        written += 64 << 20;
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    written as f64 / secs
}

/// What the sync step measured: syncs per second from all threads, and
/// the median and 99th percentile of one sync.
struct Syncs {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn sync_rate(dir: &std::path::Path, seconds: u64, threads: u64) -> Syncs {
    use std::os::unix::fs::FileExt;
    let path = dir.join("syncs");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    f.sync_all().unwrap();
    let started = Instant::now();
    let mut took: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || {
                    let page = [1u8; 4096];
                    let mut took = Vec::new();
                    // Each thread its own pages: 16,384 of them, interleaved.
                    let mut n = t;
                    while started.elapsed() < Duration::from_secs(seconds) {
                        f.write_all_at(&page, (n % 16_384) * 4096).unwrap();
                        let sync = Instant::now();
                        f.sync_data().unwrap();
                        took.push(sync.elapsed());
                        n += threads;
                    }
                    took
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    Syncs {
        per_sec: took.len() as f64 / secs,
        p50_us: at(0.5),
        p99_us: at(0.99),
    }
}

/// Records per second the log made durable, and the mean records per sync.
fn log_rate(dir: &std::path::Path, seconds: u64, durability: Durability) -> (f64, u64) {
    let log_dir = dir.join("log");
    let id = LogId {
        shard: 0,
        shards: 1,
    };
    let all = ReadOptions {
        from_lsn: 1,
        to_lsn: u64::MAX,
        repair: true,
    };
    let end = read_log(&log_dir, id, all, |_| Ok(()), |_| {}).unwrap();
    let opts = LogOptions {
        durability,
        ..LogOptions::default()
    };
    let mut log = Log::start(&log_dir, id, &end, opts, Arc::new(|| {})).unwrap();
    let body = [42u8; RECORD_BYTES];
    // Let the first spare segment finish zero-filling before timing.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut appended = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..SUBMIT_EVERY {
            log.append(1, &body).unwrap();
        }
        appended += SUBMIT_EVERY;
        log.submit();
        // Keep the backlog bounded, as a shard does.
        while log.backlog_bytes() > 64 << 20 {
            std::thread::yield_now();
        }
    }
    let synced = log.durable_lsn();
    let secs = started.elapsed().as_secs_f64();
    log.close().unwrap();
    let _ = appended;
    (synced as f64 / secs, 0)
}

fn main() {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).unwrap();
    let bw = bandwidth(&args.dir, args.seconds);
    let sync_threads = args.sync_threads.max(1);
    let sync = sync_rate(&args.dir, args.seconds, sync_threads);
    let syncs = sync.per_sec;
    let (records, _) = log_rate(&args.dir, args.seconds, args.durability);
    let payload = records * RECORD_BYTES as f64;
    let framed = records * (24 + RECORD_BYTES) as f64;
    std::fs::remove_dir_all(&args.dir).unwrap();
    if args.json {
        println!(
            "{{\"bandwidth_mib_per_sec\":{:.1},\"fdatasync_per_sec\":{syncs:.0},\"log_records_per_sec\":{records:.0},\
             \"log_payload_mib_per_sec\":{:.1},\"log_framed_mib_per_sec\":{:.1},\"payload_ratio\":{:.3},\"framed_ratio\":{:.3},\
             \"sync_threads\":{},\"fdatasync_p50_us\":{:.0},\"fdatasync_p99_us\":{:.0}}}",
            bw / 1048576.0,
            payload / 1048576.0,
            framed / 1048576.0,
            payload / bw,
            framed / bw,
            sync_threads,
            sync.p50_us,
            sync.p99_us
        );
    } else {
        println!(
            "disk: {:.1} MiB/s sequential, {syncs:.0} fdatasync/s from {} thread(s), one sync p50 {:.0} us, p99 {:.0} us",
            bw / 1048576.0,
            sync_threads,
            sync.p50_us,
            sync.p99_us
        );
        println!(
            "log:  {records:.0} records/s of {RECORD_BYTES} bytes durable: {:.1} MiB/s payload ({:.0}% of bandwidth), {:.1} MiB/s framed ({:.0}%)",
            payload / 1048576.0,
            100.0 * payload / bw,
            framed / 1048576.0,
            100.0 * framed / bw
        );
    }
}
