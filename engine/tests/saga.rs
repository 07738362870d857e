//! Sagas through the client's orchestrator against a real `mercato serve`,
//! with a fake payment provider and a fake warehouse that fail, time out
//! (having acted), act late (after the saga was compensated), and crash
//! the orchestrator before or after they act, at every step and in every
//! compensation. After each saga and a `recover_sagas` by a fresh
//! orchestrator, no saga is unfinished or half done, and stock, the
//! wallet and the provider's money all add up.
//!
//! A checkout: reserve the order in mercato (`Deferred`, so a reservation
//! nobody pays expires by itself), charge the card, ship, then pay the
//! order in mercato. Compensations: cancel, refund the card (which fences
//! a late charge out), cancel the shipment, refund the order.

mod util;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use mercato_client::{Client, ClientConfig, Orchestrator, SagaDef, SagaOutcome, StepCtx, wire};
use util::Server;

const SKU: u64 = 5;
const PRICE: u64 = 700;
const ACCOUNT: u64 = 9;
const FUNDS: u64 = 1_000_000;
const STOCK: u32 = 1_000;
const RESERVE_TTL_MS: u64 = 1_500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Action,
    Compensation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Refused; nothing happened.
    Fail,
    /// It acted, but the answer never came (a hang cut by a timeout).
    TimedOut,
    /// Nothing yet; the request arrives after the saga ended.
    Late,
    /// The orchestrator dies before the call.
    CrashBefore,
    /// The orchestrator dies after the call acted, before it recorded so.
    CrashAfter,
    /// A compensation that fails twice, then works.
    Flaky,
}

/// The faults left to fire, by (saga, step, phase); each fires once
/// (`Flaky` twice).
#[derive(Default)]
struct Faults(HashMap<(u128, u16, Phase), (Fault, u32)>);

/// A payment provider or a warehouse: idempotent by key, and an undo
/// that fences a late request for its key out.
#[derive(Default)]
struct Service {
    done: HashMap<String, u64>,
    undone: HashSet<String>,
}

impl Service {
    fn act(&mut self, key: &str, amount: u64) -> Result<(), String> {
        if self.undone.contains(key) {
            return Err(format!("{key} was undone; too late"));
        }
        self.done.entry(key.into()).or_insert(amount);
        Ok(())
    }

    fn undo(&mut self, key: &str) {
        self.undone.insert(key.into());
        self.done.remove(key);
    }
}

struct World {
    faults: Mutex<Faults>,
    card: Mutex<Service>,
    warehouse: Mutex<Service>,
    /// Requests that arrive late: run after the saga ended.
    late: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

/// The payload: the order id.
fn order_of(ctx: &StepCtx) -> u128 {
    u128::from_le_bytes(ctx.payload.try_into().unwrap())
}

/// Runs `effect` as the fault for (`ctx`, `phase`) says.
fn call(
    world: &Arc<World>,
    ctx: &StepCtx,
    phase: Phase,
    effect: impl Fn() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let fault = {
        let mut f = world.faults.lock().unwrap();
        let key = (ctx.saga, ctx.step, phase);
        match f.0.get_mut(&key) {
            Some((fault, n)) if *n > 0 => {
                *n -= 1;
                Some(*fault)
            }
            _ => None,
        }
    };
    match fault {
        None => effect(),
        Some(Fault::Fail | Fault::Flaky) => Err("refused".into()),
        Some(Fault::TimedOut) => {
            let _ = effect();
            Err("timed out".into())
        }
        Some(Fault::Late) => {
            world.late.lock().unwrap().push(Box::new(move || {
                let _ = effect();
            }));
            Err("timed out".into())
        }
        Some(Fault::CrashBefore) => std::panic::panic_any(Crash),
        Some(Fault::CrashAfter) => {
            let _ = effect();
            std::panic::panic_any(Crash)
        }
    }
}

struct Crash;

fn checkout(world: &Arc<World>, shop: &Arc<Client>) -> SagaDef {
    let (w, s) = (world.clone(), shop.clone());
    let reserve = move |ctx: &StepCtx| {
        let (id, shop) = (order_of(ctx), s.clone());
        call(&w, ctx, Phase::Action, move || {
            let line = wire::LineRequest {
                sku: SKU,
                qty: 1,
                expected_unit_price: None,
            };
            let ttl = wire::Payment::Deferred {
                ttl_ms: RESERVE_TTL_MS,
            };
            match shop.place_order(id, ACCOUNT, vec![line], ttl) {
                Ok(Ok(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })?;
        Ok(PRICE.to_le_bytes().to_vec())
    };
    let (w, s) = (world.clone(), shop.clone());
    let unreserve = move |ctx: &StepCtx, _: Option<&[u8]>| {
        let (id, shop) = (order_of(ctx), s.clone());
        call(&w, ctx, Phase::Compensation, move || {
            match shop.cancel(ACCOUNT, id) {
                // Never placed (a late one expires by itself), or ended.
                Ok(Ok(_) | Err(wire::Reject::UnknownOrder { .. })) => Ok(()),
                Ok(Err(wire::Reject::InvalidState { .. })) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    };
    let w = world.clone();
    let charge = move |ctx: &StepCtx| {
        let (key, w2) = (ctx.key(), w.clone());
        call(&w, ctx, Phase::Action, move || {
            w2.card.lock().unwrap().act(&key, PRICE)
        })?;
        Ok(Vec::new())
    };
    let w = world.clone();
    let refund = move |ctx: &StepCtx, _: Option<&[u8]>| {
        let (key, w2) = (format!("{:032x}-1", ctx.saga), w.clone());
        call(&w, ctx, Phase::Compensation, move || {
            w2.card.lock().unwrap().undo(&key);
            Ok(())
        })
    };
    let w = world.clone();
    let ship = move |ctx: &StepCtx| {
        let (key, w2) = (ctx.key(), w.clone());
        call(&w, ctx, Phase::Action, move || {
            w2.warehouse.lock().unwrap().act(&key, 1)
        })?;
        Ok(Vec::new())
    };
    let w = world.clone();
    let unship = move |ctx: &StepCtx, _: Option<&[u8]>| {
        let (key, w2) = (format!("{:032x}-2", ctx.saga), w.clone());
        call(&w, ctx, Phase::Compensation, move || {
            w2.warehouse.lock().unwrap().undo(&key);
            Ok(())
        })
    };
    let (w, s) = (world.clone(), shop.clone());
    let confirm = move |ctx: &StepCtx| {
        let (id, shop) = (order_of(ctx), s.clone());
        call(&w, ctx, Phase::Action, move || {
            match shop.pay(ACCOUNT, id) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(wire::Reject::InvalidState {
                    state: wire::OrderState::Paid,
                    ..
                })) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })?;
        Ok(Vec::new())
    };
    let (w, s) = (world.clone(), shop.clone());
    let unconfirm = move |ctx: &StepCtx, _: Option<&[u8]>| {
        let (id, shop) = (order_of(ctx), s.clone());
        call(&w, ctx, Phase::Compensation, move || {
            match shop.refund(ACCOUNT, id, true) {
                Ok(Ok(_)) => Ok(()),
                // Not paid (so nothing to give back), or refunded before.
                Ok(Err(wire::Reject::InvalidState { .. } | wire::Reject::UnknownOrder { .. })) => {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        })
    };
    SagaDef::new(b"checkout")
        .step(b"reserve", reserve, unreserve)
        .step(b"charge", charge, refund)
        .step(b"ship", ship, unship)
        .step(b"confirm", confirm, unconfirm)
}

fn orchestrator<'a>(world: &Arc<World>, shop: &'a Arc<Client>) -> Orchestrator<'a> {
    let mut o = Orchestrator::new(shop);
    o.register(checkout(world, shop));
    o
}

#[test]
fn no_saga_ends_half_done_whatever_fails_and_whenever_it_crashes() {
    // Crashes are panics on purpose: keep them quiet, and nothing else.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Crash>().is_none() {
            default(info);
        }
    }));
    let server = Server::start(2, &[]);
    let connect = || Arc::new(Client::connect(server.main, ClientConfig::default()).unwrap());
    let setup = connect();
    setup.put_sku(SKU, PRICE, 0).unwrap().unwrap();
    setup.restock(SKU, STOCK).unwrap().unwrap();
    setup.deposit(ACCOUNT, FUNDS).unwrap().unwrap();
    let world = Arc::new(World {
        faults: Mutex::default(),
        card: Mutex::default(),
        warehouse: Mutex::default(),
        late: Mutex::default(),
    });

    // Every fault at every step's action; every fault but Late at every
    // compensation (of a saga made to fail at its last step).
    let mut cases = Vec::new();
    let faults = [
        Fault::Fail,
        Fault::TimedOut,
        Fault::Late,
        Fault::CrashBefore,
        Fault::CrashAfter,
    ];
    for step in 0..4u16 {
        for fault in faults {
            cases.push(vec![((step, Phase::Action), (fault, 1))]);
        }
    }
    for step in 0..4u16 {
        for fault in [
            Fault::TimedOut,
            Fault::CrashBefore,
            Fault::CrashAfter,
            Fault::Flaky,
        ] {
            let n = if fault == Fault::Flaky { 2 } else { 1 };
            cases.push(vec![
                ((3, Phase::Action), (Fault::Fail, 1)),
                ((step, Phase::Compensation), (fault, n)),
            ]);
        }
    }
    cases.push(Vec::new()); // and one that nothing disturbs
    let mut outcomes: HashMap<u128, SagaOutcome> = HashMap::new();
    for (i, case) in cases.iter().enumerate() {
        let saga = 1_000 + i as u128;
        let order = 50_000 + i as u128;
        {
            let mut f = world.faults.lock().unwrap();
            for &((step, phase), fault) in case {
                f.0.insert((saga, step, phase), fault);
            }
        }
        let shop = connect();
        let o = orchestrator(&world, &shop);
        let run = catch_unwind(AssertUnwindSafe(|| {
            o.run(saga, b"checkout", &order.to_le_bytes())
        }));
        drop(o);
        drop(shop);
        let outcome = match run {
            Ok(r) => r.unwrap_or_else(|e| panic!("case {i} {case:?}: {e}")),
            Err(_) => {
                // A new process picks up what the crashed one left.
                let shop = connect();
                let o = orchestrator(&world, &shop);
                let resumed = o.recover_sagas().unwrap();
                assert_eq!(resumed.len(), 1, "case {i}: one saga left unfinished");
                resumed[0].1
            }
        };
        outcomes.insert(saga, outcome);
        for late in world.late.lock().unwrap().drain(..) {
            late();
        }
        let expect_commit = case.is_empty()
            || case.iter().all(|&((_, phase), (fault, _))| {
                phase == Phase::Action && matches!(fault, Fault::CrashBefore | Fault::CrashAfter)
            });
        assert_eq!(
            outcome == SagaOutcome::Committed,
            expect_commit,
            "case {i} {case:?} ended {outcome:?}"
        );
    }

    // Reservations nobody paid for (late ones included) expire.
    std::thread::sleep(std::time::Duration::from_millis(RESERVE_TTL_MS + 500));
    let shop = connect();
    assert!(shop.sagas_unfinished().unwrap().unwrap().is_empty());
    let card = world.card.lock().unwrap();
    let warehouse = world.warehouse.lock().unwrap();
    let mut paid = 0u64;
    let mut sold = 0u32;
    for (&saga, &outcome) in &outcomes {
        let order = 50_000 + (saga - 1_000);
        let view = shop.saga_get(saga).unwrap().unwrap();
        let state = shop
            .get_order(ACCOUNT, order)
            .unwrap()
            .ok()
            .map(|o| o.state);
        let charged = card.done.get(&format!("{saga:032x}-1")).copied();
        let shipped = warehouse.done.contains_key(&format!("{saga:032x}-2"));
        match outcome {
            SagaOutcome::Committed => {
                assert_eq!(view.state, wire::SagaState::Committed);
                assert_eq!(state, Some(wire::OrderState::Paid), "saga {saga}");
                assert_eq!(charged, Some(PRICE), "saga {saga}");
                assert!(shipped, "saga {saga}");
                paid += PRICE;
                sold += 1;
            }
            SagaOutcome::Compensated => {
                assert_eq!(view.state, wire::SagaState::Compensated);
                assert!(
                    matches!(
                        state,
                        None | Some(
                            wire::OrderState::Cancelled
                                | wire::OrderState::Expired
                                | wire::OrderState::Refunded
                        )
                    ),
                    "saga {saga}: order {state:?}"
                );
                assert_eq!(charged, None, "saga {saga}: the card keeps a charge");
                assert!(!shipped, "saga {saga}: a shipment stays");
            }
        }
    }
    // Money and stock add up: what the card took is what mercato sold.
    assert_eq!(card.done.values().sum::<u64>(), paid);
    let balance = shop.get_account(ACCOUNT).unwrap().unwrap().balance;
    assert_eq!(balance, FUNDS - paid);
    let sku = shop.get_sku(SKU).unwrap().unwrap();
    assert_eq!((sku.sold, sku.reserved), (sold, 0));
    assert_eq!(sku.available + sku.sold, STOCK);
}
