//! The network side of a shard thread: its listener, its client connections
//! and the batches they have in flight. The shard's own `mio::Poll` watches
//! the sockets, so one thread serves both the shard and its clients.
//!
//! A batch from a client is split by owner shard and queued on each owner's
//! inbound queue, this shard's included, with a collector whose last answer
//! rings this shard's doorbell. The answers go back through the connection's
//! [`Conn`], which releases them in the client's request order. A shard's
//! own port serves shard-aware clients; the main port, watched by shard 0,
//! hands each new connection to the shard with the least load.

use std::io::Write;
use std::sync::Arc;

use mercato_protocol as wire;

use super::collector::Collector;
use super::engine::Shared;
use super::route::Split;
use super::worker::Request;
use crate::command::{Command, LockCommand, Outcome, Reply};
use crate::error::EngineError;
use crate::server::conn::{Conn, ConnLimits, Deadline, Event};
use crate::server::convert;
use crate::server::tls::{Stream, TlsConfig};
use crate::sync::{AtomicUsize, Ordering};

pub(crate) const LISTENER: mio::Token = mio::Token(1);
pub(crate) const MAIN_LISTENER: mio::Token = mio::Token(2);
const CONN_BASE: usize = 3;
/// Bytes read from a socket per `read` call.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// How often a shard looks for connections past their handshake or idle
/// deadline: timeouts are seconds long, so a tenth of one is precise enough.
const TIMEOUT_SWEEP_MS: u64 = 100;

/// Who may connect, and how: read as each connection is accepted, so a
/// reload (`Engine::set_access`) reaches new connections only; those open
/// keep the role and the TLS session they started with.
#[derive(Debug)]
pub(crate) struct Access {
    pub tokens: Arc<crate::access::Tokens>,
    pub tls: Option<TlsConfig>,
}

/// The one `Access` every shard reads and the engine replaces.
pub(crate) type SharedAccess = Arc<std::sync::RwLock<Access>>;

/// How a shard serves clients.
#[derive(Clone, Debug)]
pub(crate) struct NetConfig {
    /// Shared by every shard's network side and the engine.
    pub access: SharedAccess,
    pub limits: ConnLimits,
    /// Connections one shard keeps; past it a new one is told
    /// `TooManyConnections` and closed.
    pub conns_max: usize,
    pub welcome: wire::Welcome,
}

struct Client {
    stream: Stream,
    conn: Conn,
    /// Answer bytes wait for the socket; counted in the shard's
    /// `net_unflushed` so a drain waits for them to leave.
    unflushed: bool,
    /// Told apart from an earlier client in the same slot.
    generation: u64,
    /// Batches with a write in them, sent and not yet answered: while any
    /// is, this client's reads go to their owners, behind those writes.
    writes_in_flight: usize,
    /// The connection's session: what its lock waits and bound leases
    /// end with, and where their notices come.
    session: u64,
    /// It sent a lock request, so its end must be told to the shards.
    locked: bool,
    /// The change feed it follows, if it subscribed.
    feed: Option<ConnFeed>,
}

/// A connection's change feed and what it lets through.
struct ConnFeed {
    feed: crate::runtime::Feed,
    filter: wire::FeedFilter,
    /// The feed moved past events the filter dropped since the last batch
    /// sent: the subscriber has not heard of those positions yet.
    moved_unsent: bool,
    /// When the last batch was sent (the connections' clock).
    sent_ms: u64,
}

impl ConnFeed {
    /// Positions the subscriber has not heard of are owed it by now.
    fn positions_due(&self, now_ms: u64) -> bool {
        self.moved_unsent && now_ms >= self.sent_ms + FEED_POSITIONS_EVERY_MS
    }
}

/// How often a filtered feed whose events were all filtered out still
/// sends its positions (an empty batch): a subscriber that acknowledges
/// them lets the log go, rather than hold it until it is lost.
const FEED_POSITIONS_EVERY_MS: u64 = 100;

/// Output a connection may have waiting before its feed is not read on:
/// a reader that slows down stops the feed, and the log holds its events.
const FEED_PAUSE_BYTES: usize = 1 << 20;
/// Events one connection's feed takes per turn at most, so one frame stays
/// small and other connections get their turn.
const FEED_EVENTS_PER_TURN_MAX: usize = 1_024;

struct InFlight {
    slot: usize,
    generation: u64,
    /// The connection's own number for the batch.
    seq: u64,
    collector: Arc<Collector<Result<Outcome, EngineError>>>,
    /// The batch holds a write.
    writes: bool,
    /// When it was read, for the reply latency.
    read_at: std::time::Instant,
}

pub(crate) struct Net {
    shard: usize,
    config: NetConfig,
    listener: mio::net::TcpListener,
    main: Option<mio::net::TcpListener>,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    generation: u64,
    batches: Vec<InFlight>,
    /// Batches completed since `finish` last looked, counted by each
    /// collector's last filler.
    finished: Arc<AtomicUsize>,
    buf: Vec<u8>,
    /// The clock connections' deadlines run on.
    started: std::time::Instant,
    swept_ms: u64,
    /// Each open connection's slot, by session.
    sessions: crate::hash::IdMap<u64, usize>,
    /// Ends of sessions a full inbound queue did not take yet: (session,
    /// shard), tried again each turn. At most one per closed connection
    /// and shard.
    ending: Vec<(u64, usize)>,
}

impl Net {
    pub(crate) fn new(
        shard: usize,
        config: NetConfig,
        listener: mio::net::TcpListener,
        main: Option<mio::net::TcpListener>,
    ) -> Net {
        Net {
            shard,
            config,
            listener,
            main,
            clients: Vec::new(),
            free: Vec::new(),
            generation: 0,
            batches: Vec::new(),
            finished: Arc::new(AtomicUsize::new(0)),
            buf: vec![0; READ_CHUNK_BYTES],
            started: std::time::Instant::now(),
            swept_ms: 0,
            sessions: crate::hash::IdMap::default(),
            ending: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn register(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        registry.register(&mut self.listener, LISTENER, mio::Interest::READABLE)?;
        if let Some(m) = &mut self.main {
            registry.register(m, MAIN_LISTENER, mio::Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether a batch has all its answers and waits to be sent.
    pub(crate) fn any_done(&self) -> bool {
        self.finished.load(Ordering::SeqCst) > 0
    }

    /// Handle socket events, connections handed over by the main port, and
    /// finished batches. Returns a count of things done.
    pub(crate) fn turn(
        &mut self,
        events: &mio::Events,
        registry: &mio::Registry,
        shared: &Arc<Shared>,
    ) -> usize {
        let mut work = 0;
        let draining = shared.draining.load(Ordering::Relaxed);
        for e in events.iter() {
            work += 1;
            match e.token() {
                // Stopping: no new connection is taken; those open are
                // still read, so that what they send is told `Shutdown`.
                LISTENER if !draining => self.accept_own(registry, shared),
                MAIN_LISTENER if !draining => self.accept_main(registry, shared),
                mio::Token(t) if t >= CONN_BASE => self.on_socket(t - CONN_BASE, shared),
                _ => {}
            }
        }
        while let Some(stream) = (!draining)
            .then(|| shared.shards[self.shard].accepted.pop())
            .flatten()
        {
            self.adopt(mio::net::TcpStream::from_std(stream), registry, shared);
            work += 1;
        }
        work += self.finish(shared);
        work += self.notices(shared);
        work += self.push_feeds(shared);
        if !self.ending.is_empty() {
            self.end_sessions(shared);
        }
        let now_ms = self.now_ms();
        if now_ms >= self.swept_ms + TIMEOUT_SWEEP_MS {
            self.swept_ms = now_ms;
            work += self.sweep(now_ms, shared);
        }
        work
    }

    /// Close connections past their handshake or idle deadline.
    fn sweep(&mut self, now_ms: u64, shared: &Arc<Shared>) -> usize {
        let mut closed = 0;
        for slot in 0..self.clients.len() {
            let Some(c) = self.clients[slot].as_mut() else {
                continue;
            };
            if c.conn.closing() {
                continue;
            }
            match c.conn.check_timeouts(now_ms) {
                Deadline::Met => {}
                Deadline::Closing => {
                    closed += 1;
                    self.flush(slot, shared);
                }
                Deadline::Abandon => {
                    closed += 1;
                    self.close(slot, shared);
                }
            }
        }
        closed
    }

    fn accept_own(&mut self, registry: &mio::Registry, shared: &Arc<Shared>) {
        while let Ok((stream, _)) = self.listener.accept() {
            self.adopt(stream, registry, shared);
        }
    }

    /// The main port: each new connection goes to the least loaded shard.
    fn accept_main(&mut self, registry: &mio::Registry, shared: &Arc<Shared>) {
        let Some(main) = &self.main else { return };
        let mut accepted = Vec::new();
        while let Ok((stream, _)) = main.accept() {
            accepted.push(stream);
        }
        for stream in accepted {
            let target = (0..shared.shards.len())
                .min_by_key(|&i| shared.shards[i].load())
                .unwrap_or(self.shard);
            if target == self.shard {
                self.adopt(stream, registry, shared);
                continue;
            }
            let slot = &shared.shards[target];
            // A full hand-over queue closes the connection: the client retries.
            if slot
                .accepted
                .push(std::net::TcpStream::from(stream))
                .is_ok()
                && slot.doorbell.needs_ring()
            {
                let _ = slot.waker.wake();
            }
        }
    }

    fn adopt(
        &mut self,
        mut stream: mio::net::TcpStream,
        registry: &mio::Registry,
        shared: &Arc<Shared>,
    ) {
        let live = self.clients.len() - self.free.len();
        if live >= self.config.conns_max {
            shared.shards[self.shard].metrics.conn_refused();
            refuse(&mut stream, self.config.conns_max);
            return; // dropped: closed
        }
        let _ = stream.set_nodelay(true);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        if registry
            .register(&mut stream, mio::Token(CONN_BASE + slot), interest)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        let (tokens, tls) = {
            let access = self.config.access.read().unwrap_or_else(|e| e.into_inner());
            (access.tokens.clone(), access.tls.clone())
        };
        let Ok(stream) = Stream::new(stream, tls.as_ref()) else {
            self.free.push(slot);
            return;
        };
        self.generation += 1;
        let session = shared.new_session(Some(self.shard));
        self.sessions.insert(session, slot);
        let mut welcome = self.config.welcome.clone();
        welcome.shard = self.shard as u16;
        self.clients[slot] = Some(Client {
            stream,
            conn: Conn::new(self.config.limits, tokens, welcome, self.now_ms()),
            unflushed: false,
            generation: self.generation,
            writes_in_flight: 0,
            session,
            locked: false,
            feed: None,
        });
        shared.shards[self.shard]
            .conns
            .fetch_add(1, Ordering::Relaxed);
        shared.shards[self.shard].metrics.conn_opened();
    }

    fn on_socket(&mut self, slot: usize, shared: &Arc<Shared>) {
        // Writing answers out may make room for a batch that waited; then
        // its turn comes at once, since its socket will not say so again.
        loop {
            self.serve_socket(slot, shared);
            let again = self.clients[slot]
                .as_ref()
                .is_some_and(|c| c.conn.parked_fits());
            if !again {
                break;
            }
        }
    }

    fn serve_socket(&mut self, slot: usize, shared: &Arc<Shared>) {
        let now_ms = self.now_ms();
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        // A batch that waited for room goes first.
        let mut events = client.conn.receive(&[], now_ms);
        let mut eof = false;
        // Not read while a batch waits for room: the client's bytes stay
        // in its socket, and TCP slows it down.
        while client.conn.wants_input() {
            match client.stream.read(&mut self.buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    shared.shards[self.shard].metrics.read(n);
                    events.extend(client.conn.receive(&self.buf[..n], now_ms));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let generation = client.generation;
        let read_at = std::time::Instant::now();
        let metrics = &shared.shards[self.shard].metrics;
        for Event::Batch { seq, requests } in events {
            for r in &requests {
                metrics.request(r);
            }
            if shared.draining.load(Ordering::Relaxed) {
                // Read, so answered: nothing ran, the client may resend
                // elsewhere or later.
                let n = requests.len();
                metrics.replied(0, n as u64);
                for _ in 0..n {
                    metrics.answer(&wire::Answer::Failed {
                        code: wire::ErrorCode::Shutdown as u16,
                    });
                }
                let answers = wire::Answers {
                    load: 0,
                    answers: (0..n)
                        .map(|_| wire::Answer::Failed {
                            code: wire::ErrorCode::Shutdown as u16,
                        })
                        .collect(),
                };
                if let Some(c) = self.clients[slot].as_mut() {
                    c.conn.answer(seq, answers, now_ms);
                }
                continue;
            }
            let Some(c) = self.clients[slot].as_mut() else {
                continue;
            };
            let writes_before = c.writes_in_flight > 0;
            let session = c.session;
            let role = c.conn.role();
            c.locked |= requests.iter().any(|r| {
                matches!(
                    r,
                    wire::Request::LockAcquire { .. } | wire::Request::LockCancel { .. }
                )
            });
            if c.locked {
                c.conn.hold_session();
            }
            let mut feed = c.feed.take();
            let subscribing = requests
                .iter()
                .any(|r| matches!(r, wire::Request::Subscribe { .. }));
            let (collector, writes) =
                self.dispatch(requests, writes_before, session, role, &mut feed, shared);
            if let Some(c) = self.clients[slot].as_mut() {
                if subscribing && feed.is_some() {
                    c.conn.hold_session();
                }
                c.feed = feed;
            }
            if writes {
                if let Some(c) = self.clients[slot].as_mut() {
                    c.writes_in_flight += 1;
                }
            }
            shared.shards[self.shard]
                .net_batches
                .fetch_add(1, Ordering::SeqCst);
            self.batches.push(InFlight {
                slot,
                generation,
                seq,
                collector,
                writes,
                read_at,
            });
        }
        if eof {
            self.close(slot, shared);
        } else {
            self.flush(slot, shared);
        }
    }

    /// Queue a client's batch on its owners' inbound queues; answer what
    /// the shared caches can. Returns the collector and whether the batch
    /// holds a write.
    fn dispatch(
        &self,
        requests: Vec<wire::Request>,
        writes_before: bool,
        session: u64,
        role: crate::access::Role,
        feed: &mut Option<ConnFeed>,
        shared: &Arc<Shared>,
    ) -> (Arc<Collector<Result<Outcome, EngineError>>>, bool) {
        let n = shared.shards.len();
        let me = self.shard;
        if requests.is_empty() {
            // Nothing will fill it, so nothing will count it finished.
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
        let ring = {
            let shared = shared.clone();
            let finished = self.finished.clone();
            Box::new(move || {
                finished.fetch_add(1, Ordering::SeqCst);
                let slot = &shared.shards[me];
                if slot.doorbell.needs_ring() {
                    let _ = slot.waker.wake();
                }
            })
        };
        let collector = Arc::new(Collector::with_on_done(requests.len(), ring));
        let mut split = Split::new(n, Some(me), writes_before);
        for (i, r) in requests.into_iter().enumerate() {
            // Refused before it goes anywhere, so nothing changes.
            let needs = crate::access::needs(&r);
            if needs > role {
                let forbidden = crate::error::Reject::Forbidden { role, needs };
                collector.fill([(i, Ok(Err(forbidden)))]);
                continue;
            }
            match convert::route(r) {
                convert::Routed::Command(mut cmd) => {
                    if let Command::Lock(LockCommand::Acquire { session: s, .. }) = &mut cmd {
                        *s = Some(session);
                    }
                    if let Some(reply) = split.add(shared.views.as_deref(), i as u32, cmd) {
                        collector.fill([(i, Ok(Ok(reply)))]);
                    }
                }
                // The keyspace is shared: this thread answers at once.
                convert::Routed::Keyspace(r) => {
                    collector.fill([(i, Ok(convert::keyspace(r, &shared.keyspace)))]);
                }
                convert::Routed::Info => {
                    collector.fill([(i, Ok(Ok(Reply::Info(Box::new(shared.info())))))]);
                }
                convert::Routed::Feed(r) => {
                    collector.fill([(i, Ok(feed_request(r, feed, shared)))]);
                }
            }
        }
        for (owner, part) in split.parts.into_iter().enumerate() {
            if part.cmds.is_empty() {
                continue;
            }
            let slot = &shared.shards[owner];
            let req = Request::Commands {
                collector: collector.clone(),
                cmds: part.cmds,
                missed: part.missed,
            };
            match slot.inbound.push(req) {
                Ok(()) => {
                    if owner != me && slot.doorbell.needs_ring() {
                        let _ = slot.waker.wake();
                    }
                }
                Err(Request::Commands { cmds, .. }) => {
                    let depth_max = slot.inbound.capacity();
                    let busy = EngineError::Busy {
                        shard: owner as u16,
                        depth_max,
                    };
                    collector.fill(cmds.into_iter().map(|(i, _)| (i as usize, Err(busy))));
                }
                Err(_) => unreachable!("only commands are queued here"),
            }
        }
        (collector, split.writes)
    }

    /// Send the answers of every finished batch to its connection.
    fn finish(&mut self, shared: &Arc<Shared>) -> usize {
        // Look at the collectors only when one said it is complete, rather
        // than lock every one of them on every turn.
        if self.finished.swap(0, Ordering::SeqCst) == 0 {
            return 0;
        }
        let mut done = 0;
        let mut i = 0;
        let load = shared.shards[self.shard].load() as u32;
        let now_ms = self.now_ms();
        let now = std::time::Instant::now();
        let metrics = &shared.shards[self.shard].metrics;
        let mut touched = Vec::new();
        while i < self.batches.len() {
            let Some(answers) = self.batches[i].collector.try_take() else {
                i += 1;
                continue;
            };
            let b = self.batches.swap_remove(i);
            done += 1;
            if let Some(Some(c)) = self.clients.get_mut(b.slot) {
                if c.generation == b.generation {
                    c.writes_in_flight -= usize::from(b.writes);
                    let answers = wire::Answers {
                        load,
                        answers: answers.into_iter().map(convert::answer).collect(),
                    };
                    for a in &answers.answers {
                        metrics.answer(a);
                    }
                    let waited = now.saturating_duration_since(b.read_at).as_micros();
                    let us = u64::try_from(waited).unwrap_or(u64::MAX);
                    metrics.replied(us, answers.answers.len() as u64);
                    c.conn.answer(b.seq, answers, now_ms);
                    touched.push(b.slot);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.flush(slot, shared);
            // A batch that waited for room may have it now; its socket
            // will not say so again, since it was left unread.
            if self.clients[slot]
                .as_ref()
                .is_some_and(|c| c.conn.parked_fits())
            {
                self.on_socket(slot, shared);
            }
        }
        // Counted as finished only once handed to its connection, so a
        // drain waits for the answers to be written.
        shared.shards[self.shard]
            .net_batches
            .fetch_sub(done, Ordering::SeqCst);
        done
    }

    /// Write what a connection has for its client; close it if it is done,
    /// or if its client reads so slowly that its answers pass the bound.
    fn flush(&mut self, slot: usize, shared: &Arc<Shared>) {
        let Some(Some(client)) = self.clients.get_mut(slot) else {
            return;
        };
        let mut wrote = false;
        if client.stream.pending() && client.stream.flush_pending().is_err() {
            self.close(slot, shared);
            return;
        }
        let out = client.conn.output();
        while !out.is_empty() {
            match client.stream.write(out) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = out.split_to(n);
                    wrote = true;
                    shared.shards[self.shard].metrics.wrote(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // A stalled reader is timed from when its output last moved.
        if wrote {
            let now_ms = self.started.elapsed().as_millis() as u64;
            client.conn.wrote(now_ms);
        }
        let unflushed = !client.conn.output().is_empty() || client.stream.pending();
        if unflushed != client.unflushed {
            client.unflushed = unflushed;
            let counter = &shared.shards[self.shard].net_unflushed;
            if unflushed {
                counter.fetch_add(1, Ordering::SeqCst);
            } else {
                counter.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let finished = client.conn.closing() && !unflushed;
        if finished || client.conn.over_output_limit() {
            self.close(slot, shared);
        }
    }

    /// Hands the notices other shards left for this shard's connections to
    /// them.
    fn notices(&mut self, shared: &Arc<Shared>) -> usize {
        let notices = {
            let mut q = shared.shards[self.shard]
                .notices
                .lock()
                .expect("notices lock");
            if q.is_empty() {
                return 0;
            }
            std::mem::take(&mut *q)
        };
        let n = notices.len();
        let mut touched = Vec::new();
        for (session, notice) in notices {
            let Some(&slot) = self.sessions.get(&session) else {
                continue; // closed meanwhile: its session's end cleans up
            };
            if let Some(c) = self.clients[slot].as_mut() {
                c.conn.notice(&convert::notice(notice));
                touched.push(slot);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for slot in touched {
            self.flush(slot, shared);
        }
        n
    }

    /// Whether a connection follows a feed: then the loop must not sleep
    /// long, since other shards' commits do not wake it.
    pub(crate) fn has_feeds(&self) -> bool {
        self.clients.iter().flatten().any(|c| c.feed.is_some())
    }

    /// Sends each following connection what its feed has, unless its
    /// output already waits.
    fn push_feeds(&mut self, shared: &Arc<Shared>) -> usize {
        let now_ms = self.now_ms();
        let mut touched = Vec::new();
        for slot in 0..self.clients.len() {
            let Some(c) = self.clients[slot].as_mut() else {
                continue;
            };
            let Some(cf) = c.feed.as_mut() else {
                continue;
            };
            if c.conn.closing() || c.conn.output().len() > FEED_PAUSE_BYTES {
                continue;
            }
            // An empty copy ends before the stream: in a batch of its own.
            // With each batch, whether it is owed for its positions alone.
            let (batch, positions_due) = if cf.feed.copy_ended() {
                let batch = wire::FeedBatch {
                    items: Vec::new(),
                    next: cf.feed.next_positions(),
                    error: None,
                    copy_done: true,
                };
                (batch, false)
            } else {
                match cf
                    .feed
                    .poll(FEED_EVENTS_PER_TURN_MAX, std::time::Duration::ZERO)
                {
                    Ok(got) => {
                        let copy_done = cf.feed.copy_ended();
                        cf.moved_unsent |= !got.is_empty();
                        let due = cf.positions_due(now_ms);
                        if got.is_empty() && !copy_done && !due {
                            continue;
                        }
                        let batch = wire::FeedBatch {
                            items: (got.into_iter())
                                .filter(|(_, e)| convert::feed::passes(&cf.filter, e))
                                .map(|(p, e)| wire::FeedItem {
                                    shard: p.shard,
                                    lsn: p.lsn,
                                    event: convert::feed::event(e),
                                })
                                .collect(),
                            next: cf.feed.next_positions(),
                            error: None,
                            copy_done,
                        };
                        (batch, due)
                    }
                    Err(e) => {
                        let batch = wire::FeedBatch {
                            items: Vec::new(),
                            next: cf.feed.next_positions(),
                            error: Some(e.to_string()),
                            copy_done: false,
                        };
                        c.feed = None;
                        (batch, false)
                    }
                }
            };
            if batch.items.is_empty() && batch.error.is_none() && !batch.copy_done && !positions_due
            {
                continue;
            }
            if let Some(cf) = c.feed.as_mut() {
                cf.moved_unsent = false;
                cf.sent_ms = now_ms;
            }
            c.conn.push_feed(&batch);
            touched.push(slot);
        }
        let n = touched.len();
        for slot in touched {
            self.flush(slot, shared);
        }
        n
    }

    /// Tells every shard that sessions ended, as far as their queues take.
    fn end_sessions(&mut self, shared: &Arc<Shared>) {
        self.ending.retain(|&(session, shard)| {
            let slot = &shared.shards[shard];
            let queued = slot.inbound.push(Request::EndSession { session }).is_ok();
            if queued && shard != self.shard && slot.doorbell.needs_ring() {
                let _ = slot.waker.wake();
            }
            !queued
        });
    }

    fn close(&mut self, slot: usize, shared: &Arc<Shared>) {
        if let Some(c) = self.clients.get_mut(slot).and_then(Option::take) {
            self.sessions.remove(&c.session);
            if c.locked {
                let n = shared.shards.len();
                self.ending.extend((0..n).map(|shard| (c.session, shard)));
                self.end_sessions(shared);
            }
            if c.unflushed {
                shared.shards[self.shard]
                    .net_unflushed
                    .fetch_sub(1, Ordering::SeqCst);
            }
            drop(c);
            self.free.push(slot);
            shared.shards[self.shard]
                .conns
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Tell a client over the connection limit why it is closed. The socket is
/// new and its buffer empty, so one small frame goes out at once or not at
/// all; the server never waits for it.
fn refuse(stream: &mut mio::net::TcpStream, conns_max: usize) {
    crate::server::drain_unread(stream);
    let body = wire::ErrorBody {
        code: wire::ErrorCode::TooManyConnections as u16,
        message: format!("this shard serves {conns_max} connections already (conns_max)"),
    };
    let mut out = bytes::BytesMut::new();
    wire::encode_frame(&mut out, wire::Kind::Error, 0, &wire::Body::to_body(&body));
    let _ = stream.write(&out);
}

/// A change-feed request, answered by the connection's own shard.
fn feed_request(r: wire::Request, slot: &mut Option<ConnFeed>, shared: &Arc<Shared>) -> Outcome {
    use crate::error::{FeedReject, Reject};
    let refuse = |e: &crate::runtime::FeedError| Reject::Feed(convert::feed::refusal(e));
    let h = super::handle::Handle::new(shared.clone());
    match r {
        wire::Request::Subscribe {
            name,
            start,
            filter,
        } => {
            if slot.is_some() {
                return Err(Reject::Feed(FeedReject::AlreadySubscribed));
            }
            let max = wire::FEED_FILTER_IDS_MAX;
            if filter.skus.len() > max || filter.accounts.len() > max {
                return Err(Reject::Feed(FeedReject::FilterTooLong { max: max as u32 }));
            }
            let start = convert::feed::start(start);
            let feed = match name {
                Some(n) => h.subscribe(&n, start),
                None => h.feed(start),
            }
            .map_err(|e| refuse(&e))?;
            let positions = feed.next_positions();
            *slot = Some(ConnFeed {
                feed,
                filter,
                moved_unsent: false,
                sent_ms: 0,
            });
            Ok(Reply::Subscribed { positions })
        }
        wire::Request::FeedAck { positions } => {
            let cf = slot
                .as_mut()
                .ok_or(Reject::Feed(FeedReject::NotSubscribed))?;
            cf.feed.ack(&positions).map_err(|e| refuse(&e))?;
            Ok(Reply::Done)
        }
        wire::Request::Unsubscribe => {
            slot.take().ok_or(Reject::Feed(FeedReject::NotSubscribed))?;
            Ok(Reply::Done)
        }
        wire::Request::SubscriptionList => h
            .subscriptions()
            .map(Reply::Subscriptions)
            .map_err(|e| refuse(&e)),
        wire::Request::SubscriptionDrop { name } => h
            .drop_subscription(&name)
            .map(Reply::Deleted)
            .map_err(|e| refuse(&e)),
        other => unreachable!("route() sends only feed requests here, not {other:?}"),
    }
}
