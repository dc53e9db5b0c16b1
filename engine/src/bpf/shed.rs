//! The XDP map `sipark_shed` (docs/decisions/0022-overload-503-in-xdp.md):
//! per shard, the share of new INVITEs and REGISTERs its overload
//! controller refuses, and until when ACKs of overload 503s are dropped.
//! With it, XDP answers the refusals itself and the worker never reads
//! them.
//!
//! Each worker holds a [`ShedMap`] of its own (a duplicated fd), and writes
//! its own shard's entry from its own thread, with one
//! `bpf(BPF_MAP_UPDATE_ELEM)` when its share changes and no lock.

use aya::Ebpf;
use aya::maps::{Array, MapData};

use super::{BpfError, abi, classify, own_handle};

/// The map's name in the object.
const SHED: &str = "sipark_shed";

/// A handle on `sipark_shed` (one per thread that writes it).
pub struct ShedMap {
    map: Array<MapData, abi::Shed>,
}

impl std::fmt::Debug for ShedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShedMap").finish_non_exhaustive()
    }
}

impl ShedMap {
    /// A new handle on the shed map of a loaded object.
    pub(super) fn open(ebpf: &Ebpf) -> Result<ShedMap, BpfError> {
        let map = Array::try_from(own_handle(ebpf, SHED)?).map_err(|e| classify(SHED, e, BpfError::Map))?;
        Ok(ShedMap { map })
    }

    /// Sets `shard`'s entry: new requests whose admission hash has its top
    /// 16 bits under `refuse` ([`abi::SHED_ONE`] refuses all, 0 none) are
    /// answered 503 in XDP, and ACKs of overload 503s are dropped until
    /// `ack_until_ns` (`CLOCK_MONOTONIC`).
    pub fn set(&mut self, shard: u32, refuse: u32, ack_until_ns: u64) -> Result<(), BpfError> {
        let entry = abi::Shed { refuse: refuse.min(abi::SHED_ONE), _pad: 0, ack_until_ns };
        self.map.set(shard, entry, 0).map_err(|e| classify(SHED, e, BpfError::Map))
    }

    /// `shard`'s entry.
    pub fn get(&self, shard: u32) -> Result<abi::Shed, BpfError> {
        self.map.get(&shard, 0).map_err(|e| classify(SHED, e, BpfError::Map))
    }
}
