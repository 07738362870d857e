//! Seats for readers: one word per thread, shared by every cache in the
//! process, where a thread says which table stripe it is reading.
//!
//! A reader-writer lock makes every reader write to the lock's cache line
//! twice, and on two cores that line moves back and forth on every hit: by
//! `perf`, the lock's two atomic operations were half of a hit's lookup. A
//! thread with a seat instead writes only to its own line: it names the
//! stripe in its seat, fences, and reads on if no writer has raised the
//! stripe's flag. A writer raises the flag, fences, and waits until no seat
//! names the stripe. The two fences make the pair a Dekker handshake: at
//! least one side sees the other, so a reader either backs off to the lock
//! or is waited for. (The scheme is that of Dice and Kogan's BRAVO, "Biased
//! Locking for Reader-Writer Locks", USENIX ATC 2019, with a seat per thread
//! instead of a hashed slot.)
//!
//! Seats are claimed once per thread and given back when it exits. Threads
//! beyond `SEATS_MAX` get none and read under the stripe's lock, as before.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// Threads that can hold a seat at once.
#[cfg(not(loom))]
pub(crate) const SEATS_MAX: usize = 128;
#[cfg(loom)]
pub(crate) const SEATS_MAX: usize = 4;

/// What a seat holds when its thread is reading nothing.
pub(crate) const IDLE: usize = 0;

#[derive(Debug)]
pub(crate) struct Seat {
    taken: AtomicBool,
    /// The stripe being read (its address), or `IDLE`.
    pub(crate) reading: AtomicUsize,
}

#[derive(Debug)]
pub(crate) struct Seats {
    seats: Box<[CachePadded<Seat>]>,
    /// One past the highest seat ever taken: how far writers look.
    high_water: AtomicUsize,
}

impl Seats {
    fn new() -> Self {
        Seats {
            seats: (0..SEATS_MAX)
                .map(|_| {
                    CachePadded::new(Seat {
                        taken: AtomicBool::new(false),
                        reading: AtomicUsize::new(IDLE),
                    })
                })
                .collect(),
            high_water: AtomicUsize::new(0),
        }
    }

    fn claim(&self) -> Option<usize> {
        let at = self.seats.iter().position(|s| {
            (s.taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed))
            .is_ok()
        })?;
        self.high_water.fetch_max(at + 1, Ordering::SeqCst);
        Some(at)
    }

    /// Whether some seat names `stripe`. Call after raising the stripe's
    /// flag and a `SeqCst` fence; the `Acquire` loads order the readers'
    /// reads before whatever the caller writes next.
    pub(crate) fn any_reading(&self, stripe: usize) -> bool {
        let high_water = self.high_water.load(Ordering::SeqCst);
        self.seats[..high_water]
            .iter()
            .any(|s| s.reading.load(Ordering::Acquire) == stripe)
    }
}

#[cfg(not(loom))]
static SEATS: std::sync::LazyLock<Seats> = std::sync::LazyLock::new(Seats::new);
#[cfg(loom)]
loom::lazy_static! {
    static ref SEATS: Seats = Seats::new();
}

pub(crate) fn seats() -> &'static Seats {
    &SEATS
}

/// A thread's claim on a seat, given back when the thread exits.
struct Mine(Option<usize>);

// Under loom the seats live only as long as one execution, and they may
// be gone before its threads' locals are dropped: a seat is then never given
// back, which a model, whose threads are few, does not miss.
#[cfg(not(loom))]
impl Drop for Mine {
    fn drop(&mut self) {
        if let Some(at) = self.0 {
            let seat = &seats().seats[at];
            seat.reading.store(IDLE, Ordering::Release);
            seat.taken.store(false, Ordering::Release);
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static MINE: Mine = Mine(seats().claim());
}
#[cfg(loom)]
loom::thread_local! {
    static MINE: Mine = Mine(seats().claim());
}

/// The index of this thread's seat, if it has one: no other live thread
/// has the same, so it can also pick state this thread alone writes.
pub(crate) fn me() -> Option<usize> {
    MINE.try_with(|m| m.0).ok().flatten()
}

/// Seat `at`, if it is not already in a read (a read inside a read must not
/// clear the outer one's claim).
pub(crate) fn idle_seat(at: usize) -> Option<&'static Seat> {
    let seat: &'static Seat = &seats().seats[at];
    (seat.reading.load(Ordering::Relaxed) == IDLE).then_some(seat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_is_given_back_when_its_thread_exits() {
        // One thread at a time, twice as many as there are seats: each finds
        // one free only if those before gave theirs back.
        for i in 0..2 * SEATS_MAX {
            let seat = std::thread::spawn(me).join().unwrap();
            assert!(seat.is_some(), "thread {i} found no seat");
        }
    }

    #[test]
    fn a_read_inside_a_read_gets_no_seat() {
        let at = me().expect("a seat");
        let seat = idle_seat(at).expect("idle");
        seat.reading.store(1, Ordering::Relaxed);
        assert!(
            idle_seat(at).is_none(),
            "the outer read's claim would be cleared"
        );
        seat.reading.store(IDLE, Ordering::Relaxed);
        assert!(idle_seat(at).is_some());
    }
}
