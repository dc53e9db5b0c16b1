//! The park table: insert, lookup and removal with N ∈ {10k, 100k, 1M}
//! calls already parked in one `Shard` (`cargo bench -p sipark-benches
//! --bench park`).
//!
//! Layout: one parked call per extension, 10 extensions per tenant (N/10
//! tenants), no registered devices (so no NOTIFYs); park timeout 86,400 s
//! so nothing recalls; limits raised (`load::mem::table_config`). The
//! shard's clock is virtual and moves 1 ms after every operation (timers
//! due then run, untimed), so the transactions each operation leaves end
//! as in a running engine.
//!
//! Each operation is timed inside the shard only (`handle` plus draining
//! `poll_transmit`), never the building or parsing of our side, and the
//! table is put back to N calls after each, untimed:
//! * `insert`: park one more call on a spare extension (INVITE → 200, then
//!   ACK: two `handle` calls); restored by its BYE;
//! * `lookup`: a retrieve `*88<ext>` (no `call=` token: the extension's
//!   first retrievable call) of a random parked call: finding the
//!   extension and the call, the server transaction, 100 Trying and the
//!   re-INVITE to the parked party; restored by the parked party refusing
//!   the re-INVITE (486), so the call is parked again and the retriever
//!   gets 480;
//! * `removal`: the BYE of a random parked call's parked party (200,
//!   call and extension forgotten); restored by parking it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use sipark_benches::load::mem::{ParkSim, table_config, table_home};

/// The engine binary's allocator, so allocation costs are the engine's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spare extensions that `insert` parks on, in turn.
const SPARE: u32 = 10_000;
/// Virtual time after every operation.
const TICK: Duration = Duration::from_millis(1);

struct Table {
    sim: ParkSim,
    n: u32,
    /// The BYE of each parked call.
    byes: Vec<Box<[u8]>>,
    /// Dialog generation of each parked call.
    generation: Vec<u32>,
    rng: u64,
    inserts: u32,
    lookups: u32,
    bye: Vec<u8>,
}

/// Per operation: (operations, shard time) over every run.
#[derive(Default, Clone, Copy)]
struct Tally {
    ops: u64,
    time: Duration,
}

impl Table {
    fn build(n: u32) -> Result<Table, String> {
        let mut sim = ParkSim::new(Arc::new(table_config(n as usize + SPARE as usize)));
        let mut byes = Vec::with_capacity(n as usize);
        let mut bye = Vec::with_capacity(512);
        for i in 0..n {
            let (tenant, ext) = table_home(i);
            sim.park(i, 0, tenant, ext, Some(&mut bye))?;
            byes.push(bye.as_slice().into());
            sim.advance(TICK)?;
        }
        // Let the parks' transactions end.
        sim.advance(Duration::from_secs(40))?;
        Ok(Table {
            sim,
            n,
            byes,
            generation: vec![0; n as usize],
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(n),
            inserts: 0,
            lookups: 0,
            bye,
        })
    }

    fn random_call(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) * u64::from(self.n)) >> 32) as u32
    }

    fn insert(&mut self) -> Result<Duration, String> {
        let k = self.inserts;
        self.inserts += 1;
        let spare = k % SPARE;
        let (tenant, ext) = table_home(self.n + spare);
        let t = self.sim.park(self.n + spare, 1 + k / SPARE, tenant, ext, Some(&mut self.bye))?;
        let bye = std::mem::take(&mut self.bye);
        let r = self.sim.bye(&bye);
        self.bye = bye;
        r?;
        self.sim.advance(TICK)?;
        Ok(t)
    }

    fn lookup(&mut self) -> Result<Duration, String> {
        let i = self.random_call();
        let (tenant, ext) = table_home(i);
        self.lookups += 1;
        let t = self.sim.retrieve_and_refuse(i, self.lookups, tenant, ext)?;
        self.sim.advance(TICK)?;
        Ok(t)
    }

    fn removal(&mut self) -> Result<Duration, String> {
        let i = self.random_call();
        let t = self.sim.bye(&self.byes[i as usize])?;
        let (tenant, ext) = table_home(i);
        let g = &mut self.generation[i as usize];
        *g += 1;
        let g = *g;
        self.sim.park(i, g, tenant, ext, Some(&mut self.bye))?;
        self.byes[i as usize] = self.bye.as_slice().into();
        self.sim.advance(TICK)?;
        Ok(t)
    }

    /// The shard still holds exactly N parked calls.
    fn check(&self) -> Result<(), String> {
        let parked = self.sim.shard.stats().parked.get();
        if parked == u64::from(self.n) { Ok(()) } else { Err(format!("{parked} calls parked, expected {}", self.n)) }
    }
}

type Op = fn(&mut Table) -> Result<Duration, String>;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[u32] = if full { &[10_000, 100_000, 1_000_000] } else { &[1_000] };
    let ops: [(&str, Op); 3] = [("insert", Table::insert), ("lookup", Table::lookup), ("removal", Table::removal)];
    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for &n in sizes {
        let t0 = Instant::now();
        let mut table = Table::build(n).unwrap_or_else(|e| panic!("building {n} parked calls: {e}"));
        let build = t0.elapsed();
        table.check().unwrap_or_else(|e| panic!("after building: {e}"));
        let mut tallies = [Tally::default(); 3];
        let mut failed: Option<String> = None;
        {
            let mut g = c.benchmark_group("park_table");
            g.sample_size(30);
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(3));
            for (k, (name, op)) in ops.iter().enumerate() {
                let tally = &mut tallies[k];
                let table = &mut table;
                let failed = &mut failed;
                g.bench_function(BenchmarkId::new(*name, n), |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            match op(table) {
                                Ok(t) => spent += t,
                                Err(e) => {
                                    failed.get_or_insert(format!("{name} at N = {n}: {e}"));
                                    return Duration::from_nanos(1);
                                }
                            }
                        }
                        tally.ops += iters;
                        tally.time += spent;
                        spent
                    })
                });
            }
            g.finish();
        }
        if let Some(e) = failed {
            panic!("an operation failed, figures are void: {e}");
        }
        table.check().unwrap_or_else(|e| panic!("after the benchmarks at N = {n}: {e}"));
        let s = table.sim.shard.stats();
        rows.push((n, build, tallies, s.transactions.get(), s.overload_rejects.get(), s.retransmissions.get()));
    }
    c.final_summary();

    println!();
    println!("park table summary (one Shard; mean shard time per operation over every run, warm-up included)");
    println!(
        "{:>10} {:>9} {:>12} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "parked", "build s", "insert µs", "lookup µs", "removal µs", "txns", "503s", "retrans"
    );
    for (n, build, t, txns, rejects, retrans) in rows {
        let us = |t: Tally| t.time.as_secs_f64() * 1e6 / t.ops.max(1) as f64;
        println!(
            "{n:>10} {:>9.1} {:>12.2} {:>12.2} {:>12.2} {txns:>8} {rejects:>8} {retrans:>8}",
            build.as_secs_f64(),
            us(t[0]),
            us(t[1]),
            us(t[2])
        );
    }
    println!(
        "insert = park INVITE + ACK; lookup = retrieve *88<ext> up to the re-INVITE; removal = parked party's BYE"
    );
}
