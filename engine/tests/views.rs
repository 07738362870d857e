//! Read-through SKU and account views: the consistency `engine::views`
//! promises, checked embedded and over TCP. A reader that starts after a
//! write was acknowledged sees it (from another thread, connection or
//! shard); a view never goes back in time; a read behind a write of the same
//! caller (a connection, or a `Handle` and its tickets) sees that write; only
//! reads that looked fill; with the views off every read goes to the owner.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mercato_client::{Client, ClientConfig, wire};
use mercato_engine::hash::shard_of;
use mercato_engine::limits::VIEW_BATCH_LEN_MAX;
use mercato_engine::{
    Command, Config, Durability, Engine, LineRequest, ManualClock, Payment, Reply,
};
use proptest::prelude::*;
use util::model::Model;
use util::strategy::{Space, command};
use util::{Server, TempDir, durable_config};

#[test]
fn reads_are_served_from_the_cache_and_see_acknowledged_writes() {
    let engine = Engine::open(Config::with_shards(2)).unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    h.restock(1, 10).unwrap().unwrap();
    h.deposit(5, 1_000).unwrap().unwrap();
    // Writes fill nothing; the first reads miss and their owners fill.
    for hits in [0, 1] {
        assert_eq!(h.get_sku(1).unwrap().unwrap().available, 10);
        assert_eq!(h.get_account(5).unwrap().unwrap().balance, 1_000);
        let (skus, accounts) = h.view_stats().unwrap();
        assert_eq!((skus.hits, accounts.hits), (hits, hits));
        assert_eq!((skus.misses, accounts.misses), (1, 1));
    }
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
fn a_batch_reads_the_cache_until_its_first_write_and_only_lookers_fill() {
    let engine = Engine::open(Config::with_shards(2)).unwrap();
    let h = engine.handle();
    h.put_sku(1, 100, 0).unwrap().unwrap();
    h.restock(1, 10).unwrap().unwrap();
    h.deposit(5, 1_000).unwrap().unwrap();
    let get = Command::GetAccount { account: 5 };
    let deposit = Command::Deposit {
        account: 5,
        amount: 1,
    };
    // A read behind a write in the same batch sees it and does not look.
    let answers = h
        .submit_waiting(vec![deposit.clone(), get.clone()])
        .unwrap();
    assert!(matches!(answers[1], Ok(Reply::Account(v)) if v.balance == 1_001));
    let (_, accounts) = h.view_stats().unwrap();
    assert_eq!(
        (accounts.hits, accounts.misses, accounts.inserts),
        (0, 0, 0)
    );
    // A read first in a batch looks, misses, and the owner fills.
    h.submit_waiting(vec![get.clone(), Command::GetSku { sku: 1 }])
        .unwrap();
    let (skus, accounts) = h.view_stats().unwrap();
    assert_eq!((accounts.misses, accounts.inserts), (1, 1));
    assert_eq!((skus.misses, skus.inserts), (1, 1));
    // Now both are hits; the read after the deposit still goes to the
    // owner and sees it.
    let answers =
        (h.submit_waiting(vec![get.clone(), Command::GetSku { sku: 1 }, deposit, get])).unwrap();
    assert!(matches!(answers[0], Ok(Reply::Account(v)) if v.balance == 1_001));
    assert!(matches!(answers[1], Ok(Reply::Sku(v)) if v.available == 10));
    assert!(matches!(answers[3], Ok(Reply::Account(v)) if v.balance == 1_002));
    let (skus, accounts) = h.view_stats().unwrap();
    assert_eq!((skus.hits, accounts.hits, accounts.misses), (1, 1, 1));
    // A batch longer than VIEW_BATCH_LEN_MAX goes to the owners whole: one
    // hand-off serves it, and the owners read their own tables faster.
    let long = vec![Command::GetSku { sku: 1 }; VIEW_BATCH_LEN_MAX + 1];
    let answers = h.submit_waiting(long).unwrap();
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(Reply::Sku(v)) if v.available == 10))
    );
    assert_eq!(
        h.view_stats().unwrap().0,
        skus,
        "the SKU views were not asked"
    );
    assert!(h.audit().unwrap().ok());
    engine.shutdown();
}

#[test]
fn a_read_behind_an_unanswered_ticket_of_the_same_handle_sees_its_write() {
    let engine = Engine::open(Config::with_shards(2)).unwrap();
    let h = engine.handle();
    h.deposit(5, 1).unwrap().unwrap();
    for round in 0..300u64 {
        // Cached, so a read that looked would find the old balance.
        assert_eq!(h.get_account(5).unwrap().unwrap().balance, 1 + round);
        assert_eq!(h.get_account(5).unwrap().unwrap().balance, 1 + round);
        let deposit = Command::Deposit {
            account: 5,
            amount: 1,
        };
        let write = h.submit_ticket(vec![deposit]).unwrap();
        let read = h
            .submit_ticket(vec![Command::GetAccount { account: 5 }])
            .unwrap();
        let seen = read.wait();
        assert!(
            matches!(seen[0], Ok(Ok(Reply::Account(v))) if v.balance == 2 + round),
            "round {round}: {seen:?}"
        );
        assert!(write.wait()[0].is_ok());
    }
    // The pairs of reads above hit: the tracking lets reads use the views
    // once the handle's tickets are answered.
    assert!(h.view_stats().unwrap().1.hits >= 300);
    engine.shutdown();
}

#[test]
fn an_owner_keeps_refreshing_what_it_filled_after_forgetting_what_is_gone() {
    // Two views of each kind: an owner forgets the ids it filled that the
    // cache no longer holds once it remembers more than four. The fifth
    // fill below is the one that makes it look, while the fourth and fifth
    // accounts are the ones cached: it must keep them. In memory the views
    // go out at once; under `always` they wait for the sync, and the owner
    // looks when the last held ones go out.
    let dir = TempDir::new("views-prune");
    for durable in [false, true] {
        let base = match durable {
            true => durable_config(&dir.0, 1),
            false => Config::with_shards(1),
        };
        forgets_only_what_is_gone(Config {
            view_cache_entries: 2,
            ..base
        });
    }
}

fn forgets_only_what_is_gone(config: Config) {
    let engine = Engine::open(config).unwrap();
    let h = engine.handle();
    for account in 1000..1005 {
        h.deposit(account, 10).unwrap().unwrap();
    }
    for account in 1000..1005 {
        assert_eq!(h.get_account(account).unwrap().unwrap().balance, 10);
    }
    h.deposit(1003, 1).unwrap().unwrap();
    h.deposit(1004, 2).unwrap().unwrap();
    assert_eq!(h.get_account(1004).unwrap().unwrap().balance, 12);
    assert_eq!(h.get_account(1003).unwrap().unwrap().balance, 11);
    let (_, accounts) = h.view_stats().unwrap();
    assert_eq!((accounts.hits, accounts.misses), (2, 5), "both were cached");
    engine.shutdown();
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every command through the views-on engine answers as the model, and
    /// after each one every SKU and account read (cached or not) does too.
    #[test]
    fn reads_through_the_views_answer_as_the_model(
        shards in 1..=3u16,
        durability in prop_oneof![
            Just(None),
            Just(Some(Durability::Always)),
            Just(Some(Durability::Interval { ms: 2 })),
            Just(Some(Durability::Never)),
        ],
        // 1 or 2 views of each kind: fills evict each other, and the
        // owners' sets of filled ids are pruned.
        entries in prop_oneof![Just(1u64), Just(2), Just(65_536)],
        cmds in proptest::collection::vec(command(Space::small()), 1..60),
    ) {
        let dir = TempDir::new("views-model");
        let base = match durability {
            Some(durability) => Config {
                durability,
                ..durable_config(&dir.0, shards)
            },
            None => Config::with_shards(shards),
        };
        let engine = Engine::open(Config {
            clock: Arc::new(ManualClock::new(1_000)),
            view_cache_entries: entries,
            ..base
        })
        .unwrap();
        let h = engine.handle();
        let mut model = Model::default();
        let sp = Space::small();
        let mut reads: Vec<Command> = (sp.sku_base..sp.sku_base + sp.skus)
            .map(|sku| Command::GetSku { sku })
            .chain((sp.account_base..sp.account_base + sp.accounts).map(|account| Command::GetAccount { account }))
            .collect();
        for cmd in &cmds {
            prop_assert_eq!(h.call(cmd.clone()).unwrap(), model.exec(cmd, 1_000), "{:?}", cmd);
            // Each sweep starts where the last ended, so what the last
            // sweep left cached (even in a cache of 1) is read first, as
            // it was before this command.
            reads.reverse();
            for read in &reads {
                prop_assert_eq!(h.call(read.clone()).unwrap(), model.exec(read, 1_000), "after {:?}", cmd);
            }
        }
        engine.shutdown();
    }
}
