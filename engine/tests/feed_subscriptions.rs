//! Durable subscriptions of the change feed: they hold their records in
//! the log across checkpoints until acknowledged, up to the retention
//! limit, past which they are marked lost and the log is let go; they
//! resume from what they acknowledged after a restart; and bad names and
//! acknowledgements are refused.

mod util;

use std::time::Duration;

use mercato_engine::feed::Event;
use mercato_engine::{Config, Engine, FeedError, FeedStart};
use util::{TempDir, durable_config};

/// 128 KiB segments: some 2,000 deposits fill one.
fn config(dir: &std::path::Path, retention: u64) -> Config {
    Config {
        feed_retention_bytes_max: retention,
        snapshot_segments: 0,
        ..durable_config(dir, 2)
    }
}

fn deposits(h: &mercato_engine::Handle, n: u64) {
    for i in 0..n {
        h.deposit(i % 64, 1).unwrap().unwrap();
    }
}

/// Every event a feed has now, polled until it is quiet.
fn drain(feed: &mut mercato_engine::Feed) -> Vec<Event> {
    let mut all = Vec::new();
    loop {
        let got = feed.poll(4_096, Duration::from_millis(50)).unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got.into_iter().map(|(_, e)| e));
    }
}

#[test]
fn a_subscription_holds_its_records_until_it_acknowledges_them() {
    let dir = TempDir::new("subs-hold");
    let engine = Engine::open(config(&dir.0, 1 << 30)).unwrap();
    let h = engine.handle();
    let mut sub = h
        .subscribe("search-index", FeedStart::At(vec![1, 1]))
        .unwrap();
    deposits(&h, 20_000);
    engine.checkpoint_now().unwrap();
    // Held back: an unnamed feed can still read from the start too.
    assert!(h.feed(FeedStart::At(vec![1, 1])).is_ok());
    let events = drain(&mut sub);
    assert_eq!(events.len(), 20_000);
    sub.ack(&sub.next_positions()).unwrap();
    engine.checkpoint_now().unwrap();
    assert!(matches!(
        h.feed(FeedStart::At(vec![1, 1])),
        Err(FeedError::Lost { .. })
    ));
    let listed = h.subscriptions().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].positions, sub.next_positions());
    assert!(!listed[0].lost);
    engine.shutdown();
}

#[test]
fn a_subscription_past_the_limit_is_lost_and_the_log_let_go() {
    let dir = TempDir::new("subs-lost");
    // Two segments' worth a shard.
    let engine = Engine::open(config(&dir.0, 256 << 10)).unwrap();
    let h = engine.handle();
    let slow = h.subscribe("slow", FeedStart::At(vec![1, 1])).unwrap();
    deposits(&h, 30_000);
    let mut fast = h.subscribe("fast", FeedStart::Now).unwrap();
    drain(&mut fast);
    fast.ack(&fast.next_positions()).unwrap();
    engine.checkpoint_now().unwrap();
    let listed = h.subscriptions().unwrap();
    let state = |name: &str| listed.iter().find(|s| s.name == name).unwrap().lost;
    assert!(state("slow"), "{listed:?}");
    assert!(!state("fast"), "{listed:?}");
    drop(slow);
    assert!(matches!(
        h.subscribe("slow", FeedStart::Now),
        Err(FeedError::SubscriptionLost { .. })
    ));
    assert!(matches!(
        h.feed(FeedStart::At(vec![1, 1])),
        Err(FeedError::Lost { .. })
    ));
    // Dropped, the name starts anew.
    assert!(h.drop_subscription("slow").unwrap());
    assert!(!h.drop_subscription("slow").unwrap());
    assert!(h.subscribe("slow", FeedStart::Now).is_ok());
    engine.shutdown();
}

#[test]
fn a_subscription_resumes_after_a_restart_from_what_it_acknowledged() {
    let dir = TempDir::new("subs-restart");
    let engine = Engine::open(config(&dir.0, 1 << 30)).unwrap();
    let h = engine.handle();
    let mut sub = h.subscribe("sink", FeedStart::Now).unwrap();
    h.deposit(1, 10).unwrap().unwrap();
    assert_eq!(drain(&mut sub).len(), 1);
    sub.ack(&sub.next_positions()).unwrap();
    h.deposit(2, 20).unwrap().unwrap();
    // Read, not acknowledged: it comes again after the restart.
    assert_eq!(drain(&mut sub).len(), 1);
    drop(sub);
    engine.shutdown();

    let engine = Engine::open(config(&dir.0, 1 << 30)).unwrap();
    let h = engine.handle();
    h.deposit(3, 30).unwrap().unwrap();
    let mut sub = h.subscribe("sink", FeedStart::Now).unwrap();
    let accounts: Vec<u64> = (drain(&mut sub).iter())
        .filter_map(|e| match e {
            Event::Balance { account, .. } => Some(*account),
            _ => None,
        })
        .collect();
    assert!(accounts.contains(&2) && accounts.contains(&3) && !accounts.contains(&1));
    // Bad input changes nothing.
    assert!(matches!(
        h.subscribe("no spaces", FeedStart::Now),
        Err(FeedError::InvalidName { .. })
    ));
    let mut unnamed = h.feed(FeedStart::Now).unwrap();
    assert!(matches!(
        unnamed.ack(&[1, 1]),
        Err(FeedError::BadAck { .. })
    ));
    let ahead: Vec<u64> = sub.next_positions().iter().map(|p| p + 10).collect();
    assert!(matches!(sub.ack(&ahead), Err(FeedError::BadAck { .. })));
    assert!(matches!(sub.ack(&[1, 1]), Err(FeedError::BadAck { .. })));
    engine.shutdown();
}
