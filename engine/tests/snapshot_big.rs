//! A shard of more than 2 GiB of state snapshots and loads back whole.
//! rkyv's relative pointers are 32-bit, so one archive cannot hold it: the
//! snapshot thread used to panic there, holding its mutex, and snapshots
//! stopped while the log grew. Snapshots are now written in parts.
//!
//! It needs about 10 GiB of memory and 3 GiB of disk and a release build,
//! so it is not in the default run:
//!
//! ```sh
//! cargo test --release -p mercato-engine --test snapshot_big -- --ignored --nocapture
//! ```
//!
//! The parts themselves are tested with a forced small limit in
//! `durable::snapshot`'s unit tests, which CI runs.

mod util;

use mercato_engine::durable::snapshot::{load_snapshot, write_snapshot_of};
use mercato_engine::shard::{Output, Shard};
use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};
use util::TempDir;

/// Orders of one line each: about 100 bytes apiece in a snapshot, so
/// this passes 2 GiB.
const ORDERS: u64 = 28_000_000;
const ACCOUNTS: u64 = 1_000_000;

#[test]
#[ignore = "needs a release build, ~10 GiB of memory and ~3 GiB of disk"]
fn a_shard_past_two_gib_snapshots_and_loads_back() {
    let mut shard = Shard::new(0, 1);
    let mut out = Output::default();
    let mut run = |shard: &mut Shard, cmd| {
        shard.apply(0, cmd, 1, &mut out);
        // Nothing keeps records here; the replies are checked below.
        out.replies.clear();
        out.records.clear();
    };
    run(
        &mut shard,
        Command::PutSku {
            sku: 1,
            price: 3,
            per_user_limit: 0,
        },
    );
    run(
        &mut shard,
        Command::Restock {
            sku: 1,
            qty: u32::MAX - 1,
        },
    );
    for account in 0..ACCOUNTS {
        run(
            &mut shard,
            Command::Deposit {
                account,
                amount: 1 << 40,
            },
        );
    }
    for id in 0..ORDERS {
        run(
            &mut shard,
            Command::PlaceOrder(PlaceOrder {
                id: u128::from(id),
                account: id % ACCOUNTS,
                lines: vec![LineRequest::new(1, 1)],
                payment: Payment::Immediate,
            }),
        );
    }
    assert!(
        shard
            .order((ORDERS - 1) % ACCOUNTS, u128::from(ORDERS - 1))
            .is_some()
    );
    let dir = TempDir::new("snapshot-big");
    let started = std::time::Instant::now();
    let (path, bytes) = write_snapshot_of(&dir.0, &shard, 77).unwrap();
    eprintln!("{bytes} bytes written in {:?}", started.elapsed());
    assert!(bytes > 2 << 30, "only {bytes} bytes: not past 2 GiB");
    let started = std::time::Instant::now();
    let (back, lsn) = load_snapshot(&path, 0, 1).unwrap();
    eprintln!("loaded in {:?}", started.elapsed());
    assert_eq!(lsn, 77);
    assert!(back.state() == shard.state(), "the loaded shard differs");
}
