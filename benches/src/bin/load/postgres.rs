//! `--target postgres://USER@HOST:PORT/DB`: the flash-sale and carts
//! workloads against PostgreSQL, as a shop that keeps stock in its
//! database does. Each order is one call of a PL/pgSQL function in its own
//! transaction; the function locks the order's SKU rows (in SKU order, so
//! that two carts cannot deadlock) and the buyer's account, checks every
//! line, the per-user limit and the balance, and only then writes. The
//! server's own settings decide durability (`benches/compare.sh` runs it
//! with `fsync` and `synchronous_commit` on, the defaults).
//!
//! The statement protocol is one round trip per order, so concurrency comes
//! from threads, each with its own connection, and each order's latency is
//! its own round trip.

use std::time::Instant;

use mercato_engine::Command;

use super::{Args, Counts, FUNDS, Gen, HOT_SKU, RunShared, STOCK_PER_SKU, Workload, run_for};

const SCHEMA: &str = r#"
DROP TABLE IF EXISTS orders, purchases, accounts, skus;
CREATE TABLE skus (id bigint PRIMARY KEY, price bigint NOT NULL, available bigint NOT NULL,
                   sold bigint NOT NULL, per_user_limit int NOT NULL);
CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE purchases (sku bigint, account bigint, qty int NOT NULL, PRIMARY KEY (sku, account));
CREATE TABLE orders (account bigint, id text, total bigint NOT NULL, state text NOT NULL,
                     PRIMARY KEY (account, id));
CREATE OR REPLACE FUNCTION place_order(p_account bigint, p_id text, p_skus bigint[], p_qtys int[])
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  s record;
  total bigint := 0;
  bal bigint;
BEGIN
  PERFORM 1 FROM orders WHERE account = p_account AND id = p_id;
  IF FOUND THEN RETURN 'duplicate'; END IF;
  FOR i IN 1 .. array_length(p_skus, 1) LOOP
    SELECT price, available, per_user_limit INTO s FROM skus WHERE id = p_skus[i] FOR UPDATE;
    IF NOT FOUND THEN RETURN 'unknown sku'; END IF;
    IF s.available < p_qtys[i] THEN RETURN 'out of stock'; END IF;
    IF s.per_user_limit > 0 THEN
      PERFORM 1 FROM purchases WHERE sku = p_skus[i] AND account = p_account;
      IF FOUND THEN RETURN 'per-user limit'; END IF;
    END IF;
    total := total + s.price * p_qtys[i];
  END LOOP;
  SELECT balance INTO bal FROM accounts WHERE id = p_account FOR UPDATE;
  IF bal IS NULL OR bal < total THEN RETURN 'insufficient funds'; END IF;
  FOR i IN 1 .. array_length(p_skus, 1) LOOP
    UPDATE skus SET available = available - p_qtys[i], sold = sold + p_qtys[i]
      WHERE id = p_skus[i] RETURNING per_user_limit INTO s;
    IF s.per_user_limit > 0 THEN
      INSERT INTO purchases (sku, account, qty) VALUES (p_skus[i], p_account, p_qtys[i]);
    END IF;
  END LOOP;
  UPDATE accounts SET balance = balance - total WHERE id = p_account;
  INSERT INTO orders (account, id, total, state) VALUES (p_account, p_id, total, 'paid');
  RETURN 'ok';
END $$;
"#;

fn setup(
    db: &mut postgres::Client,
    args: &Args,
    accounts: u64,
    skus: u64,
) -> Result<(), postgres::Error> {
    db.batch_execute(SCHEMA)?;
    let (first, last, limit, price) = match args.workload {
        Workload::FlashSale => (HOT_SKU as i64, HOT_SKU as i64, 1, "4999"),
        _ => (0, skus as i64 - 1, 0, "100 + s % 9900"),
    };
    db.batch_execute(&format!(
        "INSERT INTO skus SELECT s, {price}, {STOCK_PER_SKU}, 0, {limit} FROM generate_series({first}::bigint, {last}) s;
         INSERT INTO accounts SELECT a, {FUNDS} FROM generate_series(0::bigint, {}) a;
         ANALYZE;",
        accounts as i64 - 1
    ))
}

pub fn run(args: &Args, url: &str, accounts: u64, skus: u64) -> i32 {
    if !matches!(args.workload, Workload::FlashSale | Workload::Carts) {
        eprintln!("mercato-load: a postgres:// target runs the flash-sale and carts workloads");
        return 2;
    }
    let connect = || postgres::Client::connect(url, postgres::NoTls);
    if let Err(e) = connect().and_then(|mut db| setup(&mut db, args, accounts, skus)) {
        eprintln!("mercato-load: setup failed: {e}");
        return 2;
    }
    let run = RunShared::new();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let run = &run;
            let mut db = match connect() {
                Ok(db) => db,
                Err(e) => {
                    run.fail(e);
                    break;
                }
            };
            s.spawn(move || {
                let place = match db.prepare("SELECT place_order($1, $2, $3, $4)") {
                    Ok(p) => p,
                    Err(e) => return run.fail(e),
                };
                let mut g = Gen::new(args, accounts, skus, run.run_id, t);
                let mut c = Counts::default();
                'run: while !run.stopping() {
                    for _ in 0..args.batch {
                        let Command::PlaceOrder(order) = g.next() else {
                            continue;
                        };
                        let mut lines: Vec<(i64, i32)> = (order.lines.iter())
                            .map(|l| (l.sku as i64, l.qty as i32))
                            .collect();
                        lines.sort_unstable();
                        let (skus, qtys): (Vec<i64>, Vec<i32>) = lines.into_iter().unzip();
                        let id = order.id.to_string();
                        let account = order.account as i64;
                        let at = Instant::now();
                        let answer = db.query_one(&place, &[&account, &id, &skus, &qtys]);
                        // Each order is its own round trip: timed alone.
                        c.latency.record_batch(at, 1);
                        c.requests += 1;
                        match answer {
                            Ok(row) if row.get::<_, &str>(0) == "ok" => c.committed += 1,
                            Ok(_) => c.rejected += 1,
                            Err(e) => {
                                run.fail(e);
                                break 'run;
                            }
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
