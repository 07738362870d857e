//! The shutdown gate between callers and shard threads.
//!
//! A caller enters, checks that the gate is open, queues its request and
//! leaves. A shard that stops closes the gate, waits until nobody is inside,
//! and only then answers what is left in its queue with `Shutdown`. Because a
//! caller announces itself before it looks at the gate, and the shard closes
//! the gate before it counts callers, no request can land in a queue after its
//! shard's last look: every caller gets an answer.

use crate::sync::{AtomicBool, AtomicUsize, Ordering, fence};

#[derive(Default)]
pub struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
}

/// Proof that a caller is inside an open gate; leaving is dropping it.
pub struct Pass<'a>(&'a Gate);

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    /// Enter, unless the gate is closed.
    pub fn enter(&self) -> Option<Pass<'_>> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        // A store then a load of another variable: only a SeqCst fence keeps
        // them in order (loom, rightly, does not accept SeqCst accesses alone).
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.inside.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Pass(self))
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Pairs with the fence in `enter`.
        fence(Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Closed, and every caller that got in has left.
    pub fn is_drained(&self) -> bool {
        self.is_closed() && self.inside.load(Ordering::SeqCst) == 0
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}
