//! The change feed for an embedded caller: each shard's log, followed from
//! a position and decoded into events (`feed::events_of`), up to what the
//! shard has committed (as durable as an answer needs to be).
//!
//! Delivery is at least once: a caller saves `Feed::next_positions` with
//! what it did with the events before them, and a new feed from those
//! positions goes on from there, perhaps repeating a few.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_wal::{LogId, Tail, TailError};

use super::engine::Shared;
use super::handle::Handle;
use crate::durable::codec;
use crate::feed::{Event, Position, events_of};
use crate::sync::Ordering;

/// Where a feed starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedStart {
    /// After everything committed so far.
    Now,
    /// At these LSNs, one per shard: a feed's `next_positions`, or 1 for
    /// a shard's whole log (while it is all kept).
    At(Vec<u64>),
    /// A copy of every SKU, account and order as each shard's newest
    /// snapshot holds them (`Event::SkuCopy`, ... at the snapshot's
    /// position), then the stream from the record after it: no gap and no
    /// overlap. `Engine::checkpoint_now` first makes the copy recent. The
    /// copy may take many polls, all at one position per shard; each of its
    /// events sets what it names outright, so a consumer applies them as
    /// they come and skips by position only in the stream after it. A
    /// durable subscription started this way is saved at the stream's
    /// start: one interrupted during its copy should be dropped and
    /// started again.
    Snapshot,
}

/// Why a feed cannot start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The engine keeps no log (no data directory): there is nothing to follow.
    #[error("the engine keeps no log, so it has no change feed")]
    NoLog,
    #[error("{given} positions for {shards} shards")]
    Positions { given: usize, shards: usize },
    /// A position past what the shard has committed.
    #[error("shard {shard}: LSN {lsn} is past the committed {committed}")]
    Ahead {
        shard: u16,
        lsn: u64,
        committed: u64,
    },
    /// The records from this position on are gone: a snapshot let their
    /// segments go. Start again from `Now` (with a fresh copy of the
    /// state) or from `oldest`.
    #[error("shard {shard}: records from LSN {lsn} are no longer kept (oldest {oldest})")]
    Lost { shard: u16, lsn: u64, oldest: u64 },
    #[error("shard {shard}: {what}")]
    Log { shard: u16, what: String },
    /// Subscription names are 1 to 64 ASCII letters, digits, `-`, `_`, `.`.
    #[error("{name:?} is not a subscription name")]
    InvalidName { name: String },
    /// The subscription fell further behind than the log keeps for it
    /// (`Config::feed_retention_bytes_max`); drop it and start anew.
    #[error("subscription {name:?} is lost: the log let its records go")]
    SubscriptionLost { name: String },
    /// Only a named subscription is acknowledged, and never back or ahead
    /// of what it read.
    #[error("cannot acknowledge {positions:?}: {why}")]
    BadAck {
        positions: Vec<u64>,
        why: &'static str,
    },
    #[error("the subscriptions file: {0}")]
    Store(String),
}

pub use crate::durable::retention::Subscription;

/// Events a feed decodes per shard per poll at most, so one busy shard
/// cannot starve the others' turns.
const FEED_RECORDS_PER_TURN_MAX: u64 = 4_096;
/// How often a waiting poll looks at the shards' committed LSNs.
const FEED_POLL_US: u64 = 200;

/// A follower of every shard's log (see [`Handle::feed`]).
pub struct Feed {
    shared: Arc<Shared>,
    tails: Vec<Tail>,
    ready: VecDeque<(Position, Event)>,
    /// Events of each shard in `ready`, so `next_positions` stops looking
    /// once it has found each shard's first.
    ready_per_shard: Vec<usize>,
    /// A `Snapshot` start's copy, handed out before anything else.
    copies: VecDeque<(Position, Event)>,
    /// Started from a copy not yet all handed out.
    copy_open: bool,
    /// The last `poll` handed out the copy's end, and `copy_ended` has not
    /// said so yet.
    copy_end_untold: bool,
    /// The durable subscription this feed reads for, if named, and the
    /// positions acknowledged so far.
    name: Option<String>,
    acked: Vec<u64>,
}

fn store(e: mercato_wal::WalError) -> FeedError {
    FeedError::Store(e.to_string())
}

impl Handle {
    /// A change feed from `start`, held by nothing: the log keeps its
    /// records only until a snapshot covers them. Needs a data directory.
    pub fn feed(&self, start: FeedStart) -> Result<Feed, FeedError> {
        self.open_feed(start, None)
    }

    /// The durable subscription `name`: created at `start` if it is new,
    /// else resumed from the positions it acknowledged last (`start` is
    /// then not used). Its records stay in the log until it acknowledges
    /// them, up to `Config::feed_retention_bytes_max` per shard.
    pub fn subscribe(&self, name: &str, start: FeedStart) -> Result<Feed, FeedError> {
        if !crate::durable::retention::valid_name(name) {
            return Err(FeedError::InvalidName { name: name.into() });
        }
        let dir = self.shared().data_dir.clone().ok_or(FeedError::NoLog)?;
        let known = crate::durable::retention::with(&dir, |s| {
            (s.list.iter().find(|x| x.name == name)).cloned()
        })
        .map_err(store)?;
        match known {
            Some(s) if s.lost => Err(FeedError::SubscriptionLost { name: name.into() }),
            Some(s) => self.open_feed(FeedStart::At(s.positions), Some(name.into())),
            None => {
                let feed = self.open_feed(start, Some(name.into()))?;
                let positions = feed.next_positions();
                crate::durable::retention::with(&dir, |s| {
                    if !s.list.iter().any(|x| x.name == name) {
                        s.list.push(Subscription {
                            name: name.into(),
                            positions,
                            lost: false,
                        });
                    }
                })
                .map_err(store)?;
                Ok(feed)
            }
        }
    }

    /// The durable subscriptions and where each is.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, FeedError> {
        let dir = self.shared().data_dir.clone().ok_or(FeedError::NoLog)?;
        crate::durable::retention::with(&dir, |s| s.list.clone()).map_err(store)
    }

    /// Forgets a subscription (its records may go); whether it existed.
    pub fn drop_subscription(&self, name: &str) -> Result<bool, FeedError> {
        let dir = self.shared().data_dir.clone().ok_or(FeedError::NoLog)?;
        crate::durable::retention::with(&dir, |s| {
            let before = s.list.len();
            s.list.retain(|x| x.name != name);
            s.list.len() < before
        })
        .map_err(store)
    }

    fn open_feed(&self, start: FeedStart, name: Option<String>) -> Result<Feed, FeedError> {
        let shared = self.shared().clone();
        let dir = shared.data_dir.clone().ok_or(FeedError::NoLog)?;
        let n = shared.shards.len();
        let mut copies = VecDeque::new();
        let start_is_copy = start == FeedStart::Snapshot;
        let from: Vec<u64> = match start {
            FeedStart::Now => (shared.shards.iter())
                .map(|s| s.committed_lsn.load(Ordering::Acquire) + 1)
                .collect(),
            FeedStart::Snapshot => {
                let mut from = Vec::with_capacity(n);
                for i in 0..n as u16 {
                    let (shard, lsn, _) = crate::durable::snapshot::load_newest(&dir, i, n as u16)
                        .map_err(|e| FeedError::Log {
                            shard: i,
                            what: e.to_string(),
                        })?;
                    let at = Position { shard: i, lsn };
                    copies.extend(shard.copy_events().into_iter().map(|e| (at, e)));
                    from.push(lsn + 1);
                }
                from
            }
            FeedStart::At(v) if v.len() == n => v,
            FeedStart::At(v) => {
                return Err(FeedError::Positions {
                    given: v.len(),
                    shards: n,
                });
            }
        };
        let mut tails = Vec::with_capacity(n);
        for (i, lsn) in from.into_iter().enumerate() {
            let committed = shared.shards[i].committed_lsn.load(Ordering::Acquire);
            if lsn > committed + 1 {
                return Err(FeedError::Ahead {
                    shard: i as u16,
                    lsn,
                    committed,
                });
            }
            let log = LogId {
                shard: i as u16,
                shards: n as u16,
            };
            let shard_dir = crate::durable::marker::shard_dir(&dir, i as u16);
            tails.push(Tail::open(&shard_dir, log, lsn).map_err(|e| lost(i, e))?);
        }
        let acked = tails.iter().map(Tail::next_lsn).collect();
        shared.feeds_open.fetch_add(1, Ordering::Relaxed);
        Ok(Feed {
            shared,
            tails,
            ready: VecDeque::new(),
            ready_per_shard: vec![0; n],
            copies,
            copy_open: start_is_copy,
            copy_end_untold: false,
            name,
            acked,
        })
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.feeds_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lost(shard: usize, e: TailError) -> FeedError {
    match e {
        TailError::Lost { lsn, oldest } => FeedError::Lost {
            shard: shard as u16,
            lsn,
            oldest,
        },
        TailError::Wal(e) => FeedError::Log {
            shard: shard as u16,
            what: e.to_string(),
        },
    }
}

impl Feed {
    /// Up to `max` events (more if a record's events would be split), each
    /// with its position, in log order per shard; waits up to `wait` for
    /// the first if none is ready. A record's events always come in one
    /// call, so a consumer that has dealt with a position has dealt with
    /// all of it, and may skip any event at or before it that comes again.
    pub fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Position, Event)>, FeedError> {
        if self.copy_open {
            if self.copies.is_empty() {
                // An empty copy ends before anything is handed out.
                self.copy_open = false;
            } else {
                // The copy goes alone, so the call that hands out its last
                // events is where it ends.
                let n = max.max(1).min(self.copies.len());
                let out = self.copies.drain(..n).collect();
                if self.copies.is_empty() {
                    self.copy_open = false;
                    self.copy_end_untold = true;
                }
                return Ok(out);
            }
        }
        let until = Instant::now() + wait;
        loop {
            if self.ready.is_empty() {
                self.read_more()?;
            }
            if !self.ready.is_empty() || Instant::now() >= until {
                let mut n = max.min(self.ready.len());
                // Never half a record.
                while n > 0 && n < self.ready.len() && self.ready[n].0 == self.ready[n - 1].0 {
                    n += 1;
                }
                let out: Vec<(Position, Event)> = self.ready.drain(..n).collect();
                for (p, _) in &out {
                    self.ready_per_shard[usize::from(p.shard)] -= 1;
                }
                return Ok(out);
            }
            std::thread::sleep(Duration::from_micros(FEED_POLL_US));
        }
    }

    fn read_more(&mut self) -> Result<(), FeedError> {
        for (i, tail) in self.tails.iter_mut().enumerate() {
            let committed = self.shared.shards[i].committed_lsn.load(Ordering::Acquire);
            let upto = committed.min(tail.next_lsn() + FEED_RECORDS_PER_TURN_MAX - 1);
            let ready = &mut self.ready;
            let ready_per_shard = &mut self.ready_per_shard;
            let mut events = Vec::new();
            tail.read(upto, |r| {
                let record = codec::decode(r.kind, r.body).map_err(|e| {
                    mercato_wal::WalError::Poisoned(format!("record {}: {e}", r.lsn))
                })?;
                events.clear();
                events_of(&record, &mut events);
                let at = Position {
                    shard: i as u16,
                    lsn: r.lsn,
                };
                ready_per_shard[i] += events.len();
                ready.extend(events.drain(..).map(|e| (at, e)));
                Ok(())
            })
            .map_err(|e| lost(i, e))?;
        }
        Ok(())
    }

    /// True once, for a feed started from a copy of the state: right
    /// after the `poll` that handed out the copy's last events, or, for an
    /// empty copy, before the first `poll`. Until then `poll` hands out
    /// only the copy, so a consumer that must load it whole (in one
    /// database transaction, say) learns here where it ends.
    pub fn copy_ended(&mut self) -> bool {
        if self.copy_open && self.copies.is_empty() {
            self.copy_open = false;
            return true;
        }
        std::mem::take(&mut self.copy_end_untold)
    }

    /// A named feed: saves `positions` (from `next_positions`, once the
    /// events before them are dealt with) as its subscription's, durably.
    /// A restart resumes there, and the log may let earlier records go.
    pub fn ack(&mut self, positions: &[u64]) -> Result<(), FeedError> {
        let bad = |why| FeedError::BadAck {
            positions: positions.to_vec(),
            why,
        };
        let Some(name) = &self.name else {
            return Err(bad("only a named subscription is acknowledged"));
        };
        if self.copy_open {
            return Err(bad("the copy of the state is not all handed out"));
        }
        let next = self.next_positions();
        if positions.len() != next.len() {
            return Err(bad("one position per shard"));
        }
        if positions.iter().zip(&next).any(|(p, n)| p > n) {
            return Err(bad("ahead of what the feed handed out"));
        }
        if positions.iter().zip(&self.acked).any(|(p, a)| p < a) {
            return Err(bad("behind what was acknowledged before"));
        }
        let dir = self.shared.data_dir.clone().ok_or(FeedError::NoLog)?;
        let lost = crate::durable::retention::with(&dir, |s| {
            match s.list.iter_mut().find(|x| &x.name == name) {
                Some(x) if !x.lost => {
                    x.positions = positions.to_vec();
                    false
                }
                _ => true,
            }
        })
        .map_err(store)?;
        if lost {
            return Err(FeedError::SubscriptionLost { name: name.clone() });
        }
        self.acked = positions.to_vec();
        Ok(())
    }

    /// Per shard, the LSN the feed reads next, once the events handed out
    /// so far are dealt with: save these to go on later
    /// (`FeedStart::At`). Events decoded and not yet handed out count as
    /// not read. While a `Snapshot` start's copy is being handed out, these
    /// are where the stream after it starts, and mean nothing until the
    /// copy is all dealt with.
    pub fn next_positions(&self) -> Vec<u64> {
        let mut next: Vec<u64> = self.tails.iter().map(Tail::next_lsn).collect();
        // Each shard's events are in log order: its first is its least.
        let mut unseen = self.ready_per_shard.iter().filter(|&&c| c > 0).count();
        let mut seen = vec![false; next.len()];
        for (p, _) in &self.ready {
            if unseen == 0 {
                break;
            }
            let i = usize::from(p.shard);
            if !seen[i] {
                seen[i] = true;
                unseen -= 1;
                next[i] = next[i].min(p.lsn);
            }
        }
        next
    }
}
