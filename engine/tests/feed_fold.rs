//! The change feed's decoder against the engine: random workloads on 1 to
//! 4 shards (two-phase orders delivered in random orders, reservations
//! paid, cancelled, expired and refunded), then every shard's log decoded
//! into events and folded from nothing. The fold must be the engine's
//! state: every SKU's price, limit and stock, every balance, every order's
//! state and lines; and no event may come of two-phase bookkeeping alone
//! (every order an event names exists, placed once).

mod util;

use mercato_engine::feed::events_of;
use mercato_engine::sim::Cluster;
use mercato_engine::{Command, Reply};
use proptest::prelude::*;
use util::strategy::{Space, picker, stocked_shop, timed_commands};

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

    let mut fold = util::fold::Shop::default();
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
