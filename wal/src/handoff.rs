//! The hand-off between a shard and its flusher thread.
//!
//! The shard frames records into a buffer of its own and offers it here; the
//! flusher takes whatever has gathered, writes and syncs it, and publishes the
//! LSNs that are now written and durable. The lock is held only to swap
//! buffers, never across I/O, so the shard never waits on a disk. While the
//! flusher is busy, offers pile up into one pending batch: that is the group
//! commit, one sync for everything that arrived during the previous one.
//! Under `always` the flusher may also hold a sync back while the shard
//! stays busy ([`Handoff::gather`]), until the shard tells it that its loop
//! went idle ([`Handoff::producer_idle`]) or the wait runs out.

use std::time::{Duration, Instant};

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
    /// The flusher holds back a sync to gather more records (see
    /// [`Handoff::gather`]); offers do not wake it, a hurry does.
    gathering: bool,
    hurried: bool,
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
    /// The shard's loop is idle: nothing more is coming soon, so a
    /// gathering flusher would only add latency. Set under the exchange
    /// lock (see [`Handoff::producer_idle`]).
    producer_idle: AtomicBool,
    /// The flusher's syncs, for metrics; written by the flusher only.
    pub stats: crate::stats::SyncStats,
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
            producer_idle: AtomicBool::new(false),
            stats: crate::stats::SyncStats::default(),
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

    /// Flusher: move the pending records into `into` (which must be empty)
    /// if there are any, without waiting.
    pub fn try_take(&self, into: &mut Batch) -> bool {
        debug_assert!(into.is_empty());
        let mut ex = self.exchange.lock().expect("handoff lock");
        self.move_pending(&mut ex, into)
    }

    /// Moves the pending records, if any, into `into`, under the lock.
    fn move_pending(&self, ex: &mut Exchange, into: &mut Batch) -> bool {
        if ex.pending.is_empty() {
            return false;
        }
        std::mem::swap(&mut ex.pending, into);
        self.pending_bytes.store(0, Ordering::Relaxed);
        true
    }

    /// Flusher: move the pending records into `into` (which must be empty),
    /// waiting up to `timeout` (forever for `None`) for some to arrive.
    pub fn take(&self, into: &mut Batch, timeout: Option<Duration>) -> Taken {
        debug_assert!(into.is_empty());
        let mut ex = self.exchange.lock().expect("handoff lock");
        loop {
            if self.move_pending(&mut ex, into) {
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

    /// Shard: its loop found nothing to do (`true`) or has work again
    /// (`false`). Going idle cuts short a flusher's [`Handoff::gather`]: no
    /// more records are coming soon, so the sync should start now.
    pub fn producer_idle(&self, idle: bool) {
        if !idle {
            // A flusher that reads a stale `true` syncs without gathering:
            // a little sooner than it had to, never later.
            self.producer_idle.store(false, Ordering::Release);
            return;
        }
        // Under the lock, so a flusher that starts gathering either sees
        // the shard idle, or is waiting already and gets the hurry.
        let mut ex = self.exchange.lock().expect("handoff lock");
        self.producer_idle.store(true, Ordering::Release);
        if ex.gathering {
            ex.hurried = true;
            drop(ex);
            self.ready.notify_one();
        }
    }

    /// Flusher: hold the next sync back for up to `wait`, so that it carries
    /// what the shard appends meanwhile. Ends early when the shard goes idle
    /// or closes the log, and does not start if the shard is idle already.
    /// Offers made meanwhile stay pending (and wake nobody) for the next
    /// take.
    pub fn gather(&self, wait: Duration) {
        let mut ex = self.exchange.lock().expect("handoff lock");
        if self.producer_idle.load(Ordering::Acquire) {
            return;
        }
        ex.gathering = true;
        ex.hurried = false;
        let until = Instant::now() + wait;
        while !ex.hurried && !ex.closing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let (guard, result) = self.ready.wait_timeout(ex, left).expect("handoff lock");
            ex = guard;
            if result.timed_out() {
                break;
            }
        }
        ex.gathering = false;
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn batch(bytes: &[u8], last_lsn: Lsn) -> Batch {
        Batch {
            bytes: bytes.to_vec(),
            rolls: Vec::new(),
            last_lsn,
        }
    }

    #[test]
    fn gathering_does_not_start_while_the_shard_is_idle() {
        let h = Handoff::starting_after(0);
        h.producer_idle(true);
        let started = Instant::now();
        h.gather(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn offers_do_not_end_a_gathering_but_its_bound_does() {
        let h = Arc::new(Handoff::starting_after(0));
        let shard = {
            let h = h.clone();
            std::thread::spawn(move || {
                for lsn in 1..=3 {
                    h.offer(&mut batch(&[lsn as u8], lsn));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let wait = Duration::from_millis(40);
        let started = Instant::now();
        h.gather(wait);
        assert!(started.elapsed() >= wait);
        shard.join().unwrap();
        let mut b = Batch::default();
        assert!(h.try_take(&mut b));
        assert_eq!((b.bytes.as_slice(), b.last_lsn), (&[1u8, 2, 3][..], 3));
        assert!(!h.try_take(&mut Batch::default()));
    }

    /// Gathers with an hour's bound while another thread does `act` after
    /// 20 ms; `act` must end the gathering long before the bound.
    fn gathering_ended_by(h: &Arc<Handoff>, act: fn(&Handoff)) {
        let other = {
            let h = h.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                act(&h);
            })
        };
        let started = Instant::now();
        h.gather(Duration::from_secs(3600));
        assert!(started.elapsed() < Duration::from_secs(30));
        other.join().unwrap();
    }

    #[test]
    fn a_shard_going_idle_ends_a_gathering() {
        let h = Arc::new(Handoff::starting_after(0));
        gathering_ended_by(&h, |h| h.producer_idle(true));
        // Busy again: the next gathering waits out its bound.
        h.producer_idle(false);
        let started = Instant::now();
        h.gather(Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn closing_ends_a_gathering() {
        gathering_ended_by(&Arc::new(Handoff::starting_after(0)), Handoff::close);
    }
}
