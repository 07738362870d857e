//! mimalloc as a global allocator, taking its plain entry points whenever
//! they already give the alignment asked for.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`,
//! which re-checks the alignment of the block it picks; callgrind counted
//! 167 instructions per order there (BENCHMARKS.md). mimalloc hands out
//! blocks of 16 bytes or more on 16-byte boundaries and smaller ones on
//! 8-byte boundaries (`alloc.c` asserts it for every block), so a layout
//! whose alignment is at most 16 and at most its size is served as is: the
//! rule `std` applies to the system allocator. Anything else goes to the
//! aligned entry points.
//!
//! The engine does not choose an allocator for a program that embeds it; the
//! `mercato` binary and the benches do, with
//! `#[global_allocator] static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;`.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every mimalloc block of at least that size has.
const NATURAL_ALIGN_BYTES_MAX: usize = 16;

/// mimalloc behind Rust's `GlobalAlloc`.
pub struct Mimalloc;

fn natural(align: usize, size: usize) -> bool {
    align <= NATURAL_ALIGN_BYTES_MAX && align <= size
}

// SAFETY: every method forwards to mimalloc, which returns null on failure
// and blocks of at least the size asked for. Alignment holds either through
// the `natural` rule above or by asking mimalloc's aligned entry points.
// Blocks from either family are freed by `mi_free`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `fresh`.
        unsafe { fresh(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `fresh`.
        unsafe { fresh(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; the new block must meet
        // the old alignment at the new size, which `natural` checks.
        unsafe {
            if natural(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// A new block from mimalloc's `plain` entry point where natural alignment
/// covers `layout`, else from its `aligned` one.
///
/// # Safety
/// `plain` and `aligned` are mimalloc's allocation entry points, which take
/// any size (and, for `aligned`, a power-of-two alignment, as a `Layout`'s
/// is) and return null or a block of at least that size.
#[inline(always)]
unsafe fn fresh(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain FFI calls into mimalloc, as the caller promises.
    unsafe {
        if natural(layout.align(), layout.size()) {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, v3): how long freed
/// memory waits before it is given back to the kernel, 1,000 ms by default
/// in this build; -1 is never.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// The heap is faulted in this many bytes at a time.
const PREFAULT_CHUNK_BYTES: usize = 1 << 20;

// Part of mimalloc's C API, compiled and linked by `libmimalloc-sys`, which
// declares them only under a feature that would add a crate.
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Fault in `bytes` of heap now, and keep freed memory from then on.
///
/// mimalloc asks for transparent huge pages, so the first write to each
/// fresh 2 MiB of heap takes a huge page fault that zeroes it; on this VM
/// that stalls a shard for milliseconds, and in a carts run it set p99 at
/// 10 ms (BENCHMARKS.md). Writing and freeing the memory at open moves
/// those faults there, and with purging off the freed memory stays in the
/// heap, touched, for the orders that come. For a process using
/// `Mimalloc` as its global allocator; the memory is not given back to the
/// kernel while it runs.
pub fn prefault_heap(bytes: usize) {
    // SAFETY: setting an option stores an integer; mimalloc reads it when it
    // next considers purging, and allows it at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Ones, not zeros: mimalloc knows fresh memory is zero and would not
    // write zeros to it, so nothing would be faulted in.
    let chunks: Vec<Vec<u8>> = (0..bytes.div_ceil(PREFAULT_CHUNK_BYTES))
        .map(|_| vec![1u8; PREFAULT_CHUNK_BYTES])
        .collect();
    std::hint::black_box(&chunks);
}

/// The purge delay mimalloc applies now, in milliseconds (-1: never).
pub fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: reading an option has no precondition.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefaulting_turns_purging_off() {
        // The default of this build (`options.c` of libmimalloc-sys 0.1.49:
        // 1,000 ms), which checks that the option's number is the purge
        // delay's; unless the environment set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 1_000);
        }
        prefault_heap(3 * PREFAULT_CHUNK_BYTES);
        assert_eq!(purge_delay_ms(), -1);
    }

    /// Sizes up to a few KiB at alignments up to 4 KiB: each block is
    /// aligned, holds what was written to it, and keeps it through a grow
    /// and a shrink.
    #[test]
    fn blocks_meet_their_layout() {
        let a = Mimalloc;
        for size in (1..=512).chain([1000, 4095, 4096, 5000, 70_000]) {
            for shift in 0..=12 {
                let layout = Layout::from_size_align(size, 1 << shift).unwrap();
                // SAFETY: sizes are non-zero, every pointer comes from `a`
                // with the layout it is freed or grown with, and each block
                // is used only within its size.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % layout.align(), 0, "{layout:?} zeroed");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    for new_size in [size * 3, size.div_ceil(2)] {
                        let p = a.alloc(layout);
                        assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
                        p.write_bytes(0xAB, size);
                        let q = a.realloc(p, layout, new_size);
                        let grown = Layout::from_size_align(new_size, layout.align()).unwrap();
                        assert_eq!(q as usize % layout.align(), 0, "{layout:?} to {new_size}");
                        let kept = size.min(new_size);
                        assert!(
                            std::slice::from_raw_parts(q, kept)
                                .iter()
                                .all(|&b| b == 0xAB)
                        );
                        a.dealloc(q, grown);
                    }
                }
            }
        }
    }
}
