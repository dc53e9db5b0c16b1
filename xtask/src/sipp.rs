//! `cargo xtask sipp`: the SIPp pack. Drives a release sipark with several SIPp instances on
//! separate loopback addresses and reports SIPp's own statistics next to the CPU time of the
//! engine and of SIPp over the same window, and which side saturated.
//!
//! Per instance i (address 127.0.0.<10+i>): a register SIPp (tests/sipp/register.xml) binds
//! every extension of the instance's tenants to the instance's phone address, then a phone SIPp
//! (tests/sipp/phone.xml) answers the park-info NOTIFYs there, and the load SIPps run the park
//! scenario at rate/K: `park_hangup` runs tests/sipp/bench_park_spread.xml; `park_retrieve`
//! runs tests/sipp/bench_parked_spread.xml and, a fixed delay later at the same rate,
//! tests/sipp/bench_retrieve_spread.xml. Files go to target/sipp/.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{
    cargo_build, clock_ticks_per_sec, create_dir, proc_cpu, reaped_children_cpu, root, start_engine, stop_engine,
    take_options, target_dir,
};

pub(crate) const USAGE: &str = "usage: cargo xtask sipp [--rate R] [--calls N] [--instances K]
                        [--scenario park_hangup|park_retrieve] [--hold-ms MS]
                        [--retrieve-after-ms MS] [--tenants T] [--engine ENGINE-ARGS...]
  --rate R               offered park cycles per second, split over the instances (default 1000)
  --calls N              cycles in all (default: 10 seconds' worth, R x 10)
  --instances K          SIPp instances (127.0.0.10 .. 127.0.0.<9+K>) (default 2)
  --scenario S           park_hangup (park, hold, hang up) or park_retrieve (park, retrieve
                         after --retrieve-after-ms, bridged for --hold-ms) (default park_hangup)
  --hold-ms MS           park_hangup: time parked; park_retrieve: time bridged (default 100)
  --retrieve-after-ms MS park_retrieve: time parked before the retrieve (default 1000)
  --tenants T            tenants (5 extensions each, 100..104) (default: 200, or more so that
                         an extension holds a quarter of a parked call on average)
  --engine ARGS...       everything after it goes to sipark (default --workers 2)";

/// SIPp's socket buffers (`-buff_size`), and what `net.core.rmem_max`/`wmem_max` are raised to.
const BUFF_SIZE: u32 = 4_194_304;
const SOCK_MAX: u64 = 8_388_608;
/// Extensions per tenant: 100, 101, ... (the park scenarios' caller 101 and parker 102 are
/// among them).
const EXTENSIONS: u32 = 5;
const FIRST_EXTENSION: u32 = 100;
/// Registrations per second per register SIPp.
const REGISTER_RATE: u32 = 2000;
/// Most calls in progress per SIPp (`-l`): SIPp wants open calls below its open-file limit.
const MAX_OPEN_CALLS: u64 = 15_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    ParkHangup,
    ParkRetrieve,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ParkHangup => "park_hangup",
            Scenario::ParkRetrieve => "park_retrieve",
        }
    }
}

/// The arguments of `cargo xtask sipp`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SippArgs {
    pub rate: u32,
    pub calls: u32,
    pub instances: u32,
    pub scenario: Scenario,
    pub hold_ms: u32,
    pub retrieve_after_ms: u32,
    pub tenants: u32,
    pub engine: Vec<OsString>,
}

impl SippArgs {
    /// Seconds from a cycle's start to its end that are not the engine's (hold times): the
    /// tail of the run after the last cycle started.
    fn tail_ms(&self) -> u32 {
        let parked = match self.scenario {
            Scenario::ParkHangup => 0,
            Scenario::ParkRetrieve => self.retrieve_after_ms,
        };
        parked + self.hold_ms
    }

    fn tail_secs(&self) -> f64 {
        f64::from(self.tail_ms()) / 1000.0
    }
}

/// Parses `cargo xtask sipp` arguments (`--name V` or `--name=V`; everything after `--engine`
/// is sipark's).
pub(crate) fn parse_args(args: &[OsString]) -> Result<SippArgs, String> {
    let (ours, engine) = match args.iter().position(|a| a == "--engine") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let mut rate = 1000u32;
    let mut calls = None;
    let mut instances = 2u32;
    let mut scenario = Scenario::ParkHangup;
    let mut hold_ms = 100u32;
    let mut retrieve_after_ms = 1000u32;
    let mut tenants = None;
    let names = ["--rate", "--calls", "--instances", "--hold-ms", "--retrieve-after-ms", "--tenants", "--scenario"];
    let (options, rest) = take_options(ours.to_vec(), &names)?;
    if let Some(arg) = rest.iter().find(|a| *a != "--") {
        return Err(format!("unknown argument `{}`", arg.to_string_lossy()));
    }
    for (name, value) in options {
        let name = name.as_str();
        let number = |v: String, lo: u32, hi: u32| -> Result<u32, String> {
            match v.parse::<u32>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(format!("{name}: expected a whole number in {lo}..={hi}, got `{v}`")),
            }
        };
        match name {
            "--rate" => rate = number(value.clone(), 1, 1_000_000)?,
            "--calls" => calls = Some(number(value.clone(), 1, 100_000_000)?),
            "--instances" => instances = number(value.clone(), 1, 100)?,
            "--hold-ms" => hold_ms = number(value.clone(), 0, 600_000)?,
            "--retrieve-after-ms" => retrieve_after_ms = number(value.clone(), 1, 600_000)?,
            "--tenants" => tenants = Some(number(value.clone(), 1, 1_000_000)?),
            "--scenario" => {
                scenario = match value.as_str() {
                    "park_hangup" => Scenario::ParkHangup,
                    "park_retrieve" => Scenario::ParkRetrieve,
                    other => return Err(format!("--scenario: expected park_hangup or park_retrieve, got `{other}`")),
                }
            }
            _ => unreachable!("take_options returns only the names asked for"),
        }
    }
    let calls = calls.unwrap_or(rate.saturating_mul(10));
    if rate < instances || calls < instances {
        return Err(format!("--rate ({rate}) and --calls ({calls}) must be at least --instances ({instances})"));
    }
    let mut args = SippArgs {
        rate,
        calls,
        instances,
        scenario,
        hold_ms,
        retrieve_after_ms,
        tenants: tenants.unwrap_or(200),
        engine,
    };
    if tenants.is_none() {
        // About a quarter of a parked call per extension on average (cycles in progress at once
        // = rate x tail), so that random bunching and slow answers stay far from sipark's
        // --max-parks-per-ext (8): a full park is a failed call, not load.
        let in_progress = (u64::from(rate) * u64::from(args.tail_ms())).div_ceil(1000);
        let wanted = u32::try_from((4 * in_progress).div_ceil(u64::from(EXTENSIONS))).unwrap_or(u32::MAX);
        args.tenants = args.tenants.max(wanted.min(1_000_000));
    }
    args.tenants = args.tenants.max(instances);
    Ok(args)
}

/// The last figures of a SIPp statistics file (`-trace_stat -stf`): cumulative counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SippStats {
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// SIPp's CallRate(C): calls created per second over the whole run (its tail included).
    pub call_rate: f64,
}

/// Parses a SIPp `-stf` CSV (`;`-separated; first line the header, the last line the final
/// dump) into its final cumulative figures.
pub(crate) fn parse_stat_csv(text: &str) -> Result<SippStats, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty statistics file")?.split(';').collect();
    let last: Vec<&str> = lines.next_back().ok_or("statistics file has no data line")?.split(';').collect();
    if header.len() != last.len() {
        return Err(format!("header has {} fields, the last line {}", header.len(), last.len()));
    }
    let field = |name: &str| -> Result<&str, String> {
        let i = header.iter().position(|h| h.trim() == name).ok_or_else(|| format!("no {name} column"))?;
        Ok(last[i].trim())
    };
    let int = |name: &str| -> Result<u64, String> {
        let v = field(name)?;
        v.parse().map_err(|_| format!("{name}: `{v}` is not a count"))
    };
    let rate = field("CallRate(C)")?;
    Ok(SippStats {
        created: int("TotalCallCreated")?,
        successful: int("SuccessfulCall(C)")?,
        failed: int("FailedCall(C)")?,
        retransmissions: int("Retransmissions(C)")?,
        call_rate: rate.parse().map_err(|_| format!("CallRate(C): `{rate}` is not a number"))?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Parks and hangs up (park_hangup), or the parked caller (park_retrieve).
    Park,
    Retrieve,
    Phone,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Park => "park",
            Role::Retrieve => "retrieve",
            Role::Phone => "phone",
        }
    }
}

/// One running SIPp and what was seen of it.
struct SippProc {
    role: Role,
    instance: u32,
    local: SocketAddr,
    child: Child,
    spawned: Instant,
    ended: Option<Instant>,
    status: Option<ExitStatus>,
    /// CPU time seen last, clock ticks (read up to the zombie state, before reaping).
    ticks: u64,
    stat_file: PathBuf,
}

impl SippProc {
    /// Updates the CPU time; reaps the process once it has exited. Returns whether it ended.
    fn poll(&mut self) -> bool {
        if self.ended.is_some() {
            return true;
        }
        match proc_cpu(self.child.id()) {
            Some((state, ticks)) => {
                self.ticks = ticks;
                if state == 'Z' || state == 'X' {
                    self.status = self.child.wait().ok();
                    self.ended = Some(Instant::now());
                }
            }
            None => {
                if let Ok(Some(s)) = self.child.try_wait() {
                    self.status = Some(s);
                    self.ended = Some(Instant::now());
                }
            }
        }
        self.ended.is_some()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.child.id().to_string()]).status();
    }

    /// Seconds from spawn to exit (or to now).
    fn lifetime(&self) -> f64 {
        self.ended.unwrap_or_else(Instant::now).duration_since(self.spawned).as_secs_f64()
    }
}

/// The addresses and files of one instance.
struct Instance {
    index: u32,
    ip: Ipv4Addr,
    calls: u32,
    rate: u32,
    phone: SocketAddr,
    register_csv: PathBuf,
    lines: u32,
    inject_csv: PathBuf,
}

/// Share `i` of `total` split over `n`: the first `total % n` get one more.
fn share(total: u32, n: u32, i: u32) -> u32 {
    total / n + u32::from(i < total % n)
}

/// A UDP port free on `ip` a moment ago.
fn free_port_on(ip: Ipv4Addr) -> Result<SocketAddr, String> {
    UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()).map_err(|e| format!("no free UDP port on {ip}: {e}"))
}

/// The injection-file lines (`ext;domain;`) of instance `i` of `k`: tenants i, i+k, i+2k, ...
fn instance_lines(tenants: u32, k: u32, i: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for t in (i..tenants).step_by(k as usize) {
        for e in 0..EXTENSIONS {
            lines.push(format!("{};t{t:05}.sipp.example;", FIRST_EXTENSION + e));
        }
    }
    lines
}

fn write_csv(path: &Path, order: &str, lines: &[String]) -> Result<(), String> {
    let mut text = String::with_capacity(lines.len() * 24 + 16);
    text.push_str(order);
    text.push('\n');
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Raises `net.core.rmem_max`/`wmem_max` to SOCK_MAX where they are lower (warns if that fails),
/// so that SIPp's and sipark's socket buffers can be that large.
fn raise_socket_limits() {
    let low: Vec<&str> = ["rmem_max", "wmem_max"]
        .into_iter()
        .filter(|k| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{k}"))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_none_or(|v| v < SOCK_MAX)
        })
        .collect();
    if low.is_empty() {
        return;
    }
    let settings: Vec<String> = low.iter().map(|k| format!("net.core.{k}={SOCK_MAX}")).collect();
    let ok = Command::new("sysctl")
        .arg("-w")
        .args(&settings)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        eprintln!("xtask: raised {}", settings.join(" "));
    } else {
        eprintln!(
            "xtask: warning: could not set {} (needs root); socket buffers stay smaller and \
             SIPp may drop datagrams at high rates",
            settings.join(" ")
        );
    }
}

/// Common SIPp arguments: local address, statistics and error files, bounded logs.
fn sipp_base(scenario: &Path, local: SocketAddr, out: &Path, label: &str) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &dyn AsRef<std::ffi::OsStr>| a.push(s.as_ref().to_os_string());
    push(&"-sf");
    push(&scenario);
    push(&"-i");
    push(&local.ip().to_string());
    push(&"-p");
    push(&local.port().to_string());
    push(&"-bind_local");
    push(&"-nostdin");
    push(&"-buff_size");
    push(&BUFF_SIZE.to_string());
    push(&"-trace_err");
    push(&"-error_file");
    push(&out.join(format!("{label}_errors.log")));
    push(&"-max_log_size");
    push(&"1048576");
    a
}

fn spawn_sipp(args: &[OsString], out: &Path, label: &str) -> Result<Child, String> {
    let log_path = out.join(format!("{label}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    Command::new("sipp")
        .current_dir(root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start sipp: {e}"))
}

pub(crate) fn sipp(args: &[OsString]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask sipp: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("xtask sipp: `sipp` is not on PATH; `cargo xtask install-deps` installs it");
        return ExitCode::FAILURE;
    }
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "--bin", "sipark"], &[]) {
        return code;
    }
    let out = target_dir().join("sipp");
    if let Err(code) = create_dir(&out) {
        return code;
    }
    // Stale files of an earlier run would be read as this run's.
    if let Ok(dir) = std::fs::read_dir(&out) {
        for entry in dir.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "csv" || e == "log") {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    raise_socket_limits();
    let binary = target_dir().join("release").join("sipark");
    // sipark's own counters (503s for a full transaction table, rejected parks) explain failures
    // that CPU figures do not.
    let mut engine_args = args.engine.clone();
    let metrics = match flag_value(&engine_args, "--metrics") {
        Some(v) => v.parse::<SocketAddr>().ok(),
        None => match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => {
                engine_args.push("--metrics".into());
                engine_args.push(a.to_string().into());
                Some(a)
            }
            Err(_) => None,
        },
    };
    let (mut engine, engine_addr) = match start_engine(&binary, &engine_args, &out.join("sipark.log")) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let result = drive(&args, &out, &engine, engine_addr, metrics);
    stop_engine(&mut engine, Duration::from_secs(20));
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask sipp: {e}; SIPp logs and error logs are in {}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Registers the phones, runs the load and returns the printed report.
fn drive(
    args: &SippArgs,
    out: &Path,
    engine: &Child,
    engine_addr: SocketAddr,
    metrics: Option<SocketAddr>,
) -> Result<String, String> {
    let sipp_dir = root().join("tests").join("sipp");
    let k = args.instances;
    let mut instances = Vec::new();
    for i in 0..k {
        let ip = Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(i).map_err(|_| "too many instances")?);
        let lines = instance_lines(args.tenants, k, i);
        let register_csv = out.join(format!("inject_register_{i}.csv"));
        let inject_csv = out.join(format!("inject_park_{i}.csv"));
        write_csv(&register_csv, "SEQUENTIAL", &lines)?;
        let order = match args.scenario {
            Scenario::ParkHangup => "RANDOM",
            // The parked caller and the retriever must walk the file in the same order.
            Scenario::ParkRetrieve => "SEQUENTIAL",
        };
        write_csv(&inject_csv, order, &lines)?;
        instances.push(Instance {
            index: i,
            ip,
            calls: share(args.calls, k, i),
            rate: share(args.rate, k, i),
            phone: free_port_on(ip)?,
            register_csv,
            lines: u32::try_from(lines.len()).unwrap_or(u32::MAX),
            inject_csv,
        });
    }

    // Register every extension of each instance on its phone address.
    let register = sipp_dir.join("register.xml");
    let mut registers = Vec::new();
    for inst in &instances {
        let label = format!("register_{}", inst.index);
        let mut a = sipp_base(&register, inst.phone, out, &label);
        let secs = inst.lines / REGISTER_RATE + 30;
        for s in [
            "-inf".into(),
            inst.register_csv.clone().into_os_string(),
            "-m".into(),
            inst.lines.to_string().into(),
            "-r".into(),
            REGISTER_RATE.to_string().into(),
            "-l".into(),
            "500".into(),
            "-timeout".into(),
            secs.to_string().into(),
            "-timeout_error".into(),
            engine_addr.to_string().into(),
        ] {
            a.push(s);
        }
        registers.push((label, spawn_sipp(&a, out, &format!("register_{}", inst.index))?));
    }
    let mut failed = Vec::new();
    for (label, mut child) in registers {
        match child.wait() {
            Ok(s) if s.success() => {}
            _ => failed.push(label),
        }
    }
    if !failed.is_empty() {
        return Err(format!("registration failed ({})", failed.join(", ")));
    }
    eprintln!(
        "xtask: registered {} extensions ({} tenants x {EXTENSIONS}) on {k} phone address(es)",
        args.tenants * EXTENSIONS,
        args.tenants
    );

    let run_secs = instances.iter().map(|i| i.calls.div_ceil(i.rate)).max().unwrap_or(1);
    let timeout = u64::from(run_secs) + args.tail_secs().ceil() as u64 + 30;
    let mut procs: Vec<SippProc> = Vec::new();
    let spawn = |role: Role, inst: &Instance, local: SocketAddr, a: Vec<OsString>| -> Result<SippProc, String> {
        let label = format!("{}_{}", role.name(), inst.index);
        let stat_file = out.join(format!("stat_{label}.csv"));
        let mut a = a;
        for s in ["-trace_stat".into(), "-stf".into(), stat_file.clone().into_os_string()] {
            a.push(s);
        }
        let child = spawn_sipp(&a, out, &label)?;
        Ok(SippProc {
            role,
            instance: inst.index,
            local,
            child,
            spawned: Instant::now(),
            ended: None,
            status: None,
            ticks: 0,
            stat_file,
        })
    };

    // All SIPp CPU from here on, exactly: every SIPp started below is waited for before the
    // second reading (the per-process figures are read just before reaping, to a tick or so).
    let children0 = reaped_children_cpu();
    // Phones: two NOTIFYs per cycle (parked, then terminated).
    let phone = sipp_dir.join("phone.xml");
    for inst in &instances {
        let mut a = sipp_base(&phone, inst.phone, out, &format!("phone_{}", inst.index));
        for s in [
            "-m".into(),
            (u64::from(inst.calls) * 2).to_string().into(),
            "-timeout".into(),
            (timeout + 15).to_string().into(),
            "-timeout_error".into(),
        ] {
            a.push(s);
        }
        match spawn(Role::Phone, inst, inst.phone, a) {
            Ok(p) => procs.push(p),
            Err(e) => {
                stop_all(&mut procs);
                return Err(e);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    let load_cmd = |role: Role, inst: &Instance, local: SocketAddr| -> Vec<OsString> {
        let (file, keys): (&str, &[&str]) = match (args.scenario, role) {
            (Scenario::ParkHangup, _) => ("bench_park_spread.xml", &["-key", "caller", "101", "-key", "parker", "102"]),
            (Scenario::ParkRetrieve, Role::Retrieve) => ("bench_retrieve_spread.xml", &["-key", "caller", "104"]),
            (Scenario::ParkRetrieve, _) => {
                ("bench_parked_spread.xml", &["-key", "caller", "101", "-key", "parker", "102"])
            }
        };
        let label = format!("{}_{}", role.name(), inst.index);
        let mut a = sipp_base(&sipp_dir.join(file), local, out, &label);
        // Calls in progress at once: rate x (tail + slack for slow answers).
        let limit = ((f64::from(inst.rate) * (args.tail_secs() + 1.0)).ceil() as u64).clamp(100, MAX_OPEN_CALLS);
        for s in [
            "-inf".into(),
            inst.inject_csv.clone().into_os_string(),
            "-d".into(),
            args.hold_ms.to_string().into(),
            "-m".into(),
            inst.calls.to_string().into(),
            "-r".into(),
            inst.rate.to_string().into(),
            "-l".into(),
            limit.to_string().into(),
            "-timeout".into(),
            timeout.to_string().into(),
            "-timeout_error".into(),
        ] {
            a.push(s);
        }
        a.extend(keys.iter().map(OsString::from));
        a.push(engine_addr.to_string().into());
        a
    };

    // The measured window: from the first load SIPp's start to the last one's exit.
    let ticks0 = proc_cpu(engine.id()).map(|c| c.1);
    let machine0 = machine_cpu();
    let mut sampler = Sampler::new(engine.id(), &procs);
    let t0 = Instant::now();
    let mut load_ports = Vec::new();
    for inst in &instances {
        let local = free_port_on(inst.ip)?;
        load_ports.push(local);
        match spawn(Role::Park, inst, local, load_cmd(Role::Park, inst, local)) {
            Ok(p) => procs.push(p),
            Err(e) => {
                stop_all(&mut procs);
                return Err(e);
            }
        }
    }
    if args.scenario == Scenario::ParkRetrieve {
        let start = t0 + Duration::from_millis(u64::from(args.retrieve_after_ms));
        while Instant::now() < start {
            for p in &mut procs {
                p.poll();
            }
            sampler.tick(&procs);
            std::thread::sleep(Duration::from_millis(10).min(start.saturating_duration_since(Instant::now())));
        }
        for inst in &instances {
            let local = free_port_on(inst.ip)?;
            match spawn(Role::Retrieve, inst, local, load_cmd(Role::Retrieve, inst, local)) {
                Ok(p) => procs.push(p),
                Err(e) => {
                    stop_all(&mut procs);
                    return Err(e);
                }
            }
        }
    }
    eprintln!(
        "xtask: {} SIPp load instance(s) on {} at {} cycles/s in all, {} cycles ({})",
        procs.iter().filter(|p| p.role != Role::Phone).count(),
        load_ports.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", "),
        args.rate,
        args.calls,
        args.scenario.name(),
    );

    // Wait for the load SIPps (bounded by their -timeout, and by a hard deadline here).
    let deadline = t0 + Duration::from_secs(timeout + 10);
    loop {
        let mut load_running = false;
        for p in &mut procs {
            if !p.poll() && p.role != Role::Phone {
                load_running = true;
            }
        }
        sampler.tick(&procs);
        if !load_running || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticks1 = proc_cpu(engine.id()).map(|c| c.1);
    let machine1 = machine_cpu();
    let machine_busy = match (machine0, machine1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    let window = t0.elapsed().as_secs_f64();
    let load_timed_out = procs.iter_mut().any(|p| p.role != Role::Phone && !p.poll());
    // Phones end by themselves once they answered every NOTIFY; give them a moment, then ask
    // them to stop (SIGUSR1: SIPp ends gracefully and writes its statistics).
    let grace = Instant::now() + Duration::from_secs(5);
    while procs.iter_mut().any(|p| !p.poll()) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_all(&mut procs);
    let children1 = reaped_children_cpu();

    let tck = clock_ticks_per_sec() as f64;
    let sipp_total = match (children0, children1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
        _ => None,
    };
    let engine_cpu = match (ticks0, ticks1) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / tck,
        _ => return Err("cannot read sipark's CPU time from /proc".into()),
    };
    let workers = engine_workers(&args.engine);
    let mut rows = Vec::new();
    for p in &procs {
        let text = std::fs::read_to_string(&p.stat_file).map_err(|e| format!("{}: {e}", p.stat_file.display()));
        let stats = text.and_then(|t| parse_stat_csv(&t).map_err(|e| format!("{}: {e}", p.stat_file.display())));
        rows.push(Row {
            role: p.role,
            instance: p.instance,
            local: p.local,
            stats,
            cpu: p.ticks as f64 / tck,
            lifetime: p.lifetime(),
            exit: p.status.map(|s| s.code()),
        });
    }
    let cpu = Cpu { engine: engine_cpu, sipp_total, window, machine_busy, peak: sampler.peak(), workers };
    let counters = metrics.and_then(|m| match fetch_metrics(m) {
        Ok(text) => Some(sum_metrics(&text)),
        Err(e) => {
            eprintln!("xtask: cannot read sipark's metrics on {m}: {e}");
            None
        }
    });
    let mut report = render(args, &rows, &cpu, counters.as_ref(), engine.id());
    if load_timed_out {
        report.push_str("note: a load SIPp had not ended by the deadline and was killed\n");
    }
    Ok(report)
}

/// Asks SIPps still running to stop (SIGUSR1), then kills them; reads their last CPU time first.
fn stop_all(procs: &mut [SippProc]) {
    let mut asked = false;
    for p in procs.iter_mut() {
        if !p.poll() {
            p.signal("-USR1");
            asked = true;
        }
    }
    if asked {
        let until = Instant::now() + Duration::from_secs(3);
        while procs.iter_mut().any(|p| !p.poll()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for p in procs.iter_mut() {
        if !p.poll() {
            let _ = p.child.kill();
            p.status = p.child.wait().ok();
            p.ended = Some(Instant::now());
        }
    }
}

/// sipark's worker count: `--workers N` / `--workers=N` among its arguments, else 2.
fn engine_workers(engine_args: &[OsString]) -> u32 {
    let mut it = engine_args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--workers=") {
            return v.parse().unwrap_or(2);
        }
        if a == "--workers" {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(2);
        }
    }
    2
}

struct Row {
    role: Role,
    instance: u32,
    local: SocketAddr,
    stats: Result<SippStats, String>,
    cpu: f64,
    lifetime: f64,
    exit: Option<Option<i32>>,
}

/// Formats the table and the summary.
fn render(
    args: &SippArgs,
    rows: &[Row],
    cpu: &Cpu,
    counters: Option<&BTreeMap<String, f64>>,
    engine_pid: u32,
) -> String {
    let (engine_cpu, window, workers) = (cpu.engine, cpu.window, cpu.workers);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nSIPp pack: {}, {} instance(s), {} cycles offered at {}/s, hold {} ms{}",
        args.scenario.name(),
        args.instances,
        args.calls,
        args.rate,
        args.hold_ms,
        match args.scenario {
            Scenario::ParkRetrieve => format!(", retrieved after {} ms", args.retrieve_after_ms),
            Scenario::ParkHangup => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "{:<11} {:<18} {:>9} {:>7} {:>8} {:>10} {:>8} {:>9} {:>5}",
        "role", "address", "ok", "failed", "retrans", "SIPp rate", "CPU s", "%1 core", "exit"
    );
    let mut sipp_cpu = 0.0;
    let mut retrans = 0u64;
    let (mut park_ok, mut park_failed, mut retrieve_ok, mut retrieve_failed) = (0u64, 0u64, 0u64, 0u64);
    let (mut phone_ok, mut phone_failed) = (0u64, 0u64);
    let mut sipp_rate = 0.0;
    for r in rows {
        sipp_cpu += r.cpu;
        let share = if r.lifetime > 0.0 { r.cpu / r.lifetime } else { 0.0 };
        let label = format!("{}_{}", r.role.name(), r.instance);
        let exit = match r.exit {
            Some(Some(c)) => c.to_string(),
            Some(None) => "sig".into(),
            None => "?".into(),
        };
        match &r.stats {
            Ok(st) => {
                retrans += st.retransmissions;
                match r.role {
                    Role::Park => {
                        park_ok += st.successful;
                        park_failed += st.failed;
                        sipp_rate += st.call_rate;
                    }
                    Role::Retrieve => {
                        retrieve_ok += st.successful;
                        retrieve_failed += st.failed;
                    }
                    Role::Phone => {
                        phone_ok += st.successful;
                        phone_failed += st.failed;
                    }
                }
                let rate = if r.role == Role::Phone { "-".to_string() } else { format!("{:.1}", st.call_rate) };
                let _ = writeln!(
                    s,
                    "{:<11} {:<18} {:>9} {:>7} {:>8} {:>10} {:>8.2} {:>8.0}% {:>5}",
                    label,
                    r.local.to_string(),
                    st.successful,
                    st.failed,
                    st.retransmissions,
                    rate,
                    r.cpu,
                    share * 100.0,
                    exit
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "{:<11} {:<18} {:>46} {:>8.2} {:>8.0}% {:>5}",
                    label,
                    r.local.to_string(),
                    "(no statistics)",
                    r.cpu,
                    share * 100.0,
                    exit
                );
                let _ = writeln!(s, "          {e}");
            }
        }
    }
    let _ = writeln!(
        s,
        "{:<11} {:<18} {:>46} {:>8.2} {:>8.0}% (pid {engine_pid}, {workers} workers, over the window)",
        "sipark",
        "",
        "",
        engine_cpu,
        engine_cpu / window * 100.0
    );

    let rows_cpu = sipp_cpu;
    let sipp_cpu = cpu.sipp_total.unwrap_or(rows_cpu);
    let (cycles_ok, cycles_failed) = match args.scenario {
        Scenario::ParkHangup => (park_ok, park_failed),
        Scenario::ParkRetrieve => (park_ok.min(retrieve_ok), park_failed.max(retrieve_failed)),
    };
    let span = (window - args.tail_secs()).max(0.001);
    let achieved = cycles_ok as f64 / span;
    let per_call = |cpu: f64| if cycles_ok > 0 { cpu / cycles_ok as f64 * 1e6 } else { f64::NAN };
    let engine_us = per_call(engine_cpu);
    let sipp_us = per_call(sipp_cpu);
    let _ = writeln!(s);
    let _ = writeln!(s, "window                 {window:.2} s (first load SIPp start to last load SIPp exit)");
    let _ = writeln!(s, "offered rate           {} cycles/s", args.rate);
    let _ = writeln!(
        s,
        "achieved rate          {achieved:.0} cycles/s (successful cycles / (window - {:.2} s hold)); SIPp CallRate sum {sipp_rate:.0}/s",
        args.tail_secs()
    );
    let _ = writeln!(s, "successful / failed    {cycles_ok} / {cycles_failed} cycles");
    if args.scenario == Scenario::ParkRetrieve {
        let _ = writeln!(
            s,
            "  parked / retrievers  {park_ok} ok {park_failed} failed / {retrieve_ok} ok {retrieve_failed} failed"
        );
    }
    let _ =
        writeln!(s, "phones (NOTIFYs)       {phone_ok} answered, {phone_failed} failed (expected {})", 2 * args.calls);
    let _ = writeln!(s, "retransmissions        {retrans} (SIPp, all instances)");
    let _ = writeln!(s, "engine CPU             {engine_cpu:.2} s = {engine_us:.1} µs per cycle");
    let _ = writeln!(
        s,
        "SIPp CPU (sum)         {sipp_cpu:.2} s = {sipp_us:.1} µs per cycle ({} processes incl. phones; \
         rows add up to {rows_cpu:.2} s)",
        rows.len()
    );
    let machine = match cpu.machine_busy {
        Some(b) => format!("{:.0}% of {cores:.0} cores busy (all processes)", b * 100.0),
        None => "unknown (/proc/stat)".into(),
    };
    let _ = writeln!(s, "machine over window    {machine}");
    if let Some(p) = &cpu.peak {
        let _ = writeln!(
            s,
            "busiest second         engine {:.2} cores, SIPp {:.2} cores (top: {} {:.0}% of a core), machine {}",
            p.engine,
            p.sipp,
            p.top_label,
            p.top_share * 100.0,
            p.machine.map_or("?".into(), |m| format!("{:.0}% busy", m * 100.0))
        );
    }
    let counter = |name: &str| counters.and_then(|c| c.get(name)).map_or(0, |v| *v as u64);
    if let Some(c) = counters {
        let shown: Vec<String> = [
            "parks",
            "parks_rejected",
            "retrieves",
            "retrieves_failed",
            "hangups",
            "notifies_sent",
            "notifies_retransmitted",
            "notifies_failed",
            "retransmissions",
            "overload_rejects",
        ]
        .iter()
        .filter_map(|n| c.get(&format!("sipark_{n}_total")).map(|v| format!("{n} {v}")))
        .collect();
        let _ = writeln!(s, "sipark counters        {}", shown.join(", "));
    }
    let mut line = verdict(args, achieved, cycles_failed, cpu, sipp_cpu, cores);
    let overload = counter("sipark_overload_rejects_total");
    if overload > 0 {
        // Failed calls then come from sipark's capacity limit first; the CPU picture follows.
        line = format!(
            "engine capacity limit: sipark refused {overload} requests with 503 because a shard's \
             transaction table was full (completed transactions linger up to 64xT1, so the table size \
             caps the rate; not a CPU limit); CPU: {line}"
        );
    }
    let rejected = counter("sipark_parks_rejected_total");
    if rejected > 0 {
        let _ = write!(line, "; {rejected} parks were rejected (extension full? raise --tenants)");
    }
    let _ = writeln!(s, "verdict: {line}");
    if engine_us.is_finite() && sipp_us.is_finite() && engine_us > 0.0 && sipp_us > 0.0 {
        let _ = writeln!(
            s,
            "ceiling at these costs on {cores:.0} cores: ~{:.0} cycles/s with SIPp sharing the cores; SIPp alone \
             ~{:.0}/s; the engine alone ~{:.0}/s on {} core(s)",
            cores * 1e6 / (engine_us + sipp_us),
            cores * 1e6 / sipp_us,
            f64::from(workers).min(cores) * 1e6 / engine_us,
            f64::from(workers).min(cores)
        );
    }
    s
}

/// CPU figures of a run.
struct Cpu {
    /// Engine CPU seconds over the window.
    engine: f64,
    /// All SIPp CPU seconds (reaped children), if readable.
    sipp_total: Option<f64>,
    /// Window seconds.
    window: f64,
    /// Fraction of all cores busy over the window (every process), from /proc/stat.
    machine_busy: Option<f64>,
    /// The busiest second of the window.
    peak: Option<Peak>,
    workers: u32,
}

/// CPU use over one second of the window.
#[derive(Debug, Clone, PartialEq)]
struct Peak {
    /// Cores' worth used by the engine, and by all SIPps.
    engine: f64,
    sipp: f64,
    /// Fraction of all cores busy (every process).
    machine: Option<f64>,
    /// The busiest single SIPp in that second (share of one core) and its label.
    top_share: f64,
    top_label: String,
}

/// Samples CPU use about once a second during the load.
struct Sampler {
    engine_pid: u32,
    at: Instant,
    engine: u64,
    machine: Option<(u64, u64)>,
    /// Ticks seen per SIPp process (index into the process list) at the last sample.
    procs: Vec<u64>,
    tck: f64,
    peak: Option<Peak>,
}

impl Sampler {
    fn new(engine_pid: u32, procs: &[SippProc]) -> Sampler {
        Sampler {
            engine_pid,
            at: Instant::now(),
            engine: proc_cpu(engine_pid).map_or(0, |c| c.1),
            machine: machine_cpu(),
            procs: procs.iter().map(|p| p.ticks).collect(),
            tck: clock_ticks_per_sec() as f64,
            peak: None,
        }
    }

    /// Takes a sample if a second has passed; keeps the busiest one.
    fn tick(&mut self, procs: &[SippProc]) {
        let dt = self.at.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        self.at = Instant::now();
        let engine = proc_cpu(self.engine_pid).map_or(self.engine, |c| c.1);
        let machine = machine_cpu();
        let mut sipp = 0u64;
        let mut top = (0u64, String::new());
        for (i, p) in procs.iter().enumerate() {
            if self.procs.len() <= i {
                self.procs.push(0);
            }
            let d = p.ticks.saturating_sub(self.procs[i]);
            self.procs[i] = p.ticks;
            sipp += d;
            if d > top.0 {
                top = (d, format!("{}_{}", p.role.name(), p.instance));
            }
        }
        let sample = Peak {
            engine: engine.saturating_sub(self.engine) as f64 / self.tck / dt,
            sipp: sipp as f64 / self.tck / dt,
            machine: match (self.machine, machine) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64),
                _ => None,
            },
            top_share: top.0 as f64 / self.tck / dt,
            top_label: top.1,
        };
        self.engine = engine;
        self.machine = machine;
        let load = |p: &Peak| p.machine.unwrap_or(0.0) * 1000.0 + p.engine + p.sipp;
        if self.peak.as_ref().is_none_or(|p| load(&sample) > load(p)) {
            self.peak = Some(sample);
        }
    }

    fn peak(&self) -> Option<Peak> {
        self.peak.clone()
    }
}

/// The value of `--name V` or `--name=V` among `args`.
fn flag_value(args: &[OsString], name: &str) -> Option<String> {
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == name {
            return it.next().map(str::to_string);
        }
        if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// GET /metrics from sipark's Prometheus endpoint (bounded in time and size).
fn fetch_metrics(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: sipark\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    stream.take(16 << 20).read_to_end(&mut body).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") => {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected answer: {}", text.lines().next().unwrap_or(""))),
    }
}

/// Prometheus text: every series summed by metric name (the per-worker labels dropped).
fn sum_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let name = series.split('{').next().unwrap_or(series).trim();
        *sums.entry(name.to_string()).or_insert(0.0) += value;
    }
    sums
}

/// Busy and total clock ticks of all CPUs together, from the first line of /proc/stat.
fn machine_cpu() -> Option<(u64, u64)> {
    parse_machine_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `cpu  user nice system idle iowait irq softirq steal ...`: busy = total - idle - iowait.
fn parse_machine_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_ascii_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// One line: which side limited the run. Saturation is judged on the busiest second (a run
/// with failures spends its end waiting for timeouts, which dilutes the window's average).
fn verdict(args: &SippArgs, achieved: f64, failed: u64, cpu: &Cpu, sipp_cpu: f64, cores: f64) -> String {
    let carried = achieved >= 0.95 * f64::from(args.rate) && failed == 0;
    let what = if carried { "near saturation" } else { "saturated" };
    let (engine_cores, sipp_cores, machine, top_share, top_label) = match &cpu.peak {
        Some(p) => (p.engine, p.sipp, p.machine, p.top_share, p.top_label.clone()),
        None => (cpu.engine / cpu.window, sipp_cpu / cpu.window, cpu.machine_busy, 0.0, String::new()),
    };
    let machine = machine.unwrap_or((engine_cores + sipp_cores) / cores);
    let others = (machine * cores - engine_cores - sipp_cores).max(0.0);
    let shares = format!(
        "busiest second: engine {:.0}% of a core, SIPp {:.0}% of a core in all, other processes {:.0}%, \
         {:.0}% of the machine's {cores:.0} cores busy",
        engine_cores * 100.0,
        sipp_cores * 100.0,
        others * 100.0,
        machine * 100.0
    );
    if carried && machine < 0.85 {
        return format!("neither saturated: the offered rate was carried ({shares})");
    }
    if top_share >= 0.9 {
        return format!(
            "SIPp {what}: {top_label} used {:.0}% of a core (each SIPp is single-threaded; {shares})",
            top_share * 100.0
        );
    }
    if machine >= 0.85 {
        let side = if sipp_cores >= engine_cores { "SIPp" } else { "the engine" };
        let other =
            if others >= 0.3 { "; other processes took a real share too, so rerun on a quiet machine" } else { "" };
        return format!(
            "machine {what} ({shares}); {side} uses most of it (SIPp {:.1}x the engine's CPU), so {side} is \
             what tops out here{other}",
            sipp_cores / engine_cores.max(1e-9)
        );
    }
    if engine_cores >= 0.9 * f64::from(cpu.workers).min(cores) {
        return format!("engine {what}: its {} workers are busy ({shares})", cpu.workers);
    }
    if carried {
        return format!("neither saturated ({shares})");
    }
    format!(
        "rate not carried (achieved {achieved:.0}/s, {failed} failed) with CPU headroom ({shares}): not a CPU \
         limit; see target/sipp/*_errors.log and target/sipp/sipark.log"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn arguments_parse_with_defaults_and_engine_passthrough() {
        let a = parse_args(&[]).unwrap_or_else(|e| panic!("defaults: {e}"));
        assert_eq!((a.rate, a.calls, a.instances, a.scenario, a.hold_ms), (1000, 10_000, 2, Scenario::ParkHangup, 100));
        assert_eq!(a.tenants, 200, "default tenants");
        assert!(a.engine.is_empty());

        let a = parse_args(&os(&[
            "--rate",
            "3000",
            "--calls=45000",
            "--instances",
            "3",
            "--scenario",
            "park_retrieve",
            "--engine",
            "--workers",
            "1",
            "--rate",
        ]))
        .unwrap_or_else(|e| panic!("full: {e}"));
        assert_eq!((a.rate, a.calls, a.instances, a.scenario), (3000, 45_000, 3, Scenario::ParkRetrieve));
        assert_eq!(a.engine, os(&["--workers", "1", "--rate"]), "everything after --engine is sipark's");
        // 3000/s x (1 s parked + 0.1 s bridged) = 3300 in progress, x 4 -> 2640 tenants of 5.
        assert_eq!(a.tenants, 2640);
        assert_eq!(engine_workers(&a.engine), 1);
        assert_eq!(engine_workers(&os(&["--workers=4"])), 4);
        assert_eq!(engine_workers(&[]), 2);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["--rate"][..],
            &["--rate", "0"],
            &["--rate", "ten"],
            &["--scenario", "recall"],
            &["--bogus"],
            &["--instances", "4", "--rate", "3"],
            &["--instances", "101"],
        ] {
            if let Ok(a) = parse_args(&os(bad)) {
                panic!("{bad:?} was accepted as {a:?}");
            }
        }
    }

    #[test]
    fn rate_and_lines_split_over_instances() {
        assert_eq!((0..3).map(|i| share(1000, 3, i)).collect::<Vec<_>>(), [334, 333, 333]);
        let l0 = instance_lines(5, 2, 0);
        let l1 = instance_lines(5, 2, 1);
        assert_eq!(l0.len(), 15, "tenants 0, 2, 4 x 5 extensions");
        assert_eq!(l1.len(), 10, "tenants 1, 3 x 5 extensions");
        assert_eq!(l0[0], "100;t00000.sipp.example;");
        assert_eq!(l1[9], "104;t00003.sipp.example;");
    }

    #[test]
    fn metrics_are_summed_over_workers() {
        let text = "# HELP sipark_parks_total Calls parked.\n# TYPE sipark_parks_total counter\n\
                    sipark_parks_total{worker=\"0\"} 3\nsipark_parks_total{worker=\"1\"} 4\n\
                    sipark_parked 2\nbroken line\nsipark_x{a=\"b c\"} 1.5\n";
        let m = sum_metrics(text);
        assert_eq!(m.get("sipark_parks_total"), Some(&7.0));
        assert_eq!(m.get("sipark_parked"), Some(&2.0));
        assert_eq!(m.get("sipark_x"), Some(&1.5), "a label value with a space");
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            flag_value(&os(&["--workers", "1", "--metrics", "127.0.0.1:9"]), "--metrics").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(flag_value(&os(&["--metrics=127.0.0.1:9"]), "--metrics").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(flag_value(&os(&["--metricsx=1"]), "--metrics"), None);
    }

    #[test]
    fn machine_cpu_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 40 0 5 0 0 0\ncpu0 50 2 25 400 20 0 3 0 0 0\nintr 1\n";
        assert_eq!(parse_machine_cpu(stat), Some((160, 1000)));
        assert_eq!(parse_machine_cpu("cpu0 1 2 3 4 5\n"), None, "no total line");
        assert_eq!(parse_machine_cpu("cpu  1 2 x 4 5\n"), None, "garbage");
    }

    fn cpu(engine: f64, sipp: f64, machine: f64, top: f64) -> Cpu {
        Cpu {
            engine: engine * 10.0,
            sipp_total: Some(sipp * 10.0),
            window: 10.0,
            machine_busy: Some(machine),
            peak: Some(Peak { engine, sipp, machine: Some(machine), top_share: top, top_label: "park_1".into() }),
            workers: 2,
        }
    }

    #[test]
    fn verdict_names_the_side_that_saturated() {
        let args = parse_args(&os(&["--rate", "8000"])).unwrap_or_else(|e| panic!("{e}"));
        let v = verdict(&args, 7990.0, 0, &cpu(0.4, 0.6, 0.52, 0.2), 6.0, 2.0);
        assert!(v.starts_with("neither saturated: the offered rate was carried"), "{v}");
        let v = verdict(&args, 6000.0, 10, &cpu(0.5, 1.2, 0.9, 0.97), 12.0, 2.0);
        assert!(v.starts_with("SIPp saturated: park_1 used 97% of a core"), "{v}");
        let v = verdict(&args, 6000.0, 0, &cpu(0.6, 1.3, 0.98, 0.6), 13.0, 2.0);
        assert!(v.starts_with("machine saturated") && v.contains("SIPp uses most of it"), "{v}");
        let v = verdict(&args, 6000.0, 0, &cpu(1.9, 0.05, 0.99, 0.05), 0.5, 2.0);
        assert!(v.contains("the engine uses most of it"), "{v}");
        let v = verdict(&args, 3000.0, 500, &cpu(0.3, 0.3, 0.3, 0.2), 3.0, 2.0);
        assert!(v.starts_with("rate not carried (achieved 3000/s, 500 failed) with CPU headroom"), "{v}");
    }

    const HEADER: &str = "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);\
        CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;\
        SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);Retransmissions(P);Retransmissions(C);";

    #[test]
    fn stat_csv_last_line_is_read_by_column_name() {
        let first =
            "2026-11-24\t21:06:28.044983\t1795554388.044983;x;x;00:00:00;00:00:00;10;0;0;0;0;0;0;0;0;0;0;0;0;0;0;";
        let last = "2026-11-24\t21:06:28.044983\t1795554388.044983;x;x;00:00:00;00:00:10;500;0;497.531;0;0;0;4990;4990;2;\
                    0;4981;0;7;0;12;";
        let text = format!("{HEADER}\n{first}\n{last}\n\n");
        let st = parse_stat_csv(&text).unwrap_or_else(|e| panic!("parse: {e}"));
        assert_eq!(
            st,
            SippStats { created: 4990, successful: 4981, failed: 7, retransmissions: 12, call_rate: 497.531 }
        );
    }

    #[test]
    fn broken_stat_csv_is_an_error() {
        assert!(parse_stat_csv("").is_err(), "empty");
        assert!(parse_stat_csv(HEADER).is_err(), "header only");
        assert!(parse_stat_csv(&format!("{HEADER}\n1;2;3\n")).is_err(), "short line");
        let no_rate = HEADER.replace("CallRate(C)", "Other");
        let line = "a;b;c;d;e;1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;";
        let err = parse_stat_csv(&format!("{no_rate}\n{line}\n")).err().unwrap_or_default();
        assert!(err.contains("CallRate(C)"), "missing column named: {err}");
        let bad = line.replace(";11;", ";x;");
        let err = parse_stat_csv(&format!("{HEADER}\n{bad}\n")).err().unwrap_or_default();
        assert!(err.contains("SuccessfulCall(C)"), "bad count named: {err}");
    }
}
