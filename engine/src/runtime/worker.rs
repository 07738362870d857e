//! The shard loop: take messages and commands, run them through the pure
//! shard, pass records to the journal, send messages in per-peer batches, and
//! answer callers. It sleeps in `mio::Poll` when idle and wakes when a sender
//! or its expiry clock needs it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::collector::Collector;
use super::engine::{JournalBox, Shared};
use super::net::Net;
use super::ring::{Consumer, Producer};
use super::route::Missed;
use crate::audit::AuditPart;
use crate::command::{Command, Outcome};
use crate::durable::checkpoint::Piece;
use crate::error::EngineError;
use crate::error::Reject;
use crate::hash::IdSet;
use crate::limits::{
    HELD_GROUPS_MAX, IDLE_SLEEP_MS_MAX, INBOUND_PER_TURN_MAX, LOG_BACKLOG_BYTES_MAX,
    RING_DEPTH_MAX, TURN_COMMANDS_MAX, WARM_CHUNK_LEN,
};
use crate::message::{PeerMsg, Vote};
use crate::shard::{Output, Shard, Token, Touched};
use crate::sync::Ordering;
use crate::types::ShardId;
use crate::types::{AccountId, SkuId};
use crate::views::{ViewUpdate, Views};

/// What a caller queues for one shard.
pub(crate) enum Request {
    /// Commands this shard owns, each with its slot in the caller's collector.
    Commands {
        collector: Arc<Collector<Result<Outcome, EngineError>>>,
        cmds: Vec<(u32, Command)>,
        /// Reads among `cmds` that missed the view cache.
        missed: Vec<Missed>,
    },
    /// This shard's audit figures, into slot `slot`.
    Audit {
        collector: Arc<Collector<AuditPart>>,
        slot: usize,
    },
    /// A session (a connection, or an embedded `Session`) ended: its
    /// bound leases end and its waits leave, on every shard.
    EndSession { session: u64 },
}

/// The ids a shard filled the view caches with (see `Worker::filled`).
#[derive(Default)]
struct Filled {
    skus: IdSet<SkuId>,
    accounts: IdSet<AccountId>,
}

impl Filled {
    /// Forgets ids the caches no longer hold once a set is twice as large
    /// as the cache: the cost is spread over at least as many fills, and
    /// the sets stay within twice the caches' size. Only while no fill is
    /// held back, or a fill not yet published would be forgotten and its
    /// view never refreshed.
    fn prune(&mut self, views: &Views) {
        let most =
            |capacity: u64| usize::try_from(capacity.saturating_mul(2)).unwrap_or(usize::MAX);
        if self.skus.len() > most(views.skus.capacity()) {
            self.skus.retain(|sku| views.skus.peek(sku).is_some());
        }
        if self.accounts.len() > most(views.accounts.capacity()) {
            (self.accounts).retain(|account| views.accounts.peek(account).is_some());
        }
    }
}

/// Where a request's answers go. One per request, not per command, so the
/// collector's reference count (shared with the caller and other shards) is
/// touched once per request.
struct Waiter {
    collector: Arc<Collector<Result<Outcome, EngineError>>>,
    outstanding: u32,
}

/// Socket events one poll returns at most.
const NET_EVENTS_MAX: usize = 1_024;

/// Replies whose buffer a shard keeps for the next turn's group of replies
/// held behind messages; a bigger buffer is freed, not kept.
const SPARE_REPLIES_MAX: usize = 4_096;

/// The longest a shard with connections that follow a feed sleeps.
const FEED_IDLE_SLEEP_MS: u64 = 1;

/// Idle turns spent spinning before the shard goes to sleep.
const IDLE_SPINS_MAX: u32 = 64;

/// Slow turns since the last was logged: one warning a second at most,
/// so a shard in trouble does not also flood its log.
#[derive(Default)]
struct SlowTurns {
    logged: Option<std::time::Instant>,
    unlogged: u64,
}

const SLOW_TURN_LOG_EVERY: Duration = Duration::from_secs(1);

impl SlowTurns {
    fn check(
        &mut self,
        shard: usize,
        started: std::time::Instant,
        limit: Duration,
        shared: &Shared,
    ) {
        let took = started.elapsed();
        if took < limit {
            return;
        }
        shared.shards[shard].metrics.slow_turn();
        self.unlogged += 1;
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= SLOW_TURN_LOG_EVERY)
        {
            tracing::warn!(
                shard,
                took_ms = took.as_millis() as u64,
                limit_ms = limit.as_millis() as u64,
                slow_turns = self.unlogged,
                "slow shard turn"
            );
            self.logged = Some(std::time::Instant::now());
            self.unlogged = 0;
        }
    }
}

pub(crate) struct Worker {
    shard: Shard,
    shared: Arc<Shared>,
    poll: mio::Poll,
    events: mio::Events,
    producers: Vec<Option<Producer<Vec<PeerMsg>>>>,
    consumers: Vec<Option<Consumer<Vec<PeerMsg>>>>,
    /// Messages being gathered for each peer during this turn.
    gather: Vec<Vec<PeerMsg>>,
    /// Batches a full ring refused, per peer, in order. While any wait here the
    /// shard takes no new client work, so this stays bounded.
    outbox: Vec<VecDeque<Vec<PeerMsg>>>,
    /// Requests with answers outstanding; a command's token is its request's
    /// index here in the high 32 bits and its slot in the caller's batch in the low.
    waiters: Vec<Option<Waiter>>,
    free_waiters: Vec<u32>,
    out: Output,
    /// One request's answers on their way to its collector; kept to reuse its buffer.
    group: Vec<(usize, Result<Outcome, EngineError>)>,
    journal: Box<dyn JournalBox>,
    /// Replies and messages waiting for the records they depend on to be
    /// durable, each group with the journal number of its last record.
    held_replies: VecDeque<(u64, Vec<(Token, Outcome)>)>,
    held_sends: VecDeque<(u64, Vec<(ShardId, PeerMsg)>)>,
    /// Lock notices, held like replies: a grant is told only once it is
    /// as durable as an answer would be.
    held_notices: VecDeque<(u64, Vec<(u64, crate::lock::Notice)>)>,
    /// Replies to commands or messages that also sent messages (a decided
    /// two-phase order, a cancel settled elsewhere). A caller who hears
    /// one may next ask the shard those messages went to, which must have
    /// them first: so these wait until this turn's messages are on the
    /// rings, and while any message at or before their journal number is
    /// held, even where the durability policy lets other replies go at once.
    after_sends: Vec<(Token, Outcome)>,
    held_after_sends: VecDeque<(u64, Vec<(Token, Outcome)>)>,
    /// An emptied group's buffer, for the next turn's `after_sends`.
    after_sends_spare: Vec<(Token, Outcome)>,
    /// Views to publish in the shared view caches, held like replies: a
    /// reader elsewhere must not see what a caller here has not been told.
    held_views: VecDeque<(u64, Vec<ViewUpdate>)>,
    /// Scratch for the ids whose views a turn changed.
    touched: Touched,
    /// Scratch for the view updates of a turn that need not wait.
    view_updates: Vec<ViewUpdate>,
    /// Reads this turn that missed the view cache, to fill it with.
    missed: Vec<Missed>,
    /// This shard's ids it filled the view caches with and has not seen
    /// gone since. Only an owner fills its ids, so every cached view of
    /// this shard's is here, and a change to an id not here needs no
    /// refresh: order workloads that never read pay no probes.
    filled: Filled,
    /// Scratch for the requests one turn takes from the inbound queue.
    requests: Vec<Request>,
    /// Commands and messages run since the last `flush`.
    unflushed: usize,
    /// The journal failed: nothing more is acknowledged.
    failed: bool,
    /// Client connections, when the engine serves TCP.
    net: Option<Net>,
    announced_stop: bool,
    /// The checkpoint this shard is copying for the snapshot thread.
    checkpoint: Option<CheckpointRun>,
}

/// Slices of each large table a checkpoint copies per turn, besides those
/// the turn's writes copy: 64 KiB of each table, tens of microseconds in
/// all, so a busy shard's turns stay short and the copy still moves at
/// hundreds of megabytes a second.
const CHECKPOINT_SLICES_PER_TURN: usize = 16;

/// A checkpoint under way (`shard/checkpoint.rs`, `durable/checkpoint.rs`).
struct CheckpointRun {
    /// The LSN it copies the state at.
    lsn: u64,
    /// Dropped when the checkpoint is abandoned: the snapshot thread then
    /// finds the queue closed and writes nothing.
    tx: Option<std::sync::mpsc::SyncSender<Piece>>,
    /// Pieces the queue had no room for yet, oldest first.
    held: VecDeque<Piece>,
    /// The shard's copy is complete.
    copied: bool,
    /// `Done` is among what was sent or held.
    done: bool,
    /// The snapshot thread gave up on it, or the log failed: copy on (the
    /// tables must finish their copy-on-write), send nothing.
    abandoned: bool,
}

impl Worker {
    pub(crate) fn new(
        shard: Shard,
        shared: Arc<Shared>,
        poll: mio::Poll,
        producers: Vec<Option<Producer<Vec<PeerMsg>>>>,
        consumers: Vec<Option<Consumer<Vec<PeerMsg>>>>,
        journal: Box<dyn JournalBox>,
    ) -> Self {
        let n = producers.len();
        let mut shard = shard;
        shard.track_touched(shared.views.is_some());
        Worker {
            shard,
            shared,
            poll,
            events: mio::Events::with_capacity(4),
            producers,
            consumers,
            gather: (0..n).map(|_| Vec::new()).collect(),
            outbox: (0..n).map(|_| VecDeque::new()).collect(),
            waiters: Vec::new(),
            free_waiters: Vec::new(),
            out: Output::default(),
            group: Vec::new(),
            journal,
            held_replies: VecDeque::new(),
            held_sends: VecDeque::new(),
            held_notices: VecDeque::new(),
            after_sends: Vec::new(),
            held_after_sends: VecDeque::new(),
            after_sends_spare: Vec::new(),
            held_views: VecDeque::new(),
            touched: Touched::default(),
            view_updates: Vec::new(),
            missed: Vec::new(),
            filled: Filled::default(),
            requests: Vec::with_capacity(INBOUND_PER_TURN_MAX),
            unflushed: 0,
            failed: false,
            net: None,
            announced_stop: false,
            checkpoint: None,
        }
    }

    /// Serve clients from this shard's thread.
    pub(crate) fn serve(&mut self, mut net: Net) -> std::io::Result<()> {
        net.register(self.poll.registry())?;
        self.events = mio::Events::with_capacity(NET_EVENTS_MAX);
        self.net = Some(net);
        Ok(())
    }

    /// Sockets, and batches of this shard's clients that are answered.
    fn net_turn(&mut self, timeout: Option<Duration>) -> usize {
        let Some(net) = &mut self.net else {
            return 0;
        };
        if let Some(t) = timeout {
            // An error here is EINTR; the next turn looks again.
            let _ = self.poll.poll(&mut self.events, Some(t));
        }
        net.turn(&self.events, self.poll.registry(), &self.shared)
    }

    pub(crate) fn run(mut self) -> (Shard, Box<dyn JournalBox>) {
        let id = self.shard.id() as usize;
        let mut idle = 0u32;
        // Whether the log was told this loop is idle; told on the first
        // idle turn, so a log gathering records for its next sync starts it
        // as soon as nothing more is coming.
        let mut told_idle = false;
        let mut slow = SlowTurns::default();
        loop {
            // Timed only when slow turns are looked for.
            let turn_started = self.shared.slow_turn.map(|_| std::time::Instant::now());
            let now = self.shared.clock.now_ms();
            let mut work = self.take_messages(now);
            work += self.net_turn(Some(Duration::ZERO));
            let stopping = self.shared.gate.is_closed();
            if !stopping && self.outbox_empty() && !self.log_backlogged() {
                work += self.take_requests();
                if self.shard.next_expiry().is_some_and(|at| at <= now) {
                    work += self.shard.expire_due(now, &mut self.out);
                }
                if self.shard.next_lock_deadline().is_some_and(|at| at <= now) {
                    work += self.shard.tick_locks(now, &mut self.out).max(1);
                }
            }
            self.flush();
            self.journal.submit();
            work += self.release_held();
            self.publish_committed();
            work += self.checkpoint_turn();
            if let (Some(limit), Some(started)) = (self.shared.slow_turn, turn_started) {
                slow.check(id, started, limit, &self.shared);
            }
            if stopping && self.may_exit() {
                break;
            }
            if work > 0 {
                if told_idle {
                    self.journal.producer_idle(false);
                    told_idle = false;
                }
                idle = 0;
                continue;
            }
            idle += 1;
            if !told_idle {
                self.journal.producer_idle(true);
                told_idle = true;
            }
            if idle < IDLE_SPINS_MAX {
                std::hint::spin_loop();
                // See `Shared::snapshotting`.
                if idle % 8 == 0 && !self.shared.snapshotting.load(Ordering::Relaxed) {
                    std::thread::yield_now();
                }
                continue;
            }
            self.sleep(id, now);
            idle = 0;
        }
        self.answer_leftovers(id);
        (self.shard, self.journal)
    }

    /// Begins a checkpoint the snapshot thread asked for, or copies a few
    /// more slices of the one under way and sends what was copied. Returns
    /// whether there was anything to do.
    fn checkpoint_turn(&mut self) -> usize {
        let id = self.shard.id() as usize;
        if self.checkpoint.is_none() {
            let slot = &self.shared.shards[id];
            if !slot.checkpoint_wanted.load(Ordering::Acquire) {
                return 0;
            }
            slot.checkpoint_wanted.store(false, Ordering::Relaxed);
            let Some(tx) = slot.checkpoint.lock().expect("checkpoint lock").take() else {
                return 0;
            };
            if self.failed || self.journal.failed() {
                // What the log holds is not what the shard holds: no
                // snapshot of it. Dropping `tx` tells the snapshot thread.
                return 0;
            }
            // Every record this shard applied is in the journal by now
            // (`flush`), so the state is the state after the last of them.
            let lsn = self.journal.progress().last;
            let head = self.shard.begin_checkpoint(lsn);
            self.checkpoint = Some(CheckpointRun {
                lsn,
                tx: Some(tx),
                held: VecDeque::from([Piece::Head(head)]),
                copied: false,
                done: false,
                abandoned: false,
            });
        }
        let run = self.checkpoint.as_mut().expect("a checkpoint");
        if self.failed || self.journal.failed() {
            // Its records may never be synced, so it may never be
            // published; and nobody must wait for it.
            run.abandoned = true;
            run.held.clear();
            run.tx = None;
        }
        // Copy more only once the queue took what was copied: a slow disk
        // slows the checkpoint, not the shard's memory. Writes still copy
        // the slices they touch, as they must.
        if !run.copied && run.held.is_empty() {
            let mut parts = Vec::new();
            run.copied = self
                .shard
                .checkpoint_step(CHECKPOINT_SLICES_PER_TURN, &mut parts);
            if !run.abandoned {
                run.held.extend(parts.into_iter().map(Piece::Part));
            }
        }
        // The snapshot may not be published before every record it covers
        // is synced: a power cut could leave it ahead of the log, and the
        // log would then go on from an LSN it already covers. Under
        // `always` the wait is a sync; under `interval` up to an interval.
        if run.copied && !run.done && self.journal.synced() >= run.lsn {
            run.done = true;
            if !run.abandoned {
                run.held.push_back(Piece::Done);
            }
        }
        while let Some(piece) = run.held.pop_front() {
            let Some(tx) = &run.tx else {
                break;
            };
            match tx.try_send(piece) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(piece)) => {
                    run.held.push_front(piece);
                    break;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    run.abandoned = true;
                    run.held.clear();
                    run.tx = None;
                }
            }
        }
        if run.abandoned && run.copied {
            self.checkpoint = None;
            return 1;
        }
        if run.done && run.held.is_empty() {
            self.checkpoint = None;
            return 1;
        }
        // Waiting for room, or for the sync, is not work: the loop may
        // sleep meanwhile.
        usize::from(run.held.is_empty() && (run.done || !run.copied))
    }

    fn take_messages(&mut self, now: u64) -> usize {
        let mut work = 0;
        for from in 0..self.consumers.len() {
            // Bounded so a flood from one peer cannot starve the rest.
            for _ in 0..RING_DEPTH_MAX {
                let Some(batch) = self.consumers[from].as_ref().and_then(|c| c.pop()) else {
                    break;
                };
                let mut msgs = batch.into_iter();
                while !msgs.as_slice().is_empty() {
                    let ahead = msgs.as_slice().iter().take(WARM_CHUNK_LEN);
                    self.shard.warm_messages(ahead);
                    for msg in msgs.by_ref().take(WARM_CHUNK_LEN) {
                        let before = out_lens(&self.out);
                        self.shard.deliver(from as u16, msg, now, &mut self.out);
                        keep_after_sends(&mut self.out, &mut self.after_sends, before);
                        self.unflushed += 1;
                    }
                    self.flush_if_due();
                }
                work += 1;
            }
        }
        work
    }

    fn take_requests(&mut self) -> usize {
        let id = self.shard.id() as usize;
        let mut reqs = std::mem::take(&mut self.requests);
        let mut commands = 0;
        while reqs.len() < INBOUND_PER_TURN_MAX && commands < TURN_COMMANDS_MAX {
            let Some(req) = self.shared.shards[id].inbound.pop() else {
                break;
            };
            if let Request::Commands { cmds, .. } = &req {
                commands += cmds.len();
            }
            reqs.push(req);
        }
        let work = reqs.len();
        if work == 0 {
            self.requests = reqs;
            return 0;
        }
        // Read after the pops: a request queued after the clock moved must
        // see the new time, or a payment could beat its deadline.
        let now = self.shared.clock.now_ms();
        // Messages sent before any of these requests was queued (a Decide
        // or Settle a caller heard acknowledged before it asked) are on the
        // rings now: take them first, so the requests see them.
        self.take_messages(now);
        for req in reqs.drain(..) {
            match req {
                Request::Commands {
                    collector, cmds, ..
                } if self.failed => {
                    // The log failed: nothing may change, so nothing runs.
                    let shard = self.shard.id();
                    collector.fill(
                        cmds.into_iter().map(|(slot, _)| {
                            (slot as usize, Err(EngineError::Unavailable { shard }))
                        }),
                    );
                }
                Request::Commands {
                    collector,
                    cmds,
                    missed,
                } => {
                    let outstanding = cmds.len() as u32;
                    let idx = u64::from(self.park(Waiter {
                        collector,
                        outstanding,
                    }));
                    let mut cmds = cmds.into_iter();
                    while !cmds.as_slice().is_empty() {
                        let ahead = cmds.as_slice().iter().take(WARM_CHUNK_LEN);
                        self.shard.warm(ahead.map(|(_, c)| c));
                        for (slot, cmd) in cmds.by_ref().take(WARM_CHUNK_LEN) {
                            let token = idx << 32 | u64::from(slot);
                            let before = out_lens(&self.out);
                            let cmd = match self.fenced_cache_set(cmd) {
                                Ok(cmd) => cmd,
                                Err(outcome) => {
                                    self.out.replies.push((token, outcome));
                                    continue;
                                }
                            };
                            self.shard.apply(token, cmd, now, &mut self.out);
                            keep_after_sends(&mut self.out, &mut self.after_sends, before);
                            self.unflushed += 1;
                        }
                        self.flush_if_due();
                    }
                    // Only now: a flush in the loop above would fill the
                    // views for reads not yet run, with state older than
                    // their answers.
                    self.missed.extend(missed);
                    // Answer now, while the replies are still in cache: a
                    // whole turn's worth is most of a megabyte.
                    self.answer_all();
                }
                Request::Audit { collector, slot } => {
                    collector.fill([(slot, self.shard.audit_part())]);
                }
                Request::EndSession { session } => {
                    self.shard.end_session(session, now, &mut self.out);
                }
            }
        }
        self.requests = reqs;
        work
    }

    /// A fenced keyspace write runs here, on its lock's shard, between
    /// the fence check and any later grant; any other command goes on.
    fn fenced_cache_set(&self, cmd: Command) -> Result<Command, Outcome> {
        let Command::Fenced { lock, token, cmd } = cmd else {
            return Ok(cmd);
        };
        let Command::CacheSet { key, value, ttl_ms } = *cmd else {
            return Ok(Command::Fenced { lock, token, cmd });
        };
        if crate::command::shard_of_name(&lock, self.shared.shards.len() as u16) != self.shard.id()
        {
            return Err(Err(Reject::Lock(crate::lock::LockError::NotFenceable)));
        }
        let set = self.shard.check_fence(&lock, token).and_then(|()| {
            let ks = &self.shared.keyspace;
            ks.set(&key, value, ttl_ms)
                .map(|()| crate::command::Reply::Stored)
        });
        Err(set)
    }

    fn park(&mut self, w: Waiter) -> u32 {
        match self.free_waiters.pop() {
            Some(i) => {
                self.waiters[i as usize] = Some(w);
                i
            }
            None => {
                self.waiters.push(Some(w));
                (self.waiters.len() - 1) as u32
            }
        }
    }

    /// Hand a group of answers for one request to its caller, under one lock.
    fn answer(&mut self, idx: u32, group: &mut Vec<(usize, Result<Outcome, EngineError>)>) {
        let w = self.waiters[idx as usize]
            .as_mut()
            .expect("a parked request");
        w.outstanding -= group.len() as u32;
        w.collector.fill(group.drain(..));
        if w.outstanding == 0 {
            self.waiters[idx as usize] = None;
            self.free_waiters.push(idx);
        }
    }

    fn outbox_empty(&self) -> bool {
        self.outbox.iter().all(VecDeque::is_empty)
    }

    /// Whether the log has more waiting than the shard lets pile up; until
    /// it drains, the shard takes no new client work.
    fn log_backlogged(&self) -> bool {
        self.journal.backlog_bytes() > LOG_BACKLOG_BYTES_MAX
            || self.held_replies.len() >= HELD_GROUPS_MAX
            || self.held_sends.len() >= HELD_GROUPS_MAX
            || self.held_after_sends.len() >= HELD_GROUPS_MAX
    }

    /// Mid-turn, once `TURN_COMMANDS_MAX` commands or messages have run
    /// since the last flush: send what they produced now instead of at the
    /// turn's end, so the peer waiting for these Prepares and votes, and the
    /// log's flusher, start on them.
    fn flush_if_due(&mut self) {
        if self.unflushed >= TURN_COMMANDS_MAX {
            self.flush();
            self.journal.submit();
        }
    }

    /// Records to the journal; messages to peers once the records before
    /// them are durable (a peer must never act on a change this shard could
    /// still lose); answers to callers.
    fn flush(&mut self) {
        self.unflushed = 0;
        self.log_records();
        // Before any message leaves: a vote or decision sent now may lead to
        // an acknowledgment elsewhere, and its reader must find this turn's
        // views.
        self.stage_views();
        if !self.out.sends.is_empty() {
            let p = self.journal.progress();
            if self.failed {
                let sends = std::mem::take(&mut self.out.sends);
                self.send_failed(sends);
            } else if self.held_sends.is_empty() && p.sends_upto >= p.last {
                for (to, msg) in self.out.sends.drain(..) {
                    self.gather[to as usize].push(msg);
                }
            } else {
                let mut held = Vec::new();
                for (to, msg) in self.out.sends.drain(..) {
                    // A Prepare rests on no record of this shard: the order
                    // it asks for lives in memory until the votes are in,
                    // and a crash aborts it (presumed abort). Sending it at
                    // once saves a sync on the commit path. It may overtake
                    // a held Decide or Settle for another order; neither
                    // depends on it.
                    if matches!(msg, PeerMsg::Prepare { .. } | PeerMsg::FenceCheck { .. }) {
                        self.gather[to as usize].push(msg);
                    } else {
                        held.push((to, msg));
                    }
                }
                if !held.is_empty() {
                    match self.held_sends.back_mut() {
                        Some((lsn, group)) if *lsn == p.last => group.extend(held),
                        _ => self.held_sends.push_back((p.last, held)),
                    }
                }
            }
        }
        self.push_gathered();
        self.answer_all();
        if !self.after_sends.is_empty() {
            let lsn = self.journal.progress().last;
            let spare = std::mem::take(&mut self.after_sends_spare);
            let replies = std::mem::replace(&mut self.after_sends, spare);
            match self.held_after_sends.back_mut() {
                Some((at, group)) if *at == lsn => group.extend(replies),
                _ => self.held_after_sends.push_back((lsn, replies)),
            }
            self.release_after_sends();
        }
    }

    /// Whether replies held behind the messages of journal number `lsn` may
    /// go: none of those messages is still held or waiting in the outbox.
    fn sends_out_upto(&self, lsn: u64) -> bool {
        self.held_sends.front().is_none_or(|(at, _)| *at > lsn) && self.outbox_empty()
    }

    fn release_after_sends(&mut self) -> usize {
        let mut released = 0;
        while let Some(&(lsn, _)) = self.held_after_sends.front() {
            if !self.failed && !self.sends_out_upto(lsn) {
                break;
            }
            let (_, mut group) = self.held_after_sends.pop_front().expect("a front");
            self.deliver(&mut group);
            if group.capacity() > self.after_sends_spare.capacity()
                && group.capacity() <= SPARE_REPLIES_MAX
            {
                self.after_sends_spare = group;
            }
            released += 1;
        }
        released
    }

    fn log_records(&mut self) {
        if !self.out.records.is_empty() {
            self.journal.append(&mut self.out.records);
        }
        if !self.out.encoded.is_empty() {
            self.journal.append_encoded(&mut self.out.encoded);
        }
        if !self.failed && self.journal.failed() {
            self.fail();
        }
    }

    /// The log failed. Replies waiting for it will never be acknowledged:
    /// their callers hear `Unavailable`. Yes votes waiting for it become No,
    /// so coordinators elsewhere abort instead of waiting forever; other
    /// messages waiting for it are dropped, and recovery settles what they
    /// would have settled.
    fn fail(&mut self) {
        self.failed = true;
        self.shared.failed_logs.fetch_add(1, Ordering::SeqCst);
        // Orders this shard coordinates can no longer commit here.
        let shard = self.shard.id();
        let why = (self.shared.shards[shard as usize].log.get())
            .and_then(mercato_wal::LogMonitor::failure)
            .unwrap_or_else(|| "unknown".into());
        tracing::error!(
            shard,
            why = %why,
            "the shard's log failed: it answers Unavailable until the server restarts and recovers"
        );
        let abandoned = self.shard.abandon_pending();
        let mut answers: Vec<(Token, Outcome)> = abandoned
            .into_iter()
            .map(|t| (t, Err(Reject::ShardUnavailable { shard })))
            .collect();
        self.deliver(&mut answers);
        while let Some((_, mut group)) = self.held_replies.pop_front() {
            self.deliver(&mut group);
        }
        let mut after_sends = std::mem::take(&mut self.after_sends);
        self.deliver(&mut after_sends);
        self.release_after_sends();
        while let Some((_, sends)) = self.held_sends.pop_front() {
            self.send_failed(sends);
        }
        // Never published: the cached views keep the last released state.
        self.held_views.clear();
        self.held_notices.clear();
    }

    fn send_failed(&mut self, sends: Vec<(ShardId, PeerMsg)>) {
        let shard = self.shard.id();
        for (to, msg) in sends {
            let msg = match msg {
                PeerMsg::Vote {
                    tx,
                    vote: Vote::Yes(_),
                } => PeerMsg::Vote {
                    tx,
                    vote: Vote::No(Reject::ShardUnavailable { shard }),
                },
                vote @ PeerMsg::Vote { .. } => vote,
                PeerMsg::FenceVote { fx, result: Ok(()) } => PeerMsg::FenceVote {
                    fx,
                    result: Err(Reject::ShardUnavailable { shard }),
                },
                vote @ PeerMsg::FenceVote { .. } => vote,
                _ => continue,
            };
            self.gather[to as usize].push(msg);
        }
    }

    /// Release what the journal's progress allows; returns groups released.
    fn release_held(&mut self) -> usize {
        if self.held_replies.is_empty()
            && self.held_notices.is_empty()
            && self.held_sends.is_empty()
            && self.held_views.is_empty()
            && self.held_after_sends.is_empty()
        {
            return 0;
        }
        if !self.failed && self.journal.failed() {
            self.fail();
        }
        let p = self.journal.progress();
        let mut released = 0;
        // Views before messages and replies, so that whoever hears of a
        // change (a caller, or a coordinator that then tells its caller)
        // finds it cached; under `interval` and `never` that is before
        // their records are synced, as replies are.
        while self
            .held_views
            .front()
            .is_some_and(|(lsn, _)| *lsn <= p.views_upto())
        {
            let (_, updates) = self.held_views.pop_front().expect("a front");
            if let Some(views) = &self.shared.views {
                views.publish(&updates);
                if self.held_views.is_empty() {
                    // Every fill is out now (see `Filled::prune`).
                    self.filled.prune(views);
                }
            }
        }
        while self
            .held_sends
            .front()
            .is_some_and(|(lsn, _)| *lsn <= p.sends_upto)
        {
            let (_, sends) = self.held_sends.pop_front().expect("a front");
            for (to, msg) in sends {
                self.gather[to as usize].push(msg);
            }
            released += 1;
        }
        if released > 0 {
            self.push_gathered();
        }
        released += self.release_after_sends();
        while self
            .held_replies
            .front()
            .is_some_and(|(lsn, _)| *lsn <= p.replies_upto)
        {
            let (_, mut group) = self.held_replies.pop_front().expect("a front");
            self.deliver(&mut group);
            released += 1;
        }
        while self
            .held_notices
            .front()
            .is_some_and(|(lsn, _)| *lsn <= p.replies_upto)
        {
            let (_, mut group) = self.held_notices.pop_front().expect("a front");
            if !self.failed {
                self.shared.notify(&mut group);
            }
            released += 1;
        }
        released
    }

    fn releasable(&self) -> bool {
        let p = self.journal.progress();
        self.held_sends
            .front()
            .is_some_and(|(lsn, _)| *lsn <= p.sends_upto)
            || self
                .held_replies
                .front()
                .is_some_and(|(lsn, _)| *lsn <= p.replies_upto)
            || self
                .held_notices
                .front()
                .is_some_and(|(lsn, _)| *lsn <= p.replies_upto)
            || self
                .held_views
                .front()
                .is_some_and(|(lsn, _)| *lsn <= p.views_upto())
            || self
                .held_after_sends
                .front()
                .is_some_and(|&(lsn, _)| self.sends_out_upto(lsn))
            || ((!self.held_replies.is_empty() || !self.held_sends.is_empty())
                && self.journal.failed())
    }

    /// Gathered messages onto the rings, in order, keeping what a full ring
    /// refuses in the outbox.
    fn push_gathered(&mut self) {
        for to in 0..self.gather.len() {
            let waiting = !self.outbox[to].is_empty();
            if self.gather[to].is_empty() && !waiting {
                continue;
            }
            if !self.gather[to].is_empty() {
                // The batch is freed by the peer, so its buffer never comes
                // back; the next one starts at this one's size rather than
                // growing from nothing through a chain of reallocations.
                let size = self.gather[to].len();
                let batch = std::mem::replace(&mut self.gather[to], Vec::with_capacity(size));
                self.outbox[to].push_back(batch);
            }
            let producer = self.producers[to].as_ref().expect("a ring to every peer");
            let mut pushed = false;
            while let Some(batch) = self.outbox[to].pop_front() {
                if let Err(batch) = producer.push(batch) {
                    self.outbox[to].push_front(batch);
                    break;
                }
                pushed = true;
            }
            if pushed {
                self.wake(to);
            }
        }
    }

    /// Records to the journal, then answers to callers: an answer never
    /// leaves before the records it depends on are as durable as the
    /// journal promises.
    fn answer_all(&mut self) {
        self.log_records();
        self.stage_views();
        if !self.out.notices.is_empty() {
            let p = self.journal.progress();
            let mut notices = std::mem::take(&mut self.out.notices);
            if self.failed {
                // Not acknowledged: nobody is told of a grant the log may lose.
                notices.clear();
            } else if self.held_notices.is_empty() && p.replies_upto >= p.last {
                self.shared.notify(&mut notices);
            } else {
                match self.held_notices.back_mut() {
                    Some((lsn, group)) if *lsn == p.last => group.append(&mut notices),
                    _ => self.held_notices.push_back((p.last, notices)),
                }
            }
        }
        if self.out.replies.is_empty() {
            return;
        }
        let p = self.journal.progress();
        if self.failed || (self.held_replies.is_empty() && p.replies_upto >= p.last) {
            let mut replies = std::mem::take(&mut self.out.replies);
            self.deliver(&mut replies);
            self.out.replies = replies;
            return;
        }
        let replies = std::mem::take(&mut self.out.replies);
        match self.held_replies.back_mut() {
            Some((lsn, group)) if *lsn == p.last => group.extend(replies),
            _ => self.held_replies.push_back((p.last, replies)),
        }
    }

    /// The views this turn changed or was asked for, published now if the
    /// turn's records are as durable as replies need, else held with them.
    fn stage_views(&mut self) {
        let Some(views) = self.shared.views.clone() else {
            return;
        };
        self.shard.take_touched(&mut self.touched);
        // At once, before the messages leave: marking early only sends
        // more reads to the owners.
        views.mark_unsettled(&self.touched.remote);
        // Settlements first: within one staging, messages were taken before
        // requests, so the answers below already include them and may fill.
        let mut updates = std::mem::take(&mut self.view_updates);
        updates.clear();
        updates.extend((self.touched.settled.iter()).map(|&sku| ViewUpdate::Settled { sku }));
        // Reads that missed the cache: fill it with the state as of now,
        // which is at least what they were answered.
        self.missed.sort_unstable();
        self.missed.dedup();
        let filled = &mut self.filled;
        updates.extend(self.missed.drain(..).filter_map(|m| match m {
            Missed::Sku(sku) => {
                let view = self.shard.sku_view_of(sku)?;
                filled.skus.insert(sku);
                Some(ViewUpdate::Sku { view, fill: true })
            }
            Missed::Account(account) => {
                let view = self.shard.account_view_of(account)?;
                filled.accounts.insert(account);
                Some(ViewUpdate::Account { view, fill: true })
            }
        }));
        let t = &mut self.touched;
        // Then refreshes of what changed and may be cached (an id both
        // read and changed gets the same state twice).
        t.skus.retain(|sku| filled.skus.contains(sku));
        t.accounts
            .retain(|account| filled.accounts.contains(account));
        t.skus.sort_unstable();
        t.skus.dedup();
        t.accounts.sort_unstable();
        t.accounts.dedup();
        updates.extend(t.skus.iter().filter_map(|&sku| {
            let view = self.shard.sku_view_of(sku)?;
            Some(ViewUpdate::Sku { view, fill: false })
        }));
        updates.extend(t.accounts.iter().filter_map(|&account| {
            let view = self.shard.account_view_of(account)?;
            Some(ViewUpdate::Account { view, fill: false })
        }));

        if updates.is_empty() || self.failed {
            self.view_updates = updates;
            return;
        }
        let p = self.journal.progress();
        if self.held_views.is_empty() && p.views_upto() >= p.last {
            views.publish(&updates);
            // Kept for the next turn: no allocation per turn in memory.
            self.view_updates = updates;
            // Every fill is published, so what the caches lack is gone.
            self.filled.prune(&views);
            return;
        }
        match self.held_views.back_mut() {
            Some((lsn, group)) if *lsn == p.last => group.extend(updates),
            _ => self.held_views.push_back((p.last, updates)),
        }
    }

    /// Hand replies to their callers, grouped by request so a collector is
    /// locked once per group. After a log failure every answer is
    /// `Unavailable`: nothing more is acknowledged.
    /// Tells the change feed how far this shard's log is committed: before
    /// any answer leaves, so that a caller who heard one and then follows
    /// the feed from `Now` starts after it.
    fn publish_committed(&self) {
        // Under `interval` and `never` replies need nothing (`replies_upto`
        // is unbounded); the feed reads the log's files, so it may tell
        // only what reached them: `sends_upto`, the written (or synced) LSN.
        let p = self.journal.progress();
        let committed = p.replies_upto.min(p.sends_upto);
        let slot = &self.shared.shards[self.shard.id() as usize];
        if slot.committed_lsn.load(Ordering::Relaxed) < committed {
            slot.committed_lsn.store(committed, Ordering::Release);
        }
        // The tables' sizes for `Info`, once per batch of answers. (Not
        // only when `committed` moves: in memory it is unbounded from the
        // start and never does.)
        let st = &self.shard.state;
        let rows = [st.skus.len(), st.accounts.len(), st.orders.len()];
        for (slot, n) in slot.rows.iter().zip(rows) {
            slot.store(n as u64, Ordering::Relaxed);
        }
        let outbox = self.outbox.iter().map(VecDeque::len).sum();
        (slot.metrics).depths(outbox, self.held_replies.len(), st.table_bytes());
    }

    fn deliver(&mut self, replies: &mut Vec<(Token, Outcome)>) {
        self.publish_committed();
        let mut group = std::mem::take(&mut self.group);
        let mut current = None;
        let shard = self.shard.id();
        for (token, outcome) in replies.drain(..) {
            let idx = (token >> 32) as u32;
            if current != Some(idx) {
                if let Some(prev) = current.replace(idx) {
                    self.answer(prev, &mut group);
                }
            }
            let answer = if self.failed {
                Err(EngineError::Unavailable { shard })
            } else {
                Ok(outcome)
            };
            group.push((token as u32 as usize, answer));
        }
        if let Some(prev) = current {
            self.answer(prev, &mut group);
        }
        self.group = group;
    }

    fn wake(&self, to: usize) {
        let slot = &self.shared.shards[to];
        if slot.doorbell.needs_ring() {
            let _ = slot.waker.wake();
        }
    }

    fn has_input(&self, id: usize) -> bool {
        !self.shared.shards[id].inbound.is_empty()
            || self.consumers.iter().flatten().any(|c| !c.is_empty())
            || self.releasable()
            || self.net.as_ref().is_some_and(Net::any_done)
            || !self.shared.shards[id].accepted.is_empty()
            || (self.net.is_some()
                && !(self.shared.shards[id].notices.lock())
                    .expect("notices lock")
                    .is_empty())
    }

    fn sleep(&mut self, id: usize, now: u64) {
        let slot = &self.shared.shards[id];
        slot.doorbell.going_to_sleep();
        if !self.has_input(id) && !self.shared.gate.is_closed() {
            let next = match (self.shard.next_expiry(), self.shard.next_lock_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut until_expiry = next.map_or(IDLE_SLEEP_MS_MAX, |at| at.saturating_sub(now));
            // A feed is read from the logs, whose growth on other shards
            // does not wake this one: look again soon.
            if self.net.as_ref().is_some_and(Net::has_feeds) {
                until_expiry = until_expiry.min(FEED_IDLE_SLEEP_MS);
            }
            let timeout = Duration::from_millis(until_expiry.clamp(1, IDLE_SLEEP_MS_MAX));
            // An error here is EINTR or a spurious wake-up; the loop looks again either way.
            let _ = self.poll.poll(&mut self.events, Some(timeout));
            // The sockets' readiness came with this poll; it will not come again.
            self.net_turn(None);
        }
        self.shared.shards[id].doorbell.awake();
    }

    /// Exit once no shard can send this one anything more: all stopped taking
    /// work, nothing is held or pending here, and the mailboxes are empty.
    fn may_exit(&mut self) -> bool {
        if !self.outbox_empty()
            || !self.held_replies.is_empty()
            || !self.held_notices.is_empty()
            || !self.held_sends.is_empty()
            || !self.held_after_sends.is_empty()
        {
            return false;
        }
        if !self.announced_stop {
            self.announced_stop = true;
            self.shared.stopped.fetch_add(1, Ordering::SeqCst);
            for to in 0..self.shared.shards.len() {
                let _ = self.shared.shards[to].waker.wake();
            }
        }
        // Holds for a shard whose log failed may never be decided; recovery
        // settles them when the engine next opens.
        let undecidable = self.shared.failed_logs.load(Ordering::SeqCst) > 0;
        self.shared.stopped.load(Ordering::SeqCst) == self.shared.shards.len()
            && (self.shard.in_flight() == 0 || undecidable)
            && self.consumers.iter().flatten().all(|c| c.is_empty())
    }

    fn answer_leftovers(&mut self, id: usize) {
        while !self.shared.gate.is_drained() {
            std::thread::yield_now();
        }
        while let Some(req) = self.shared.shards[id].inbound.pop() {
            match req {
                Request::Commands {
                    collector, cmds, ..
                } => {
                    collector.fill(
                        cmds.into_iter()
                            .map(|(slot, _)| (slot as usize, Err(EngineError::Shutdown))),
                    );
                }
                Request::Audit { collector, slot } => {
                    collector.fill([(slot, self.shard.audit_part())])
                }
                Request::EndSession { .. } => {}
            }
        }
    }
}

fn out_lens(out: &Output) -> (usize, usize) {
    (out.sends.len(), out.replies.len())
}

/// Set aside the replies of one command or message that sent messages.
fn keep_after_sends(
    out: &mut Output,
    after_sends: &mut Vec<(Token, Outcome)>,
    (sends, replies): (usize, usize),
) {
    if out.sends.len() > sends && out.replies.len() > replies {
        after_sends.extend(out.replies.drain(replies..));
    }
}
