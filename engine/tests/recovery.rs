//! Durability inside one process: an engine on a data directory, stopped and
//! reopened, comes back exactly as it was and goes on answering as the model
//! does; a directory of another shard count or format is refused; a failing
//! disk makes the engine answer `Unavailable` and acknowledge nothing more;
//! a slow one never lets a decided order's reply overtake its Decide.

mod util;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mercato_engine::{
    Command, Config, Durability, Engine, EngineError, LineRequest, ManualClock, OpenError, Payment,
};
use mercato_wal::storage::FaultyStorage;
use proptest::prelude::*;
use util::model::Model;
use util::strategy::{Space, timed_commands};
use util::{TempDir, durable_config};

fn run(engine: &Engine, model: &mut Model, cmds: &[(u64, Command)]) {
    let h = engine.handle();
    for (_, cmd) in cmds {
        let want = model.exec(cmd, 1_000);
        let got = h.call(cmd.clone()).unwrap();
        assert_eq!(got, want, "{cmd:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_reopened_engine_is_the_engine_that_stopped(
        shards in 1..=4u16,
        durability in prop_oneof![
            Just(Durability::Always),
            Just(Durability::Interval { ms: 2 }),
            Just(Durability::Never),
        ],
        before in timed_commands(Space::small(), 80),
        after in timed_commands(Space::small(), 40),
    ) {
        let dir = TempDir::new("reopen");
        let config = || Config {
            clock: Arc::new(ManualClock::new(1_000)),
            durability,
            ..durable_config(&dir.0, shards)
        };
        let mut model = Model::default();
        let engine = Engine::open(config()).unwrap();
        prop_assert!(engine.recovery().unwrap().created);
        run(&engine, &mut model, &before);
        let stopped = engine.shutdown();

        let engine = Engine::open(config()).unwrap();
        let report = engine.recovery().unwrap().clone();
        prop_assert!(!report.created);
        prop_assert_eq!(report.holds_settled, 0);
        prop_assert_eq!(report.corrections, 0);
        prop_assert!(report.shards.iter().all(|s| s.torn.is_none()));
        run(&engine, &mut model, &after);
        let audit = engine.handle().audit().unwrap();
        prop_assert!(audit.ok(), "{:?}", audit.violations);
        let again = engine.shutdown();

        // Replaying the whole log once more gives the same state as the
        // engine that just stopped; and the first stop matched its replay.
        let engine = Engine::open(config()).unwrap();
        let replayed = engine.shutdown();
        for (a, b) in again.shards.iter().zip(&replayed.shards) {
            prop_assert_eq!(a.state(), b.state());
        }
        prop_assert_eq!(stopped.shards.len(), shards as usize);
    }
}

#[test]
fn a_directory_keeps_its_shard_count() {
    let dir = TempDir::new("shard-count");
    Engine::open(durable_config(&dir.0, 2)).unwrap().shutdown();
    match Engine::open(durable_config(&dir.0, 3)) {
        Err(OpenError::WrongShardCount {
            found: 2, asked: 3, ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Asking for no particular count takes the directory's.
    let engine = Engine::open(durable_config(&dir.0, 0)).unwrap();
    assert_eq!(engine.recovery().unwrap().shards.len(), 2);
}

#[test]
fn a_directory_of_another_format_is_refused() {
    let dir = TempDir::new("format");
    Engine::open(durable_config(&dir.0, 1)).unwrap().shutdown();
    let marker = dir.0.join("MERCATO");
    let text = std::fs::read_to_string(&marker).unwrap();
    std::fs::write(&marker, text.replace("format 1", "format 99")).unwrap();
    match Engine::open(durable_config(&dir.0, 1)) {
        Err(e @ OpenError::WrongFormat { found: 99, .. }) => {
            assert!(e.to_string().contains("format 99"), "{e}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    std::fs::write(&marker, "hello\n").unwrap();
    assert!(matches!(
        Engine::open(durable_config(&dir.0, 1)),
        Err(OpenError::BadMarker { .. })
    ));
}

#[test]
fn a_failed_fsync_stops_acknowledgements_and_loses_nothing_acknowledged() {
    let dir = TempDir::new("eio");
    let storage = FaultyStorage::default();
    let config = Config {
        storage: Arc::new(storage.clone()),
        ..durable_config(&dir.0, 2)
    };
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    h.put_sku(2, 100, 0).unwrap().unwrap();
    h.restock(1, 1_000).unwrap().unwrap();
    h.restock(2, 1_000).unwrap().unwrap();
    h.deposit(7, 1_000_000).unwrap().unwrap();
    storage
        .faults
        .fail_sync_at
        .store(storage.faults.syncs() + 3, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut unavailable = 0;
    for id in 0..200u128 {
        let lines = vec![LineRequest::new(1, 1), LineRequest::new(2, 1)];
        let r = h.place_order(id, 7, lines, Payment::Immediate);
        match r {
            Ok(Ok(view)) => acked.push(view),
            Ok(Err(reject)) => {
                // The other shard could not vote: its log failed.
                assert!(
                    matches!(reject, mercato_engine::Reject::ShardUnavailable { .. }),
                    "{reject}"
                );
                unavailable += 1;
            }
            Err(EngineError::Unavailable { .. }) => unavailable += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(unavailable > 0, "the injected failure was never hit");
    assert!(matches!(
        h.deposit(7, 1),
        Err(EngineError::Unavailable { .. }) | Ok(Ok(_))
    ));
    drop(h);
    // The shutdown says a log failed: `mercato serve` exits 1 on it.
    let stopped = engine.shutdown();
    assert!(
        !stopped.log_errors.is_empty(),
        "a failed log closed quietly"
    );

    let engine = Engine::open(durable_config(&dir.0, 2)).unwrap();
    let h = engine.handle();
    for view in &acked {
        let got = h.get_order(view.account, view.id).unwrap().unwrap();
        assert_eq!(&got, view);
    }
    let audit = h.audit().unwrap();
    assert!(audit.ok(), "{:?}", audit.violations);
    let sold = h.get_sku(1).unwrap().unwrap().sold;
    // Every sale on disk is an acknowledged order or one whose answer was
    // lost with the failure; never more units than orders.
    assert!(sold as usize >= acked.len(), "{sold} < {}", acked.len());
}

/// Under `interval` and `never` a reply goes out before its records are
/// written, but a decided two-phase order's reply must still not overtake
/// the Decide that settles its stock: a buyer told "rejected" who asks the
/// SKU at once must find the units back on sale. A slow disk holds the
/// Decide (it waits for the coordinator's record to be written) long
/// enough that a reply sent ahead of it would be seen first.
#[test]
fn a_decided_order_reaches_its_sku_shard_before_its_caller_hears() {
    use mercato_engine::hash::shard_of;
    for durability in [Durability::Interval { ms: 2 }, Durability::Never] {
        let dir = TempDir::new("decide-before-reply");
        let storage = FaultyStorage::default();
        let config = Config {
            storage: Arc::new(storage.clone()),
            durability,
            ..durable_config(&dir.0, 2)
        };
        let engine = Engine::open(config).unwrap();
        let h = engine.handle();
        // An account on shard 0 buying a SKU on shard 1: two-phase.
        let sku = (0..).find(|&s| shard_of(s, 2) == 1).unwrap();
        let account = (0..).find(|&a| shard_of(a, 2) == 0).unwrap();
        h.put_sku(sku, 100, 0).unwrap().unwrap();
        h.restock(sku, 1).unwrap().unwrap();
        h.deposit(account, 50).unwrap().unwrap();
        storage.faults.write_delay_ms.store(30, Ordering::SeqCst);
        for id in 0..3 {
            // The SKU shard holds the unit and votes Yes; the coordinator
            // then finds the balance short and aborts.
            let lines = vec![LineRequest::new(sku, 1)];
            let answer = h.place_order(id, account, lines, Payment::Immediate);
            assert!(
                matches!(
                    answer.unwrap(),
                    Err(mercato_engine::Reject::InsufficientFunds { .. })
                ),
                "{durability:?}"
            );
            let view = h.get_sku(sku).unwrap().unwrap();
            assert_eq!(
                (view.available, view.reserved),
                (1, 0),
                "{durability:?}, order {id}"
            );
        }
        storage.faults.write_delay_ms.store(0, Ordering::SeqCst);
        drop(h);
        engine.shutdown();
    }
}

/// A log that served well but cannot make its last records durable when
/// the engine stops must not close quietly: what it held may be lost.
#[test]
fn a_failed_final_sync_is_reported_at_shutdown() {
    let dir = TempDir::new("eio-close");
    let storage = FaultyStorage::default();
    let config = Config {
        storage: Arc::new(storage.clone()),
        durability: mercato_engine::Durability::Never,
        ..durable_config(&dir.0, 1)
    };
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    // Under `never` these are answered before any sync: the last sync is
    // the one at shutdown, and it fails.
    storage
        .faults
        .fail_sync_at
        .store(storage.faults.syncs() + 1, Ordering::SeqCst);
    h.deposit(7, 1_000).unwrap().unwrap();
    drop(h);
    let stopped = engine.shutdown();
    assert_eq!(stopped.log_errors.len(), 1, "{:?}", stopped.log_errors);
    assert!(
        stopped.log_errors[0].starts_with("shard 0: "),
        "{:?}",
        stopped.log_errors
    );
}
