//! A deterministic, single-threaded cluster of shards, for tests and for
//! exploring interleavings. Messages between shards wait in per-pair FIFO
//! queues, as on the real rings, and are delivered one at a time in an order
//! the caller picks, so any interleaving the runtime can produce can be replayed.

use std::collections::{BTreeMap, VecDeque};

use crate::audit::{AuditReport, audit};
use crate::command::{Command, Outcome};
use crate::message::PeerMsg;
use crate::record::Record;
use crate::shard::{Output, Shard, Token};
use crate::types::{ShardId, TimestampMs};

pub struct Cluster {
    pub shards: Vec<Shard>,
    /// Every record each shard wrote, in order.
    pub records: Vec<Vec<Record>>,
    queues: BTreeMap<(ShardId, ShardId), VecDeque<PeerMsg>>,
    answers: BTreeMap<Token, Outcome>,
    next_token: Token,
    out: Output,
}

impl Cluster {
    pub fn new(shards: u16) -> Self {
        Cluster {
            shards: (0..shards).map(|i| Shard::new(i, shards)).collect(),
            records: (0..shards).map(|_| Vec::new()).collect(),
            queues: BTreeMap::new(),
            answers: BTreeMap::new(),
            next_token: 0,
            out: Output::default(),
        }
    }

    fn route(&mut self, from: ShardId) {
        self.records[from as usize].append(&mut self.out.records);
        for (to, msg) in self.out.sends.drain(..) {
            self.queues.entry((from, to)).or_default().push_back(msg);
        }
        for (token, outcome) in self.out.replies.drain(..) {
            self.answers.insert(token, outcome);
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

    /// Forget every answer not yet taken.
    pub fn clear_answers(&mut self) {
        self.answers.clear();
    }

    /// Pairs with messages waiting.
    pub fn pending_pairs(&self) -> Vec<(ShardId, ShardId)> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(&k, _)| k)
            .collect()
    }

    /// Deliver the oldest message from `from` to `to`.
    pub fn deliver(&mut self, (from, to): (ShardId, ShardId), now: TimestampMs) -> bool {
        let Some(msg) = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
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
        loop {
            let pairs = self.pending_pairs();
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
