//! Waking a sleeping shard without a lost wake-up, and without a system call
//! when it is awake.
//!
//! A sender publishes its work (a ring push, a queue push), then asks
//! [`Doorbell::needs_ring`]; only a `true` costs a `mio::Waker::wake`. The
//! shard calls [`Doorbell::going_to_sleep`], looks at its queues once more,
//! and sleeps only if they are empty. The fences order each side's store
//! before its load, so either the shard sees the work or the sender sees the
//! flag: never neither.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, Ordering, fence};

#[derive(Default)]
pub struct Doorbell {
    sleeping: CachePadded<AtomicBool>,
}

impl Doorbell {
    pub fn new() -> Self {
        Doorbell::default()
    }

    /// After publishing work: whether the receiver must be woken.
    pub fn needs_ring(&self) -> bool {
        fence(Ordering::SeqCst);
        self.sleeping.load(Ordering::SeqCst)
    }

    /// Before the receiver's last look at its queues.
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The receiver is awake again.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
