//! ZooKeeper's client frame decoder, fed bytes as a connection reads them: a length-prefixed
//! handshake, then requests (`zkraft::fuzzing::client_frames`, which checks the decoder's
//! invariants). This target also counts allocations: none may exceed
//! `zkraft::fuzzing::allocation_bound` of the input, so a length prefix trusted beyond the
//! frame is found even when the allocation would succeed.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;

/// The system allocator, remembering the largest allocation since the last reset.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

fuzz_target!(|data: &[u8]| {
    LARGEST.store(0, Relaxed);
    zkraft::fuzzing::client_frames(data);
    let largest = LARGEST.load(Relaxed);
    let bound = zkraft::fuzzing::allocation_bound(data.len());
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes decoding {} bytes (bound {bound})",
        data.len()
    );
});
