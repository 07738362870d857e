//! `mercato wal check`, `mercato wal dump` and `mercato audit` on a real data
//! directory, sound and then corrupted; and an engine that refuses to open
//! the corrupted directory, naming file and offset, without touching it.

mod util;

use std::process::Command;

use mercato_engine::{Engine, LineRequest, OpenError, Payment};
use mercato_wal::WalError;
use util::{TempDir, durable_config};

fn mercato(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args(args)
        .output()
        .expect("run mercato");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn shop(dir: &std::path::Path) {
    let engine = Engine::open(durable_config(dir, 2)).unwrap();
    let h = engine.handle();
    for sku in 0..8 {
        h.put_sku(sku, 100 + sku, 0).unwrap().unwrap();
        h.restock(sku, 50).unwrap().unwrap();
    }
    for account in 0..8u64 {
        h.deposit(account, 10_000).unwrap().unwrap();
        let lines = vec![
            LineRequest::new(account, 1),
            LineRequest::new(7 - account, 1),
        ];
        let lines = if account == 7 - account {
            lines[..1].to_vec()
        } else {
            lines
        };
        h.place_order(u128::from(account), account, lines, Payment::Immediate)
            .unwrap()
            .unwrap();
    }
    engine.shutdown();
}

#[test]
fn the_tools_read_a_sound_directory_and_refuse_a_corrupt_one() {
    let dir = TempDir::new("cli");
    shop(&dir.0);
    let path = dir.0.to_str().unwrap();

    let (code, out) = mercato(&["wal", "check", path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 shards") && out.contains("sound"), "{out}");
    let (code, out) = mercato(&["audit", path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("invariants 1 to 3 hold"), "{out}");
    let (code, out) = mercato(&["wal", "dump", path, "--shard", "1", "--from", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("shard 1 lsn 2 "), "{out}");
    assert!(out.lines().all(|l| l.starts_with("shard 1 ")), "{out}");
    // The feed's decoder: business events, no two-phase bookkeeping.
    let (code, out) = mercato(&["wal", "dump", path, "--events"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("OrderPlaced(").count(), 8, "{out}");
    assert_eq!(out.matches("Deposit").count(), 8, "{out}");
    assert!(out.contains("reason: Restock"), "{out}");
    assert!(!out.contains("Prepared") && !out.contains("Hold"), "{out}");
    let (code, out) = mercato(&["demo", "--data-dir", path]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("needs a new data directory"), "{out}");

    // Flip one bit in the second record of shard 0: valid records follow it.
    let segment = mercato_wal::list_segments(&dir.0.join("shard-0")).unwrap()[0]
        .1
        .clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let second = 64
        + (24 + u32::from_le_bytes(bytes[64..68].try_into().unwrap()) as usize).next_multiple_of(8);
    bytes[second + 30] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    let (code, out) = mercato(&["wal", "check", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("NOT SOUND") && out.contains(&format!("at byte {second}")),
        "{out}"
    );
    let (code, out) = mercato(&["audit", path]);
    assert_eq!(code, 1, "{out}");

    match Engine::open(durable_config(&dir.0, 2)) {
        Err(OpenError::Wal(WalError::Corrupt { path, offset, .. })) => {
            assert_eq!((path, offset), (segment.clone(), second as u64));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "refusing changed the file"
    );
}

#[test]
fn a_second_engine_on_an_open_directory_is_refused_and_changes_nothing() {
    let dir = TempDir::new("locked");
    shop(&dir.0);
    let path = dir.0.to_str().unwrap();
    let files = |d: &std::path::Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut all = Vec::new();
        for shard in ["shard-0", "shard-1"] {
            for e in std::fs::read_dir(d.join(shard)).unwrap() {
                let p = e.unwrap().path();
                all.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
        all.sort();
        all
    };

    // The lock alone, as another engine holds it: a live engine would
    // change the files on its own (spare segments), this does not.
    let held = mercato_engine::durable::lock::lock(&dir.0).unwrap();
    let before = files(&dir.0);
    match Engine::open(durable_config(&dir.0, 2)) {
        Err(OpenError::Locked { path }) => assert_eq!(path, dir.0.join("LOCK")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let (code, out) = mercato(&["serve", "--listen", "127.0.0.1:0", "--data-dir", path]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is locked"), "{out}");
    assert!(
        files(&dir.0) == before,
        "a refused open changed the directory"
    );
    // The read-only tools need no lock.
    let (code, out) = mercato(&["audit", path]);
    assert_eq!(code, 0, "{out}");
    drop(held);

    // A live engine holds it too, and is not disturbed by a refused open;
    // once it is gone the directory opens again with its orders.
    let first = Engine::open(durable_config(&dir.0, 2)).unwrap();
    let h = first.handle();
    h.place_order(100, 3, vec![LineRequest::new(2, 1)], Payment::Immediate)
        .unwrap()
        .unwrap();
    assert!(matches!(
        Engine::open(durable_config(&dir.0, 2)),
        Err(OpenError::Locked { .. })
    ));
    h.place_order(101, 4, vec![LineRequest::new(2, 1)], Payment::Immediate)
        .unwrap()
        .unwrap();
    first.shutdown();
    let again = Engine::open(durable_config(&dir.0, 2)).unwrap();
    let h = again.handle();
    for (account, id) in [(3, 100), (4, 101)] {
        let order = h.get_order(account, id).unwrap().unwrap();
        assert_eq!(order.id, id);
    }
    again.shutdown();
}
