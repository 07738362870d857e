//! Named locks and semaphores with leases and fencing tokens (issue 26),
//! as a pure state machine in the shard's style: decisions emit
//! `LockRecord`s, which are all that changes the durable state, so
//! replaying them rebuilds it. ARCHITECTURE.md ("Locks, leases and
//! fencing") says how the shard, the log and the server take it up.
//!
//! What users of etcd and Curator would expect, and where it differs:
//!
//! - Waiters are served first come, first served, and wait in memory only:
//!   a waiting request is answered with a ticket at once, and its grant
//!   or the end of its wait comes later as a notice to its session. A
//!   restart ends every wait (the caller's connection closes, and it asks
//!   again), as a Curator recipe's watch ends with its session.
//! - Every grant takes the next **fencing token** of its name. The last
//!   token is part of the durable state, so tokens never repeat or go back,
//!   across restarts too.
//! - A fence `(name, token)` on a lock passes only while `token` is the
//!   last token granted for the name: a newer grant, even one since
//!   expired, makes every older token stale. A lease that ran out with no
//!   newer grant leaves its token valid, since nobody else acted under the
//!   lock. On a semaphore, a fence passes while its permit is held.
//! - A lease ends at its expiry time on the engine's clock (which the
//!   table never lets go back), by release, or when the session it is
//!   bound to ends. A restart gives every lease its whole time again, as
//!   etcd does when a new leader takes its leases over.

mod table;

pub use table::{
    Acquire, LEASE_MS_MAX, LOCK_NAME_BYTES_MAX, LOCK_WAITERS_MAX, LockError, LockInfo, LockOut,
    LockRecord, Locks, LostBy, Notice, Owner, PERMITS_MAX, Wait,
};
