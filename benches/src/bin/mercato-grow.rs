//! `mercato-grow`: the longest a shard stops while its tables grow from
//! empty. One shard's state machine takes, per turn, a batch of deposits to
//! new accounts and one-line orders by them of a SKU with a per-user limit,
//! so the account table, the order index and arena and the purchase table
//! all grow from nothing, with no capacity reserved. Every turn is timed;
//! the report is the distribution of turn lengths and the worst turns.
//!
//! ```sh
//! cargo run --release -p mercato-benches --bin mercato-grow -- --accounts 10000000
//! cargo run --release -p mercato-benches --bin mercato-grow -- --accounts 10000000 --checkpoint-every-turns 5000
//! ```
//!
//! With `--checkpoint-every-turns`, checkpoints (`shard/checkpoint.rs`) run
//! while the tables grow, a slice per table per turn as a shard copies
//! them, and the turns they ran in are reported apart.

use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;
use mercato_engine::shard::{Output, Shard};
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

#[derive(Parser)]
struct Args {
    /// New accounts, each with one order.
    #[arg(long, default_value_t = 10_000_000)]
    accounts: u64,
    /// Accounts per turn; a turn applies a deposit and an order for each.
    #[arg(long, default_value_t = 128)]
    per_turn: u64,
    /// Worst turns to list.
    #[arg(long, default_value_t = 5)]
    worst: usize,
    /// Begin a checkpoint every this many turns (when none is running), and
    /// copy one slice per table per turn as a shard does; 0 for none. Turns
    /// with a checkpoint running are reported apart.
    #[arg(long, default_value_t = 0)]
    checkpoint_every_turns: u64,
    /// MiB of heap to fault in first (`engine::alloc::prefault_heap`), as
    /// `mercato serve --heap-prefault-mb` does: without it, each fresh 2 MiB
    /// of heap costs its turn a huge-page fault of milliseconds on this VM.
    #[arg(long, default_value_t = 0)]
    heap_prefault_mb: usize,
}

fn main() {
    let args = Args::parse();
    if args.heap_prefault_mb > 0 {
        mercato_engine::alloc::prefault_heap(args.heap_prefault_mb << 20);
    }
    let mut shard = Shard::new(0, 1);
    shard.discard_records();
    let mut out = Output::default();
    shard.apply(
        0,
        Command::PutSku {
            sku: 1,
            price: 10,
            per_user_limit: 1,
        },
        1,
        &mut out,
    );
    shard.apply(
        0,
        Command::Restock {
            sku: 1,
            qty: u32::MAX - 1,
        },
        1,
        &mut out,
    );
    let mut turns = Histogram::<u64>::new(3).expect("a histogram");
    let mut checkpoint_turns = Histogram::<u64>::new(3).expect("a histogram");
    let mut parts = Vec::new();
    let mut copied = 0usize;
    let mut checkpoints = 0u64;
    let mut turn_no = 0u64;
    let mut worst: Vec<(u64, u64)> = Vec::new();
    let started = Instant::now();
    let mut next = 0u64;
    while next < args.accounts {
        let end = (next + args.per_turn).min(args.accounts);
        let turn = Instant::now();
        turn_no += 1;
        let every = args.checkpoint_every_turns;
        if every > 0 && turn_no % every == 0 && !shard.is_checkpointing() {
            shard.begin_checkpoint(turn_no);
            checkpoints += 1;
        }
        let checkpointing = shard.is_checkpointing();
        for account in next..end {
            let deposit = Command::Deposit {
                account,
                amount: 1_000,
            };
            shard.apply(0, deposit, 1, &mut out);
            let order = PlaceOrder {
                id: u128::from(account),
                account,
                lines: vec![LineRequest::new(1, 1)],
                payment: Payment::Immediate,
            };
            shard.apply(0, Command::PlaceOrder(order), 1, &mut out);
        }
        out.replies.clear();
        if checkpointing {
            // As a shard does each turn (`runtime/worker.rs`).
            shard.checkpoint_step(16, &mut parts);
            copied += parts.iter().map(|p| p.len()).sum::<usize>();
            parts.clear();
        }
        let ns = turn.elapsed().as_nanos() as u64;
        if checkpointing {
            checkpoint_turns.record(ns.max(1)).expect("in range");
        } else {
            turns.record(ns.max(1)).expect("in range");
        }
        worst.push((ns, next));
        if worst.len() > 4 * args.worst.max(1) {
            worst.sort_unstable_by(|a, b| b.cmp(a));
            worst.truncate(args.worst);
        }
        next = end;
    }
    let secs = started.elapsed().as_secs_f64();
    worst.sort_unstable_by(|a, b| b.cmp(a));
    worst.truncate(args.worst);
    let us = |q: f64| turns.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{} accounts, {} orders, {} per turn, {:.2} s, {:.0} accounts/s",
        args.accounts,
        args.accounts,
        args.per_turn,
        secs,
        args.accounts as f64 / secs
    );
    println!(
        "turn µs: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  turns {}",
        us(0.5),
        us(0.99),
        us(0.999),
        us(0.9999),
        turns.max() as f64 / 1e3,
        turns.len()
    );
    if checkpoints > 0 {
        let us = |q: f64| checkpoint_turns.value_at_quantile(q) as f64 / 1e3;
        println!(
            "with a checkpoint running: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  turns {}  ({checkpoints} checkpoints begun, {copied} entries copied)",
            us(0.5),
            us(0.99),
            us(0.999),
            us(0.9999),
            checkpoint_turns.max() as f64 / 1e3,
            checkpoint_turns.len()
        );
    }
    for (ns, at) in worst {
        println!("  {:>10.1} µs at account {at}", ns as f64 / 1e3);
    }
}
