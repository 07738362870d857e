//! The change feed over TCP against a real `mercato serve`: a durable
//! subscription started from a copy of the state folds into what the
//! server holds; a filtered one gets only what it asked for; one
//! acknowledged and dropped resumes after its acknowledgement; bad names
//! are refused.

mod util;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mercato_client::{Client, ClientConfig, FeedStream, wire};
use util::{Server, TempDir};

/// Folds batches until `done` says the fold is complete, or 10 s pass.
fn fold_until(s: &FeedStream, fold: &mut Fold, mut done: impl FnMut(&Fold) -> bool) -> Vec<u64> {
    let until = Instant::now() + Duration::from_secs(10);
    let mut next = Vec::new();
    while !done(fold) {
        assert!(Instant::now() < until, "the feed never caught up: {fold:?}");
        if let Some(b) = s.next(Duration::from_millis(100)).unwrap() {
            assert_eq!(b.error, None);
            for item in &b.items {
                fold.take(item);
            }
            next = b.next;
        }
    }
    next
}

#[derive(Default, Debug)]
struct Fold {
    stock: HashMap<u64, (i64, i64, i64)>,
    balances: HashMap<u64, i128>,
    orders: HashMap<(u64, u128), wire::OrderState>,
    events: usize,
}

impl Fold {
    fn take(&mut self, item: &wire::FeedItem) {
        use wire::FeedEvent as E;
        self.events += 1;
        match &item.event {
            E::SkuPut { sku, .. } => {
                self.stock.entry(*sku).or_default();
            }
            E::Stock {
                sku,
                available,
                reserved,
                sold,
                ..
            } => {
                let s = self.stock.entry(*sku).or_default();
                s.0 += available;
                s.1 += reserved;
                s.2 += sold;
            }
            E::SkuCopy(v) => {
                self.stock.insert(
                    v.id,
                    (
                        i64::from(v.available),
                        i64::from(v.reserved),
                        i64::from(v.sold),
                    ),
                );
            }
            E::Balance {
                account,
                amount,
                credit,
                ..
            } => {
                let d = i128::from(*amount);
                *self.balances.entry(*account).or_default() += if *credit { d } else { -d };
            }
            E::AccountCopy(v) => {
                self.balances.insert(v.id, i128::from(v.balance));
            }
            E::OrderPlaced(v) | E::OrderCopy(v) => {
                self.orders.insert((v.account, v.id), v.state);
            }
            E::OrderPaid { account, order, .. } => {
                self.orders
                    .insert((*account, *order), wire::OrderState::Paid);
            }
            E::OrderCancelled { account, order, .. } => {
                self.orders
                    .insert((*account, *order), wire::OrderState::Cancelled);
            }
            E::OrderExpired { account, order, .. } => {
                self.orders
                    .insert((*account, *order), wire::OrderState::Expired);
            }
            E::OrderRefunded { account, order, .. } => {
                self.orders
                    .insert((*account, *order), wire::OrderState::Refunded);
            }
            E::StockSet { .. } => unreachable!("no recovery here"),
        }
    }
}

fn line(sku: u64) -> wire::LineRequest {
    wire::LineRequest {
        sku,
        qty: 1,
        expected_unit_price: None,
    }
}

#[test]
fn a_subscription_over_tcp_folds_into_the_shop() {
    let dir = TempDir::new("feed-tcp");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    for sku in 0..4 {
        c.put_sku(sku, 10 + sku, 0).unwrap().unwrap();
        c.restock(sku, 100).unwrap().unwrap();
    }
    for account in 1..=4 {
        c.deposit(account, 1_000).unwrap().unwrap();
    }
    let all = wire::FeedFilter::default();
    let s = c
        .subscribe(Some("index"), wire::FeedStart::Snapshot, all.clone())
        .unwrap()
        .unwrap();
    let only = wire::FeedFilter {
        kinds: wire::FEED_KIND_BALANCE,
        skus: vec![],
        accounts: vec![2],
    };
    let filtered = c
        .subscribe(None, wire::FeedStart::Now, only)
        .unwrap()
        .unwrap();
    // Orders on both shards, some two-phase, some paid later.
    for (id, account) in (1..=4u64).enumerate() {
        let lines = vec![line(id as u64 % 4), line((id as u64 + 1) % 4)];
        c.place_order(id as u128, account, lines, wire::Payment::Immediate)
            .unwrap()
            .unwrap();
        let deferred = wire::Payment::Deferred { ttl_ms: 600_000 };
        c.place_order(100 + id as u128, account, vec![line(3)], deferred)
            .unwrap()
            .unwrap();
    }
    c.pay(2, 101).unwrap().unwrap();
    c.cancel(3, 102).unwrap().unwrap();
    c.deposit(2, 5).unwrap().unwrap();

    let want_stock: HashMap<u64, (i64, i64, i64)> = (0..4)
        .map(|sku| {
            let v = c.get_sku(sku).unwrap().unwrap();
            (
                sku,
                (
                    i64::from(v.available),
                    i64::from(v.reserved),
                    i64::from(v.sold),
                ),
            )
        })
        .collect();
    let want_balances: HashMap<u64, i128> = (1..=4)
        .map(|a| (a, i128::from(c.get_account(a).unwrap().unwrap().balance)))
        .collect();
    let mut fold = Fold::default();
    let next = fold_until(&s, &mut fold, |f| {
        f.stock == want_stock && f.balances == want_balances && f.orders.len() == 8
    });
    assert_eq!(fold.orders[&(2, 101)], wire::OrderState::Paid);
    assert_eq!(fold.orders[&(3, 102)], wire::OrderState::Cancelled);

    // The filtered one: account 2's balance changes only.
    let mut f2 = Fold::default();
    // Placed at once (11 + 12), the reservation paid (13), then 5 more.
    fold_until(&filtered, &mut f2, |f| {
        f.balances.get(&2) == Some(&(5 - 23 - 13))
    });
    assert!(f2.stock.is_empty() && f2.orders.is_empty());
    assert!(f2.balances.keys().all(|&a| a == 2), "{:?}", f2.balances);

    // Acknowledged, dropped, changed meanwhile, resumed: only the new.
    s.ack(&next).unwrap().unwrap();
    drop(s);
    c.deposit(4, 9).unwrap().unwrap();
    let s = c
        .subscribe(Some("index"), wire::FeedStart::Now, all)
        .unwrap()
        .unwrap();
    assert_eq!(s.started, next);
    let mut later = Fold::default();
    fold_until(&s, &mut later, |f| f.events > 0);
    assert_eq!(later.balances, HashMap::from([(4, 9)]));
    let subs = c.subscriptions().unwrap().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].name, "index");
    assert!(matches!(
        c.subscribe(Some("no spaces"), wire::FeedStart::Now, Default::default())
            .unwrap(),
        Err(wire::Reject::Feed(wire::FeedReject::InvalidName))
    ));
    assert!(c.drop_subscription("index").unwrap().unwrap());
}

/// A `Snapshot` start marks the end of its copy on exactly one batch, even
/// when the copy is empty; copy events come only up to it, and only the
/// stream after it.
#[test]
fn a_snapshot_start_marks_where_its_copy_ends() {
    let dir = TempDir::new("feed-copy-end");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    let is_copy = |e: &wire::FeedEvent| {
        matches!(
            e,
            wire::FeedEvent::SkuCopy(_)
                | wire::FeedEvent::AccountCopy(_)
                | wire::FeedEvent::OrderCopy(_)
        )
    };
    for round in 0..2 {
        let s = c
            .subscribe(None, wire::FeedStart::Snapshot, wire::FeedFilter::default())
            .unwrap()
            .unwrap();
        // Something for the stream after the copy.
        c.put_sku(100 + round, 5, 0).unwrap().unwrap();
        let (mut ends, mut copies, mut after) = (0, 0, 0);
        let until = Instant::now() + Duration::from_secs(10);
        while after == 0 {
            assert!(
                Instant::now() < until,
                "round {round}: no stream after the copy"
            );
            let Some(b) = s.next(Duration::from_millis(100)).unwrap() else {
                continue;
            };
            for item in &b.items {
                if is_copy(&item.event) {
                    assert_eq!(ends, 0, "round {round}: a copy event after the copy's end");
                    copies += 1;
                } else {
                    assert_eq!(
                        ends, 1,
                        "round {round}: a stream event before the copy's end"
                    );
                    after += 1;
                }
            }
            ends += usize::from(b.copy_done);
            assert!(ends <= 1, "round {round}: two ends of one copy");
        }
        assert_eq!(ends, 1);
        eprintln!("round {round}: {copies} copy events, then the stream");
        // The second round copies what the first wrote, once a snapshot
        // holds it; the first may copy nothing.
        for sku in 0..50 {
            c.put_sku(sku, 10, 0).unwrap().unwrap();
        }
    }
}

/// An acknowledgement's answer comes behind the batches pushed before it:
/// acknowledging while far more batches wait than the stream queues must
/// still be answered, not wait forever behind them.
#[test]
fn an_acknowledgement_is_answered_behind_a_full_queue() {
    let dir = TempDir::new("feed-ack-full");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(1, &["--data-dir", &path]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    let s = c
        .subscribe(
            Some("slow"),
            wire::FeedStart::Now,
            wire::FeedFilter::default(),
        )
        .unwrap()
        .unwrap();
    // One record per request, pipelined: far more batches than the 64 the
    // stream queues, none read.
    for chunk in 0..200u64 {
        let puts = (0..200)
            .map(|i| wire::Request::PutSku {
                sku: chunk * 200 + i,
                price: 5,
                per_user_limit: 0,
            })
            .collect();
        c.submit(puts).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    // The stream moves to a thread, so a hang fails the test instead.
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = s.started.clone();
        let _ = acked_tx.send(
            s.ack(&started)
                .map(|r| r.is_ok())
                .map_err(|e| e.to_string()),
        );
        // Nothing taken off the queue meanwhile is lost: all 40,000 come.
        let mut seen = 0;
        while seen < 40_000 {
            match s.next(Duration::from_millis(100)) {
                Ok(Some(b)) => seen += b.items.len(),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let _ = seen_tx.send(seen);
    });
    let acked = acked_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the acknowledgement was never answered");
    assert_eq!(acked, Ok(true), "the acknowledgement was refused");
    let seen = seen_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the events never all came");
    assert_eq!(seen, 40_000);
}

/// A subscription whose filter drops everything still hears how far the
/// feed went (batches with no items), so its acknowledgements let the log
/// go; without them its position would stay where it began until the
/// log it holds passed the retention limit and it was lost.
#[test]
fn a_filtered_subscription_hears_its_positions_move() {
    let dir = TempDir::new("feed-filtered-positions");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    let nobody = wire::FeedFilter {
        kinds: 0,
        skus: vec![],
        accounts: vec![999_999],
    };
    let s = c
        .subscribe(Some("nobody"), wire::FeedStart::Now, nobody)
        .unwrap()
        .unwrap();
    let started = s.started.clone();
    for account in 1..=8 {
        c.deposit(account, 100).unwrap().unwrap();
    }
    // Each shard's log grew past where the subscription started.
    let ends: Vec<u64> = (c.info().unwrap().shard_states.iter())
        .map(|x| x.committed_lsn + 1)
        .collect();
    assert!(
        ends.iter().zip(&started).all(|(e, s)| e > s),
        "{ends:?} {started:?}"
    );
    let until = Instant::now() + Duration::from_secs(10);
    let next = loop {
        assert!(Instant::now() < until, "the positions never came");
        if let Some(b) = s.next(Duration::from_millis(100)).unwrap() {
            assert!(
                b.items.is_empty(),
                "the filter lets nothing through: {:?}",
                b.items
            );
            if b.next.iter().zip(&ends).all(|(n, e)| n >= e) {
                break b.next;
            }
        }
    };
    s.ack(&next).unwrap().unwrap();
    let subs = c.subscriptions().unwrap().unwrap();
    assert_eq!(subs[0].positions, next);
}
