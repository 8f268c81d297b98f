//! A global allocator that keeps hostile length prefixes from aborting the process.
//!
//! `kafka-protocol` (0.18) sizes `Vec`s from array lengths read off the wire before decoding
//! the elements (upstream kafka-protocol-rs PRs #152/#161/#200 are still open). A 20-byte frame
//! can claim 2^31 elements and ask for hundreds of GiB; the system allocator refuses, and Rust
//! aborts on allocation failure, taking every client down with it.
//!
//! This allocator serves requests of 1 GiB and more with `mmap(MAP_NORESERVE)`: the claim
//! reserves address space only, the decoder runs out of input after a few elements and returns
//! an error, and the mapping is released. Smaller requests go to the system allocator unchanged.
//! The `weir` binary and the broker's tests install it with `#[global_allocator]`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// See the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedAlloc;

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a fresh
// anonymous private mapping of exactly `layout.size()` bytes (and unmapped with that size); the
// choice depends only on the layout, which Rust passes unchanged to `dealloc`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: a plain anonymous mapping request; failure is reported as MAP_FAILED.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block (both our own paths).
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
