//! The threaded runtime, 1 to 4 shards, several caller threads at once,
//! against the model, with an audit after every command. Each thread owns its own SKUs and accounts, so its
//! commands commute with everyone else's and its answers must match a model
//! of its own, while SKUs and accounts of all threads share every shard.

mod util;

use std::sync::Arc;

use mercato_engine::{Config, Engine, ManualClock};
use proptest::prelude::*;
use util::model::Model;
use util::strategy::{Space, timed_commands};

const THREADS: u64 = 3;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn threads_on_the_runtime_answer_as_the_model(
        shards in 1..=4u16,
        per_thread in proptest::collection::vec(timed_commands(Space::small(), 60), THREADS as usize),
    ) {
        let clock = Arc::new(ManualClock::new(1_000));
        let engine = Engine::open(Config { shards, clock: clock.clone(), ..Config::default() }).unwrap();
        std::thread::scope(|s| {
            for (t, cmds) in per_thread.into_iter().enumerate() {
                let h = engine.handle();
                s.spawn(move || {
                    let sp = Space { sku_base: t as u64 * 100, account_base: 10_000 + t as u64 * 100, ..Space::small() };
                    let mut model = Model::default();
                    // Time stands still here (the clock is shared), so expiry is
                    // exercised by the simulator tests instead.
                    for (_, cmd) in cmds {
                        let cmd = util::rebase(cmd, sp);
                        let want = model.exec(&cmd, 1_000);
                        let got = h.call(cmd.clone()).unwrap();
                        assert_eq!(got, want, "thread {t}: {cmd:?}");
                        // Other threads are mid-flight, so only stock and
                        // money are sure to be checked here; the cross-shard
                        // check runs whenever the engine happens to be quiet.
                        let report = h.audit_now().unwrap();
                        assert!(report.ok(), "after {cmd:?}: {:?}", report.violations);
                    }
                });
            }
        });
        let report = engine.handle().audit().unwrap();
        prop_assert!(report.quiescent, "audit never saw a quiet engine");
        prop_assert!(report.ok(), "{:?}", report.violations);
        let stopped = engine.shutdown();
        prop_assert_eq!(stopped.shards.len(), shards as usize);
    }
}
