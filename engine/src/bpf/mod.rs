//! The kernel data path: loads sipark's BPF programs (built from `ebpf/` by
//! `engine/build.rs`) with aya, fills their maps, and attaches them.
//!
//! * [`Xdp`]: the XDP filter `sipark_xdp` on one or more interfaces
//!   (blocklist, banned sources, not-SIP, scanners, unknown tenants,
//!   per-tenant GCRA rate, overload 503s); [`BanMap`] writes its bans,
//!   [`ShedMap`] each shard's admission share.
//! * [`Steering`]: the `sk_reuseport` program `sipark_steer`, which hands
//!   each datagram to the socket of the shard that owns it
//!   ([`crate::proto::route`]).
//! * [`XdpTester`] and [`parity`] run the programs on buffers through
//!   `BPF_PROG_TEST_RUN`, for tests.
//!
//! Everything here needs root (or CAP_BPF + CAP_NET_ADMIN, and CAP_PERFMON
//! for some verifier paths); without it the error is
//! [`BpfError::Permission`].

pub mod abi;
mod bans;
mod shed;
mod steer;
mod xdp;

use std::borrow::Borrow;
use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::Mutex;

use aya::Ebpf;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp as AyaXdp};

pub use bans::{BanMap, monotonic_ns};
pub use shed::ShedMap;

pub use steer::{SteerStats, Steering};
pub use xdp::{Xdp, XdpStats, XdpTester};

use crate::proto::route::tenant_hash;

// The stats handles are read from the metrics thread.
const _: () = {
    const fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<XdpStats>();
    send_sync::<SteerStats>();
};

/// The objects `build.rs` compiled (or `None`s and the reason).
mod objects {
    include!(concat!(env!("OUT_DIR"), "/bpf_objects.rs"));
}

/// What went wrong loading, configuring or attaching a BPF program.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The programs were not compiled into this binary; the message says how
    /// to fix that.
    #[error("{0}")]
    NotBuilt(&'static str),
    /// EPERM/EACCES from the kernel.
    #[error("{0}: permission denied; needs root or CAP_BPF+CAP_NET_ADMIN(+CAP_PERFMON)")]
    Permission(String),
    /// Loading or verifying a program (or its object) failed.
    #[error("loading BPF program: {0}")]
    Load(String),
    /// Attaching a program to an interface or socket group failed.
    #[error("attaching BPF program: {0}")]
    Attach(String),
    /// Reading or writing a map failed.
    #[error("BPF map: {0}")]
    Map(String),
    /// The configuration cannot be expressed in the maps.
    #[error("BPF config: {0}")]
    Config(String),
}

/// `Ok` when `build.rs` compiled the BPF programs into this binary.
pub fn objects_built() -> Result<(), BpfError> {
    object(objects::XDP).and(object(objects::STEER)).and(object(objects::PARITY)).map(|_| ())
}

fn object(o: Option<&'static [u8]>) -> Result<&'static [u8], BpfError> {
    o.ok_or(BpfError::NotBuilt(objects::MISSING))
}

/// How XDP is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, else generic (skb).
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode, after the kernel allocated the socket buffer.
    Skb,
}

/// A GCRA rate: `per_sec` requests per second (>= 1), of which `burst`
/// may arrive back-to-back. The same type as the tenants file's.
pub use crate::proto::config::RateLimit as Rate;

/// What the XDP program enforces.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    /// Interfaces to attach to (ignored by [`XdpTester`]).
    pub ifaces: Vec<String>,
    pub mode: XdpMode,
    /// SIP ports, host order, 1 to 8 of them.
    pub ports: Vec<u16>,
    /// Only `tenants` are served; other Request-URI hosts are dropped.
    pub strict: bool,
    /// Tenant domain (any case) and its own rate (`None`: the default).
    pub tenants: Vec<(String, Option<Rate>)>,
    /// Rate of every tenant without its own; `None` = unlimited.
    pub default_rate: Option<Rate>,
    /// Source CIDRs to drop (address, prefix length).
    pub block: Vec<(IpAddr, u8)>,
    /// User-Agent prefixes (any case, 1 to 32 bytes, at most 16); use
    /// [`DEFAULT_SCANNERS`] when the operator gives none.
    pub scanners: Vec<String>,
    /// Workers (shards): XDP finds the shard that owns a request as
    /// `route::shard_of` does (filled in by the I/O layer).
    pub shards: u32,
    /// Overload 503s in XDP (ADR 0022); `None`: overload control is off.
    pub shed: Option<XdpShed>,
}

/// What XDP needs to answer a shard's refusals itself (ADR 0022): the
/// admission hash's key (every shard's), the `Retry-After` range, and the
/// retrieve feature code (retrieves are not refused under the high bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpShed {
    pub key: u32,
    pub retry_after: (u32, u32),
    pub retrieve_fac: String,
}

/// User-Agent prefixes of well-known SIP scanners.
pub const DEFAULT_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "iwar",
    "sundayddr",
    "vaxsipuseragent",
    "pplsip",
    "smap",
    "sivus",
];

/// Most bytes of a verifier log kept in an error message (its tail, which
/// holds the reason).
const MAX_LOG: usize = 4000;

/// Turns an aya error into a [`BpfError`]: EPERM/EACCES anywhere in its
/// source chain is [`BpfError::Permission`], anything else goes to `other`.
fn classify<E: StdError + 'static>(what: &str, e: E, other: fn(String) -> BpfError) -> BpfError {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&e);
    // The verifier refuses a program with EACCES too: with its log, that is
    // not a missing privilege, and the log says why.
    let text = e.to_string();
    let refused_by_verifier = text.contains("Verifier output:") && !text.trim_end().ends_with("Verifier output:");
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            && !refused_by_verifier
        {
            return BpfError::Permission(format!("{what}: {io}"));
        }
        cur = err.source();
    }
    let mut msg = format!("{what}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if msg.len() > MAX_LOG {
        let mut cut = msg.len() - MAX_LOG;
        while !msg.is_char_boundary(cut) {
            cut += 1;
        }
        msg = format!("…{}", &msg[cut..]);
    }
    other(msg)
}

/// Loads an object (maps created, programs not yet loaded).
fn load_object(bytes: Option<&'static [u8]>, what: &str) -> Result<Ebpf, BpfError> {
    let bytes = object(bytes)?;
    Ebpf::load(bytes).map_err(|e| classify(what, e, BpfError::Load))
}

/// Loads (verifies) the XDP program `name` of `ebpf` and returns it.
fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut AyaXdp, BpfError> {
    let prog: &mut AyaXdp = ebpf
        .program_mut(name)
        .ok_or_else(|| BpfError::Load(format!("no program {name} in the object")))?
        .try_into()
        .map_err(|e: ProgramError| classify(name, e, BpfError::Load))?;
    prog.load().map_err(|e| classify(name, e, BpfError::Load))?;
    Ok(prog)
}

/// A handle of its own (a duplicated fd) on the map `name` of a loaded
/// object, for a worker thread to write with no lock.
fn own_handle(ebpf: &Ebpf, name: &str) -> Result<Map, BpfError> {
    let data = match ebpf.map(name) {
        Some(Map::HashMap(d) | Map::Array(d)) => d,
        Some(_) => return Err(BpfError::Map(format!("{name} is neither a hash map nor an array"))),
        None => return Err(BpfError::Map(format!("no map {name} in the object"))),
    };
    let fd = data.fd().as_fd().try_clone_to_owned().map_err(|e| classify(name, e, BpfError::Map))?;
    let data = MapData::from_fd(fd).map_err(|e| classify(name, e, BpfError::Map))?;
    Map::from_map_data(data).map_err(|e| classify(name, e, BpfError::Map))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, BpfError> {
    ebpf.map_mut(name).ok_or_else(|| BpfError::Map(format!("no map {name} in the object")))
}

/// The map contents an [`XdpConfig`] asks for, validated.
struct XdpMaps {
    cfg: abi::Cfg,
    tenants: Vec<(u32, abi::Tenant)>,
    block: Vec<([u8; 16], u32)>,
    scanners: Vec<abi::Sig>,
    shed: abi::ShedCfg,
}

fn rate_fields(r: Option<Rate>, what: &str) -> Result<(u32, u32), BpfError> {
    match r {
        None => Ok((0, 0)),
        Some(Rate { per_sec: 0, .. }) => {
            Err(BpfError::Config(format!("{what}: a rate must be at least 1/s (leave it out for none)")))
        }
        Some(r) => Ok((r.per_sec, r.burst)),
    }
}

impl XdpConfig {
    /// The filter on `iface`, native mode, watching only port 9 (discard),
    /// to which nothing is sent: it passes every frame. What the other end
    /// of a veth pair needs so that the frames XDP sends back on its peer
    /// (`XDP_TX`, the overload 503s of ADR 0022) are delivered: a veth drops
    /// them unless the receiving end runs an XDP program. For tests and the
    /// load generator; a NIC needs nothing of the kind.
    pub fn pass_through(iface: &str) -> XdpConfig {
        XdpConfig {
            ifaces: vec![iface.to_owned()],
            mode: XdpMode::Native,
            ports: vec![9],
            strict: false,
            tenants: Vec::new(),
            default_rate: None,
            block: Vec::new(),
            scanners: Vec::new(),
            shards: 1,
            shed: None,
        }
    }

    /// Checks everything that can be checked before the ports are known and
    /// without the kernel: interface names, tenants, rates, CIDRs and
    /// signatures. [`Xdp::attach`] checks the same, and the ports.
    pub fn validate(&self) -> Result<(), BpfError> {
        check_ifaces(&self.ifaces)?;
        XdpMaps::from_policy(self).map(drop)
    }
}

/// Interface names: 1 to 15 bytes, no NUL.
pub(crate) fn check_ifaces(ifaces: &[String]) -> Result<(), BpfError> {
    if ifaces.is_empty() {
        return Err(BpfError::Config("no interface to attach XDP to".to_owned()));
    }
    if let Some(bad) = ifaces.iter().find(|i| i.is_empty() || i.contains('\0') || i.len() >= 16) {
        return Err(BpfError::Config(format!("bad interface name {bad:?} (1 to 15 bytes)")));
    }
    Ok(())
}

impl XdpMaps {
    fn from_config(c: &XdpConfig) -> Result<XdpMaps, BpfError> {
        if c.ports.is_empty() || c.ports.len() > abi::MAX_PORTS {
            return Err(BpfError::Config(format!("{} ports; 1 to {} are supported", c.ports.len(), abi::MAX_PORTS)));
        }
        if c.ports.contains(&0) {
            return Err(BpfError::Config("port 0".to_owned()));
        }
        let mut m = XdpMaps::from_policy(c)?;
        m.cfg.ports[..c.ports.len()].copy_from_slice(&c.ports);
        m.cfg.n_ports = c.ports.len() as u32;
        Ok(m)
    }

    /// Everything but the ports.
    fn from_policy(c: &XdpConfig) -> Result<XdpMaps, BpfError> {
        if c.shards == 0 || c.shards as usize > abi::MAX_SOCKS {
            return Err(BpfError::Config(format!("{} shards; 1 to {} are supported", c.shards, abi::MAX_SOCKS)));
        }
        let mut cfg = abi::Cfg { n_shards: c.shards, ..abi::Cfg::default() };
        cfg.flags = if c.strict { abi::FLAG_STRICT } else { 0 };
        (cfg.default_rate, cfg.default_burst) = rate_fields(c.default_rate, "default rate")?;

        if c.tenants.len() > abi::MAX_TENANTS {
            return Err(BpfError::Config(format!("{} tenants; at most {}", c.tenants.len(), abi::MAX_TENANTS)));
        }
        let mut tenants = Vec::with_capacity(c.tenants.len());
        for (domain, rate) in &c.tenants {
            if domain.is_empty() {
                return Err(BpfError::Config("empty tenant domain".to_owned()));
            }
            let (rate, burst) = rate_fields(*rate, domain)?;
            let h = tenant_hash(domain.as_bytes());
            if h == abi::UNATTRIBUTED {
                return Err(BpfError::Config(format!(
                    "tenant {domain:?} hashes to {h:#x}, the key reserved for REGISTERs to other hosts"
                )));
            }
            tenants.push((h, abi::Tenant { rate, burst }));
        }

        if c.block.len() > abi::MAX_BLOCK {
            return Err(BpfError::Config(format!("{} blocked CIDRs; at most {}", c.block.len(), abi::MAX_BLOCK)));
        }
        let mut block = Vec::with_capacity(c.block.len());
        for &(addr, len) in &c.block {
            let (bytes, prefix) = match addr {
                IpAddr::V4(a) if len <= 32 => (a.to_ipv6_mapped().octets(), 96 + u32::from(len)),
                IpAddr::V6(a) if len <= 128 => (a.octets(), u32::from(len)),
                _ => return Err(BpfError::Config(format!("bad prefix length {addr}/{len}"))),
            };
            block.push((mask_prefix(bytes, prefix), prefix));
        }

        if c.scanners.len() > abi::N_SCANNERS {
            return Err(BpfError::Config(format!(
                "{} scanner signatures; at most {}",
                c.scanners.len(),
                abi::N_SCANNERS
            )));
        }
        let mut scanners = Vec::with_capacity(c.scanners.len());
        for sig in &c.scanners {
            let b = sig.as_bytes();
            if b.is_empty() || b.len() > abi::SIG_MAX || b.iter().any(|&c| c == 0 || c == b'\r' || c == b'\n') {
                return Err(BpfError::Config(format!(
                    "scanner signature {sig:?}: 1 to {} bytes, no NUL/CR/LF",
                    abi::SIG_MAX
                )));
            }
            let mut s = abi::Sig { len: b.len() as u32, ..abi::Sig::default() };
            for (d, c) in s.bytes.iter_mut().zip(b) {
                *d = c.to_ascii_lowercase();
            }
            scanners.push(s);
        }
        let mut shed = abi::ShedCfg::default();
        if let Some(s) = &c.shed {
            let fac = s.retrieve_fac.as_bytes();
            let (lo, hi) = s.retry_after;
            if fac.len() > abi::FAC_MAX || lo > hi || hi > u32::from(u16::MAX) {
                return Err(BpfError::Config(format!(
                    "overload shedding: a retrieve code of at most {} bytes and Retry-After {lo}..={hi} within 0..=65535",
                    abi::FAC_MAX
                )));
            }
            shed.key = s.key;
            (shed.retry_min, shed.retry_max) = (lo as u16, hi as u16);
            shed.retrieve_len = fac.len() as u32;
            shed.retrieve[..fac.len()].copy_from_slice(fac);
        }
        Ok(XdpMaps { cfg, tenants, block, scanners, shed })
    }
}

/// Clears the bits of `addr` past `prefix`.
fn mask_prefix(mut addr: [u8; 16], prefix: u32) -> [u8; 16] {
    for (i, b) in addr.iter_mut().enumerate() {
        let start = i as u32 * 8;
        if start >= prefix {
            *b = 0;
        } else if prefix - start < 8 {
            *b &= 0xffu8 << (8 - (prefix - start));
        }
    }
    addr
}

/// Makes the maps of a loaded XDP object say what `c` says: the one
/// function behind [`Xdp::attach`], [`Xdp::update`] and [`XdpTester`].
///
/// On maps already in use (a reload) the order matters to the packets in
/// flight: tenants and blocked networks are added first, then the flags and
/// default rate change, and only then are the tenants and networks that `c`
/// no longer has removed. A tenant that stays keeps its rate bucket (the
/// buckets are a map of their own). A failure part-way leaves the maps
/// between the old and the new set.
fn configure_xdp(ebpf: &mut Ebpf, c: &XdpConfig) -> Result<(), BpfError> {
    let m = XdpMaps::from_config(c)?;
    let map_err = |what: &'static str| move |e: aya::maps::MapError| classify(what, e, BpfError::Map);
    {
        let mut h: HashMap<_, u32, abi::Tenant> =
            map_mut(ebpf, "sipark_tenants")?.try_into().map_err(map_err("sipark_tenants"))?;
        for (hash, t) in &m.tenants {
            h.insert(hash, t, 0).map_err(map_err("sipark_tenants"))?;
        }
    }
    {
        let mut t: LpmTrie<_, [u8; 16], u8> =
            map_mut(ebpf, "sipark_block")?.try_into().map_err(map_err("sipark_block"))?;
        for (addr, prefix) in &m.block {
            t.insert(&Key::new(*prefix, *addr), 1, 0).map_err(map_err("sipark_block"))?;
        }
    }
    {
        let mut a: Array<_, abi::Cfg> = map_mut(ebpf, "sipark_cfg")?.try_into().map_err(map_err("sipark_cfg"))?;
        a.set(0, m.cfg, 0).map_err(map_err("sipark_cfg"))?;
    }
    {
        let mut h: HashMap<_, u32, abi::Tenant> =
            map_mut(ebpf, "sipark_tenants")?.try_into().map_err(map_err("sipark_tenants"))?;
        let keep: hashbrown::HashSet<u32> = m.tenants.iter().map(|(hash, _)| *hash).collect();
        // Collected first: deleting while walking the keys would skip some.
        let stale: Vec<u32> = h
            .keys()
            .collect::<Result<Vec<u32>, _>>()
            .map_err(map_err("sipark_tenants"))?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        for k in &stale {
            h.remove(k).map_err(map_err("sipark_tenants"))?;
        }
    }
    {
        let mut t: LpmTrie<_, [u8; 16], u8> =
            map_mut(ebpf, "sipark_block")?.try_into().map_err(map_err("sipark_block"))?;
        let keep: hashbrown::HashSet<(u32, [u8; 16])> = m.block.iter().map(|(a, p)| (*p, *a)).collect();
        let stale: Vec<Key<[u8; 16]>> = t
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("sipark_block"))?
            .into_iter()
            .filter(|k| !keep.contains(&(k.prefix_len(), k.data())))
            .collect();
        for k in &stale {
            t.remove(k).map_err(map_err("sipark_block"))?;
        }
    }
    {
        let mut a: Array<_, abi::ShedCfg> =
            map_mut(ebpf, "sipark_shed_cfg")?.try_into().map_err(map_err("sipark_shed_cfg"))?;
        a.set(0, m.shed, 0).map_err(map_err("sipark_shed_cfg"))?;
    }
    {
        let mut a: Array<_, abi::Sig> =
            map_mut(ebpf, "sipark_scanners")?.try_into().map_err(map_err("sipark_scanners"))?;
        for i in 0..abi::N_SCANNERS {
            let sig = m.scanners.get(i).copied().unwrap_or_default();
            a.set(i as u32, sig, 0).map_err(map_err("sipark_scanners"))?;
        }
    }
    Ok(())
}

/// Sums a per-CPU `u64` counter array of `N` entries.
fn sum_percpu<T: Borrow<MapData>, const N: usize>(map: &PerCpuArray<T, u64>) -> Result<[u64; N], BpfError> {
    let mut out = [0u64; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let v = map.get(&(i as u32), 0).map_err(|e| classify("counters", e, BpfError::Map))?;
        *slot = v.iter().copied().fold(0u64, u64::wrapping_add);
    }
    Ok(out)
}

/// The loaded parity program, kept between calls.
static PARITY: Mutex<Option<Ebpf>> = Mutex::new(None);

/// Runs `sipark_parity` (ebpf/parity.bpf.c) on `domain` (at most 300
/// bytes): the kernel's `tenant_hash(domain)` and its reductions to
/// [`abi::PARITY_SHARD_COUNTS`] shards.
pub fn parity(domain: &[u8]) -> Result<(u32, [u16; 6]), BpfError> {
    if domain.len() > abi::PARITY_MAX {
        return Err(BpfError::Config(format!("parity: {} bytes; at most {}", domain.len(), abi::PARITY_MAX)));
    }
    let mut guard = PARITY.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let mut ebpf = load_object(objects::PARITY, "parity object")?;
        load_xdp(&mut ebpf, "sipark_parity")?;
        *guard = Some(ebpf);
    }
    let Some(ebpf) = guard.as_mut() else {
        return Err(BpfError::Load("parity object vanished".to_owned()));
    };
    // A u16 length, the domain, then zeros up to the 14 bytes an XDP test
    // run needs.
    let mut input = Vec::with_capacity(2 + domain.len().max(14));
    input.extend_from_slice(&(domain.len() as u16).to_le_bytes());
    input.extend_from_slice(domain);
    input.resize(input.len().max(14), 0);
    {
        let mut out: Array<_, abi::ParityOut> =
            map_mut(ebpf, "sipark_par_out")?.try_into().map_err(|e| classify("sipark_par_out", e, BpfError::Map))?;
        out.set(0, abi::ParityOut::default(), 0).map_err(|e| classify("sipark_par_out", e, BpfError::Map))?;
    }
    let prog: &AyaXdp = ebpf
        .program("sipark_parity")
        .ok_or_else(|| BpfError::Load("no program sipark_parity".to_owned()))?
        .try_into()
        .map_err(|e: ProgramError| classify("sipark_parity", e, BpfError::Load))?;
    let res = prog
        .test_run(TestRunOptions { data_in: Some(&input), ..TestRunOptions::default() })
        .map_err(|e| classify("sipark_parity test run", e, BpfError::Load))?;
    if res.return_value != xdp::XDP_PASS {
        return Err(BpfError::Load(format!("sipark_parity returned {}", res.return_value)));
    }
    let out: Array<_, abi::ParityOut> = ebpf
        .map("sipark_par_out")
        .ok_or_else(|| BpfError::Map("no map sipark_par_out".to_owned()))?
        .try_into()
        .map_err(|e| classify("sipark_par_out", e, BpfError::Map))?;
    let o = out.get(&0, 0).map_err(|e| classify("sipark_par_out", e, BpfError::Map))?;
    let want_len = domain.len().min(crate::proto::route::MAX_DOMAIN_HASHED) as u32;
    if o.len != want_len {
        return Err(BpfError::Load(format!("sipark_parity hashed {} bytes, expected {want_len}", o.len)));
    }
    Ok((o.hash, o.shards))
}

/// How many instructions the verifier processed for each program when it
/// loaded it (kernel 5.16+; `None` where the kernel does not say). Loads
/// each object afresh; nothing is attached.
pub fn verified_instructions() -> Result<Vec<(&'static str, Option<u32>)>, BpfError> {
    let mut out = Vec::new();
    for (bytes, name) in [(objects::XDP, "sipark_xdp"), (objects::PARITY, "sipark_parity")] {
        let mut ebpf = load_object(bytes, name)?;
        let prog = load_xdp(&mut ebpf, name)?;
        let info = prog.info().map_err(|e| classify(name, e, BpfError::Load))?;
        out.push((name, info.verified_instruction_count()));
    }
    out.push(("sipark_steer", steer::verified_instructions()?));
    Ok(out)
}
