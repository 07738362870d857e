//! The sharded state machines, driven through the deterministic cluster with
//! messages delivered in random orders, against the single-threaded model.
//! Stock and money invariants are checked after every message; the
//! cross-shard invariant and every view after every command.

mod util;

use mercato_engine::shard::Shard;
use mercato_engine::sim::Cluster;
use mercato_engine::{Command, Reply};
use proptest::prelude::*;
use util::model::Model;
use util::strategy::{Space, picker, stocked_shop, timed_commands};

fn compare_views(cluster: &mut Cluster, model: &Model, sp: Space, now: u64) {
    for s in 0..sp.skus {
        let sku = sp.sku_base + s;
        let got = cluster.call(Command::GetSku { sku }, now);
        let want = model.skus.get(&sku).map(|v| Reply::Sku(*v));
        assert_eq!(got.ok(), want, "sku {sku}");
    }
    for a in 0..sp.accounts {
        let account = sp.account_base + a;
        let got = cluster.call(Command::GetAccount { account }, now);
        let want = model.balances.get(&account).map(|&balance| {
            Reply::Account(mercato_engine::AccountView {
                id: account,
                balance,
            })
        });
        assert_eq!(got.ok(), want, "account {account}");
        for id in 0..sp.orders {
            let got = cluster.call(Command::GetOrder { account, order: id }, now);
            let want = model
                .orders
                .get(&(account, id))
                .map(|(o, _)| Reply::Order(o.clone()));
            assert_eq!(got.ok(), want, "order {id} of {account}");
        }
    }
}

fn run(shards: u16, mut cmds: Vec<(u64, Command)>, seed: u64, concurrent: bool) {
    let sp = Space::small();
    if seed & 4 == 0 {
        cmds.splice(0..0, stocked_shop(sp));
    }
    let mut cluster = Cluster::new(shards);
    if seed & 2 == 0 {
        // Records as the write-ahead log gets them, checked by the replay
        // at the end.
        cluster.encode_records();
    }
    let mut model = Model::default();
    let mut now = 1_000u64;
    let mut pick = picker(seed);
    let check_step = |c: &Cluster| {
        let r = c.audit();
        assert!(r.ok(), "after a message: {:?}", r.violations);
    };
    if concurrent {
        // Everything in flight at once; answers cannot be compared with a
        // serial model, but no interleaving may break an invariant.
        for (dt, cmd) in cmds {
            now += dt;
            cluster.submit(cmd, now);
            if pick(3) == 0 {
                cluster.settle_with(now, &mut pick, check_step);
            }
        }
        cluster.settle_with(now, &mut pick, check_step);
        cluster.tick(now + 1_000_000);
        let report = cluster.audit();
        assert!(report.quiescent && report.ok(), "{:?}", report.violations);
        return;
    }
    for (dt, cmd) in cmds {
        now += dt;
        cluster.tick(now);
        model.expire(now);
        let want = model.exec(&cmd, now);
        let token = cluster.submit(cmd.clone(), now);
        cluster.settle_with(now, &mut pick, check_step);
        let got = cluster.answer(token).expect("answered");
        assert_eq!(got, want, "{cmd:?}");
        let report = cluster.audit();
        assert!(
            report.quiescent && report.ok(),
            "{cmd:?}: {:?}",
            report.violations
        );
    }
    compare_views(&mut cluster, &model, sp, now);

    // Replaying each shard's records rebuilds exactly the same state.
    for (i, records) in cluster.records.iter().enumerate() {
        let mut replayed = Shard::new(i as u16, shards);
        for r in records {
            replayed.replay(r.clone());
        }
        assert_eq!(
            replayed.state(),
            cluster.shards[i].state(),
            "shard {i} replayed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sharded_engine_answers_as_the_model(
        shards in 1..=4u16,
        cmds in timed_commands(Space::small(), 120),
        seed in any::<u64>(),
    ) {
        run(shards, cmds, seed, false);
    }

    #[test]
    fn interleaved_commands_keep_every_invariant(
        shards in 1..=4u16,
        cmds in timed_commands(Space::small(), 120),
        seed in any::<u64>(),
    ) {
        run(shards, cmds, seed, true);
    }
}
