//! `mercato-load`: drive an engine with a shop workload for a fixed time and
//! report throughput, latency percentiles and the final invariant audit.
//! Exits 1 if any invariant fails.
//!
//! It can also log every acknowledged order to a file (`--ack-log`), on
//! either target, and later check a recovered directory against that file
//! (`--verify-acks`): the crash test, by hand. A flag that does nothing for
//! the chosen target is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use indicatif::ProgressBar;
use mercato_engine::shard::Capacity;
use mercato_engine::workload::{Latency, Rng, Zipf, load};
use mercato_engine::{
    Command, Config, Durability, Engine, Handle, LineRequest, OrderState, Payment, PlaceOrder,
    Reply,
};

#[path = "load/feed.rs"]
mod feed;
#[path = "load/locks.rs"]
mod locks;
#[path = "load/postgres.rs"]
mod postgres;
#[path = "load/redis.rs"]
mod redis;
#[path = "load/tcp.rs"]
mod tcp;

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Workload {
    /// One hot SKU, one unit per order, per-user limit 1, 10,000,000 buyers.
    FlashSale,
    /// 1 to 3 lines over 1,000,000 Zipf(0.99) SKUs, 1,000,000 accounts.
    Carts,
    /// 70% get_sku, 20% carts, 10% deferred orders later paid or cancelled.
    Mixed,
    /// Only get_sku, over Zipf(0.99) SKUs: the read path.
    Reads,
    /// Lock acquire and release pairs, a share of them on contended names
    /// (`--contended-pct`); also against Redis's SET NX PX and Lua release.
    Locks,
}

/// How the flash sale draws its buyers.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Buyers {
    /// Uniformly from all accounts, with repeats, which the limit refuses.
    Random,
    /// Each account once, in a shuffled order the threads share out (each
    /// takes every `threads`-th, and starts its share over at the end):
    /// until the buyers run out every request is a new buyer, so the run
    /// measures orders committed.
    Once,
}

#[derive(Parser)]
#[command(name = "mercato-load", about = "Load generator for mercato")]
struct Args {
    /// `embedded` runs the engine in this process; `tcp://HOST:PORT` drives a
    /// running `mercato serve`; `redis://HOST:PORT` and
    /// `postgres://USER@HOST:PORT/DB` run the flash-sale and carts workloads
    /// against Redis (a Lua script per order) and PostgreSQL (a PL/pgSQL
    /// function per order), for the comparison in `benches/compare.sh`.
    #[arg(long, default_value = "embedded")]
    target: String,
    #[arg(long, value_enum, default_value_t = Workload::FlashSale)]
    workload: Workload,
    /// How flash-sale buyers are drawn.
    #[arg(long, value_enum, default_value_t = Buyers::Random)]
    buyers: Buyers,
    /// Shards; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests per submitted batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Batches each thread keeps in flight.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Offer at most this many requests per second in all (0: as fast as
    /// answers come back): for latency at a set load.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// With a tcp:// target: clients (each with a connection per shard),
    /// shared round-robin by the threads.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Accounts to create; defaults to the workload's own figure.
    #[arg(long)]
    accounts: Option<u64>,
    /// SKUs to create for carts and mixed; defaults to 1,000,000.
    #[arg(long)]
    skus: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Keep the engine's log here; without it everything is in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// always, interval=MS (milliseconds) or never (with --data-dir).
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Under `always`, the least time in microseconds between the starts of
    /// two syncs of a shard's log while the shard stays busy (cut short when
    /// it goes idle); 0 syncs as soon as records arrive.
    #[arg(long, default_value_t = mercato_wal::GROUP_COMMIT_WAIT_US_DEFAULT)]
    group_commit_wait_us: u64,
    /// SKU and account views cached for reads from any shard, each; 0 turns
    /// the view caches off (embedded target).
    #[arg(long, default_value_t = mercato_engine::limits::VIEW_CACHE_ENTRIES_DEFAULT)]
    view_cache_entries: u64,
    /// Orders the engine's tables are sized and touched for at start-up,
    /// over all shards (embedded target); 0 lets the tables grow as they
    /// fill. Under flash-sale it also sizes the hot SKU's buyer table.
    #[arg(long, default_value_t = 0)]
    orders_capacity: u64,
    /// MiB of heap faulted in once the engine is open, and kept from then on
    /// (`engine::alloc::prefault_heap`), so that memory the run grows into
    /// was touched before the clock starts (embedded target). 0: none.
    #[arg(long, default_value_t = 0)]
    heap_prefault_mb: usize,
    /// Spread get_sku and get_account over the shards with this policy
    /// (random, round-robin, smooth-weighted, least-outstanding,
    /// power-of-two) instead of sending them to their owner (tcp target).
    #[arg(long)]
    read_balance: Option<mercato_client::balance::Policy>,
    /// Snapshot a shard's log once this many segments are closed; 0 never.
    #[arg(long, default_value_t = mercato_engine::limits::SNAPSHOT_SEGMENTS_DEFAULT)]
    snapshot_segments: usize,
    /// Bytes per log segment (with --data-dir); small ones make snapshots
    /// frequent, for the crash tests.
    #[arg(long, default_value_t = mercato_engine::Config::default().segment_bytes)]
    segment_bytes: u64,
    /// The snapshot thread's niceness on Linux, 0 (the shards') to 19.
    #[arg(long, default_value_t = mercato_engine::limits::SNAPSHOT_NICE_DEFAULT)]
    snapshot_nice: u8,
    /// Keep each shard's state in the snapshot thread between snapshots.
    #[arg(long)]
    snapshot_keep_state: bool,
    /// Run the snapshot thread in Linux's idle scheduling class.
    #[arg(long)]
    snapshot_sched_idle: bool,
    /// Append `account order state` to this file for every order the
    /// engine acknowledges, as it is acknowledged.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// With --workload locks: the percentage of acquires that go to one of
    /// a few names every thread shares.
    #[arg(long, default_value_t = 10)]
    contended_pct: u64,
    /// With --workload locks: the names each thread takes in turn, which
    /// no other thread takes.
    #[arg(long, default_value_t = 65_536)]
    lock_names: u64,
    /// With --workload locks, embedded: grants of one contended lock
    /// between two threads, to time the hand-over.
    #[arg(long, default_value_t = 20_000)]
    handoffs: u64,
    /// With a tcp:// target (whose server keeps a log): one change-feed
    /// subscriber follows the server from the load's start; its lag and
    /// what it received are reported (`feed_*` in the JSON).
    #[arg(long)]
    subscribe: bool,
    /// With a tcp:// target served over TLS: trust the certificates in
    /// this PEM file (the server's name is taken to be its IP address).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Instead of a load: recover --data-dir without changing it and check
    /// every order in this ack log. Exits 1 if one is missing or in a state
    /// that cannot follow the acknowledged one, or if an invariant fails.
    #[arg(long)]
    verify_acks: Option<PathBuf>,
}

const HOT_SKU: u64 = u64::MAX;
const FUNDS: u64 = 1_000_000_000_000;
/// Enough units that no run of this tool sells out: about 4 billion.
const STOCK_PER_SKU: u32 = u32::MAX - 1;

/// Spaces one thread's batches so that all threads together offer
/// `--rate` requests per second; does nothing without a rate.
struct Pacer {
    every: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(args: &Args) -> Pacer {
        let every = (args.rate > 0).then(|| {
            Duration::from_secs_f64((args.batch * args.threads.max(1)) as f64 / args.rate as f64)
        });
        Pacer {
            every,
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        if let Some(every) = self.every {
            let now = Instant::now();
            if self.next > now {
                std::thread::sleep(self.next - now);
            }
            self.next = self.next.max(now - every) + every;
        }
    }
}

#[derive(Default)]
struct Counts {
    committed: u64,
    rejected: u64,
    requests: u64,
    latency: Latency,
    /// Hits over lookups in the SKU and account views, embedded with the
    /// views on.
    view_hit_ratio: Option<f64>,
    /// What `--subscribe`'s subscriber saw.
    feed: Option<feed::FeedFigures>,
}

impl Counts {
    /// An order the engine placed; a `Reserved` one, `(account, id)`, is
    /// kept for the mixed workload to pay or cancel later.
    fn placed(&mut self, g: &mut Gen, reserved: Option<(u64, u128)>) {
        self.committed += 1;
        g.deferred.extend(reserved);
    }

    /// Fold one thread's counts into the run's.
    fn add_to(self, total: &Mutex<Counts>) {
        let mut t = total.lock().unwrap();
        t.committed += self.committed;
        t.rejected += self.rejected;
        t.requests += self.requests;
        t.latency.merge(&self.latency);
    }
}

/// Let the load threads run for `--seconds`, then tell them to stop.
/// What the threads of a run against a server share: the run's id (order
/// ids are unique per run), the stop flag, the first failure any thread
/// met (the run stops at it), and the counts.
struct RunShared {
    run_id: u64,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    total: Mutex<Counts>,
    started: Instant,
    /// When the load stopped, if what follows it (`--subscribe` draining
    /// its feed) is not to count in its time.
    ended: Mutex<Option<Instant>>,
}

impl RunShared {
    fn new() -> RunShared {
        RunShared {
            run_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            total: Mutex::new(Counts::default()),
            started: Instant::now(),
            ended: Mutex::new(None),
        }
    }

    fn fail(&self, why: impl ToString) {
        self.failure.lock().unwrap().get_or_insert(why.to_string());
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Prints the figures, and the failure that stopped the run early if
    /// one did; the exit code.
    fn finish(self, args: &Args, shards: u16, verdict: &str) -> i32 {
        let ended = self
            .ended
            .into_inner()
            .unwrap()
            .unwrap_or_else(Instant::now);
        let secs = ended.duration_since(self.started).as_secs_f64();
        let c = self.total.into_inner().unwrap();
        report(args, shards, &c, secs, "server", None, verdict);
        match self.failure.into_inner().unwrap() {
            Some(reason) => {
                eprintln!("mercato-load: stopped early: {reason}");
                1
            }
            None => 0,
        }
    }
}

fn run_for(args: &Args, stop: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    // A thread that failed sets `stop` too; the run ends at once then.
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
}

struct Gen {
    workload: Workload,
    buyers: Buyers,
    accounts: u64,
    zipf: Zipf,
    rng: Rng,
    next_id: u128,
    /// Deferred orders waiting to be paid or cancelled: (account, id).
    deferred: Vec<(u64, u128)>,
    /// With `Buyers::Once`: this thread's draws so far, its number, and
    /// how many threads share the accounts out.
    drawn: u64,
    thread: u64,
    threads: u64,
}

/// Steps through all accounts in a shuffled order: `i → i × STRIDE mod n`
/// visits every account once when `STRIDE` and `n` share no factor (a
/// prime, so only a multiple of it could, which `Gen::buyer` checks).
const STRIDE: u64 = 2_654_435_761;

impl Gen {
    fn new(args: &Args, accounts: u64, skus: u64, run_id: u64, thread: usize) -> Gen {
        Gen {
            workload: args.workload,
            buyers: args.buyers,
            accounts,
            zipf: Zipf::new(skus.max(1), 0.99),
            rng: Rng::new(run_id ^ (thread as u64 + 1)),
            // Unique per run and thread: a load restarted on the same data
            // directory must not retry an old order id.
            next_id: (u128::from(run_id) << 64) | ((thread as u128) << 48),
            deferred: Vec::new(),
            drawn: 0,
            thread: thread as u64,
            threads: args.threads.max(1) as u64,
        }
    }

    /// The next flash-sale buyer.
    fn buyer(&mut self) -> u64 {
        match self.buyers {
            Buyers::Random => self.rng.below(self.accounts),
            Buyers::Once => {
                let n = self.accounts;
                let i = (self.drawn * self.threads + self.thread) % n;
                self.drawn += 1;
                if n % STRIDE == 0 {
                    return i;
                }
                (u128::from(i) * u128::from(STRIDE) % u128::from(n)) as u64
            }
        }
    }

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
                    account: self.buyer(),
                    lines: vec![LineRequest::new(HOT_SKU, 1)],
                    payment: Payment::Immediate,
                })
            }
            Workload::Carts => self.cart(Payment::Immediate),
            Workload::Reads => Command::GetSku {
                sku: self.zipf.sample(&mut self.rng) - 1,
            },
            Workload::Locks => unreachable!("the locks workload draws its own (load/locks.rs)"),
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

/// Whether `sku` already has stock: a data directory loaded before, perhaps
/// by a run killed during its setup, must not be restocked past `u32::MAX`.
fn stocked(h: &Handle, sku: u64) -> bool {
    matches!(h.get_sku(sku), Ok(Ok(v)) if u64::from(v.available) + u64::from(v.reserved) + u64::from(v.sold) > 0)
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
        if !stocked(h, HOT_SKU) {
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
        }
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
        if !stocked(h, 0) {
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

fn drive(
    h: &Handle,
    args: &Args,
    accounts: u64,
    skus: u64,
    acks: Option<&Mutex<std::fs::File>>,
) -> (Counts, f64) {
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let stop = AtomicBool::new(false);
    let total = Mutex::new(Counts::default());
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (h, stop, total, done) = (h.clone(), &stop, &total, &done);
            s.spawn(move || {
                let mut g = Gen::new(args, accounts, skus, run_id, t);
                let mut c = Counts::default();
                let mut in_flight = std::collections::VecDeque::new();
                let mut pacer = Pacer::new(args);
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    while !stopping && in_flight.len() < args.pipeline.max(1) {
                        pacer.wait();
                        let batch: Vec<Command> = (0..args.batch).map(|_| g.next()).collect();
                        let placing: Vec<bool> = batch
                            .iter()
                            .map(|c| matches!(c, Command::PlaceOrder(_)))
                            .collect();
                        let ticket = h.submit_ticket(batch).expect("the engine is up");
                        in_flight.push_back((Instant::now(), placing, ticket));
                    }
                    let Some((at, placing, ticket)) = in_flight.pop_front() else {
                        break;
                    };
                    let answers: Vec<_> = ticket
                        .wait()
                        .into_iter()
                        .collect::<Result<_, _>>()
                        .expect("the engine is up");
                    c.latency.record_batch(at, answers.len() as u64);
                    c.requests += answers.len() as u64;
                    if let Some(acks) = acks {
                        log_acks(acks, &answers);
                    }
                    for (answer, placed) in answers.into_iter().zip(placing) {
                        match answer {
                            Ok(Reply::Order(o)) if placed => {
                                let reserved = o.state == mercato_engine::OrderState::Reserved;
                                c.placed(&mut g, reserved.then_some((o.account, o.id)));
                            }
                            Err(_) if placed => c.rejected += 1,
                            _ => {}
                        }
                    }
                    done.fetch_add(args.batch as u64, Ordering::Relaxed);
                }
                c.add_to(total);
            });
        }
        run_for(args, &stop);
    });
    (total.into_inner().unwrap(), started.elapsed().as_secs_f64())
}

/// The ack log, opened to append; exits 2 if it cannot be.
fn open_ack_log(p: &Path) -> Mutex<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(p)
        .unwrap_or_else(|e| {
            eprintln!("mercato-load: {}: {e}", p.display());
            std::process::exit(2);
        });
    // A run killed in the middle of a write leaves a line without its
    // newline; end it, or this run's first line would be glued to it.
    if ends_mid_line(&mut f) {
        f.write_all(b"\n").expect("append to the ack log");
    }
    Mutex::new(f)
}

/// Append `account order state` lines, one write for them all, so that
/// lines from two threads never interleave.
fn append_acks(acks: &Mutex<std::fs::File>, lines: impl Iterator<Item = (u64, u128, String)>) {
    let mut text = String::new();
    for (account, id, state) in lines {
        text.push_str(&format!("{account} {id} {state}\n"));
    }
    if !text.is_empty() {
        acks.lock()
            .unwrap()
            .write_all(text.as_bytes())
            .expect("append to the ack log");
    }
}

/// One write per batch, so lines from two threads never interleave.
fn log_acks(acks: &Mutex<std::fs::File>, answers: &[Result<Reply, mercato_engine::Reject>]) {
    append_acks(
        acks,
        answers.iter().filter_map(|a| match a {
            Ok(Reply::Order(o)) => Some((o.account, o.id, format!("{:?}", o.state))),
            _ => None,
        }),
    );
}

fn ends_mid_line(f: &mut std::fs::File) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

fn parse_state(s: &str) -> Option<OrderState> {
    Some(match s {
        "Reserved" => OrderState::Reserved,
        "Paid" => OrderState::Paid,
        "Cancelled" => OrderState::Cancelled,
        "Expired" => OrderState::Expired,
        "Refunded" => OrderState::Refunded,
        _ => return None,
    })
}

/// Whether an order acknowledged in state `acked` may since have reached `now`.
fn may_follow(acked: OrderState, now: OrderState) -> bool {
    use OrderState::*;
    acked == now
        || matches!(
            (acked, now),
            (Reserved, Paid | Cancelled | Expired | Refunded) | (Paid, Refunded)
        )
}

/// `--verify-acks`: every acknowledged order is in the recovered directory,
/// in its acknowledged state or one that may follow it; invariants hold.
fn verify_acks(acks: &Path, dir: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(acks).map_err(|e| format!("{}: {e}", acks.display()))?;
    let (shards, report) =
        mercato_engine::durable::recovery::inspect(dir).map_err(|e| e.to_string())?;
    let n = shards.len() as u16;
    // The last acknowledged state of each order wins: a pay follows its place.
    let mut last = std::collections::HashMap::new();
    let mut torn_lines = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = match f[..] {
            [a, o, st] => a
                .parse::<u64>()
                .ok()
                .zip(o.parse::<u128>().ok())
                .zip(parse_state(st)),
            _ => None,
        };
        match parsed {
            Some(((account, id), state)) => {
                last.insert((account, id), state);
            }
            // A line cut short by a kill: every prefix of an ack line is
            // either the whole line or fails to parse, so nothing is lost
            // by skipping it (it was never acknowledged in full).
            None => torn_lines += 1,
        }
    }
    let mut bad = Vec::new();
    for (&(account, id), &acked) in &last {
        let shard = &shards[mercato_engine::hash::shard_of(account, n) as usize];
        match shard.order(account, id) {
            None => bad.push(format!(
                "order {id} of account {account}: acknowledged {acked:?}, missing"
            )),
            Some(o) if !may_follow(acked, o.state) => bad.push(format!(
                "order {id} of account {account}: acknowledged {acked:?}, recovered {:?}",
                o.state
            )),
            Some(_) => {}
        }
    }
    let parts: Vec<_> = shards.iter().map(|s| s.audit_part()).collect();
    let audit = mercato_engine::audit::audit(&parts);
    if !audit.ok() {
        bad.push(format!("invariants violated: {:?}", audit.violations));
    }
    if !audit.quiescent {
        bad.push("recovered shards are not quiet; the cross-shard check did not run".into());
    }
    if !bad.is_empty() {
        bad.truncate(20);
        return Err(bad.join("\n"));
    }
    let torn = report.shards.iter().filter(|s| s.torn.is_some()).count();
    Ok(format!(
        "{} acknowledged orders verified ({torn_lines} torn ack lines skipped); {} holds settled, {} corrections, {} torn tails; invariants hold",
        last.len(),
        report.holds_settled,
        report.corrections,
        torn
    ))
}

/// What `--target` names: this process's engine, a `mercato serve`, or a
/// peer the comparison runs against (Redis, PostgreSQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Embedded,
    Tcp,
    Peer,
}

/// Flags that only mean something for one kind of target, by their ids.
const EMBEDDED_ONLY: &[&str] = &[
    "shards",
    "data_dir",
    "durability",
    "group_commit_wait_us",
    "view_cache_entries",
    "orders_capacity",
    "heap_prefault_mb",
    "snapshot_segments",
    "segment_bytes",
    "snapshot_nice",
    "snapshot_keep_state",
    "snapshot_sched_idle",
];
const TCP_ONLY: &[&str] = &["connections", "read_balance", "subscribe"];

/// Refuse a flag given for a target it does nothing for, rather than run
/// as if it had been taken (an `--ack-log` once went silently unwritten
/// over TCP). `--data-dir` is how `--verify-acks` finds its directory.
fn misplaced_flags(m: &clap::ArgMatches, kind: TargetKind, verifying: bool) -> Vec<String> {
    let given = |id: &&&str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let peer_only: &[&str] = &["pipeline", "ack_log"];
    let (wrong, target): (Vec<&str>, _) = match kind {
        TargetKind::Tcp => (
            EMBEDDED_ONLY.to_vec(),
            "a tcp:// target (the server has its own)",
        ),
        TargetKind::Embedded => (TCP_ONLY.to_vec(), "the embedded target"),
        TargetKind::Peer => (
            [EMBEDDED_ONLY, TCP_ONLY, peer_only].concat(),
            "a redis:// or postgres:// target",
        ),
    };
    wrong
        .iter()
        .filter(given)
        .filter(|id| !(verifying && **id == "data_dir"))
        .map(|id| format!("--{} does nothing for {target}", id.replace('_', "-")))
        .collect()
}

fn main() {
    let matches = <Args as clap::CommandFactory>::command().get_matches();
    let args =
        <Args as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let kind = if args.target.starts_with("tcp://") {
        TargetKind::Tcp
    } else if ["redis://", "postgres://", "postgresql://"]
        .iter()
        .any(|p| args.target.starts_with(p))
    {
        TargetKind::Peer
    } else {
        TargetKind::Embedded
    };
    let misplaced = misplaced_flags(&matches, kind, args.verify_acks.is_some());
    if !misplaced.is_empty() {
        eprintln!("mercato-load: {}", misplaced.join("; "));
        std::process::exit(2);
    }
    if let Some(acks) = &args.verify_acks {
        let Some(dir) = &args.data_dir else {
            eprintln!("mercato-load: --verify-acks needs --data-dir");
            std::process::exit(2);
        };
        match verify_acks(acks, dir) {
            Ok(summary) => {
                println!("{summary}");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("mercato-load: verification failed:\n{e}");
                std::process::exit(1);
            }
        }
    }
    let accounts = args.accounts.unwrap_or(match args.workload {
        Workload::FlashSale => 10_000_000,
        _ => 1_000_000,
    });
    let skus = args.skus.unwrap_or(1_000_000);
    if let Some(addr) = args.target.strip_prefix("tcp://") {
        let addr: std::net::SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mercato-load: target {:?}: {e}", args.target);
                std::process::exit(2);
            }
        };
        if args.workload == Workload::Locks {
            std::process::exit(locks::run_tcp(&args, addr));
        }
        std::process::exit(tcp::run(&args, addr, accounts, skus));
    }
    if args.target.starts_with("redis://") && args.workload == Workload::Locks {
        std::process::exit(locks::run_redis(&args, &args.target));
    }
    if args.target.starts_with("redis://") {
        std::process::exit(redis::run(&args, &args.target, accounts, skus));
    }
    if kind == TargetKind::Peer {
        std::process::exit(postgres::run(&args, &args.target, accounts, skus));
    }
    if args.target != "embedded" {
        eprintln!(
            "mercato-load: target {:?} is neither embedded nor tcp://HOST:PORT",
            args.target
        );
        std::process::exit(2);
    }
    // Catalog and wallets are known up front, so their tables are sized
    // once. Orders grow with the run: a table sized for the target rate is
    // mostly empty, and every insert into it faults in a fresh page.
    let capacity = Capacity {
        skus: skus as usize,
        accounts: accounts as usize,
        orders: args.orders_capacity as usize,
        // Every flash-sale buyer holds units of the one limited SKU.
        purchases: match args.workload {
            Workload::FlashSale => args.orders_capacity as usize,
            _ => 0,
        },
        // Flash-sale buyers who come back are refused by the limit, and
        // each refusal is remembered; size for as many as orders.
        rejections: args.orders_capacity as usize,
    };
    let config = Config {
        shards: args.shards,
        capacity,
        data_dir: args.data_dir.clone(),
        durability: args.durability,
        group_commit_wait_us: args.group_commit_wait_us,
        snapshot_segments: args.snapshot_segments,
        segment_bytes: args.segment_bytes,
        snapshot_nice: args.snapshot_nice,
        snapshot_keep_state: args.snapshot_keep_state,
        snapshot_sched_idle: args.snapshot_sched_idle,
        view_cache_entries: args.view_cache_entries,
        ..Config::default()
    };
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mercato-load: {e}");
            std::process::exit(2);
        }
    };
    if args.heap_prefault_mb > 0 {
        mercato_engine::alloc::prefault_heap(args.heap_prefault_mb << 20);
    }
    let h = engine.handle();
    if args.workload == Workload::Locks {
        let code = locks::run_embedded(&args, &h);
        engine.shutdown();
        std::process::exit(code);
    }
    // A data directory loaded by an earlier run keeps its catalog; one whose
    // loading was cut short is loaded again (puts and restocks only add).
    let ready = args.data_dir.as_ref().map(|d| {
        let catalog = match args.workload {
            Workload::FlashSale => "hot".to_string(),
            _ => skus.to_string(),
        };
        d.join(format!("load-ready-{catalog}-{accounts}"))
    });
    if !ready.as_ref().is_some_and(|r| r.exists()) {
        if let Err(e) = setup(&h, &args, accounts, skus) {
            eprintln!("mercato-load: setup failed: {e}");
            std::process::exit(2);
        }
        if let Some(r) = &ready {
            std::fs::write(r, b"").expect("mark the catalog loaded");
        }
    }
    let acks = args.ack_log.as_deref().map(open_ack_log);
    let (mut c, secs) = drive(&h, &args, accounts, skus, acks.as_ref());
    c.view_hit_ratio = h.view_stats().and_then(|(s, a)| {
        let looked = s.hits + s.misses + a.hits + a.misses;
        (looked > 0).then(|| (s.hits + a.hits) as f64 / looked as f64)
    });
    let audit = h.audit().expect("the engine is up");
    let ok = audit.ok() && audit.quiescent;
    let durability = match &args.data_dir {
        Some(_) => args.durability.to_string(),
        None => "memory".to_string(),
    };
    let verdict = if ok {
        "all invariants hold".to_string()
    } else {
        format!("VIOLATED {:?}", audit.violations)
    };
    report(&args, h.shards(), &c, secs, &durability, Some(ok), &verdict);
    engine.shutdown();
    std::process::exit(if ok { 0 } else { 1 });
}

/// Print a run's figures, as one JSON object or as text. `invariants` is
/// `None` where the audit cannot run (over TCP the protocol has no audit).
fn report(
    args: &Args,
    shards: u16,
    c: &Counts,
    secs: f64,
    durability: &str,
    invariants: Option<bool>,
    verdict: &str,
) {
    let workload = format!("{:?}", args.workload)
        .to_lowercase()
        .replace("flashsale", "flash-sale");
    let buyers = format!("{:?}", args.buyers).to_lowercase();
    let (p50, p99, p999) = (c.latency.p(0.5), c.latency.p(0.99), c.latency.p(0.999));
    let ok = invariants.map_or("null".to_string(), |ok| ok.to_string());
    let views = c
        .view_hit_ratio
        .map_or("null".to_string(), |r| format!("{r:.4}"));
    // The subscriber's figures, read once for either format.
    let feed = (c.feed.as_ref()).map(|f| {
        (
            f.events,
            f.orders,
            f.lag.p(0.5),
            f.lag.p(0.99),
            f.lag.hist.max(),
            f.drain_ms,
        )
    });
    let feed_json = feed.map_or(String::new(), |(events, orders, p50, p99, max, drain)| {
        format!(
            ",\"feed_events\":{events},\"feed_orders\":{orders},\"feed_lag_p50_us\":{p50},\"feed_lag_p99_us\":{p99},\"feed_lag_max_us\":{max},\"feed_drain_ms\":{drain}"
        )
    });
    if args.json {
        println!(
            "{{\"workload\":\"{workload}\",\"buyers\":\"{buyers}\",\"target\":\"{}\",\"shards\":{shards},\"threads\":{},\"batch\":{},\"pipeline\":{},\"durability\":\"{durability}\",\"seconds\":{secs:.3},\
             \"orders_committed\":{},\"orders_rejected\":{},\"orders_per_sec\":{:.0},\"requests_per_sec\":{:.0},\
             \"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"view_hit_ratio\":{views},\"invariants_ok\":{ok}{feed_json}}}",
            args.target,
            args.threads,
            args.batch,
            args.pipeline,
            c.committed,
            c.rejected,
            c.committed as f64 / secs,
            c.requests as f64 / secs,
        );
    } else {
        println!(
            "workload {workload}, target {}, {shards} shards, {} threads, batch {}, pipeline {}",
            args.target, args.threads, args.batch, args.pipeline
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
        if let Some(r) = c.view_hit_ratio {
            println!("  view cache hit ratio: {:.1}%", r * 100.0);
        }
        if let Some((events, orders, p50, p99, max, drain)) = feed {
            println!(
                "  feed: {events} events, {orders} orders placed; lag from an order's stamp p50 {p50} us, p99 {p99} us, max {max} us; {drain} ms behind when the load stopped"
            );
        }
        println!("  audit: {verdict}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `each` rounds of draws, every thread drawing once a round as the
    /// load's threads share the accounts out.
    fn draws(accounts: u64, threads: usize, each: usize) -> Vec<u64> {
        let threads_arg = threads.to_string();
        let args = Args::parse_from([
            "mercato-load",
            "--buyers",
            "once",
            "--threads",
            &threads_arg,
        ]);
        let mut gens: Vec<Gen> = (0..threads)
            .map(|t| Gen::new(&args, accounts, 1, 7, t))
            .collect();
        let mut drawn = Vec::new();
        for _ in 0..each {
            for g in &mut gens {
                drawn.push(g.buyer());
            }
        }
        drawn
    }

    #[test]
    fn buyers_once_visit_every_account_once_before_any_comes_back() {
        for (accounts, threads) in [(10, 3), (1_000, 2), (997, 4), (1, 2)] {
            let rounds = (accounts as usize).div_ceil(threads) + 1;
            let drawn = draws(accounts, threads, rounds);
            // Round k's draw by thread t is number k × threads + t of the
            // shuffled order, so the first `accounts` draws are all of it.
            let mut first = drawn[..accounts as usize].to_vec();
            first.sort_unstable();
            assert_eq!(
                first,
                (0..accounts).collect::<Vec<_>>(),
                "{accounts} over {threads}"
            );
            assert!(drawn.iter().all(|&a| a < accounts));
        }
        let drawn = draws(1_000, 1, 10);
        assert_ne!(drawn, (0..10).collect::<Vec<_>>(), "shuffled, not in order");
    }
}
