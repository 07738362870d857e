//! A bounded single-producer, single-consumer ring: the mailbox from one
//! shard to another. Its two ends are separate types that cannot be cloned,
//! so the single-producer and single-consumer rules hold by construction.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Next slot to read; written only by the consumer. Padded so the two
    /// ends never share a cache line.
    head: CachePadded<AtomicUsize>,
    /// Next slot to write; written only by the producer.
    tail: CachePadded<AtomicUsize>,
}

// SAFETY: a slot is written only by the producer before it publishes `tail`
// and read only by the consumer after it observes that `tail`, so no slot is
// touched by two threads at once; values of `T` move between threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns its `T`s.
unsafe impl<T: Send> Send for Ring<T> {}

/// The sending end.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
}

/// The receiving end.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
}

/// A ring holding at most `capacity` items.
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(capacity > 0);
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let ring = Arc::new(Ring {
        slots,
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
    });
    (Producer { ring: ring.clone() }, Consumer { ring })
}

impl<T> Producer<T> {
    /// Adds `value`, or gives it back when the ring is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let r = &*self.ring;
        let tail = r.tail.load(Ordering::Relaxed);
        let head = r.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) == r.slots.len() {
            return Err(value);
        }
        let slot = &r.slots[tail % r.slots.len()];
        slot.with_mut(|p| {
            debug_assert!(tail.wrapping_sub(head) < r.slots.len());
            // SAFETY: `tail - head < capacity`, so the consumer has finished
            // with this slot (its `head` store, acquired above, says so) and
            // will not read it until the `tail` store below publishes it.
            unsafe { (*p).write(value) };
        });
        r.tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, if any.
    pub fn pop(&self) -> Option<T> {
        let r = &*self.ring;
        let head = r.head.load(Ordering::Relaxed);
        let tail = r.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let slot = &r.slots[head % r.slots.len()];
        let value = slot.with_mut(|p| {
            debug_assert!(tail.wrapping_sub(head) <= r.slots.len());
            // SAFETY: `head != tail`, so the producer wrote this slot and
            // published it with the `tail` store acquired above; it will not
            // write it again until the `head` store below frees it.
            unsafe { (*p).assume_init_read() }
        });
        r.head.store(head.wrapping_add(1), Ordering::Release);
        Some(value)
    }

    /// Whether the ring looks empty now (a push may land right after).
    pub fn is_empty(&self) -> bool {
        let r = &*self.ring;
        r.head.load(Ordering::Relaxed) == r.tail.load(Ordering::Acquire)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for i in head..tail {
            self.slots[i % self.slots.len()].with_mut(|p| {
                debug_assert!(tail.wrapping_sub(head) <= self.slots.len());
                // SAFETY: both ends are gone (we hold the last `Arc`), and
                // slots in `head..tail` were written and never read.
                unsafe { (*p).assume_init_drop() }
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let (tx, rx) = ring(2);
        assert_eq!(rx.pop(), None::<u32>);
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert_eq!(tx.push(3), Err(3));
        assert_eq!(rx.pop(), Some(1));
        tx.push(3).unwrap();
        assert_eq!(rx.pop(), Some(2));
        assert_eq!(rx.pop(), Some(3));
        assert!(rx.is_empty());
    }

    #[test]
    fn drops_what_was_never_read() {
        let item = Arc::new(());
        let (tx, rx) = ring(4);
        tx.push(item.clone()).unwrap();
        tx.push(item.clone()).unwrap();
        drop(rx.pop());
        drop((tx, rx));
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn threads_see_every_item_in_order() {
        let (tx, rx) = ring(8);
        let n = 100_000u64;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                let mut v = i;
                while let Err(back) = tx.push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut next = 0;
        while next < n {
            if let Some(v) = rx.pop() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        t.join().unwrap();
    }
}
