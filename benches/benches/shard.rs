//! The sans-IO shard alone: complete park cycles through ONE
//! `sipark::proto::shard::Shard` (n_shards = 1), fed in memory by the same
//! cycle state machine as `sipark-load` (`load::mem::ShardCycles`), with no
//! sockets (`cargo bench -p sipark-benches --bench shard`).
//!
//! A cycle (2 devices per extension) is 11 datagrams into the shard and 11
//! out: park INVITE/200/ACK, 2 park-info NOTIFYs/200, retrieve INVITE
//! (100, re-INVITE/200/ACK, 200/ACK), 2 clearing NOTIFYs/200, BYE relayed
//! to the parked party (200) and answered (200).
//!
//! Set-up: 1,000 tenants × 10 extensions × 2 devices registered first;
//! cycles run in rounds of 64 started together, whose messages interleave
//! through the shard; `Config::default()`. The shard's clock is virtual:
//! 100 µs pass per datagram the shard receives (10,000 datagrams/s, about
//! 900 cycles/s), and `handle_timeout` runs whenever a timer is due, so
//! transactions end as in an engine at that load (about 140,000 alive at
//! steady state, reached in the warm-up).
//!
//! Two measurements, both per cycle:
//! * `shard_only`: time inside the shard (`handle`, `handle_timeout`,
//!   `poll_transmit`, `recycle`), summed around each call: the ceiling of
//!   the protocol logic on one core;
//! * `with_driver`: wall time including the generator building and parsing
//!   its side of every message.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use sipark::proto::config::Config;
use sipark_benches::load::mem::{ENGINE, ShardCycles};
use sipark_benches::load::{LoadConfig, Mode};

/// The engine binary's allocator, so allocation costs are the engine's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANTS: u32 = 1000;
const EXTENSIONS: u32 = 10;
const DEVICES: u32 = 2;
const CONCURRENCY: u32 = 64;
/// Virtual time per datagram into the shard.
const STEP: Duration = Duration::from_micros(100);
/// Cycles run before measuring: past 32 s of virtual time, so the
/// transaction count has reached its steady state.
const WARM_CYCLES: u64 = 40_000;

fn per_cycle(d: Duration, cycles: u64) -> f64 {
    d.as_secs_f64() / cycles.max(1) as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut load = LoadConfig::new(ENGINE);
    load.tenants = if full { TENANTS } else { 20 };
    load.extensions = EXTENSIONS;
    load.devices = DEVICES;
    load.mode = Mode::Closed { concurrency: CONCURRENCY };
    let concurrency = if full { CONCURRENCY } else { 8 };
    let engine = Arc::new(Config::default());
    let mut sim = ShardCycles::new(&load, engine, concurrency, STEP).unwrap_or_else(|e| panic!("set-up: {e}"));
    let registered = sim.shard.stats().bindings.get();
    if let Err(e) = sim.run(if full { WARM_CYCLES } else { 200 }) {
        panic!("warm-up: {e}");
    }
    let warm = sim.total;

    let mut c = Criterion::default().configure_from_args();
    let mut failed: Option<String> = None;
    {
        let mut g = c.benchmark_group("shard");
        g.throughput(Throughput::Elements(1));
        g.sample_size(50);
        g.measurement_time(Duration::from_secs(8));
        g.bench_function(BenchmarkId::new("park_cycle", "shard_only"), |b| {
            b.iter_custom(|iters| match sim.run(iters) {
                Ok(r) => r.shard_time,
                Err(e) => {
                    failed.get_or_insert(e);
                    Duration::from_nanos(1)
                }
            })
        });
        g.bench_function(BenchmarkId::new("park_cycle", "with_driver"), |b| {
            b.iter_custom(|iters| match sim.run(iters) {
                Ok(r) => r.wall_time,
                Err(e) => {
                    failed.get_or_insert(e);
                    Duration::from_nanos(1)
                }
            })
        });
        g.finish();
    }
    c.final_summary();
    if let Some(e) = failed {
        panic!("a cycle run failed, figures are void: {e}");
    }

    // Summary over every cycle run after the warm-up (criterion's warm-up
    // and measurement of both benchmarks).
    let t = sim.total;
    let cycles = t.cycles - warm.cycles;
    let shard = per_cycle(t.shard_time - warm.shard_time, cycles);
    let wall = per_cycle(t.wall_time - warm.wall_time, cycles);
    let din = (t.datagrams_in - warm.datagrams_in) as f64 / cycles.max(1) as f64;
    let dout = (t.datagrams_out - warm.datagrams_out) as f64 / cycles.max(1) as f64;
    let s = sim.shard.stats();
    let c = &sim.load_gen.c;
    println!();
    println!("shard summary (one Shard, n_shards = 1, virtual clock {} µs per datagram in)", STEP.as_micros());
    println!(
        "  set-up                 {} tenants × {EXTENSIONS} ext × {DEVICES} devices = {registered} bindings, rounds of {concurrency} cycles",
        load.tenants
    );
    println!("  cycles measured        {cycles} (after {} warm-up cycles)", warm.cycles);
    println!("  datagrams per cycle    {din:.2} in, {dout:.2} out");
    println!(
        "  shard only             {:>8.2} µs/cycle  {:>10.0} cycles/s  {:>10.0} datagrams/s in+out",
        shard * 1e6,
        1.0 / shard,
        (din + dout) / shard
    );
    println!("  with driver            {:>8.2} µs/cycle  {:>10.0} cycles/s", wall * 1e6, 1.0 / wall);
    println!(
        "  shard state at end     {} transactions, {} bindings, {} parked, {} bridged",
        s.transactions.get(),
        s.bindings.get(),
        s.parked.get(),
        s.bridged.get()
    );
    println!(
        "  errors                 {} failed cycles, {} shard retransmissions, {} generator retransmissions, {} stray, {} overload rejects, {} misdirected",
        c.failed,
        s.retransmissions.get(),
        c.retransmissions,
        c.stray,
        s.overload_rejects.get(),
        sim.misdirected + sim.load_gen.net.misdirected
    );
}
