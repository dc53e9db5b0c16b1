//! Memory per parked call, counted by a counting global allocator while
//! 100k and then 1M calls are parked in one `Shard`
//! (`cargo bench -p sipark-benches --bench memory`). It prints; it times
//! nothing.
//!
//! What is counted: the bytes of every live heap allocation (the sizes
//! asked of the allocator; the allocator's own overhead and rounding are
//! not counted), read at quiet points: after the parks, the virtual clock
//! is moved 40 s on (past 64·T1 = 32 s and T4 = 5 s) and the timers run, so
//! every transaction has ended and only the shard's lasting state is left:
//! the calls, their dialogs, extensions, their index, timer-heap entries,
//! and whatever capacity maps and the heap kept from the busiest moment.
//! The shard's send-buffer pool is excluded: sent buffers are not given
//! back (no `recycle`), so the pool stays empty; in an engine it is capped
//! at 1,024 buffers of at most 4 KiB per shard whatever is parked.
//!
//! bytes per parked call = (live bytes now − live bytes at the baseline) / calls.
//!
//! Two cases, one call per extension, 10 extensions per tenant, 1 ms of
//! virtual time per park (about 32,000 park transactions alive at the
//! busiest):
//! * no devices: the baseline is the new shard; an extension exists only
//!   because a call is parked on it, so it is counted;
//! * 2 devices per extension: all 2 × 1M devices are registered first; the
//!   baseline is taken after the registrations' transactions have ended, so
//!   bindings and extensions are not counted; each park sends 2 NOTIFYs,
//!   answered 200 at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sipark::proto::dialog::Dialog;
use sipark::proto::park::{Call, CallState, Home};
use sipark_benches::load::mem::{ParkSim, table_config, table_home};

/// Counts live bytes and allocations on top of the system allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which
        // is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (so by `System`)
        // with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`, and
        // `new_size` is valid, as the caller guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (usize, isize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// Virtual time per park and per REGISTER.
const PARK_TICK: Duration = Duration::from_millis(1);
const REGISTER_TICK: Duration = Duration::from_micros(100);
/// Past 64·T1 and T4: every transaction has ended.
const SETTLE: Duration = Duration::from_secs(40);
const GOAL: f64 = 512.0;

struct Row {
    case: &'static str,
    bytes: f64,
    blocks: f64,
    peak: f64,
    transactions: u64,
    parked: u64,
    seconds: f64,
}

fn run(case: &'static str, devices: u32, stages: &[u32], rows: &mut Vec<Row>) -> Result<(), String> {
    let max = stages.iter().copied().max().unwrap_or(0);
    let mut sim = ParkSim::new(Arc::new(table_config(max as usize)));
    sim.recycle = false;
    let t0 = Instant::now();
    if devices > 0 {
        let mut dev = 0;
        for i in 0..max {
            let (tenant, ext) = table_home(i);
            for k in 0..devices {
                sim.register(dev, tenant, ext, k, 3600)?;
                sim.advance(REGISTER_TICK)?;
                dev += 1;
            }
        }
    }
    sim.advance(SETTLE)?;
    let bindings = sim.shard.stats().bindings.get();
    if bindings != u64::from(max * devices) {
        return Err(format!("{bindings} bindings, expected {}", max * devices));
    }
    let (base, base_blocks) = live();
    PEAK.store(base, Ordering::Relaxed);
    let mut parked = 0;
    for &stage in stages {
        while parked < stage {
            let (tenant, ext) = table_home(parked);
            sim.park(parked, 0, tenant, ext, None)?;
            sim.advance(PARK_TICK)?;
            parked += 1;
        }
        sim.advance(SETTLE)?;
        let (now, blocks) = live();
        let s = sim.shard.stats();
        if s.parked.get() != u64::from(stage) || s.overload_rejects.get() > 0 || s.notifies_failed.get() > 0 {
            return Err(format!(
                "{case}: {} parked of {stage}, {} overload rejects, {} NOTIFYs failed",
                s.parked.get(),
                s.overload_rejects.get(),
                s.notifies_failed.get()
            ));
        }
        if devices > 0 && s.notifies_sent.get() != u64::from(stage * devices) {
            return Err(format!("{case}: {} NOTIFYs sent for {stage} parks", s.notifies_sent.get()));
        }
        let per = |x: f64| x / f64::from(stage);
        rows.push(Row {
            case,
            bytes: per(now as f64 - base as f64),
            blocks: per((blocks - base_blocks) as f64),
            peak: per(PEAK.load(Ordering::Relaxed) as f64 - base as f64),
            transactions: s.transactions.get(),
            parked: s.parked.get(),
            seconds: t0.elapsed().as_secs_f64(),
        });
        let r = &rows[rows.len() - 1];
        println!(
            "{case:<22} {stage:>9} parked: {:>8.0} B/call, {:>5.1} allocations/call (goal ≤ {GOAL:.0} B: {})",
            r.bytes,
            r.blocks,
            if r.bytes <= GOAL { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let stages: &[u32] = if full { &[100_000, 1_000_000] } else { &[1_000, 5_000] };
    let mut rows = Vec::new();
    for (case, devices) in [("no devices", 0), ("2 devices/extension", 2)] {
        if let Err(e) = run(case, devices, stages, &mut rows) {
            panic!("memory benchmark, {case}: {e}");
        }
    }
    println!();
    println!("memory per parked call (one Shard; live heap bytes asked of the allocator, send-buffer pool excluded)");
    println!(
        "{:<22} {:>9} {:>10} {:>8} {:>12} {:>10} {:>6} {:>8}",
        "case", "parked", "B/call", "allocs", "peak B/call", "goal", "txns", "time s"
    );
    for r in &rows {
        println!(
            "{:<22} {:>9} {:>10.0} {:>8.1} {:>12.0} {:>10} {:>6} {:>8.1}",
            r.case,
            r.parked,
            r.bytes,
            r.blocks,
            r.peak,
            if r.bytes <= GOAL { "≤ 512 met" } else { "≤ 512 NOT" },
            r.transactions,
            r.seconds
        );
    }
    println!(
        "sizes: Call {} B (boxed in the calls map; its state {} B, its dialog {} B, its extension and parker {} B); no table of extensions",
        size_of::<Call>(),
        size_of::<CallState>(),
        size_of::<Dialog>(),
        size_of::<Home>()
    );
    println!("peak = the most live bytes while parking (transactions alive), over the baseline, per call");
}
