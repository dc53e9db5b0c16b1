//! The XDP filter: [`Xdp`] attaches it, [`XdpTester`] runs it on buffers.

use std::borrow::Borrow;
use std::sync::Arc;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp as AyaXdp, XdpMode as AyaMode};
use tracing::{info, warn};

use super::bans::BanMap;
use super::shed::ShedMap;
use super::{BpfError, XdpConfig, XdpMode, abi, classify, configure_xdp, load_object, load_xdp, objects, sum_percpu};

/// XDP verdicts (`enum xdp_action`).
pub(super) const XDP_PASS: u32 = 2;

const PROG: &str = "sipark_xdp";
const COUNTERS: &str = "sipark_counters";

/// Loads the XDP object, verifies the program and fills its maps.
fn prepare(cfg: &XdpConfig) -> Result<Ebpf, BpfError> {
    let mut ebpf = load_object(objects::XDP, "XDP object")?;
    load_xdp(&mut ebpf, PROG)?;
    configure_xdp(&mut ebpf, cfg)?;
    Ok(ebpf)
}

fn read_counters<T: Borrow<MapData>>(map: &PerCpuArray<T, u64>) -> Result<[u64; abi::N_REASONS], BpfError> {
    sum_percpu::<T, { abi::N_REASONS }>(map)
}

/// `sipark_xdp` attached to interfaces; dropping it detaches it everywhere.
pub struct Xdp {
    // Owns the program, whose links detach when it is dropped.
    ebpf: Ebpf,
    modes: Vec<(String, XdpMode)>,
    stats: XdpStats,
}

impl Xdp {
    /// Loads the program, fills its maps from `cfg` and attaches it to every
    /// interface in `cfg.ifaces`. [`XdpMode::Auto`] tries native (driver)
    /// mode first, then generic (skb) mode, and logs which one it got.
    pub fn attach(cfg: &XdpConfig) -> Result<Xdp, BpfError> {
        super::check_ifaces(&cfg.ifaces)?;
        let mut ebpf = prepare(cfg)?;
        let mut modes = Vec::with_capacity(cfg.ifaces.len());
        {
            let prog: &mut AyaXdp = ebpf
                .program_mut(PROG)
                .ok_or_else(|| BpfError::Load(format!("no program {PROG}")))?
                .try_into()
                .map_err(|e: ProgramError| classify(PROG, e, BpfError::Load))?;
            for iface in &cfg.ifaces {
                let what = format!("XDP on {iface}");
                let got = match cfg.mode {
                    XdpMode::Native => prog
                        .attach(iface, AyaMode::Driver)
                        .map(|_| XdpMode::Native)
                        .map_err(|e| classify(&what, e, BpfError::Attach))?,
                    XdpMode::Skb => prog
                        .attach(iface, AyaMode::Skb)
                        .map(|_| XdpMode::Skb)
                        .map_err(|e| classify(&what, e, BpfError::Attach))?,
                    XdpMode::Auto => match prog.attach(iface, AyaMode::Driver) {
                        Ok(_) => XdpMode::Native,
                        Err(native) => {
                            let native = classify(&what, native, BpfError::Attach);
                            if matches!(native, BpfError::Permission(_)) {
                                return Err(native);
                            }
                            warn!(iface = %iface, error = %native, "native XDP refused; trying generic (skb) mode");
                            prog.attach(iface, AyaMode::Skb)
                                .map(|_| XdpMode::Skb)
                                .map_err(|e| classify(&what, e, BpfError::Attach))?
                        }
                    },
                };
                info!(iface = %iface, mode = ?got, "XDP filter attached");
                modes.push((iface.clone(), got));
            }
        }
        let counters = ebpf.take_map(COUNTERS).ok_or_else(|| BpfError::Map(format!("no map {COUNTERS}")))?;
        let counters: PerCpuArray<MapData, u64> =
            counters.try_into().map_err(|e| classify(COUNTERS, e, BpfError::Map))?;
        Ok(Xdp { ebpf, modes, stats: XdpStats { counters: Arc::new(counters) } })
    }

    /// Changes the attached program's tenants, rates, blocklist and
    /// scanner list to `cfg`'s, in place (a reload): `cfg.ports` must be the
    /// ports it was attached with, `cfg.ifaces` and `cfg.mode` are ignored.
    /// New entries are added before old ones are removed; a tenant that
    /// stays keeps its rate bucket.
    pub fn update(&mut self, cfg: &XdpConfig) -> Result<(), BpfError> {
        configure_xdp(&mut self.ebpf, cfg)
    }

    /// A handle on the verdict counters, usable from any thread.
    pub fn stats(&self) -> XdpStats {
        self.stats.clone()
    }

    /// A handle of its own on the ban map, for one thread to write bans
    /// with (docs/decisions/0019-password-guessing.md).
    pub fn bans(&self) -> Result<BanMap, BpfError> {
        BanMap::open(&self.ebpf)
    }

    /// A handle of its own on the shed map, for one worker to publish its
    /// admission share with (docs/decisions/0022-overload-503-in-xdp.md).
    pub fn shed(&self) -> Result<ShedMap, BpfError> {
        ShedMap::open(&self.ebpf)
    }

    /// The mode each interface got.
    pub fn modes(&self) -> Vec<(String, XdpMode)> {
        self.modes.clone()
    }
}

impl std::fmt::Debug for Xdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xdp").field("modes", &self.modes).finish_non_exhaustive()
    }
}

/// The XDP verdict counters ([`abi::REASON_NAMES`]); stays readable after
/// the [`Xdp`] is dropped (the counts then stop).
#[derive(Clone)]
pub struct XdpStats {
    counters: Arc<PerCpuArray<MapData, u64>>,
}

impl std::fmt::Debug for XdpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpStats").field("counters", &self.read().ok()).finish()
    }
}

impl XdpStats {
    /// Counts per reason, summed over CPUs.
    pub fn read(&self) -> Result<[u64; abi::N_REASONS], BpfError> {
        read_counters(&self.counters)
    }
}

/// The XDP program loaded and configured but not attached, run on buffers
/// with `BPF_PROG_TEST_RUN`. For tests.
pub struct XdpTester {
    ebpf: Ebpf,
}

impl std::fmt::Debug for XdpTester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpTester").finish_non_exhaustive()
    }
}

impl XdpTester {
    /// Loads and configures the program (`cfg.ifaces` and `cfg.mode` are
    /// ignored).
    pub fn load(cfg: &XdpConfig) -> Result<XdpTester, BpfError> {
        Ok(XdpTester { ebpf: prepare(cfg)? })
    }

    /// Reconfigures the loaded program as [`Xdp::update`] does.
    pub fn update(&mut self, cfg: &XdpConfig) -> Result<(), BpfError> {
        configure_xdp(&mut self.ebpf, cfg)
    }

    /// A handle on the program's ban map, as [`Xdp::bans`].
    pub fn bans(&self) -> Result<BanMap, BpfError> {
        BanMap::open(&self.ebpf)
    }

    /// A handle on the program's shed map, as [`Xdp::shed`].
    pub fn shed(&self) -> Result<ShedMap, BpfError> {
        ShedMap::open(&self.ebpf)
    }

    /// Runs the program on one Ethernet frame (at least 14 bytes, which
    /// the kernel requires) and returns its XDP action (1 drop, 2 pass,
    /// 3 tx).
    pub fn run(&mut self, frame: &[u8]) -> Result<u32, BpfError> {
        self.run_out(frame).map(|(action, _)| action)
    }

    /// As [`XdpTester::run`], and the frame as the program left it (what
    /// `XDP_TX` sends back).
    pub fn run_out(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>), BpfError> {
        let (action, out, _) = self.run_repeat(frame, 1)?;
        Ok((action, out))
    }

    /// Runs the program `repeat` times on the same frame, in the kernel;
    /// also returns the mean time of one run.
    pub fn run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Vec<u8>, std::time::Duration), BpfError> {
        if frame.len() < 14 {
            return Err(BpfError::Config(format!("a {}-byte frame: BPF_PROG_TEST_RUN needs at least 14", frame.len())));
        }
        let prog: &AyaXdp = self
            .ebpf
            .program(PROG)
            .ok_or_else(|| BpfError::Load(format!("no program {PROG}")))?
            .try_into()
            .map_err(|e: ProgramError| classify(PROG, e, BpfError::Load))?;
        // Room for a 503 longer than the request.
        let mut out = vec![0u8; frame.len() + 4096];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: repeat.max(1),
                ..TestRunOptions::default()
            })
            .map_err(|e| classify("XDP test run", e, BpfError::Load))?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out, res.duration))
    }

    /// Counts per reason so far, summed over CPUs.
    pub fn counters(&self) -> Result<[u64; abi::N_REASONS], BpfError> {
        let map: PerCpuArray<&MapData, u64> = self
            .ebpf
            .map(COUNTERS)
            .ok_or_else(|| BpfError::Map(format!("no map {COUNTERS}")))?
            .try_into()
            .map_err(|e| classify(COUNTERS, e, BpfError::Map))?;
        read_counters(&map)
    }
}
