//! sipark: a SIP call-park engine for carriers.
//!
//! * [`proto`] is sans-IO: the parser, transactions, dialogs, registrar, park
//!   state machine and the [`proto::shard::Shard`]. It never touches a socket,
//!   a thread or the clock; time comes in as an argument.
//! * [`io`] is the only code that owns sockets, io_uring rings, threads and
//!   `Instant::now()`.

pub mod bpf;
pub mod io;
pub mod proto;
