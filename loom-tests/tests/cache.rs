//! The cache's read path and its eviction, racing: a hit appended to the
//! shared hit buffer while a drainer empties it, readers against a remover,
//! an insert that evicts against readers and a remover, and a clear of a
//! two-segment cache against an insert and a read. Under loom the
//! cache has one owned hit stripe of two slots (the first reader's, here
//! the main thread's) and a shared one, two table stripes and four reader
//! seats, so every path (full stripe, `try_lock` lost, stale handle, a
//! seated reader meeting a writer's flag) is reachable. Taking out the
//! reader's fence or the writer's wait for seats fails every model here.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use mercato_engine::cache::{Cache, PolicyKind};

fn cache(capacity: u64, policy: PolicyKind) -> Arc<Cache<u32, u32>> {
    Arc::new(Cache::builder(capacity).policy(policy).build())
}

#[test]
fn no_value_is_read_after_its_remove_returned() {
    loom::model(|| {
        let c = cache(4, PolicyKind::Lru);
        c.insert(1, 10).unwrap();
        let removed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (c, removed) = (c.clone(), removed.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    let was_removed = removed.load(Ordering::Acquire);
                    let got = c.get(&1);
                    assert!(got.is_none() || got == Some(10));
                    assert!(!(was_removed && got.is_some()), "read after remove");
                }
            })
        };
        assert_eq!(c.remove(&1), Some(10));
        removed.store(true, Ordering::Release);
        reader.join().unwrap();
        assert_eq!(c.peek(&1), None);
    });
}

#[test]
fn hits_racing_a_full_stripe_are_counted_and_keep_the_policy_sound() {
    loom::model(|| {
        let c = cache(2, PolicyKind::Arc);
        c.insert(1, 10).unwrap();
        c.insert(2, 20).unwrap();
        // Two hits fill the stripe, so each reader below finds it full and
        // races the main thread's insert for the policy lock.
        assert_eq!(c.get(&1), Some(10));
        assert_eq!(c.get(&2), Some(20));
        let readers: Vec<_> = (1..=2)
            .map(|k| {
                let c = c.clone();
                thread::spawn(move || {
                    let got = c.get(&k);
                    // Key 1 is being rewritten from 10 to 11 meanwhile.
                    assert!(
                        got == Some(k * 10) || (k == 1 && got == Some(11)),
                        "{k}: {got:?}"
                    );
                })
            })
            .collect();
        c.insert(1, 11).unwrap();
        for r in readers {
            r.join().unwrap();
        }
        let s = c.stats();
        assert_eq!(s.hits, 4, "every hit is counted, even a dropped one");
        assert_eq!((s.entries, s.evictions), (2, 0));
        assert_eq!(c.peek(&1), Some(11));
        assert_eq!(c.peek(&2), Some(20));
    });
}

#[test]
fn eviction_racing_get_insert_and_remove_keeps_the_bound() {
    loom::model(|| {
        let c = cache(2, PolicyKind::Lru);
        c.insert(1, 10).unwrap();
        c.insert(2, 20).unwrap();
        let inserter = {
            let c = c.clone();
            thread::spawn(move || c.insert(3, 30).unwrap())
        };
        let remover = {
            let c = c.clone();
            thread::spawn(move || c.remove(&2))
        };
        for k in [1, 3] {
            if let Some(v) = c.get(&k) {
                assert_eq!(v, k * 10, "a value under the wrong key");
            }
        }
        inserter.join().unwrap();
        let removed = remover.join().unwrap();
        assert!(removed.is_none() || removed == Some(20));
        let s = c.stats();
        assert!(s.entries <= 2 && s.weight <= 2);
        let present = [1, 2, 3].iter().filter(|&&k| c.peek(&k).is_some()).count() as u64;
        assert_eq!(present, s.entries, "the table and the policy disagree");
        assert_eq!(
            c.peek(&3),
            Some(30),
            "the newest entry is never the one evicted"
        );
        assert_eq!(c.peek(&2), None, "2 was removed or evicted");
    });
}

#[test]
fn segments_clearing_against_inserts_and_reads_never_deadlock_or_overfill() {
    loom::model(|| {
        // Two segments of one entry each: a clear takes both locks in
        // order while an insert and a read each take one.
        let c: Arc<Cache<u32, u32>> = Arc::new(Cache::builder(2).segments(2).build());
        c.insert(1, 10).unwrap();
        let writer = {
            let c = c.clone();
            thread::spawn(move || {
                c.insert(2, 20).unwrap();
                c.insert(3, 30).unwrap();
            })
        };
        let reader = {
            let c = c.clone();
            thread::spawn(move || {
                let got = c.get(&1);
                assert!(got.is_none() || got == Some(10));
            })
        };
        c.clear();
        writer.join().unwrap();
        reader.join().unwrap();
        let s = c.stats();
        assert!(s.entries <= 2, "{} entries in a cache of 2", s.entries);
        // What is left is only what the writer put after the clear.
        for k in [1, 2, 3] {
            let v = c.peek(&k);
            assert!(v.is_none() || v == Some(k * 10));
        }
        assert!(c.peek(&1).is_none(), "the clear came after key 1");
    });
}
