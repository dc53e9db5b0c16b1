//! `sipark-load --moh-streams N`: music on hold under load (issue 14).
//!
//! 1. Parks `N` calls as the background calls of a park-cycle run do (one
//!    per extension, `INVITE sip:*68<ext>@<tenant>` with `Referred-By`),
//!    each SDP offer naming one of a few RTP receive sockets of this
//!    process ([`rx`]) in `c=` and `m=`, and ACKs each 200: sipark streams
//!    music to them from the ACK on. Nothing is registered.
//! 2. After a warm-up, measures a window of `S` seconds: the engine's CPU
//!    (`/proc/<pid>/stat`), its music-on-hold counters (its metrics, when
//!    `--engine-metrics` is given), and at the receiver, by kernel receive
//!    stamp, each stream's packets, losses and pacing.
//! 3. Optionally, while the streams play on, runs closed-loop park cycles
//!    ([`crate::load::run`], with its own registrations) and reports them
//!    as a plain run does: park cycles per engine CPU-second with `N`
//!    streams running.
//! 4. Hangs every call up (BYE).
//! 5. Optionally, the floor ([`floor`]): the same packets at the same rate
//!    to the same receivers from a bare batched sender pinned to one core,
//!    while the engine is idle, measured the same way.
//!
//! Every phase has a time limit, and the whole run a hard stop.

pub mod floor;
pub mod report;
pub mod rx;
pub mod scrape;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::driver::Gen;
use super::net::Rx;
use super::{LoadConfig, LoadError, Mode};
use report::{CyclePhase, FloorFigures, MohReport, RxFigures};
use rx::{Command, Window};
use scrape::MohMetrics;

/// Most parked calls with music one run asks for.
pub const MAX_STREAMS: u32 = 100_000;
/// Longest measured window, warm-up and cycle phase.
pub const MAX_WINDOW: Duration = Duration::from_secs(600);
pub const MAX_WARMUP: Duration = Duration::from_secs(60);
pub const MAX_CYCLE_PHASE: Duration = Duration::from_secs(300);
/// Most RTP receive sockets.
pub const MAX_RTP_SOCKETS: usize = 256;
/// Unmeasured seconds of the floor before its window.
const FLOOR_WARMUP: Duration = Duration::from_secs(1);
/// How long, after a window's end, its receiver report may take.
const REPORT_WAIT: Duration = Duration::from_secs(10);
/// The SIP event loop's turn while something else runs.
const TURN: Duration = Duration::from_millis(20);

/// Everything a music-on-hold run needs.
#[derive(Debug, Clone)]
pub struct MohConfig {
    /// The SIP side: target, bind address, tenants, sockets, timers,
    /// feature codes, background window, engine CPU; its mode, `warmup`
    /// and `timeout` are the cycle phase's.
    pub load: LoadConfig,
    /// Calls parked with music.
    pub streams: u32,
    /// The measured window, after `warmup` of music.
    pub window: Duration,
    pub warmup: Duration,
    /// RTP receive sockets (streams spread over them) and their address
    /// (of the family of `load.bind`, which the SDP names).
    pub rtp_sockets: usize,
    pub rtp_bind: IpAddr,
    /// Closed-loop park cycles (at `load.mode`'s concurrency, after
    /// `load.warmup`) for this long while the streams play; zero: none.
    pub cycle_seconds: Duration,
    /// Run the floor, its sending thread pinned to `floor_cpu`.
    pub floor: bool,
    pub floor_cpu: Option<usize>,
    /// The engine's metrics endpoint, for its music-on-hold counters.
    pub metrics: Option<SocketAddr>,
}

impl MohConfig {
    /// `streams` calls with music against `load.target`, a 10 s window
    /// after 2 s, 16 receive sockets, the floor on CPU 0, no cycle phase.
    pub fn new(load: LoadConfig, streams: u32) -> MohConfig {
        let rtp_bind = load.bind;
        MohConfig {
            load,
            streams,
            window: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rtp_sockets: 16,
            rtp_bind,
            cycle_seconds: Duration::ZERO,
            floor: true,
            floor_cpu: Some(0),
            metrics: None,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |s: &str| Err(LoadError::Config(s.into()));
        if self.streams == 0 || self.streams > MAX_STREAMS {
            return bad("--moh-streams must be 1..=100000");
        }
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return bad("the music-on-hold window (--duration) must be positive and at most 600 s");
        }
        if self.warmup > MAX_WARMUP {
            return bad("--moh-warmup must be at most 60 s");
        }
        if self.cycle_seconds > MAX_CYCLE_PHASE {
            return bad("--moh-cycle-seconds must be at most 300");
        }
        if self.rtp_sockets == 0 || self.rtp_sockets > MAX_RTP_SOCKETS {
            return bad("--moh-sockets must be 1..=256");
        }
        if self.rtp_bind.is_ipv6() != self.load.bind.is_ipv6() || self.rtp_bind.is_unspecified() {
            return bad("--moh-bind must be a concrete address of --bind's family (the SDP names it)");
        }
        if !matches!(self.load.mode, Mode::Closed { .. }) {
            return bad("the cycle phase runs closed loop only (--concurrency, not --rate)");
        }
        let mut load = self.load.clone();
        load.background_parked = self.streams;
        load.validate()
    }

    /// The SIP side as the background parks see it.
    fn parks(&self) -> LoadConfig {
        let mut c = self.load.clone();
        c.background_parked = self.streams;
        c
    }

    /// The cycle phase's run: the load's, without background calls, for
    /// `cycle_seconds`.
    fn cycles(&self) -> LoadConfig {
        let mut c = self.load.clone();
        c.background_parked = 0;
        c.duration = Some(self.cycle_seconds);
        c.cycles = None;
        c.timeout = self.cycle_limit();
        c
    }

    /// The cycle phase's hard stop: the registrations and unregistrations
    /// (64·T1 each at most), the warm-up, the cycles and two minutes.
    fn cycle_limit(&self) -> Duration {
        2 * 64 * self.load.t1 + self.load.warmup + self.cycle_seconds + Duration::from_secs(120)
    }

    /// The hard stop of the whole run.
    pub fn timeout(&self) -> Duration {
        let phases = 2 * self.parks().background_phase_limit();
        let cycles = if self.cycle_seconds.is_zero() { Duration::ZERO } else { self.cycle_limit() };
        let floor = if self.floor { FLOOR_WARMUP + self.window + REPORT_WAIT } else { Duration::ZERO };
        phases + self.warmup + self.window + REPORT_WAIT + cycles + floor + Duration::from_secs(30)
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> LoadError + '_ {
    move |e| LoadError::Io(format!("{what}: {e}"))
}

/// The engine's counters at `addr`, if asked for; a failure is reported
/// and the run goes on without them.
fn metrics(addr: Option<SocketAddr>, errors: &mut Vec<String>) -> Option<MohMetrics> {
    match MohMetrics::read(addr?) {
        Ok(m) => Some(m),
        Err(e) => {
            if !errors.contains(&e) {
                errors.push(e);
            }
            None
        }
    }
}

/// A window starting `after` from now, lasting `len`: its realtime bounds
/// for the receiver and its start and end on this clock.
fn window(after: Duration, len: Duration, max_streams: usize) -> (Window, Instant, Instant) {
    let now_rt = rx::realtime_ns();
    let start = Instant::now() + after;
    let start_ns = now_rt + after.as_nanos() as u64;
    (Window { start_ns, end_ns: start_ns + len.as_nanos() as u64, max_streams }, start, start + len)
}

/// Runs the whole bench against `cfg.load.target`.
pub fn run(cfg: &MohConfig) -> Result<MohReport, LoadError> {
    cfg.validate()?;
    let hard_stop = Instant::now() + cfg.timeout();
    let socks = rx::Sockets::bind(cfg.rtp_bind, cfg.rtp_sockets).map_err(io("RTP receive sockets"))?;
    let addrs = socks.addrs.clone();
    let rcvbuf = socks.rcvbuf;
    let receiver = rx::spawn(socks).map_err(io("RTP receiver thread"))?;
    let result = run_with(cfg, &receiver, &addrs, hard_stop);
    let _ = receiver.commands.send(Command::Stop);
    let _ = receiver.thread.join();
    let mut r = result?;
    r.rcvbuf_bytes = rcvbuf;
    Ok(r)
}

fn run_with(
    cfg: &MohConfig,
    receiver: &rx::RxHandle,
    addrs: &[SocketAddr],
    hard_stop: Instant,
) -> Result<MohReport, LoadError> {
    let parks = cfg.parks();
    let mut g = Gen::new(&parks, super::nonce(parks.seed))?;
    g.set_background_media(addrs);
    let mut sip = Rx::new();
    let mut errors = Vec::new();
    let max_streams = max_streams(cfg);
    let mut r = MohReport::new(cfg);

    // 1. The parks.
    let t = Instant::now();
    g.park_background(&mut sip, hard_stop.min(t + parks.background_phase_limit()))?;
    r.park_s = t.elapsed().as_secs_f64();
    r.parked = g.c.bg_ok;
    r.park_failed = g.c.bg_refused + g.c.bg_no_answer;
    r.park_refusals = (300u16..).zip(g.bg_refusals.iter().copied()).filter(|(_, n)| *n > 0).collect();

    // 2. The warm-up and the window.
    let (w, start, end) = window(cfg.warmup, cfg.window, max_streams);
    receiver.commands.send(Command::Measure(w)).map_err(|_| LoadError::Io("the RTP receiver ended".into()))?;
    g.idle(&mut sip, start.min(hard_stop))?;
    let m0 = metrics(cfg.metrics, &mut errors);
    let cpu0 = cfg.load.engine_cpu.read().map_err(io("engine CPU"))?;
    g.idle(&mut sip, end.min(hard_stop))?;
    let cpu1 = cfg.load.engine_cpu.read().map_err(io("engine CPU"))?;
    let m1 = metrics(cfg.metrics, &mut errors);
    r.window_s = cfg.window.as_secs_f64();
    r.engine_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a).as_secs_f64());
    r.engine = m0.zip(m1).map(|(a, b)| b.since(&a));
    r.rx = Some(RxFigures::of(&receive(receiver, &mut g, &mut sip, hard_stop)?));
    r.calls_lost = g.c.bg_lost;

    // 3. Park cycles while the music plays.
    if !cfg.cycle_seconds.is_zero() {
        r.cycles = Some(cycle_phase(cfg, receiver, &mut g, &mut sip, hard_stop, &mut errors)?);
    }
    r.parked_at_end = g.background_parked_now();
    r.calls_lost = g.c.bg_lost;

    // 4. Hang up.
    let t = Instant::now();
    g.hangup_background(&mut sip, hard_stop.min(t + parks.background_phase_limit()))?;
    r.hangup_s = t.elapsed().as_secs_f64();
    r.hangup_ok = g.c.bg_bye_ok;
    r.hangup_failed = g.c.bg_bye_failed;

    // 5. The floor, with the engine idle.
    if cfg.floor {
        g.idle(&mut sip, (Instant::now() + Duration::from_millis(300)).min(hard_stop))?;
        r.streams_after_hangup = metrics(cfg.metrics, &mut errors).map(|m| m.streams);
        r.floor = Some(floor_phase(cfg, receiver, addrs, max_streams, &mut g, &mut sip, hard_stop)?);
    }
    r.metrics_errors = errors;
    Ok(r)
}

/// Waits for the receiver's report of the window just ended, answering
/// SIP meanwhile.
fn receive(
    receiver: &rx::RxHandle,
    g: &mut Gen<'_>,
    sip: &mut Rx,
    hard_stop: Instant,
) -> Result<rx::RxReport, LoadError> {
    let limit = (Instant::now() + REPORT_WAIT).min(hard_stop);
    loop {
        match receiver.reports.try_recv() {
            Ok(r) => return Ok(r),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(LoadError::Io("the RTP receiver ended".into()));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        if Instant::now() >= limit {
            return Err(LoadError::Timeout("no report from the RTP receiver".into()));
        }
        g.idle(sip, Instant::now() + TURN)?;
    }
}

/// Closed-loop park cycles on a thread of their own while the streams
/// play on, this thread answering the parked calls' SIP meanwhile.
fn cycle_phase(
    cfg: &MohConfig,
    receiver: &rx::RxHandle,
    g: &mut Gen<'_>,
    sip: &mut Rx,
    hard_stop: Instant,
    errors: &mut Vec<String>,
) -> Result<CyclePhase, LoadError> {
    let cycles = cfg.cycles();
    let m0 = metrics(cfg.metrics, errors);
    // The music is measured over the whole phase (its registrations too): the window is
    // closed when the cycles' thread ends.
    let (w, _, _) = window(Duration::ZERO, cfg.cycle_limit(), max_streams(cfg));
    receiver.commands.send(Command::Measure(w)).map_err(|_| LoadError::Io("the RTP receiver ended".into()))?;
    let t0 = Instant::now();
    let report = std::thread::scope(|s| -> Result<_, LoadError> {
        let h = s.spawn(|| super::run(&cycles));
        while !h.is_finished() {
            g.idle(sip, (Instant::now() + TURN).min(hard_stop))?;
        }
        h.join().map_err(|_| LoadError::Io("the cycle phase's thread panicked".into()))
    })??;
    let secs = t0.elapsed().as_secs_f64();
    receiver
        .commands
        .send(Command::Close(rx::realtime_ns()))
        .map_err(|_| LoadError::Io("the RTP receiver ended".into()))?;
    let m1 = metrics(cfg.metrics, errors);
    let music = RxFigures::of(&receive(receiver, g, sip, hard_stop)?);
    Ok(CyclePhase { report, phase_s: secs, music, engine: m0.zip(m1).map(|(a, b)| b.since(&a)) })
}

/// Most streams the receiver tracks: the calls with music, and room for
/// strays.
fn max_streams(cfg: &MohConfig) -> usize {
    cfg.streams as usize * 2 + 4096
}

/// The floor: a bare sender on its own thread (pinned) to the same
/// receivers, for a warm-up and the same window.
fn floor_phase(
    cfg: &MohConfig,
    receiver: &rx::RxHandle,
    addrs: &[SocketAddr],
    max_streams: usize,
    g: &mut Gen<'_>,
    sip: &mut Rx,
    hard_stop: Instant,
) -> Result<FloorFigures, LoadError> {
    let (w, _, end) = window(FLOOR_WARMUP, cfg.window, max_streams);
    if end >= hard_stop {
        return Err(LoadError::Timeout("no time left for the floor".into()));
    }
    receiver.commands.send(Command::Measure(w)).map_err(|_| LoadError::Io("the RTP receiver ended".into()))?;
    let plan = floor::FloorPlan {
        streams: cfg.streams,
        dests: addrs.to_vec(),
        bind: cfg.rtp_bind,
        cpu: cfg.floor_cpu,
        start_ns: w.start_ns,
        end_ns: w.end_ns,
    };
    let sent = std::thread::scope(|s| -> Result<_, LoadError> {
        let h = std::thread::Builder::new()
            .name("moh-floor".into())
            .spawn_scoped(s, || floor::run(&plan))
            .map_err(io("floor thread"))?;
        while !h.is_finished() {
            g.idle(sip, (Instant::now() + TURN).min(hard_stop))?;
        }
        h.join().map_err(|_| LoadError::Io("the floor's thread panicked".into()))
    })?
    .map_err(io("floor"))?;
    let rx = receive(receiver, g, sip, hard_stop)?;
    Ok(FloorFigures { sent, rx: RxFigures::of(&rx) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(streams: u32) -> MohConfig {
        MohConfig::new(LoadConfig::new("127.0.0.1:5060".parse().unwrap_or_else(|e| panic!("{e}"))), streams)
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(cfg(1).validate(), Ok(()));
        assert_eq!(cfg(MAX_STREAMS).validate(), Ok(()));
        let refused = |c: MohConfig, why: &str| match c.validate() {
            Err(LoadError::Config(e)) => assert!(e.contains(why), "`{e}` lacks `{why}`"),
            other => panic!("accepted ({other:?}), wanted `{why}`"),
        };
        refused(cfg(0), "--moh-streams");
        refused(cfg(MAX_STREAMS + 1), "--moh-streams");
        refused(MohConfig { window: Duration::ZERO, ..cfg(5) }, "--duration");
        refused(MohConfig { window: Duration::from_secs(601), ..cfg(5) }, "--duration");
        refused(MohConfig { warmup: Duration::from_secs(61), ..cfg(5) }, "--moh-warmup");
        refused(MohConfig { cycle_seconds: Duration::from_secs(301), ..cfg(5) }, "--moh-cycle-seconds");
        refused(MohConfig { rtp_sockets: 0, ..cfg(5) }, "--moh-sockets");
        refused(MohConfig { rtp_sockets: 257, ..cfg(5) }, "--moh-sockets");
        refused(MohConfig { rtp_bind: "::1".parse().unwrap_or_else(|e| panic!("{e}")), ..cfg(5) }, "--moh-bind");
        refused(MohConfig { rtp_bind: "0.0.0.0".parse().unwrap_or_else(|e| panic!("{e}")), ..cfg(5) }, "--moh-bind");
        let mut open = cfg(5);
        open.load.mode = Mode::Open { rate: 10.0 };
        refused(open, "closed loop");
        // The parks go through the load's own checks: one call per extension, 9000 and up.
        let mut many = cfg(5);
        many.load.tenants = 10;
        many.load.extensions = 8901;
        refused(many, "8,900 extensions");
    }

    #[test]
    fn every_phase_fits_in_the_hard_stop() {
        let mut c = cfg(10_000);
        c.window = Duration::from_secs(10);
        // Parks and hang-ups: 2 × (64 × 0.5 s + 2 ms × 10,000) = 104 s; warm-up 2; window 10;
        // report 10; floor 1 + 10 + 10; 30 more.
        assert_eq!(c.timeout(), Duration::from_secs(104 + 2 + 10 + 10 + 21 + 30));
        c.cycle_seconds = Duration::from_secs(5);
        // Cycles: registration and unregistration 2 × 32 s, 5 s, 120 s.
        assert_eq!(c.timeout(), Duration::from_secs(177 + 64 + 5 + 120));
        let cycles = c.cycles();
        assert_eq!((cycles.background_parked, cycles.duration, cycles.cycles), (0, Some(Duration::from_secs(5)), None));
        assert_eq!(c.parks().background_parked, 10_000);
    }
}
