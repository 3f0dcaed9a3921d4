//! A global allocator that counts live heap bytes and their high-water mark: how peak
//! memory is measured on the host backends (Flex, NdArray), whose tensors are heap
//! allocations. One file, included with `#[path]` by the training example and by the
//! benches, each of which installs it as its `#[global_allocator]`.
//!
//! Hand-written rather than a crate: `stats_alloc` counts calls and totals but keeps no
//! high-water mark, and `peak_alloc` implements `realloc` as allocate + copy + free and
//! `alloc_zeroed` as allocate + write zeros, which would slow the very steps the benches
//! time. This one forwards every call to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

// Statics rather than fields, so the counts can be read without a reference to the
// installed allocator.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// `System`, counting. Install it with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

#[allow(dead_code)] // each includer uses part of it
impl CountingAlloc {
    /// Bytes allocated and not yet freed.
    pub fn live_bytes() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    /// The most bytes live at once since the last [`CountingAlloc::reset_peak`].
    pub fn peak_bytes() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Starts a new high-water mark at what is live now, and returns that baseline.
    pub fn reset_peak() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }

    /// Peak bytes allocated while `f` ran, above what was live when it started.
    pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = Self::reset_peak();
        let result = f();
        (result, Self::peak_bytes().saturating_sub(base))
    }

    fn grew(bytes: usize) {
        let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(bytes: usize) {
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as shrink-then-grow: an in-place realloc never holds both sizes.
            Self::shrank(layout.size());
            Self::grew(new_size);
        }
        new
    }
}
