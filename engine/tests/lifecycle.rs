//! Orders through their whole life on the threaded runtime: cross-shard
//! placement, pay, cancel, refund with and without restock, expiry driven by
//! an injected clock, listing, and shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_engine::hash::shard_of;
use mercato_engine::{
    Config, Engine, EngineError, LineRequest, ManualClock, OrderState, Payment, Reject,
};

/// SKU ids on every shard but the account's, so the order takes two-phase commit.
fn skus_off(account_shard: u16, shards: u16) -> Vec<u64> {
    (0..1000u64)
        .filter(|&s| shard_of(s, shards) != account_shard)
        .take(3)
        .collect()
}

#[test]
fn an_order_lives_its_whole_life_across_shards() {
    let clock = Arc::new(ManualClock::new(10_000));
    let engine = Engine::open(Config {
        shards: 3,
        clock: clock.clone(),
        ..Config::default()
    })
    .unwrap();
    let h = engine.handle();
    let account = 1u64;
    let skus = skus_off(shard_of(account, 3), 3);
    for &s in &skus {
        h.put_sku(s, 100, 0).unwrap().unwrap();
        h.restock(s, 5).unwrap().unwrap();
    }
    h.deposit(account, 10_000).unwrap().unwrap();
    let lines: Vec<_> = skus.iter().map(|&s| LineRequest::new(s, 2)).collect();

    let o = h
        .place_order(
            1,
            account,
            lines.clone(),
            Payment::Deferred { ttl_ms: 1_000 },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.state, o.total, o.expires_at),
        (OrderState::Reserved, 600, 11_000)
    );
    assert_eq!(h.get_sku(skus[0]).unwrap().unwrap().reserved, 2);
    assert_eq!(h.get_account(account).unwrap().unwrap().balance, 10_000);
    let paid = h.pay(account, 1).unwrap().unwrap();
    assert_eq!(paid.state, OrderState::Paid);
    assert_eq!(h.get_account(account).unwrap().unwrap().balance, 9_400);

    let refunded = h.refund(account, 1, true).unwrap().unwrap();
    assert!(refunded.restocked);
    assert_eq!(h.get_account(account).unwrap().unwrap().balance, 10_000);

    h.place_order(
        2,
        account,
        lines.clone(),
        Payment::Deferred { ttl_ms: 1_000 },
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        h.cancel(account, 2).unwrap().unwrap().state,
        OrderState::Cancelled
    );
    h.place_order(3, account, lines.clone(), Payment::Immediate)
        .unwrap()
        .unwrap();
    let kept = h.refund(account, 3, false).unwrap().unwrap();
    assert!(!kept.restocked);
    // Without restock the units stay sold: 2 of each SKU.
    let v = h.get_sku(skus[1]).unwrap().unwrap();
    assert_eq!((v.available, v.reserved, v.sold), (3, 0, 2));

    // Expiry: the shard's sweep releases the stock once the clock passes.
    h.place_order(
        4,
        account,
        vec![LineRequest::new(skus[2], 3)],
        Payment::Deferred { ttl_ms: 500 },
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.get_sku(skus[2]).unwrap().unwrap().available, 0);
    clock.advance(501);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.get_order(account, 4).unwrap().unwrap().state != OrderState::Expired {
        assert!(
            Instant::now() < deadline,
            "the sweep never expired the order"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.get_sku(skus[2]).unwrap().unwrap().available, 3);
    assert_eq!(
        h.pay(account, 4).unwrap(),
        Err(Reject::InvalidState {
            order: 4,
            state: OrderState::Expired
        })
    );

    // Newest first, a page going on from the order it names.
    let ids = |after, limit| {
        h.list_orders(account, after, limit)
            .unwrap()
            .map(|page| page.orders.iter().map(|o| o.id).collect::<Vec<_>>())
    };
    assert_eq!(ids(None, 10), Ok(vec![4, 3, 2, 1]));
    assert_eq!(ids(None, 2), Ok(vec![4, 3]));
    assert_eq!(ids(Some(3), 1), Ok(vec![2]));
    assert_eq!(ids(Some(2), 10), Ok(vec![1]));
    assert_eq!(ids(Some(1), 10), Ok(vec![]));
    assert_eq!(
        ids(Some(9), 10),
        Err(Reject::UnknownOrder { account, order: 9 }),
        "a page can only go on from an order of the account"
    );

    let report = h.audit().unwrap();
    assert!(report.quiescent && report.ok(), "{:?}", report.violations);
    assert_eq!(report.orders_by_state, [0, 0, 1, 1, 2]);

    engine.shutdown();
    assert_eq!(h.get_sku(skus[0]), Err(EngineError::Shutdown));
    assert_eq!(h.audit().unwrap_err(), EngineError::Shutdown);
}

#[test]
fn pay_after_the_deadline_expires_the_order_even_before_the_sweep() {
    let clock = Arc::new(ManualClock::new(0));
    let engine = Engine::open(Config {
        shards: 1,
        clock: clock.clone(),
        ..Config::default()
    })
    .unwrap();
    let h = engine.handle();
    h.put_sku(1, 10, 0).unwrap().unwrap();
    h.restock(1, 1).unwrap().unwrap();
    h.deposit(2, 100).unwrap().unwrap();
    h.place_order(
        1,
        2,
        vec![LineRequest::new(1, 1)],
        Payment::Deferred { ttl_ms: 10 },
    )
    .unwrap()
    .unwrap();
    clock.advance(10);
    // The sweep may or may not have run yet; the answer is the same either way.
    assert_eq!(
        h.pay(2, 1).unwrap(),
        Err(Reject::InvalidState {
            order: 1,
            state: OrderState::Expired
        })
    );
    assert_eq!(h.get_sku(1).unwrap().unwrap().available, 1);
    engine.shutdown();
}

#[test]
fn shutdown_answers_waiting_callers_and_replays_exactly() {
    let engine = Engine::open(Config {
        shards: 2,
        journal: mercato_engine::JournalMode::Memory,
        ..Config::default()
    })
    .unwrap();
    let h = engine.handle();
    h.put_sku(1, 10, 0).unwrap().unwrap();
    h.restock(1, 1_000).unwrap().unwrap();
    for a in 0..20 {
        h.deposit(a, 1_000).unwrap().unwrap();
    }
    let callers: Vec<_> = (0..8u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                for i in 0..10_000u128 {
                    match h.place_order(
                        i,
                        t * 5 + (i % 5) as u64,
                        vec![LineRequest::new(1, 1)],
                        Payment::Immediate,
                    ) {
                        Ok(_) => answered += 1,
                        Err(EngineError::Shutdown) => return answered,
                        Err(e) => panic!("{e}"),
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let stopped = engine.shutdown();
    for c in callers {
        c.join().expect("every caller got an answer");
    }
    for (i, (shard, records)) in stopped.shards.iter().zip(&stopped.records).enumerate() {
        let mut replayed = mercato_engine::shard::Shard::new(i as u16, 2);
        records.iter().for_each(|r| replayed.replay(r.clone()));
        assert_eq!(replayed.state(), shard.state(), "shard {i}");
    }
    let parts: Vec<_> = stopped.shards.iter().map(|s| s.audit_part()).collect();
    let report = mercato_engine::audit::audit(&parts);
    assert!(report.quiescent && report.ok(), "{:?}", report.violations);
}

#[test]
fn shutdown_while_callers_wait_for_room_in_a_full_queue() {
    //! `submit_waiting` used to spin on a full queue while holding its place
    //! in the shutdown gate, and a stopping shard waits for the gate to empty
    //! before it answers its queue: both waited for ever. Now the caller gives
    //! up with `Shutdown` once the engine stops.
    let config = Config {
        shards: 1,
        inbound_depth_max: 1,
        ..Config::default()
    };
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    // Eight callers of 300-command batches keep some caller waiting for room
    // at almost any moment, which is when the old code hung (7 runs in 8).
    let callers: Vec<_> = (0..8u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                loop {
                    let batch = vec![
                        mercato_engine::Command::Deposit {
                            account: t,
                            amount: 1
                        };
                        300
                    ];
                    match h.submit_waiting(batch) {
                        Ok(answers) => assert!(answers.iter().all(|a| a.is_ok())),
                        Err(EngineError::Shutdown) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    engine.shutdown();
    for c in callers {
        c.join().expect("every caller got an answer");
    }
}
