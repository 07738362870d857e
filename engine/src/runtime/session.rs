//! Locks for an embedded caller: [`Handle`]'s plain lock calls, and a
//! [`Session`] for the calls that wait or that end with their caller, as a
//! connection's do over TCP.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use super::engine::SESSION_NOTICES_MAX;
use super::handle::{CallResult, Handle};
use super::worker::Request;
use crate::command::{Command, LockCommand, LockWait, Outcome, Reply};
use crate::error::{EngineError, Reject};
use crate::lock::{LockError, LockInfo, Notice};

/// A lease: its fencing token, and when it ends on the engine's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub token: u64,
    pub expires_at: u64,
}

/// How long past a bounded wait a caller waits for its notice before it
/// withdraws the request itself: the engine ends the wait on its own
/// clock, and this only covers a notice that was dropped.
const WAIT_GRACE_MS: u64 = 1_000;

impl Handle {
    /// Takes the lock `name` for `ttl_ms` if it is free (`Busy` if not);
    /// `owner` is the caller's own id, shown by `lock_inspect`. To wait
    /// for a lock, or to tie a lease to the caller, use a [`Session`].
    pub fn lock_try(&self, name: &[u8], owner: u64, ttl_ms: u64) -> CallResult<Lease> {
        self.semaphore_try(name, 1, owner, ttl_ms)
    }

    /// Takes one of the `permits` permits of the semaphore `name`.
    pub fn semaphore_try(
        &self,
        name: &[u8],
        permits: u32,
        owner: u64,
        ttl_ms: u64,
    ) -> CallResult<Lease> {
        let cmd = LockCommand::Acquire {
            name: name.into(),
            owner,
            permits,
            ttl_ms,
            wait: LockWait::Try,
            session: None,
            bind: false,
        };
        Ok(self.call(Command::Lock(cmd))?.map(|r| match r {
            Reply::LockGranted { token, expires_at } => Lease { token, expires_at },
            other => unreachable!("a try answers a grant, not {other:?}"),
        }))
    }

    /// Extends the lease held under `token` to `ttl_ms` from now.
    pub fn lock_renew(&self, name: &[u8], token: u64, ttl_ms: u64) -> CallResult<u64> {
        let cmd = LockCommand::Renew {
            name: name.into(),
            token,
            ttl_ms,
        };
        Ok(self.call(Command::Lock(cmd))?.map(|r| match r {
            Reply::LockRenewed { expires_at } => expires_at,
            other => unreachable!("a renewal answers its end, not {other:?}"),
        }))
    }

    /// Ends the lease held under `token`; its next waiter gets the lock.
    pub fn lock_release(&self, name: &[u8], token: u64) -> CallResult<()> {
        let cmd = LockCommand::Release {
            name: name.into(),
            token,
        };
        Ok(self.call(Command::Lock(cmd))?.map(|_| ()))
    }

    pub fn lock_inspect(&self, name: &[u8]) -> CallResult<LockInfo> {
        let cmd = LockCommand::Inspect { name: name.into() };
        Ok(self.call(Command::Lock(cmd))?.map(|r| match r {
            Reply::LockInfo(i) => i,
            other => unreachable!("inspect answers an info, not {other:?}"),
        }))
    }

    /// Runs `cmd` only while `token` may still act under `lock`.
    pub fn fenced(&self, lock: &[u8], token: u64, cmd: Command) -> Result<Outcome, EngineError> {
        self.call(Command::Fenced {
            lock: lock.into(),
            token,
            cmd: Box::new(cmd),
        })
    }

    /// A session: lock waits and bound leases that end when it is dropped,
    /// and the notices of leases it took and lost.
    pub fn session(&self) -> Session {
        let shared = self.shared();
        let id = shared.new_session(None);
        let (tx, rx) = sync_channel(SESSION_NOTICES_MAX);
        shared
            .embedded
            .lock()
            .expect("sessions lock")
            .insert(id, tx);
        Session {
            handle: self.clone(),
            id,
            notices: Mutex::new(rx),
            stash: Mutex::default(),
        }
    }

    pub(crate) fn end_session(&self, session: u64) {
        for shard in 0..self.shards() as usize {
            // Waits for room: a session's end must not be lost.
            let _ = self.push_request(shard, Request::EndSession { session });
        }
    }
}

/// An embedded caller's session (see [`Handle::session`]).
pub struct Session {
    handle: Handle,
    id: u64,
    notices: Mutex<Receiver<Notice>>,
    /// Notices taken while waiting for another: losses, and grants of
    /// tickets nobody waits for any more.
    stash: Mutex<std::collections::VecDeque<Notice>>,
}

impl Session {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Takes a permit of `name` (`permits: 1` for a lock), waiting as
    /// `wait` says; with `bind`, the lease ends when the session does.
    /// A wait that runs out is `Reject::Lock(Timeout)`.
    pub fn acquire(
        &self,
        name: &[u8],
        permits: u32,
        ttl_ms: u64,
        wait: LockWait,
        bind: bool,
    ) -> CallResult<Lease> {
        let cmd = LockCommand::Acquire {
            name: name.into(),
            owner: self.id,
            permits,
            ttl_ms,
            wait,
            session: Some(self.id),
            bind,
        };
        let ticket = match self.handle.call(Command::Lock(cmd))? {
            Ok(Reply::LockGranted { token, expires_at }) => {
                return Ok(Ok(Lease { token, expires_at }));
            }
            Ok(Reply::LockQueued { ticket }) => ticket,
            Ok(other) => unreachable!("an acquire answers a grant or a ticket, not {other:?}"),
            Err(r) => return Ok(Err(r)),
        };
        let deadline = match wait {
            LockWait::Ms(ms) => {
                Some(std::time::Instant::now() + Duration::from_millis(ms + WAIT_GRACE_MS))
            }
            _ => None,
        };
        loop {
            if let Some(outcome) = self.claim(ticket) {
                return Ok(outcome);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => Duration::from_millis(100),
            };
            let got = self
                .notices
                .lock()
                .expect("notices lock")
                .recv_timeout(left);
            match got {
                Ok(n) => self.stash.lock().expect("stash lock").push_back(n),
                Err(RecvTimeoutError::Timeout) if deadline.is_none() => {
                    if self.handle.shared().gate.is_closed() {
                        return Err(EngineError::Shutdown);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let cancel = LockCommand::Cancel {
                        name: name.into(),
                        ticket,
                    };
                    if self.handle.call(Command::Lock(cancel))?.is_ok() {
                        return Ok(Err(Reject::Lock(LockError::Timeout)));
                    }
                    // Granted or ended meanwhile: its notice is on its way.
                }
                Err(RecvTimeoutError::Disconnected) => return Err(EngineError::Shutdown),
            }
        }
    }

    /// The grant or end of wait of `ticket`, if it came.
    fn claim(&self, ticket: u64) -> Option<Result<Lease, Reject>> {
        let mut stash = self.stash.lock().expect("stash lock");
        let at = stash.iter().position(|n| match n {
            Notice::Granted { ticket: t, .. } | Notice::WaitEnded { ticket: t, .. } => *t == ticket,
            Notice::Lost { .. } => false,
        })?;
        match stash.remove(at).expect("found") {
            Notice::Granted {
                token, expires_at, ..
            } => Some(Ok(Lease { token, expires_at })),
            _ => Some(Err(Reject::Lock(LockError::Timeout))),
        }
    }

    /// The next notice not claimed by a waiting `acquire` (a lease lost),
    /// if one came.
    pub fn try_notice(&self) -> Option<Notice> {
        if let Some(n) = self.stash.lock().expect("stash lock").pop_front() {
            return Some(n);
        }
        self.notices.lock().expect("notices lock").try_recv().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let shared = self.handle.shared();
        shared
            .embedded
            .lock()
            .expect("sessions lock")
            .remove(&self.id);
        if !shared.gate.is_closed() {
            self.handle.end_session(self.id);
        }
    }
}
