//! Parser test suite (`cargo test -p sipark --test parser`).
//!
//! * `corpus`:      the corpus files are well-formed and every file parses to
//!   the hand-written values in `expect.rs`.
//! * `differential`: the same fields, compared with `rsip` 0.4.
//! * `details`:     typed accessors on selected corpus files.
//! * `edges`:       RFC 3261 corners (addr-spec params, case rules, LWS).
//! * `errors`:      broken messages give the right `ParseError`.
//! * `alloc_free`:  parsing and the hot-path accessors allocate nothing
//!   (counted by the allocator below, per thread).
//! * `roundtrip`:   re-parsing gives the same fields; mutated input never
//!   panics.

mod alloc_free;
mod corpus;
mod details;
mod differential;
mod edges;
mod errors;
mod expect;
mod roundtrip;
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread while counting is switched
/// on for it (see [`count_allocs`]); everything is forwarded to `System`.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // `try_with`: never panic inside the allocator, even during thread exit.
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's; forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as the caller's; forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: `ptr` came from `System` through this allocator with
        // `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with
        // `layout`; forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the number of allocations
/// (alloc, alloc_zeroed, realloc) this thread made during it. Other test
/// threads are not counted.
pub fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}
