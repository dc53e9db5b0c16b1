//! The sans-IO protocol core.
//!
//! Nothing in this module opens a socket, spawns a thread or reads a clock:
//! datagrams and `now` come in as arguments, and work comes out through
//! `poll_transmit` / `poll_timeout` (see [`shard::Shard`]).

pub mod auth;
pub mod bodies;
pub mod config;
pub mod msg;
pub mod park;
pub mod parse;
pub mod route;
pub mod sdp;
pub mod shard;
pub mod stats;
pub mod stream;
pub mod timers;
pub mod txn;
