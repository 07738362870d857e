//! `mercato-order-path N [two-phase]`: place N single-line Immediate orders
//! over 100,000 accounts and 100 SKUs, and nothing else: in one shard, or
//! with `two-phase` in a two-shard `sim::Cluster` where every order's SKU
//! lives on the other shard. Run it under callgrind twice, with N and with 0,
//! and the difference divided by N is the instructions one order costs: a
//! figure that, unlike time on a shared VM, repeats exactly.
//!
//! ```text
//! valgrind --tool=callgrind target/release/mercato-order-path 200000
//! valgrind --tool=callgrind target/release/mercato-order-path 0
//! ```

use mercato_engine::hash::shard_of;
use mercato_engine::shard::{Capacity, Output, Shard};
use mercato_engine::sim::Cluster;
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

const ACCOUNTS: u64 = 100_000;
const SKUS: u64 = 100;
/// Replies kept before the buffer is cleared, as a runtime would hand them out.
const REPLIES_MAX: usize = 1_000;
/// Orders the tables are sized for, whatever N is: reserving touches the
/// table, and that cost must be the same in the run with N and the run with
/// 0, or the difference would count it.
const ORDERS_RESERVED: usize = 400_000;

fn main() {
    let two_phase = std::env::args().nth(2).as_deref() == Some("two-phase");
    let orders: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 200_000,
        Some(Ok(n)) if n <= ORDERS_RESERVED as u64 => n,
        Some(Ok(n)) => {
            eprintln!("mercato-order-path: at most {ORDERS_RESERVED} orders, not {n}");
            std::process::exit(2);
        }
        Some(Err(e)) => {
            eprintln!("mercato-order-path: the order count must be a number: {e}");
            std::process::exit(2);
        }
    };
    if two_phase {
        return across_shards(orders);
    }
    let mut shard = Shard::new(0, 1);
    shard.discard_records();
    shard.reserve(Capacity {
        skus: SKUS as usize,
        accounts: ACCOUNTS as usize,
        orders: ORDERS_RESERVED,
        purchases: 0,
        rejections: 0,
    });
    let mut out = Output::default();
    for sku in 0..SKUS {
        shard.apply(
            0,
            Command::PutSku {
                sku,
                price: 250,
                per_user_limit: 0,
            },
            1,
            &mut out,
        );
        shard.apply(
            0,
            Command::Restock {
                sku,
                qty: u32::MAX - 1,
            },
            1,
            &mut out,
        );
    }
    for account in 0..ACCOUNTS {
        shard.apply(
            0,
            Command::Deposit {
                account,
                amount: u64::MAX / 2,
            },
            1,
            &mut out,
        );
    }
    out.replies.clear();
    let mut placed = 0u64;
    for i in 0..orders {
        let cmd = Command::PlaceOrder(PlaceOrder {
            id: u128::from(i),
            account: i.wrapping_mul(2_654_435_761) % ACCOUNTS,
            lines: vec![LineRequest::new(i % SKUS, 1)],
            payment: Payment::Immediate,
        });
        shard.apply(i, cmd, 1, &mut out);
        if out.replies.len() >= REPLIES_MAX {
            placed += out.replies.drain(..).filter(|(_, r)| r.is_ok()).count() as u64;
        }
    }
    placed += out.replies.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    println!("{placed} of {orders} orders placed");
}

/// Every order crosses shards: its SKU is on the shard its account is not.
fn across_shards(orders: u64) {
    let mut cluster = Cluster::new(2);
    cluster.discard_records();
    cluster.discard_answers();
    for shard in &mut cluster.shards {
        let capacity = Capacity {
            skus: SKUS as usize,
            accounts: ACCOUNTS as usize,
            orders: ORDERS_RESERVED,
            purchases: 0,
            rejections: 0,
        };
        shard.reserve(capacity.per_shard(2));
    }
    for sku in 0..SKUS {
        cluster.submit(
            Command::PutSku {
                sku,
                price: 250,
                per_user_limit: 0,
            },
            1,
        );
        cluster.submit(
            Command::Restock {
                sku,
                qty: u32::MAX - 1,
            },
            1,
        );
    }
    for account in 0..ACCOUNTS {
        cluster.submit(
            Command::Deposit {
                account,
                amount: u64::MAX / 2,
            },
            1,
        );
    }
    let far: [u64; 2] = [0, 1].map(|home| {
        (0..SKUS)
            .find(|&s| shard_of(s, 2) != home)
            .expect("a SKU on each shard")
    });
    for i in 0..orders {
        let account = i.wrapping_mul(2_654_435_761) % ACCOUNTS;
        let sku = far[shard_of(account, 2) as usize];
        cluster.submit(
            Command::PlaceOrder(PlaceOrder {
                id: u128::from(i),
                account,
                lines: vec![LineRequest::new(sku, 1)],
                payment: Payment::Immediate,
            }),
            1,
        );
        if i % 128 == 127 {
            cluster.settle(1);
        }
    }
    cluster.settle(1);
    let report = cluster.audit();
    println!(
        "{} orders across shards; audit ok: {}",
        report.orders,
        report.ok()
    );
}
