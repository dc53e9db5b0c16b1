//! The sans-IO protocol core, layered as RFC 3261 layers SIP
//! (docs/architecture.md, docs/decisions/0018-layered-core.md):
//!
//! * [`sip`]: the wire (parser, writer, SDP, stream framing, peers);
//! * [`txn`]: the transaction layer;
//! * [`dialog`]: dialogs and the dialog index;
//! * the transaction users: [`registrar`], [`park`] (park, retrieve,
//!   recall, REFER), [`bridge`] (the B2BUA relay), [`notify`] (park-info
//!   NOTIFYs and their documents), [`media`] (music on hold for parked
//!   calls);
//! * [`shard`]: the integrator and its sans-IO API.
//!
//! Leaf modules every layer may use: [`env`] (what a shard's layers
//! share), [`ids`], [`reject`], [`tu`] (the context and owner names of the
//! transaction users), [`named`], [`timers`], [`config`], [`stats`],
//! [`route`], [`auth`], [`guard`], [`overload`].
//!
//! Nothing in this module opens a socket, spawns a thread or reads a clock:
//! datagrams and `now` come in as arguments, and work comes out through
//! `poll_transmit` / `poll_timeout` / `poll_event` (see [`shard::Shard`]).

pub mod auth;
pub mod bridge;
pub mod config;
pub mod dialog;
pub mod env;
pub mod guard;
pub mod ids;
pub mod media;
pub mod named;
pub mod notify;
pub mod overload;
pub mod park;
pub mod registrar;
pub mod reject;
pub mod route;
pub mod shard;
pub mod sip;
pub mod stats;
pub mod timers;
pub mod tu;
pub mod txn;
