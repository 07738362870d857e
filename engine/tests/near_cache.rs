//! The client's near-cache against a real `mercato serve`: reads fill it,
//! the change feed invalidates it, and once a write's invalidation has
//! arrived no read returns the value before that write, even with another
//! thread reading and filling all the while. Prints the lag from a
//! write's acknowledgement to its invalidation (a measurement, not a
//! check).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mercato_client::{Client, ClientConfig, NearCache};
use util::{Server, TempDir};

#[test]
fn an_invalidated_value_is_never_served_again() {
    let dir = TempDir::new("near");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path]);
    let c = Arc::new(Client::connect(server.main, ClientConfig::default()).unwrap());
    c.deposit(1, 100).unwrap().unwrap();
    c.put_sku(5, 10, 0).unwrap().unwrap();
    let near = NearCache::new(c.clone(), 1_000);
    let until = Instant::now() + Duration::from_secs(10);
    while !near.live() {
        assert!(
            Instant::now() < until,
            "the near-cache never followed the feed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(near.get_account(&c, 1).unwrap().unwrap().balance, 100);
    assert_eq!(near.get_account(&c, 1).unwrap().unwrap().balance, 100);
    assert_eq!(near.get_sku(&c, 5).unwrap().unwrap().price, 10);
    assert_eq!(near.get_sku(&c, 5).unwrap().unwrap().price, 10);
    let s = near.stats();
    assert_eq!((s.hits, s.misses), (2, 2), "{s:?}");

    // A reader fills the cache all the while; after each write's
    // invalidation, no read may return what the write replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let near = Arc::new(near);
    let reader = {
        let (near, c, stop) = (near.clone(), c.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                near.get_account(&c, 1).unwrap().unwrap();
            }
        })
    };
    let mut lags = Vec::new();
    let mut balance = 100;
    for _ in 0..200 {
        let mark = near.mark();
        balance = c.deposit(1, 1).unwrap().unwrap().balance;
        let acked = Instant::now();
        let lag = near.lag(1, mark, acked, Duration::from_secs(10));
        lags.push(lag.expect("the invalidation arrived"));
        for _ in 0..3 {
            let seen = near.get_account(&c, 1).unwrap().unwrap().balance;
            assert!(
                seen >= balance,
                "served {seen} after the write to {balance}; mark before {mark}, now {}, stats {:?}, live {}",
                near.mark(),
                near.stats(),
                near.live()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(balance, 300);
    lags.sort();
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "near-cache: acknowledgement to invalidation, p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        lags[lags.len() - 1]
    );
    // The feed stopping (the server gone) empties it and it serves nothing.
    drop(server);
    let until = Instant::now() + Duration::from_secs(10);
    while near.live() {
        assert!(Instant::now() < until, "the near-cache kept serving");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(near.stats().entries, 0);
}
