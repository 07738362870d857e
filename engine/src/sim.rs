//! A deterministic, single-threaded cluster of shards, for tests and for
//! exploring interleavings. Messages between shards wait in per-pair FIFO
//! queues, as on the real rings, and are delivered one at a time in an order
//! the caller picks, so any interleaving the runtime can produce can be replayed.

use std::collections::VecDeque;

use crate::audit::{AuditReport, audit};
use crate::command::{Command, Outcome};
use crate::hash::IdMap;
use crate::message::PeerMsg;
use crate::record::Record;
use crate::shard::{Output, Shard, Token};
use crate::types::{ShardId, TimestampMs};

pub struct Cluster {
    pub shards: Vec<Shard>,
    /// Every record each shard wrote, in order.
    pub records: Vec<Vec<Record>>,
    /// One FIFO per ordered pair, at `from * shards + to`.
    queues: Vec<VecDeque<PeerMsg>>,
    answers: IdMap<Token, Outcome>,
    keep_answers: bool,
    next_token: Token,
    out: Output,
}

impl Cluster {
    pub fn new(shards: u16) -> Self {
        Cluster {
            shards: (0..shards).map(|i| Shard::new(i, shards)).collect(),
            records: (0..shards).map(|_| Vec::new()).collect(),
            queues: (0..usize::from(shards) * usize::from(shards))
                .map(|_| VecDeque::new())
                .collect(),
            answers: IdMap::default(),
            keep_answers: true,
            next_token: 0,
            out: Output::default(),
        }
    }

    fn route(&mut self, from: ShardId) {
        self.records[from as usize].append(&mut self.out.records);
        let decoded = crate::durable::codec::decode_framed(&self.out.encoded);
        self.records[from as usize].extend(decoded);
        self.out.encoded.clear();
        for (to, msg) in self.out.sends.drain(..) {
            let at = queue_index(self.shards.len(), from, to);
            self.queues[at].push_back(msg);
        }
        if self.keep_answers {
            self.answers.extend(self.out.replies.drain(..));
        } else {
            self.out.replies.clear();
        }
    }

    /// Hand a command to its shard without delivering any message.
    pub fn submit(&mut self, cmd: Command, now: TimestampMs) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        let owner = cmd.owner(self.shards.len() as u16);
        self.shards[owner as usize].apply(token, cmd, now, &mut self.out);
        self.route(owner);
        token
    }

    /// The answer for `token`, once there is one.
    pub fn answer(&mut self, token: Token) -> Option<Outcome> {
        self.answers.remove(&token)
    }

    /// Stop keeping records, for long runs that never replay them.
    pub fn discard_records(&mut self) {
        self.shards.iter_mut().for_each(Shard::discard_records);
    }

    /// Have the shards hand their records out encoded, as they do for the
    /// write-ahead log; `records` keeps them decoded again.
    pub fn encode_records(&mut self) {
        self.shards.iter_mut().for_each(Shard::encode_records);
    }

    /// Stop keeping answers, for long runs that never read them.
    pub fn discard_answers(&mut self) {
        self.keep_answers = false;
        self.answers.clear();
    }

    /// Pairs with messages waiting, in (from, to) order.
    fn fill_pending_pairs(&self, pairs: &mut Vec<(ShardId, ShardId)>) {
        let n = self.shards.len();
        pairs.clear();
        pairs.extend(
            self.queues
                .iter()
                .enumerate()
                .filter(|(_, q)| !q.is_empty())
                .map(|(i, _)| ((i / n) as ShardId, (i % n) as ShardId)),
        );
    }

    /// Deliver the oldest message from `from` to `to`.
    pub fn deliver(&mut self, (from, to): (ShardId, ShardId), now: TimestampMs) -> bool {
        let at = queue_index(self.shards.len(), from, to);
        let Some(msg) = self.queues[at].pop_front() else {
            return false;
        };
        self.shards[to as usize].deliver(from, msg, now, &mut self.out);
        self.route(to);
        true
    }

    /// Deliver messages until none is left, choosing the pair with `pick`
    /// (given the number of pairs waiting) and calling `each` after every step.
    pub fn settle_with(
        &mut self,
        now: TimestampMs,
        mut pick: impl FnMut(usize) -> usize,
        mut each: impl FnMut(&Cluster),
    ) {
        let mut pairs = Vec::new();
        loop {
            self.fill_pending_pairs(&mut pairs);
            if pairs.is_empty() {
                return;
            }
            let pair = pairs[pick(pairs.len()) % pairs.len()];
            self.deliver(pair, now);
            each(self);
        }
    }

    /// Deliver everything in a fixed order.
    pub fn settle(&mut self, now: TimestampMs) {
        self.settle_with(now, |_| 0, |_| {});
    }

    /// Run one command to completion.
    pub fn call(&mut self, cmd: Command, now: TimestampMs) -> Outcome {
        let token = self.submit(cmd, now);
        self.settle(now);
        self.answer(token).expect("a settled cluster has answered")
    }

    /// Let time pass: every shard expires what is due, then messages settle.
    pub fn tick(&mut self, now: TimestampMs) {
        for i in 0..self.shards.len() {
            while self.shards[i].expire_due(now, &mut self.out) > 0 {
                self.route(i as ShardId);
            }
        }
        self.settle(now);
    }

    pub fn audit(&self) -> AuditReport {
        let parts: Vec<_> = self.shards.iter().map(Shard::audit_part).collect();
        audit(&parts)
    }
}

/// Where the queue from `from` to `to` sits among `shards * shards`.
fn queue_index(shards: usize, from: ShardId, to: ShardId) -> usize {
    usize::from(from) * shards + usize::from(to)
}
