//! The shard's side of locks and semaphores (`lock/`): requests, time,
//! sessions, and fenced writes, locally or with the lock's shard.

use super::{Output, Shard, Token};
use crate::command::{Command, LockCommand, LockWait, Outcome, Reply, shard_of_name};
use crate::error::Reject;
use crate::lock::{Acquire, LEASE_MS_MAX, LockError, LockOut, Owner, Wait};
use crate::message::PeerMsg;
use crate::record::Record;
use crate::types::{ShardId, TimestampMs};

impl Shard {
    /// Hands a lock decision's records to the journal (the lock table
    /// applied them already) and its notices to the runtime.
    fn log_locks(&mut self, lo: LockOut, out: &mut Output) {
        for r in lo.records {
            self.log(Record::Lock(r), out);
        }
        out.notices.extend(lo.notices);
    }

    pub(super) fn lock_command(
        &mut self,
        cmd: LockCommand,
        now: TimestampMs,
        out: &mut Output,
    ) -> Outcome {
        let mut lo = LockOut::default();
        let locks = &mut self.state.locks;
        let r = match cmd {
            LockCommand::Acquire {
                name,
                owner,
                permits,
                ttl_ms,
                wait,
                session,
                bind,
            } => {
                let wait = match wait {
                    LockWait::Try => Ok(Wait::Try),
                    LockWait::Ms(ms) if ms == 0 || ms > LEASE_MS_MAX => {
                        Err(LockError::InvalidTtl { ttl_ms: ms })
                    }
                    LockWait::Ms(ms) => Ok(Wait::Until(now + ms)),
                    LockWait::Forever => Ok(Wait::Forever),
                };
                self.next_ticket += 1;
                // Unique across shards: the notice names no shard.
                let ticket = self.next_ticket << 8 | u64::from(self.id);
                wait.and_then(|wait| {
                    if (bind || wait != Wait::Try) && session.is_none() {
                        return Err(LockError::NoSession);
                    }
                    let owner = Owner {
                        id: owner,
                        conn: session,
                        bind,
                    };
                    let req = Acquire {
                        owner,
                        permits,
                        ttl_ms,
                        wait,
                        ticket,
                    };
                    locks.acquire(&name, req, now, &mut lo)
                })
                .map(|got| match got {
                    Some((token, expires_at)) => Reply::LockGranted { token, expires_at },
                    None => Reply::LockQueued { ticket },
                })
            }
            LockCommand::Renew {
                name,
                token,
                ttl_ms,
            } => (locks.renew(&name, token, ttl_ms, now, &mut lo))
                .map(|expires_at| Reply::LockRenewed { expires_at }),
            LockCommand::Release { name, token } => locks
                .release(&name, token, now, &mut lo)
                .map(|()| Reply::Done),
            LockCommand::Inspect { name } => locks.inspect(&name, now).map(Reply::LockInfo),
            LockCommand::Cancel { name, ticket } => locks
                .cancel(&name, ticket, now, &mut lo)
                .map(|()| Reply::Done),
        };
        self.log_locks(lo, out);
        r.map_err(Reject::Lock)
    }

    /// When the next lease or lock wait ends, if any.
    pub fn next_lock_deadline(&self) -> Option<TimestampMs> {
        self.state.locks.next_deadline()
    }

    /// Ends the leases and waits due by `now`.
    pub fn tick_locks(&mut self, now: TimestampMs, out: &mut Output) -> usize {
        let mut lo = LockOut::default();
        self.state.locks.tick(now, &mut lo);
        let n = lo.records.len() + lo.notices.len();
        self.log_locks(lo, out);
        n
    }

    /// A session (a client connection) ended: its bound leases end and
    /// its waiting acquires leave.
    pub fn end_session(&mut self, session: u64, now: TimestampMs, out: &mut Output) {
        let mut lo = LockOut::default();
        self.state.locks.end_session(session, now, &mut lo);
        self.log_locks(lo, out);
    }

    /// After recovery, before serving: every lease gets its whole time
    /// again (`Locks::restart`).
    pub fn restart_leases(&mut self, now: TimestampMs, out: &mut Output) {
        let mut lo = LockOut::default();
        self.state.locks.restart(now, &mut lo);
        self.log_locks(lo, out);
    }

    /// The highest session number the durable state names.
    pub fn max_session(&self) -> u64 {
        self.state.locks.max_session()
    }

    /// Whether a write fenced by `(lock, token)` may run now; for the
    /// runtime's fenced keyspace writes, which run on the lock's shard.
    pub fn check_fence(&self, lock: &[u8], token: u64) -> Result<(), Reject> {
        (self.state.locks.check_fence(lock, token)).map_err(Reject::Lock)
    }

    pub(super) fn fenced(
        &mut self,
        token: Token,
        lock: Box<[u8]>,
        fence: u64,
        cmd: Command,
        now: TimestampMs,
        out: &mut Output,
    ) {
        if !cmd.is_fenceable() || matches!(cmd, Command::CacheSet { .. }) {
            out.replies
                .push((token, Err(Reject::Lock(LockError::NotFenceable))));
            return;
        }
        let at = shard_of_name(&lock, self.shards);
        if at == self.id {
            match self.state.locks.check_fence(&lock, fence) {
                Ok(()) => self.apply_inner(token, cmd, now, out),
                Err(e) => out.replies.push((token, Err(Reject::Lock(e)))),
            }
            return;
        }
        self.fence_seq += 1;
        let fx = self.fence_seq;
        self.fence_pending.insert(fx, (token, cmd));
        let check = PeerMsg::FenceCheck {
            fx,
            name: lock,
            token: fence,
        };
        self.send(at, check, out);
    }

    pub(super) fn on_fence_msg(
        &mut self,
        from: ShardId,
        msg: PeerMsg,
        now: TimestampMs,
        out: &mut Output,
    ) {
        match msg {
            PeerMsg::FenceCheck { fx, name, token } => {
                let result = self.state.locks.hold_fence(&name, token);
                if result.is_ok() {
                    self.fence_holds.insert((from, fx), name);
                }
                let vote = PeerMsg::FenceVote {
                    fx,
                    result: result.map_err(Reject::Lock),
                };
                self.send(from, vote, out);
            }
            PeerMsg::FenceVote { fx, result } => {
                let Some((token, cmd)) = self.fence_pending.remove(&fx) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        // `settle_fences` sends `FenceDone` with its reply.
                        self.fence_watch.insert(token, (from, fx));
                        self.apply_inner(token, cmd, now, out);
                    }
                    Err(r) => out.replies.push((token, Err(r))),
                }
            }
            PeerMsg::FenceDone { fx } => {
                if let Some(name) = self.fence_holds.remove(&(from, fx)) {
                    let mut lo = LockOut::default();
                    self.state.locks.end_fence_hold(&name, now, &mut lo);
                    self.log_locks(lo, out);
                }
            }
            _ => unreachable!("only fence messages come here"),
        }
    }

    /// Tells the lock's shard that a fenced write it checked is decided,
    /// once its reply (from `out.replies[from..]`) is out: the message
    /// waits, as every message does, for the write's record to be durable.
    pub(super) fn settle_fences(&mut self, out: &mut Output, from: usize) {
        if self.fence_watch.is_empty() {
            return;
        }
        for i in from..out.replies.len() {
            let token = out.replies[i].0;
            if let Some((to, fx)) = self.fence_watch.remove(&token) {
                self.send(to, PeerMsg::FenceDone { fx }, out);
            }
        }
    }
}
