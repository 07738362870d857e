//! `mercato-cli`: talk to a running `mercato serve` from a shell.
//!
//! ```text
//! mercato-cli sku put 7 --price 1999 --limit 1
//! mercato-cli sku restock 7 100
//! mercato-cli account deposit 42 10000
//! mercato-cli order place 1 --account 42 --line 7:1
//! mercato-cli order get 1 --account 42 --json
//! mercato-cli lock acquire nightly-report --ttl-ms 30000 --wait-ms 5000
//! mercato-cli lock release nightly-report --token 3
//! ```
//!
//! Exit status: 0 when the server did it, 1 when it refused (a business
//! rejection, printed), 2 when the call failed.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use mercato_client::{CallResult, Client, ClientConfig, LockOptions, wire};

#[derive(Parser)]
#[command(name = "mercato-cli", about = "A command line for mercato serve")]
struct Cli {
    /// Any of the server's ports.
    #[arg(long, default_value = "127.0.0.1:7070", global = true)]
    server: SocketAddr,
    /// The token, if the server wants one. Prefer `MERCATO_TOKEN` or
    /// `--token-file`: a token on the command line shows in `ps`.
    #[arg(long, global = true)]
    auth_token: Option<String>,
    /// A file whose first line is the token.
    #[arg(long, global = true)]
    token_file: Option<std::path::PathBuf>,
    /// Connect with TLS, trusting the certificates in this PEM file (the
    /// server's, or its authority's). `MERCATO_TLS_CA` may name it instead.
    #[arg(long, global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry. Default: the IP
    /// address of `--server`.
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
    /// A client certificate (PEM), for a server started with
    /// `--tls-client-ca`; with `--tls-key`.
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(subcommand)]
    Sku(SkuCmd),
    #[command(subcommand)]
    Account(AccountCmd),
    #[command(subcommand)]
    Order(OrderCmd),
    /// The cache keyspace, served by any shard. Keys and values are taken
    /// as UTF-8 text here; the protocol carries any bytes.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Named locks with leases and fencing tokens. A lease taken here is
    /// not tied to this command's connection: it lasts its TTL unless
    /// renewed or released by token.
    #[command(subcommand)]
    Lock(LockCmd),
    /// Named semaphores: N permits, each a lease with its own token.
    #[command(subcommand)]
    Semaphore(SemaphoreCmd),
    /// Sagas' progress as mercato records it.
    #[command(subcommand)]
    Saga(SagaCmd),
    /// Follow the change feed: one line per event (JSON Lines with
    /// --json) until interrupted.
    Feed {
        /// `now`, `snapshot` (a copy of the state, then the stream), or
        /// the LSN per shard to start at, as `12,40`.
        #[arg(long, default_value = "now")]
        from: String,
        /// A durable subscription: resumed from what it acknowledged
        /// (--from is then for a new one), and acknowledged after each
        /// batch printed.
        #[arg(long)]
        subscription: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        max_events: Option<u64>,
    },
    /// The change feed's durable subscriptions.
    #[command(subcommand)]
    Subscription(SubscriptionCmd),
    /// Each shard's reported load.
    Stats,
    /// The server's health: connections, snapshot failures, failed logs.
    Info,
}

/// What taking a lock or a permit says.
#[derive(clap::Args)]
struct Take {
    name: String,
    #[arg(long)]
    ttl_ms: u64,
    /// Wait up to this long; without it, answer at once.
    #[arg(long)]
    wait_ms: Option<u64>,
    /// An id for the holder, shown by `show`.
    #[arg(long, default_value_t = 0)]
    owner: u64,
}

/// Releasing, renewing and showing, for locks and semaphores alike.
#[derive(Subcommand)]
enum LeaseCmd {
    /// End the lease held under a token.
    Release {
        name: String,
        #[arg(long)]
        token: u64,
    },
    /// Extend the lease held under a token to TTL from now.
    Renew {
        name: String,
        #[arg(long)]
        token: u64,
        #[arg(long)]
        ttl_ms: u64,
    },
    /// Holders, last token, waiters.
    Show { name: String },
}

#[derive(Subcommand)]
enum LockCmd {
    /// Take the lock; prints its fencing token.
    Acquire(Take),
    #[command(flatten)]
    Lease(LeaseCmd),
}

#[derive(Subcommand)]
enum SemaphoreCmd {
    /// Take a permit; prints its fencing token.
    Acquire {
        #[command(flatten)]
        take: Take,
        /// The semaphore's permits; it keeps those it was first taken with.
        #[arg(long)]
        permits: u32,
    },
    #[command(flatten)]
    Lease(LeaseCmd),
}

#[derive(Subcommand)]
enum SubscriptionCmd {
    List,
    Drop { name: String },
}

#[derive(Subcommand)]
enum SagaCmd {
    /// Every saga the server keeps, one a line: all, or only those not
    /// ended (`--unfinished`), by shard then id.
    List {
        #[arg(long)]
        unfinished: bool,
    },
    /// One saga and its steps.
    Show { id: u128 },
}

#[derive(Subcommand)]
enum CacheCmd {
    Set {
        key: String,
        value: String,
        /// Forget the value after this long; 0 keeps it until evicted.
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
    },
    Get {
        key: String,
    },
    Del {
        key: String,
    },
    /// The keyspace's hit, miss, insert, eviction and expiry counters.
    Stats,
}

#[derive(Subcommand)]
enum SkuCmd {
    Put {
        sku: u64,
        #[arg(long)]
        price: u64,
        /// Units one account may hold in live orders; 0 for no limit.
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    Get {
        sku: u64,
    },
    Restock {
        sku: u64,
        qty: u32,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    Deposit { account: u64, amount: u64 },
    Withdraw { account: u64, amount: u64 },
    Get { account: u64 },
}

#[derive(Subcommand)]
enum OrderCmd {
    Place {
        id: u128,
        #[arg(long)]
        account: u64,
        /// SKU:QTY, repeated for each line.
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        /// Reserve only, for this long, instead of paying at once.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    Pay {
        id: u128,
        #[arg(long)]
        account: u64,
    },
    Cancel {
        id: u128,
        #[arg(long)]
        account: u64,
    },
    Refund {
        id: u128,
        #[arg(long)]
        account: u64,
        #[arg(long)]
        restock: bool,
    },
    Get {
        id: u128,
        #[arg(long)]
        account: u64,
    },
    /// An account's orders, newest first.
    List {
        #[arg(long)]
        account: u64,
        /// Go on from the order placed before this one (the last id of a page).
        #[arg(long)]
        after: Option<u128>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn sku_json(v: &wire::SkuView) -> String {
    format!(
        "{{\"id\":{},\"price\":{},\"available\":{},\"reserved\":{},\"sold\":{},\"per_user_limit\":{}}}",
        v.id, v.price, v.available, v.reserved, v.sold, v.per_user_limit
    )
}

fn account_json(v: &wire::AccountView) -> String {
    format!("{{\"id\":{},\"balance\":{}}}", v.id, v.balance)
}

fn order_json(v: &wire::OrderView) -> String {
    let lines: Vec<String> = v
        .lines
        .iter()
        .map(|l| {
            format!(
                "{{\"sku\":{},\"qty\":{},\"unit_price\":{}}}",
                l.sku, l.qty, l.unit_price
            )
        })
        .collect();
    format!(
        "{{\"id\":\"{}\",\"account\":{},\"lines\":[{}],\"total\":{},\"state\":\"{:?}\",\"created_at\":{},\"expires_at\":{},\"restocked\":{}}}",
        v.id,
        v.account,
        lines.join(","),
        v.total,
        v.state,
        v.created_at,
        v.expires_at,
        v.restocked
    )
}

fn order_text(v: &wire::OrderView) -> String {
    let lines: Vec<String> = v
        .lines
        .iter()
        .map(|l| format!("{}×{} @ {}", l.sku, l.qty, l.unit_price))
        .collect();
    format!(
        "order {} of account {}: {:?}, total {}, lines {}",
        v.id,
        v.account,
        v.state,
        v.total,
        lines.join(", ")
    )
}

/// Print an answer and turn it into the exit status.
fn show<T>(
    json: bool,
    r: CallResult<T>,
    text: impl Fn(&T) -> String,
    as_json: impl Fn(&T) -> String,
) -> i32 {
    match r {
        Ok(Ok(v)) => {
            println!("{}", if json { as_json(&v) } else { text(&v) });
            0
        }
        Ok(Err(reject)) => {
            if json {
                println!("{{\"rejected\":\"{reject:?}\"}}");
            } else {
                println!("refused: {reject:?}");
            }
            1
        }
        Err(e) => {
            eprintln!("mercato-cli: {e}");
            2
        }
    }
}

fn parse_line(s: &str) -> Result<wire::LineRequest, String> {
    let (sku, qty) = s
        .split_once(':')
        .ok_or(format!("line {s:?} is not SKU:QTY"))?;
    Ok(wire::LineRequest {
        sku: sku.parse().map_err(|_| format!("bad SKU in {s:?}"))?,
        qty: qty.parse().map_err(|_| format!("bad quantity in {s:?}"))?,
        expected_unit_price: None,
    })
}

fn main() {
    let cli = Cli::parse();
    let config = ClientConfig {
        auth_token: match token(&cli) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mercato-cli: {e}");
                std::process::exit(2);
            }
        },
        tls: match tls(&cli) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mercato-cli: {e}");
                std::process::exit(2);
            }
        },
        ..ClientConfig::default()
    };
    let c = match Client::connect(cli.server, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mercato-cli: {e}");
            std::process::exit(2);
        }
    };
    let j = cli.json;
    let sku_text = |v: &wire::SkuView| {
        format!(
            "sku {}: price {}, {} available, {} reserved, {} sold, per-user limit {}",
            v.id, v.price, v.available, v.reserved, v.sold, v.per_user_limit
        )
    };
    let account_text = |v: &wire::AccountView| format!("account {}: balance {}", v.id, v.balance);
    let code = match cli.cmd {
        Cmd::Sku(SkuCmd::Put { sku, price, limit }) => {
            show(j, c.put_sku(sku, price, limit), sku_text, sku_json)
        }
        Cmd::Sku(SkuCmd::Get { sku }) => show(j, c.get_sku(sku), sku_text, sku_json),
        Cmd::Sku(SkuCmd::Restock { sku, qty }) => show(j, c.restock(sku, qty), sku_text, sku_json),
        Cmd::Account(AccountCmd::Deposit { account, amount }) => {
            show(j, c.deposit(account, amount), account_text, account_json)
        }
        Cmd::Account(AccountCmd::Withdraw { account, amount }) => {
            show(j, c.withdraw(account, amount), account_text, account_json)
        }
        Cmd::Account(AccountCmd::Get { account }) => {
            show(j, c.get_account(account), account_text, account_json)
        }
        Cmd::Order(OrderCmd::Place {
            id,
            account,
            lines,
            ttl_ms,
        }) => {
            let lines: Result<Vec<_>, _> = lines.iter().map(|l| parse_line(l)).collect();
            match lines {
                Ok(lines) => {
                    let payment = match ttl_ms {
                        Some(ttl_ms) => wire::Payment::Deferred { ttl_ms },
                        None => wire::Payment::Immediate,
                    };
                    show(
                        j,
                        c.place_order(id, account, lines, payment),
                        order_text,
                        order_json,
                    )
                }
                Err(e) => {
                    eprintln!("mercato-cli: {e}");
                    2
                }
            }
        }
        Cmd::Order(OrderCmd::Pay { id, account }) => {
            show(j, c.pay(account, id), order_text, order_json)
        }
        Cmd::Order(OrderCmd::Cancel { id, account }) => {
            show(j, c.cancel(account, id), order_text, order_json)
        }
        Cmd::Order(OrderCmd::Refund {
            id,
            account,
            restock,
        }) => show(j, c.refund(account, id, restock), order_text, order_json),
        Cmd::Order(OrderCmd::Get { id, account }) => {
            show(j, c.get_order(account, id), order_text, order_json)
        }
        Cmd::Order(OrderCmd::List {
            account,
            after,
            limit,
        }) => show(
            j,
            c.list_orders(account, after, limit),
            |p| {
                let mut text: Vec<String> = p.orders.iter().map(order_text).collect();
                if let (true, Some(last)) = (p.more, p.orders.last()) {
                    text.push(format!("more: --after {}", last.id));
                }
                text.join("\n")
            },
            |p| {
                format!(
                    "{{\"orders\":[{}],\"more\":{}}}",
                    p.orders
                        .iter()
                        .map(order_json)
                        .collect::<Vec<_>>()
                        .join(","),
                    p.more
                )
            },
        ),
        Cmd::Cache(CacheCmd::Set { key, value, ttl_ms }) => show(
            j,
            c.cache_set(key.as_bytes(), value.as_bytes(), ttl_ms),
            |()| "stored".to_string(),
            |()| "{\"stored\":true}".to_string(),
        ),
        Cmd::Cache(CacheCmd::Get { key }) => show(
            j,
            c.cache_get(key.as_bytes()),
            |v| match v {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None => "(none)".to_string(),
            },
            |v| match v {
                Some(v) => format!("{{\"value\":{:?}}}", String::from_utf8_lossy(v)),
                None => "{\"value\":null}".to_string(),
            },
        ),
        Cmd::Cache(CacheCmd::Del { key }) => show(
            j,
            c.cache_del(key.as_bytes()),
            |found| if *found { "deleted" } else { "(none)" }.to_string(),
            |found| format!("{{\"deleted\":{found}}}"),
        ),
        Cmd::Cache(CacheCmd::Stats) => show(
            j,
            c.cache_stats().map(Ok),
            |s| {
                format!(
                    "{} entries, {} of {} bytes, {}; hits {}, misses {}, inserts {}, evictions {}, expirations {}",
                    s.entries,
                    s.bytes,
                    s.budget_bytes,
                    if s.policy == 1 { "arc" } else { "lru" },
                    s.hits,
                    s.misses,
                    s.inserts,
                    s.evictions,
                    s.expirations
                )
            },
            |s| {
                format!(
                    "{{\"entries\":{},\"bytes\":{},\"budget_bytes\":{},\"policy\":\"{}\",\"hits\":{},\"misses\":{},\"inserts\":{},\"evictions\":{},\"expirations\":{}}}",
                    s.entries,
                    s.bytes,
                    s.budget_bytes,
                    if s.policy == 1 { "arc" } else { "lru" },
                    s.hits,
                    s.misses,
                    s.inserts,
                    s.evictions,
                    s.expirations
                )
            },
        ),
        Cmd::Info => show(j, c.info().map(Ok), info_text, info_json),
        Cmd::Lock(LockCmd::Acquire(t)) => acquire(&c, j, &t, 1),
        Cmd::Semaphore(SemaphoreCmd::Acquire { take, permits }) => acquire(&c, j, &take, permits),
        Cmd::Lock(LockCmd::Lease(l)) | Cmd::Semaphore(SemaphoreCmd::Lease(l)) => lease(&c, j, l),
        Cmd::Saga(SagaCmd::List { unfinished }) => {
            let all = if unfinished {
                c.sagas_unfinished()
            } else {
                c.sagas_all()
            };
            show(
                j,
                all,
                |v| v.iter().map(saga_text).collect::<Vec<_>>().join("\n"),
                |v| {
                    format!(
                        "[{}]",
                        v.iter().map(saga_json).collect::<Vec<_>>().join(",")
                    )
                },
            )
        }
        Cmd::Saga(SagaCmd::Show { id }) => show(
            j,
            c.saga_get(id),
            |v| {
                let mut text = vec![saga_text(v)];
                for (i, s) in v.steps.iter().enumerate() {
                    text.push(format!(
                        "  step {i} {}: {:?}, {} bytes of data",
                        String::from_utf8_lossy(&s.name),
                        s.state,
                        s.data.len()
                    ));
                }
                text.join("\n")
            },
            saga_json,
        ),
        Cmd::Feed {
            from,
            subscription,
            max_events,
        } => follow(&c, j, &from, subscription.as_deref(), max_events),
        Cmd::Subscription(SubscriptionCmd::List) => show(
            j,
            c.subscriptions(),
            |list| {
                (list.iter())
                    .map(|s| {
                        let state = if s.lost { "LOST" } else { "live" };
                        format!("{} {state} at {:?}", s.name, s.positions)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            |list| {
                let items: Vec<String> = (list.iter())
                    .map(|s| {
                        format!(
                            "{{\"name\":{},\"lost\":{},\"positions\":{:?}}}",
                            json_string(&s.name),
                            s.lost,
                            s.positions
                        )
                    })
                    .collect();
                format!("[{}]", items.join(","))
            },
        ),
        Cmd::Subscription(SubscriptionCmd::Drop { name }) => show(
            j,
            c.drop_subscription(&name),
            |found| if *found { "dropped" } else { "(none)" }.to_string(),
            |found| format!("{{\"dropped\":{found}}}"),
        ),
        Cmd::Stats => {
            for (shard, load, outstanding) in c.stats() {
                if j {
                    println!("{{\"shard\":{shard},\"load\":{load},\"outstanding\":{outstanding}}}");
                } else {
                    println!("shard {shard}: load {load}, outstanding {outstanding}");
                }
            }
            0
        }
    };
    std::process::exit(code);
}

/// Release, renew or show a lock's or semaphore's lease.
fn lease(c: &Client, j: bool, cmd: LeaseCmd) -> i32 {
    match cmd {
        LeaseCmd::Release { name, token } => show(
            j,
            c.lock_release(name.as_bytes(), token),
            |()| "released".to_string(),
            |()| "{\"released\":true}".to_string(),
        ),
        LeaseCmd::Renew {
            name,
            token,
            ttl_ms,
        } => show(
            j,
            c.lock_renew(name.as_bytes(), token, ttl_ms),
            |at| format!("renewed: the lease ends at {at}"),
            |at| format!("{{\"expires_at\":{at}}}"),
        ),
        LeaseCmd::Show { name } => show(
            j,
            c.lock_inspect(name.as_bytes()),
            |i| {
                let holders: Vec<String> = (i.holders.iter())
                    .map(|h| {
                        format!(
                            "token {} (owner {}) for {} ms more, until {}",
                            h.token, h.owner, h.remaining_ms, h.expires_at
                        )
                    })
                    .collect();
                format!(
                    "{name}: {} permit(s), last token {}, held by [{}], {} waiting",
                    i.permits,
                    i.last_token,
                    holders.join("; "),
                    i.waiters
                )
            },
            |i| {
                let holders: Vec<String> = (i.holders.iter())
                    .map(|h| {
                        format!(
                            "{{\"token\":{},\"owner\":{},\"expires_at\":{},\"remaining_ms\":{}}}",
                            h.token, h.owner, h.expires_at, h.remaining_ms
                        )
                    })
                    .collect();
                format!(
                    "{{\"name\":{},\"permits\":{},\"last_token\":{},\"holders\":[{}],\"waiters\":{}}}",
                    json_string(&name),
                    i.permits,
                    i.last_token,
                    holders.join(","),
                    i.waiters
                )
            },
        ),
    }
}

/// Takes a permit of `name` and prints its token. The lease outlives this
/// process: it is not bound to the connection, and the guard is not
/// dropped (which would release it).
fn acquire(c: &Client, json: bool, take: &Take, permits: u32) -> i32 {
    let name = &take.name;
    let mut opts = LockOptions::new(take.ttl_ms)
        .permits(permits)
        .owner(take.owner);
    if let Some(ms) = take.wait_ms {
        opts = opts.wait_ms(ms);
    }
    let r = c.lock(name.as_bytes(), opts).map(|r| {
        r.map(|g| {
            let held = (g.token(), g.expires_at());
            std::mem::forget(g);
            held
        })
    });
    show(
        json,
        r,
        |(token, at)| format!("{token}\t(lease ends at {at})"),
        |(token, at)| {
            format!(
                "{{\"name\":{},\"token\":{token},\"expires_at\":{at}}}",
                json_string(name)
            )
        },
    )
}

fn saga_text(v: &wire::SagaView) -> String {
    format!(
        "saga {} ({}): {:?}, {} step(s), began {}{}",
        v.id,
        String::from_utf8_lossy(&v.name),
        v.state,
        v.steps.len(),
        v.began_at,
        if v.ended_at > 0 {
            format!(", ended {}", v.ended_at)
        } else {
            String::new()
        }
    )
}

fn saga_json(v: &wire::SagaView) -> String {
    let steps: Vec<String> = (v.steps.iter())
        .map(|s| {
            format!(
                "{{\"name\":{},\"state\":\"{:?}\",\"data_bytes\":{}}}",
                json_string(&String::from_utf8_lossy(&s.name)),
                s.state,
                s.data.len()
            )
        })
        .collect();
    format!(
        "{{\"id\":\"{}\",\"name\":{},\"state\":\"{:?}\",\"began_at\":{},\"ended_at\":{},\"steps\":[{}]}}",
        v.id,
        json_string(&String::from_utf8_lossy(&v.name)),
        v.state,
        v.began_at,
        v.ended_at,
        steps.join(",")
    )
}

/// `mercato-cli feed`: prints events until interrupted or `max` of them.
fn follow(c: &Client, json: bool, from: &str, name: Option<&str>, max: Option<u64>) -> i32 {
    let start = match from {
        "now" => wire::FeedStart::Now,
        "snapshot" => wire::FeedStart::Snapshot,
        lsns => match lsns
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<u64>, _>>()
        {
            Ok(v) => wire::FeedStart::At(v),
            Err(_) => {
                eprintln!("mercato-cli: --from is now, snapshot or LSN,LSN,...; not {lsns:?}");
                return 2;
            }
        },
    };
    let stream = match c.subscribe(name, start, wire::FeedFilter::default()) {
        Ok(Ok(s)) => s,
        other => {
            return show(
                json,
                other.map(|r| r.map(|_| ())),
                |()| String::new(),
                |()| String::new(),
            );
        }
    };
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        use std::io::Write;
        let batch = match stream.next(std::time::Duration::from_secs(1)) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("mercato-cli: {e}");
                return 2;
            }
        };
        if let Some(why) = &batch.error {
            eprintln!("mercato-cli: the feed ended: {why}");
            return 1;
        }
        for item in &batch.items {
            let line = if json {
                feed_json(item)
            } else {
                format!("shard {} lsn {} {:?}", item.shard, item.lsn, item.event)
            };
            // A closed pipe (`| head`) ends it quietly.
            if writeln!(out, "{line}").is_err() {
                return 0;
            }
            printed += 1;
            if max.is_some_and(|m| printed >= m) {
                let _ = out.flush();
                if name.is_some() {
                    let _ = stream.ack(&batch.next);
                }
                return 0;
            }
        }
        let _ = out.flush();
        if name.is_some()
            && let Err(e) = stream.ack(&batch.next)
        {
            eprintln!("mercato-cli: {e}");
            return 2;
        }
    }
}

/// One feed event as a JSON object, with its position.
fn feed_json(item: &wire::FeedItem) -> String {
    use wire::FeedEvent as E;
    let lines = |l: &[wire::Line]| {
        let v: Vec<String> = (l.iter())
            .map(|l| {
                format!(
                    "{{\"sku\":{},\"qty\":{},\"unit_price\":{}}}",
                    l.sku, l.qty, l.unit_price
                )
            })
            .collect();
        format!("[{}]", v.join(","))
    };
    let body = match &item.event {
        E::SkuPut {
            sku,
            price,
            per_user_limit,
        } => {
            format!(
                "\"type\":\"sku_put\",\"sku\":{sku},\"price\":{price},\"per_user_limit\":{per_user_limit}"
            )
        }
        E::Stock {
            sku,
            reason,
            order,
            available,
            reserved,
            sold,
        } => format!(
            "\"type\":\"stock\",\"sku\":{sku},\"reason\":\"{reason:?}\",\"order\":{},\"available\":{available},\"reserved\":{reserved},\"sold\":{sold}",
            order.map_or("null".to_string(), |(a, o)| format!(
                "{{\"account\":{a},\"id\":\"{o}\"}}"
            ))
        ),
        E::StockSet {
            sku,
            available,
            reserved,
            sold,
        } => format!(
            "\"type\":\"stock_set\",\"sku\":{sku},\"available\":{available},\"reserved\":{reserved},\"sold\":{sold}"
        ),
        E::Balance {
            account,
            reason,
            order,
            amount,
            credit,
        } => format!(
            "\"type\":\"balance\",\"account\":{account},\"reason\":\"{reason:?}\",\"order\":{},\"delta\":{}{amount}",
            order.map_or("null".to_string(), |o| format!("\"{o}\"")),
            if *credit { "" } else { "-" }
        ),
        E::OrderPlaced(v) => format!("\"type\":\"order_placed\",\"order\":{}", order_json(v)),
        E::OrderPaid {
            account,
            order,
            lines: l,
        } => format!(
            "\"type\":\"order_paid\",\"account\":{account},\"id\":\"{order}\",\"lines\":{}",
            lines(l)
        ),
        E::OrderCancelled {
            account,
            order,
            lines: l,
        } => format!(
            "\"type\":\"order_cancelled\",\"account\":{account},\"id\":\"{order}\",\"lines\":{}",
            lines(l)
        ),
        E::OrderExpired {
            account,
            order,
            lines: l,
        } => format!(
            "\"type\":\"order_expired\",\"account\":{account},\"id\":\"{order}\",\"lines\":{}",
            lines(l)
        ),
        E::OrderRefunded {
            account,
            order,
            restock,
            lines: l,
        } => format!(
            "\"type\":\"order_refunded\",\"account\":{account},\"id\":\"{order}\",\"restock\":{restock},\"lines\":{}",
            lines(l)
        ),
        E::SkuCopy(v) => format!("\"type\":\"sku_copy\",\"sku\":{}", sku_json(v)),
        E::AccountCopy(v) => format!("\"type\":\"account_copy\",\"account\":{}", account_json(v)),
        E::OrderCopy(v) => format!("\"type\":\"order_copy\",\"order\":{}", order_json(v)),
    };
    format!("{{\"shard\":{},\"lsn\":{},{body}}}", item.shard, item.lsn)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The token: `--auth-token`, else the first line of `--token-file`, else
/// `MERCATO_TOKEN`.
fn token(cli: &Cli) -> Result<Option<String>, String> {
    if let Some(t) = &cli.auth_token {
        return Ok(Some(t.clone()));
    }
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            return Err(format!("--token-file {}: no token in it", path.display()));
        }
        return Ok(Some(first.to_string()));
    }
    Ok(std::env::var("MERCATO_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

/// TLS settings from `--tls-ca` (or `MERCATO_TLS_CA`) and the flags with it.
fn tls(cli: &Cli) -> Result<Option<mercato_client::TlsSettings>, String> {
    let ca = cli.tls_ca.clone().or_else(|| {
        std::env::var_os("MERCATO_TLS_CA")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    let Some(ca) = ca else {
        if cli.tls_cert.is_some() || cli.tls_server_name.is_some() {
            return Err("--tls-cert and --tls-server-name need --tls-ca".into());
        }
        return Ok(None);
    };
    let name = (cli.tls_server_name.clone()).unwrap_or_else(|| cli.server.ip().to_string());
    let client = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
    mercato_client::TlsSettings::from_files(&ca, &name, client)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `info` as text, like Redis' INFO: one `key: value` per line, then a line
/// per shard.
fn info_text(i: &wire::ServerInfo) -> String {
    let snapshots = if i.snapshot_error.is_empty() {
        "ok".to_string()
    } else {
        format!("FAILING: {}", i.snapshot_error)
    };
    let mut out = format!(
        "version: {}\nuptime_s: {}\nshards: {}\ndurability: {}\nconnections: {}\n\
         rss_bytes: {}\nfailed_logs: {}\nsnapshot_failures: {}\nsnapshots: {snapshots}",
        i.version,
        i.uptime_ms / 1_000,
        i.shards,
        i.durability,
        i.connections,
        i.rss_bytes,
        i.failed_logs,
        i.snapshot_failures
    );
    for (n, s) in i.shard_states.iter().enumerate() {
        let checkpoint = match s.checkpoint_age_ms {
            Some(age) => format!("lsn {} written {} s ago", s.checkpoint_lsn, age / 1_000),
            None => "none this run".into(),
        };
        out.push_str(&format!(
            "\nshard {n}: committed_lsn {}, skus {}, accounts {}, orders {}, last checkpoint {checkpoint}",
            s.committed_lsn, s.skus, s.accounts, s.orders
        ));
    }
    out
}

fn info_json(i: &wire::ServerInfo) -> String {
    let shards: Vec<String> = (i.shard_states.iter())
        .map(|s| {
            let age = s
                .checkpoint_age_ms
                .map_or_else(|| "null".to_string(), |a| a.to_string());
            format!(
                "{{\"committed_lsn\":{},\"skus\":{},\"accounts\":{},\"orders\":{},                 \"checkpoint_lsn\":{},\"checkpoint_age_ms\":{age}}}",
                s.committed_lsn, s.skus, s.accounts, s.orders, s.checkpoint_lsn
            )
        })
        .collect();
    format!(
        "{{\"version\":{},\"uptime_ms\":{},\"shards\":{},\"durability\":{},\"connections\":{},\
         \"rss_bytes\":{},\"failed_logs\":{},\"snapshot_failures\":{},\"snapshot_error\":{},\
         \"shard_states\":[{}]}}",
        json_string(&i.version),
        i.uptime_ms,
        i.shards,
        json_string(&i.durability),
        i.connections,
        i.rss_bytes,
        i.failed_logs,
        i.snapshot_failures,
        json_string(&i.snapshot_error),
        shards.join(",")
    )
}
