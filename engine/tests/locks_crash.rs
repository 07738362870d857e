//! A fenced counter under a lock, while `mercato serve` (durability
//! `always`) is SIGKILLed and restarted under its clients.
//!
//! The counter is a SKU's price. Each client takes the lock with a short
//! lease, reads the price, sometimes stalls past its lease (a paused
//! client), and writes price + 1 fenced by its token. Another client may
//! hold the lock by then: the fence must refuse the stale write. So every
//! acknowledged write has a target value no other acknowledged write has
//! (no update doubled), the final price is at least the highest of them
//! and at most what was acknowledged plus what was in flight at a kill (no
//! update lost), and tokens granted after a restart are above every token
//! granted before it.
//!
//! Shown to fail without its safeguard: with the fence left off the write
//! (a plain `PutSku`), two clients write the same target and the test
//! stops at "written twice".
//!
//! CI runs 3 kills; `MERCATO_LOCK_KILLS=50` runs the long mode.

mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mercato_client::{Client, ClientConfig, LockOptions, wire};
use util::{Server, TempDir};

const SKU: u64 = 77;
const LOCK: &[u8] = b"counter";
const LEASE_MS: u64 = 150;
const CLIENTS: usize = 4;

fn serve(dir: &std::path::Path) -> Server {
    let dir = dir.to_str().unwrap();
    Server::start_with(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--durability",
        "always",
        "--data-dir",
        dir,
    ])
}

/// What one client saw: acknowledged targets, writes whose outcome a
/// kill hid, and the tokens it was granted, each with the server's epoch.
#[derive(Default)]
struct Seen {
    acked: Vec<u64>,
    unknown: usize,
    tokens: Vec<(usize, u64)>,
}

fn client_loop(id: usize, addr: Arc<Mutex<(usize, SocketAddr)>>, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(id as u64 + 1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while !stop.load(Ordering::Relaxed) {
        let (epoch, at) = *addr.lock().unwrap();
        let Ok(c) = Client::connect(at, ClientConfig::default()) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let opts = LockOptions::new(LEASE_MS).wait_ms(2_000).owner(id as u64);
            let guard = match c.lock(LOCK, opts) {
                Ok(Ok(g)) => g,
                Ok(Err(_)) => continue,
                Err(_) => break,
            };
            seen.tokens.push((epoch, guard.token()));
            let price = match c.get_sku(SKU) {
                Ok(Ok(v)) => v.price,
                _ => break,
            };
            if next() % 4 == 0 {
                // A pause longer than the lease.
                std::thread::sleep(Duration::from_millis(LEASE_MS + 50));
            }
            let target = price + 1;
            let write = wire::FencedWrite::PutSku {
                sku: SKU,
                price: target,
                per_user_limit: 0,
            };
            match guard.fenced(write) {
                Ok(Ok(_)) => seen.acked.push(target),
                Ok(Err(wire::Reject::Lock(wire::LockReject::Stale { .. }))) => {}
                Ok(Err(r)) => panic!("client {id}: {r:?}"),
                Err(_) => {
                    seen.unknown += 1;
                    std::mem::forget(guard);
                    break;
                }
            }
        }
    }
    seen
}

#[test]
fn a_fenced_counter_loses_and_doubles_nothing_across_kills() {
    let kills: usize = std::env::var("MERCATO_LOCK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = TempDir::new("locks-crash");
    let mut server = serve(&dir.0);
    let setup = Client::connect(server.main, ClientConfig::default()).unwrap();
    setup.put_sku(SKU, 0, 0).unwrap().unwrap();
    drop(setup);
    let addr = Arc::new(Mutex::new((0usize, server.main)));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || client_loop(id, addr, stop))
        })
        .collect();
    for epoch in 1..=kills {
        std::thread::sleep(Duration::from_millis(400 + 97 * epoch as u64 % 300));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        drop(server);
        server = serve(&dir.0);
        *addr.lock().unwrap() = (epoch, server.main);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients.into_iter().map(|t| t.join().unwrap()).collect();

    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    let last = c.get_sku(SKU).unwrap().unwrap().price;
    let mut writes: HashMap<u64, usize> = HashMap::new();
    for s in &seen {
        for &t in &s.acked {
            *writes.entry(t).or_default() += 1;
        }
    }
    let acked = writes.len();
    assert!(acked > 10, "only {acked} writes went through");
    for (target, n) in &writes {
        assert_eq!(*n, 1, "value {target} written twice");
    }
    let unknown: usize = seen.iter().map(|s| s.unknown).sum();
    let highest = writes.keys().max().copied().unwrap_or(0);
    assert!(
        last >= highest,
        "the counter {last} fell below an acknowledged {highest}"
    );
    assert!(
        last <= (acked + unknown) as u64,
        "the counter {last} is past {acked} acknowledged and {unknown} unknown writes"
    );
    // Tokens never go back across a restart.
    let mut tokens: Vec<(usize, u64)> = seen.iter().flat_map(|s| s.tokens.clone()).collect();
    tokens.sort();
    for pair in tokens.windows(2) {
        let ((e1, t1), (e2, t2)) = (pair[0], pair[1]);
        if e2 > e1 {
            assert!(t2 > t1, "token {t2} after restart {e2}, {t1} before it");
        } else {
            assert_ne!(t1, t2, "token {t1} granted twice");
        }
    }
}
