//! `mercato-load`: drive an engine with a shop workload for a fixed time and
//! report throughput, latency percentiles and the final invariant audit.
//! Exits 1 if any invariant fails.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::ProgressBar;
use mercato_engine::shard::Capacity;
use mercato_engine::workload::{Latency, Rng, Zipf, load};
use mercato_engine::{Command, Config, Engine, Handle, LineRequest, Payment, PlaceOrder, Reply};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Workload {
    /// One hot SKU, one unit per order, per-user limit 1, 10,000,000 buyers.
    FlashSale,
    /// 1 to 3 lines over 1,000,000 Zipf(0.99) SKUs, 1,000,000 accounts.
    Carts,
    /// 70% get_sku, 20% carts, 10% deferred orders later paid or cancelled.
    Mixed,
}

#[derive(Parser)]
#[command(name = "mercato-load", about = "Load generator for mercato")]
struct Args {
    /// `embedded` runs the engine in this process.
    #[arg(long, default_value = "embedded")]
    target: String,
    #[arg(long, value_enum, default_value_t = Workload::FlashSale)]
    workload: Workload,
    /// Shards; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per submitted batch (the pipeline depth of each thread).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Accounts to create; defaults to the workload's own figure.
    #[arg(long)]
    accounts: Option<u64>,
    /// SKUs to create for carts and mixed; defaults to 1,000,000.
    #[arg(long)]
    skus: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const HOT_SKU: u64 = u64::MAX;
const FUNDS: u64 = 1_000_000_000_000;
/// Enough units that no run of this tool sells out: about 4 billion.
const STOCK_PER_SKU: u32 = u32::MAX - 1;

#[derive(Default)]
struct Counts {
    committed: u64,
    rejected: u64,
    requests: u64,
    latency: Latency,
}

struct Gen {
    workload: Workload,
    accounts: u64,
    zipf: Zipf,
    rng: Rng,
    next_id: u128,
    /// Deferred orders waiting to be paid or cancelled: (account, id).
    deferred: Vec<(u64, u128)>,
}

impl Gen {
    fn cart(&mut self, payment: Payment) -> Command {
        let n = 1 + self.rng.below(3) as usize;
        let mut lines: Vec<LineRequest> = Vec::with_capacity(n);
        while lines.len() < n {
            let sku = self.zipf.sample(&mut self.rng) - 1;
            if lines.iter().all(|l| l.sku != sku) {
                lines.push(LineRequest::new(sku, 1));
            }
        }
        self.next_id += 1;
        Command::PlaceOrder(PlaceOrder {
            id: self.next_id,
            account: self.rng.below(self.accounts),
            lines,
            payment,
        })
    }

    fn next(&mut self) -> Command {
        match self.workload {
            Workload::FlashSale => {
                self.next_id += 1;
                Command::PlaceOrder(PlaceOrder {
                    id: self.next_id,
                    account: self.rng.below(self.accounts),
                    lines: vec![LineRequest::new(HOT_SKU, 1)],
                    payment: Payment::Immediate,
                })
            }
            Workload::Carts => self.cart(Payment::Immediate),
            Workload::Mixed => match self.rng.below(10) {
                0..7 => Command::GetSku {
                    sku: self.zipf.sample(&mut self.rng) - 1,
                },
                7..9 => self.cart(Payment::Immediate),
                _ => match self.deferred.pop() {
                    Some((account, order)) if self.rng.below(2) == 0 => {
                        Command::Pay { account, order }
                    }
                    Some((account, order)) => Command::Cancel { account, order },
                    None => self.cart(Payment::Deferred { ttl_ms: 60_000 }),
                },
            },
        }
    }
}

fn setup(h: &Handle, args: &Args, accounts: u64, skus: u64) -> Result<(), String> {
    let threads = args.threads.max(2);
    let pb = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(accounts + 2 * skus)
    };
    if args.workload == Workload::FlashSale {
        load(
            h,
            1,
            1,
            |_| Command::PutSku {
                sku: HOT_SKU,
                price: 4_999,
                per_user_limit: 1,
            },
            |_| {},
        )?;
        load(
            h,
            1,
            1,
            |_| Command::Restock {
                sku: HOT_SKU,
                qty: STOCK_PER_SKU,
            },
            |_| {},
        )?;
    } else {
        load(
            h,
            threads,
            skus,
            |s| Command::PutSku {
                sku: s,
                price: 100 + s % 9_900,
                per_user_limit: 0,
            },
            |n| pb.inc(n),
        )?;
        load(
            h,
            threads,
            skus,
            |s| Command::Restock {
                sku: s,
                qty: STOCK_PER_SKU,
            },
            |n| pb.inc(n),
        )?;
    }
    load(
        h,
        threads,
        accounts,
        |a| Command::Deposit {
            account: a,
            amount: FUNDS,
        },
        |n| pb.inc(n),
    )?;
    pb.finish_and_clear();
    Ok(())
}

fn drive(h: &Handle, args: &Args, accounts: u64, skus: u64) -> (Counts, f64) {
    let stop = AtomicBool::new(false);
    let total = Mutex::new(Counts::default());
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (h, stop, total, done) = (h.clone(), &stop, &total, &done);
            s.spawn(move || {
                let mut g = Gen {
                    workload: args.workload,
                    accounts,
                    zipf: Zipf::new(skus.max(1), 0.99),
                    rng: Rng::new(t as u64 + 1),
                    next_id: (t as u128) << 96,
                    deferred: Vec::new(),
                };
                let mut c = Counts::default();
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Command> = (0..args.batch).map(|_| g.next()).collect();
                    let placing: Vec<bool> = batch
                        .iter()
                        .map(|c| matches!(c, Command::PlaceOrder(_)))
                        .collect();
                    let at = Instant::now();
                    let answers = h.submit_waiting(batch).expect("the engine is up");
                    c.latency.record_batch(at, answers.len() as u64);
                    c.requests += answers.len() as u64;
                    for (answer, placed) in answers.into_iter().zip(placing) {
                        match answer {
                            Ok(Reply::Order(o)) if placed => {
                                c.committed += 1;
                                if o.state == mercato_engine::OrderState::Reserved {
                                    g.deferred.push((o.account, o.id));
                                }
                            }
                            Err(_) if placed => c.rejected += 1,
                            _ => {}
                        }
                    }
                    done.fetch_add(args.batch as u64, Ordering::Relaxed);
                }
                let mut t = total.lock().unwrap();
                t.committed += c.committed;
                t.rejected += c.rejected;
                t.requests += c.requests;
                t.latency.merge(&c.latency);
            });
        }
        let until = started + Duration::from_secs(args.seconds);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    (total.into_inner().unwrap(), started.elapsed().as_secs_f64())
}

fn main() {
    let args = Args::parse();
    if args.target != "embedded" {
        eprintln!(
            "mercato-load: target {:?} is not supported yet; use --target embedded",
            args.target
        );
        std::process::exit(2);
    }
    let accounts = args.accounts.unwrap_or(match args.workload {
        Workload::FlashSale => 10_000_000,
        _ => 1_000_000,
    });
    let skus = args.skus.unwrap_or(1_000_000);
    // Catalog and wallets are known up front, so their tables are sized
    // once. Orders grow with the run: a table sized for the target rate is
    // mostly empty, and every insert into it faults in a fresh page.
    let capacity = Capacity {
        skus: skus as usize,
        accounts: accounts as usize,
        orders: 0,
    };
    let config = Config {
        shards: args.shards,
        capacity,
        ..Config::default()
    };
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mercato-load: {e}");
            std::process::exit(2);
        }
    };
    let h = engine.handle();
    if let Err(e) = setup(&h, &args, accounts, skus) {
        eprintln!("mercato-load: setup failed: {e}");
        std::process::exit(2);
    }
    let (c, secs) = drive(&h, &args, accounts, skus);
    let audit = h.audit().expect("the engine is up");
    let ok = audit.ok() && audit.quiescent;
    let workload = format!("{:?}", args.workload)
        .to_lowercase()
        .replace("flashsale", "flash-sale");
    let (p50, p99, p999) = (c.latency.p(0.5), c.latency.p(0.99), c.latency.p(0.999));
    if args.json {
        println!(
            "{{\"workload\":\"{workload}\",\"target\":\"{}\",\"shards\":{},\"threads\":{},\"batch\":{},\"seconds\":{secs:.3},\
             \"orders_committed\":{},\"orders_rejected\":{},\"orders_per_sec\":{:.0},\"requests_per_sec\":{:.0},\
             \"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"invariants_ok\":{ok}}}",
            args.target,
            h.shards(),
            args.threads,
            args.batch,
            c.committed,
            c.rejected,
            c.committed as f64 / secs,
            c.requests as f64 / secs,
        );
    } else {
        println!(
            "workload {workload}, target {}, {} shards, {} threads, batch {}",
            args.target,
            h.shards(),
            args.threads,
            args.batch
        );
        println!(
            "  {:.2} s: {} orders committed, {} rejected, {} requests",
            secs, c.committed, c.rejected, c.requests
        );
        println!(
            "  {:.0} orders/s committed, {:.0} requests/s",
            c.committed as f64 / secs,
            c.requests as f64 / secs
        );
        println!(
            "  latency per request: p50 {p50} us, p99 {p99} us, p99.9 {p999} us (each request waits for its batch)"
        );
        println!(
            "  audit: {}",
            if ok {
                "all invariants hold".to_string()
            } else {
                format!("VIOLATED {:?}", audit.violations)
            }
        );
    }
    engine.shutdown();
    std::process::exit(if ok { 0 } else { 1 });
}
