//! `#[repr(C)]` mirrors of every struct and constant in `ebpf/sipark.h`.
//!
//! Each layout is checked against the C size at compile time; a change on
//! one side that is not made on the other fails the build (the sizes) or
//! the BPF tests (the meaning).

use std::mem::size_of;

/// `SIPARK_MAX_PORTS`: ports in [`Cfg::ports`].
pub const MAX_PORTS: usize = 8;
/// `SIPARK_UNATTRIBUTED`: the rate bucket of REGISTERs whose Request-URI
/// host is not a tenant; no tenant may hash to it.
pub const UNATTRIBUTED: u32 = 0;
/// `SIPARK_MAX_PAYLOAD`: UDP payload bytes the programs inspect.
pub const MAX_PAYLOAD: usize = 1472;
/// `SIPARK_SCRATCH_SIZE`.
pub const SCRATCH_SIZE: usize = 2048;
/// `SIPARK_N_SCANNERS`: slots in `sipark_scanners`.
pub const N_SCANNERS: usize = 16;
/// `SIPARK_SIG_MAX`: longest User-Agent signature.
pub const SIG_MAX: usize = 32;
/// `SIPARK_MAX_TENANTS`: entries of `sipark_tenants`.
pub const MAX_TENANTS: usize = 65536;
/// `SIPARK_MAX_BLOCK`: entries of `sipark_block`.
pub const MAX_BLOCK: usize = 16384;
/// `SIPARK_MAX_BANS`: entries of `sipark_bans`.
pub const MAX_BANS: usize = 65536;
/// `SIPARK_MAX_SOCKS`: entries of `sipark_socks` (most shards steered).
pub const MAX_SOCKS: usize = 1024;
/// `SIPARK_PARITY_MAX`: longest domain `parity` accepts.
pub const PARITY_MAX: usize = 300;
/// Shard counts the parity program reduces to, in order.
pub const PARITY_SHARD_COUNTS: [u16; 6] = [1, 2, 4, 16, 64, 1024];
/// `SIPARK_SHED_ONE`: admission shares are in `1 / SHED_ONE`.
pub const SHED_ONE: u32 = 65536;
/// `SIPARK_FAC_MAX`: longest retrieve feature code XDP compares.
pub const FAC_MAX: usize = 16;
/// `SIPARK_MAX_VIA`: most Via lines of a request XDP answers 503.
pub const MAX_VIA: usize = 8;
/// `SIPARK_FLAG_STRICT` in [`Cfg::flags`].
pub const FLAG_STRICT: u32 = 1;

/// `enum sipark_reason`: index of each XDP verdict counter.
pub mod reason {
    /// SIP to one of our ports, passed.
    pub const PASS: usize = 0;
    /// To our port, but not SIP (empty, garbage, CRLF keep-alive).
    pub const DROP_NOT_SIP: usize = 1;
    /// Strict mode and the Request-URI host is not a tenant.
    pub const DROP_UNKNOWN_TENANT: usize = 2;
    /// The tenant is over its rate.
    pub const DROP_RATE: usize = 3;
    /// The User-Agent starts with a scanner signature.
    pub const DROP_SCANNER: usize = 4;
    /// The source address is in the blocklist.
    pub const DROP_BLOCKED: usize = 5;
    /// Not UDP to our ports: passed untouched.
    pub const PASS_NOT_OURS: usize = 6;
    /// Could be ours but cannot be read (fragments, IPv6 extension
    /// headers, two VLAN tags): passed.
    pub const PASS_UNPARSED: usize = 7;
    /// The source is banned (`sipark_bans`) and its ban is not over.
    pub const DROP_BANNED: usize = 8;
    /// A new request its shard's admission share refuses: answered 503
    /// from XDP (`XDP_TX`).
    pub const TX_SHED: usize = 9;
    /// The ACK of an overload 503 (To tag `ovl-`).
    pub const DROP_SHED_ACK: usize = 10;
}

/// `SIPARK_N_REASONS`.
pub const N_REASONS: usize = 11;

/// Metric label of each reason, indexed like [`reason`].
pub const REASON_NAMES: [&str; N_REASONS] = [
    "pass",
    "not_sip",
    "unknown_tenant",
    "rate_limited",
    "scanner",
    "blocklist",
    "not_ours",
    "unparsed",
    "banned",
    "shed",
    "shed_ack",
];

/// The XDP action of each reason (`verdict()` in xdp.bpf.c), as the
/// metrics' `action` label: `pass`, `drop` or `tx` (sent back out).
pub const REASON_ACTIONS: [&str; N_REASONS] =
    ["pass", "drop", "drop", "drop", "drop", "drop", "pass", "pass", "drop", "tx", "drop"];

/// `enum sipark_steer_outcome`: index of the steering counters.
pub mod steer {
    /// `bpf_sk_select_reuseport` picked the owner's socket.
    pub const STEERED: usize = 0;
    /// The kernel's own choice was kept.
    pub const FALLBACK: usize = 1;
}
/// `SIPARK_N_STEER`.
pub const N_STEER: usize = 2;

/// `struct sipark_cfg` (map `sipark_cfg`, one entry).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cfg {
    /// Shards in the `SO_REUSEPORT` group (steer program only).
    pub n_shards: u32,
    /// [`FLAG_STRICT`].
    pub flags: u32,
    /// Requests per second per tenant without its own rate; 0 = unlimited.
    pub default_rate: u32,
    /// Requests admitted back-to-back above the rate.
    pub default_burst: u32,
    /// Host byte order; the first `n_ports` are used.
    pub ports: [u16; MAX_PORTS],
    pub n_ports: u32,
    pub _pad: u32,
}

/// `struct sipark_tenant` (map `sipark_tenants`, key: tenant hash).
/// `rate == 0` means the default rate of [`Cfg`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tenant {
    pub rate: u32,
    pub burst: u32,
}

/// `struct sipark_bucket` (map `sipark_buckets`, key: tenant hash).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// GCRA theoretical arrival time, `CLOCK_MONOTONIC` nanoseconds.
    pub tat_ns: u64,
}

/// `struct sipark_lpm_key` (map `sipark_block`): IPv4 as `::ffff:a.b.c.d`
/// with prefix length `96 + p`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LpmKey {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

/// `struct sipark_ban_key` (map `sipark_bans`): an IPv4 address as
/// `::ffff:a.b.c.d`, or an IPv6 /64 with its last 8 bytes zero
/// ([`crate::proto::guard::Source::bytes`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BanKey {
    pub addr: [u8; 16],
}

/// `struct sipark_ban` (map `sipark_bans`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BanEntry {
    /// When the ban ends, `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub until_ns: u64,
}

/// `struct sipark_shed` (map `sipark_shed`, index: shard).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shed {
    /// Share of new INVITEs and REGISTERs refused, in `1 / SHED_ONE`: those
    /// whose admission hash has its top 16 bits under it. 0 refuses none.
    pub refuse: u32,
    pub _pad: u32,
    /// Until when ACKs of overload 503s are dropped, `CLOCK_MONOTONIC` ns.
    pub ack_until_ns: u64,
}

/// `struct sipark_shed_cfg` (map `sipark_shed_cfg`, one entry).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShedCfg {
    /// Key of the admission hash (`overload::admission_hash`).
    pub key: u32,
    /// `Retry-After` seconds, drawn from `retry_min..=retry_max`.
    pub retry_min: u16,
    pub retry_max: u16,
    /// The retrieve feature code, `retrieve[..retrieve_len]`; 0 = none.
    pub retrieve_len: u32,
    pub retrieve: [u8; FAC_MAX],
}

/// `struct sipark_sig` (map `sipark_scanners`): a lowercase User-Agent
/// prefix; `len == 0` is an unused slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sig {
    pub len: u32,
    pub bytes: [u8; SIG_MAX],
}

/// `struct sipark_scratch` (per-CPU, used by the programs only).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_SIZE],
}

/// `struct sipark_parity_out` (map `sipark_par_out`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParityOut {
    pub hash: u32,
    /// Bytes hashed (at most 255).
    pub len: u32,
    /// `reduce(hash, n)` for n in [`PARITY_SHARD_COUNTS`].
    pub shards: [u16; 6],
}

const _: () = assert!(size_of::<Cfg>() == 40);
const _: () = assert!(size_of::<Tenant>() == 8);
const _: () = assert!(size_of::<Bucket>() == 8);
const _: () = assert!(size_of::<LpmKey>() == 20);
const _: () = assert!(size_of::<Sig>() == 36);
const _: () = assert!(size_of::<BanKey>() == 16);
const _: () = assert!(size_of::<BanEntry>() == 8);
const _: () = assert!(size_of::<Scratch>() == SCRATCH_SIZE);
const _: () = assert!(size_of::<Shed>() == 16);
const _: () = assert!(size_of::<ShedCfg>() == 28);
const _: () = assert!(size_of::<ParityOut>() == 20);
const _: () = assert!(MAX_PAYLOAD < SCRATCH_SIZE);

// SAFETY: plain `#[repr(C)]` integers and integer arrays with no padding
// (the sizes are asserted above): every bit pattern is valid.
unsafe impl aya::Pod for Cfg {}
// SAFETY: as above.
unsafe impl aya::Pod for Tenant {}
// SAFETY: as above.
unsafe impl aya::Pod for Bucket {}
// SAFETY: as above.
unsafe impl aya::Pod for LpmKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Sig {}
// SAFETY: as above.
unsafe impl aya::Pod for BanKey {}
// SAFETY: as above.
unsafe impl aya::Pod for BanEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for ParityOut {}
// SAFETY: as above.
unsafe impl aya::Pod for Shed {}
// SAFETY: as above.
unsafe impl aya::Pod for ShedCfg {}
