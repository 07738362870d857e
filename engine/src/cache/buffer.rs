//! Striped, lossy buffers of hits, so a hit never waits for the policy lock.
//!
//! A reader appends its hit to the stripe its reader seat owns (see
//! [`readers`](super::readers)), or to the one stripe shared by threads
//! without one of those. A thread that takes the policy lock to insert or
//! remove drains its own stripe and the shared one into the policy, in
//! order; a reader that finds its stripe full tries the lock and drains
//! every stripe, as do `clear` and `purge_expired`. A thread's hits
//! therefore reach the policy at its own next insert or remove in the
//! segment, or when some thread's stripe fills. If the lock is held when
//! a reader's stripe is full, that hit is dropped: recency is a hint, and
//! losing or delaying some under concurrency costs a little hit ratio,
//! never correctness (Caffeine and moka make the same trade).
//!
//! One thread alone never loses or delays a hit: its `try_lock` cannot
//! fail, and every insert and remove drains its stripe first. That is what
//! makes the single-threaded policies exact.

use crossbeam_utils::CachePadded;

use super::list::Handle;
use crate::sync::{AtomicU64, Ordering};

/// Hits one stripe holds before a reader must drain.
#[cfg(not(loom))]
pub(crate) const STRIPE_SLOTS: usize = 64;
/// Small under loom, so a model reaches the full-stripe path in a few steps.
#[cfg(loom)]
pub(crate) const STRIPE_SLOTS: usize = 2;
/// Owned stripes at most; threads in higher seats, or in none, share one more.
pub(crate) const STRIPES_MAX: usize = 64;

const _: () = assert!(STRIPE_SLOTS.is_power_of_two());
const _: () = assert!(STRIPES_MAX.is_power_of_two());

/// One stripe: a ring of hits. `tail` counts every hit ever appended (so it
/// doubles as the hit counter); `head` is how far the drainer has read, and
/// only the drainer, under the policy lock, moves it.
#[derive(Debug)]
struct Stripe {
    tail: AtomicU64,
    head: AtomicU64,
    misses: AtomicU64,
    slots: [AtomicU64; STRIPE_SLOTS],
}

/// What a reader learned when it appended a hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    Buffered,
    /// The stripe is full and the hit is not in it: drain under the lock and
    /// apply it by hand, or drop it.
    Full,
}

#[derive(Debug)]
pub(crate) struct Buffers {
    /// One stripe per reader seat below `stripe_count()`, written by the
    /// thread in that seat alone; then one shared by every other thread.
    stripes: Box<[CachePadded<Stripe>]>,
}

impl Buffers {
    pub(crate) fn new() -> Self {
        Buffers {
            stripes: (0..stripe_count() + 1)
                .map(|_| {
                    CachePadded::new(Stripe {
                        tail: AtomicU64::new(0),
                        head: AtomicU64::new(0),
                        misses: AtomicU64::new(0),
                        slots: std::array::from_fn(|_| AtomicU64::new(0)),
                    })
                })
                .collect(),
        }
    }

    /// The stripe of the thread in seat `me`, and whether it writes there
    /// alone.
    fn pick(&self, me: Option<usize>) -> (&Stripe, bool) {
        let shared = self.stripes.len() - 1;
        match me {
            Some(at) if at < shared => (&self.stripes[at], true),
            _ => (&self.stripes[shared], false),
        }
    }

    /// Records a hit by the thread in seat `me`. Takes no lock and writes
    /// to no shared cache line but the stripe's.
    pub(crate) fn append(&self, me: Option<usize>, handle: Handle) -> Appended {
        let (stripe, alone) = self.pick(me);
        let at = bump(&stripe.tail, alone);
        let head = stripe.head.load(Ordering::SeqCst);
        // `at < head`: a drainer already went past this position (it saw the
        // claim but not the write); a late write would land a lap later.
        if at < head || at - head >= STRIPE_SLOTS as u64 {
            return Appended::Full;
        }
        stripe.slots[at as usize % STRIPE_SLOTS].store(handle.0, Ordering::Release);
        Appended::Buffered
    }

    pub(crate) fn miss(&self, me: Option<usize>) {
        let (stripe, alone) = self.pick(me);
        bump(&stripe.misses, alone);
    }

    /// Feeds the hits buffered by the thread in seat `me`, and those in the
    /// shared stripe, to `apply`, oldest first within a stripe. Other
    /// threads' stripes are left to them: reading a ring its owner keeps
    /// writing moves its cache lines between cores on every drain, which
    /// cost 6 to 13% of the throughput of two threads at ~80% hits
    /// (`cache_get_hit80/*/2t`, BENCHMARKS.md). Must be called with the
    /// policy lock held: it is the only writer of `head`.
    pub(crate) fn drain(&self, me: Option<usize>, mut apply: impl FnMut(Handle)) {
        let (own, alone) = self.pick(me);
        Self::drain_stripe(own, &mut apply);
        if alone {
            let shared = self.stripes.last().expect("a shared stripe");
            Self::drain_stripe(shared, &mut apply);
        }
    }

    /// Feeds every buffered hit of every stripe to `apply`; under the
    /// policy lock.
    pub(crate) fn drain_all(&self, mut apply: impl FnMut(Handle)) {
        for stripe in self.stripes.iter() {
            Self::drain_stripe(stripe, &mut apply);
        }
    }

    fn drain_stripe(stripe: &Stripe, apply: &mut impl FnMut(Handle)) {
        let head = stripe.head.load(Ordering::SeqCst);
        let tail = stripe.tail.load(Ordering::SeqCst);
        if head == tail {
            return;
        }
        // Past two laps, older positions alias slots read below anyway.
        let from = head.max(tail.saturating_sub(2 * STRIPE_SLOTS as u64));
        for at in from..tail {
            // A slot a racing reader has claimed but not yet written reads
            // as 0 and is skipped; its hit lands in a later lap or is
            // overwritten, which is the loss this buffer allows.
            // A load and a store rather than a swap: a reader's write
            // landing between them is lost, which the buffer allows, and
            // the locked swap was a third of the drain's time (`perf`).
            let slot = &stripe.slots[at as usize % STRIPE_SLOTS];
            let raw = slot.load(Ordering::Acquire);
            if raw != 0 {
                slot.store(0, Ordering::Relaxed);
                apply(Handle(raw));
            }
        }
        stripe.head.store(tail, Ordering::SeqCst);
    }

    /// Drops every buffered hit (after a clear, none names a live entry).
    pub(crate) fn discard(&self) {
        self.drain_all(|_| {});
    }

    pub(crate) fn hits(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.tail.load(Ordering::SeqCst))
            .sum()
    }

    pub(crate) fn misses(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.misses.load(Ordering::SeqCst))
            .sum()
    }
}

/// Adds one to a counter, returning the old value. A counter only this
/// thread writes needs no locked instruction, which was a tenth of a hit's
/// time (`perf`); its readers see it a moment late at worst.
fn bump(counter: &AtomicU64, alone: bool) -> u64 {
    if alone {
        let old = counter.load(Ordering::Relaxed);
        counter.store(old + 1, Ordering::Relaxed);
        old
    } else {
        counter.fetch_add(1, Ordering::SeqCst)
    }
}

/// Stripes owned by a seat each.
fn stripe_count() -> usize {
    if cfg!(loom) {
        // One owned stripe, for the first thread to read (in the models,
        // the one that fills the cache), so the others race on the shared one.
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 2).next_power_of_two().clamp(2, STRIPES_MAX)
}
