//! A shard going to sleep while a peer pushes into its ring: either the shard
//! sees the item on its last look, or the peer sees that it must ring.
#![cfg(loom)]

use loom::thread;
use mercato_engine::runtime::Doorbell;
use mercato_engine::runtime::ring::ring;

#[test]
fn no_lost_wake_up() {
    loom::model(|| {
        let bell = loom::sync::Arc::new(Doorbell::new());
        let (tx, rx) = ring::<u8>(1);
        let b = bell.clone();
        let sender = thread::spawn(move || {
            tx.push(1).unwrap();
            b.needs_ring()
        });
        bell.going_to_sleep();
        let saw_item = !rx.is_empty();
        let rang = sender.join().unwrap();
        assert!(saw_item || rang, "the shard slept through a message");
        bell.awake();
    });
}
