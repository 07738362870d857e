//! `mercato-mem`: heap bytes per SKU, per account and per 3-line order in one
//! shard's state, measured by a counting allocator around the system one;
//! then the two machine costs that bound the order path: a random lookup in
//! a table too large for the caches, and the first touch of fresh memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use mercato_engine::shard::{Output, Shard};
use std::time::Instant;

use mercato_engine::hash::IdMap;
use mercato_engine::workload::Rng;
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

/// The process's resident bytes, from `/proc/self/statm`.
fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Heap bytes and resident bytes per entry that `n` commands add. Large
/// tables are anonymous mappings outside the heap (`shard/probe.rs`), so
/// only the resident figure counts them; it also counts pages the heap
/// faulted in and kept.
fn measure(shard: &mut Shard, n: u64, make: impl Fn(u64) -> Command) -> (f64, f64) {
    let mut out = Output::default();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let resident_before = resident_bytes();
    for i in 0..n {
        shard.apply(i, make(i), 1, &mut out);
        out.replies.clear();
        out.records.clear();
    }
    let heap = (LIVE_BYTES.load(Ordering::Relaxed) - before) as f64 / n as f64;
    let resident = (resident_bytes() - resident_before) as f64 / n as f64;
    (heap, resident)
}

fn main() {
    println!("bytes per entry, heap / resident");
    println!(
        "{:>10} {:>16} {:>16} {:>22}",
        "entries", "sku", "account", "3-line order"
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
        let pair = |(heap, resident): (f64, f64)| format!("{heap:.1} / {resident:.1}");
        println!(
            "{n:>10} {:>16} {:>16} {:>22}",
            pair(sku),
            pair(account),
            pair(order)
        );
    }
    println!(
        "targets: 128 bytes per sku, 64 per account, 256 per 3-line order (one order per account)"
    );
    println!();
    lookup_latency();
    first_touch();
}

/// Nanoseconds per random `get` in an id table of account-sized entries:
/// what one account or order probe costs once the table outgrows the caches.
fn lookup_latency() {
    const LOOKUPS: u64 = 5_000_000;
    for n in [10_000u64, 1_000_000, 10_000_000] {
        let table: IdMap<u64, [u64; 2]> = (0..n).map(|i| (i, [i, 0])).collect();
        let mut rng = Rng::new(n);
        let mut sum = 0u64;
        let started = Instant::now();
        for _ in 0..LOOKUPS {
            sum = sum.wrapping_add(table[&rng.below(n)][0]);
        }
        let ns = started.elapsed().as_nanos() as f64 / LOOKUPS as f64;
        println!("random lookup, {n:>10} entries: {ns:6.1} ns   (checksum {sum})");
    }
}

/// GB/s at which the kernel hands out fresh pages: every byte a growing
/// order book takes for the first time costs this.
fn first_touch() {
    const BYTES: usize = 1 << 30;
    let started = Instant::now();
    // A zeroed allocation this large is fresh pages from the kernel, not yet
    // mapped; one write per page faults each in (writing every byte would
    // measure memset rather than the kernel).
    let mut v = vec![0u8; BYTES];
    for offset in (0..BYTES).step_by(4096) {
        v[offset] = 1;
    }
    std::hint::black_box(&v);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "first touch of 1 GiB: {secs:.2} s, {:.2} GB/s",
        BYTES as f64 / secs / 1e9
    );
}
