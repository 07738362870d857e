//! The snapshot thread runs at a lower priority than the shards, and in the
//! idle scheduling class when asked.
//!
//! A test binary of its own: it finds threads by name in `/proc`, so no
//! other engine may run in the process meanwhile.

#![cfg(target_os = "linux")]

mod util;

use std::time::{Duration, Instant};

use mercato_engine::{Config, Engine};
use util::{TempDir, durable_config};

/// Field `field` (numbered as in proc(5), from 3 on) of the `stat` of this
/// process's threads named `name` (as `/proc` cuts names, to 15 bytes).
fn thread_stat(name: &str, field: usize) -> Vec<i64> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        // A thread that ended after the listing has no stat left to read.
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name start at field 3.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        found.push(after.split(' ').nth(field - 3).unwrap().parse().unwrap());
    }
    found
}

/// Niceness is field 19 of `stat`.
fn thread_nice(name: &str) -> Vec<i64> {
    thread_stat(name, 19)
}

/// The scheduling policy is field 41 of `stat`.
fn thread_policy(name: &str) -> Vec<i64> {
    thread_stat(name, 41)
}

/// `SCHED_OTHER` and `SCHED_IDLE`, as Linux numbers them.
const SCHED_OTHER: i64 = 0;
const SCHED_IDLE: i64 = 5;

/// One test, so that only one engine's threads are in `/proc` at a time.
#[test]
fn the_snapshot_thread_runs_below_the_shards() {
    for (asked, sched_idle, want_nice, want_policy) in [
        (7u8, false, 7i64, SCHED_OTHER),
        (40, false, 19, SCHED_OTHER),
        (10, true, 10, SCHED_IDLE),
    ] {
        let dir = TempDir::new("snap-nice");
        let config = Config {
            snapshot_nice: asked,
            snapshot_sched_idle: sched_idle,
            ..durable_config(&dir.0, 2)
        };
        let engine = Engine::open(config).unwrap();
        // Threads name themselves, and the snapshot thread lowers its own
        // priority, as they start.
        let seen = || {
            (
                thread_nice("mercato-snapsho"),
                thread_policy("mercato-snapsho"),
                thread_nice("mercato-shard-0"),
                thread_policy("mercato-shard-0"),
            )
        };
        let want = (
            vec![want_nice],
            vec![want_policy],
            vec![0],
            vec![SCHED_OTHER],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen() != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen(), want, "asked for {asked}, idle class {sched_idle}");
        engine.shutdown();
    }
}
