//! Every malformed or impossible request gets its typed error and changes
//! nothing: the audit figures and every view are the same before and after.

use mercato_engine::limits::{
    BATCH_LEN_MAX, LIST_ORDERS_LIMIT_MAX, ORDER_LINES_MAX, ORDER_TTL_MS_MAX,
};
use mercato_engine::{
    Command, Config, Engine, EngineError, Handle, LineRequest, OpenError, Payment, PlaceOrder,
    Reject,
};

fn snapshot(h: &Handle) -> String {
    let r = h.audit().unwrap();
    assert!(r.ok(), "{:?}", r.violations);
    let views: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{:?} {:?} {:?}",
                h.get_sku(i),
                h.get_account(100 + i),
                h.list_orders(100 + i, None, 10)
            )
        })
        .collect();
    format!(
        "{:?} {:?} {} {} {views:?}",
        r.orders_by_state, r.balances, r.units_available, r.units_sold
    )
}

fn order(id: u128, account: u64, lines: Vec<LineRequest>, payment: Payment) -> Command {
    Command::PlaceOrder(PlaceOrder {
        id,
        account,
        lines,
        payment,
    })
}

#[test]
fn bad_requests_get_typed_errors_and_change_nothing() {
    let engine = Engine::open(Config::with_shards(3)).unwrap();
    let h = engine.handle();
    for sku in 0..4 {
        h.put_sku(sku, 1_000, if sku == 3 { 1 } else { 0 })
            .unwrap()
            .unwrap();
        h.restock(sku, 10).unwrap().unwrap();
    }
    for a in 100..104 {
        h.deposit(a, 5_000).unwrap().unwrap();
    }
    h.place_order(1, 100, vec![LineRequest::new(3, 1)], Payment::Immediate)
        .unwrap()
        .unwrap();
    h.put_sku(50, u64::MAX / 2, 0).unwrap().unwrap();
    h.restock(50, 10).unwrap().unwrap();
    let before = snapshot(&h);

    let one = |sku, qty| vec![LineRequest::new(sku, qty)];
    let too_many: Vec<_> = (0..=ORDER_LINES_MAX as u64)
        .map(|s| LineRequest::new(s, 1))
        .collect();
    let cases: Vec<(Command, Reject)> = vec![
        (
            order(9, 100, one(0, 0), Payment::Immediate),
            Reject::ZeroQuantity { sku: 0 },
        ),
        (
            order(9, 100, vec![], Payment::Immediate),
            Reject::EmptyOrder,
        ),
        (
            order(9, 100, too_many, Payment::Immediate),
            Reject::TooManyLines {
                count: ORDER_LINES_MAX + 1,
                max: ORDER_LINES_MAX,
            },
        ),
        (
            order(
                9,
                100,
                vec![LineRequest::new(1, 1), LineRequest::new(1, 2)],
                Payment::Immediate,
            ),
            Reject::DuplicateSku { sku: 1 },
        ),
        (
            order(9, 100, one(0, 1), Payment::Deferred { ttl_ms: 0 }),
            Reject::InvalidTtl {
                ttl_ms: 0,
                max_ms: ORDER_TTL_MS_MAX,
            },
        ),
        (
            order(9, 100, one(0, 1), Payment::Deferred { ttl_ms: u64::MAX }),
            Reject::InvalidTtl {
                ttl_ms: u64::MAX,
                max_ms: ORDER_TTL_MS_MAX,
            },
        ),
        (
            order(10, 100, one(77, 1), Payment::Immediate),
            Reject::UnknownSku { sku: 77 },
        ),
        (
            order(11, 999, one(0, 1), Payment::Immediate),
            Reject::UnknownAccount { account: 999 },
        ),
        (
            order(12, 100, one(0, 11), Payment::Immediate),
            Reject::OutOfStock {
                sku: 0,
                available: 10,
                requested: 11,
            },
        ),
        (
            order(13, 100, one(0, 6), Payment::Immediate),
            Reject::InsufficientFunds {
                account: 100,
                balance: 4_000,
                needed: 6_000,
            },
        ),
        (
            order(14, 100, one(3, 1), Payment::Immediate),
            Reject::PerUserLimit {
                sku: 3,
                limit: 1,
                already: 1,
                requested: 1,
            },
        ),
        (
            order(
                15,
                100,
                vec![LineRequest {
                    sku: 1,
                    qty: 1,
                    expected_unit_price: Some(999),
                }],
                Payment::Immediate,
            ),
            Reject::PriceChanged {
                sku: 1,
                expected: 999,
                actual: 1_000,
            },
        ),
        (
            order(1, 100, one(2, 1), Payment::Immediate),
            Reject::IdempotencyConflict { order: 1 },
        ),
        (
            Command::Deposit {
                account: 100,
                amount: u64::MAX,
            },
            Reject::BalanceOverflow {
                account: 100,
                balance: 4_000,
                amount: u64::MAX,
            },
        ),
        (
            Command::Deposit {
                account: 100,
                amount: 0,
            },
            Reject::ZeroAmount,
        ),
        (
            Command::Withdraw {
                account: 100,
                amount: 0,
            },
            Reject::ZeroAmount,
        ),
        (
            Command::Withdraw {
                account: 100,
                amount: 5_001,
            },
            Reject::InsufficientFunds {
                account: 100,
                balance: 4_000,
                needed: 5_001,
            },
        ),
        (
            Command::Withdraw {
                account: 998,
                amount: 1,
            },
            Reject::UnknownAccount { account: 998 },
        ),
        (
            Command::Restock {
                sku: 0,
                qty: u32::MAX,
            },
            Reject::StockOverflow {
                sku: 0,
                stocked: 10,
                qty: u32::MAX,
            },
        ),
        (
            Command::Restock { sku: 0, qty: 0 },
            Reject::ZeroQuantity { sku: 0 },
        ),
        (
            Command::Restock { sku: 55, qty: 1 },
            Reject::UnknownSku { sku: 55 },
        ),
        (
            Command::Pay {
                account: 100,
                order: 404,
            },
            Reject::UnknownOrder {
                account: 100,
                order: 404,
            },
        ),
        (
            Command::Pay {
                account: 100,
                order: 1,
            },
            Reject::InvalidState {
                order: 1,
                state: mercato_engine::OrderState::Paid,
            },
        ),
        (
            Command::Cancel {
                account: 100,
                order: 1,
            },
            Reject::InvalidState {
                order: 1,
                state: mercato_engine::OrderState::Paid,
            },
        ),
        (
            Command::Refund {
                account: 101,
                order: 1,
                restock: true,
            },
            Reject::UnknownOrder {
                account: 101,
                order: 1,
            },
        ),
        (
            Command::ListOrders {
                account: 100,
                after: None,
                limit: 0,
            },
            Reject::InvalidLimit {
                limit: 0,
                max: LIST_ORDERS_LIMIT_MAX,
            },
        ),
        (
            Command::ListOrders {
                account: 100,
                after: None,
                limit: LIST_ORDERS_LIMIT_MAX + 1,
            },
            Reject::InvalidLimit {
                limit: LIST_ORDERS_LIMIT_MAX + 1,
                max: LIST_ORDERS_LIMIT_MAX,
            },
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(h.call(cmd.clone()).unwrap(), Err(want), "{cmd:?}");
        // The same request again: rejected the same way (remembered or not).
        assert_eq!(h.call(cmd.clone()).unwrap(), Err(want), "{cmd:?} retried");
        assert_eq!(snapshot(&h), before, "{cmd:?} changed the state");
    }

    let long = vec![Command::GetSku { sku: 0 }; BATCH_LEN_MAX + 1];
    assert_eq!(
        h.submit(long).unwrap_err(),
        EngineError::BatchTooLong {
            len: BATCH_LEN_MAX + 1,
            max: BATCH_LEN_MAX
        }
    );
    assert_eq!(snapshot(&h), before);
    engine.shutdown();
}

#[test]
fn a_rejected_order_is_remembered_for_its_retry() {
    let engine = Engine::open(Config::with_shards(2)).unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    h.deposit(5, 1_000).unwrap().unwrap();
    let lines = vec![LineRequest::new(1, 2)];
    let first = h
        .place_order(7, 5, lines.clone(), Payment::Immediate)
        .unwrap();
    assert_eq!(
        first,
        Err(Reject::OutOfStock {
            sku: 1,
            available: 0,
            requested: 2
        })
    );
    h.restock(1, 10).unwrap().unwrap();
    // Stock arrived, but a retry of the same order gets its first outcome.
    assert_eq!(
        h.place_order(7, 5, lines.clone(), Payment::Immediate)
            .unwrap(),
        first
    );
    // A new order id is a new order.
    assert!(
        h.place_order(8, 5, lines, Payment::Immediate)
            .unwrap()
            .is_ok()
    );
    engine.shutdown();
}

#[test]
fn a_full_queue_answers_busy_and_runs_nothing() {
    // One shard with room for one waiting request, and callers sending long
    // batches: the queue fills within microseconds while the shard works.
    let config = Config {
        shards: 1,
        inbound_depth_max: 1,
        ..Config::default()
    };
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let seen_busy = std::sync::atomic::AtomicBool::new(false);
    let (accepted, busy): (u64, u64) = std::thread::scope(|s| {
        let callers: Vec<_> = (0..6u64)
            .map(|t| {
                let (h, seen_busy) = (h.clone(), &seen_busy);
                s.spawn(move || {
                    let (mut accepted, mut busy) = (0u64, 0u64);
                    while !seen_busy.load(std::sync::atomic::Ordering::Relaxed)
                        && std::time::Instant::now() < deadline
                    {
                        let batch = vec![
                            Command::Deposit {
                                account: t,
                                amount: 1
                            };
                            BATCH_LEN_MAX
                        ];
                        for answer in h.submit(batch).unwrap() {
                            match answer {
                                Ok(Ok(_)) => accepted += 1,
                                Err(EngineError::Busy {
                                    shard: 0,
                                    depth_max: 1,
                                }) => {
                                    busy += 1;
                                    seen_busy.store(true, std::sync::atomic::Ordering::Relaxed);
                                }
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    (accepted, busy)
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert!(busy > 0, "six callers never filled a queue of one");
    // Every deposit answered Busy was not applied: the money is exactly the accepted ones.
    let total: u64 = (0..6)
        .map(|a| h.get_account(a).unwrap().map_or(0, |v| v.balance))
        .sum();
    assert_eq!(total, accepted);
    engine.shutdown();
}

#[test]
fn an_engine_cannot_open_with_an_empty_queue() {
    let config = Config {
        inbound_depth_max: 0,
        ..Config::default()
    };
    assert!(matches!(
        Engine::open(config),
        Err(OpenError::Engine(EngineError::InvalidConfig { .. }))
    ));
}
