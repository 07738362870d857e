//! One shard's pure state machine: commands per second with no threads and
//! no I/O. The figure to beat is 5,000,000 single-line orders per second.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mercato_engine::shard::{Capacity, Output, Shard};
use mercato_engine::sim::Cluster;
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

const ACCOUNTS: u64 = 1_000_000;
const SKUS: u64 = 10_000;
const BATCH: u64 = 10_000;
/// Commands run together, and warmed together first in the warmed bench, as
/// the runtime does.
const WARM_CHUNK: usize = mercato_engine::limits::WARM_CHUNK_LEN;
/// Orders a shard's tables are reserved for: more than one bench function
/// places in `WARM_UP` plus `MEASURE` at 8,000,000 orders a second.
/// Criterion sizes its run by time, not by count, so a faster build places
/// more orders; before this was raised from 16,000,000 the last samples of
/// the warmed bench timed the order table growing, which gave it its wide
/// spread (BENCHMARKS.md). A shard that would outgrow it anyway (a longer
/// `--measurement-time`) is replaced by a fresh one between two timed
/// batches, outside the timed part.
const ORDERS_RESERVED: usize = 32_000_000;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);

fn stocked_shard(shards: u16, id: u16) -> Shard {
    let mut s = Shard::new(id, shards);
    s.discard_records();
    // Steady state: tables sized for the whole run, as an operator would.
    s.reserve(
        Capacity {
            skus: SKUS as usize,
            accounts: ACCOUNTS as usize,
            orders: ORDERS_RESERVED,
            purchases: 0,
            rejections: 0,
        }
        .per_shard(shards),
    );
    let mut out = Output::default();
    let owned = |x: u64| mercato_engine::hash::shard_of(x, shards) == id;
    for sku in (0..SKUS).filter(|&x| owned(x)) {
        s.apply(
            0,
            Command::PutSku {
                sku,
                price: 250,
                per_user_limit: 0,
            },
            1,
            &mut out,
        );
        s.apply(
            0,
            Command::Restock {
                sku,
                qty: u32::MAX - 1,
            },
            1,
            &mut out,
        );
    }
    for account in (0..ACCOUNTS).filter(|&x| owned(x)) {
        s.apply(
            0,
            Command::Deposit {
                account,
                amount: u64::MAX / 2,
            },
            1,
            &mut out,
        );
    }
    s
}

fn order(id: u128, account: u64, skus: &[u64]) -> Command {
    Command::PlaceOrder(PlaceOrder {
        id,
        account,
        lines: skus.iter().map(|&s| LineRequest::new(s, 1)).collect(),
        payment: Payment::Immediate,
    })
}

/// A batch of new orders of `lines` lines each, from scattered accounts.
fn batch(next: &mut u128, lines: u64) -> Vec<Command> {
    (0..BATCH)
        .map(|i| {
            *next += 1;
            let account = (*next as u64).wrapping_mul(2_654_435_761) % ACCOUNTS;
            let skus: Vec<u64> = (0..lines).map(|k| (i + k) % SKUS).collect();
            order(*next, account, &skus)
        })
        .collect()
}

/// Run a batch through the shard a chunk at a time, warming each chunk
/// first if `warm`. The replies of each chunk are dropped before the next,
/// in the timed loop: the runtime keeps one `Output` and hands its replies
/// out every turn, so a fresh buffer per batch would time the allocator's
/// growth of a megabyte of replies instead of the shard.
fn run(shard: &mut Shard, cmds: Vec<Command>, warm: bool, out: &mut Output) {
    let mut cmds = cmds.into_iter();
    let mut token = 0u64;
    while !cmds.as_slice().is_empty() {
        if warm {
            shard.warm(cmds.as_slice().iter().take(WARM_CHUNK));
        }
        for cmd in cmds.by_ref().take(WARM_CHUNK) {
            shard.apply(token, cmd, 1, out);
            token += 1;
        }
        out.replies.clear();
    }
}

fn single_shard(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_machine");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.warm_up_time(WARM_UP);
    g.measurement_time(MEASURE);
    let mut next = 0u128;

    for (name, lines, warm) in [
        ("place_order_1_line_immediate", 1, false),
        ("place_order_1_line_immediate_warmed", 1, true),
        ("place_order_3_lines_immediate", 3, false),
    ] {
        let mut shard = stocked_shard(1, 0);
        let mut placed = 0u64;
        let mut out = Output::default();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if placed + BATCH > ORDERS_RESERVED as u64 {
                        shard = stocked_shard(1, 0);
                        placed = 0;
                    }
                    let cmds = batch(&mut next, lines);
                    let started = Instant::now();
                    run(&mut shard, cmds, warm, &mut out);
                    timed += started.elapsed();
                    placed += BATCH;
                }
                timed
            })
        });
    }

    // Two shards in one thread: every order pays for two-phase commit's
    // messages and records, without any thread hand-off.
    let mut cluster = Cluster::new(2);
    cluster.discard_records();
    for s in &mut cluster.shards {
        s.reserve(
            Capacity {
                skus: SKUS as usize,
                accounts: ACCOUNTS as usize,
                orders: ORDERS_RESERVED,
                purchases: 0,
                rejections: 0,
            }
            .per_shard(2),
        );
    }
    for sku in 0..SKUS {
        cluster
            .call(
                Command::PutSku {
                    sku,
                    price: 250,
                    per_user_limit: 0,
                },
                1,
            )
            .expect("put");
        cluster
            .call(
                Command::Restock {
                    sku,
                    qty: u32::MAX - 1,
                },
                1,
            )
            .expect("restock");
    }
    for account in 0..ACCOUNTS / 10 {
        cluster
            .call(
                Command::Deposit {
                    account,
                    amount: u64::MAX / 2,
                },
                1,
            )
            .expect("deposit");
    }
    let off = |account: u64| {
        let home = mercato_engine::hash::shard_of(account, 2);
        (0..SKUS)
            .find(|&s| mercato_engine::hash::shard_of(s, 2) != home)
            .unwrap()
    };
    let targets: Vec<u64> = (0..ACCOUNTS / 10).map(off).collect();
    // Setup read its answers; the timed orders' answers are never read.
    cluster.discard_answers();
    g.bench_function("place_order_1_line_two_phase", |b| {
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| {
                        next += 1;
                        let account = (next as u64).wrapping_mul(2_654_435_761) % (ACCOUNTS / 10);
                        order(next, account, &[targets[account as usize]])
                    })
                    .collect::<Vec<_>>()
            },
            |cmds| {
                for cmd in cmds {
                    cluster.submit(cmd, 1);
                }
                cluster.settle(1);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, single_shard);
criterion_main!(benches);
