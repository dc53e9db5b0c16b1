//! `sipark-load`: park-cycle load generator for a running sipark.
//!
//! Prints a table to stdout and, with `--json FILE`, the same figures as
//! JSON. Exit status: 0 when every cycle completed (and every background
//! call was parked and stayed parked), 1 when some failed or none
//! completed, 2 for bad flags or when the run could not be done.
//!
//! `--floor` drives a `sipark --bare-io` instead, with a park cycle's
//! datagram sizes and no SIP (`load::floor`), for `cargo xtask bench`'s floor.
//!
//! `--moh-streams N` parks N calls with music on hold and measures the RTP
//! sipark sends them, then a bare sender of the same packets (`load::moh`,
//! for `cargo xtask bench --moh`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sipark_benches::load::floor::{self, CycleShape};
use sipark_benches::load::moh::{self, MohConfig};
use sipark_benches::load::{self, EngineCpu, LoadConfig, Mode, SelfCpu};

/// Drives complete park cycles (park, park-info NOTIFYs, retrieve,
/// re-INVITE, clearing NOTIFYs, BYE) against a sipark over UDP and reports
/// latencies and park cycles per engine CPU-second.
#[derive(Debug, Parser)]
#[command(name = "sipark-load", version, about)]
struct Args {
    /// The engine's UDP address.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    /// Process id of the engine, for its CPU time (/proc/PID/stat).
    #[arg(long, value_name = "PID")]
    engine_pid: Option<u32>,
    /// (root) Attach a pass-through copy of sipark's XDP program to IFACE,
    /// this side's end of a veth pair whose other end runs sipark with
    /// native XDP: a veth drops what XDP sends back (the overload 503s of
    /// ADR 0022) unless this end runs an XDP program too. It passes every
    /// frame and is detached at exit.
    #[arg(long, value_name = "IFACE")]
    xdp_peer: Option<String>,
    /// Address the generator's sockets bind.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Tenants (domains t<i>.load.example).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    tenants: u32,
    /// Extensions per tenant (100, 101, ...).
    #[arg(long, value_name = "N", default_value_t = 10)]
    extensions: u32,
    /// Registered devices per extension (1..=64; sipark's --max-contacts applies).
    #[arg(long, value_name = "N", default_value_t = 2)]
    devices: u32,
    /// Open loop: start this many cycles per second.
    #[arg(long, value_name = "N", conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: keep this many cycles in flight (default 64 without --rate).
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// Open loop: most cycles in flight (at most half the extensions); starts
    /// beyond are counted as not started.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_inflight: u32,
    /// Cycles to run (default 10000 without --duration).
    #[arg(long, value_name = "N")]
    cycles: Option<u64>,
    /// Seconds to keep starting cycles.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Hard stop for the whole run, seconds (default: 600, or duration + 120).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Generator sockets.
    #[arg(long, value_name = "N", default_value_t = 16)]
    sockets: usize,
    /// Seed of the tenant/extension choice.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// SIP T1 for our retransmissions, ms; a cycle fails after 64*T1.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    t1_ms: u64,
    /// SIP T2, ms.
    #[arg(long, value_name = "MS", default_value_t = 4000)]
    t2_ms: u64,
    /// Park feature code (as configured in sipark).
    #[arg(long, value_name = "CODE", default_value = "*68")]
    park_fac: String,
    /// Retrieve feature code.
    #[arg(long, value_name = "CODE", default_value = "*88")]
    retrieve_fac: String,
    /// REGISTERs in flight at once during set-up.
    #[arg(long, value_name = "N", default_value_t = 512)]
    register_window: u32,
    /// Leave the bindings in place at the end.
    #[arg(long)]
    no_unregister: bool,
    /// Park this many calls after the registrations and keep them parked
    /// while the cycles run (then hang them up with BYE). Call k goes to
    /// extension 9000 + k/tenants of tenant k%tenants: one call per
    /// extension, on extensions no cycle uses and no device registers (so
    /// no NOTIFY is sent for them), Referred-By that same extension. The
    /// run fails if any of them cannot be parked or is hung up by the engine.
    #[arg(long, value_name = "N", default_value_t = 0)]
    background_parked: u32,
    /// Background park INVITEs (and BYEs) in flight at once.
    #[arg(long, value_name = "N", default_value_t = 512)]
    background_window: u32,
    /// Seconds to wait after the background parks before the cycles, so
    /// that their transactions have ended (default: 64*T1 + 2). The same
    /// wait comes before the parks, so that the engine RSS measured before
    /// them holds no registration transactions.
    #[arg(long, value_name = "SECS")]
    background_settle: Option<f64>,
    /// Seconds of unrecorded cycles (same rate or concurrency) before the
    /// measured window, so that the engine's tables have reached their
    /// working size; 34 (64*T1 + 2 s) covers every transaction's lifetime.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    warmup: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The floor: drive a `sipark --bare-io` (no SIP) with a park cycle's
    /// datagrams, as many and of the same sizes (generated in memory for
    /// these tenants, extensions and devices), closed loop, and report the
    /// engine CPU per such cycle. Registration, background calls and
    /// latencies do not apply.
    #[arg(long, conflicts_with_all = ["rate", "background_parked"])]
    floor: bool,
    /// Music on hold (issue 14): park this many calls with music (SDP
    /// offering PCMU and PCMA, naming this process's RTP receive sockets),
    /// measure a window of --duration seconds (default 10) after
    /// --moh-warmup, receiving and timing every RTP packet; optionally run
    /// closed-loop park cycles while the music plays
    /// (--moh-cycle-seconds, at --concurrency, after --warmup); hang up;
    /// then the floor, a bare batched sender of the same packets. Nothing
    /// is registered for the parked calls. 1..=100000.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "floor", "background_parked", "cycles"])]
    moh_streams: Option<u32>,
    /// Seconds of music before the measured window.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, requires = "moh_streams")]
    moh_warmup: f64,
    /// RTP receive sockets the streams are spread over (1..=256).
    #[arg(long, value_name = "N", default_value_t = 16, requires = "moh_streams")]
    moh_sockets: usize,
    /// Address the RTP receive sockets bind (default: --bind).
    #[arg(long, value_name = "IP", requires = "moh_streams")]
    moh_bind: Option<IpAddr>,
    /// Seconds of closed-loop park cycles (at --concurrency, after --warmup)
    /// while the music plays; 0: none.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, requires = "moh_streams")]
    moh_cycle_seconds: f64,
    /// The CPU the floor's sending thread is pinned to (the engine's
    /// worker's).
    #[arg(long, value_name = "CPU", default_value_t = 0, requires = "moh_streams")]
    moh_floor_cpu: usize,
    /// No floor after the music-on-hold run.
    #[arg(long, requires = "moh_streams")]
    no_moh_floor: bool,
    /// The engine's metrics address (sipark --metrics), for its
    /// music-on-hold counters.
    #[arg(long, value_name = "ADDR", requires = "moh_streams")]
    engine_metrics: Option<SocketAddr>,
}

fn secs(flag: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{flag} {v}: expected a non-negative number of seconds"))
}

fn config(a: &Args) -> Result<LoadConfig, String> {
    let mut c = LoadConfig::new(a.target);
    c.bind = a.bind;
    c.tenants = a.tenants;
    c.extensions = a.extensions;
    c.devices = a.devices;
    c.mode = match (a.rate, a.concurrency) {
        (Some(rate), _) => Mode::Open { rate },
        (None, Some(concurrency)) => Mode::Closed { concurrency },
        (None, None) => Mode::Closed { concurrency: 64 },
    };
    c.max_inflight = a.max_inflight;
    c.duration = a.duration.map(|d| secs("--duration", d)).transpose()?;
    c.cycles = match (a.cycles, c.duration) {
        (None, None) => Some(10_000),
        (n, _) => n,
    };
    c.sockets = a.sockets;
    c.seed = a.seed;
    c.t1 = Duration::from_millis(a.t1_ms);
    c.t2 = Duration::from_millis(a.t2_ms);
    c.background_parked = a.background_parked;
    c.background_window = a.background_window;
    c.background_settle = a.background_settle.map(|s| secs("--background-settle", s)).transpose()?;
    c.warmup = secs("--warmup", a.warmup)?;
    let allowance = c.background_allowance().saturating_add(c.warmup);
    c.timeout = match (a.timeout, c.duration) {
        (Some(t), _) => secs("--timeout", t)?,
        (None, Some(d)) => d.saturating_add(Duration::from_secs(120)).saturating_add(allowance),
        (None, None) => Duration::from_secs(600).saturating_add(allowance),
    };
    c.park_fac.clone_from(&a.park_fac);
    c.retrieve_fac.clone_from(&a.retrieve_fac);
    c.register_window = a.register_window;
    c.unregister = !a.no_unregister;
    c.engine_cpu = a.engine_pid.map_or(EngineCpu::None, EngineCpu::Process);
    c.self_cpu = SelfCpu::Process;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse(); // exits 2 on bad flags
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sipark-load: {e}");
            return ExitCode::from(2);
        }
    };
    // Held for the whole run; dropping it detaches the program.
    let _peer = match args.xdp_peer.as_deref().map(pass_through) {
        None => None,
        Some(Ok(x)) => Some(x),
        Some(Err(e)) => {
            eprintln!("sipark-load: --xdp-peer: {e}");
            return ExitCode::from(2);
        }
    };
    if args.floor {
        return run_floor(&cfg, args.json.as_deref());
    }
    if let Some(streams) = args.moh_streams {
        return match moh_config(&args, cfg, streams) {
            Ok(m) => run_moh(&m, args.json.as_deref()),
            Err(e) => {
                eprintln!("sipark-load: {e}");
                ExitCode::from(2)
            }
        };
    }
    let report = match load::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipark-load: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    if let Err(code) = write_json(args.json.as_deref(), report.to_json()) {
        return code;
    }
    if report.cycles_failed > 0 || report.cycles_ok == 0 || !report.background.clean() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// sipark's XDP program on `iface`, passing every frame: what `--xdp-peer`
/// needs.
fn pass_through(iface: &str) -> Result<sipark::bpf::Xdp, sipark::bpf::BpfError> {
    sipark::bpf::Xdp::attach(&sipark::bpf::XdpConfig::pass_through(iface))
}

/// Writes a run's JSON (and a newline) to `path`, if one was asked for; exit
/// code 2 when it cannot be written.
fn write_json(path: Option<&std::path::Path>, mut text: String) -> Result<(), ExitCode> {
    let Some(path) = path else { return Ok(()) };
    text.push('\n');
    std::fs::write(path, text).map_err(|e| {
        eprintln!("sipark-load: cannot write {}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// `--floor`: the cycle's shape from memory, then the floor run.
fn run_floor(cfg: &LoadConfig, json: Option<&std::path::Path>) -> ExitCode {
    let shape = match CycleShape::from_memory(cfg, floor::SHAPE_CYCLES) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sipark-load: the cycle's datagram sizes (in memory): {e}");
            return ExitCode::from(2);
        }
    };
    let report = match floor::run(cfg, &shape) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipark-load: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    if let Err(code) = write_json(json, report.to_json()) {
        return code;
    }
    if report.cycles_failed > 0 || report.cycles_ok == 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// `--moh-streams`: the music-on-hold run's settings, `load` being the
/// SIP side (`--duration` is the window's length here, 10 s by default).
fn moh_config(a: &Args, load: LoadConfig, streams: u32) -> Result<MohConfig, String> {
    let mut m = MohConfig::new(load, streams);
    m.window = secs("--duration", a.duration.unwrap_or(10.0))?;
    m.warmup = secs("--moh-warmup", a.moh_warmup)?;
    m.rtp_sockets = a.moh_sockets;
    m.rtp_bind = a.moh_bind.unwrap_or(a.bind);
    m.cycle_seconds = secs("--moh-cycle-seconds", a.moh_cycle_seconds)?;
    m.floor = !a.no_moh_floor;
    m.floor_cpu = Some(a.moh_floor_cpu);
    m.metrics = a.engine_metrics;
    m.validate().map_err(|e| e.to_string())?;
    Ok(m)
}

/// `--moh-streams`: the run, its table and JSON. Exit 1 when a call was
/// not parked, was hung up, or was not heard in the window, or a cycle
/// failed.
fn run_moh(cfg: &MohConfig, json: Option<&std::path::Path>) -> ExitCode {
    let report = match moh::run(cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipark-load: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{report}");
    if let Err(code) = write_json(json, report.to_json()) {
        return code;
    }
    if report.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
