//! Benchmarks and load tools for sipark.
//!
//! * [`load`]: the park-cycle load generator behind the `sipark-load`
//!   binary (`cargo xtask bench`).
//! * `benches/parse.rs`: parser throughput (`cargo bench -p sipark-benches`).

pub mod load;
