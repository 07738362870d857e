//! The hand-off between a shard and its flusher thread.
//!
//! The shard frames records into a buffer of its own and offers it here; the
//! flusher takes whatever has gathered, writes and syncs it, and publishes the
//! LSNs that are now written and durable. The lock is held only to swap
//! buffers, never across I/O, so the shard never waits on a disk. While the
//! flusher is busy, offers pile up into one pending batch: that is the group
//! commit, one sync for everything that arrived during the previous one.

use std::time::Duration;

use crate::format::Lsn;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};

/// Where a new segment starts inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roll {
    /// Offset in the batch's bytes of the new segment's first record.
    pub at: usize,
    pub first_lsn: Lsn,
    pub prev_crc: u32,
}

/// Framed records on their way to disk.
#[derive(Debug, Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub rolls: Vec<Roll>,
    /// LSN of the last record in `bytes`; 0 when empty.
    pub last_lsn: Lsn,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.last_lsn == 0
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rolls.clear();
        self.last_lsn = 0;
    }

    /// Moves `other`'s records after this batch's.
    fn absorb(&mut self, other: &mut Batch) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.rolls.extend(other.rolls.iter().map(|r| Roll {
            at: r.at + base,
            ..*r
        }));
        self.last_lsn = other.last_lsn;
        other.clear();
    }
}

/// What the flusher got from [`Handoff::take`].
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Records to write, now in the caller's batch.
    Records,
    /// Nothing arrived within the timeout.
    Idle,
    /// Nothing is left and the shard closed the log.
    Closed,
}

#[derive(Debug, Default)]
struct Exchange {
    pending: Batch,
    /// A buffer the flusher finished with, for the shard's next batch.
    spare: Vec<u8>,
    closing: bool,
    /// The flusher sleeps on the condvar. Only then does an offer pay for a
    /// wake-up, a system call, which a busy shard would otherwise make on
    /// every turn.
    flusher_waiting: bool,
}

#[derive(Debug)]
pub struct Handoff {
    exchange: Mutex<Exchange>,
    ready: Condvar,
    pending_bytes: AtomicUsize,
    written_lsn: AtomicU64,
    synced_lsn: AtomicU64,
    poisoned: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Handoff {
    /// Everything the flusher has written starts after `lsn`.
    pub fn starting_after(lsn: Lsn) -> Self {
        Handoff {
            exchange: Mutex::new(Exchange::default()),
            ready: Condvar::new(),
            pending_bytes: AtomicUsize::new(0),
            written_lsn: AtomicU64::new(lsn),
            synced_lsn: AtomicU64::new(lsn),
            poisoned: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Shard: hand over `batch`'s records; `batch` comes back empty, with a
    /// recycled buffer when one is free.
    pub fn offer(&self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        if self.poisoned.load(Ordering::Acquire) {
            // No flusher will take these; keep the backlog from growing.
            batch.clear();
            return;
        }
        let mut ex = self.exchange.lock().expect("handoff lock");
        if ex.pending.is_empty() {
            std::mem::swap(&mut ex.pending, batch);
            batch.clear();
            std::mem::swap(&mut batch.bytes, &mut ex.spare);
        } else {
            ex.pending.absorb(batch);
        }
        self.pending_bytes
            .store(ex.pending.bytes.len(), Ordering::Relaxed);
        let wake = ex.flusher_waiting;
        drop(ex);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Shard: no more records will come; the flusher exits once it wrote
    /// what it has.
    pub fn close(&self) {
        self.exchange.lock().expect("handoff lock").closing = true;
        self.ready.notify_one();
    }

    /// Bytes offered and not yet taken by the flusher: the backlog the shard
    /// bounds by refusing new work.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Flusher: move the pending records into `into` (which must be empty),
    /// waiting up to `timeout` (forever for `None`) for some to arrive.
    pub fn take(&self, into: &mut Batch, timeout: Option<Duration>) -> Taken {
        debug_assert!(into.is_empty());
        let mut ex = self.exchange.lock().expect("handoff lock");
        loop {
            if !ex.pending.is_empty() {
                std::mem::swap(&mut ex.pending, into);
                self.pending_bytes.store(0, Ordering::Relaxed);
                return Taken::Records;
            }
            if ex.closing {
                return Taken::Closed;
            }
            ex.flusher_waiting = true;
            match timeout {
                None => ex = self.ready.wait(ex).expect("handoff lock"),
                Some(t) => {
                    let (guard, result) = self.ready.wait_timeout(ex, t).expect("handoff lock");
                    ex = guard;
                    if result.timed_out() && ex.pending.is_empty() && !ex.closing {
                        ex.flusher_waiting = false;
                        return Taken::Idle;
                    }
                }
            }
            ex.flusher_waiting = false;
        }
    }

    /// Flusher: `done` was written; its buffer may serve the shard again.
    pub fn recycle(&self, done: &mut Batch) {
        done.clear();
        let mut ex = self.exchange.lock().expect("handoff lock");
        if ex.spare.capacity() < done.bytes.capacity() {
            std::mem::swap(&mut ex.spare, &mut done.bytes);
        }
    }

    /// Flusher: records up to `written` reached the file, and up to `synced`
    /// survive a power cut. Both only grow.
    pub fn publish(&self, written: Lsn, synced: Lsn) {
        debug_assert!(synced <= written);
        self.written_lsn.fetch_max(written, Ordering::Release);
        self.synced_lsn.fetch_max(synced, Ordering::Release);
    }

    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn.load(Ordering::Acquire)
    }

    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn.load(Ordering::Acquire)
    }

    /// Flusher: a write or sync failed. Nothing after the published LSNs will
    /// ever be published.
    pub fn poison(&self, why: String) {
        *self.failure.lock().expect("failure lock") = Some(why);
        self.poisoned.store(true, Ordering::Release);
    }

    pub fn failure(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.failure.lock().expect("failure lock").clone()
    }
}
