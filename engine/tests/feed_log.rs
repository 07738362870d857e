//! The change feed over a durable engine's logs: a feed from the start of
//! every log, polled while a random workload runs, stopped and started
//! again from its saved positions, folds into the engine's state; a feed
//! from `Now` sees only what comes after; and a position whose segments a
//! checkpoint let go is refused as lost.

mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mercato_engine::feed::{Event, Position};
use mercato_engine::{Command, Config, Engine, FeedError, FeedStart, ManualClock, Reply};
use proptest::prelude::*;
use util::strategy::{Space, stocked_shop, timed_commands};
use util::{TempDir, durable_config};

/// The shop folded from a feed, skipping what comes again.
#[derive(Default)]
struct Fold {
    shop: util::fold::Shop,
    /// Per shard, the last LSN whose events are all folded: a repeat
    /// (after a restart from saved positions) is skipped, as the feed's
    /// consumers are told to.
    done: HashMap<u16, u64>,
}

impl Fold {
    /// Folds one poll's events; a record's events all come in one poll.
    fn take(&mut self, got: Vec<(Position, Event)>) {
        let mut newest: HashMap<u16, u64> = HashMap::new();
        for (p, e) in got {
            // A copy comes in many polls at one position; each of its
            // events sets what it names outright, so it is folded as is.
            if matches!(
                e,
                Event::SkuCopy(_) | Event::AccountCopy(_) | Event::OrderCopy(_)
            ) {
                self.fold(&e);
                self.done.insert(p.shard, p.lsn);
                continue;
            }
            let done = self.done.get(&p.shard).copied().unwrap_or(0);
            if p.lsn <= done {
                continue;
            }
            let n = newest.entry(p.shard).or_default();
            assert!(p.lsn >= *n, "positions go back: {p:?} after {n}");
            *n = p.lsn;
            self.fold(&e);
        }
        for (shard, lsn) in newest {
            self.done.insert(shard, lsn);
        }
    }
    fn fold(&mut self, e: &Event) {
        self.shop.apply(e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn a_feed_stopped_and_resumed_folds_into_the_engine(
        cmds in timed_commands(Space::small(), 80),
        stop_at in 0usize..80,
        batch in 1usize..20,
        copy_at in proptest::option::of(0usize..80),
    ) {
        let sp = Space::small();
        let dir = TempDir::new("feed-log");
        let clock = Arc::new(ManualClock::new(1_000));
        let engine = Engine::open(Config {
            clock: clock.clone(),
            ..durable_config(&dir.0, 2)
        })
        .unwrap();
        let h = engine.handle();
        // From the start of every log; or, from a copy of the state a
        // checkpoint made part of the way through, and the log after it.
        let mut feed = None;
        let mut fold = Fold::default();
        let all: Vec<(u64, Command)> = stocked_shop(sp).into_iter().chain(cmds).collect();
        if copy_at.is_none() {
            feed = Some(h.feed(FeedStart::At(vec![1, 1])).unwrap());
        }
        for (i, (dt, cmd)) in all.into_iter().enumerate() {
            clock.advance(dt);
            let _ = h.call(cmd);
            if copy_at == Some(i) {
                engine.checkpoint_now().unwrap();
                feed = Some(h.feed(FeedStart::Snapshot).unwrap());
            }
            let Some(f) = feed.as_mut() else { continue };
            // The copy in its own polls, then the stream.
            loop {
                let got = f.poll(batch, Duration::ZERO).unwrap();
                let copying = got.iter().any(|(_, e)| matches!(e, Event::SkuCopy(_) | Event::AccountCopy(_) | Event::OrderCopy(_)));
                    fold.take(got);
                if !copying {
                    break;
                }
            }
            if i == stop_at {
                // Gone, and back from what was saved.
                let saved = f.next_positions();
                *f = h.feed(FeedStart::At(saved)).unwrap();
            }
        }
        // Whatever is committed by now arrives.
        let mut feed = match feed {
            Some(f) => f,
            None => h.feed(FeedStart::Snapshot).unwrap(),
        };
        loop {
            let got = feed.poll(64, Duration::from_millis(50)).unwrap();
            if got.is_empty() {
                break;
            }
            fold.take(got);
        }
        for s in 0..sp.skus {
            let sku = sp.sku_base + s;
            let want = match h.call(Command::GetSku { sku }).unwrap() {
                Ok(Reply::Sku(v)) => Some((v.price, v.per_user_limit, i64::from(v.available), i64::from(v.reserved), i64::from(v.sold))),
                _ => None,
            };
            prop_assert_eq!(fold.shop.skus.get(&sku).copied(), want, "sku {}", sku);
        }
        for a in 0..sp.accounts {
            let account = sp.account_base + a;
            let want = h.get_account(account).unwrap().ok().map(|v| i128::from(v.balance));
            prop_assert_eq!(fold.shop.balances.get(&account).copied(), want, "account {}", account);
            for id in 0..sp.orders {
                let want = h.get_order(account, id).unwrap().ok().map(|v| v.state);
                let got = fold.shop.orders.get(&(account, id)).map(|o| o.0);
                prop_assert_eq!(got, want, "order {} of {}", id, account);
            }
        }
        engine.shutdown();
    }
}

#[test]
fn a_feed_from_now_sees_what_follows_and_a_lost_position_is_refused() {
    let dir = TempDir::new("feed-now");
    let engine = Engine::open(durable_config(&dir.0, 2)).unwrap();
    let h = engine.handle();
    h.deposit(1, 100).unwrap().unwrap();
    let mut feed = h.feed(FeedStart::Now).unwrap();
    h.deposit(2, 7).unwrap().unwrap();
    let got = feed.poll(10, Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(
        got[0].1,
        Event::Balance {
            account: 2,
            delta: 7,
            ..
        }
    ));
    assert!(matches!(
        h.feed(FeedStart::At(vec![1])),
        Err(FeedError::Positions {
            given: 1,
            shards: 2
        })
    ));
    assert!(matches!(
        h.feed(FeedStart::At(vec![1, 1_000_000])),
        Err(FeedError::Ahead { shard: 1, .. })
    ));
    // Enough records for several small segments, then a checkpoint lets
    // the covered ones go: the start of the log is lost.
    for i in 0..20_000u64 {
        h.deposit(i % 64, 1).unwrap().unwrap();
    }
    engine.checkpoint_now().unwrap();
    let lost = h.feed(FeedStart::At(vec![1, 1]));
    assert!(
        matches!(lost, Err(FeedError::Lost { lsn: 1, .. })),
        "{:?}",
        lost.err()
    );
    engine.shutdown();
    let memory = Engine::open(Config::with_shards(1)).unwrap();
    assert!(matches!(
        memory.handle().feed(FeedStart::Now),
        Err(FeedError::NoLog)
    ));
    memory.shutdown();
}

#[test]
fn a_feed_follows_a_log_that_syncs_by_interval() {
    let dir = TempDir::new("feed-interval");
    let engine = Engine::open(Config {
        durability: mercato_engine::Durability::Interval { ms: 5 },
        ..durable_config(&dir.0, 2)
    })
    .unwrap();
    let h = engine.handle();
    h.deposit(1, 100).unwrap().unwrap();
    let mut feed = h.feed(FeedStart::Now).unwrap();
    h.deposit(2, 7).unwrap().unwrap();
    // Under `interval` an answer may leave before its record is written,
    // and the feed tells only what is in the log's files: `Now` may still
    // be before the first deposit, never after the second.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(feed.poll(10, Duration::from_millis(50)).unwrap());
        if got
            .iter()
            .any(|(_, e)| matches!(e, Event::Balance { account: 2, .. }))
        {
            break;
        }
    }
    assert!(
        got.iter()
            .any(|(_, e)| matches!(e, Event::Balance { account: 2, .. })),
        "{got:?}"
    );
    assert!(got.len() <= 2, "{got:?}");
    engine.shutdown();
}
