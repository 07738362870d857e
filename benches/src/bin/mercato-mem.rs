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

const N: u64 = 1_000_000;

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
    // One shard, so every order takes the single-shard path and all of an
    // order's memory (order, lines, the account's order index) lands here.
    let mut shard = Shard::new(0, 1);
    shard.discard_records();
    let sku = measure(&mut shard, N, |s| Command::PutSku {
        sku: s,
        price: 100,
        per_user_limit: 0,
    });
    let mut out = Output::default();
    for s in 0..N {
        shard.apply(0, Command::Restock { sku: s, qty: 1_000 }, 1, &mut out);
        out.replies.clear();
        out.records.clear();
    }
    let account = measure(&mut shard, N, |a| Command::Deposit {
        account: a,
        amount: 1_000_000,
    });
    let order = measure(&mut shard, N, |i| {
        Command::PlaceOrder(PlaceOrder {
            id: u128::from(i),
            account: i,
            lines: (0..3)
                .map(|k| LineRequest::new((i * 3 + k) % N, 1))
                .collect(),
            payment: Payment::Immediate,
        })
    });
    println!("bytes per sku            {sku:.1}   (target 128; {N} skus)");
    println!("bytes per account        {account:.1}   (target 64; {N} accounts)");
    println!("bytes per 3-line order   {order:.1}   (target 256; {N} orders, one per account)");
    println!("Hash tables are measured as they stand after the inserts, growth slack included.");
}
