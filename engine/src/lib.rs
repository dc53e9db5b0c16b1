//! sipark: a SIP call-park engine for carriers.
//!
//! * [`proto`] is sans-IO: the parser, transactions, dialogs, registrar, park
//!   state machine and the [`proto::shard::Shard`]. It never touches a socket,
//!   a thread or the clock; time comes in as an argument.
//! * [`io`] is the only code that owns sockets, io_uring rings, threads and
//!   `Instant::now()`.
//! * [`bpf`] loads and attaches the eBPF programs (steering, XDP filter).
//! * [`cli`] turns the command line into the engine's options and
//!   configuration, and reloads it on SIGHUP; the `sipark` binary only wires
//!   it to [`io::Engine`] and the signals.
//!
//! Modules depend downwards only: `cli` → `io` → `bpf` → `proto`; within a
//! module, its submodules import each other without cycles (the `layering`
//! test checks both).

pub mod bpf;
pub mod cli;
pub mod io;
pub mod proto;

#[cfg(test)]
mod layering;
