//! The sink's PostgreSQL side: its tables, where the feed stands, and one
//! batch applied in one transaction with that position.
//!
//! Ids and money are `numeric`: mercato's ids and amounts are unsigned
//! 64-bit (order ids 128-bit), past what `bigint` holds.

use std::fmt::Write as _;
use std::io::Write as _;

use postgres::{Client, Transaction};

use super::fold::{OrderChange, Pending, state_name};

/// The tables the sink keeps, made if missing.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS skus (
    sku numeric(20,0) PRIMARY KEY,
    price numeric(20,0) NOT NULL,
    per_user_limit bigint NOT NULL,
    available bigint NOT NULL,
    reserved bigint NOT NULL,
    sold bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    account numeric(20,0) PRIMARY KEY,
    balance numeric(20,0) NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    account numeric(20,0) NOT NULL,
    id numeric(39,0) NOT NULL,
    state text NOT NULL,
    total numeric(20,0) NOT NULL,
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    restocked boolean NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE TABLE IF NOT EXISTS order_lines (
    account numeric(20,0) NOT NULL,
    order_id numeric(39,0) NOT NULL,
    line integer NOT NULL,
    sku numeric(20,0) NOT NULL,
    qty bigint NOT NULL,
    unit_price numeric(20,0) NOT NULL,
    PRIMARY KEY (account, order_id, line)
);
CREATE TABLE IF NOT EXISTS mercato_feed_positions (
    shard integer PRIMARY KEY,
    next_lsn bigint NOT NULL
);
";

/// Per-transaction staging, so a batch's changes go in by COPY and are
/// joined to the tables in one statement each.
const STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS sink_skus (
    sku numeric, has_put boolean, price numeric, per_user_limit bigint,
    is_set boolean, available bigint, reserved bigint, sold bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sink_accounts (
    account numeric, is_set boolean, amount numeric
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sink_order_states (
    account numeric, id numeric, state text, restocked boolean
) ON COMMIT DELETE ROWS;
";

/// Makes the tables and this session's staging tables.
pub fn prepare(db: &mut Client) -> Result<(), postgres::Error> {
    db.batch_execute(SCHEMA)?;
    db.batch_execute(STAGING)
}

/// Where the database says the feed stands: the next LSN per shard, or
/// nothing if it has never been loaded.
pub fn positions(db: &mut Client) -> Result<Vec<u64>, postgres::Error> {
    let rows = db.query(
        "SELECT shard, next_lsn FROM mercato_feed_positions ORDER BY shard",
        &[],
    )?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(1) as u64).collect())
}

/// Empties every table, positions too, inside `tx`.
pub fn truncate(tx: &mut Transaction) -> Result<(), postgres::Error> {
    tx.batch_execute("TRUNCATE skus, accounts, orders, order_lines, mercato_feed_positions")
}

fn copy(tx: &mut Transaction, sql: &str, rows: &str) -> Result<(), postgres::Error> {
    let mut w = tx.copy_in(sql)?;
    // A write error here is the connection's: `finish` reports it.
    let _ = w.write_all(rows.as_bytes());
    w.finish()?;
    Ok(())
}

fn tf(b: bool) -> char {
    if b { 't' } else { 'f' }
}

/// Staged rows past which the planner is told how many there are: without
/// statistics it takes a temporary table for small and may join it row by
/// row against a large one.
const STAGED_ANALYZE_MIN: usize = 1_000;

/// Applies `p` inside `tx`: upserts SKUs and accounts, inserts new orders
/// and their lines, updates the states of older ones. `again`: an earlier
/// call in the same transaction left its rows staged (they go only at
/// commit), so they are cleared first.
pub fn apply(tx: &mut Transaction, p: &Pending, again: bool) -> Result<(), postgres::Error> {
    if again {
        tx.batch_execute("TRUNCATE sink_skus, sink_accounts, sink_order_states")?;
    }
    let analyze = |tx: &mut Transaction, table: &str, rows: usize| {
        if rows >= STAGED_ANALYZE_MIN {
            tx.batch_execute(&format!("ANALYZE {table}"))
        } else {
            Ok(())
        }
    };
    if !p.skus.is_empty() {
        let mut rows = String::new();
        for (sku, c) in &p.skus {
            let (price, limit) = c.put.unwrap_or_default();
            let _ = writeln!(
                rows,
                "{sku}\t{}\t{price}\t{limit}\t{}\t{}\t{}\t{}",
                tf(c.put.is_some()),
                tf(c.set),
                c.available,
                c.reserved,
                c.sold
            );
        }
        copy(tx, "COPY sink_skus FROM STDIN", &rows)?;
        analyze(tx, "sink_skus", p.skus.len())?;
        tx.batch_execute(
            "INSERT INTO skus (sku, price, per_user_limit, available, reserved, sold)
                 SELECT sku, price, per_user_limit, 0, 0, 0 FROM sink_skus WHERE has_put
                 ON CONFLICT (sku) DO UPDATE
                 SET price = EXCLUDED.price, per_user_limit = EXCLUDED.per_user_limit;
             UPDATE skus SET
                 available = CASE WHEN t.is_set THEN t.available ELSE skus.available + t.available END,
                 reserved = CASE WHEN t.is_set THEN t.reserved ELSE skus.reserved + t.reserved END,
                 sold = CASE WHEN t.is_set THEN t.sold ELSE skus.sold + t.sold END
                 FROM sink_skus t
                 WHERE skus.sku = t.sku
                   AND (t.is_set OR t.available <> 0 OR t.reserved <> 0 OR t.sold <> 0);",
        )?;
    }
    if !p.accounts.is_empty() {
        let mut rows = String::new();
        for (account, c) in &p.accounts {
            let _ = writeln!(rows, "{account}\t{}\t{}", tf(c.set), c.amount);
        }
        copy(tx, "COPY sink_accounts FROM STDIN", &rows)?;
        analyze(tx, "sink_accounts", p.accounts.len())?;
        // An account appears with its first deposit, so a move may insert.
        tx.batch_execute(
            "INSERT INTO accounts (account, balance)
                 SELECT account, amount FROM sink_accounts WHERE is_set
                 ON CONFLICT (account) DO UPDATE SET balance = EXCLUDED.balance;
             INSERT INTO accounts (account, balance)
                 SELECT account, amount FROM sink_accounts WHERE NOT is_set
                 ON CONFLICT (account) DO UPDATE SET balance = accounts.balance + EXCLUDED.balance;",
        )?;
    }
    let (mut orders, mut lines, mut states) = (String::new(), String::new(), String::new());
    for ((account, id), change) in &p.orders {
        match change {
            OrderChange::New(v) => {
                let _ = writeln!(
                    orders,
                    "{account}\t{id}\t{}\t{}\t{}\t{}\t{}",
                    state_name(v.state),
                    v.total,
                    v.created_at,
                    v.expires_at,
                    tf(v.restocked)
                );
                for (i, l) in v.lines.iter().enumerate() {
                    let _ = writeln!(
                        lines,
                        "{account}\t{id}\t{i}\t{}\t{}\t{}",
                        l.sku, l.qty, l.unit_price
                    );
                }
            }
            OrderChange::State { state, restocked } => {
                let _ = writeln!(
                    states,
                    "{account}\t{id}\t{}\t{}",
                    state_name(*state),
                    tf(*restocked)
                );
            }
        }
    }
    if !orders.is_empty() {
        copy(tx, "COPY orders FROM STDIN", &orders)?;
    }
    if !lines.is_empty() {
        copy(tx, "COPY order_lines FROM STDIN", &lines)?;
    }
    if !states.is_empty() {
        copy(tx, "COPY sink_order_states FROM STDIN", &states)?;
        analyze(tx, "sink_order_states", states.lines().count())?;
        tx.batch_execute(
            "UPDATE orders SET state = t.state, restocked = t.restocked
                 FROM sink_order_states t
                 WHERE orders.account = t.account AND orders.id = t.id",
        )?;
    }
    Ok(())
}

/// Records where the feed stands, inside the transaction that applied
/// everything before it: the database's rows and its position never part.
pub fn save_positions(tx: &mut Transaction, next: &[u64]) -> Result<(), postgres::Error> {
    let mut sql = String::from("INSERT INTO mercato_feed_positions (shard, next_lsn) VALUES ");
    for (i, lsn) in next.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(sql, "{sep}({i}, {lsn})");
    }
    sql.push_str(" ON CONFLICT (shard) DO UPDATE SET next_lsn = EXCLUDED.next_lsn");
    tx.batch_execute(&sql)
}

/// The tables as lines in `mercato audit --rows`'s format, sorted: what a
/// test compares with the engine's own state.
pub fn rows(db: &mut Client) -> Result<Vec<String>, postgres::Error> {
    let mut out = Vec::new();
    for r in db.query(
        "SELECT 'sku ' || sku || ' ' || price || ' ' || per_user_limit || ' ' || available
                || ' ' || reserved || ' ' || sold FROM skus",
        &[],
    )? {
        out.push(r.get::<_, String>(0));
    }
    for r in db.query(
        "SELECT 'account ' || account || ' ' || balance FROM accounts",
        &[],
    )? {
        out.push(r.get::<_, String>(0));
    }
    for r in db.query(
        "SELECT 'order ' || o.account || ' ' || o.id || ' ' || o.state || ' ' || o.total
                || ' ' || o.created_at_ms || ' ' || o.expires_at_ms || ' ' || o.restocked
                || ' ' || coalesce((SELECT string_agg(l.sku || ':' || l.qty || ':' || l.unit_price,
                                                     ',' ORDER BY l.line)
                                    FROM order_lines l
                                    WHERE l.account = o.account AND l.order_id = o.id), '')
         FROM orders o",
        &[],
    )? {
        out.push(r.get::<_, String>(0));
    }
    out.sort();
    Ok(out)
}
