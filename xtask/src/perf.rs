//! `cargo xtask perf`: profiles the engine under load. Builds sipark with the `profiling`
//! profile (release code, full debug info) and frame pointers into target/profiling, drives it
//! with sipark-load (release) like `cargo xtask bench`, records it with `perf record -g` for a
//! bounded time, and turns `perf script` into target/perf/flamegraph.svg with inferno (no
//! external scripts).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use inferno::collapse::Collapse;
use inferno::collapse::perf::{Folder, Options as CollapseOptions};
use inferno::flamegraph::{self, Options as FlameOptions};

use crate::{cargo_build, create_dir, has_flag, split_bench_args, start_engine, stop_engine, take_options, target_dir};

pub(crate) const USAGE: &str =
    "usage: cargo xtask perf [--seconds S] [--warmup W] [--] [LOAD-ARGS...] [--engine ENGINE-ARGS...]
  --seconds S   seconds perf records (default 10, at most 120)
  --warmup W    seconds of load before recording starts (default 3: sipark-load registers first)
  LOAD-ARGS     sipark-load's (default --rate 1000; --duration W+S+2 unless --cycles or
                --duration is given)
  ENGINE-ARGS   sipark's (default --workers 2)
Writes target/perf/perf.data, target/perf/collapsed.txt and target/perf/flamegraph.svg.";

/// Sampling frequency (Hz): off the 1000 Hz of timers, so as not to sample in lockstep.
const FREQUENCY: &str = "999";

/// The arguments of `cargo xtask perf`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PerfArgs {
    pub seconds: u32,
    pub warmup: u32,
    pub load: Vec<OsString>,
    pub engine: Vec<OsString>,
}

/// Parses `cargo xtask perf` arguments: `--seconds`/`--warmup` (`--x N` or `--x=N`) are ours,
/// the rest goes to sipark-load, everything after `--engine` to sipark. Load defaults are
/// filled in.
pub(crate) fn parse_args(args: &[OsString]) -> Result<PerfArgs, String> {
    let (mixed, engine) = split_bench_args(args);
    let mut seconds = 10u32;
    let mut warmup = 3u32;
    let (options, mut load) = take_options(mixed, &["--seconds", "--warmup"])?;
    for (name, value) in options {
        let (lo, hi) = if name == "--seconds" { (1, 120) } else { (0, 120) };
        let n = match value.parse::<u32>() {
            Ok(n) if (lo..=hi).contains(&n) => n,
            _ => return Err(format!("{name}: expected a whole number in {lo}..={hi}, got `{value}`")),
        };
        if name == "--seconds" {
            seconds = n;
        } else {
            warmup = n;
        }
    }
    if !has_flag(&load, "--rate") && !has_flag(&load, "--concurrency") {
        load.extend(["--rate", "1000"].map(OsString::from));
    }
    if !has_flag(&load, "--cycles") && !has_flag(&load, "--duration") {
        load.push("--duration".into());
        load.push((warmup + seconds + 2).to_string().into());
    }
    Ok(PerfArgs { seconds, warmup, load, engine })
}

/// Whether perf can count hardware cycles here (`perf stat -e cycles true`); virtual machines
/// and containers often cannot.
fn hardware_events_work() -> bool {
    match Command::new("perf").args(["stat", "-x", ",", "-e", "cycles", "true"]).output() {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            o.status.success() && !err.contains("<not supported>") && !err.contains("<not counted>")
        }
        Err(_) => false,
    }
}

/// Collapses `perf script` output into folded stacks (`thread;frame;...;leaf weight` lines). A
/// sample weighs its period: nanoseconds for cpu-clock, cycles for cycles.
pub(crate) fn collapse(script: impl BufRead, folded: impl Write) -> std::io::Result<()> {
    Folder::from(CollapseOptions::default()).collapse(script, folded)
}

/// Renders folded stacks as a flamegraph SVG; `unit` names what the counts are.
pub(crate) fn render_svg(folded: impl BufRead, title: &str, unit: &str, svg: impl Write) -> std::io::Result<()> {
    let mut opts = FlameOptions::default();
    opts.title = title.to_string();
    opts.count_name = unit.to_string();
    flamegraph::from_reader(&mut opts, folded, svg)
}

/// The `n` functions with the most weight at the top of the stack, with their weights, and the
/// total weight, from folded stacks.
pub(crate) fn top_self(folded: &str, n: usize) -> (Vec<(String, u64)>, u64) {
    let mut by_leaf: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut total = 0u64;
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *by_leaf.entry(leaf).or_default() += count;
        total += count;
    }
    let mut v: Vec<(String, u64)> = by_leaf.into_iter().map(|(k, c)| (k.to_string(), c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    (v, total)
}

/// Waits for `child` until `limit`, then kills it; returns whether it ended by itself successfully.
fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return s.success(),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

pub(crate) fn perf(args: &[OsString]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask perf: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!(
            "xtask perf: `perf` is not installed. On Debian: `apt-get install linux-perf`; on Ubuntu: \
             `apt-get install linux-tools-common linux-tools-$(uname -r)`"
        );
        return ExitCode::FAILURE;
    }
    let event: Option<&str> = if hardware_events_work() {
        None
    } else {
        eprintln!(
            "xtask perf: hardware events (cycles) are not supported here; falling back to the software \
             event cpu-clock (timer-based sampling)"
        );
        Some("cpu-clock")
    };

    // The engine: profiling profile, frame pointers, its own target dir so that the normal
    // release build is not invalidated by the different RUSTFLAGS.
    let profiling_dir = target_dir().join("profiling");
    let mut rustflags = std::env::var_os("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(" ");
    }
    rustflags.push("-C force-frame-pointers=yes");
    let profiling_dir_arg = profiling_dir.to_string_lossy().into_owned();
    let build = [
        "build",
        "--profile",
        "profiling",
        "-p",
        "sipark",
        "--bin",
        "sipark",
        "--target-dir",
        profiling_dir_arg.as_str(),
    ];
    if let Err(code) = cargo_build(&build, &[("RUSTFLAGS", rustflags)]) {
        return code;
    }
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark-benches", "--bin", "sipark-load"], &[]) {
        return code;
    }
    let out = target_dir().join("perf");
    if let Err(code) = create_dir(&out) {
        return code;
    }
    let binary = profiling_dir.join("profiling").join("sipark");
    let (mut engine, addr) = match start_engine(&binary, &args.engine, &out.join("sipark.log")) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let recorded = record(&args, event, &out, &engine, addr);
    stop_engine(&mut engine, Duration::from_secs(20));
    if let Err(e) = recorded {
        eprintln!("xtask perf: {e}");
        return ExitCode::FAILURE;
    }
    match flame(&args, event, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask perf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs sipark-load against the engine and `perf record` on it after the warm-up.
fn record(
    args: &PerfArgs,
    event: Option<&str>,
    out: &Path,
    engine: &Child,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let mut load = Command::new(target_dir().join("release").join("sipark-load"));
    load.arg("--engine-pid").arg(engine.id().to_string()).arg("--target").arg(addr.to_string()).args(&args.load);
    if !has_flag(&args.load, "--json") {
        load.arg("--json").arg(out.join("load.json"));
    }
    let mut load = load.stdin(Stdio::null()).spawn().map_err(|e| format!("cannot start sipark-load: {e}"))?;
    let warm_until = Instant::now() + Duration::from_secs(u64::from(args.warmup));
    while Instant::now() < warm_until {
        if let Ok(Some(s)) = load.try_wait() {
            return Err(format!("sipark-load ended ({s}) before recording started; give it more work"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let data = out.join("perf.data");
    let log_path = out.join("perf-record.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut perf = Command::new("perf");
    perf.args(["record", "-g", "-F", FREQUENCY]);
    if let Some(ev) = event {
        perf.args(["-e", ev]);
    }
    perf.arg("-p")
        .arg(engine.id().to_string())
        .arg("-o")
        .arg(&data)
        .arg("--")
        .arg("sleep")
        .arg(args.seconds.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_or(Stdio::null(), Stdio::from))
        .stderr(log);
    eprintln!("xtask: perf record on sipark (pid {}) for {} s", engine.id(), args.seconds);
    let mut perf = match perf.spawn() {
        Ok(p) => p,
        Err(e) => {
            let _ = load.kill();
            let _ = load.wait();
            return Err(format!("cannot start perf record: {e}"));
        }
    };
    let perf_ok = wait_bounded(&mut perf, Duration::from_secs(u64::from(args.seconds) + 30));
    // sipark-load prints its table when it ends; it is bounded by its own --duration or
    // --cycles and --timeout, and here by a generous limit.
    if !wait_bounded(&mut load, Duration::from_secs(180)) {
        eprintln!("xtask perf: sipark-load failed or was stopped");
    }
    if !perf_ok {
        return Err(format!("perf record failed; see {}", log_path.display()));
    }
    Ok(())
}

/// `perf script` -> collapsed stacks -> flamegraph SVG; prints the hottest functions.
fn flame(args: &PerfArgs, event: Option<&str>, out: &Path) -> Result<(), String> {
    let data = out.join("perf.data");
    let folded_path = out.join("collapsed.txt");
    let svg_path = out.join("flamegraph.svg");
    let script_log = out.join("perf-script.log");
    let log = std::fs::File::create(&script_log).map_err(|e| format!("cannot create {}: {e}", script_log.display()))?;
    let mut script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start perf script: {e}"))?;
    let stdout = script.stdout.take().ok_or("perf script has no stdout")?;
    let folded_file =
        std::fs::File::create(&folded_path).map_err(|e| format!("cannot create {}: {e}", folded_path.display()))?;
    let mut writer = BufWriter::new(folded_file);
    let collapsed = collapse(BufReader::new(stdout), &mut writer).and_then(|()| writer.flush());
    let status = script.wait().map_err(|e| format!("perf script: {e}"))?;
    collapsed.map_err(|e| format!("collapsing perf script output: {e}"))?;
    if !status.success() {
        return Err(format!("perf script failed ({status}); see {}", script_log.display()));
    }
    let folded = std::fs::read_to_string(&folded_path).map_err(|e| format!("{}: {e}", folded_path.display()))?;
    let (top, total) = top_self(&folded, 12);
    if total == 0 {
        return Err(format!("perf recorded no samples of sipark; see {}", out.join("perf-record.log").display()));
    }
    let title =
        format!("sipark under sipark-load: {} s, {} at {FREQUENCY} Hz", args.seconds, event.unwrap_or("cycles"));
    let unit = if event.is_some() { "ns" } else { "cycles" };
    let svg = std::fs::File::create(&svg_path).map_err(|e| format!("cannot create {}: {e}", svg_path.display()))?;
    let mut svg = BufWriter::new(svg);
    render_svg(folded.as_bytes(), &title, unit, &mut svg)
        .and_then(|()| svg.flush())
        .map_err(|e| format!("writing {}: {e}", svg_path.display()))?;
    match event {
        Some(ev) => println!(
            "\nperf: {:.2} CPU-seconds of sipark sampled (software event {ev}: hardware events are not \
             supported here); hottest functions (self):",
            total as f64 / 1e9
        ),
        None => println!("\nperf: {total} cycles of sipark sampled; hottest functions (self):"),
    }
    for (f, c) in &top {
        println!("  {:>5.1}%  {f}", *c as f64 * 100.0 / total as f64);
    }
    println!("flamegraph: {}", svg_path.display());
    println!("folded stacks: {}; perf data: {}", folded_path.display(), data.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn arguments_split_and_load_defaults() {
        let a = parse_args(&[]).unwrap_or_else(|e| panic!("defaults: {e}"));
        assert_eq!((a.seconds, a.warmup), (10, 3));
        assert_eq!(a.load, os(&["--rate", "1000", "--duration", "15"]));
        assert!(a.engine.is_empty());

        let a = parse_args(&os(&[
            "--",
            "--seconds=5",
            "--concurrency",
            "32",
            "--warmup",
            "1",
            "--engine",
            "--workers",
            "1",
        ]))
        .unwrap_or_else(|e| panic!("mixed: {e}"));
        assert_eq!((a.seconds, a.warmup), (5, 1));
        assert_eq!(a.load, os(&["--concurrency", "32", "--duration", "8"]), "no --rate added to a closed loop");
        assert_eq!(a.engine, os(&["--workers", "1"]));

        let a = parse_args(&os(&["--cycles", "500", "--rate=200"])).unwrap_or_else(|e| panic!("cycles: {e}"));
        assert_eq!(a.load, os(&["--cycles", "500", "--rate=200"]), "the user's bound is kept");

        for bad in [&["--seconds"][..], &["--seconds", "0"], &["--seconds", "121"], &["--warmup", "x"]] {
            if let Ok(a) = parse_args(&os(bad)) {
                panic!("{bad:?} was accepted as {a:?}");
            }
        }
    }

    /// Three samples of `perf script` (two with the same stack, one in another thread) with
    /// perf's usual layout: header line, indented frames leaf first, blank line.
    const SCRIPT: &str = "\
shard-0 4242/4243  8823.404685:    1001001 cpu-clock: 
\t    55d0 sipark::proto::parse::SipMessage::parse+0x10 (/w/target/profiling/profiling/sipark)
\t    55e0 sipark::proto::shard::Shard::handle+0x20 (/w/target/profiling/profiling/sipark)
\t    55f0 std::sys::pal::unix::thread::Thread::new::thread_start+0x30 (/w/target/profiling/profiling/sipark)

shard-0 4242/4243  8823.405685:    1001001 cpu-clock: 
\t    55d4 sipark::proto::parse::SipMessage::parse+0x14 (/w/target/profiling/profiling/sipark)
\t    55e0 sipark::proto::shard::Shard::handle+0x20 (/w/target/profiling/profiling/sipark)
\t    55f0 std::sys::pal::unix::thread::Thread::new::thread_start+0x30 (/w/target/profiling/profiling/sipark)

shard-1 4242/4244  8823.405690:    1001001 cpu-clock: 
\tffffffff81000000 __sys_recvmmsg+0x0 ([kernel.kallsyms])
\t    5600 sipark::io::udp::recv_batch+0x40 (/w/target/profiling/profiling/sipark)

";

    #[test]
    fn perf_script_collapses_to_folded_stacks_and_svg() {
        let mut folded = Vec::new();
        collapse(SCRIPT.as_bytes(), &mut folded).unwrap_or_else(|e| panic!("collapse: {e}"));
        let folded = String::from_utf8(folded).unwrap_or_else(|e| panic!("utf-8: {e}"));
        let mut lines: Vec<&str> = folded.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "shard-0;std::sys::pal::unix::thread::Thread::new::thread_start;\
                 sipark::proto::shard::Shard::handle;sipark::proto::parse::SipMessage::parse 2002002",
                "shard-1;sipark::io::udp::recv_batch;__sys_recvmmsg 1001001",
            ],
            "folded:\n{folded}"
        );
        let (top, total) = top_self(&folded, 5);
        assert_eq!(total, 3_003_003, "three samples of 1001001 ns");
        assert_eq!(
            top,
            [
                ("sipark::proto::parse::SipMessage::parse".to_string(), 2_002_002),
                ("__sys_recvmmsg".to_string(), 1_001_001)
            ]
        );

        let mut svg = Vec::new();
        render_svg(folded.as_bytes(), "test graph", "ns", &mut svg).unwrap_or_else(|e| panic!("flamegraph: {e}"));
        let svg = String::from_utf8(svg).unwrap_or_else(|e| panic!("svg utf-8: {e}"));
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "not an SVG: {}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("test graph"), "title missing");
        assert!(svg.contains("SipMessage::parse"), "frame missing from the SVG");
    }

    #[test]
    fn empty_perf_script_has_no_samples() {
        let mut folded = Vec::new();
        collapse(&b""[..], &mut folded).unwrap_or_else(|e| panic!("collapse: {e}"));
        assert_eq!(top_self(&String::from_utf8_lossy(&folded), 3), (Vec::new(), 0));
    }
}
