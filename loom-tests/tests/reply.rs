//! Answers travel from shard threads to the caller through a collector; the
//! caller wakes once every slot is filled, whatever the order. The shutdown
//! gate makes sure a request queued during shutdown is still answered.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use mercato_engine::runtime::{Collector, Gate};

#[test]
fn caller_wakes_with_every_answer() {
    loom::model(|| {
        let c = Arc::new(Collector::new(3));
        let a = c.clone();
        let b = c.clone();
        let t1 = thread::spawn(move || a.fill([(0, 10u32), (2, 12)]));
        let t2 = thread::spawn(move || b.fill([(1, 11u32)]));
        assert_eq!(c.wait(), vec![10, 11, 12]);
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

#[test]
fn a_request_queued_during_shutdown_is_answered() {
    loom::model(|| {
        let gate = Arc::new(Gate::new());
        // Stands in for the shard's inbound queue: requests queued, requests answered.
        let queued = Arc::new(AtomicUsize::new(0));
        let (g, q) = (gate.clone(), queued.clone());
        let caller = thread::spawn(move || {
            let Some(_pass) = g.enter() else { return false };
            q.fetch_add(1, Ordering::SeqCst);
            true
        });
        gate.close();
        while !gate.is_drained() {
            thread::yield_now();
        }
        // The shard's last look at its queue.
        let seen = queued.load(Ordering::SeqCst);
        let got_in = caller.join().unwrap();
        assert_eq!(
            seen,
            usize::from(got_in),
            "a request landed after the shard's last look"
        );
    });
}
