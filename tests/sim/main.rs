//! Deterministic simulation of sipark's sans-IO shards.
//!
//! N [`sipark::proto::shard::Shard`]s, scripted phones and an in-memory
//! network run on a virtual clock that jumps from event to event, so whole
//! park timeouts (minutes) and timer cascades run in milliseconds, and
//! every run with the same seed is the same run. See `harness.rs`.

mod fixtures;
mod harness;
mod parkinfo;
mod phone;
mod wire;

mod auth;
mod chaos;
mod conformance;
mod events;
mod groups;
mod guard;
mod isolation;
mod moh;
mod offer;
mod overload;
mod park;
mod proxy;
mod recall;
mod refer;
mod registrar;
mod relay;
mod reload;
mod txn;
