//! `SO_REUSEPORT` steering: [`Steering`] attaches `sipark_steer` to the
//! socket group of the SIP port.

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::sync::Arc;

use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuArray, ReusePortSockArray};
use aya::programs::{ProgramError, SkReuseport};
use tracing::{info, warn};

use super::{BpfError, abi, classify, load_object, map_mut, objects, sum_percpu};

const PROG: &str = "sipark_steer";
const SOCKS: &str = "sipark_socks";
const STATS: &str = "sipark_sstats";

/// Loads the steer object and verifies its program.
fn prepare() -> Result<Ebpf, BpfError> {
    let mut ebpf = load_object(objects::STEER, "steer object")?;
    let prog: &mut SkReuseport = ebpf
        .program_mut(PROG)
        .ok_or_else(|| BpfError::Load(format!("no program {PROG} in the object")))?
        .try_into()
        .map_err(|e: ProgramError| classify(PROG, e, BpfError::Load))?;
    prog.load().map_err(|e| classify(PROG, e, BpfError::Load))?;
    Ok(ebpf)
}

pub(super) fn verified_instructions() -> Result<Option<u32>, BpfError> {
    let ebpf = prepare()?;
    let prog: &SkReuseport = ebpf
        .program(PROG)
        .ok_or_else(|| BpfError::Load(format!("no program {PROG}")))?
        .try_into()
        .map_err(|e: ProgramError| classify(PROG, e, BpfError::Load))?;
    let info = prog.info().map_err(|e| classify(PROG, e, BpfError::Load))?;
    Ok(info.verified_instruction_count())
}

/// `sipark_steer` attached to one `SO_REUSEPORT` group. Keeps the program
/// and its socket array alive; dropping it detaches the program from the
/// group, and the kernel's own hash takes over again.
pub struct Steering {
    _ebpf: Ebpf,
    /// A duplicate of one member, to detach the group's program on drop.
    member: std::os::fd::OwnedFd,
    stats: SteerStats,
}

impl Steering {
    /// sockets[i] is worker/shard i's member of one SO_REUSEPORT group.
    ///
    /// Every socket must already be bound with `SO_REUSEPORT` to the same
    /// address; `sockets.len()` must equal `n_shards` (1 to 1024).
    pub fn attach(sockets: &[UdpSocket], n_shards: u16) -> Result<Steering, BpfError> {
        if n_shards == 0 || usize::from(n_shards) > abi::MAX_SOCKS {
            return Err(BpfError::Config(format!("{n_shards} shards; 1 to {} can be steered", abi::MAX_SOCKS)));
        }
        if sockets.len() != usize::from(n_shards) {
            return Err(BpfError::Config(format!("{} sockets for {n_shards} shards", sockets.len())));
        }
        let member = sockets[0]
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| BpfError::Attach(format!("duplicating a socket: {e}")))?;
        let mut ebpf = prepare()?;
        {
            let mut cfg: Array<_, abi::Cfg> =
                map_mut(&mut ebpf, "sipark_cfg")?.try_into().map_err(|e| classify("sipark_cfg", e, BpfError::Map))?;
            let c = abi::Cfg { n_shards: u32::from(n_shards), ..abi::Cfg::default() };
            cfg.set(0, c, 0).map_err(|e| classify("sipark_cfg", e, BpfError::Map))?;
        }
        {
            let mut socks: ReusePortSockArray<_> =
                map_mut(&mut ebpf, SOCKS)?.try_into().map_err(|e| classify(SOCKS, e, BpfError::Map))?;
            for (i, sock) in sockets.iter().enumerate() {
                socks.set(i as u32, sock, 0).map_err(|e| {
                    classify(&format!("{SOCKS}[{i}] (is it bound with SO_REUSEPORT?)"), e, BpfError::Map)
                })?;
            }
        }
        {
            let prog: &mut SkReuseport = ebpf
                .program_mut(PROG)
                .ok_or_else(|| BpfError::Load(format!("no program {PROG}")))?
                .try_into()
                .map_err(|e: ProgramError| classify(PROG, e, BpfError::Load))?;
            prog.attach(&sockets[0]).map_err(|e| classify("SO_ATTACH_REUSEPORT_EBPF", e, BpfError::Attach))?;
        }
        let stats = ebpf.take_map(STATS).ok_or_else(|| BpfError::Map(format!("no map {STATS}")))?;
        let stats: PerCpuArray<MapData, u64> = stats.try_into().map_err(|e| classify(STATS, e, BpfError::Map))?;
        info!(shards = n_shards, "SO_REUSEPORT steering attached");
        Ok(Steering { _ebpf: ebpf, member, stats: SteerStats { counters: Arc::new(stats) } })
    }

    /// A handle on the steering counters, usable from any thread.
    pub fn stats(&self) -> SteerStats {
        self.stats.clone()
    }
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        if let Err(e) = SkReuseport::detach(&self.member) {
            warn!(error = %e, "detaching the SO_REUSEPORT program");
        }
    }
}

/// Steering counters, summed over CPUs.
#[derive(Clone)]
pub struct SteerStats {
    counters: Arc<PerCpuArray<MapData, u64>>,
}

impl std::fmt::Debug for SteerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteerStats").field("steered_fallback", &self.read().ok()).finish()
    }
}

impl SteerStats {
    /// `(steered, fallback)`: datagrams handed to their shard's socket, and
    /// those left to the kernel's hash (unreadable, no shard, or the
    /// selection failed).
    pub fn read(&self) -> Result<(u64, u64), BpfError> {
        let c = sum_percpu::<_, { abi::N_STEER }>(&self.counters)?;
        Ok((c[abi::steer::STEERED], c[abi::steer::FALLBACK]))
    }
}
