//! `mercato-order-path N`: one shard places N single-line Immediate orders
//! over 100,000 accounts and 100 SKUs, and nothing else. Run it under
//! callgrind twice, with N and with 0, and the difference divided by N is
//! the instructions one order costs: a figure that, unlike time on a shared
//! VM, repeats exactly.
//!
//! ```text
//! valgrind --tool=callgrind target/release/mercato-order-path 200000
//! valgrind --tool=callgrind target/release/mercato-order-path 0
//! ```

use mercato_engine::shard::{Capacity, Output, Shard};
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNTS: u64 = 100_000;
const SKUS: u64 = 100;
/// Replies kept before the buffer is cleared, as a runtime would hand them out.
const REPLIES_MAX: usize = 1_000;

fn main() {
    let orders: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 200_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("mercato-order-path: the order count must be a number: {e}");
            std::process::exit(2);
        }
    };
    let mut shard = Shard::new(0, 1);
    shard.discard_records();
    shard.reserve(Capacity {
        skus: SKUS as usize,
        accounts: ACCOUNTS as usize,
        orders: orders as usize,
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
