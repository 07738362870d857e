//! The shard-to-shard ring: every item pushed is popped once, in order, and
//! a full ring gives the item back instead of losing it.
#![cfg(loom)]

use loom::thread;
use mercato_engine::runtime::ring::ring;

#[test]
fn items_arrive_once_and_in_order() {
    loom::model(|| {
        let (tx, rx) = ring::<u32>(2);
        let producer = thread::spawn(move || {
            let mut refused = 0;
            for i in 0..3 {
                if let Err(back) = tx.push(i) {
                    assert_eq!(back, i, "a full ring returns the item");
                    refused += 1;
                }
            }
            refused
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            if let Some(v) = rx.pop() {
                got.push(v);
            }
            thread::yield_now();
        }
        let refused = producer.join().unwrap();
        while let Some(v) = rx.pop() {
            got.push(v);
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(got.len() + refused, 3, "lost or duplicated: {got:?}");
    });
}

#[test]
fn unread_items_are_dropped_with_the_ring() {
    loom::model(|| {
        let item = loom::sync::Arc::new(());
        let (tx, rx) = ring(2);
        let i2 = item.clone();
        let t = thread::spawn(move || {
            let _ = tx.push(i2);
        });
        let _ = rx.pop();
        t.join().unwrap();
        drop(rx);
        assert_eq!(loom::sync::Arc::strong_count(&item), 1);
    });
}
