//! The caches under real threads: the bound holds at every moment a reader
//! can look, a removed or expired value is never returned, and nothing
//! deadlocks (every test finishes). loom checks the same properties over
//! every interleaving of smaller models (`loom-tests/tests/cache.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use mercato_engine::cache::{Cache, PolicyKind};
use mercato_engine::{Clock as _, ManualClock};

const THREADS: u64 = 4;
const OPS_PER_THREAD: u64 = 40_000;

/// A seeded xorshift, one per thread.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn the_weight_bound_holds_while_threads_churn() {
    let configs = [PolicyKind::Lru, PolicyKind::Arc].map(|p| [(p, 1), (p, 4)]);
    for (policy, segments) in configs.into_iter().flatten() {
        let capacity = 2_000;
        let cache = Arc::new(
            Cache::<u64, Vec<u8>>::builder(capacity)
                .policy(policy)
                .segments(segments)
                .weigher(|_, v| v.len() as u64)
                .build(),
        );
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (cache, done) = (cache.clone(), done.clone());
            thread::spawn(move || {
                let mut looks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let s = cache.stats();
                    assert!(
                        s.weight <= capacity,
                        "{policy:?}: weight {} over {capacity}",
                        s.weight
                    );
                    looks += 1;
                }
                looks
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let cache = cache.clone();
                thread::spawn(move || {
                    let mut next = rng(t + 1);
                    let mut gets = 0;
                    for _ in 0..OPS_PER_THREAD {
                        let r = next();
                        let key = r % 500;
                        match r >> 60 {
                            0..=9 => {
                                gets += 1;
                                if let Some(v) = cache.get(&key) {
                                    assert!(
                                        v.iter().all(|&b| b == key as u8),
                                        "a value under the wrong key"
                                    );
                                }
                            }
                            10..=14 => {
                                let len = (r >> 32) as usize % 64 + 1;
                                cache.insert(key, vec![key as u8; len]).unwrap();
                            }
                            _ => {
                                cache.remove(&key);
                            }
                        }
                    }
                    gets
                })
            })
            .collect();
        let gets: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        assert!(watcher.join().unwrap() > 0);
        let s = cache.stats();
        assert!(s.weight <= capacity);
        assert_eq!(s.hits + s.misses, gets, "every get is a hit or a miss");
    }
}

#[test]
fn a_removed_value_is_never_read_back() {
    let configs = [PolicyKind::Lru, PolicyKind::Arc].map(|p| [(p, 1), (p, 4)]);
    for (policy, segments) in configs.into_iter().flatten() {
        let cache = Arc::new(
            Cache::<u64, u64>::builder(64)
                .policy(policy)
                .segments(segments)
                .build(),
        );
        // The writer inserts value i under key 7, removes it, then says so.
        let removed = Arc::new(AtomicU64::new(0));
        let writer = {
            let (cache, removed) = (cache.clone(), removed.clone());
            thread::spawn(move || {
                for i in 1..=OPS_PER_THREAD {
                    cache.insert(7, i).unwrap();
                    cache.insert(i % 100 + 100, i).unwrap(); // churn for the policy
                    assert_eq!(cache.remove(&7), Some(i));
                    removed.store(i, Ordering::Release);
                }
            })
        };
        let readers: Vec<_> = (0..THREADS - 1)
            .map(|_| {
                let (cache, removed) = (cache.clone(), removed.clone());
                thread::spawn(move || {
                    let mut seen = 0;
                    while removed.load(Ordering::Acquire) < OPS_PER_THREAD {
                        let gone = removed.load(Ordering::Acquire);
                        if let Some(v) = cache.get(&7) {
                            assert!(v > gone, "{policy:?}: read {v} after {gone} was removed");
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
    }
}

#[test]
fn an_expired_value_is_never_read_back() {
    let clock = Arc::new(ManualClock::new(0));
    let cache = Arc::new(
        Cache::<u64, u64>::builder(1_000)
            .clock(clock.clone())
            .build(),
    );
    // Key k lives until time k.
    for k in 1..=500 {
        cache.insert_with_ttl(k, k, k).unwrap();
    }
    let ticker = {
        let clock = clock.clone();
        thread::spawn(move || {
            for _ in 0..500 {
                clock.advance(1);
                thread::yield_now();
            }
        })
    };
    let readers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, clock) = (cache.clone(), clock.clone());
            thread::spawn(move || {
                let mut next = rng(t + 11);
                while clock.now_ms() < 500 {
                    let k = next() % 500 + 1;
                    let before = clock.now_ms();
                    if let Some(v) = cache.get(&k) {
                        assert_eq!(v, k);
                        assert!(before < k, "key {k} read at {before}, past its deadline");
                    }
                }
            })
        })
        .collect();
    ticker.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    for k in 1..=500 {
        assert_eq!(cache.get(&k), None);
    }
    cache.purge_expired();
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.stats().expirations, 500);
}

/// More live threads than there are reader seats (128): those without one
/// read under the policy lock. Every read is still right, and counted.
#[test]
fn threads_beyond_the_reader_seats_read_right_and_are_counted() {
    const READERS: u64 = 160;
    const READS: u64 = 2_000;
    // Room for every key used below, so every get must hit.
    let cache = Arc::new(Cache::<u64, u64>::builder(128).build());
    for k in 0..32 {
        cache.insert(k, k * 10).unwrap();
    }
    // The readers, the writer and this thread.
    let start = Arc::new(Barrier::new(READERS as usize + 2));
    let writer = {
        let (cache, start) = (cache.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            // Rewrites key 5 back and forth and writes 64 other keys, so
            // readers meet closed stripes.
            for i in 0..READS {
                cache.insert(5, 50 + i % 2).unwrap();
                cache.insert(100 + i % 64, 0).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (cache, start) = (cache.clone(), start.clone());
            thread::spawn(move || {
                // Reads once before the barrier, so every thread holds a seat
                // (or found none) while all are alive.
                let first = cache.get(&(t % 32));
                start.wait();
                assert!(first.is_some(), "key {} missed", t % 32);
                let mut next = rng(t + 1);
                for _ in 0..READS {
                    let k = next() % 32;
                    let v = cache.get(&k).unwrap_or_else(|| panic!("key {k} missed"));
                    let ok = v == k * 10 || (k == 5 && (v == 50 || v == 51));
                    assert!(ok, "key {k} read as {v}");
                }
            })
        })
        .collect();
    start.wait();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(
        (s.hits, s.misses),
        (READERS * (READS + 1), 0),
        "every get is counted once, seat or not"
    );
    assert_eq!(s.entries, 96);
}

#[test]
fn a_thread_s_hits_reach_the_policy_at_its_own_insert_or_once_a_stripe_fills() {
    // An LRU of two holding 1 and 2, 1 the older: a hit on 1 that reaches
    // the policy makes 2 the one an insert of 3 evicts.
    let filled = || {
        let cache = Arc::new(Cache::<u64, u64>::builder(2).build());
        cache.insert(1, 10).unwrap();
        cache.insert(2, 20).unwrap();
        cache
    };

    // Another thread's hit, then that thread's insert.
    let cache = filled();
    let c = cache.clone();
    thread::spawn(move || {
        assert_eq!(c.get(&1), Some(10));
        c.insert(3, 30).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!((cache.peek(&1), cache.peek(&2)), (Some(10), None));

    // Another thread's hits, more than its stripe holds, then an insert
    // by this thread.
    let cache = filled();
    let c = cache.clone();
    thread::spawn(move || {
        for _ in 0..1_000 {
            assert_eq!(c.get(&1), Some(10));
        }
    })
    .join()
    .unwrap();
    cache.insert(3, 30).unwrap();
    assert_eq!((cache.peek(&1), cache.peek(&2)), (Some(10), None));
    assert_eq!(cache.stats().hits, 1_000, "every hit is counted");

    // One thread's single hit, then another thread's hits, more than its
    // stripe holds: the second, draining its full stripe, applies the
    // first's hit too. The first stays alive meanwhile, so that the second
    // cannot inherit its seat and stripe.
    let cache = Arc::new(Cache::<u64, u64>::builder(3).build());
    for k in 1..=3 {
        cache.insert(k, k * 10).unwrap();
    }
    let (hit, go_on) = (Barrier::new(2), Barrier::new(2));
    thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(cache.get(&1), Some(10));
            hit.wait();
            go_on.wait();
        });
        hit.wait();
        s.spawn(|| {
            for _ in 0..1_000 {
                assert_eq!(cache.get(&3), Some(30));
            }
        })
        .join()
        .unwrap();
        // 2 is now the least recent, but only if the hit on 1 was applied.
        cache.insert(4, 40).unwrap();
        go_on.wait();
    });
    assert_eq!((cache.peek(&1), cache.peek(&2)), (Some(10), None));
}
