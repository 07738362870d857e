//! A shard's locks: the durable part (each name's last token and holder)
//! and the volatile part (each name's waiters).

use std::collections::VecDeque;

use thiserror::Error;

use crate::hash::IdMap;
use crate::types::TimestampMs;

/// Longest lock name, in bytes.
pub(crate) const LOCK_NAME_BYTES_MAX: usize = 256;
/// Longest lease.
pub(crate) const LEASE_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Requests that may wait for one lock at once.
pub(crate) const LOCK_WAITERS_MAX: usize = 1_024;

/// Who asks: a caller-chosen owner id, and the session (connection) the
/// lease ends with, if it is tied to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub id: u64,
    pub session: Option<u64>,
}

/// One acquire: who, for how long, how long it may wait, and the ticket
/// its answer comes under if it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Acquire {
    pub owner: Owner,
    pub ttl_ms: u64,
    pub wait: Wait,
    pub ticket: u64,
}

/// What `inspect` shows of a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockInfo {
    /// The holder's token and when its lease ends.
    pub holder: Option<(u64, TimestampMs)>,
    pub last_token: u64,
    pub waiters: usize,
}

/// How long an acquire may wait for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Answer at once.
    Try,
    /// Until this time on the engine's clock.
    Until(TimestampMs),
    /// Until granted, or the caller's session ends.
    Forever,
}

/// A lock request refused. Nothing changed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub(crate) enum LockError {
    #[error("lock names are 1 to {LOCK_NAME_BYTES_MAX} bytes, this one is {len}")]
    InvalidName { len: usize },
    #[error("a lease is 1 to {LEASE_MS_MAX} ms, not {ttl_ms}")]
    InvalidTtl { ttl_ms: u64 },
    #[error("the lock is held (token {token})")]
    Busy { token: u64 },
    #[error("{LOCK_WAITERS_MAX} requests already wait for this lock")]
    TooManyWaiters,
    #[error("the wait ran out before the lock was free")]
    Timeout,
    /// The token is not the one holding the lock (or allowed to fence).
    #[error("token {token} is stale; the last granted is {last}")]
    Stale { token: u64, last: u64 },
    #[error("the lock is not held")]
    NotHeld,
}

/// The durable changes; nothing else changes a lock's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LockRecord {
    Granted {
        name: Box<[u8]>,
        token: u64,
        owner: u64,
        session: Option<u64>,
        expires_at: TimestampMs,
    },
    Renewed {
        name: Box<[u8]>,
        token: u64,
        expires_at: TimestampMs,
    },
    /// Released, expired, or ended with its session.
    Ended { name: Box<[u8]>, token: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    token: u64,
    owner: u64,
    session: Option<u64>,
    expires_at: TimestampMs,
}

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    owner: Owner,
    ttl_ms: u64,
    wait: Wait,
}

#[derive(Debug, Default)]
struct Lock {
    last_token: u64,
    holder: Option<Lease>,
    waiters: VecDeque<Waiter>,
}

/// What one call decided, besides its own answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LockOut {
    pub records: Vec<LockRecord>,
    /// Waiters granted the lock: (ticket, token, expires_at).
    pub granted: Vec<(u64, u64, TimestampMs)>,
    /// Waiters whose wait ran out or whose session ended.
    pub timed_out: Vec<u64>,
    /// Holders whose lease ended without their release: (owner, name,
    /// token), for the lock-lost notice.
    pub lost: Vec<(u64, Box<[u8]>, u64)>,
}

/// A shard's locks.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    locks: IdMap<Box<[u8]>, Lock>,
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
    /// Applies a record: the only way the durable state changes, here and
    /// at replay.
    pub fn apply(&mut self, record: &LockRecord) {
        match record {
            LockRecord::Granted {
                name,
                token,
                owner,
                session,
                expires_at,
            } => {
                let lock = self.locks.entry(name.clone()).or_default();
                debug_assert!(*token > lock.last_token, "tokens only grow");
                lock.last_token = *token;
                lock.holder = Some(Lease {
                    token: *token,
                    owner: *owner,
                    session: *session,
                    expires_at: *expires_at,
                });
            }
            LockRecord::Renewed {
                name,
                token,
                expires_at,
            } => {
                if let Some(h) = self.locks.get_mut(name).and_then(|l| l.holder.as_mut())
                    && h.token == *token
                {
                    h.expires_at = *expires_at;
                }
            }
            LockRecord::Ended { name, token } => {
                if let Some(lock) = self.locks.get_mut(name)
                    && lock.holder.is_some_and(|h| h.token == *token)
                {
                    lock.holder = None;
                }
            }
        }
    }

    fn commit(&mut self, record: LockRecord, out: &mut LockOut) {
        self.apply(&record);
        out.records.push(record);
    }

    /// Takes `name` for `owner` for `ttl_ms`: the token and the lease's end
    /// at once if it is free, `Ok(None)` if the request waits (its answer
    /// comes in a later `LockOut::granted` or `timed_out` under `ticket`),
    /// or why not.
    pub fn acquire(
        &mut self,
        name: &[u8],
        req: Acquire,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<Option<(u64, TimestampMs)>, LockError> {
        let Acquire {
            owner,
            ttl_ms,
            wait,
            ticket,
        } = req;
        check_name(name)?;
        check_ttl(ttl_ms)?;
        self.expire_one(name, now, out);
        let lock = self.locks.entry(name.into()).or_default();
        if let Some(h) = lock.holder {
            return match wait {
                Wait::Try => Err(LockError::Busy { token: h.token }),
                Wait::Until(at) if at <= now => Err(LockError::Timeout),
                _ if lock.waiters.len() >= LOCK_WAITERS_MAX => Err(LockError::TooManyWaiters),
                _ => {
                    lock.waiters.push_back(Waiter {
                        ticket,
                        owner,
                        ttl_ms,
                        wait,
                    });
                    Ok(None)
                }
            };
        }
        // Whatever frees a lock hands it to its first waiter at once, so a
        // free lock has none.
        debug_assert!(lock.waiters.is_empty());
        let token = lock.last_token + 1;
        let expires_at = now + ttl_ms;
        self.commit(
            LockRecord::Granted {
                name: name.into(),
                token,
                owner: owner.id,
                session: owner.session,
                expires_at,
            },
            out,
        );
        Ok(Some((token, expires_at)))
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
        check_name(name)?;
        check_ttl(ttl_ms)?;
        self.expire_one(name, now, out);
        self.holding(name, token)?;
        let expires_at = now + ttl_ms;
        self.commit(
            LockRecord::Renewed {
                name: name.into(),
                token,
                expires_at,
            },
            out,
        );
        Ok(expires_at)
    }

    /// Ends the lease held under `token`, and hands the lock to the first
    /// waiter still waiting.
    pub fn release(
        &mut self,
        name: &[u8],
        token: u64,
        now: TimestampMs,
        out: &mut LockOut,
    ) -> Result<(), LockError> {
        check_name(name)?;
        self.expire_one(name, now, out);
        self.holding(name, token)?;
        self.commit(
            LockRecord::Ended {
                name: name.into(),
                token,
            },
            out,
        );
        self.grant_next(name, now, out);
        Ok(())
    }

    fn holding(&self, name: &[u8], token: u64) -> Result<(), LockError> {
        let lock = self.locks.get(name).ok_or(LockError::NotHeld)?;
        match lock.holder {
            Some(h) if h.token == token => Ok(()),
            Some(_) => Err(LockError::Stale {
                token,
                last: lock.last_token,
            }),
            None if token == lock.last_token => Err(LockError::NotHeld),
            None => Err(LockError::Stale {
                token,
                last: lock.last_token,
            }),
        }
    }

    /// Whether a write fenced by `(name, token)` may go ahead: only while
    /// no newer token was granted for `name`.
    pub fn check_fence(&self, name: &[u8], token: u64) -> Result<(), LockError> {
        let last = self.locks.get(name).map_or(0, |l| l.last_token);
        if token == 0 || token != last {
            return Err(LockError::Stale { token, last });
        }
        Ok(())
    }

    /// Ends a lease past its time, and serves the waiters it held up.
    fn expire_one(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        let Some(h) = lock.holder.filter(|h| h.expires_at <= now) else {
            return;
        };
        out.lost.push((h.owner, name.into(), h.token));
        self.commit(
            LockRecord::Ended {
                name: name.into(),
                token: h.token,
            },
            out,
        );
        self.grant_next(name, now, out);
    }

    /// Grants a free lock to its first waiter whose wait has not run out;
    /// those whose wait ran out are answered `Timeout` on the way.
    fn grant_next(&mut self, name: &[u8], now: TimestampMs, out: &mut LockOut) {
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        if lock.holder.is_some() {
            return;
        }
        while let Some(w) = lock.waiters.pop_front() {
            if matches!(w.wait, Wait::Until(at) if at <= now) {
                out.timed_out.push(w.ticket);
                continue;
            }
            let token = lock.last_token + 1;
            let expires_at = now + w.ttl_ms;
            out.granted.push((w.ticket, token, expires_at));
            self.commit(
                LockRecord::Granted {
                    name: name.into(),
                    token,
                    owner: w.owner.id,
                    session: w.owner.session,
                    expires_at,
                },
                out,
            );
            return;
        }
    }

    /// Time passes: leases past their end end, and waits past theirs are
    /// answered `Timeout`.
    pub fn tick(&mut self, now: TimestampMs, out: &mut LockOut) {
        let names: Vec<Box<[u8]>> = self.locks.keys().cloned().collect();
        for name in names {
            self.expire_one(&name, now, out);
            let lock = self.locks.get_mut(&name).expect("listed");
            lock.waiters.retain(|w| {
                let late = matches!(w.wait, Wait::Until(at) if at <= now);
                if late {
                    out.timed_out.push(w.ticket);
                }
                !late
            });
            self.grant_next(&name, now, out);
        }
    }

    /// A session ended: its leases end and its waiters leave.
    pub fn end_session(&mut self, session: u64, now: TimestampMs, out: &mut LockOut) {
        let names: Vec<Box<[u8]>> = self.locks.keys().cloned().collect();
        for name in names {
            let lock = self.locks.get_mut(&name).expect("listed");
            lock.waiters.retain(|w| {
                let gone = w.owner.session == Some(session);
                if gone {
                    out.timed_out.push(w.ticket);
                }
                !gone
            });
            if let Some(h) = lock.holder.filter(|h| h.session == Some(session)) {
                out.lost.push((h.owner, name.clone(), h.token));
                self.commit(
                    LockRecord::Ended {
                        name: name.clone(),
                        token: h.token,
                    },
                    out,
                );
                self.grant_next(&name, now, out);
            }
        }
    }

    pub fn inspect(&self, name: &[u8]) -> Option<LockInfo> {
        let lock = self.locks.get(name)?;
        Some(LockInfo {
            holder: lock.holder.map(|h| (h.token, h.expires_at)),
            last_token: lock.last_token,
            waiters: lock.waiters.len(),
        })
    }

    /// The durable state, for comparing a replayed table with a live one.
    #[cfg(test)]
    fn durable(&self) -> Vec<(Box<[u8]>, u64, Option<Lease>)> {
        let mut v: Vec<_> = (self.locks.iter())
            .filter(|(_, l)| l.last_token > 0)
            .map(|(n, l)| (n.clone(), l.last_token, l.holder))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Acquire {
            name: u8,
            owner: u64,
            session: Option<u64>,
            ttl: u64,
            wait: u8,
        },
        Release {
            name: u8,
            stale: bool,
        },
        Renew {
            name: u8,
            ttl: u64,
        },
        Later(u64),
        EndSession(u64),
        Fence {
            name: u8,
            back: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..3, 0u64..4, prop::option::of(0u64..3), 1u64..50, 0u8..3)
                .prop_map(|(name, owner, session, ttl, wait)| Op::Acquire { name, owner, session, ttl, wait }),
            3 => (0u8..3, any::<bool>()).prop_map(|(name, stale)| Op::Release { name, stale }),
            1 => (0u8..3, 1u64..50).prop_map(|(name, ttl)| Op::Renew { name, ttl }),
            3 => (1u64..30).prop_map(Op::Later),
            1 => (0u64..3).prop_map(Op::EndSession),
            2 => (0u8..3, 0u64..3).prop_map(|(name, back)| Op::Fence { name, back }),
        ]
    }

    /// A lock as the model sees it: who holds it under which token until
    /// when, the last token, and the waiters' tickets in order.
    #[derive(Default)]
    struct Model {
        holder: Option<(u64, u64, TimestampMs)>,
        last: u64,
        queue: Vec<u64>,
    }

    proptest! {
        /// Random acquires (try, bounded and unbounded waits), releases
        /// with the right token and stale ones, renewals, time, ended
        /// sessions and fences, checked step by step: one holder at most,
        /// tokens strictly increasing, waiters served first come first
        /// served, stale tokens refused with nothing changed, and the
        /// records alone rebuilding the durable state.
        #[test]
        fn locks_keep_their_promises(ops in prop::collection::vec(op(), 1..300)) {
            let mut locks = Locks::default();
            let mut replayed = Locks::default();
            let mut models: Vec<Model> = (0..3).map(|_| Model::default()).collect();
            // The ticket a waiting request has, by ticket: its name.
            let mut waiting: IdMap<u64, u8> = IdMap::default();
            let mut now = 1_000;
            let mut ticket = 0;
            for op in ops {
                let mut out = LockOut::default();
                match op {
                    Op::Acquire { name, owner, session, ttl, wait } => {
                        ticket += 1;
                        let wait = match wait { 0 => Wait::Try, 1 => Wait::Until(now + 20), _ => Wait::Forever };
                        let req = Acquire { owner: Owner { id: owner, session }, ttl_ms: ttl, wait, ticket };
                        let got = locks.acquire(&[name], req, now, &mut out);
                        let m = &mut models[usize::from(name)];
                        match got {
                            Ok(Some((token, until))) => {
                                prop_assert!(m.holder.is_none() || m.holder.is_some_and(|h| h.2 <= now), "granted while held");
                                prop_assert_eq!(token, m.last + 1);
                                prop_assert_eq!(until, now + ttl);
                            }
                            Ok(None) => {
                                prop_assert!(wait != Wait::Try);
                                waiting.insert(ticket, name);
                                m.queue.push(ticket);
                            }
                            Err(LockError::Busy { .. }) => prop_assert_eq!(wait, Wait::Try),
                            Err(e) => prop_assert!(false, "acquire refused: {e}"),
                        }
                    }
                    Op::Release { name, stale } => {
                        let m = &models[usize::from(name)];
                        let token = if stale { m.last.saturating_sub(1) } else { m.holder.map_or(m.last, |h| h.0) };
                        let held = m.holder.is_some_and(|h| h.0 == token && h.2 > now);
                        let before = locks.durable();
                        let r = locks.release(&[name], token, now, &mut out);
                        if held {
                            prop_assert!(r.is_ok(), "{r:?}");
                        } else {
                            prop_assert!(r.is_err());
                            // A refusal changes nothing, beyond leases
                            // that ran out on their own.
                            if out.records.is_empty() {
                                prop_assert_eq!(before, locks.durable());
                            }
                        }
                    }
                    Op::Renew { name, ttl } => {
                        let m = &models[usize::from(name)];
                        if let Some((token, _, until)) = m.holder && until > now {
                            prop_assert_eq!(locks.renew(&[name], token, ttl, now, &mut out), Ok(now + ttl));
                        } else {
                            prop_assert!(locks.renew(&[name], m.last, ttl, now, &mut out).is_err());
                        }
                    }
                    Op::Later(ms) => {
                        now += ms;
                        locks.tick(now, &mut out);
                    }
                    Op::EndSession(s) => locks.end_session(s, now, &mut out),
                    Op::Fence { name, back } => {
                        let last = models[usize::from(name)].last;
                        let token = last.saturating_sub(back);
                        let ok = locks.check_fence(&[name], token).is_ok();
                        prop_assert_eq!(ok, token == last && last > 0, "fence {} against last {}", token, last);
                    }
                }
                // Fold what happened into the models, in order.
                for r in &out.records {
                    replayed.apply(r);
                    match r {
                        LockRecord::Granted { name, token, expires_at, owner, .. } => {
                            let m = &mut models[usize::from(name[0])];
                            prop_assert!(*token > m.last, "tokens strictly increase");
                            m.last = *token;
                            m.holder = Some((*token, *owner, *expires_at));
                        }
                        LockRecord::Renewed { name, token, expires_at } => {
                            let m = &mut models[usize::from(name[0])];
                            prop_assert_eq!(m.holder.map(|h| h.0), Some(*token));
                            m.holder.as_mut().unwrap().2 = *expires_at;
                        }
                        LockRecord::Ended { name, token } => {
                            let m = &mut models[usize::from(name[0])];
                            prop_assert_eq!(m.holder.map(|h| h.0), Some(*token));
                            m.holder = None;
                        }
                    }
                }
                for &(t, token, _) in &out.granted {
                    let name = waiting.remove(&t).expect("a waiting ticket");
                    let m = &mut models[usize::from(name)];
                    // First come, first served: every ticket ahead of it
                    // left the queue (timed out, or its session ended).
                    let at = m.queue.iter().position(|&q| q == t).expect("queued");
                    prop_assert!(m.queue[..at].iter().all(|q| out.timed_out.contains(q)), "served out of order");
                    m.queue.drain(..=at);
                    prop_assert_eq!(m.holder.map(|h| h.0), Some(token));
                }
                for t in &out.timed_out {
                    if let Some(name) = waiting.remove(t) {
                        models[usize::from(name)].queue.retain(|q| q != t);
                    }
                }
                for (i, m) in models.iter().enumerate() {
                    let seen = locks.inspect(&[i as u8]);
                    prop_assert_eq!(seen.and_then(|s| s.holder), m.holder.map(|h| (h.0, h.2)));
                    prop_assert_eq!(seen.map_or(0, |s| s.waiters), m.queue.len());
                }
                prop_assert_eq!(replayed.durable(), locks.durable(), "the records rebuild the state");
            }
        }
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut locks = Locks::default();
        let mut out = LockOut::default();
        let me = Owner {
            id: 1,
            session: None,
        };
        let req = |ttl_ms, wait, ticket| Acquire {
            owner: me,
            ttl_ms,
            wait,
            ticket,
        };
        let long = vec![b'x'; LOCK_NAME_BYTES_MAX + 1];
        assert_eq!(
            locks.acquire(&long, req(10, Wait::Try, 1), 0, &mut out),
            Err(LockError::InvalidName {
                len: LOCK_NAME_BYTES_MAX + 1
            })
        );
        assert_eq!(
            locks.acquire(b"", req(10, Wait::Try, 1), 0, &mut out),
            Err(LockError::InvalidName { len: 0 })
        );
        assert_eq!(
            locks.acquire(b"a", req(0, Wait::Try, 1), 0, &mut out),
            Err(LockError::InvalidTtl { ttl_ms: 0 })
        );
        assert_eq!(
            locks.acquire(b"a", req(LEASE_MS_MAX + 1, Wait::Try, 1), 0, &mut out),
            Err(LockError::InvalidTtl {
                ttl_ms: LEASE_MS_MAX + 1
            })
        );
        assert_eq!(
            locks.release(b"nobody", 1, 0, &mut out),
            Err(LockError::NotHeld)
        );
        assert!(out.records.is_empty());
        assert_eq!(
            locks.acquire(b"a", req(10, Wait::Try, 1), 0, &mut out),
            Ok(Some((1, 10)))
        );
        for t in 0..LOCK_WAITERS_MAX as u64 {
            assert_eq!(
                locks.acquire(
                    b"a",
                    Acquire {
                        owner: me,
                        ttl_ms: 10,
                        wait: Wait::Forever,
                        ticket: 2 + t
                    },
                    0,
                    &mut out
                ),
                Ok(None)
            );
        }
        assert_eq!(
            locks.acquire(b"a", req(10, Wait::Forever, 9_999), 0, &mut out),
            Err(LockError::TooManyWaiters)
        );
        assert_eq!(
            locks.release(b"a", 7, 0, &mut out),
            Err(LockError::Stale { token: 7, last: 1 })
        );
        let info = LockInfo {
            holder: Some((1, 10)),
            last_token: 1,
            waiters: LOCK_WAITERS_MAX,
        };
        assert_eq!(locks.inspect(b"a"), Some(info));
    }
}
