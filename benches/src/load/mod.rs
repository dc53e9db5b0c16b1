//! `sipark-load`: drives complete park cycles against a running sipark over
//! UDP and measures them.
//!
//! A cycle, for extension `E` of tenant `T` with `D` registered devices:
//!
//! 1. the parked party sends `INVITE sip:*68E@T` with `Referred-By` and SDP,
//!    gets 200 (hold answer) and ACKs it;
//! 2. each of the `D` devices of `E` gets a park-info NOTIFY and answers 200;
//! 3. one device sends `INVITE sip:*88E@T` (retrieve) with SDP; sipark
//!    answers 100, re-INVITEs the parked party, which answers 200 and gets
//!    the ACK; the device gets 200 and ACKs it;
//! 4. each device gets the clearing NOTIFY (`terminated`) and answers 200;
//! 5. the device sends BYE; sipark relays it to the parked party (200) and
//!    answers the device (200).
//!
//! That is `7 + 2·D` datagrams into the engine and as many out of it.
//!
//! A `503 Service Unavailable` (sipark's overload control) to the park
//! INVITE ends the cycle as refused, not failed; to the retrieve, the
//! parked party hangs up with BYE first. Refused cycles are counted apart,
//! with the time from the INVITE to its 503.
//!
//! Every latency ends when the answer reached the generator's socket (its
//! kernel receive stamp, `SO_TIMESTAMPNS`), not when the generator got to
//! it: a generator that falls behind does not add its own backlog to the
//! engine's figures. It starts when the request was handed to the kernel's
//! send queue (within the generator's turn).
//!
//! [`run`] registers every device first (Expires 3600), then, with
//! [`LoadConfig::background_parked`], parks that many calls that stay parked
//! for the whole run (on extensions no cycle uses and no device registers,
//! so they cause no NOTIFY), then runs the cycles (open loop at a rate, or
//! closed loop at a concurrency) for a count or a duration, then hangs the
//! background calls up and removes the bindings again. Everything is bounded
//! by a hard stop.
//!
//! [`moh`] is the music-on-hold bench (`--moh-streams`): calls parked with
//! music, their RTP received and measured here, and its floor.

pub mod cpu;
pub mod driver;
pub mod floor;
pub mod hist;
pub mod mem;
pub mod moh;
pub mod net;
pub mod report;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub use cpu::{EngineCpu, SelfCpu, vm_rss};
pub use driver::Transport;
pub use hist::Histogram;
pub use report::{Latency, Report};

/// How cycles are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Start this many cycles per second, whatever is in flight (up to
    /// [`LoadConfig::max_inflight`]; starts beyond it are counted as not
    /// started).
    Open { rate: f64 },
    /// Keep this many cycles in flight.
    Closed { concurrency: u32 },
}

/// Why a cycle failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ParkRefused,
    ParkNoAnswer,
    NoParkNotify,
    NoReinvite,
    RetrieveRefused,
    RetrieveNoAnswer,
    NoReinviteAck,
    NoClearNotify,
    ByeRefused,
    ByeNoAnswer,
    ByeNotRelayed,
    HungUp,
    BadMessage,
    Unfinished,
}

impl Failure {
    /// Number of variants.
    pub const COUNT: usize = 14;
    /// Every variant, in order.
    pub const ALL: [Failure; Failure::COUNT] = [
        Failure::ParkRefused,
        Failure::ParkNoAnswer,
        Failure::NoParkNotify,
        Failure::NoReinvite,
        Failure::RetrieveRefused,
        Failure::RetrieveNoAnswer,
        Failure::NoReinviteAck,
        Failure::NoClearNotify,
        Failure::ByeRefused,
        Failure::ByeNoAnswer,
        Failure::ByeNotRelayed,
        Failure::HungUp,
        Failure::BadMessage,
        Failure::Unfinished,
    ];

    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Failure::ParkRefused => "park_refused",
            Failure::ParkNoAnswer => "park_no_answer",
            Failure::NoParkNotify => "no_park_notify",
            Failure::NoReinvite => "no_reinvite",
            Failure::RetrieveRefused => "retrieve_refused",
            Failure::RetrieveNoAnswer => "retrieve_no_answer",
            Failure::NoReinviteAck => "no_reinvite_ack",
            Failure::NoClearNotify => "no_clear_notify",
            Failure::ByeRefused => "bye_refused",
            Failure::ByeNoAnswer => "bye_no_answer",
            Failure::ByeNotRelayed => "bye_not_relayed",
            Failure::HungUp => "parked_party_hung_up",
            Failure::BadMessage => "bad_message",
            Failure::Unfinished => "unfinished_at_hard_stop",
        }
    }
}

/// Why a run could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The configuration makes no sense.
    Config(String),
    /// A socket operation failed.
    Io(String),
    /// The engine did not take the set-up (registrations).
    Setup(String),
    /// A phase did not finish in time.
    Timeout(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Config(s) => write!(f, "configuration: {s}"),
            LoadError::Io(s) => write!(f, "I/O: {s}"),
            LoadError::Setup(s) => write!(f, "set-up: {s}"),
            LoadError::Timeout(s) => write!(f, "timeout: {s}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The engine's UDP address.
    pub target: SocketAddr,
    /// Address the generator's sockets bind (port 0).
    pub bind: IpAddr,
    pub tenants: u32,
    /// Extensions per tenant.
    pub extensions: u32,
    /// Registered devices per extension (1..=64).
    pub devices: u32,
    pub mode: Mode,
    /// Open loop: most cycles in flight (further capped at half the
    /// extensions).
    pub max_inflight: u32,
    /// Stop starting cycles after this many (open loop: counting those not
    /// started).
    pub cycles: Option<u64>,
    /// Stop starting cycles after this long.
    pub duration: Option<Duration>,
    /// Hard stop for the whole run (registration, cycles, clean-up).
    pub timeout: Duration,
    /// Generator sockets; devices and parked parties are spread over them.
    pub sockets: usize,
    pub seed: u64,
    /// SIP T1 and T2 for our retransmissions; a cycle fails after 64·T1.
    pub t1: Duration,
    pub t2: Duration,
    pub park_fac: String,
    pub retrieve_fac: String,
    /// Registrations in flight at once.
    pub register_window: u32,
    /// Remove the bindings at the end.
    pub unregister: bool,
    /// Calls parked before the cycles and kept parked for the whole run:
    /// call `k` on extension `9000 + k / tenants` of tenant `k % tenants`
    /// ([`wire::BG_EXT_BASE`]), one per extension, Referred-By that same
    /// unregistered extension. Hung up with BYE at the end.
    pub background_parked: u32,
    /// Background park INVITEs (and BYEs) in flight at once.
    pub background_window: u32,
    /// How long to wait after the background parks before the cycles, so
    /// that their transactions have ended (`None`: 64·T1 + 2 s). The same
    /// wait comes before the parks, after the registrations, so that the
    /// engine RSS before them holds no transactions either.
    pub background_settle: Option<Duration>,
    /// Cycles run at the same rate or concurrency before the measured
    /// window, unrecorded, so that the engine's tables have grown to their
    /// working size (a fresh engine's maps grow, and each growth stalls its
    /// shard while it rehashes). 64·T1 and a little more covers every
    /// transaction's lifetime.
    pub warmup: Duration,
    pub engine_cpu: EngineCpu,
    pub self_cpu: SelfCpu,
}

impl LoadConfig {
    /// Defaults for `target`: 1,000 tenants × 10 extensions × 2 devices,
    /// closed loop with 64 cycles in flight, 10,000 cycles.
    pub fn new(target: SocketAddr) -> LoadConfig {
        LoadConfig {
            target,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tenants: 1000,
            extensions: 10,
            devices: 2,
            mode: Mode::Closed { concurrency: 64 },
            max_inflight: 10_000,
            cycles: Some(10_000),
            duration: None,
            timeout: Duration::from_secs(600),
            sockets: 16,
            seed: 1,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            park_fac: "*68".into(),
            retrieve_fac: "*88".into(),
            register_window: 512,
            unregister: true,
            background_parked: 0,
            background_window: 512,
            background_settle: None,
            warmup: Duration::ZERO,
            engine_cpu: EngineCpu::None,
            self_cpu: SelfCpu::Process,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |s: &str| Err(LoadError::Config(s.into()));
        if self.tenants == 0 || self.extensions == 0 || self.devices == 0 {
            return bad("tenants, extensions and devices must be at least 1");
        }
        if self.devices > 64 {
            return bad("at most 64 devices per extension");
        }
        let exts = u64::from(self.tenants) * u64::from(self.extensions);
        if exts * u64::from(self.devices) > 10_000_000 {
            return bad("at most 10,000,000 devices in all");
        }
        match self.mode {
            Mode::Closed { concurrency } => {
                if concurrency == 0 {
                    return bad("concurrency must be at least 1");
                }
                if u64::from(concurrency) > (exts / 2).max(1) {
                    return bad("concurrency must be at most half the extensions (one cycle per extension at a time)");
                }
            }
            Mode::Open { rate } => {
                if !(rate.is_finite() && (0.001..=1e6).contains(&rate)) {
                    return bad("rate must be 0.001..=1000000 cycles/s");
                }
                if self.max_inflight == 0 || self.max_inflight > 1_000_000 {
                    return bad("max in-flight must be 1..=1000000");
                }
            }
        }
        if self.cycles.is_none() && self.duration.is_none() {
            return bad("give a cycle count or a duration");
        }
        if self.cycles == Some(0) {
            return bad("cycle count must be at least 1");
        }
        const WEEK: Duration = Duration::from_secs(7 * 86_400);
        if self.timeout.is_zero() || self.timeout > WEEK {
            return bad("timeout must be positive and at most a week");
        }
        if self.duration.is_some_and(|d| d.is_zero() || d > WEEK) {
            return bad("duration must be positive and at most a week");
        }
        if self.sockets == 0 || self.sockets > 1024 {
            return bad("sockets must be 1..=1024");
        }
        if self.t1.is_zero()
            || self.t1 > Duration::from_secs(60)
            || self.t2 < self.t1
            || self.t2 > Duration::from_secs(600)
        {
            return bad("T1 must be positive and at most 60 s, and T2 between T1 and 600 s");
        }
        if self.target.ip().is_unspecified() || self.target.port() == 0 {
            return bad("target must be a concrete address and port");
        }
        if self.background_parked > MAX_BACKGROUND {
            return bad("at most 2,000,000 background parked calls");
        }
        if self.background_parked > 0
            && u64::from(wire::EXT_BASE) + u64::from(self.extensions) > u64::from(wire::BG_EXT_BASE)
        {
            return bad("with background parked calls, at most 8,900 extensions per tenant (9000 and up are theirs)");
        }
        if self.background_window == 0 || self.background_window > 65_536 {
            return bad("background window must be 1..=65536");
        }
        if self.warmup > Duration::from_secs(3600) {
            return bad("warm-up must be at most an hour");
        }
        if self.background_settle.is_some_and(|d| d > Duration::from_secs(3600)) {
            return bad("background settle must be at most an hour");
        }
        Ok(())
    }

    /// The wait between the background parks and the cycles.
    pub fn settle(&self) -> Duration {
        if self.background_parked == 0 {
            return Duration::ZERO;
        }
        self.background_settle.unwrap_or(64 * self.t1 + Duration::from_secs(2))
    }

    /// The most time one background phase (parking, or hanging up) may
    /// take: 64·T1 plus 2 ms per call.
    pub fn background_phase_limit(&self) -> Duration {
        64 * self.t1 + Duration::from_millis(2) * self.background_parked
    }

    /// The time the background calls may add to a run (both phases and the
    /// two settles); zero without them. Callers add it to their hard stop.
    pub fn background_allowance(&self) -> Duration {
        if self.background_parked == 0 {
            return Duration::ZERO;
        }
        2 * self.background_phase_limit() + 2 * self.settle()
    }
}

/// Most background parked calls.
pub const MAX_BACKGROUND: u32 = 2_000_000;

/// A run nonce: different for every run, so that a second run against the
/// same engine never reuses a transaction or dialog identifier.
fn nonce(seed: u64) -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let x = seed ^ t ^ (u64::from(std::process::id()) << 32);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    ((x ^ (x >> 33)) as u32) % 1_000_000_000
}

/// Runs the whole load: registration, cycles, clean-up. The measured window
/// is the cycle phase only.
pub fn run(cfg: &LoadConfig) -> Result<Report, LoadError> {
    cfg.validate()?;
    let started = Instant::now();
    let hard_stop = started + cfg.timeout;
    let mut g = driver::Gen::new(cfg, nonce(cfg.seed))?;
    let mut rx = net::Rx::new();

    let reg_start = Instant::now();
    g.register_all(&mut rx, hard_stop)?;
    let registration = reg_start.elapsed();

    // Background parked calls: parked before the window, kept for all of it.
    // The registrations' transactions are let end first (the same settle as
    // after the parks), so that the RSS before and after differ by the
    // parked calls alone.
    let pid = cfg.engine_cpu.pid();
    let rss = || pid.and_then(vm_rss);
    if cfg.background_parked > 0 {
        g.idle(&mut rx, hard_stop.min(Instant::now() + cfg.settle()))?;
    }
    let mut bg = report::BackgroundInputs { requested: cfg.background_parked, rss_before: rss(), ..Default::default() };
    if cfg.background_parked > 0 {
        let cpu0 = cfg.engine_cpu.read().ok().flatten();
        let t = Instant::now();
        g.park_background(&mut rx, hard_stop.min(t + cfg.background_phase_limit()))?;
        bg.park_time = t.elapsed();
        if let (Some(a), Ok(Some(b))) = (cpu0, cfg.engine_cpu.read()) {
            bg.park_engine_cpu = Some(b.saturating_sub(a));
        }
        bg.rss_parked = rss();
        let settle = cfg.settle();
        g.idle(&mut rx, hard_stop.min(Instant::now() + settle))?;
        bg.settle = settle;
    }
    bg.rss_after = rss();

    if !cfg.warmup.is_zero() {
        g.warm_up(&mut rx, hard_stop, cfg.warmup)?;
    }
    let net0 = g.net_stats();
    let c0 = g.c;
    let engine0 = cfg.engine_cpu.read().map_err(|e| LoadError::Io(format!("engine CPU: {e}")))?;
    let self0 = cfg.self_cpu.read();
    let t0 = Instant::now();
    g.run_cycles(&mut rx, hard_stop)?;
    let window = t0.elapsed();
    let self1 = cfg.self_cpu.read();
    let engine1 = cfg.engine_cpu.read().map_err(|e| LoadError::Io(format!("engine CPU: {e}")))?;
    let net1 = g.net_stats();
    let c1 = g.c;
    bg.rss_end = rss();
    bg.parked_at_end = g.background_parked_now();

    // Clean-up: not measured; a failure here is reported, not fatal.
    if cfg.background_parked > 0 {
        let t = Instant::now();
        g.hangup_background(&mut rx, hard_stop.min(t + cfg.background_phase_limit()))?;
        bg.hangup_time = t.elapsed();
    }
    let mut cleanup_error = None;
    if cfg.unregister {
        let limit = hard_stop.min(Instant::now() + 64 * cfg.t1);
        if let Err(e) = g.unregister_all(&mut rx, limit) {
            cleanup_error = Some(e.to_string());
        }
    }
    let net2 = g.net_stats();
    bg.rss_cleanup = rss();
    bg.refusals = (300u16..).zip(g.bg_refusals.iter().copied()).filter(|(_, n)| *n > 0).collect();

    let engine_cpu = match (engine0, engine1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Ok(Report::build(report::Inputs {
        cfg,
        registration,
        window,
        c0,
        c1,
        c_end: g.c,
        net0,
        net1,
        net_end: net2,
        engine_cpu,
        gen_cpu: self1.saturating_sub(self0),
        h_park: &g.h_park,
        h_notify: &g.h_notify,
        h_retrieve: &g.h_retrieve,
        h_cycle: &g.h_cycle,
        h_shed: &g.h_shed,
        h_shed_nic: &g.h_shed_nic,
        cleanup_error,
        background: bg,
    }))
}
