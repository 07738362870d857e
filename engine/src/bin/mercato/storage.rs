//! `mercato wal check`, `mercato wal dump` and `mercato audit`: looking at a
//! data directory without changing it.

use std::path::{Path, PathBuf};

use mercato_engine::durable::{codec, marker};
use mercato_wal::{LogId, ReadOptions, read_log};

#[derive(clap::Subcommand)]
pub enum WalCmd {
    /// Validate every segment of every shard; exit 0 when sound, 1 otherwise.
    Check { dir: PathBuf },
    /// Print records in readable form.
    Dump {
        dir: PathBuf,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u16>,
        /// Start at this LSN.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print each record's business events, as the change feed tells
        /// them, instead of the record (two-phase bookkeeping has none).
        #[arg(long)]
        events: bool,
    },
}

pub fn wal(cmd: WalCmd) -> i32 {
    match cmd {
        WalCmd::Check { dir } => check(&dir),
        WalCmd::Dump {
            dir,
            shard,
            from,
            events,
        } => dump(&dir, shard, from, events),
    }
}

fn shards_of(dir: &Path) -> Result<u16, String> {
    match marker::read(dir) {
        Ok(Some(m)) if m.format == marker::DATA_FORMAT => Ok(m.shards),
        Ok(Some(m)) => Err(format!(
            "{} has data format {}; this build reads {}",
            dir.display(),
            m.format,
            marker::DATA_FORMAT
        )),
        Ok(None) => Err(format!("{} is not a mercato data directory", dir.display())),
        Err(e) => Err(e.to_string()),
    }
}

fn check(dir: &Path) -> i32 {
    let n = match shards_of(dir) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mercato wal check: {e}");
            return 1;
        }
    };
    let mut sound = true;
    println!(
        "{}: {n} shards, data format {}",
        dir.display(),
        marker::DATA_FORMAT
    );
    for i in 0..n {
        let shard_dir = marker::shard_dir(dir, i);
        let segments = mercato_wal::list_segments(&shard_dir).unwrap_or_default();
        let snapshots = mercato_wal::snapshot::list_snapshots(&shard_dir).unwrap_or_default();
        for (lsn, path) in &snapshots {
            match mercato_engine::durable::snapshot::check_snapshot(path, i, n) {
                Ok(_) => println!("  shard {i}: snapshot at LSN {lsn}: valid"),
                Err(e) => {
                    sound = false;
                    println!("  shard {i}: snapshot at LSN {lsn}: BAD: {e}");
                }
            }
        }
        let mut kinds = std::collections::BTreeMap::<u8, u64>::new();
        let mut first = None;
        let opts = ReadOptions {
            // Records a snapshot covers may be gone already.
            from_lsn: snapshots.last().map_or(1, |&(lsn, _)| lsn + 1),
            to_lsn: u64::MAX,
            repair: false,
        };
        let read = read_log(
            &shard_dir,
            LogId {
                shard: i,
                shards: n,
            },
            opts,
            |r| {
                codec::decode(r.kind, r.body)?;
                first.get_or_insert(r.lsn);
                *kinds.entry(r.kind).or_default() += 1;
                Ok(())
            },
            |_| {},
        );
        match read {
            Ok(end) => {
                let records: u64 = kinds.values().sum();
                print!(
                    "  shard {i}: {} segments, {records} records, LSN {}..={}",
                    segments.len(),
                    first.unwrap_or(end.next_lsn),
                    end.next_lsn - 1
                );
                match end.torn {
                    Some(t) => println!(
                        ", torn tail of {} bytes at {} byte {} (recovery cuts it)",
                        t.bytes,
                        t.path.display(),
                        t.offset
                    ),
                    None => println!(", clean end"),
                }
            }
            Err(e) => {
                sound = false;
                println!("  shard {i}: BAD: {e}");
            }
        }
    }
    println!("{}", if sound { "sound" } else { "NOT SOUND" });
    if sound { 0 } else { 1 }
}

fn dump(dir: &Path, only: Option<u16>, from: u64, events: bool) -> i32 {
    let n = match shards_of(dir) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mercato wal dump: {e}");
            return 1;
        }
    };
    let mut status = 0;
    for i in (0..n).filter(|i| only.is_none_or(|o| o == *i)) {
        let shard_dir = marker::shard_dir(dir, i);
        let oldest = mercato_wal::list_segments(&shard_dir)
            .ok()
            .and_then(|s| s.first().map(|&(lsn, _)| lsn))
            .unwrap_or(1);
        let opts = ReadOptions {
            from_lsn: from.max(oldest),
            to_lsn: u64::MAX,
            repair: false,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let read = read_log(
            &shard_dir,
            LogId {
                shard: i,
                shards: n,
            },
            opts,
            |r| {
                use std::io::Write;
                let record = codec::decode(r.kind, r.body)?;
                // A closed pipe (`| head`) ends the dump quietly.
                if events {
                    let mut decoded = Vec::new();
                    mercato_engine::feed::events_of(&record, &mut decoded);
                    for e in decoded {
                        writeln!(out, "shard {i} lsn {} {e:?}", r.lsn)?;
                    }
                } else {
                    writeln!(out, "shard {i} lsn {} {record:?}", r.lsn)?;
                }
                Ok(())
            },
            |_| {},
        );
        if let Err(e) = read {
            if !matches!(&e, mercato_wal::WalError::Unreadable { source, .. } if source.is::<std::io::Error>())
            {
                eprintln!("mercato wal dump: shard {i}: {e}");
                status = 1;
            }
            break;
        }
    }
    status
}

/// `mercato audit DIR`: recover in memory, check invariants 1 to 3.
pub fn audit(dir: &Path) -> i32 {
    let (shards, report) = match mercato_engine::durable::recovery::inspect(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mercato audit: {e}");
            return 1;
        }
    };
    let parts: Vec<_> = shards.iter().map(|s| s.audit_part()).collect();
    let a = mercato_engine::audit::audit(&parts);
    let records: u64 = report.shards.iter().map(|s| s.records).sum();
    let torn = report.shards.iter().filter(|s| s.torn.is_some()).count();
    println!(
        "{}: {} shards, {records} records replayed",
        dir.display(),
        a.shards
    );
    println!(
        "  recovery would settle {} in-doubt holds and make {} corrections; {torn} torn tails",
        report.holds_settled, report.corrections
    );
    println!(
        "  {} SKUs: {} units stocked = {} available + {} reserved + {} sold",
        a.skus, a.units_stocked, a.units_available, a.units_reserved, a.units_sold
    );
    println!(
        "  {} accounts: balances {} + revenue {} = deposited {} - withdrawn {}",
        a.accounts, a.balances, a.revenue, a.deposited, a.withdrawn
    );
    let [r, p, c, e, f] = a.orders_by_state;
    println!(
        "  {} orders: {r} reserved, {p} paid, {c} cancelled, {e} expired, {f} refunded",
        a.orders
    );
    if a.ok() && a.quiescent {
        println!("  invariants 1 to 3 hold");
        0
    } else {
        println!("  VIOLATED: {:?}", a.violations);
        1
    }
}

/// `mercato audit DIR --rows`: the recovered state, one line per SKU,
/// account and order, sorted:
///
/// ```text
/// sku ID PRICE PER_USER_LIMIT AVAILABLE RESERVED SOLD
/// account ID BALANCE
/// order ACCOUNT ID STATE TOTAL CREATED_AT_MS EXPIRES_AT_MS RESTOCKED SKU:QTY:UNIT_PRICE,...
/// ```
pub fn audit_rows(dir: &Path) -> i32 {
    match state_rows(dir) {
        Ok(rows) => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for r in rows {
                if writeln!(out, "{r}").is_err() {
                    return 0;
                }
            }
            0
        }
        Err(e) => {
            eprintln!("mercato audit: {e}");
            1
        }
    }
}

/// The lines `audit_rows` prints.
pub fn state_rows(dir: &Path) -> Result<Vec<String>, mercato_engine::error::OpenError> {
    use mercato_engine::feed::Event;
    use mercato_engine::types::OrderState;
    let (shards, _) = mercato_engine::durable::recovery::inspect(dir)?;
    let mut rows = Vec::new();
    for shard in &shards {
        for e in shard.copy_events() {
            rows.push(match e {
                Event::SkuCopy(v) => format!(
                    "sku {} {} {} {} {} {}",
                    v.id, v.price, v.per_user_limit, v.available, v.reserved, v.sold
                ),
                Event::AccountCopy(v) => format!("account {} {}", v.id, v.balance),
                Event::OrderCopy(v) => {
                    let state = match v.state {
                        OrderState::Reserved => "reserved",
                        OrderState::Paid => "paid",
                        OrderState::Cancelled => "cancelled",
                        OrderState::Expired => "expired",
                        OrderState::Refunded => "refunded",
                    };
                    let lines: Vec<String> = (v.lines.iter())
                        .map(|l| format!("{}:{}:{}", l.sku, l.qty, l.unit_price))
                        .collect();
                    format!(
                        "order {} {} {state} {} {} {} {} {}",
                        v.account,
                        v.id,
                        v.total,
                        v.created_at,
                        v.expires_at,
                        v.restocked,
                        lines.join(",")
                    )
                }
                _ => continue,
            });
        }
    }
    rows.sort();
    Ok(rows)
}
