//! Snapshots: a snapshot plus the log after it rebuilds exactly what the
//! whole log rebuilds and what the engine held when it stopped; snapshots
//! taken in the background while the engine serves change nothing it
//! answers; a damaged snapshot is never trusted.

mod util;

use mercato_engine::durable::compact;
use mercato_engine::{Command, Config, Engine, LineRequest, OpenError, Payment, PlaceOrder};
use mercato_wal::snapshot::list_snapshots;
use util::{TempDir, durable_config};

const SKUS: u64 = 40;
const ACCOUNTS: u64 = 60;
/// Buyers with one or two orders whose ids do not fit a machine word, so
/// that an account's only order is held by its position in the order table.
const LONE_BUYERS: u64 = 20;

fn catalog(h: &mercato_engine::Handle) {
    for sku in 0..SKUS {
        h.put_sku(sku, 100 + sku, if sku % 5 == 0 { 3 } else { 0 })
            .unwrap()
            .unwrap();
        h.restock(sku, 100_000).unwrap().unwrap();
    }
    for a in 0..ACCOUNTS + LONE_BUYERS {
        h.deposit(a, 1_000_000_000).unwrap().unwrap();
    }
}

/// `n` orders from `first`, mixing payments, cancels and refunds.
fn orders(h: &mercato_engine::Handle, first: u64, n: u64) {
    let mut batch = Vec::new();
    for i in first..first + n {
        let account = i % ACCOUNTS;
        let lines = vec![
            LineRequest::new(i % SKUS, 1 + (i % 3) as u32),
            LineRequest::new((i * 7 + 3) % SKUS, 1),
        ];
        let lines = if lines[0].sku == lines[1].sku {
            lines[..1].to_vec()
        } else {
            lines
        };
        let payment = if i % 4 == 0 {
            Payment::Deferred { ttl_ms: 3_600_000 }
        } else {
            Payment::Immediate
        };
        batch.push(Command::PlaceOrder(PlaceOrder {
            id: u128::from(i),
            account,
            lines,
            payment,
        }));
        if i % 9 == 0 && i >= 8 {
            batch.push(Command::Cancel {
                account,
                order: u128::from(i - 8),
            });
        }
        if i % 11 == 0 && i >= 10 {
            batch.push(Command::Refund {
                account,
                order: u128::from(i - 10),
                restock: i % 2 == 0,
            });
        }
        if batch.len() >= 256 {
            h.submit(std::mem::take(&mut batch)).unwrap();
        }
    }
    h.submit(batch).unwrap();
}

/// One order from each lone buyer in round 0; in later rounds, another
/// from half of them.
fn large_id_orders(h: &mercato_engine::Handle, round: u64) {
    let batch: Vec<Command> = (ACCOUNTS..ACCOUNTS + LONE_BUYERS)
        .filter(|a| round == 0 || a % 2 == 0)
        .map(|account| {
            Command::PlaceOrder(PlaceOrder {
                id: (u128::from(round + 1) << 100) | u128::from(account),
                account,
                lines: vec![LineRequest::new(1 + account % 4, 1)],
                payment: Payment::Immediate,
            })
        })
        .collect();
    for answer in h.submit(batch).unwrap() {
        answer.expect("served").expect("a lone buyer's order");
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn quiet(dir: &std::path::Path, shards: u16) -> Config {
    Config {
        snapshot_segments: 0,
        ..durable_config(dir, shards)
    }
}

#[test]
fn snapshot_plus_tail_equals_full_replay_equals_the_live_state() {
    let dir = TempDir::new("snap");
    let full = TempDir::new("snap-full");
    let engine = Engine::open(quiet(&dir.0, 2)).unwrap();
    let h = engine.handle();
    catalog(&h);
    orders(&h, 0, 6_000);
    large_id_orders(&h, 0);
    let compacted = engine.snapshot_now().unwrap();
    assert_eq!(compacted.len(), 2, "{compacted:?}");
    assert!(
        compacted.iter().all(|c| c.segments_removed > 0),
        "{compacted:?}"
    );
    orders(&h, 6_000, 3_000);
    large_id_orders(&h, 1);
    drop(h);
    let live = engine.shutdown();
    copy_dir(&dir.0, &full.0);
    // Snapshot again, offline, over the same directory; the copy keeps the
    // log from the first snapshot on.
    for i in 0..2 {
        compact(&dir.0, i, 2)
            .unwrap()
            .expect("closed segments to cover");
    }

    let snap = Engine::open(quiet(&dir.0, 2)).unwrap();
    let report = snap.recovery().unwrap().clone();
    assert!(
        report.shards.iter().all(|s| s.snapshot_lsn > 0),
        "{report:?}"
    );
    // A clean stop leaves nothing to settle: recovery corrections would
    // hide a snapshot that lost something.
    assert_eq!(
        (report.holds_settled, report.corrections),
        (0, 0),
        "{report:?}"
    );
    // A buyer with one large id and one with two, the second placed after
    // the snapshot, listed newest first through the links the snapshot's
    // orders rebuilt and the replayed tail extended.
    for (account, ids) in [
        (ACCOUNTS + 1, vec![(1u128 << 100) | 61]),
        (ACCOUNTS + 2, vec![(2u128 << 100) | 62, (1u128 << 100) | 62]),
    ] {
        let listed: Vec<u128> = snap
            .handle()
            .list_orders(account, None, 10)
            .unwrap()
            .unwrap()
            .orders
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(listed, ids, "account {account}");
    }
    let from_snapshot = snap.shutdown();
    let from_log = Engine::open(quiet(&full.0, 2)).unwrap().shutdown();
    for i in 0..2 {
        assert_eq!(
            from_snapshot.shards[i].state(),
            live.shards[i].state(),
            "shard {i}"
        );
        assert_eq!(
            from_log.shards[i].state(),
            live.shards[i].state(),
            "shard {i}"
        );
    }
}

/// The engine's snapshots start from the state its compactor kept at the
/// last one, but only while that is still the newest snapshot on disk: one
/// taken behind its back has dropped the log the kept state would need.
#[test]
fn a_kept_state_is_used_only_while_it_is_the_newest_snapshot() {
    let dir = TempDir::new("snap-kept");
    let keeping = Config {
        snapshot_keep_state: true,
        ..quiet(&dir.0, 2)
    };
    let engine = Engine::open(keeping).unwrap();
    let h = engine.handle();
    catalog(&h);
    orders(&h, 0, 4_000);
    let first = engine.snapshot_now().unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    orders(&h, 4_000, 3_000);
    large_id_orders(&h, 0);
    // From the kept state: only the log since the first snapshot is read.
    let second = engine.snapshot_now().unwrap();
    assert_eq!(second.len(), 2, "{second:?}");
    for (a, b) in first.iter().zip(&second) {
        assert!(b.lsn > a.lsn, "{a:?} {b:?}");
        assert_eq!(b.records_replayed, b.lsn - a.lsn, "{b:?}");
    }
    orders(&h, 7_000, 3_000);
    // A snapshot the engine's compactor did not take, from the files.
    for i in 0..2 {
        compact(&dir.0, i, 2)
            .unwrap()
            .expect("closed segments to cover");
    }
    orders(&h, 10_000, 3_000);
    large_id_orders(&h, 1);
    let third = engine.snapshot_now().unwrap();
    assert_eq!(third.len(), 2, "{third:?}");
    orders(&h, 13_000, 500);
    drop(h);
    let live = engine.shutdown();
    let reopened = Engine::open(quiet(&dir.0, 2)).unwrap();
    let report = reopened.recovery().unwrap().clone();
    for (s, t) in report.shards.iter().zip(&third) {
        assert_eq!(s.snapshot_lsn, t.lsn, "{report:?}");
    }
    let again = reopened.shutdown();
    for i in 0..2 {
        assert_eq!(again.shards[i].state(), live.shards[i].state(), "shard {i}");
    }
}

#[test]
fn background_snapshots_while_serving_change_nothing() {
    let dir = TempDir::new("snap-live");
    let config = Config {
        snapshot_segments: 1,
        ..durable_config(&dir.0, 2)
    };
    let engine = Engine::open(config.clone()).unwrap();
    let h = engine.handle();
    catalog(&h);
    for round in 0..8 {
        orders(&h, round * 2_000, 2_000);
    }
    // Give the snapshot thread a look at the closed segments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while list_snapshots(&dir.0.join("shard-0")).unwrap().is_empty()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(engine.snapshot_error(), None);
    assert!(!list_snapshots(&dir.0.join("shard-0")).unwrap().is_empty());
    let audit = h.audit().unwrap();
    assert!(audit.ok(), "{:?}", audit.violations);
    drop(h);
    let live = engine.shutdown();
    reopens_as(config, &live);
}

/// Reopens the directory of `config` and checks that recovery had nothing
/// to settle and rebuilt exactly the shards `live` stopped with.
fn reopens_as(
    config: Config,
    live: &mercato_engine::Stopped,
) -> mercato_engine::durable::RecoveryReport {
    let reopened = Engine::open(config).unwrap();
    let report = reopened.recovery().unwrap().clone();
    // A clean stop leaves nothing to settle: corrections would hide a
    // snapshot that lost something.
    assert_eq!(
        (report.holds_settled, report.corrections),
        (0, 0),
        "{report:?}"
    );
    let again = reopened.shutdown();
    for i in 0..live.shards.len() {
        assert_eq!(again.shards[i].state(), live.shards[i].state(), "shard {i}");
    }
    report
}

#[test]
fn a_damaged_snapshot_is_not_trusted() {
    let dir = TempDir::new("snap-bad");
    let engine = Engine::open(quiet(&dir.0, 1)).unwrap();
    let h = engine.handle();
    catalog(&h);
    orders(&h, 0, 4_000);
    drop(h);
    engine.shutdown();
    compact(&dir.0, 0, 1)
        .unwrap()
        .expect("closed segments to cover");
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mercato"))
            .args(["wal", "check"])
            .arg(&dir.0)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("snapshot at LSN") && out.contains("valid"),
        "{out}"
    );
    let (_, path) = list_snapshots(&dir.0.join("shard-0")).unwrap()[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("BAD"), "{out}");
    // The segments it covered are gone, so nothing can stand in for it.
    match Engine::open(quiet(&dir.0, 1)) {
        Err(e @ OpenError::Wal(mercato_wal::WalError::Corrupt { .. })) => {
            assert!(e.to_string().contains("expected 1"), "{e}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A snapshot that cannot be written must not stop in silence: the
/// failure is reported with its shard, the engine keeps serving, and
/// the snapshot is tried again, later and later, until it succeeds.
#[test]
fn a_failing_snapshot_is_reported_and_retried_while_the_engine_serves() {
    let dir = TempDir::new("snap-fail");
    let config = Config {
        snapshot_segments: 1,
        ..durable_config(&dir.0, 2)
    };
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    // A directory where the snapshot's temporary file goes: creating it
    // fails, as a full or read-only disk would.
    let blocker = dir.0.join("shard-0").join("snapshot.tmp");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    catalog(&h);
    for round in 0..8 {
        orders(&h, round * 2_000, 2_000);
    }
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("a failure reported", &|| engine.snapshot_failures() > 0);
    let why = engine
        .snapshot_error()
        .expect("the failure, while it lasts");
    assert!(
        why.contains("shard 0") && why.contains("retrying in"),
        "{why}"
    );
    assert!(list_snapshots(&dir.0.join("shard-0")).unwrap().is_empty());
    // Still serving, writes included.
    orders(&h, 16_000, 500);
    assert!(h.audit().unwrap().ok());
    std::fs::remove_dir_all(&blocker).unwrap();
    wait_for("a snapshot after the cause went", &|| {
        !list_snapshots(&dir.0.join("shard-0")).unwrap().is_empty()
    });
    wait_for("the failure cleared", &|| engine.snapshot_error().is_none());
    assert_eq!(h.info().snapshot_error, None);
    let stopped = engine.shutdown();
    assert!(stopped.log_errors.is_empty(), "{:?}", stopped.log_errors);
}

/// A checkpoint taken on demand while another thread keeps placing orders:
/// the snapshot it writes, plus the log after it, reopens as the engine
/// that stopped, with every segment it covers gone.
#[test]
fn a_checkpoint_taken_while_orders_run_reopens_as_the_live_state() {
    let dir = TempDir::new("checkpoint-now");
    let engine = Engine::open(quiet(&dir.0, 2)).unwrap();
    let h = engine.handle();
    catalog(&h);
    orders(&h, 0, 6_000);
    let lsns = std::thread::scope(|s| {
        let h = h.clone();
        let busy = s.spawn(move || orders(&h, 6_000, 6_000));
        let lsns = engine.checkpoint_now().unwrap();
        busy.join().unwrap();
        lsns
    });
    assert_eq!(lsns.len(), 2);
    assert!(lsns.iter().all(|&l| l > 0), "{lsns:?}");
    for i in 0..2u16 {
        let shard = dir.0.join(format!("shard-{i}"));
        let snaps = list_snapshots(&shard).unwrap();
        assert_eq!(snaps.last().map(|s| s.0), Some(lsns[usize::from(i)]));
    }
    // `Info` and the metrics name each shard's last checkpoint.
    let info = h.info();
    let metrics = h.metrics();
    for (i, &lsn) in lsns.iter().enumerate() {
        let s = &info.shard_states[i];
        assert_eq!(s.checkpoint_lsn, lsn);
        assert!(s.checkpoint_age_ms.is_some_and(|ms| ms < 60_000), "{s:?}");
        let c = &metrics.checkpoints[i];
        assert_eq!((c.lsn, c.written, c.failures), (lsn, 1, 0), "{c:?}");
    }
    drop(h);
    let live = engine.shutdown();
    let report = reopens_as(quiet(&dir.0, 2), &live);
    assert!(
        (0..2).all(|i| report.shards[i].snapshot_lsn == lsns[i]),
        "{report:?}"
    );
}
