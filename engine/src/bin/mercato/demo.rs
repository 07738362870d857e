//! `mercato demo`: a whole shop in one process. It loads a catalog, runs a
//! flash sale on one SKU and then a cart workload, audits every invariant and
//! prints what happened. Exit status 0 means the audit passed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use mercato_engine::workload::{Latency, Rng, Zipf, load};
use mercato_engine::{Command, Config, Engine, Handle, LineRequest, Payment, PlaceOrder, Reply};

#[derive(clap::Args)]
pub struct Args {
    /// Shards; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Buyer threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    #[arg(long, default_value_t = 10_000)]
    skus: u64,
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Units of the flash-sale SKU.
    #[arg(long, default_value_t = 10_000)]
    flash_stock: u32,
    /// Buy attempts in the flash sale, from random accounts (so some try twice).
    #[arg(long, default_value_t = 200_000)]
    buyers: u64,
    /// Orders in the cart workload.
    #[arg(long, default_value_t = 200_000)]
    cart_orders: u64,
    /// Keep a write-ahead log in this directory, which must be new (the
    /// demo's order ids would repeat in an old one). Without it the demo
    /// runs in memory.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// always, interval=MS (milliseconds) or never (with --data-dir).
    #[arg(long, default_value = "always")]
    durability: mercato_engine::Durability,
}

const FLASH_SKU: u64 = u64::MAX;
const BATCH: u64 = 64;
const FUNDS: u64 = 10_000_000;

#[derive(Default)]
struct Tally {
    committed: u64,
    rejected: BTreeMap<String, u64>,
    latency: Latency,
    requests: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.committed += other.committed;
        self.requests += other.requests;
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.latency.merge(&other.latency);
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Place orders made by `make(i)` for `i` in `0..n`, from several threads.
fn place(
    h: &Handle,
    threads: usize,
    n: u64,
    pb: &ProgressBar,
    make: impl Fn(u64, &mut Rng) -> Command + Sync,
) -> Tally {
    let total = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for t in 0..threads as u64 {
            let (h, make, total) = (h.clone(), &make, &total);
            s.spawn(move || {
                let mut rng = Rng::new(t);
                let mut mine = Tally::default();
                let mut i = t * BATCH;
                while i < n {
                    let end = (i + BATCH).min(n);
                    let batch: Vec<Command> = (i..end).map(|k| make(k, &mut rng)).collect();
                    let started = Instant::now();
                    let answers = h.submit_waiting(batch).expect("the engine is up");
                    mine.latency.record_batch(started, end - i);
                    mine.requests += end - i;
                    for a in answers {
                        match a {
                            Ok(Reply::Order(_)) => mine.committed += 1,
                            Ok(_) => {}
                            Err(r) => *mine.rejected.entry(reason(&r)).or_default() += 1,
                        }
                    }
                    pb.inc(end - i);
                    i += BATCH * threads as u64;
                }
                total.lock().unwrap().add(mine);
            });
        }
    });
    total.into_inner().unwrap()
}

fn reason(r: &mercato_engine::Reject) -> String {
    let s = format!("{r:?}");
    s.split([' ', '{']).next().unwrap_or("?").to_string()
}

fn report(name: &str, t: &Tally, secs: f64) {
    println!("{name}:");
    println!("  orders committed   {}", t.committed);
    for (why, n) in &t.rejected {
        println!("  rejected {why:<18}{n}");
    }
    println!(
        "  throughput         {:.0} orders/s ({} requests in {:.2} s)",
        t.requests as f64 / secs,
        t.requests,
        secs
    );
    println!(
        "  latency            p50 {} us, p99 {} us (per batch of {BATCH})",
        t.latency.p(0.5),
        t.latency.p(0.99)
    );
}

pub fn run(a: Args) -> i32 {
    let config = Config {
        data_dir: a.data_dir.clone(),
        durability: a.durability,
        ..Config::with_shards(a.shards)
    };
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot open the engine: {e}");
            return 2;
        }
    };
    if engine.recovery().is_some_and(|r| !r.created) {
        eprintln!(
            "the demo needs a new data directory; inspect this one with `mercato audit {}`",
            a.data_dir
                .as_ref()
                .map_or(String::new(), |d| d.display().to_string())
        );
        return 2;
    }
    let h = engine.handle();
    println!(
        "mercato demo: {} shards, {} buyer threads",
        h.shards(),
        a.threads
    );

    let pb = bar(a.skus * 2 + a.accounts + 2, "catalog");
    let loaded = load(
        &h,
        a.threads,
        a.skus,
        |s| Command::PutSku {
            sku: s,
            price: 100 + s % 9_900,
            per_user_limit: 0,
        },
        |n| pb.inc(n),
    )
    .and_then(|()| {
        load(
            &h,
            a.threads,
            a.skus,
            |s| Command::Restock {
                sku: s,
                qty: 10_000,
            },
            |n| pb.inc(n),
        )
    })
    .and_then(|()| {
        load(
            &h,
            a.threads,
            a.accounts,
            |acct| Command::Deposit {
                account: acct,
                amount: FUNDS,
            },
            |n| pb.inc(n),
        )
    })
    .and_then(|()| {
        load(
            &h,
            1,
            1,
            |_| Command::PutSku {
                sku: FLASH_SKU,
                price: 4_999,
                per_user_limit: 1,
            },
            |n| pb.inc(n),
        )
    })
    .and_then(|()| {
        load(
            &h,
            1,
            1,
            |_| Command::Restock {
                sku: FLASH_SKU,
                qty: a.flash_stock,
            },
            |n| pb.inc(n),
        )
    });
    pb.finish();
    if let Err(e) = loaded {
        eprintln!("{e}");
        return 2;
    }

    let pb = bar(a.buyers, "flash sale");
    let started = Instant::now();
    let accounts = a.accounts;
    let flash = place(&h, a.threads, a.buyers, &pb, |i, rng| {
        Command::PlaceOrder(PlaceOrder {
            id: u128::from(i),
            account: rng.below(accounts),
            lines: vec![LineRequest::new(FLASH_SKU, 1)],
            payment: Payment::Immediate,
        })
    });
    let flash_secs = started.elapsed().as_secs_f64();
    pb.finish();

    let pb = bar(a.cart_orders, "carts");
    let zipf = Zipf::new(a.skus, 0.99);
    let started = Instant::now();
    let carts = place(&h, a.threads, a.cart_orders, &pb, |i, rng| {
        let n = 1 + rng.below(3) as usize;
        let mut lines: Vec<LineRequest> = Vec::with_capacity(n);
        while lines.len() < n {
            let sku = zipf.sample(rng) - 1;
            if lines.iter().all(|l| l.sku != sku) {
                lines.push(LineRequest::new(sku, 1 + rng.below(2) as u32));
            }
        }
        let payment = if rng.below(4) == 0 {
            Payment::Deferred { ttl_ms: 60_000 }
        } else {
            Payment::Immediate
        };
        Command::PlaceOrder(PlaceOrder {
            id: (1u128 << 64) | u128::from(i),
            account: rng.below(accounts),
            lines,
            payment,
        })
    });
    let cart_secs = started.elapsed().as_secs_f64();
    pb.finish();

    println!();
    report("flash sale", &flash, flash_secs);
    let sku = h
        .get_sku(FLASH_SKU)
        .expect("engine up")
        .expect("the flash SKU exists");
    println!(
        "  units sold         {} of {} in stock ({})",
        sku.sold,
        a.flash_stock,
        if sku.sold == a.flash_stock && flash.committed == u64::from(sku.sold) {
            "exact: no oversell"
        } else {
            "MISMATCH"
        }
    );
    report("carts", &carts, cart_secs);

    let audit = h.audit().expect("engine up");
    println!("audit:");
    println!(
        "  {} skus, {} accounts, {} orders; units stocked {}, available {}, reserved {}, sold {}",
        audit.skus,
        audit.accounts,
        audit.orders,
        audit.units_stocked,
        audit.units_available,
        audit.units_reserved,
        audit.units_sold
    );
    println!(
        "  money: balances {} + revenue {} = deposits {} - withdrawals {}",
        audit.balances, audit.revenue, audit.deposited, audit.withdrawn
    );
    let sold_out_ok = sku.sold == a.flash_stock || flash.committed < u64::from(a.flash_stock);
    let ok = audit.ok() && audit.quiescent && flash.committed == u64::from(sku.sold) && sold_out_ok;
    if ok {
        println!(
            "  invariants: all hold (stock conserved, money conserved, every order on all its shards or none)"
        );
    } else {
        println!("  invariants: VIOLATED {:?}", audit.violations);
    }
    engine.shutdown();
    if ok { 0 } else { 1 }
}
