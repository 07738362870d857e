//! `mercato-mem`: heap bytes per SKU, per account and per 3-line order in one
//! shard's state, measured by a counting allocator around the system one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use mercato_engine::shard::{Output, Shard};
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to `System` with the caller's own layout and
// pointer; the counter is the only addition.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Hash tables double when 7/8 full, so bytes per entry swing with the fill:
/// 2^20 * 7/8 = 917,504 entries fill a table of 2^20 buckets; one more doubles
/// it. Measuring just before and just after a doubling brackets the figure.
const SIZES: [u64; 2] = [1_000_000, 1_800_000];

fn measure(shard: &mut Shard, n: u64, make: impl Fn(u64) -> Command) -> f64 {
    let mut out = Output::default();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..n {
        shard.apply(i, make(i), 1, &mut out);
        out.replies.clear();
        out.records.clear();
    }
    (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn main() {
    println!(
        "{:>10} {:>14} {:>14} {:>22}",
        "entries", "bytes/sku", "bytes/account", "bytes/3-line order"
    );
    for n in SIZES {
        // One shard, so every order takes the single-shard path and all of
        // its memory (order, lines, the account's order index) lands here.
        let mut shard = Shard::new(0, 1);
        shard.discard_records();
        let sku = measure(&mut shard, n, |s| Command::PutSku {
            sku: s,
            price: 100,
            per_user_limit: 0,
        });
        let mut out = Output::default();
        for s in 0..n {
            shard.apply(0, Command::Restock { sku: s, qty: 1_000 }, 1, &mut out);
            out.replies.clear();
        }
        let account = measure(&mut shard, n, |a| Command::Deposit {
            account: a,
            amount: 1_000_000,
        });
        let order = measure(&mut shard, n, |i| {
            Command::PlaceOrder(PlaceOrder {
                id: u128::from(i),
                account: i,
                lines: (0..3)
                    .map(|k| LineRequest::new((i * 3 + k) % n, 1))
                    .collect(),
                payment: Payment::Immediate,
            })
        });
        println!("{n:>10} {sku:>14.1} {account:>14.1} {order:>22.1}");
    }
    println!(
        "targets: 128 bytes per sku, 64 per account, 256 per 3-line order (one order per account)"
    );
}
