//! Read-through SKU and account views: the consistency `engine::views`
//! promises, checked embedded and over TCP. A reader that starts after a
//! write was acknowledged sees it (from another thread, connection or
//! shard); a view never goes back in time; a read behind a write on the same
//! connection sees that write; with the views off every read goes to the owner.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mercato_client::{Client, ClientConfig, wire};
use mercato_engine::hash::shard_of;
use mercato_engine::{Config, Engine, LineRequest, Payment};
use util::Server;

#[test]
fn reads_are_served_from_the_cache_and_see_acknowledged_writes() {
    let engine = Engine::open(Config::with_shards(2)).unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    h.restock(1, 10).unwrap().unwrap();
    h.deposit(5, 1_000).unwrap().unwrap();
    // The writes' replies filled the caches.
    assert_eq!(h.get_sku(1).unwrap().unwrap().available, 10);
    assert_eq!(h.get_account(5).unwrap().unwrap().balance, 1_000);
    let (skus, accounts) = h.view_stats().unwrap();
    assert_eq!(
        (skus.hits, accounts.hits),
        (1, 1),
        "both reads were cache hits"
    );
    h.restock(1, 5).unwrap().unwrap();
    h.place_order(1, 5, vec![LineRequest::new(1, 3)], Payment::Immediate)
        .unwrap()
        .unwrap();
    // The buyer is on the other shard: the order's settlement on the SKU's
    // shard comes after the acknowledgment, so the SKU was marked unsettled
    // and this read goes to its owner, which has applied it.
    let v = h.get_sku(1).unwrap().unwrap();
    assert_eq!((v.available, v.reserved, v.sold), (12, 0, 3));
    assert_eq!(h.view_stats().unwrap().0.hits, 1, "a miss");
    assert_eq!(h.get_sku(1).unwrap().unwrap(), v);
    assert_eq!(
        h.view_stats().unwrap().0.hits,
        2,
        "the owner's answer filled the cache"
    );
    assert_eq!(h.get_account(5).unwrap().unwrap().balance, 700);
    assert!(h.audit().unwrap().ok());
    engine.shutdown();
}

#[test]
fn a_reader_on_another_thread_never_sees_less_than_what_was_acknowledged() {
    let dir = util::TempDir::new("views-durable");
    for (shards, durable) in [(1u16, false), (2, false), (3, false), (2, true)] {
        // On the log (durability `always`), views wait for the sync as
        // replies do; the reader must still find every acknowledged sale.
        let config = if durable {
            util::durable_config(&dir.0, shards)
        } else {
            Config::with_shards(shards)
        };
        let engine = Engine::open(config).unwrap();
        let h = engine.handle();
        // The SKU and the buyer on different shards when there are two or
        // more, so every sale is a two-phase commit, settled on the SKU's
        // shard after it is acknowledged.
        let sku = 1;
        let buyer = (10..)
            .find(|&a| shards == 1 || shard_of(a, shards) != shard_of(sku, shards))
            .unwrap();
        h.put_sku(sku, 1, 0).unwrap().unwrap();
        h.restock(sku, 400).unwrap().unwrap();
        h.deposit(buyer, 1_000).unwrap().unwrap();
        let acked = Arc::new(AtomicU64::new(0));
        let reader = {
            let (h, acked) = (engine.handle(), acked.clone());
            std::thread::spawn(move || {
                let mut last_available = u32::MAX;
                let mut reads = 0;
                loop {
                    let sold_before = acked.load(Ordering::Acquire);
                    let v = h.get_sku(sku).unwrap().unwrap();
                    assert!(
                        u64::from(v.sold) >= sold_before,
                        "{shards} shards: {} sold after {sold_before} sales were acknowledged",
                        v.sold
                    );
                    assert!(
                        u64::from(v.available) <= 400 - sold_before,
                        "{shards} shards: {} available after {sold_before} sales were acknowledged",
                        v.available
                    );
                    assert!(v.available <= last_available, "the view went back in time");
                    last_available = v.available;
                    reads += 1;
                    if sold_before == 400 {
                        assert_eq!(v.available, 0);
                        return reads;
                    }
                }
            })
        };
        for i in 0..400u128 {
            h.place_order(i, buyer, vec![LineRequest::new(sku, 1)], Payment::Immediate)
                .unwrap()
                .unwrap();
            acked.store(i as u64 + 1, Ordering::Release);
        }
        assert!(reader.join().unwrap() > 0);
        assert!(
            h.view_stats().unwrap().0.hits > 0,
            "some reads came from the cache"
        );
        assert!(h.audit().unwrap().ok());
        engine.shutdown();
    }
}

#[test]
fn with_the_views_off_reads_go_to_the_owner() {
    let engine = Engine::open(Config {
        view_cache_entries: 0,
        ..Config::with_shards(2)
    })
    .unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    assert_eq!(h.get_sku(1).unwrap().unwrap().price, 100);
    assert!(h.view_stats().is_none());
    engine.shutdown();
}

#[test]
fn over_tcp_any_connection_sees_acknowledged_writes_and_a_batch_keeps_its_order() {
    let server = Server::start(2, &[]);
    let writer = Client::connect(server.main, ClientConfig::default()).unwrap();
    let reader = Client::connect(server.main, ClientConfig::default()).unwrap();
    writer.put_sku(3, 50, 0).unwrap().unwrap();
    for round in 1..=20u32 {
        writer.restock(3, 1).unwrap().unwrap();
        // Read through every shard's connection: each answers from the
        // shared cache or forwards to the owner; all must see the restock.
        for shard in 0..2 {
            let answers = reader
                .submit_to(shard, vec![wire::Request::GetSku { sku: 3 }])
                .unwrap();
            match &answers[0] {
                wire::Answer::Done(wire::Reply::Sku(v)) => assert_eq!(v.available, round),
                other => panic!("{other:?}"),
            }
        }
    }
    // A read after a write in the same batch sees the write.
    let answers = writer
        .submit(vec![
            wire::Request::Restock { sku: 3, qty: 5 },
            wire::Request::GetSku { sku: 3 },
        ])
        .unwrap();
    assert!(matches!(&answers[1], wire::Answer::Done(wire::Reply::Sku(v)) if v.available == 25));
    // Pipelined: a read sent behind an unanswered write on the same
    // connection waits for it.
    let write = writer
        .submit_ticket(vec![wire::Request::Restock { sku: 3, qty: 1 }])
        .unwrap();
    let read = writer
        .submit_ticket(vec![wire::Request::GetSku { sku: 3 }])
        .unwrap();
    write.wait().unwrap();
    assert!(
        matches!(&read.wait().unwrap()[0], wire::Answer::Done(wire::Reply::Sku(v)) if v.available == 26)
    );
}
