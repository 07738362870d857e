//! Locks and semaphores from the client: a blocking [`Client::lock`] that
//! returns a guard, a ticketed [`Client::lock_ticket`] for callers that do
//! other work while they wait, and fenced writes.
//!
//! An acquire goes to the connection of the shard the lock lives on, and
//! that connection is its session: a queued acquire's grant comes back on
//! it as a notice, a bound lease ends when it closes, and a lease lost
//! while held is reported on it. A guard whose connection breaks counts as
//! lost, whatever the lease's binding: the client can no longer hear about
//! it (Curator's clients treat a lost connection the same way).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use mercato_protocol as wire;

use crate::client::{CallResult, Client};
use crate::error::ClientError;
use crate::shard_conn::ShardConn;

/// How an acquire asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOptions {
    pub ttl_ms: u64,
    pub wait: wire::LockWait,
    /// The lease ends when this client's connection to the lock's shard
    /// closes (ZooKeeper's ephemeral nodes).
    pub bind: bool,
    /// 1 for a lock; N for a semaphore of N permits.
    pub permits: u32,
    /// The caller's own id for itself, shown by `lock_inspect`.
    pub owner: u64,
}

impl LockOptions {
    /// A lease of `ttl_ms`, tried once, not bound, one permit.
    pub fn new(ttl_ms: u64) -> Self {
        LockOptions {
            ttl_ms,
            wait: wire::LockWait::Try,
            bind: false,
            permits: 1,
            owner: 0,
        }
    }

    pub fn wait_ms(self, ms: u64) -> Self {
        LockOptions {
            wait: wire::LockWait::Ms(ms),
            ..self
        }
    }

    pub fn wait_forever(self) -> Self {
        LockOptions {
            wait: wire::LockWait::Forever,
            ..self
        }
    }

    pub fn bind(self) -> Self {
        LockOptions { bind: true, ..self }
    }

    pub fn permits(self, permits: u32) -> Self {
        LockOptions { permits, ..self }
    }

    pub fn owner(self, owner: u64) -> Self {
        LockOptions { owner, ..self }
    }
}

/// A held lease, released when dropped (if it was not released before).
pub struct LockGuard<'a> {
    client: &'a Client,
    name: Vec<u8>,
    token: u64,
    expires_at: u64,
    lost: Arc<AtomicBool>,
    released: bool,
}

impl LockGuard<'_> {
    /// The fencing token: pass it with every write the lock protects.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// When the lease ends on the server's clock, unless renewed.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Whether the server said the lease ended without its release (it
    /// ran out, or its session ended), or the connection it came through
    /// broke. Told without polling; writes fenced by the token are
    /// refused either way once someone else holds the lock.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    pub fn renew(&mut self, ttl_ms: u64) -> CallResult<u64> {
        let r = self.client.lock_renew(&self.name, self.token, ttl_ms)?;
        if let Ok(at) = r {
            self.expires_at = at;
        }
        Ok(r)
    }

    /// Runs `write` only while this lease's token may still act.
    pub fn fenced(&self, write: wire::FencedWrite) -> CallResult<wire::Reply> {
        self.client.fenced(&self.name, self.token, write)
    }

    pub fn release(mut self) -> CallResult<()> {
        self.released = true;
        self.client.lock_release(&self.name, self.token)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: a lease not released runs out by itself.
            let _ = self.client.lock_release(&self.name, self.token);
        }
    }
}

/// An acquire that waits in the server's queue.
pub struct LockTicket<'a> {
    client: &'a Client,
    conn: Arc<ShardConn>,
    name: Vec<u8>,
    ticket: u64,
    rx: Receiver<wire::Notice>,
    wait: wire::LockWait,
}

/// How long past a bounded wait a caller waits for its notice before it
/// withdraws the request itself: the server ends the wait on its clock,
/// and this only covers a notice that never came.
const WAIT_GRACE_MS: u64 = 1_000;

impl<'a> LockTicket<'a> {
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// The lock if it was granted by now, without waiting.
    pub fn try_get(&self) -> Option<Result<LockGuard<'a>, wire::Reject>> {
        self.rx.try_recv().ok().map(|n| self.outcome(n))
    }

    /// Waits for the outcome: the lock, or `Reject::Lock(Timeout)` when
    /// the wait ran out.
    pub fn wait(self) -> Result<Result<LockGuard<'a>, wire::Reject>, ClientError> {
        let shard = self.conn.shard;
        let limit = match self.wait {
            wire::LockWait::Ms(ms) => Some(Duration::from_millis(ms + WAIT_GRACE_MS)),
            _ => None,
        };
        let got = match limit {
            Some(limit) => self.rx.recv_timeout(limit),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(n) => Ok(self.outcome(n)),
            Err(RecvTimeoutError::Timeout) => {
                self.cancel()?;
                Ok(Err(wire::Reject::Lock(wire::LockReject::Timeout)))
            }
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected { shard }),
        }
    }

    /// Withdraws the request; a grant that came first is released.
    pub fn cancel(self) -> Result<(), ClientError> {
        let r = self.client.one_on(
            self.conn.shard,
            wire::Request::LockCancel {
                name: self.name.clone(),
                ticket: self.ticket,
            },
        )?;
        if r.is_err()
            && let Ok(wire::Notice::LockGranted { token, .. }) =
                self.rx.recv_timeout(Duration::from_millis(WAIT_GRACE_MS))
        {
            let _ = self.client.lock_release(&self.name, token)?;
        }
        Ok(())
    }

    fn outcome(&self, n: wire::Notice) -> Result<LockGuard<'a>, wire::Reject> {
        match n {
            wire::Notice::LockGranted {
                token, expires_at, ..
            } => Ok(guard(
                self.client,
                &self.conn,
                &self.name,
                token,
                expires_at,
            )),
            _ => Err(wire::Reject::Lock(wire::LockReject::Timeout)),
        }
    }
}

fn guard<'a>(
    client: &'a Client,
    conn: &ShardConn,
    name: &[u8],
    token: u64,
    expires_at: u64,
) -> LockGuard<'a> {
    let lost = conn.notices.lock().unwrap().watch(name, token);
    LockGuard {
        client,
        name: name.to_vec(),
        token,
        expires_at,
        lost,
        released: false,
    }
}

/// What an acquire came to at once.
pub enum Acquired<'a> {
    Held(LockGuard<'a>),
    Queued(LockTicket<'a>),
}

impl Client {
    /// Takes the lock (or a semaphore's permit) `name`, waiting as `opts`
    /// says: the guard, or why not (`Busy` for a try, `Timeout` for a wait
    /// that ran out).
    pub fn lock(&self, name: &[u8], opts: LockOptions) -> CallResult<LockGuard<'_>> {
        match self.lock_ticket(name, opts)? {
            Ok(Acquired::Held(g)) => Ok(Ok(g)),
            Ok(Acquired::Queued(t)) => t.wait(),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Asks for the lock and returns at once: held, or queued with a
    /// ticket to wait on.
    pub fn lock_ticket(&self, name: &[u8], opts: LockOptions) -> CallResult<Acquired<'_>> {
        let req = wire::Request::LockAcquire {
            name: name.to_vec(),
            owner: opts.owner,
            permits: opts.permits,
            ttl_ms: opts.ttl_ms,
            wait: opts.wait,
            bind: opts.bind,
        };
        let shard = self.owner(&req);
        let conn = self.shard_conn(shard)?;
        match self.one_on(shard, req)? {
            Ok(wire::Reply::LockGranted { token, expires_at }) => Ok(Ok(Acquired::Held(guard(
                self, &conn, name, token, expires_at,
            )))),
            Ok(wire::Reply::LockQueued { ticket }) => {
                let rx = conn.notices.lock().unwrap().wait_for(ticket);
                Ok(Ok(Acquired::Queued(LockTicket {
                    client: self,
                    conn,
                    name: name.to_vec(),
                    ticket,
                    rx,
                    wait: opts.wait,
                })))
            }
            Ok(other) => Err(ClientError::Protocol {
                what: format!("an acquire answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Extends the lease held under `token` to `ttl_ms` from now; its new end.
    pub fn lock_renew(&self, name: &[u8], token: u64, ttl_ms: u64) -> CallResult<u64> {
        let r = self.one(wire::Request::LockRenew {
            name: name.to_vec(),
            token,
            ttl_ms,
        })?;
        match r {
            Ok(wire::Reply::LockRenewed { expires_at }) => Ok(Ok(expires_at)),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("a renewal answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    pub fn lock_release(&self, name: &[u8], token: u64) -> CallResult<()> {
        let r = self.one(wire::Request::LockRelease {
            name: name.to_vec(),
            token,
        })?;
        Ok(r.map(|_| ()))
    }

    pub fn lock_inspect(&self, name: &[u8]) -> CallResult<wire::LockInfo> {
        match self.one(wire::Request::LockInspect {
            name: name.to_vec(),
        })? {
            Ok(wire::Reply::LockInfo(i)) => Ok(Ok(i)),
            Ok(other) => Err(ClientError::Protocol {
                what: format!("inspect answered {other:?}"),
            }),
            Err(r) => Ok(Err(r)),
        }
    }

    /// Runs `write` only while `token` may still act under `lock`: refused
    /// with `Reject::Lock(Stale)` once a newer token was granted.
    pub fn fenced(
        &self,
        lock: &[u8],
        token: u64,
        write: wire::FencedWrite,
    ) -> CallResult<wire::Reply> {
        self.one(wire::Request::Fenced {
            lock: lock.to_vec(),
            token,
            write: Box::new(write),
        })
    }
}
