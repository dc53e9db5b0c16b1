//! Benchmarks and load tools for sipark.
//!
//! * [`load`]: the park-cycle load generator behind the `sipark-load`
//!   binary (`cargo xtask bench`), [`load::mem`], the same cycle driven
//!   through one in-memory `Shard` on a virtual clock, and [`load::floor`],
//!   the cycle's datagrams with no SIP against `sipark --bare-io`
//!   (`sipark-load --floor`, the floor of `cargo xtask bench`).
//! * [`guess`]: the online password-guessing attack of issue 13 behind the
//!   `sipark-guess` binary (`cargo xtask bench --guessing`).
//! * `sipark-icount`: in-memory cycles for callgrind
//!   (`cargo xtask bench --instructions`).
//! * `benches/parse.rs`: parser throughput next to rsip.
//! * `benches/shard.rs`: complete park cycles through the sans-IO shard alone.
//! * `benches/park.rs`: park insert / lookup / removal at 10k, 100k and 1M parked calls.
//! * `benches/memory.rs`: heap bytes per parked call (counting allocator).
//!
//! Run one with `cargo bench -p sipark-benches --bench <name>`.

pub mod guess;
pub mod load;
