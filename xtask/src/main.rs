//! Developer tasks for the sipark workspace, run as `cargo xtask <task>`.
//!
//! * `cargo xtask test`: installs the test dependencies (scripts/install-deps.sh), then runs the
//!   whole workspace's tests in three cargo runs: doc-tests, the other crates, and last the
//!   engine's own suite (unit, parser, simulation, I/O and SIPp end-to-end tests), so that the
//!   last thing printed is the summary of a test binary that has tests. The exit code is the
//!   first failing run's. `cargo xtask test ARGS...` runs `cargo test --workspace ARGS...` instead.
//! * `cargo xtask run [ARGS...]`: `cargo run --release -p sipark -- [ARGS...]`.
//! * `cargo xtask install-deps`: only runs scripts/install-deps.sh.
//! * `cargo xtask bench [--] [LOAD-ARGS...] [--no-floor] [--engine ENGINE-ARGS...]`: builds the
//!   release `sipark` and `sipark-load`, starts `sipark --listen 127.0.0.1:<free port> --workers 2
//!   ENGINE-ARGS` (its log goes to target/bench/sipark.log), waits until it answers OPTIONS, runs
//!   `sipark-load --engine-pid <pid> --target <addr> LOAD-ARGS` (which prints the table; JSON
//!   goes to target/bench/load.json unless `--json` is given), then stops the engine with SIGTERM.
//!   Then, unless `--no-floor` (or `--rate`, `--background-parked`), the floor (see floor.rs): the
//!   same engine arguments plus `--bare-io` driven by `sipark-load --floor` with the same load
//!   arguments; prints the floor ratio and adds the floor to the JSON. The exit code is
//!   sipark-load's, or failure if the floor could not be measured.
//! * `cargo xtask bench --sweep R1,R2,... [--sweep-seconds S] [LOAD-ARGS...] [--engine ...]`:
//!   one fresh engine and one open-loop sipark-load run of S seconds (default 8) per rate, plus
//!   a closed-loop run (`--concurrency 128`) as the maximum (see sweep.rs); prints a table and
//!   writes target/bench/sweep/{<R>,max,summary}.json, docs/img/bench-latency.svg and
//!   docs/img/bench-efficiency.svg (plot.rs).
//! * `cargo xtask bench --parked-sweep N1,N2,... [--parked-rate R] [--sweep-seconds S] [LOAD-ARGS...]
//!   [--engine ...]`: per count N, one fresh engine and one sipark-load run that parks N
//!   background calls (`--background-parked N`, kept parked throughout) and then runs open-loop
//!   cycles at R/s (default 2000) for S seconds (default 8) (see parked.rs); prints a table
//!   (cycle rate and latency, engine CPU µs per cycle, engine RSS and RSS bytes per parked call)
//!   and writes target/bench/parked/{<N>,summary}.json, docs/img/bench-parked.svg and
//!   docs/img/bench-parked-rss.svg.
//! * `cargo xtask bench --overload M1,M2,... [--overload-seconds S] [--xdp] [LOAD-ARGS...]
//!   [--engine ...]`: overload control against one worker (see overload.rs): a fresh `sipark
//!   --workers 1` and a closed-loop run (`--concurrency 128`) as the maximum, then per multiple M
//!   a fresh engine offered M times it, open loop, S seconds (default 10) each; prints goodput as
//!   a share of the maximum, p99 of admitted cycles, p99 and max of the 503 latency, cycles shed
//!   and retransmissions, and writes target/bench/overload/{max,<M>x,summary}.json. With `--xdp`
//!   (root), each engine runs in a network namespace with `--xdp` on a veth end and sipark-load
//!   in another (netns.rs); the engine's XDP counters by reason go into each run's JSON, and the
//!   frames passed (`pass`) and shed (`shed`, `shed_ack`) into the table.
//! * `cargo xtask bench --moh N1,N2,... [--moh-seconds S] [LOAD-ARGS...] [--engine ...]`: music
//!   on hold (issue 14; see moh.rs): park cycles against a fresh `sipark --workers 1 --moh tune`
//!   with no music, then per count N a fresh engine and `sipark-load --moh-streams N` (N calls
//!   parked with music, S seconds measured, default 10; park cycles while they play; the floor,
//!   a bare sendmmsg sender of the same packets on the worker's core); prints packets per engine
//!   CPU-second against the floor, pacing error and losses, park cycles per engine CPU-second
//!   with and without the music, and each goal met or not; writes target/bench/moh/.
//! * `cargo xtask bench --instructions [--warmup-cycles N] [--cycles N]`: instructions per park
//!   cycle inside the sans-IO shard and in all, counted by callgrind over N cycles (default
//!   5,000) through one in-memory shard after a warm-up (default 40,000 cycles) that is not
//!   counted (see icount.rs); prints them and writes target/bench/instructions.json.
//! * `cargo xtask bench --guessing [--seconds S] [--window N] [--no-xdp] [--engine ENGINE-ARGS...]`:
//!   the online password-guessing attack of issue 13 (see guessing.rs): `sipark-guess` against a
//!   fresh release sipark with bans off, with the defaults, and (as root, unless `--no-xdp`) with
//!   `--xdp` in a network namespace; prints answered guesses per second, time to the ban, and
//!   guesses evaluated and datagrams reaching a worker once banned.
//! * `cargo xtask sipp [--rate R] [--calls N] [--instances K] [--scenario park_hangup|park_retrieve]
//!   [--engine ENGINE-ARGS...]`: the SIPp pack (see sipp.rs): K SIPp instances on 127.0.0.10+i
//!   split the rate against a release sipark; prints SIPp's statistics, the CPU of the engine and
//!   of SIPp over the same window, and which of them saturated. Files in target/sipp/.
//! * `cargo xtask perf [--seconds S] [--warmup W] [--] [LOAD-ARGS...] [--engine ENGINE-ARGS...]`:
//!   `perf record -g` on a sipark built with the `profiling` profile and frame pointers while
//!   sipark-load drives it; writes target/perf/flamegraph.svg (inferno).
//! * `cargo xtask fuzz {parse_roundtrip|shard_datagrams} [--seconds S]`: a seeded `cargo +nightly
//!   fuzz run` with the SIP dictionary, then executions, coverage and any crash (see fuzz.rs).
//!
//! `netns-http-get ADDR PATH` is not for people: the benches that run sipark in a network
//! namespace run this binary there with it to read the engine's metrics (netns.rs).

mod compare;
mod floor;
mod fuzz;
mod guessing;
mod icount;
mod moh;
mod netns;
mod overload;
mod parked;
mod perf;
mod plot;
mod sipp;
mod sweep;

use std::env;
use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask <task> [ARGS...]

tasks:
  test             install test dependencies, then every test of the workspace
  test ARGS...     install test dependencies, then `cargo test --workspace ARGS...`
  run [ARGS...]    `cargo run --release -p sipark -- [ARGS...]`
  bench [--] [LOAD-ARGS...] [--no-floor] [--engine ENGINE-ARGS...]
                   release sipark (--workers 2) on 127.0.0.1 driven by sipark-load
                   (e.g. `cargo xtask bench -- --cycles 20000 --rate 1000`; add
                   `--warmup 35` to measure once the engine's tables have grown);
                   closed loop, then the floor: sipark --bare-io (same engine args,
                   no SIP) under sipark-load --floor, and the floor ratio
  bench --sweep R1,R2,... [--sweep-seconds S] [LOAD-ARGS...] [--engine ENGINE-ARGS...]
                   one fresh sipark and S seconds (default 8) of sipark-load per rate, plus
                   a closed-loop maximum; table, target/bench/sweep/summary.json and
                   docs/img/bench-latency.svg, docs/img/bench-efficiency.svg
  bench --parked-sweep N1,N2,... [--parked-rate R] [--sweep-seconds S] [LOAD-ARGS...]
        [--engine ENGINE-ARGS...]
                   one fresh sipark per count: park N background calls, then S seconds
                   (default 8) of cycles at R/s (default 2000); table (engine µs per cycle,
                   RSS per parked call), target/bench/parked/summary.json,
                   docs/img/bench-parked.svg and docs/img/bench-parked-rss.svg
  bench --overload M1,M2,... [--overload-seconds S] [--xdp] [LOAD-ARGS...]
        [--engine ENGINE-ARGS...]
                   overload control, one worker (--workers 1, pinned): a closed-loop
                   maximum, then M times it offered open loop, S seconds (default 10)
                   each; goodput, p99 of admitted cycles, 503 latency, cycles shed,
                   retransmissions; target/bench/overload/summary.json. --xdp (root):
                   sipark in a network namespace with --xdp on a veth end, sipark-load
                   in another; XDP frames passed and shed per run
  bench --moh N1,N2,... [--moh-seconds S] [LOAD-ARGS...] [--engine ENGINE-ARGS...]
                   music on hold, one worker (--workers 1, pinned): per count, N calls
                   parked with music for S seconds (default 10); packets per engine CPU-s
                   against a bare sendmmsg floor, pacing error and losses at the receiver,
                   park cycles per engine CPU-s with the music and without;
                   target/bench/moh/summary.json
  bench --instructions [--warmup-cycles N] [--cycles N]
                   instructions per park cycle inside the sans-IO shard and in all
                   (callgrind, one in-memory shard, N cycles after the warm-up);
                   target/bench/instructions.json
  bench --guessing [--seconds S] [--window N] [--no-xdp] [--engine ENGINE-ARGS...]
                   password guessing from one source (sipark-guess) against release sipark:
                   bans off, defaults, and defaults with --xdp in a network namespace (root);
                   guesses answered per second, time to ban, what reached a worker after it
  sipp [--rate R] [--calls N] [--instances K] [--scenario park_hangup|park_retrieve]
       [--hold-ms MS] [--retrieve-after-ms MS] [--tenants T] [--engine ENGINE-ARGS...]
                   SIPp pack: K SIPp instances (127.0.0.10+i) split the rate against release
                   sipark; SIPp's statistics, engine and SIPp CPU, which side saturated
  perf [--seconds S] [--warmup W] [--] [LOAD-ARGS...] [--engine ENGINE-ARGS...]
                   perf record -g on sipark (profiling profile, frame pointers) under
                   sipark-load; flamegraph in target/perf/flamegraph.svg
  compare [--tenants T] [--spots S] [--watchers W] [--expiry SECS] [--seconds SECS]
          [--parks-per-minute N] [--hold SECS]
                   traditional park spots (Kamailio registrar + presence, BLF dialog
                   subscriptions) vs sipark: messages and CPU seconds per hour
  fuzz {parse_roundtrip|shard_datagrams} [--seconds S]
                   cargo +nightly fuzz run for S seconds (default 60), seeded from the
                   parser corpus, the RFC 4475 messages and a whole park cycle, with
                   fuzz/sip.dict; executions, coverage and any crash
  install-deps     run scripts/install-deps.sh only";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let task = args.next();
    let rest: Vec<OsString> = args.collect();
    match task.as_ref().and_then(|t| t.to_str()) {
        Some("test") => test(&rest),
        Some("run") => run(&rest),
        Some("bench") => bench(&rest),
        Some("sipp") => sipp::sipp(&rest),
        Some("perf") => perf::perf(&rest),
        Some("compare") => compare::compare(&rest),
        Some("fuzz") => fuzz::fuzz(&rest),
        Some(netns::HTTP_GET_TASK) => netns::http_get_task(&rest),
        Some("install-deps") => match install_deps() {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (this crate lives in `<root>/xtask`).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo that launched us (set by `cargo run`), or `cargo` from PATH.
fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

fn install_deps() -> Result<(), ExitCode> {
    let script = root().join("scripts").join("install-deps.sh");
    let status = Command::new("bash").arg(&script).current_dir(root()).status().map_err(|e| {
        eprintln!("xtask: cannot run {}: {e}", script.display());
        ExitCode::FAILURE
    })?;
    if status.success() {
        Ok(())
    } else {
        eprintln!("xtask: {} failed ({status}); the end-to-end tests need sipp", script.display());
        Err(exit_code(status.code()))
    }
}

fn test(extra: &[OsString]) -> ExitCode {
    if let Err(code) = install_deps() {
        return code;
    }
    if !extra.is_empty() {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(root()).arg("test").arg("--workspace").args(extra);
        return hand_over(cmd);
    }
    // Default test targets only: `--bins` would also run the libFuzzer
    // binaries of fuzz/, which are `test = false` and never stop.
    let earlier: [&[&str]; 2] = [&["test", "--workspace", "--exclude", "sipark"], &["test", "-p", "sipark", "--doc"]];
    for first in earlier {
        let status = Command::new(cargo()).current_dir(root()).args(first).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => return exit_code(s.code()),
            Err(e) => {
                eprintln!("xtask: cannot run cargo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root()).args(["test", "-p", "sipark", "--lib", "--bins", "--tests"]);
    hand_over(cmd)
}

fn run(extra: &[OsString]) -> ExitCode {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root()).args(["run", "--release", "-p", "sipark", "--"]).args(extra);
    hand_over(cmd)
}

/// The cargo target directory (CARGO_TARGET_DIR, else `<root>/target`).
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

/// Splits `cargo xtask bench` arguments into sipark-load's and sipark's: a
/// leading `--` is dropped, and everything after `--engine` is the engine's.
fn split_bench_args(args: &[OsString]) -> (Vec<OsString>, Vec<OsString>) {
    let args = match args.first() {
        Some(a) if a == "--" => &args[1..],
        _ => args,
    };
    match args.iter().position(|a| a == "--engine") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args.to_vec(), Vec::new()),
    }
}

/// Options taken out of an argument list, as (name, value), in order.
type Options = Vec<(String, String)>;

/// Takes the options named in `ours` out of `args`, written `--name V` or `--name=V`, and
/// returns them as (name, value) in order, with every other argument, untouched and in order.
/// A non-UTF-8 argument is never one of ours.
fn take_options(args: Vec<OsString>, ours: &[&str]) -> Result<(Options, Vec<OsString>), String> {
    let mut found = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            rest.push(arg);
            continue;
        };
        if text == "--" {
            // A separator between our options and the load's (`--sweep 1000 -- --warmup 35`):
            // sipark-load takes no positional arguments, so it is dropped.
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (text, None),
        };
        if !ours.contains(&name) {
            rest.push(arg);
            continue;
        }
        let name = name.to_owned();
        let value = match inline {
            Some(v) => v,
            None => it.next().and_then(|v| v.into_string().ok()).ok_or_else(|| format!("{name} needs a value"))?,
        };
        found.push((name, value));
    }
    Ok((found, rest))
}

/// The items of the comma-separated `list`, each read by `item` (whose error is returned as
/// is), none given twice (`twice(item)` words that error) and at most `max` (`too_many`).
pub(crate) fn distinct_items<T: PartialEq>(
    list: &str,
    max: usize,
    item: impl Fn(&str) -> Result<T, String>,
    twice: impl Fn(&str) -> String,
    too_many: impl FnOnce() -> String,
) -> Result<Vec<T>, String> {
    let mut out: Vec<T> = Vec::new();
    for text in list.split(',').map(str::trim) {
        let v = item(text)?;
        if out.contains(&v) {
            return Err(twice(text));
        }
        out.push(v);
    }
    if out.len() > max {
        return Err(too_many());
    }
    Ok(out)
}

/// The options of a bench mode (`--sweep R1,R2 --sweep-seconds S`, `--overload M1,M2
/// --overload-seconds S`), taken out of `mixed`: the values of `mode` parsed by `parse`, the
/// seconds per run (1..=300), and the load's arguments, which may not set what the mode sets
/// (`what` names it in the error: "the sweep", "the run"). `(None, _, _)` without `mode`.
type ModeOptions<T> = (Option<T>, Option<f64>, Vec<OsString>);

fn mode_options<T>(
    mixed: Vec<OsString>,
    mode: &str,
    seconds_flag: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<ModeOptions<T>, String> {
    let (options, load) = take_options(mixed, &[mode, seconds_flag])?;
    let (mut values, mut seconds) = (None, None);
    for (name, value) in options {
        if name == mode {
            if values.is_some() {
                return Err(format!("{mode} given twice"));
            }
            values = Some(parse(&value)?);
        } else {
            if seconds.is_some() {
                return Err(format!("{seconds_flag} given twice"));
            }
            seconds = match value.parse::<f64>() {
                Ok(s) if (1.0..=300.0).contains(&s) => Some(s),
                _ => return Err(format!("{seconds_flag}: expected seconds in 1..=300, got `{value}`")),
            };
        }
    }
    if values.is_none() {
        return match seconds {
            Some(_) => Err(format!("{seconds_flag} needs {mode}")),
            None => Ok((None, None, load)),
        };
    }
    for flag in ["--rate", "--concurrency", "--duration", "--cycles", "--json"] {
        if has_flag(&load, flag) {
            return Err(format!("{flag} cannot be combined with {mode} ({what} sets it)"));
        }
    }
    Ok((values, seconds, load))
}

/// Whether `flag` (`--name`) is among `args`, as `--name` or `--name=...`.
fn has_flag(args: &[OsString], flag: &str) -> bool {
    args.iter().any(|a| a.to_str().is_some_and(|a| a == flag || a.starts_with(&format!("{flag}="))))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends OPTIONS to `addr` every 200 ms until any SIP response comes back,
/// `engine` exits, or `limit` passes.
fn wait_for_answer(name: &str, addr: SocketAddr, engine: &mut Child, limit: Duration) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let me = sock.local_addr().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    for n in 1u32.. {
        if let Ok(Some(status)) = engine.try_wait() {
            return Err(format!("{name} exited during start-up ({status})"));
        }
        if start.elapsed() > limit {
            return Err(format!("{name} did not answer OPTIONS on {addr} within {limit:?}"));
        }
        let options = format!(
            "OPTIONS sip:ping@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKxtask{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:xtask@{me}>;tag=xtask\r\nTo: <sip:ping@{addr}>\r\n\
             Call-ID: xtask-{n}@{me}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(options.as_bytes(), addr);
        if let Ok((len, from)) = sock.recv_from(&mut buf)
            && from == addr
            && buf[..len].starts_with(b"SIP/2.0 ")
        {
            return Ok(());
        }
    }
    Err("unreachable".into())
}

/// Stops the engine with SIGTERM (via kill(1): xtask has no dependencies),
/// waiting up to `grace`, then SIGKILL.
fn stop_engine(engine: &mut Child, grace: Duration) {
    let pid = engine.id().to_string();
    match Command::new("kill").args(["-TERM", &pid]).status() {
        Ok(s) if s.success() => {}
        _ => eprintln!("xtask: cannot send SIGTERM to sipark ({pid})"),
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        match engine.try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    eprintln!("xtask: sipark exited with {status}");
                }
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    eprintln!("xtask: sipark did not stop within {grace:?}; killing it");
    let _ = engine.kill();
    let _ = engine.wait();
}

/// Runs `cargo ARGS` with `env` added, in the workspace root; `Err` carries the exit code to
/// return when it fails.
fn cargo_build(args: &[&str], env: &[(&str, OsString)]) -> Result<(), ExitCode> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(exit_code(s.code())),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Creates `dir` (and its parents), reporting failure.
fn create_dir(dir: &Path) -> Result<(), ExitCode> {
    std::fs::create_dir_all(dir).map_err(|e| {
        eprintln!("xtask: cannot create {}: {e}", dir.display());
        ExitCode::FAILURE
    })
}

/// Starts `binary --listen 127.0.0.1:<free port> [--workers 2] ENGINE-ARGS` (`--workers 2`
/// unless ENGINE-ARGS set it) with its stdout and stderr in `log_path`, and waits until it
/// answers OPTIONS. On failure the engine is stopped and the exit code to return comes back.
fn start_engine(binary: &Path, engine_args: &[OsString], log_path: &Path) -> Result<(Child, SocketAddr), ExitCode> {
    start_engine_probed(binary, engine_args, log_path, |addr, engine, limit| {
        wait_for_answer("sipark", addr, engine, limit)
    })
}

/// [`start_engine`], waiting with `ready(addr, engine, limit)` instead of OPTIONS.
fn start_engine_probed(
    binary: &Path,
    engine_args: &[OsString],
    log_path: &Path,
    ready: impl FnOnce(SocketAddr, &mut Child, Duration) -> Result<(), String>,
) -> Result<(Child, SocketAddr), ExitCode> {
    let port = free_port().map_err(|e| {
        eprintln!("xtask: no free UDP port on 127.0.0.1: {e}");
        ExitCode::FAILURE
    })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(log_path).map_err(|e| {
        eprintln!("xtask: cannot create {}: {e}", log_path.display());
        ExitCode::FAILURE
    })?;
    let mut engine_cmd = Command::new(binary);
    engine_cmd.current_dir(root()).arg("--listen").arg(addr.to_string());
    if !has_flag(engine_args, "--workers") {
        engine_cmd.args(["--workers", "2"]);
    }
    if !has_flag(engine_args, "--moh") {
        // The benches of signalling measure signalling: no music on hold
        // unless asked for (`--engine --moh tune`, or `bench --moh`).
        engine_cmd.args(["--moh", "off"]);
    }
    engine_cmd.args(engine_args).stdin(Stdio::null());
    match log.try_clone() {
        Ok(l) => engine_cmd.stdout(l),
        Err(_) => engine_cmd.stdout(Stdio::null()),
    };
    engine_cmd.stderr(log);
    let mut engine = engine_cmd.spawn().map_err(|e| {
        eprintln!("xtask: cannot start {}: {e}", binary.display());
        ExitCode::FAILURE
    })?;
    eprintln!("xtask: sipark (pid {}) on {addr}, log in {}", engine.id(), log_path.display());
    if let Err(e) = ready(addr, &mut engine, Duration::from_secs(15)) {
        eprintln!("xtask: {e}; see {}", log_path.display());
        stop_engine(&mut engine, Duration::from_secs(5));
        return Err(ExitCode::FAILURE);
    }
    Ok((engine, addr))
}

/// A process's state letter and CPU time (user + system, in clock ticks) from
/// `/proc/<pid>/stat`; `None` when it cannot be read or parsed.
fn proc_cpu(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&stat).map(|(state, own, _)| (state, own))
}

/// CPU time (clock ticks) of this process's children that have been waited for, all of them
/// together (cutime + cstime of `/proc/self/stat`).
fn reaped_children_cpu() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_proc_stat(&stat).map(|(_, _, children)| children)
}

/// Parses the state, utime + stime and cutime + cstime out of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces or parentheses: fields are
/// counted after the last `)`.
fn parse_proc_stat(stat: &str) -> Option<(char, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt,
    // then utime stime cutime cstime.
    let mut fields = fields.skip(10);
    let mut next = || -> Option<u64> { fields.next()?.parse().ok() };
    let own = next()? + next()?;
    let children = next()? + next()?;
    Some((state, own, children))
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, else 100).
fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn bench(args: &[OsString]) -> ExitCode {
    match guessing::parse_args(args) {
        Ok(Some(g)) => return guessing::guessing(&g),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", guessing::USAGE);
            return ExitCode::from(2);
        }
    }
    match icount::parse_args(args) {
        Ok(Some(icount_args)) => return icount::instructions(&icount_args),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", icount::USAGE);
            return ExitCode::from(2);
        }
    }
    match moh::parse_args(args) {
        Ok(Some(moh_args)) => return moh::moh(&moh_args),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", moh::USAGE);
            return ExitCode::from(2);
        }
    }
    match parked::parse_args(args) {
        Ok(Some(parked_args)) => return parked::parked_sweep(&parked_args),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", parked::USAGE);
            return ExitCode::from(2);
        }
    }
    match overload::parse_args(args) {
        Ok(Some(overload_args)) => return overload::overload(&overload_args),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", overload::USAGE);
            return ExitCode::from(2);
        }
    }
    match sweep::parse_args(args) {
        Ok(Some(sweep_args)) => return sweep::sweep(&sweep_args),
        Ok(None) => {}
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", sweep::USAGE);
            return ExitCode::from(2);
        }
    }
    let (load_args, engine_args) = split_bench_args(args);
    let no_floor = load_args.iter().any(|a| a == "--no-floor");
    let load_args: Vec<OsString> = load_args.into_iter().filter(|a| a != "--no-floor").collect();
    // The floor run writes its own JSON; the engine's (the user's --json, or load.json) gets it added.
    let (json_opts, floor_load_args) = match take_options(load_args.clone(), &["--json"]) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let release = target_dir().join("release");
    let out_dir = target_dir().join("bench");
    if let Err(code) = create_dir(&out_dir) {
        return code;
    }
    let (mut engine, addr) = match start_engine(&release.join("sipark"), &engine_args, &out_dir.join("sipark.log")) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut load = Command::new(release.join("sipark-load"));
    load.current_dir(root())
        .arg("--engine-pid")
        .arg(engine.id().to_string())
        .arg("--target")
        .arg(addr.to_string())
        .args(&load_args);
    let json = match json_opts.last() {
        Some((_, path)) => root().join(path),
        None => {
            let json = out_dir.join("load.json");
            load.arg("--json").arg(&json);
            json
        }
    };
    eprintln!("xtask: JSON in {}", json.display());
    let result = load.status();
    stop_engine(&mut engine, Duration::from_secs(20));
    let code = match result {
        Ok(s) => s.code(),
        Err(e) => {
            eprintln!("xtask: cannot run sipark-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if no_floor {
        return exit_code(code);
    }
    if let Some(why) = floor::skip_reason(&floor_load_args) {
        eprintln!("xtask: no floor for {why}");
        return exit_code(code);
    }
    let floor_ok = floor::floor(&release, &floor_load_args, &engine_args, &out_dir, &json);
    if code == Some(0) && !floor_ok { ExitCode::FAILURE } else { exit_code(code) }
}

/// Runs `cmd` with inherited stdio as the last thing this process does and returns its exit code.
/// On Unix the process image is replaced (exec), so signals and the exit status are cargo's own.
fn hand_over(mut cmd: Command) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // `exec` only returns on failure.
        let err = cmd.exec();
        eprintln!("xtask: cannot exec {:?}: {err}", cmd.get_program());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(status) => exit_code(status.code()),
            Err(err) => {
                eprintln!("xtask: cannot run {:?}: {err}", cmd.get_program());
                ExitCode::FAILURE
            }
        }
    }
}

fn exit_code(code: Option<i32>) -> ExitCode {
    match code {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1).max(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    }
}

/// Command-line arguments from string literals, for the tests of every bench.
#[cfg(test)]
pub(crate) fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_arguments_split_at_engine() {
        assert_eq!(split_bench_args(&os(&["--", "--cycles", "5"])), (os(&["--cycles", "5"]), os(&[])));
        assert_eq!(
            split_bench_args(&os(&["--rate", "9", "--engine", "--io", "mmsg"])),
            (os(&["--rate", "9"]), os(&["--io", "mmsg"]))
        );
        assert_eq!(split_bench_args(&os(&["--", "--engine", "--workers=4"])), (os(&[]), os(&["--workers=4"])));
        assert!(has_flag(&os(&["--io", "mmsg", "--workers=4"]), "--workers"));
        assert!(has_flag(&os(&["--json", "x"]), "--json"));
        assert!(!has_flag(&os(&["--workersx", "4"]), "--workers"));
    }

    #[test]
    fn a_separator_between_our_options_and_the_loads_is_dropped() {
        let (ours, rest) = take_options(os(&["--sweep", "1000", "--", "--warmup", "35"]), &["--sweep"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours, vec![("--sweep".to_owned(), "1000".to_owned())]);
        assert_eq!(rest, os(&["--warmup", "35"]));
    }

    #[test]
    fn proc_stat_cpu_is_read_after_the_command_name() {
        let line = "4242 (sipp (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_proc_stat(line), Some(('S', 1290, 0)));
        let zombie = "7 (sh) Z 1 7 7 0 -1 4194560 9 0 0 0 22 3 40 2 20 0 1 0 100 0 0";
        assert_eq!(parse_proc_stat(zombie), Some(('Z', 25, 42)));
        assert_eq!(parse_proc_stat("7 (sh) Z 1 2"), None, "truncated");
        assert_eq!(parse_proc_stat("garbage"), None);
    }
}
