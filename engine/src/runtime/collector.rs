//! Hands answers from shard threads to a caller that waits for all of them.
//! A batch's commands may run on several shards and finish in any order; each
//! answer goes into its slot, and the last one wakes the caller.

use crate::sync::{Condvar, Mutex};

struct Slots<T> {
    items: Vec<Option<T>>,
    remaining: usize,
}

/// Called by the thread that fills the last slot: for a caller that does not
/// block in [`Collector::wait`] but polls, such as a shard's network loop.
pub type OnDone = Box<dyn Fn() + Send + Sync>;

/// Slots for `n` answers and a caller waiting for them.
pub struct Collector<T> {
    slots: Mutex<Slots<T>>,
    done: Condvar,
    on_done: Option<OnDone>,
}

impl<T> Collector<T> {
    pub fn new(n: usize) -> Self {
        Collector {
            slots: Mutex::new(Slots {
                items: (0..n).map(|_| None).collect(),
                remaining: n,
            }),
            done: Condvar::new(),
            on_done: None,
        }
    }

    /// A collector that calls `on_done` once its last slot is filled.
    pub fn with_on_done(n: usize, on_done: OnDone) -> Self {
        Collector {
            on_done: Some(on_done),
            ..Collector::new(n)
        }
    }

    /// The answers in slot order if every slot is filled, without waiting.
    pub fn try_take(&self) -> Option<Vec<T>> {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if s.remaining > 0 {
            return None;
        }
        Some(
            s.items
                .drain(..)
                .map(|v| v.expect("every slot filled"))
                .collect(),
        )
    }

    /// Answers in bulk under one lock. Each slot must be filled exactly once.
    pub fn fill(&self, answers: impl IntoIterator<Item = (usize, T)>) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (i, value) in answers {
            debug_assert!(s.items[i].is_none(), "slot {i} filled twice");
            s.items[i] = Some(value);
            s.remaining -= 1;
        }
        if s.remaining == 0 {
            self.done.notify_all();
            drop(s);
            if let Some(f) = &self.on_done {
                f();
            }
        }
    }

    /// Blocks until every slot is filled, then takes the answers in slot order.
    pub fn wait(&self) -> Vec<T> {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while s.remaining > 0 {
            s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.items
            .drain(..)
            .map(|v| v.expect("every slot filled"))
            .collect()
    }
}
