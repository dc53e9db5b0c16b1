//! The sans-IO protocol core.
//!
//! Nothing in this module opens a socket, spawns a thread or reads a clock:
//! datagrams and `now` come in as arguments, and work comes out through
//! `poll_transmit` / `poll_timeout` (see [`shard::Shard`]).

pub mod auth;
pub mod bodies;
pub mod config;
pub mod ids;
pub mod park;
pub mod route;
pub mod shard;
pub mod sip;
pub mod stats;
pub mod timers;
pub mod txn;
