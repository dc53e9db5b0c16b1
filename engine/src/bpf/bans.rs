//! The XDP ban map `sipark_bans` (docs/decisions/0019-password-guessing.md):
//! sources a shard banned for failed digest responses, each with the
//! `CLOCK_MONOTONIC` time its ban ends. The program drops their datagrams
//! until then and deletes an entry it finds expired; [`BanMap::sweep`]
//! deletes the others, so that the map does not fill with sources that
//! never came back.
//!
//! Each worker holds a [`BanMap`] of its own (a duplicate of the map's fd),
//! so a ban reaches the NIC from the thread that decided it, with one
//! `bpf(BPF_MAP_UPDATE_ELEM)` and no lock.

use std::time::Duration;

use aya::Ebpf;
use aya::maps::{HashMap, MapData};

use super::{BpfError, abi, classify, own_handle};

/// The map's name in the object.
pub(super) const BANS: &str = "sipark_bans";

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`
/// (which Rust's `Instant` also reads on Linux).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration;
    // CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// A handle on `sipark_bans` (one per thread that writes it).
pub struct BanMap {
    map: HashMap<MapData, abi::BanKey, abi::BanEntry>,
}

impl std::fmt::Debug for BanMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BanMap").finish_non_exhaustive()
    }
}

impl BanMap {
    /// A new handle (a duplicated fd) on the ban map of a loaded object.
    pub(super) fn open(ebpf: &Ebpf) -> Result<BanMap, BpfError> {
        let map = HashMap::try_from(own_handle(ebpf, BANS)?).map_err(|e| classify(BANS, e, BpfError::Map))?;
        Ok(BanMap { map })
    }

    /// Bans `source` (the 16 bytes of [`crate::proto::guard::Source`]) for
    /// `remaining` from now. Fails when the map is full
    /// ([`abi::MAX_BANS`]).
    pub fn ban(&mut self, source: [u8; 16], remaining: Duration) -> Result<(), BpfError> {
        let until = monotonic_ns().saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX));
        self.insert(source, until)
    }

    /// Sets `source`'s ban to end at `until_ns` (`CLOCK_MONOTONIC`).
    pub fn insert(&mut self, source: [u8; 16], until_ns: u64) -> Result<(), BpfError> {
        self.map
            .insert(abi::BanKey { addr: source }, abi::BanEntry { until_ns }, 0)
            .map_err(|e| classify(BANS, e, BpfError::Map))
    }

    /// Lifts `source`'s ban (a no-op when it has none).
    pub fn remove(&mut self, source: [u8; 16]) -> Result<(), BpfError> {
        match self.map.remove(&abi::BanKey { addr: source }) {
            Ok(()) => Ok(()),
            // Not there (never written, or expired and deleted): lifted all
            // the same. The delete fails with ENOENT.
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(classify(BANS, e, BpfError::Map)),
        }
    }

    /// Deletes the entries whose ban is over; returns how many.
    pub fn sweep(&mut self) -> Result<usize, BpfError> {
        let now = monotonic_ns();
        // Collected first: deleting while walking the keys would skip some.
        let mut over = Vec::new();
        for item in self.map.iter() {
            let (k, v) = item.map_err(|e| classify(BANS, e, BpfError::Map))?;
            if v.until_ns <= now {
                over.push(k);
            }
        }
        for k in &over {
            // Gone meanwhile (the program deleted it): fine.
            let _ = self.map.remove(k);
        }
        Ok(over.len())
    }

    /// The banned sources in the map and when each ban ends (nanoseconds).
    pub fn entries(&self) -> Result<Vec<([u8; 16], u64)>, BpfError> {
        self.map
            .iter()
            .map(|r| r.map(|(k, v)| (k.addr, v.until_ns)).map_err(|e| classify(BANS, e, BpfError::Map)))
            .collect()
    }
}
