//! Many threads fight over a few SKUs with orders that span every shard. At
//! the end nothing is oversold, money is conserved, and every order a caller
//! was told succeeded is in the engine exactly once, in the state it was told.

use std::collections::HashMap;

use mercato_engine::{
    Command, Config, Engine, Handle, LineRequest, OrderState, Payment, PlaceOrder, Reject, Reply,
};

/// An acknowledged order: account, id, state when acknowledged, (sku, qty) lines.
type Acked = (u64, u128, OrderState, Vec<(u64, u32)>);

const SKUS: u64 = 5;
const STOCK: u32 = 400;
const THREADS: u64 = 6;
const ORDERS_PER_THREAD: u64 = 400;
const ACCOUNTS_PER_THREAD: u64 = 8;

#[test]
fn contended_multi_shard_orders_never_oversell() {
    for shards in [2u16, 3, 4] {
        let engine = stocked_engine(shards, 50_000);
        let h = engine.handle();
        let results: Vec<Vec<Acked>> = on_threads(&engine, 0x9E37_79B9, |h, t, next| {
            let mut ok = Vec::new();
            for i in 0..ORDERS_PER_THREAD {
                if i % 50 == 0 {
                    // Mid-contention: stock and money hold at every moment.
                    let report = h.audit_now().unwrap();
                    assert!(report.ok(), "{:?}", report.violations);
                }
                let account = t * ACCOUNTS_PER_THREAD + next() % ACCOUNTS_PER_THREAD;
                let first = next() % SKUS;
                let n = 1 + next() % 3;
                let lines: Vec<_> = (0..n)
                    .map(|k| LineRequest::new((first + k) % SKUS, 1 + (next() % 3) as u32))
                    .collect();
                let deferred = next() % 3 == 0;
                let payment = if deferred {
                    Payment::Deferred { ttl_ms: 600_000 }
                } else {
                    Payment::Immediate
                };
                let id = u128::from(t) << 64 | u128::from(i);
                match h.place_order(id, account, lines.clone(), payment).unwrap() {
                    Ok(mut o) => {
                        if deferred {
                            o = match next() % 3 {
                                0 => h.pay(account, id).unwrap().unwrap(),
                                1 => h.cancel(account, id).unwrap().unwrap(),
                                _ => o,
                            };
                        }
                        let units = lines.iter().map(|l| (l.sku, l.qty)).collect();
                        ok.push((account, id, o.state, units));
                    }
                    Err(Reject::OutOfStock { .. } | Reject::InsufficientFunds { .. }) => {}
                    Err(other) => panic!("unexpected rejection {other}"),
                }
            }
            ok
        });

        let mut reserved: HashMap<u64, u64> = HashMap::new();
        let mut sold: HashMap<u64, u64> = HashMap::new();
        let mut successes = 0;
        for (account, id, state, units) in results.into_iter().flatten() {
            successes += 1;
            let now = h.get_order(account, id).unwrap().unwrap();
            assert_eq!(now.state, state, "order {id}");
            for (sku, qty) in units {
                match state {
                    OrderState::Reserved => *reserved.entry(sku).or_default() += u64::from(qty),
                    OrderState::Paid => *sold.entry(sku).or_default() += u64::from(qty),
                    _ => {}
                }
            }
        }
        check_end(engine, shards, successes, &reserved, &sold);
    }
}

/// Commands per batch in the test below: several times the commands a shard
/// runs between flushes (`TURN_COMMANDS_MAX`), so batches are split by
/// mid-turn flushes on every shard.
const BATCH_LEN: u64 = 300;
const BATCHES_PER_THREAD: u64 = 6;

/// Large batches of orders that span every shard, with reads among them:
/// every answer comes back in its command's place, every read sees stock
/// conserved, and every order acknowledged is in the engine exactly once.
#[test]
fn large_batches_across_shards_answer_in_place_and_apply_once() {
    for shards in [2u16, 3] {
        let engine = stocked_engine(shards, 20_000);
        // Per thread, the (sku, qty) lines of each order acknowledged.
        let acked: Vec<Vec<Vec<(u64, u32)>>> = on_threads(&engine, 0x2545_F491, |h, t, next| {
            let mut orders = Vec::new();
            for b in 0..BATCHES_PER_THREAD {
                let cmds: Vec<Command> = (0..BATCH_LEN)
                    .map(|i| {
                        if i % 10 == 9 {
                            return Command::GetSku { sku: next() % SKUS };
                        }
                        let first = next() % SKUS;
                        Command::PlaceOrder(PlaceOrder {
                            id: u128::from(t) << 64 | u128::from(b * BATCH_LEN + i),
                            account: t * ACCOUNTS_PER_THREAD + next() % ACCOUNTS_PER_THREAD,
                            lines: (0..1 + next() % 3)
                                .map(|k| LineRequest::new((first + k) % SKUS, 1))
                                .collect(),
                            payment: Payment::Immediate,
                        })
                    })
                    .collect();
                let answers = h.submit_waiting(cmds.clone()).unwrap();
                assert_eq!(answers.len(), cmds.len());
                for (cmd, answer) in cmds.iter().zip(answers) {
                    match (cmd, answer) {
                        (Command::GetSku { sku }, Ok(Reply::Sku(v))) => {
                            assert_eq!(v.id, *sku, "a read answered in its place");
                            assert_eq!(v.available + v.reserved + v.sold, STOCK);
                        }
                        (Command::PlaceOrder(p), Ok(Reply::Order(o))) => {
                            assert_eq!((o.id, o.account), (p.id, p.account));
                            assert_eq!(o.state, OrderState::Paid);
                            orders.push(p.lines.iter().map(|l| (l.sku, l.qty)).collect());
                        }
                        (
                            Command::PlaceOrder(_),
                            Err(Reject::OutOfStock { .. } | Reject::InsufficientFunds { .. }),
                        ) => {}
                        (cmd, other) => panic!("{cmd:?} answered {other:?}"),
                    }
                }
            }
            orders
        });

        let orders: Vec<Vec<(u64, u32)>> = acked.into_iter().flatten().collect();
        let mut sold: HashMap<u64, u64> = HashMap::new();
        for (sku, qty) in orders.iter().flatten() {
            *sold.entry(*sku).or_default() += u64::from(*qty);
        }
        let successes = orders.len() as u64;
        check_end(engine, shards, successes, &HashMap::new(), &sold);
    }
}

/// An engine of `shards` with the test's SKUs stocked and its accounts
/// funded with `deposit` each.
fn stocked_engine(shards: u16, deposit: u64) -> Engine {
    let engine = Engine::open(Config::with_shards(shards)).unwrap();
    let h = engine.handle();
    for sku in 0..SKUS {
        h.put_sku(sku, 10 + sku, 0).unwrap().unwrap();
        h.restock(sku, STOCK).unwrap().unwrap();
    }
    for a in 0..THREADS * ACCOUNTS_PER_THREAD {
        h.deposit(a, deposit).unwrap().unwrap();
    }
    engine
}

/// Runs `work` on `THREADS` threads at once, each with its own handle, its
/// index and a random source seeded from `seed` and that index; returns
/// what each returned, in thread order.
fn on_threads<T: Send>(
    engine: &Engine,
    seed: u64,
    work: impl Fn(Handle, u64, &mut dyn FnMut() -> u64) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (h, work) = (engine.handle(), &work);
                s.spawn(move || work(h, t, &mut xorshift(seed + t)))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// A xorshift random source, so each thread's choices repeat from its seed.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut rng = seed;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    }
}

/// After the run: something sold; every SKU's units conserved and its
/// reserved and sold units exactly those acknowledged; a quiet audit finds
/// nothing wrong and holds each acknowledged order once. Shuts the engine.
fn check_end(
    engine: Engine,
    shards: u16,
    successes: u64,
    reserved: &HashMap<u64, u64>,
    sold: &HashMap<u64, u64>,
) {
    let h = engine.handle();
    assert!(
        successes > 100,
        "the test should sell something: {successes}"
    );
    for sku in 0..SKUS {
        let v = h.get_sku(sku).unwrap().unwrap();
        assert_eq!(v.available + v.reserved + v.sold, STOCK, "sku {sku}");
        assert_eq!(
            u64::from(v.reserved),
            reserved.get(&sku).copied().unwrap_or(0),
            "sku {sku} reserved"
        );
        assert_eq!(
            u64::from(v.sold),
            sold.get(&sku).copied().unwrap_or(0),
            "sku {sku} sold"
        );
    }
    let report = h.audit().unwrap();
    assert!(
        report.quiescent && report.ok(),
        "{shards} shards: {:?}",
        report.violations
    );
    assert_eq!(
        report.orders, successes,
        "every acknowledged order exactly once"
    );
    engine.shutdown();
}
