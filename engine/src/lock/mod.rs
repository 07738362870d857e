//! Named locks with leases and fencing tokens (issue 26), as a pure state
//! machine in the shard's style: decisions emit `LockRecord`s, which are
//! all that changes the durable state, so replaying them rebuilds it.
//!
//! This is the core only; the shard, the log, the protocol and the client
//! take it up next (ARCHITECTURE.md will say how once they do).
//!
//! What users of etcd and Curator would expect, and where it differs:
//!
//! - Waiters are served first come, first served, and wait in memory only:
//!   a waiting request is an open call, and a restart ends it (the caller
//!   retries), as a Curator recipe's watch ends with its session.
//! - Every grant takes the next **fencing token** of its name. The last
//!   token is part of the durable state, so tokens never repeat or go back,
//!   across restarts too.
//! - A fence `(name, token)` passes only while `token` is the last token
//!   granted for the name: a newer grant, even one since expired, makes
//!   every older token stale. A lease that ran out with no newer grant
//!   leaves its token valid, since nobody else acted under the lock.
//! - A lease ends at its expiry time on the engine's clock, by release, or
//!   when the session it is tied to ends.

pub(crate) mod table;
