//! The snapshot thread runs at a lower priority than the shards.
//!
//! A test binary of its own: it finds threads by name in `/proc`, so no
//! other engine may run in the process meanwhile.

#![cfg(target_os = "linux")]

mod util;

use std::time::{Duration, Instant};

use mercato_engine::{Config, Engine};
use util::{TempDir, durable_config};

/// The niceness of this process's threads named `name` (as `/proc` cuts
/// names, to 15 bytes).
fn thread_nice(name: &str) -> Vec<i64> {
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
        // Fields after the parenthesised name start at field 3; nice is 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        found.push(after.split(' ').nth(16).unwrap().parse().unwrap());
    }
    found
}

#[test]
fn the_snapshot_thread_runs_below_the_shards() {
    for (asked, want) in [(7u8, 7i64), (40, 19)] {
        let dir = TempDir::new("snap-nice");
        let config = Config {
            snapshot_nice: asked,
            ..durable_config(&dir.0, 2)
        };
        let engine = Engine::open(config).unwrap();
        // Threads name themselves, and the snapshot thread lowers its own
        // priority, as they start.
        let seen = || {
            (
                thread_nice("mercato-snapsho"),
                thread_nice("mercato-shard-0"),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen() != (vec![want], vec![0]) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen(), (vec![want], vec![0]), "asked for {asked}");
        engine.shutdown();
    }
}
