//! `--target redis://HOST:PORT`: the flash-sale and carts workloads against
//! Redis, as a shop that keeps stock in Redis with Lua does. Each order is
//! one Lua script, which Redis runs alone, so it is all-or-nothing: it
//! checks every line (stock, the per-user limit in a set of buyers per
//! SKU, the balance) before it changes anything. Each thread keeps one
//! connection and sends its batch as one pipeline of `EVALSHA` calls.
//!
//! The accounts, SKUs, prices, stock and Zipf draws are mercato-load's
//! own (`Gen`), so the work matches the other targets. Redis persists as
//! it is started: in memory, or with `appendonly yes` and `appendfsync
//! always` (`benches/compare.sh` starts both).

use std::time::Instant;

use mercato_engine::{Command, PlaceOrder};

use super::{Args, Counts, FUNDS, Gen, HOT_SKU, RunShared, STOCK_PER_SKU, Workload, run_for};

/// Keys set per setup pipeline.
const SETUP_BATCH: u64 = 1_024;

/// One order: `ARGV` is the account, the order id, then (SKU, quantity)
/// per line. Returns `ok` or why it was refused.
const PLACE_ORDER_LUA: &str = r#"
local account = ARGV[1]
local order = 'order:' .. account .. ':' .. ARGV[2]
if redis.call('EXISTS', order) == 1 then return 'duplicate' end
local lines = (#ARGV - 2) / 2
local total = 0
for i = 0, lines - 1 do
  local sku, qty = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  local s = redis.call('HMGET', 'sku:' .. sku, 'price', 'available', 'limit')
  if not s[1] then return 'unknown sku' end
  if tonumber(s[2]) < qty then return 'out of stock' end
  if tonumber(s[3]) > 0 and redis.call('SISMEMBER', 'buyers:' .. sku, account) == 1 then
    return 'per-user limit'
  end
  total = total + tonumber(s[1]) * qty
end
local balance = tonumber(redis.call('GET', 'account:' .. account) or '-1')
if balance < total then return 'insufficient funds' end
for i = 0, lines - 1 do
  local sku, qty = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  redis.call('HINCRBY', 'sku:' .. sku, 'available', -qty)
  redis.call('HINCRBY', 'sku:' .. sku, 'sold', qty)
  if tonumber(redis.call('HGET', 'sku:' .. sku, 'limit')) > 0 then
    redis.call('SADD', 'buyers:' .. sku, account)
  end
end
redis.call('DECRBY', 'account:' .. account, total)
redis.call('HSET', order, 'total', total, 'state', 'paid')
return 'ok'
"#;

fn setup(
    con: &mut redis::Connection,
    args: &Args,
    accounts: u64,
    skus: u64,
) -> redis::RedisResult<()> {
    redis::cmd("FLUSHALL").query::<()>(con)?;
    let catalog: Vec<(u64, u32)> = match args.workload {
        Workload::FlashSale => vec![(HOT_SKU, 1)],
        _ => (0..skus).map(|s| (s, 0)).collect(),
    };
    for chunk in catalog.chunks(SETUP_BATCH as usize) {
        let mut pipe = redis::pipe();
        for &(sku, limit) in chunk {
            let price = if args.workload == Workload::FlashSale {
                4_999
            } else {
                100 + sku % 9_900
            };
            pipe.cmd("HSET")
                .arg(format!("sku:{sku}"))
                .arg(&["price", &price.to_string()])
                .arg(&["available", &STOCK_PER_SKU.to_string()])
                .arg(&["sold", "0", "limit", &limit.to_string()])
                .ignore();
        }
        pipe.query::<()>(con)?;
    }
    let mut a = 0;
    while a < accounts {
        let end = (a + SETUP_BATCH).min(accounts);
        let mut mset = redis::cmd("MSET");
        for account in a..end {
            mset.arg(format!("account:{account}")).arg(FUNDS);
        }
        mset.query::<()>(con)?;
        a = end;
    }
    Ok(())
}

/// The script call for an order; lines in SKU order, as for PostgreSQL.
fn call(pipe: &mut redis::Pipeline, sha: &str, order: &PlaceOrder) {
    let mut lines: Vec<_> = order.lines.iter().map(|l| (l.sku, l.qty)).collect();
    lines.sort_unstable();
    let cmd = pipe
        .cmd("EVALSHA")
        .arg(sha)
        .arg(0)
        .arg(order.account)
        .arg(order.id.to_string());
    for (sku, qty) in lines {
        cmd.arg(sku).arg(qty);
    }
}

pub fn run(args: &Args, url: &str, accounts: u64, skus: u64) -> i32 {
    if !matches!(args.workload, Workload::FlashSale | Workload::Carts) {
        eprintln!("mercato-load: a redis:// target runs the flash-sale and carts workloads");
        return 2;
    }
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mercato-load: target {url:?}: {e}");
            return 2;
        }
    };
    let connect = || client.get_connection();
    let sha = match connect().and_then(|mut con| {
        setup(&mut con, args, accounts, skus)?;
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PLACE_ORDER_LUA)
            .query::<String>(&mut con)
    }) {
        Ok(sha) => sha,
        Err(e) => {
            eprintln!("mercato-load: setup failed: {e}");
            return 2;
        }
    };
    let run = RunShared::new();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (run, sha) = (&run, &sha);
            let mut con = match connect() {
                Ok(c) => c,
                Err(e) => {
                    run.fail(e);
                    break;
                }
            };
            s.spawn(move || {
                let mut g = Gen::new(args, accounts, skus, run.run_id, t);
                let mut c = Counts::default();
                while !run.stopping() {
                    let mut pipe = redis::pipe();
                    for _ in 0..args.batch {
                        if let Command::PlaceOrder(order) = g.next() {
                            call(&mut pipe, sha, &order);
                        }
                    }
                    let at = Instant::now();
                    let answers: Vec<String> = match pipe.query(&mut con) {
                        Ok(a) => a,
                        Err(e) => {
                            run.fail(e);
                            break;
                        }
                    };
                    c.latency.record_batch(at, answers.len() as u64);
                    c.requests += answers.len() as u64;
                    for a in answers {
                        if a == "ok" {
                            c.committed += 1;
                        } else {
                            c.rejected += 1;
                        }
                    }
                }
                c.add_to(&run.total);
            });
        }
        run_for(args, &run.stop);
    });
    run.finish(args, 1, "not audited")
}
