//! Locks and semaphores through the running engine: waits answered by
//! notices, leases lost to time and to sessions, fenced writes on the
//! lock's shard and on another, and tokens and leases across restarts and
//! snapshots.

mod util;

use std::sync::Arc;

use mercato_engine::command::{LockWait, shard_of_name};
use mercato_engine::lock::{LockError, LostBy, Notice};
use mercato_engine::{Command, Config, Engine, ManualClock, Reject};
use util::{TempDir, durable_config};

/// A lock name that lives on `shard` of `shards`.
fn name_on(shard: u16, shards: u16) -> Vec<u8> {
    (0..)
        .map(|i| format!("lock-{i}").into_bytes())
        .find(|n| shard_of_name(n, shards) == shard)
        .unwrap()
}

/// An account that lives on `shard` of `shards`.
fn account_on(shard: u16, shards: u16) -> u64 {
    (1..)
        .find(|&a| mercato_engine::hash::shard_of(a, shards) == shard)
        .unwrap()
}

/// An engine of two shards in memory on a clock the test moves.
fn manual_engine() -> (Arc<ManualClock>, Engine) {
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = Engine::open(Config {
        clock: clock.clone(),
        ..Config::with_shards(2)
    })
    .unwrap();
    (clock, engine)
}

fn stale(r: &Result<Result<mercato_engine::Reply, Reject>, mercato_engine::EngineError>) -> bool {
    matches!(r, Ok(Err(Reject::Lock(LockError::Stale { .. }))))
}

#[test]
fn waiters_are_served_in_order_and_told_by_notice() {
    let (clock, engine) = manual_engine();
    let h = engine.handle();
    let name = b"job-7";
    let first = h.lock_try(name, 1, 100).unwrap().unwrap();
    assert_eq!(first.token, 1);
    assert_eq!(
        h.lock_try(name, 2, 100).unwrap(),
        Err(Reject::Lock(LockError::Busy { token: 1 }))
    );
    // Two sessions queue; each acquire blocks its own thread.
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let mine = h.clone();
            let t = std::thread::spawn(move || {
                let s = mine.session();
                let lease = s.acquire(name, 1, 50, LockWait::Forever, false);
                (i, lease.unwrap().unwrap())
            });
            // In order: the second asks once the first waits.
            while h.lock_inspect(name).unwrap().unwrap().waiters <= i {
                std::thread::yield_now();
            }
            t
        })
        .collect();
    h.lock_release(name, first.token).unwrap().unwrap();
    let mut waiters = waiters.into_iter();
    let (i, second) = waiters.next().unwrap().join().unwrap();
    assert_eq!(
        (i, second.token),
        (0, 2),
        "the first to wait is served first"
    );
    h.lock_release(name, second.token).unwrap().unwrap();
    let (i, third) = waiters.next().unwrap().join().unwrap();
    assert_eq!((i, third.token), (1, 3));
    // A bounded wait ends on the engine's clock, and says so.
    let s = h.session();
    let waited = std::thread::scope(|scope| {
        let w = scope.spawn(|| s.acquire(name, 1, 50, LockWait::Ms(20), false));
        while h.lock_inspect(name).unwrap().unwrap().waiters == 0 {
            std::thread::yield_now();
        }
        clock.advance(21);
        w.join().unwrap()
    });
    assert_eq!(waited.unwrap(), Err(Reject::Lock(LockError::Timeout)));
    assert_eq!(h.lock_inspect(name).unwrap().unwrap().waiters, 0);
    // An unbound lease runs out only with time.
    clock.advance(50);
    assert_eq!(h.lock_try(name, 3, 10).unwrap().unwrap().token, 4);
    engine.shutdown();
}

#[test]
fn a_lease_lost_to_time_or_to_its_session_is_told_and_freed() {
    let (clock, engine) = manual_engine();
    let h = engine.handle();
    let s = h.session();
    let lease = s
        .acquire(b"a", 1, 30, LockWait::Try, false)
        .unwrap()
        .unwrap();
    clock.advance(31);
    let lost = (0..10_000).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(1));
        s.try_notice()
    });
    assert_eq!(
        lost,
        Some(Notice::Lost {
            name: b"a".to_vec().into(),
            token: lease.token,
            by: LostBy::Expired
        })
    );
    // A bound lease ends with its session.
    let s2 = h.session();
    let bound = s2
        .acquire(b"b", 1, 60_000, LockWait::Try, true)
        .unwrap()
        .unwrap();
    assert_eq!(
        h.lock_try(b"b", 9, 10).unwrap(),
        Err(Reject::Lock(LockError::Busy { token: bound.token }))
    );
    drop(s2);
    let next = (0..10_000).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(1));
        h.lock_try(b"b", 9, 10).unwrap().ok()
    });
    assert_eq!(next.map(|l| l.token), Some(bound.token + 1));
    // A semaphore of two permits: two holders, then Busy.
    let p1 = h.semaphore_try(b"sem", 2, 1, 1_000).unwrap().unwrap();
    let p2 = h.semaphore_try(b"sem", 2, 2, 1_000).unwrap().unwrap();
    assert!(p2.token > p1.token);
    assert!(matches!(
        h.semaphore_try(b"sem", 2, 3, 1_000).unwrap(),
        Err(Reject::Lock(LockError::Busy { .. }))
    ));
    assert_eq!(
        h.lock_try(b"sem", 3, 1_000).unwrap(),
        Err(Reject::Lock(LockError::PermitsMismatch { permits: 2 }))
    );
    engine.shutdown();
}

#[test]
fn fenced_writes_refuse_a_stale_token_on_any_shard() {
    let shards = 2;
    let engine = Engine::open(Config::with_shards(shards)).unwrap();
    let h = engine.handle();
    let lock = name_on(0, shards);
    for shard in 0..shards {
        // The write on the lock's shard, then on the other one.
        let account = account_on(shard, shards);
        let deposit = |amount| Command::Deposit { account, amount };
        let old = h.lock_try(&lock, 1, 60_000).unwrap().unwrap();
        let r = h.fenced(&lock, old.token, deposit(10));
        assert!(matches!(r, Ok(Ok(_))), "shard {shard}: {r:?}");
        h.lock_release(&lock, old.token).unwrap().unwrap();
        // Released with no newer grant: nobody else acted, so it may.
        assert!(matches!(h.fenced(&lock, old.token, deposit(1)), Ok(Ok(_))));
        let new = h.lock_try(&lock, 2, 60_000).unwrap().unwrap();
        let before = h.get_account(account).unwrap().unwrap().balance;
        assert!(
            stale(&h.fenced(&lock, old.token, deposit(5))),
            "shard {shard}"
        );
        assert_eq!(h.get_account(account).unwrap().unwrap().balance, before);
        assert!(matches!(h.fenced(&lock, new.token, deposit(5)), Ok(Ok(_))));
        h.lock_release(&lock, new.token).unwrap().unwrap();
    }
    // Reads cannot be fenced.
    let r = h.fenced(&lock, 1, Command::GetSku { sku: 1 });
    assert!(matches!(r, Ok(Err(Reject::Lock(LockError::NotFenceable)))));
    assert!(h.audit().unwrap().ok());
    engine.shutdown();
}

#[test]
fn tokens_and_leases_survive_restarts_and_snapshots() {
    let dir = TempDir::new("locks-restart");
    let clock = Arc::new(ManualClock::new(1_000));
    let config = || Config {
        clock: clock.clone(),
        ..durable_config(&dir.0, 2)
    };
    let engine = Engine::open(config()).unwrap();
    let h = engine.handle();
    for _ in 0..3 {
        let l = h.lock_try(b"a", 1, 100).unwrap().unwrap();
        h.lock_release(b"a", l.token).unwrap().unwrap();
    }
    let held = h.lock_try(b"b", 1, 100).unwrap().unwrap();
    engine.checkpoint_now().unwrap();
    let a4 = h.lock_try(b"a", 1, 100).unwrap().unwrap();
    assert_eq!(a4.token, 4);
    engine.shutdown();

    // Down 90 ms of `b`'s 100: it gets its whole 100 again.
    clock.advance(90);
    let engine = Engine::open(config()).unwrap();
    let h = engine.handle();
    let b = h.lock_inspect(b"b").unwrap().unwrap();
    assert_eq!(b.holders, vec![(held.token, 1, 1_090 + 100)]);
    assert_eq!(h.lock_inspect(b"a").unwrap().unwrap().last_token, 4);
    // `a` is still held by token 4 (logged after the snapshot).
    assert!(matches!(
        h.lock_try(b"a", 1, 100).unwrap(),
        Err(Reject::Lock(LockError::Busy { token: 4 }))
    ));
    h.lock_release(b"a", 4).unwrap().unwrap();
    assert_eq!(h.lock_try(b"a", 1, 100).unwrap().unwrap().token, 5);
    engine.shutdown();
}

#[test]
fn sagas_are_kept_per_shard_and_listed_by_each() {
    use mercato_engine::command::StepPhase;
    use mercato_engine::saga::{SagaError, SagaState};
    let engine = Engine::open(Config::with_shards(3)).unwrap();
    let h = engine.handle();
    for id in 0..20u128 {
        h.saga_begin(id, b"checkout", b"").unwrap().unwrap();
        let started = StepPhase::Started {
            name: b"reserve".to_vec().into(),
        };
        h.saga_step(id, 0, started).unwrap().unwrap();
        if id % 2 == 0 {
            let done = StepPhase::Done {
                data: Box::default(),
            };
            h.saga_step(id, 0, done).unwrap().unwrap();
            assert_eq!(h.saga_end(id).unwrap().unwrap().state, SagaState::Committed);
        }
    }
    let open = h.sagas_unfinished().unwrap().unwrap();
    let mut ids: Vec<u128> = open.iter().map(|v| v.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    let past = mercato_engine::command::SagaCommand::List {
        shard: 3,
        after: None,
        limit: 10,
        unfinished: false,
    };
    assert_eq!(
        h.call(Command::Saga(past)).unwrap(),
        Err(Reject::Saga(SagaError::NoSuchShard { shard: 3 }))
    );
    engine.shutdown();
}
