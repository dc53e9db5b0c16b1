//! `sipark-icount`: park cycles through ONE in-memory `Shard`, made to be
//! run under callgrind by `cargo xtask bench --instructions`, which counts
//! the instructions of the measured window only.
//!
//! The set-up is the `shard` criterion bench's (`benches/benches/shard.rs`):
//! [`ShardCycles`] with 1,000 tenants × 10 extensions × 2 devices registered,
//! rounds of 64 cycles whose messages interleave, 100 µs of virtual time per
//! datagram into the shard, `Config::default()`, mimalloc. It registers
//! every device, runs `--warmup-cycles` cycles (by default 40,000: past the
//! 32 s of virtual time after which the transaction count is steady), then
//! runs `--cycles` more inside [`icount_window`], the one function callgrind
//! collects in (`--collect-atstart=no --toggle-collect=...icount_window`).
//! Inside it, every call into the shard goes through
//! `load::mem::shard_entry`, whose inclusive cost is the shard's share.
//!
//! It prints `key=value` lines (`measured_cycles`, `datagrams_in`,
//! `datagrams_out`, ...) that xtask checks. Without valgrind it runs too,
//! and prints the same lines.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sipark::proto::config::Config;
use sipark_benches::load::mem::{ENGINE, ShardCycles, icount_window};
use sipark_benches::load::{LoadConfig, Mode};

/// The engine binary's allocator, so that allocation costs are the engine's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Park cycles through one in-memory shard, for instruction counts.
#[derive(Debug, Parser)]
#[command(name = "sipark-icount", version, about)]
struct Args {
    /// Cycles run before the measured window (not counted).
    #[arg(long, value_name = "N", default_value_t = 40_000)]
    warmup_cycles: u64,
    /// Cycles in the measured window.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    cycles: u64,
    /// Tenants.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    tenants: u32,
    /// Extensions per tenant.
    #[arg(long, value_name = "N", default_value_t = 10)]
    extensions: u32,
    /// Registered devices per extension.
    #[arg(long, value_name = "N", default_value_t = 2)]
    devices: u32,
    /// Cycles started together in each round.
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: u32,
    /// Virtual microseconds per datagram into the shard.
    #[arg(long, value_name = "US", default_value_t = 100)]
    step_us: u64,
}

fn main() -> ExitCode {
    let a = Args::parse(); // exits 2 on bad flags
    if a.cycles == 0 {
        eprintln!("sipark-icount: --cycles must be at least 1");
        return ExitCode::from(2);
    }
    let mut load = LoadConfig::new(ENGINE);
    load.tenants = a.tenants;
    load.extensions = a.extensions;
    load.devices = a.devices;
    load.mode = Mode::Closed { concurrency: a.concurrency };
    if let Err(e) = load.validate() {
        eprintln!("sipark-icount: {e}");
        return ExitCode::from(2);
    }
    let step = Duration::from_micros(a.step_us.max(1));
    let mut sim = match ShardCycles::new(&load, Arc::new(Config::default()), a.concurrency, step) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sipark-icount: set-up: {e}");
            return ExitCode::FAILURE;
        }
    };
    // No clock reads per datagram: they would be counted as the driver's.
    sim.timed = false;
    if a.warmup_cycles > 0
        && let Err(e) = sim.run(a.warmup_cycles)
    {
        eprintln!("sipark-icount: warm-up: {e}");
        return ExitCode::FAILURE;
    }
    let r = match icount_window(&mut sim, a.cycles) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipark-icount: measured window: {e}");
            return ExitCode::FAILURE;
        }
    };
    let s = sim.shard.stats();
    println!("warmup_cycles={}", a.warmup_cycles);
    println!("measured_cycles={}", r.cycles);
    println!("datagrams_in={}", r.datagrams_in);
    println!("datagrams_out={}", r.datagrams_out);
    println!("bindings={}", s.bindings.get());
    println!("transactions_at_end={}", s.transactions.get());
    println!("virtual_seconds={:.1}", sim.elapsed().as_secs_f64());
    let errors = s.retransmissions.get() + sim.load_gen.c.retransmissions + sim.misdirected;
    println!("errors={errors}");
    ExitCode::SUCCESS
}
