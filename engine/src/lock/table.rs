//! A shard's locks and semaphores: the durable part (each name's last
//! token and holders) and the volatile part (each name's waiters, who is
//! told what, and the fence checks in flight).
//!
//! A lock is a semaphore of one permit; both are called locks here.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use crate::hash::{IdMap, IdSet};
use crate::types::TimestampMs;

/// Longest lock name, in bytes.
pub const LOCK_NAME_BYTES_MAX: usize = 256;
/// Longest lease, and longest wait.
pub const LEASE_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Requests that may wait for one lock at once.
pub const LOCK_WAITERS_MAX: usize = 1_024;
/// Most permits of one semaphore.
pub const PERMITS_MAX: u32 = 1_024;

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Chosen by the caller, shown by `inspect`.
    pub id: u64,
    /// The session (connection) the request came from: its wait ends with
    /// it, and it is told when a lease it took is lost.
    pub conn: Option<u64>,
    /// Whether the lease ends when `conn` ends (ZooKeeper's ephemeral
    /// nodes); otherwise it lasts its time whatever the connection does.
    pub bind: bool,
}

/// One acquire: who, how many permits the name has, for how long, how
/// long it may wait, and the ticket its later answer comes under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquire {
    pub owner: Owner,
    pub permits: u32,
    pub ttl_ms: u64,
    pub wait: Wait,
    pub ticket: u64,
}

/// What `inspect` shows of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub permits: u32,
    /// Each holder: (token, owner, when its lease ends).
    pub holders: Vec<(u64, u64, TimestampMs)>,
    pub last_token: u64,
    pub waiters: usize,
    /// The engine's time when it looked, so each lease's remaining time
    /// is its end less this.
    pub now: TimestampMs,
}

/// How long an acquire may wait for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Answer at once.
    Try,
    /// Until this time on the engine's clock.
    Until(TimestampMs),
    /// Until granted, cancelled, or the caller's session ends.
    Forever,
}

/// A lock request refused. Nothing changed.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq, Hash)]
pub enum LockError {
    #[error("lock names are 1 to {LOCK_NAME_BYTES_MAX} bytes, this one is {len}")]
    InvalidName { len: usize },
    #[error("a lease or wait is 1 to {LEASE_MS_MAX} ms, not {ttl_ms}")]
    InvalidTtl { ttl_ms: u64 },
    #[error("a semaphore has 1 to {PERMITS_MAX} permits, not {permits}")]
    InvalidPermits { permits: u32 },
    #[error("this name has {permits} permits, not the number asked with")]
    PermitsMismatch { permits: u32 },
    #[error("the lock is held (last token {token})")]
    Busy { token: u64 },
    #[error("{LOCK_WAITERS_MAX} requests already wait for this lock")]
    TooManyWaiters,
    #[error("the wait ran out before the lock was free")]
    Timeout,
    /// The token does not hold the lock (or may not fence any more).
    #[error("token {token} is stale; the last granted is {last}")]
    Stale { token: u64, last: u64 },
    #[error("no lease holds the lock under this token")]
    NotHeld,
    #[error("no such lock")]
    Unknown,
    #[error("no such waiting request")]
    UnknownTicket,
    #[error("only a write to the shop's state can carry a fence")]
    NotFenceable,
    #[error("a waiting or session-bound acquire needs a session to be told in")]
    NoSession,
}

/// The durable changes; nothing else changes a lock's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockRecord {
    Granted {
        name: Box<[u8]>,
        permits: u32,
        token: u64,
        owner: u64,
        /// The session the lease ends with, if bound to one.
        session: Option<u64>,
        ttl_ms: u64,
        expires_at: TimestampMs,
    },
    Renewed {
        name: Box<[u8]>,
        token: u64,
        ttl_ms: u64,
        expires_at: TimestampMs,
    },
    /// Released, expired, or ended with its session.
    Ended { name: Box<[u8]>, token: u64 },
    /// A snapshot's line for a lock: its permits and last token; its
    /// holders follow as `Granted`.
    Known {
        name: Box<[u8]>,
        permits: u32,
        last_token: u64,
    },
}

/// Why a holder lost its lease without releasing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostBy {
    Expired,
    SessionEnded,
}

/// What a session is told without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A waiting acquire got the lock.
    Granted {
        ticket: u64,
        name: Box<[u8]>,
        token: u64,
        expires_at: TimestampMs,
    },
    /// A waiting acquire's wait ran out (or was cancelled).
    WaitEnded { ticket: u64, name: Box<[u8]> },
    /// A lease its holder did not release ended.
    Lost {
        name: Box<[u8]>,
        token: u64,
        by: LostBy,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    token: u64,
    owner: u64,
    session: Option<u64>,
    ttl_ms: u64,
    expires_at: TimestampMs,
    /// Volatile: the session told if the lease is lost.
    notify: Option<u64>,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    owner: Owner,
    ttl_ms: u64,
    wait: Wait,
}

#[derive(Debug)]
struct Lock {
    /// Numbers the lock in `deadlines` and `sessions`.
    id: u64,
    permits: u32,
    last_token: u64,
    holders: Vec<Lease>,
    waiters: VecDeque<Waiter>,
    /// Fence checks for writes elsewhere that passed and have not been
    /// decided: no new grant until they are, so that no newer token is
    /// granted between a fenced write's check and its commit.
    fence_holds: u32,
}

impl Lock {
    fn free(&self) -> bool {
        self.holders.len() < self.permits as usize && self.fence_holds == 0
    }
}

/// What one call decided, besides its own answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LockOut {
    pub records: Vec<LockRecord>,
    /// For each session (connection), what it is told.
    pub notices: Vec<(u64, Notice)>,
}

/// A shard's locks.
#[derive(Debug, Default)]
pub struct Locks {
    locks: IdMap<Box<[u8]>, Lock>,
    names: IdMap<u64, Box<[u8]>>,
    next_id: u64,
    /// When a lease or a wait ends, by lock: the earliest first. A count,
    /// since two may end at the same millisecond.
    deadlines: BTreeMap<(TimestampMs, u64), u32>,
    /// Locks each session holds a bound lease of or waits for; may name
    /// locks it no longer does (checked when the session ends).
    sessions: IdMap<u64, IdSet<u64>>,
    /// Which lock each waiting ticket waits for.
    tickets: IdMap<u64, u64>,
    /// The latest time seen: the clock a lease runs on never goes back.
    now: TimestampMs,
}

fn check_name(name: &[u8]) -> Result<(), LockError> {
    if name.is_empty() || name.len() > LOCK_NAME_BYTES_MAX {
        return Err(LockError::InvalidName { len: name.len() });
    }
    Ok(())
}

fn check_ttl(ttl_ms: u64) -> Result<(), LockError> {
    if ttl_ms == 0 || ttl_ms > LEASE_MS_MAX {
        return Err(LockError::InvalidTtl { ttl_ms });
    }
    Ok(())
}

impl Locks {
    fn clock(&mut self, now: TimestampMs) -> TimestampMs {
        self.now = self.now.max(now);
        self.now
    }

    fn lock_mut(&mut self, name: &[u8], permits: u32) -> &mut Lock {
        if !self.locks.contains_key(name) {
            self.next_id += 1;
            let id = self.next_id;
            self.names.insert(id, name.into());
            self.locks.insert(
                name.into(),
                Lock {
                    id,
                    permits,
                    last_token: 0,
                    holders: Vec::new(),
                    waiters: VecDeque::new(),
                    fence_holds: 0,
                },
            );
        }
        self.locks.get_mut(name).expect("just made")
    }

    fn add_deadline(&mut self, at: TimestampMs, id: u64) {
        *self.deadlines.entry((at, id)).or_default() += 1;
    }

    fn drop_deadline(&mut self, at: TimestampMs, id: u64) {
        if let std::collections::btree_map::Entry::Occupied(mut e) = self.deadlines.entry((at, id))
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Applies a record: the only way the durable state changes, here and
    /// at replay.
    pub fn apply(&mut self, record: &LockRecord) {
        self.apply_notifying(record, None);
    }

    fn apply_notifying(&mut self, record: &LockRecord, notify: Option<u64>) {
        self.apply_from(record, notify, false);
    }

    /// `apply`, telling `notify` of the lease's loss later; `restoring` a
    /// snapshot, a grant's token may be the lock's last already.
    fn apply_from(&mut self, record: &LockRecord, notify: Option<u64>, restoring: bool) {
        match record {
            LockRecord::Granted {
                name,
                permits,
                token,
                owner,
                session,
                ttl_ms,
                expires_at,
            } => {
                let lock = self.lock_mut(name, *permits);
                debug_assert!(restoring || *token > lock.last_token, "tokens only grow");
                lock.last_token = lock.last_token.max(*token);
                lock.holders.push(Lease {
                    token: *token,
                    owner: *owner,
                    session: *session,
                    ttl_ms: *ttl_ms,
                    expires_at: *expires_at,
                    notify,
                });
                let id = lock.id;
                self.add_deadline(*expires_at, id);
                if let Some(s) = session {
                    self.sessions.entry(*s).or_default().insert(id);
                }
            }
            LockRecord::Renewed {
                name,
                token,
                ttl_ms,
                expires_at,
            } => {
                let Some(lock) = self.locks.get_mut(name) else {
                    return;
                };
                let id = lock.id;
                if let Some(h) = lock.holders.iter_mut().find(|h| h.token == *token) {
                    let old = std::mem::replace(&mut h.expires_at, *expires_at);
                    h.ttl_ms = *ttl_ms;
                    self.drop_deadline(old, id);
                    self.add_deadline(*expires_at, id);
                }
            }
            LockRecord::Ended { name, token } => {
                let Some(lock) = self.locks.get_mut(name) else {
                    return;
                };
                let id = lock.id;
                if let Some(at) = lock.holders.iter().position(|h| h.token == *token) {
                    let h = lock.holders.swap_remove(at);
                    self.drop_deadline(h.expires_at, id);
                }
            }
            LockRecord::Known {
                name,
                permits,
                last_token,
            } => {
                let lock = self.lock_mut(name, *permits);
                lock.permits = *permits;
                lock.last_token = lock.last_token.max(*last_token);
            }
        }
    }

    fn commit(&mut self, record: LockRecord, notify: Option<u64>, out: &mut LockOut) {
        self.apply_notifying(&record, notify);
        out.records.push(record);
    }

    /// Takes a permit of `name` for `req.owner` for `req.ttl_ms`: the token
    /// and the lease's end at once if one is free, `Ok(None)` if the
    /// request waits (its answer comes as a notice under `req.ticket`), or
    /// why not.
    pub fn acquire(
        &mut self,
        name: &[u8],
        req: Acquire,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<Option<(u64, TimestampMs)>, LockError> {
        let now = self.clock(now);
        check_name(name)?;
        check_ttl(req.ttl_ms)?;
        if req.permits == 0 || req.permits > PERMITS_MAX {
            return Err(LockError::InvalidPermits {
                permits: req.permits,
            });
        }
        if let Wait::Until(at) = req.wait {
            check_ttl(at.saturating_sub(now).max(1))?;
        }
        if req.owner.bind && req.owner.conn.is_none() {
            // Nothing could ever end it but its time: the same as unbound.
            debug_assert!(false, "a bound lease needs a session");
        }
        if let Some(lock) = self.locks.get_mut(name) {
            if lock.permits != req.permits {
                return Err(LockError::PermitsMismatch {
                    permits: lock.permits,
                });
            }
            // The common case in one lookup: a known lock, free, nobody
            // waiting and no lease due to end; exactly what `grant` does.
            let due = lock.holders.iter().any(|h| h.expires_at <= now);
            if !due && lock.free() && lock.waiters.is_empty() {
                let token = lock.last_token + 1;
                let expires_at = now + req.ttl_ms;
                let session = req.owner.conn.filter(|_| req.owner.bind);
                lock.last_token = token;
                lock.holders.push(Lease {
                    token,
                    owner: req.owner.id,
                    session,
                    ttl_ms: req.ttl_ms,
                    expires_at,
                    notify: req.owner.conn,
                });
                let id = lock.id;
                *self.deadlines.entry((expires_at, id)).or_default() += 1;
                if let Some(s) = session {
                    self.sessions.entry(s).or_default().insert(id);
                }
                out.records.push(LockRecord::Granted {
                    name: name.into(),
                    permits: req.permits,
                    token,
                    owner: req.owner.id,
                    session,
                    ttl_ms: req.ttl_ms,
                    expires_at,
                });
                return Ok(Some((token, expires_at)));
            }
        }
        self.expire_due_of(name, now, out);
        let lock = self.lock_mut(name, req.permits);
        let id = lock.id;
        if !lock.free() || !lock.waiters.is_empty() {
            let token = lock.last_token;
            return match req.wait {
                Wait::Try => Err(LockError::Busy { token }),
                _ if lock.waiters.len() >= LOCK_WAITERS_MAX => Err(LockError::TooManyWaiters),
                wait => {
                    lock.waiters.push_back(Waiter {
                        ticket: req.ticket,
                        owner: req.owner,
                        ttl_ms: req.ttl_ms,
                        wait,
                    });
                    self.tickets.insert(req.ticket, id);
                    if let Wait::Until(at) = wait {
                        self.add_deadline(at, id);
                    }
                    if let Some(s) = req.owner.conn {
                        self.sessions.entry(s).or_default().insert(id);
                    }
                    Ok(None)
                }
            };
        }
        Ok(Some(self.grant(name, req.owner, req.ttl_ms, now, out)))
    }

    fn grant(
        &mut self,
        name: &[u8],
        owner: Owner,
        ttl_ms: u64,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> (u64, TimestampMs) {
        let lock = self.locks.get(name).expect("a lock to grant");
        let token = lock.last_token + 1;
        let expires_at = now + ttl_ms;
        let record = LockRecord::Granted {
            name: name.into(),
            permits: lock.permits,
            token,
            owner: owner.id,
            session: owner.conn.filter(|_| owner.bind),
            ttl_ms,
            expires_at,
        };
        self.commit(record, owner.conn, out);
        (token, expires_at)
    }

    /// Extends the lease held under `token` to `ttl_ms` from now.
    pub fn renew(
        &mut self,
        name: &[u8],
        token: u64,
        ttl_ms: u64,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<TimestampMs, LockError> {
        let now = self.clock(now);
        check_name(name)?;
        check_ttl(ttl_ms)?;
        self.expire_due_of(name, now, out);
        self.holding(name, token)?;
        let expires_at = now + ttl_ms;
        let record = LockRecord::Renewed {
            name: name.into(),
            token,
            ttl_ms,
            expires_at,
        };
        self.commit(record, None, out);
        Ok(expires_at)
    }

    /// Ends the lease held under `token`, and hands the permit to the
    /// first waiter still waiting.
    pub fn release(
        &mut self,
        name: &[u8],
        token: u64,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<(), LockError> {
        let now = self.clock(now);
        check_name(name)?;
        // The common case in one lookup: the live holder of a lock nobody
        // waits for; exactly what the records below do.
        if let Some(lock) = self.locks.get_mut(name)
            && lock.waiters.is_empty()
            && lock.fence_holds == 0
            && !lock.holders.iter().any(|h| h.expires_at <= now)
            && let Some(at) = lock.holders.iter().position(|h| h.token == token)
        {
            let h = lock.holders.swap_remove(at);
            let id = lock.id;
            self.drop_deadline(h.expires_at, id);
            out.records.push(LockRecord::Ended {
                name: name.into(),
                token,
            });
            return Ok(());
        }
        self.expire_due_of(name, now, out);
        self.holding(name, token)?;
        let record = LockRecord::Ended {
            name: name.into(),
            token,
        };
        self.commit(record, None, out);
        self.grant_next(name, now, out);
        Ok(())
    }

    fn holding(&self, name: &[u8], token: u64) -> Result<(), LockError> {
        let lock = self.locks.get(name).ok_or(LockError::Unknown)?;
        if lock.holders.iter().any(|h| h.token == token) {
            return Ok(());
        }
        if token == 0 || token > lock.last_token {
            return Err(LockError::NotHeld);
        }
        if lock.permits == 1 && token == lock.last_token {
            // Its lease ran out, and nobody took the lock since.
            return Err(LockError::NotHeld);
        }
        Err(LockError::Stale {
            token,
            last: lock.last_token,
        })
    }

    /// Whether a write fenced by `(name, token)` may go ahead. For a lock:
    /// while no newer token was granted, even if the lease ran out, since
    /// nobody else acted under it. For a semaphore: while the permit is
    /// held.
    pub fn check_fence(&self, name: &[u8], token: u64) -> Result<(), LockError> {
        check_name(name)?;
        let Some(lock) = self.locks.get(name) else {
            return Err(LockError::Stale { token, last: 0 });
        };
        let ok = if lock.permits == 1 {
            token > 0 && token == lock.last_token
        } else {
            lock.holders.iter().any(|h| h.token == token)
        };
        if ok {
            Ok(())
        } else {
            Err(LockError::Stale {
                token,
                last: lock.last_token,
            })
        }
    }

    /// A fence check for a write on another shard: if it passes, no permit
    /// of `name` is granted until [`Locks::end_fence_hold`].
    pub fn hold_fence(&mut self, name: &[u8], token: u64) -> Result<(), LockError> {
        self.check_fence(name, token)?;
        self.locks.get_mut(name).expect("checked").fence_holds += 1;
        Ok(())
    }

    /// The fenced write elsewhere is decided: grants may go on.
    pub fn end_fence_hold(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        let now = self.clock(now);
        if let Some(lock) = self.locks.get_mut(name) {
            lock.fence_holds = lock.fence_holds.saturating_sub(1);
            self.grant_next(name, now, out);
        }
    }

    /// Ends the leases of `name` past their time, and serves the waiters
    /// they held up.
    fn expire_due_of(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        let Some(lock) = self.locks.get(name) else {
            return;
        };
        let due: Vec<Lease> = (lock.holders.iter())
            .filter(|h| h.expires_at <= now)
            .copied()
            .collect();
        if due.is_empty() {
            return;
        }
        for h in due {
            if let Some(s) = h.notify {
                out.notices.push((
                    s,
                    Notice::Lost {
                        name: name.into(),
                        token: h.token,
                        by: LostBy::Expired,
                    },
                ));
            }
            let record = LockRecord::Ended {
                name: name.into(),
                token: h.token,
            };
            self.commit(record, None, out);
        }
        self.grant_next(name, now, out);
    }

    /// Grants free permits to the first waiters whose wait has not run
    /// out; those whose wait ran out are told so on the way.
    fn grant_next(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        loop {
            let Some(lock) = self.locks.get_mut(name) else {
                return;
            };
            if !lock.free() {
                return;
            }
            let id = lock.id;
            let Some(w) = lock.waiters.pop_front() else {
                return;
            };
            self.tickets.remove(&w.ticket);
            if let Wait::Until(at) = w.wait {
                self.drop_deadline(at, id);
                if at <= now {
                    if let Some(s) = w.owner.conn {
                        out.notices.push((
                            s,
                            Notice::WaitEnded {
                                ticket: w.ticket,
                                name: name.into(),
                            },
                        ));
                    }
                    continue;
                }
            }
            let (token, expires_at) = self.grant(name, w.owner, w.ttl_ms, now, out);
            if let Some(s) = w.owner.conn {
                out.notices.push((
                    s,
                    Notice::Granted {
                        ticket: w.ticket,
                        name: name.into(),
                        token,
                        expires_at,
                    },
                ));
            }
        }
    }

    /// When the next lease or wait ends, if any does.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.deadlines.keys().next().map(|&(at, _)| at)
    }

    /// Time passes: leases past their end end, and waits past theirs are
    /// told so.
    pub fn tick(&mut self, now: TimestampMs, out: &mut LockOut) {
        let now = self.clock(now);
        while let Some((&(at, id), _)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            // Whatever else of this lock is due goes too: what follows
            // ends all of it.
            self.deadlines.remove(&(at, id));
            let Some(name) = self.names.get(&id).cloned() else {
                continue;
            };
            self.expire_due_of(&name, now, out);
            self.drop_late_waiters(&name, now, out);
            self.grant_next(&name, now, out);
        }
    }

    fn drop_late_waiters(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        let id = lock.id;
        let mut gone = Vec::new();
        lock.waiters.retain(|w| {
            let late = matches!(w.wait, Wait::Until(at) if at <= now);
            if late {
                gone.push((w.ticket, w.owner.conn, w.wait));
            }
            !late
        });
        for (ticket, conn, wait) in gone {
            self.tickets.remove(&ticket);
            if let Wait::Until(at) = wait {
                self.drop_deadline(at, id);
            }
            if let Some(s) = conn {
                out.notices.push((
                    s,
                    Notice::WaitEnded {
                        ticket,
                        name: name.into(),
                    },
                ));
            }
        }
    }

    /// Withdraws the waiting request `ticket` (its caller gave up).
    pub fn cancel(
        &mut self,
        name: &[u8],
        ticket: u64,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<(), LockError> {
        let now = self.clock(now);
        check_name(name)?;
        let lock = self.locks.get_mut(name).ok_or(LockError::Unknown)?;
        let id = lock.id;
        let at = (lock.waiters.iter())
            .position(|w| w.ticket == ticket)
            .ok_or(LockError::UnknownTicket)?;
        let w = lock.waiters.remove(at).expect("found");
        self.tickets.remove(&ticket);
        if let Wait::Until(at) = w.wait {
            self.drop_deadline(at, id);
        }
        self.grant_next(name, now, out);
        Ok(())
    }

    /// A session ended: its bound leases end and its waiters leave.
    pub fn end_session(&mut self, session: u64, now: TimestampMs, out: &mut LockOut) {
        let now = self.clock(now);
        let Some(ids) = self.sessions.remove(&session) else {
            return;
        };
        for id in ids {
            let Some(name) = self.names.get(&id).cloned() else {
                continue;
            };
            let lock = self.locks.get_mut(&name).expect("named");
            let mut gone = Vec::new();
            lock.waiters.retain(|w| {
                let mine = w.owner.conn == Some(session);
                if mine {
                    gone.push((w.ticket, w.wait));
                }
                !mine
            });
            let bound: Vec<u64> = (lock.holders.iter())
                .filter(|h| h.session == Some(session))
                .map(|h| h.token)
                .collect();
            for (ticket, wait) in gone {
                self.tickets.remove(&ticket);
                if let Wait::Until(at) = wait {
                    self.drop_deadline(at, id);
                }
            }
            for token in bound {
                out.notices.push((
                    session,
                    Notice::Lost {
                        name: name.clone(),
                        token,
                        by: LostBy::SessionEnded,
                    },
                ));
                let record = LockRecord::Ended {
                    name: name.clone(),
                    token,
                };
                self.commit(record, None, out);
            }
            self.grant_next(&name, now, out);
        }
    }

    /// After a restart: every lease gets its whole time again from `now`,
    /// so none ends sooner than it would have (what etcd does when a new
    /// leader takes over its leases). Logged, as any change is.
    pub fn restart(&mut self, now: TimestampMs, out: &mut LockOut) {
        let now = self.clock(now);
        let mut renew = Vec::new();
        for (name, lock) in &self.locks {
            for h in &lock.holders {
                if h.expires_at < now + h.ttl_ms {
                    renew.push(LockRecord::Renewed {
                        name: name.clone(),
                        token: h.token,
                        ttl_ms: h.ttl_ms,
                        expires_at: now + h.ttl_ms,
                    });
                }
            }
        }
        // In name order, so that two replicas of the state log the same.
        renew.sort_by(|a, b| match (a, b) {
            (
                LockRecord::Renewed { name, token, .. },
                LockRecord::Renewed {
                    name: n2,
                    token: t2,
                    ..
                },
            ) => (name, token).cmp(&(n2, t2)),
            _ => std::cmp::Ordering::Equal,
        });
        for r in renew {
            self.commit(r, None, out);
        }
    }

    /// A lock as it is; leases past their end at `now` are still listed
    /// until something touches the lock (or its deadline passes), with
    /// no time remaining.
    pub fn inspect(&mut self, name: &[u8], now: TimestampMs) -> Result<LockInfo, LockError> {
        self.clock(now);
        check_name(name)?;
        let lock = self.locks.get(name).ok_or(LockError::Unknown)?;
        let mut holders: Vec<_> = (lock.holders.iter())
            .map(|h| (h.token, h.owner, h.expires_at))
            .collect();
        holders.sort_unstable();
        Ok(LockInfo {
            permits: lock.permits,
            holders,
            last_token: lock.last_token,
            waiters: lock.waiters.len(),
            now: self.now,
        })
    }

    /// Sessions named in the durable state: new sessions are numbered
    /// above them, so a new connection never ends an old bound lease.
    pub fn max_session(&self) -> u64 {
        (self.locks.values())
            .flat_map(|l| l.holders.iter().filter_map(|h| h.session))
            .max()
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.locks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// The durable state as records that rebuild it: each lock's `Known`,
    /// then its holders' `Granted`, in token order; locks by name.
    pub fn image(&self) -> Vec<LockRecord> {
        let mut names: Vec<&Box<[u8]>> = self.locks.keys().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let lock = &self.locks[name];
            out.push(LockRecord::Known {
                name: name.clone(),
                permits: lock.permits,
                last_token: lock.last_token,
            });
            let mut holders = lock.holders.clone();
            holders.sort_by_key(|h| h.token);
            for h in holders {
                out.push(LockRecord::Granted {
                    name: name.clone(),
                    permits: lock.permits,
                    token: h.token,
                    owner: h.owner,
                    session: h.session,
                    ttl_ms: h.ttl_ms,
                    expires_at: h.expires_at,
                });
            }
        }
        out
    }

    /// Applies a snapshot's `image` records: a `Granted` there restores a
    /// holder whose token is not above the lock's last (its `Known` came
    /// first).
    pub fn restore(&mut self, record: &LockRecord) {
        self.apply_from(record, None, true);
    }

    /// The durable state, for comparing a replayed table with a live one.
    pub fn durable(&self) -> Vec<LockRecord> {
        self.image()
    }
}

impl PartialEq for Locks {
    fn eq(&self, other: &Self) -> bool {
        self.image() == other.image()
    }
}

impl Eq for Locks {}

impl Clone for Locks {
    /// The durable state only: waiters and fence holds are not copied.
    fn clone(&self) -> Self {
        let mut l = Locks::default();
        for r in self.image() {
            l.restore(&r);
        }
        l.now = self.now;
        l
    }
}

#[cfg(test)]
mod tests;
