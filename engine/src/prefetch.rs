//! A hint to the CPU to start fetching a cache line the program will read
//! soon. Used where a lookup's address is known well before its result is
//! needed: the next eviction victim in the caches, the order table's index
//! slot for orders a shard is about to run.

/// Asks for `item`'s cache line; nothing on other targets or under loom.
#[inline(always)]
pub(crate) fn prefetch<T>(item: &T) {
    prefetch_at(item as *const T);
}

/// Asks for every cache line `item` lies on, for an item that may cross a
/// line (a 24-byte slot does in a quarter of an array of them): a lookup
/// that finds the first line in cache would still stall on the second.
pub(crate) fn prefetch_whole<T>(item: &T) {
    let first = item as *const T;
    prefetch_at(first);
    prefetch_at(
        first
            .cast::<u8>()
            .wrapping_add(std::mem::size_of::<T>() - 1),
    );
}

/// Asks for the cache line of `at`, which need not point into anything
/// live: for a line computed without reading memory, such as the one just
/// past a list's first entries.
#[inline(always)]
pub(crate) fn prefetch_at<T>(at: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch reads nothing the program can observe and cannot
    // fault, whatever the address; SSE, which provides it, is part of every
    // x86_64 target.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = at;
}
