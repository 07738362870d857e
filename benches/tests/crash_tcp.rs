//! The crash test over TCP, as shops will run mercato: a real `mercato
//! serve` with durability `always`, driven by `mercato-load --target
//! tcp://… --ack-log`, is SIGKILLed at a random moment while orders are
//! being acknowledged. `mercato-load` must then stop by itself, print what
//! it had, and exit 1 with a one-line reason. `mercato-load --verify-acks`
//! recovers the directory and checks every acknowledged order is there in
//! its acknowledged state (or one that may follow it), and `mercato audit`
//! checks the invariants. The next round restarts the server on the same
//! directory, so each round serves from what the last kill left, carts
//! and flash-sale alternating.
//!
//! A SIGKILL leaves the page cache, so this cannot catch an answer sent
//! before its fsync; the power-loss test of the storage layer is for that.
//!
//! CI runs 10 kills. `MERCATO_CRASH_TCP_KILLS=200 cargo test --release -p
//! mercato-benches --test crash_tcp` runs the long mode;
//! `MERCATO_CRASH_SEED` replays a run's kill times.

mod util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{Killed, TempDir, check, mercato_bin, serve_durable, verify};

#[test]
fn every_acknowledged_order_survives_a_killed_server() {
    let kills = mercato_engine::workload::env_count("MERCATO_CRASH_TCP_KILLS", 10);
    let seed = mercato_engine::workload::env_seed("MERCATO_CRASH_SEED");
    eprintln!("tcp crash test: {kills} kills, MERCATO_CRASH_SEED={seed}");
    let mut rng = mercato_engine::workload::Rng::new(seed);
    let dir =
        TempDir(std::env::temp_dir().join(format!("mercato-crash-tcp-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("data");
    let acks = dir.0.join("acks.log");
    std::fs::write(&acks, b"").unwrap();
    let mut verified_any = false;
    for round in 0..kills {
        let (mut server, main) = serve_durable(&data, "127.0.0.1:0");
        let acked_before = std::fs::metadata(&acks).unwrap().len();
        let workload = ["carts", "flash-sale"][(round % 2) as usize];
        // A flash-sale buyer buys once: each flash-sale round brings 20,000
        // new ones, so there is always someone left to acknowledge.
        let accounts = 20_000 * (1 + round / 2);
        let mut load = Killed(
            Command::new(env!("CARGO_BIN_EXE_mercato-load"))
                .args(["--target", &format!("tcp://{main}")])
                .args([
                    "--workload",
                    workload,
                    "--threads",
                    "2",
                    "--connections",
                    "1",
                ])
                .args(["--seconds", "60", "--batch", "64", "--json"])
                .args(["--accounts", &accounts.to_string(), "--skus", "2000"])
                .arg("--ack-log")
                .arg(&acks)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mercato-load"),
        );
        // Kill while orders are being acknowledged: once the ack log grows
        // (recovery and loading are done), after a random pause.
        let started = Instant::now();
        while std::fs::metadata(&acks).unwrap().len() == acked_before
            && started.elapsed() < Duration::from_secs(20)
            && load.0.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let wait_ms = rng.below(500);
        std::thread::sleep(Duration::from_millis(wait_ms));
        assert!(
            load.0.try_wait().unwrap().is_none(),
            "round {round}: mercato-load stopped before the kill"
        );
        server.0.kill().expect("SIGKILL mercato serve");
        server.0.wait().unwrap();
        // The load notices, says why in one line, and exits 1: no panic,
        // no hang.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = load.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: mercato-load went on after its server died"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        load.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(1), "round {round}: {err}");
        let reason: Vec<&str> = err.lines().collect();
        assert!(
            reason.len() == 1 && reason[0].starts_with("mercato-load: stopped early: "),
            "round {round}: {err}"
        );
        let summary = verify(&data, &acks);
        check(
            "audit",
            Command::new(mercato_bin())
                .arg("audit")
                .arg(&data)
                .output()
                .unwrap(),
        );
        eprintln!(
            "round {round} ({workload}, killed {wait_ms} ms into its orders): {}",
            summary.trim()
        );
        verified_any |= !summary.starts_with("0 acknowledged");
    }
    assert!(
        verified_any,
        "no round acknowledged any order before its kill"
    );
}
