//! `mercato-reopen-bench`: how fast a data directory comes back.
//!
//! It fills a data directory with a catalog and `--orders` orders (durability
//! `never`, to fill it quickly), then measures:
//! 1. reopening from the log alone: records replayed per second;
//! 2. taking a checkpoint of every shard (the shards keep running);
//! 3. reopening from the snapshot plus the log after it.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use mercato_engine::shard::Capacity;
use mercato_engine::workload::{Rng, load};
use mercato_engine::{Command, Config, Durability, Engine, LineRequest, Payment, PlaceOrder};

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

#[derive(Parser)]
#[command(
    name = "mercato-reopen-bench",
    about = "Replay and snapshot reopen times"
)]
struct Args {
    #[arg(long, default_value = "target/reopen-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 10_000_000)]
    orders: u64,
    #[arg(long, default_value_t = 2)]
    shards: u16,
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    #[arg(long, default_value_t = 100_000)]
    skus: u64,
    /// Keep the directory afterwards.
    #[arg(long)]
    keep: bool,
}

fn config(args: &Args) -> Config {
    Config {
        shards: args.shards,
        data_dir: Some(args.dir.clone()),
        durability: Durability::Never,
        snapshot_segments: 0,
        capacity: Capacity {
            skus: args.skus as usize,
            accounts: args.accounts as usize,
            orders: args.orders as usize,
            purchases: 0,
            rejections: 0,
        },
        ..Config::default()
    }
}

fn main() {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    let started = Instant::now();
    let engine = Engine::open(config(&args)).expect("open");
    let h = engine.handle();
    let (skus, accounts) = (args.skus, args.accounts);
    load(
        &h,
        2,
        skus,
        |s| Command::PutSku {
            sku: s,
            price: 100,
            per_user_limit: 0,
        },
        |_| {},
    )
    .unwrap();
    load(
        &h,
        2,
        skus,
        |s| Command::Restock {
            sku: s,
            qty: u32::MAX - 1,
        },
        |_| {},
    )
    .unwrap();
    load(
        &h,
        2,
        accounts,
        |a| Command::Deposit {
            account: a,
            amount: 1 << 50,
        },
        |_| {},
    )
    .unwrap();
    let mut rng = Rng::new(7);
    let picks: Vec<(u64, u64)> = (0..1 << 16)
        .map(|_| (rng.below(accounts), rng.below(skus)))
        .collect();
    load(
        &h,
        2,
        args.orders,
        |i| {
            let (account, sku) = picks[(i % picks.len() as u64) as usize];
            Command::PlaceOrder(PlaceOrder {
                id: u128::from(i),
                account: (account + i) % accounts,
                lines: vec![LineRequest::new((sku + i) % skus, 1)],
                payment: Payment::Immediate,
            })
        },
        |_| {},
    )
    .unwrap();
    drop(h);
    engine.shutdown();
    let bytes: u64 = walk(&args.dir);
    println!(
        "filled {} with {} orders in {:.1} s: {:.0} MiB of log",
        args.dir.display(),
        args.orders,
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1048576.0
    );

    let at = Instant::now();
    let engine = Engine::open(config(&args)).expect("reopen");
    let secs = at.elapsed().as_secs_f64();
    let records: u64 = engine
        .recovery()
        .unwrap()
        .shards
        .iter()
        .map(|s| s.records)
        .sum();
    println!(
        "reopen from the log: {secs:.2} s, {records} records, {:.0} records/s",
        records as f64 / secs
    );
    // A checkpoint the shards copy themselves, as the background
    // snapshots are taken (ARCHITECTURE.md).
    let at = Instant::now();
    let done = engine.checkpoint_now().expect("checkpoint");
    let snap_bytes: u64 = (0..args.shards)
        .filter_map(|i| {
            let shard = args.dir.join(format!("shard-{i}"));
            let newest = mercato_wal::snapshot::list_snapshots(&shard).ok()?.pop()?;
            std::fs::metadata(newest.1).ok().map(|m| m.len())
        })
        .sum();
    println!(
        "checkpoint of {} shards: {:.2} s, {:.0} MiB",
        done.len(),
        at.elapsed().as_secs_f64(),
        snap_bytes as f64 / 1048576.0
    );
    engine.shutdown();
    let at = Instant::now();
    let engine = Engine::open(config(&args)).expect("reopen");
    let secs = at.elapsed().as_secs_f64();
    let r = engine.recovery().unwrap();
    let tail: u64 = r.shards.iter().map(|s| s.records).sum();
    println!("reopen from the snapshot: {secs:.2} s ({tail} log records after it)");
    engine.shutdown();
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
