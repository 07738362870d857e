//! `mercato-load`'s redis:// and postgres:// targets against real servers,
//! which `benches/peers.sh` starts on loopback (installing them from
//! Debian if missing) and stops. The comparison is only fair if the peers
//! do the same work all-or-nothing, so after each run the servers' own
//! state must add up: units sold and buyers against orders committed, and
//! money (balances plus what orders took) against what was deposited.

// Only `check` is used here.
#[allow(dead_code)]
mod util;

use std::process::Command;

use util::check;

const HOT_SKU: u64 = u64::MAX;
/// mercato-load's deposit per account.
const FUNDS: u64 = 1_000_000_000_000;
const ACCOUNTS: u64 = 2_000;
const SKUS: u64 = 100;

/// A number from one line of `mercato-load --json`.
fn field(json: &str, key: &str) -> u64 {
    let at = json.find(&format!("\"{key}\":")).expect(key) + key.len() + 3;
    let rest = &json[at..];
    rest[..rest.find([',', '}']).unwrap()].parse().expect(key)
}

fn load(target: &str, workload: &str) -> (u64, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--target", target, "--workload", workload, "--json"])
        .args(["--seconds", "2", "--threads", "4", "--batch", "16"])
        .args([
            "--accounts",
            &ACCOUNTS.to_string(),
            "--skus",
            &SKUS.to_string(),
        ])
        .output()
        .unwrap();
    let json = check(&format!("mercato-load {workload} against {target}"), out);
    let (committed, rejected) = (
        field(&json, "orders_committed"),
        field(&json, "orders_rejected"),
    );
    assert!(
        committed > 0,
        "{workload} against {target}: nothing committed: {json}"
    );
    (committed, rejected)
}

fn price(sku: u64) -> u64 {
    100 + sku % 9_900
}

fn redis(url: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let balances = |con: &mut redis::Connection| -> u64 {
        let keys: Vec<String> = (0..ACCOUNTS).map(|a| format!("account:{a}")).collect();
        let values: Vec<u64> = redis::cmd("MGET").arg(keys).query(con).unwrap();
        values.iter().sum()
    };

    let (committed, rejected) = load(url, "flash-sale");
    let hot = format!("sku:{HOT_SKU}");
    let sold: u64 = redis::cmd("HGET")
        .arg(&hot)
        .arg("sold")
        .query(&mut con)
        .unwrap();
    let buyers: u64 = redis::cmd("SCARD")
        .arg(format!("buyers:{HOT_SKU}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(
        (sold, buyers),
        (committed, committed),
        "one unit per buyer, once"
    );
    assert!(
        rejected > 0,
        "2,000 buyers asked for more than 2,000 units: the limit refuses"
    );
    assert_eq!(balances(&mut con) + sold * 4_999, ACCOUNTS * FUNDS);

    let (committed, _) = load(url, "carts");
    let mut revenue = 0;
    for sku in 0..SKUS {
        let sold: u64 = redis::cmd("HGET")
            .arg(format!("sku:{sku}"))
            .arg("sold")
            .query(&mut con)
            .unwrap();
        revenue += sold * price(sku);
    }
    let orders: Vec<String> = redis::cmd("KEYS").arg("order:*").query(&mut con).unwrap();
    assert_eq!(orders.len() as u64, committed);
    assert_eq!(
        balances(&mut con) + revenue,
        ACCOUNTS * FUNDS,
        "money is conserved"
    );
}

fn postgres(url: &str) {
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let one =
        |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    let money = "SELECT ((SELECT sum(balance) FROM accounts) + (SELECT coalesce(sum(total), 0) FROM orders))::bigint";

    let (committed, _) = load(url, "flash-sale");
    // The hot SKU's id, u64::MAX, is -1 as a bigint.
    let sold = one(&mut db, "SELECT sold FROM skus WHERE id = -1");
    let buyers = one(&mut db, "SELECT count(*) FROM purchases");
    let orders = one(&mut db, "SELECT count(*) FROM orders");
    assert_eq!(
        (sold, buyers, orders),
        (committed as i64, committed as i64, committed as i64)
    );
    assert_eq!(one(&mut db, money), (ACCOUNTS * FUNDS) as i64);

    let (committed, _) = load(url, "carts");
    assert_eq!(
        one(&mut db, "SELECT count(*) FROM orders"),
        committed as i64
    );
    assert_eq!(
        one(&mut db, money),
        (ACCOUNTS * FUNDS) as i64,
        "money is conserved"
    );
    let revenue = one(&mut db, "SELECT sum(sold * price)::bigint FROM skus");
    let totals = one(&mut db, "SELECT sum(total)::bigint FROM orders");
    assert_eq!(
        revenue, totals,
        "what the orders took is what the SKUs sold for"
    );
}

#[test]
fn the_peers_do_the_same_work_all_or_nothing() {
    let (Ok(redis_url), Ok(pg_url)) = (
        std::env::var("MERCATO_REDIS_URL"),
        std::env::var("MERCATO_POSTGRES_URL"),
    ) else {
        // Run again under benches/peers.sh, which starts the servers.
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/peers.sh"))
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_peers_do_the_same_work_all_or_nothing",
                "--nocapture",
            ])
            .status()
            .expect("run benches/peers.sh");
        assert!(
            status.success(),
            "the peers test under benches/peers.sh failed"
        );
        return;
    };
    redis(&redis_url);
    postgres(&pg_url);
    redis_locks(&redis_url);
}

/// The locks workload against Redis's SET NX PX and Lua release runs to
/// its end, and what it holds at the end are its own tokens.
fn redis_locks(url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--target", url, "--workload", "locks", "--threads", "2"])
        .args(["--seconds", "1", "--batch", "64", "--json"])
        .output()
        .expect("mercato-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}", out.status);
    assert!(stdout.contains("\"workload\":\"locks\""), "{stdout}");
    assert!(!stdout.contains("\"pairs\":0,"), "{stdout}");
}
