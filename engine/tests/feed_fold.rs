//! The change feed's decoder against the engine: random workloads on 1 to
//! 4 shards (two-phase orders delivered in random orders, reservations
//! paid, cancelled, expired and refunded), then every shard's log decoded
//! into events and folded from nothing. The fold must be the engine's
//! state: every SKU's price, limit and stock, every balance, every order's
//! state and lines; and no event may come of two-phase bookkeeping alone
//! (every order an event names exists, placed once).

mod util;

use std::collections::HashMap;

use mercato_engine::feed::{Event, events_of};
use mercato_engine::sim::Cluster;
use mercato_engine::{Command, OrderState, Reply};
use proptest::prelude::*;
use util::strategy::{Space, picker, stocked_shop, timed_commands};

/// An order as the fold knows it: state, restocked, (SKU, qty, price) lines.
type OrderFold = (OrderState, bool, Vec<(u64, u32, u64)>);

#[derive(Default)]
struct Fold {
    skus: HashMap<u64, (u64, u32, i64, i64, i64)>,
    balances: HashMap<u64, i128>,
    orders: HashMap<(u64, u128), OrderFold>,
}

impl Fold {
    fn apply(&mut self, e: &Event) {
        match e {
            Event::SkuPut {
                sku,
                price,
                per_user_limit,
            } => {
                let s = self.skus.entry(*sku).or_default();
                s.0 = *price;
                s.1 = *per_user_limit;
            }
            Event::Stock {
                sku,
                available,
                reserved,
                sold,
                ..
            } => {
                let s = self.skus.get_mut(sku).expect("stock of a known SKU");
                s.2 += available;
                s.3 += reserved;
                s.4 += sold;
            }
            Event::StockSet {
                sku,
                available,
                reserved,
                sold,
            } => {
                let s = self.skus.get_mut(sku).expect("a known SKU");
                (s.2, s.3, s.4) = (
                    i64::from(*available),
                    i64::from(*reserved),
                    i64::from(*sold),
                );
            }
            Event::Balance { account, delta, .. } => {
                *self.balances.entry(*account).or_default() += delta;
            }
            Event::OrderPlaced(v) => {
                let lines = v
                    .lines
                    .iter()
                    .map(|l| (l.sku, l.qty, l.unit_price))
                    .collect();
                let old = self
                    .orders
                    .insert((v.account, v.id), (v.state, false, lines));
                assert!(old.is_none(), "order {} placed twice", v.id);
            }
            Event::OrderPaid { key, .. } => self.set(key, OrderState::Paid, false),
            Event::OrderCancelled { key, .. } => self.set(key, OrderState::Cancelled, false),
            Event::OrderExpired { key, .. } => self.set(key, OrderState::Expired, false),
            Event::OrderRefunded { key, restock, .. } => {
                self.set(key, OrderState::Refunded, *restock)
            }
            e => unreachable!("a log decodes into no copy: {e:?}"),
        }
    }

    fn set(&mut self, key: &mercato_engine::OrderKey, state: OrderState, restocked: bool) {
        let o = (self.orders)
            .get_mut(&(key.account, key.id()))
            .expect("an order placed before");
        o.0 = state;
        o.1 = restocked;
    }
}

fn run(shards: u16, mut cmds: Vec<(u64, Command)>, seed: u64) {
    let sp = Space::small();
    cmds.splice(0..0, stocked_shop(sp));
    let mut cluster = Cluster::new(shards);
    let mut now = 1_000u64;
    let mut pick = picker(seed);
    for (dt, cmd) in cmds {
        now += dt;
        cluster.tick(now);
        cluster.submit(cmd, now);
        if pick(2) == 0 {
            cluster.settle_with(now, &mut pick, |_| {});
        }
    }
    cluster.settle_with(now, &mut pick, |_| {});
    now += 120_000;
    cluster.tick(now);
    cluster.settle(now);

    let mut fold = Fold::default();
    let mut events = Vec::new();
    for records in &cluster.records {
        for r in records {
            events.clear();
            events_of(r, &mut events);
            for e in &events {
                fold.apply(e);
            }
        }
    }
    for s in 0..sp.skus {
        let sku = sp.sku_base + s;
        let want = match cluster.call(Command::GetSku { sku }, now) {
            Ok(Reply::Sku(v)) => Some((
                v.price,
                v.per_user_limit,
                i64::from(v.available),
                i64::from(v.reserved),
                i64::from(v.sold),
            )),
            _ => None,
        };
        assert_eq!(fold.skus.get(&sku).copied(), want, "sku {sku}");
    }
    for a in 0..sp.accounts {
        let account = sp.account_base + a;
        let want = match cluster.call(Command::GetAccount { account }, now) {
            Ok(Reply::Account(v)) => Some(i128::from(v.balance)),
            _ => None,
        };
        assert_eq!(
            fold.balances.get(&account).copied(),
            want,
            "account {account}"
        );
        for id in 0..sp.orders {
            let want = match cluster.call(Command::GetOrder { account, order: id }, now) {
                Ok(Reply::Order(v)) => Some((
                    v.state,
                    v.restocked,
                    v.lines
                        .iter()
                        .map(|l| (l.sku, l.qty, l.unit_price))
                        .collect(),
                )),
                _ => None,
            };
            assert_eq!(
                fold.orders.get(&(account, id)).cloned(),
                want,
                "order {id} of {account}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn folding_the_feed_rebuilds_the_shop(
        shards in 1..=4u16,
        cmds in timed_commands(Space::small(), 120),
        seed in any::<u64>(),
    ) {
        run(shards, cmds, seed);
    }
}
