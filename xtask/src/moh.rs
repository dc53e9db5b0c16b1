//! `cargo xtask bench --moh N1,N2,...`: music on hold under load (issue 14). First the park
//! cycles with no music playing: a fresh release sipark (`--workers 1`, pinned to CPU 0, `--moh
//! tune`) under a short closed-loop run. Then per count N, a fresh engine of the same arguments
//! and one `sipark-load --moh-streams N` run (benches/src/load/moh): N calls parked with music,
//! their RTP received on the generator's core with kernel receive stamps, S seconds measured
//! after a warm-up; park cycles while the music plays (the same closed loop); the calls hung up;
//! then the floor, a bare batched sender of the same packets pinned to the worker's core while
//! the engine is idle. Prints a table and whether each of the issue's goals is met, and writes
//! target/bench/moh/{none,<N>,summary}.json.
//!
//! The engines run with overload control off (`--overload-delay-ms 0`) unless ENGINE-ARGS say
//! otherwise: the bench asks the engine for N streams, and a worker whose core the music fills
//! would otherwise refuse the parks that would add more (which is overload control doing its
//! job, measured by `--overload`). They park calls for an hour (`--park-timeout 3600`), so that
//! no recall comes during a long run.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use crate::sweep::{Json, jnum, jopt, json_args, run_load_on, write_file};
use crate::{cargo_build, create_dir, distinct_items, has_flag, mode_options, split_bench_args, target_dir};

pub(crate) const USAGE: &str = "usage: cargo xtask bench --moh N1,N2,... [--moh-seconds S] [--] [LOAD-ARGS...]
       [--engine ENGINE-ARGS...]
  --moh N1,N2,...   calls parked with music, one fresh sipark per count (1..=100000)
  --moh-seconds S   seconds measured per count, after 2 s of music (default 10)
  LOAD-ARGS         other sipark-load flags (not --rate, --concurrency, --duration, --cycles,
                    --json, --moh-streams, --moh-cycle-seconds, --engine-metrics,
                    --background-parked, --floor); defaults --tenants 100 --warmup 2
                    --background-window 64
  ENGINE-ARGS       sipark's (default --workers 1, pinned; --moh tune; --overload-delay-ms 0;
                    --park-timeout 3600; not --metrics, which the run sets)
Per count: packets sent per engine CPU-second against a bare sendmmsg sender of the same packets
on one core (the floor), pacing error at the receiver (p50, p99, max of |gap - 20 ms|), lost
packets, and park cycles per engine CPU-second (closed loop, 32 in flight, 5 s) with the N
streams playing, beside the same with none. Writes target/bench/moh/none.json, <N>.json and
summary.json.";

/// Most counts one run takes.
const MAX_COUNTS: usize = 8;
/// Most streams (sipark-load's limit).
const MAX_STREAMS: u32 = 100_000;
/// The cycles run with and without music: closed loop, this many in flight, this long.
const CYCLE_CONCURRENCY: u32 = 32;
const CYCLE_SECONDS: u32 = 5;
/// sipark's default most streams per worker (`--moh-max-streams`).
const DEFAULT_MAX_STREAMS: u32 = 4_096;
/// The issue's goals: streams, packets per engine CPU-second against the floor, p99 pacing
/// error (ms), packets lost.
const STREAMS_GOAL: u32 = 10_000;
const FLOOR_GOAL: f64 = 0.8;
const PACING_P99_GOAL_MS: f64 = 2.0;
/// The share of a window's packets that must arrive for its calls to count as having music:
/// a sender that skips packet times (late by more than one) is not playing the music.
const DELIVERED_GOAL: f64 = 0.999;

/// The arguments of a music-on-hold run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MohArgs {
    pub counts: Vec<u32>,
    pub seconds: f64,
    pub load: Vec<OsString>,
    pub engine: Vec<OsString>,
}

/// Parses `cargo xtask bench` arguments for a music-on-hold run: `None` without `--moh` (before
/// `--engine`; after it, `--moh` is the engine's).
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<MohArgs>, String> {
    let (mixed, mut engine) = split_bench_args(args);
    let (counts, seconds, mut load) = mode_options(mixed, "--moh", "--moh-seconds", "the run", parse_counts)?;
    let Some(counts) = counts else { return Ok(None) };
    for flag in
        ["--moh-streams", "--moh-cycle-seconds", "--engine-metrics", "--background-parked", "--floor", "--no-moh-floor"]
    {
        if has_flag(&load, flag) {
            return Err(format!("{flag} cannot be combined with --moh (the run sets it)"));
        }
    }
    if let Some(flag) = ["--sweep", "--parked-sweep", "--overload", "--instructions", "--guessing"]
        .into_iter()
        .find(|f| has_flag(&load, f))
    {
        return Err(format!("{flag} and --moh cannot be combined (run them one after the other)"));
    }
    if has_flag(&engine, "--metrics") {
        return Err("--engine --metrics cannot be combined with --moh (the run sets it)".into());
    }
    for (flag, value) in [("--tenants", "100"), ("--warmup", "2"), ("--background-window", "64")] {
        if !has_flag(&load, flag) {
            load.extend([flag.into(), value.into()]);
        }
    }
    let mut defaults: Vec<OsString> = Vec::new();
    let max_streams = counts.iter().max().map_or(0, |n| n + 2 * CYCLE_CONCURRENCY + 1024).max(DEFAULT_MAX_STREAMS);
    for (flag, value) in [
        ("--workers", "1".to_owned()),
        ("--moh", "tune".to_owned()),
        ("--overload-delay-ms", "0".to_owned()),
        ("--park-timeout", "3600".to_owned()),
        ("--moh-max-streams", max_streams.to_string()),
    ] {
        if !has_flag(&engine, flag) {
            defaults.extend([flag.into(), value.into()]);
        }
    }
    engine.splice(0..0, defaults);
    Ok(Some(MohArgs { counts, seconds: seconds.unwrap_or(10.0), load, engine }))
}

/// `N1,N2,...`: distinct counts of streams in 1..=100000, at most [`MAX_COUNTS`].
fn parse_counts(list: &str) -> Result<Vec<u32>, String> {
    distinct_items(
        list,
        MAX_COUNTS,
        |item| match item.parse::<u32>() {
            Ok(n) if (1..=MAX_STREAMS).contains(&n) => Ok(n),
            _ => Err(format!("--moh: `{item}` is not a count of calls in 1..=100000")),
        },
        |item| format!("--moh: {item} given twice"),
        || format!("--moh: at most {MAX_COUNTS} counts"),
    )
}

/// Percentiles of the pacing error, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pacing {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Pacing {
    fn of(j: &Json, path: &[&str]) -> Pacing {
        let n = |k: &str| {
            let mut p = path.to_vec();
            p.push(k);
            j.num(&p).unwrap_or(f64::NAN)
        };
        Pacing { p50_us: n("p50_us"), p99_us: n("p99_us"), max_us: n("max_us") }
    }

    fn json(&self) -> String {
        format!(
            "{{\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
            jnum(self.p50_us),
            jnum(self.p99_us),
            jnum(self.max_us)
        )
    }
}

/// The music at the receiver over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Music {
    /// Packets received, against one per stream per 20 ms of the window.
    pub delivered: f64,
    pub pacing: Pacing,
    pub lost: f64,
    /// Of the lost, those the receiver's own sockets dropped.
    pub socket_drops: f64,
    /// Packet times the sender skipped.
    pub skipped: f64,
}

impl Music {
    fn of(j: &Json, streams: u32, path: &[&str]) -> Music {
        let n = |k: &[&str]| {
            let mut p = path.to_vec();
            p.extend_from_slice(k);
            j.num(&p).unwrap_or(f64::NAN)
        };
        let expected = f64::from(streams) * n(&["window_s"]) * 50.0;
        let mut pacing = path.to_vec();
        pacing.push("pacing");
        Music {
            delivered: n(&["packets"]) / expected,
            pacing: Pacing::of(j, &pacing),
            lost: n(&["lost"]),
            socket_drops: n(&["socket_drops"]),
            skipped: n(&["skipped"]),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"delivered\":{},\"pacing\":{},\"lost\":{},\"socket_drops\":{},\"skipped\":{}}}",
            jnum(self.delivered),
            self.pacing.json(),
            jnum(self.lost),
            jnum(self.socket_drops),
            jnum(self.skipped)
        )
    }
}

/// What one count's run measured (sipark-load's JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MohRun {
    pub streams: u32,
    pub parked: f64,
    /// Streams heard in the window.
    pub heard: f64,
    pub packets_per_s: Option<f64>,
    pub per_cpu: Option<f64>,
    pub floor_per_cpu: Option<f64>,
    /// The music in the window, and the floor's.
    pub music: Music,
    pub floor: Music,
    pub cycles_per_cpu: Option<f64>,
    pub cycles_per_cpu_net: Option<f64>,
    pub cycles_rate: Option<f64>,
    pub cycles_failed: Option<f64>,
    /// The music while the park cycles ran.
    pub cycles_music: Music,
    pub engine_cpu_s: Option<f64>,
}

impl MohRun {
    pub(crate) fn from_json(text: &str) -> Result<MohRun, String> {
        let j = Json::parse(text)?;
        let need = |p: &[&str]| j.num(p).ok_or_else(|| format!("no number `{}` in the report", p.join(".")));
        let streams = need(&["streams"])? as u32;
        need(&["rx", "lost"])?;
        Ok(MohRun {
            streams,
            parked: need(&["parked"])?,
            heard: need(&["rx", "streams"])?,
            packets_per_s: j.num(&["packets_per_s"]),
            per_cpu: j.num(&["packets_per_engine_cpu_s"]),
            floor_per_cpu: j.num(&["floor_packets_per_cpu_s"]),
            music: Music::of(&j, streams, &["rx"]),
            floor: Music::of(&j, streams, &["floor", "rx"]),
            cycles_per_cpu: j.num(&["cycles_per_engine_cpu_s"]),
            cycles_per_cpu_net: j.num(&["cycles_per_engine_cpu_s_net"]),
            cycles_rate: j.num(&["cycles", "run", "rate_achieved"]),
            cycles_failed: j.num(&["cycles", "run", "cycles_failed"]),
            cycles_music: Music::of(&j, streams, &["cycles", "rx"]),
            engine_cpu_s: j.num(&["engine_cpu_s"]),
        })
    }

    /// Whether every call was parked and heard, and (nearly) every packet of the window
    /// delivered: at least [`DELIVERED_GOAL`] of one per stream per 20 ms.
    pub(crate) fn with_music(&self) -> bool {
        let all = f64::from(self.streams);
        self.parked == all && self.heard == all && self.music.delivered >= DELIVERED_GOAL
    }

    /// Packets per engine CPU-second over the floor's.
    pub(crate) fn ratio(&self) -> Option<f64> {
        Some(self.per_cpu? / self.floor_per_cpu.filter(|f| *f > 0.0)?)
    }
}

/// The park cycles with no music (a plain sipark-load run's JSON).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NoMusic {
    pub cycles_per_cpu: Option<f64>,
    pub rate: f64,
    pub failed: f64,
}

impl NoMusic {
    pub(crate) fn from_json(text: &str) -> Result<NoMusic, String> {
        let j = Json::parse(text)?;
        Ok(NoMusic {
            cycles_per_cpu: j.num(&["cycles_per_engine_cpu_s"]),
            rate: j.num(&["rate_achieved"]).ok_or("no rate_achieved in the report")?,
            failed: j.num(&["cycles_failed"]).ok_or("no cycles_failed in the report")?,
        })
    }
}

fn ms(us: f64) -> String {
    if us.is_finite() { format!("{:.3}", us / 1000.0) } else { "n/a".into() }
}

fn n0(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "n/a".into(), |v| format!("{v:.0}"))
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.1}%", 100.0 * v) } else { "n/a".into() }
}

/// The results as two tables: the music alone against its floor, then the park cycles while
/// it played.
pub(crate) fn table(runs: &[MohRun], none: Option<&NoMusic>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>7} {:>7} {:>9} {:>9} | {:>9} {:>9} {:>6} | {:>23} {:>7} {:>8} | {:>9} {:>9}",
        "streams",
        "heard",
        "delivered",
        "packets/s",
        "packets /",
        "floor /",
        "ratio",
        "pacing error (ms)",
        "lost",
        "skipped",
        "floor",
        "floor p99"
    );
    let _ = writeln!(
        o,
        "{:>7} {:>7} {:>9} {:>9} | {:>9} {:>9} {:>6} | {:>7} {:>7} {:>7} {:>7} {:>8} | {:>9} {:>9}",
        "", "", "", "sent", "eng CPU-s", "CPU-s", "", "p50", "p99", "max", "", "", "delivered", "pacing ms"
    );
    for r in runs {
        let m = &r.music;
        let _ = writeln!(
            o,
            "{:>7} {:>7.0} {:>9} {:>9} | {:>9} {:>9} {:>6} | {:>7} {:>7} {:>7} {:>7.0} {:>8.0} | {:>9} {:>9}",
            r.streams,
            r.heard,
            pct(m.delivered),
            n0(r.packets_per_s),
            n0(r.per_cpu),
            n0(r.floor_per_cpu),
            r.ratio().map_or_else(|| "n/a".into(), pct),
            ms(m.pacing.p50_us),
            ms(m.pacing.p99_us),
            ms(m.pacing.max_us),
            m.lost,
            m.skipped,
            pct(r.floor.delivered),
            ms(r.floor.pacing.p99_us),
        );
    }
    let _ = writeln!(
        o,
        "\n{:>7} | {:>9} {:>22} | {:>36}",
        "streams", "park", "park cycles per", "the music while the cycles ran"
    );
    let _ = writeln!(
        o,
        "{:>7} | {:>9} {:>7} {:>7} {:>6} | {:>9} {:>8} {:>8} {:>8}",
        "", "cycles/s", "with N", "net", "none", "delivered", "p99 ms", "lost", "skipped"
    );
    let none_cpu = n0(none.and_then(|n| n.cycles_per_cpu));
    if let Some(n) = none {
        let _ = writeln!(o, "{:>7} | {:>9.0} {:>7} {:>7} {:>6} |", 0, n.rate, "-", "-", none_cpu);
    }
    for r in runs {
        let m = &r.cycles_music;
        let _ = writeln!(
            o,
            "{:>7} | {:>9} {:>7} {:>7} {:>6} | {:>9} {:>8} {:>8.0} {:>8.0}",
            r.streams,
            n0(r.cycles_rate),
            n0(r.cycles_per_cpu),
            n0(r.cycles_per_cpu_net),
            none_cpu,
            pct(m.delivered),
            ms(m.pacing.p99_us),
            m.lost,
            m.skipped
        );
    }
    o
}

/// Whether a run met the issue's goals, in words.
pub(crate) fn verdict(r: &MohRun) -> String {
    let yes = |b: bool| if b { "met" } else { "NOT met" };
    let ratio = r.ratio().map_or_else(
        || "packets per engine CPU-s >= 80% of the floor n/a".to_owned(),
        |x| format!("packets per engine CPU-s >= 80% of the floor {} ({:.1}%)", yes(x >= FLOOR_GOAL), 100.0 * x),
    );
    let m = &r.music;
    format!(
        "{} streams: all parked with music {} ({:.0} parked, {:.0} heard, {} of the packets delivered); {ratio}; \
         p99 pacing error < {PACING_P99_GOAL_MS} ms {} ({} ms); 0 lost {} ({:.0}, {:.0} of them dropped by the \
         receiver's sockets; {:.0} packet times skipped by the engine)",
        r.streams,
        yes(r.with_music()),
        r.parked,
        r.heard,
        pct(m.delivered),
        yes(m.pacing.p99_us < PACING_P99_GOAL_MS * 1000.0),
        ms(m.pacing.p99_us),
        yes(m.lost == 0.0),
        m.lost,
        m.socket_drops,
        m.skipped,
    )
}

/// The goal of 10,000 parked calls with music: met by a run of at least that many whose every
/// call was parked and heard and whose packets were (nearly) all delivered.
pub(crate) fn streams_verdict(runs: &[MohRun]) -> String {
    let big: Vec<&MohRun> = runs.iter().filter(|r| r.streams >= STREAMS_GOAL).collect();
    if big.is_empty() {
        return format!("{STREAMS_GOAL} parked calls with music: not measured (no count of {STREAMS_GOAL} or more)");
    }
    let met = big.iter().any(|r| r.with_music());
    let detail: Vec<String> = big
        .iter()
        .map(|r| format!("{}: {:.0} heard, {} of the packets delivered", r.streams, r.heard, pct(r.music.delivered)))
        .collect();
    format!("{STREAMS_GOAL} parked calls with music: {} ({})", if met { "met" } else { "NOT met" }, detail.join("; "))
}

/// target/bench/moh/summary.json.
pub(crate) fn summary_json(args: &MohArgs, runs: &[MohRun], none: Option<&NoMusic>) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{{\"streams\":{},\"parked\":{},\"heard\":{},\"with_music\":{},\"packets_per_s\":{},\
                 \"packets_per_engine_cpu_s\":{},\"floor_packets_per_cpu_s\":{},\"floor_ratio\":{},\"music\":{},\
                 \"floor\":{},\"engine_cpu_s\":{},\"cycles_rate\":{},\"cycles_per_engine_cpu_s\":{},\
                 \"cycles_per_engine_cpu_s_net\":{},\"cycles_failed\":{},\"cycles_music\":{}}}",
                r.streams,
                jnum(r.parked),
                jnum(r.heard),
                r.with_music(),
                jopt(r.packets_per_s),
                jopt(r.per_cpu),
                jopt(r.floor_per_cpu),
                jopt(r.ratio()),
                r.music.json(),
                r.floor.json(),
                jopt(r.engine_cpu_s),
                jopt(r.cycles_rate),
                jopt(r.cycles_per_cpu),
                jopt(r.cycles_per_cpu_net),
                jopt(r.cycles_failed),
                r.cycles_music.json(),
            )
        })
        .collect();
    let none = none.map_or_else(
        || "null".to_owned(),
        |n| {
            format!(
                "{{\"cycles_per_engine_cpu_s\":{},\"rate_achieved\":{},\"cycles_failed\":{}}}",
                jopt(n.cycles_per_cpu),
                jnum(n.rate),
                jnum(n.failed)
            )
        },
    );
    format!(
        "{{\"seconds_per_run\":{},\"counts\":[{}],\"cycle_concurrency\":{CYCLE_CONCURRENCY},\
         \"cycle_seconds\":{CYCLE_SECONDS},\"load_args\":[{}],\"engine_args\":[{}],\"goals\":{{\"streams\":{STREAMS_GOAL},\
         \"delivered\":{DELIVERED_GOAL},\"floor_ratio\":{FLOOR_GOAL},\"pacing_p99_ms\":{PACING_P99_GOAL_MS},\"lost\":0}},\"no_music\":{none},\
         \"runs\":[\n{}\n]}}\n",
        jnum(args.seconds),
        args.counts.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        json_args(&args.load),
        json_args(&args.engine),
        items.join(",\n")
    )
}

/// The metrics address given to the engine: a TCP port on 127.0.0.1 that was free a moment ago.
fn metrics_addr() -> Result<String, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(|e| format!("no free TCP port on 127.0.0.1: {e}"))
}

/// The park cycles with no music, then one run per count; the exit code is failure when a run
/// left no figures or a file could not be written.
pub(crate) fn moh(args: &MohArgs) -> ExitCode {
    let began = Instant::now();
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let dir = target_dir().join("bench").join("moh");
    if let Err(code) = create_dir(&dir) {
        return code;
    }
    // The worker pins itself to the first CPU; the generator and its RTP receiver keep to the
    // others, and the floor's sender pins itself to the worker's.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others = (cores > 1).then(|| format!("1-{}", cores - 1));
    let cycles =
        ["--concurrency".to_owned(), CYCLE_CONCURRENCY.to_string(), "--duration".into(), CYCLE_SECONDS.to_string()];
    let mut ok = true;
    eprintln!("xtask: moh: park cycles with no music ({CYCLE_CONCURRENCY} in flight, {CYCLE_SECONDS} s)");
    let none = match run_load_on(&args.load, &args.engine, &dir, "none", &cycles, others.as_deref())
        .and_then(|(text, _)| NoMusic::from_json(&text))
    {
        Ok(n) => {
            eprintln!("xtask:   {} park cycles per engine CPU-s", n0(n.cycles_per_cpu));
            Some(n)
        }
        Err(e) => {
            eprintln!("xtask: moh: the cycles with no music: {e}");
            ok = false;
            None
        }
    };
    let mut runs = Vec::new();
    for &n in &args.counts {
        let metrics = match metrics_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("xtask: moh: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut engine = args.engine.clone();
        engine.extend(["--metrics".into(), metrics.clone().into()]);
        let extra = [
            "--moh-streams".to_owned(),
            n.to_string(),
            "--duration".into(),
            format!("{}", args.seconds),
            "--moh-cycle-seconds".into(),
            CYCLE_SECONDS.to_string(),
            "--concurrency".into(),
            CYCLE_CONCURRENCY.to_string(),
            "--engine-metrics".into(),
            metrics,
            "--moh-floor-cpu".into(),
            "0".into(),
        ];
        eprintln!("xtask: moh: {n} calls parked with music, {} s measured", args.seconds);
        let name = n.to_string();
        match run_load_on(&args.load, &engine, &dir, &name, &extra, others.as_deref()) {
            Ok((text, status)) => match MohRun::from_json(&text) {
                Ok(r) => {
                    if !status.success() {
                        eprintln!(
                            "xtask: sipark-load {status} for {n} streams; see {}",
                            dir.join(format!("{n}.txt")).display()
                        );
                    }
                    eprintln!("xtask:   {}", verdict(&r));
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!("xtask: moh: {}: {e}", dir.join(format!("{name}.json")).display());
                    ok = false;
                }
            },
            Err(e) => {
                eprintln!("xtask: moh: {n}: {e}");
                ok = false;
            }
        }
    }
    println!(
        "\nmusic on hold: one worker (pinned to CPU 0), {} s per count after 2 s of music; park cycles: closed loop, \
         {CYCLE_CONCURRENCY} in flight, {CYCLE_SECONDS} s; files in {}\n",
        args.seconds,
        dir.display()
    );
    print!("{}", table(&runs, none.as_ref()));
    println!();
    for r in &runs {
        println!("{}", verdict(r));
    }
    println!("{}", streams_verdict(&runs));
    let summary = dir.join("summary.json");
    ok &= write_file(&summary, &summary_json(args, &runs, none.as_ref()));
    println!("\nsummary: {} ({:.0} s in all)", summary.display(), began.elapsed().as_secs_f64());
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn arguments_without_moh_are_another_bench() {
        assert_eq!(parse_args(&os(&["--cycles", "5"])), Ok(None));
        assert_eq!(parse_args(&os(&["--engine", "--moh", "tune"])), Ok(None), "the engine's --moh");
        assert_eq!(parse_args(&os(&["--sweep", "1000"])), Ok(None));
    }

    #[test]
    fn moh_arguments_are_parsed_with_the_engines_defaults() {
        let a = parse_args(&os(&["--moh", "1000, 10000", "--moh-seconds", "5", "--tenants", "50"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a moh run"));
        assert_eq!(a.counts, vec![1000, 10_000]);
        assert_eq!(a.seconds, 5.0);
        assert_eq!(a.load, os(&["--tenants", "50", "--warmup", "2", "--background-window", "64"]));
        assert_eq!(
            a.engine,
            os(&[
                "--workers",
                "1",
                "--moh",
                "tune",
                "--overload-delay-ms",
                "0",
                "--park-timeout",
                "3600",
                "--moh-max-streams",
                "11088"
            ])
        );
        let a = parse_args(&os(&[
            "--moh=50000",
            "--",
            "--warmup",
            "5",
            "--engine",
            "--workers=2",
            "--moh",
            "music.wav",
            "--overload-delay-ms",
            "5",
        ]))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a moh run"));
        assert_eq!((a.counts.clone(), a.seconds), (vec![50_000], 10.0));
        assert_eq!(a.load, os(&["--warmup", "5", "--tenants", "100", "--background-window", "64"]));
        assert_eq!(
            a.engine,
            os(&[
                "--park-timeout",
                "3600",
                "--moh-max-streams",
                "51088",
                "--workers=2",
                "--moh",
                "music.wav",
                "--overload-delay-ms",
                "5"
            ]),
            "the engine's own flags win; room for the cycles' streams"
        );
    }

    #[test]
    fn bad_moh_arguments_are_refused() {
        for (args, want) in [
            (&["--moh", "0"][..], "--moh: `0` is not a count of calls in 1..=100000"),
            (&["--moh", "100001"], "--moh: `100001` is not a count"),
            (&["--moh", "5,x"], "--moh: `x` is not a count"),
            (&["--moh", "5,5"], "--moh: 5 given twice"),
            (&["--moh", "1,2,3,4,5,6,7,8,9"], "--moh: at most 8 counts"),
            (&["--moh", "5", "--moh", "6"], "--moh given twice"),
            (&["--moh-seconds", "5"], "--moh-seconds needs --moh"),
            (&["--moh", "5", "--moh-seconds", "0.5"], "--moh-seconds: expected seconds in 1..=300"),
            (&["--moh", "5", "--rate", "9"], "--rate cannot be combined with --moh"),
            (&["--moh", "5", "--concurrency", "9"], "--concurrency cannot be combined with --moh"),
            (&["--moh", "5", "--json", "x"], "--json cannot be combined with --moh"),
            (&["--moh", "5", "--moh-streams", "9"], "--moh-streams cannot be combined with --moh"),
            (&["--moh", "5", "--background-parked=9"], "--background-parked cannot be combined"),
            (&["--moh", "5", "--engine", "--metrics", "127.0.0.1:9"], "--engine --metrics cannot be combined"),
            (&["--moh", "5", "--parked-sweep", "9"], "--parked-sweep and --moh cannot be combined"),
            (&["--moh", "5", "--overload=2"], "--overload and --moh cannot be combined"),
        ] {
            match parse_args(&os(args)) {
                Err(e) => assert!(e.starts_with(want), "{args:?}: {e}"),
                Ok(a) => panic!("{args:?} accepted: {a:?}"),
            }
        }
    }

    /// A report as sipark-load --moh-streams writes it (trimmed).
    fn report(streams: u32, heard: u32, packets: u64, p99_us: f64, lost: u64, ratio: f64) -> String {
        let rx = |packets: u64, p99: f64, lost: u64, skipped: u64| {
            format!(
                r#"{{"window_s":10,"streams":{heard},"packets":{packets},"lost":{lost},"socket_drops":2,
                "skipped":{skipped},"pacing":{{"count":4990000,"p50_us":80,"p99_us":{p99},"p999_us":3000,
                "max_us":9000,"mean_us":100}}}}"#
            )
        };
        format!(
            r#"{{"target":"127.0.0.1:5060","mode":"moh","streams":{streams},"parked":{streams},"park_failed":0,
            "engine_cpu_s":4.5,"packets_per_s":{},"packets_per_engine_cpu_s":{},"floor_packets_per_cpu_s":300000,
            "floor_ratio":{ratio},"rx":{},"floor":{{"packets":5000000,"rx":{}}},
            "cycles":{{"rx":{},"run":{{"cycles_failed":0,"rate_achieved":4000.7}}}},
            "cycles_per_engine_cpu_s":9000,"cycles_per_engine_cpu_s_net":16000}}"#,
            f64::from(streams) * 50.0,
            300_000.0 * ratio,
            rx(packets, p99_us, lost, 7),
            rx(u64::from(streams) * 500, 700.0, 0, 0),
            rx(u64::from(streams) * 400, 5000.0, 0, 900),
        )
    }

    fn runs() -> Vec<MohRun> {
        [report(1000, 1000, 500_000, 600.0, 0, 0.95), report(10_000, 9_000, 2_500_000, 20_000.0, 30, 0.7)]
            .iter()
            .map(|t| MohRun::from_json(t).unwrap_or_else(|e| panic!("{e}\n{t}")))
            .collect()
    }

    #[test]
    fn reports_are_read_and_judged() {
        let r = runs();
        assert_eq!((r[0].streams, r[0].heard, r[0].music.lost), (1000, 1000.0, 0.0));
        assert_eq!(r[0].music.delivered, 1.0, "500,000 packets of 1,000 streams in 10 s");
        assert_eq!(r[1].music.delivered, 0.5);
        assert_eq!(r[0].ratio().map(|x| (x * 100.0).round()), Some(95.0));
        assert_eq!(r[1].music.pacing.p99_us, 20_000.0);
        assert_eq!((r[1].floor.pacing.p99_us, r[1].floor.delivered), (700.0, 1.0));
        assert_eq!((r[1].cycles_music.delivered, r[1].cycles_music.skipped), (0.8, 900.0));
        assert_eq!((r[1].cycles_per_cpu_net, r[1].cycles_rate), (Some(16_000.0), Some(4000.7)));
        assert!(r[0].with_music() && !r[1].with_music());
        assert_eq!(
            verdict(&r[0]),
            "1000 streams: all parked with music met (1000 parked, 1000 heard, 100.0% of the packets delivered); \
             packets per engine CPU-s >= 80% of the floor met (95.0%); p99 pacing error < 2 ms met (0.600 ms); 0 \
             lost met (0, 2 of them dropped by the receiver's sockets; 7 packet times skipped by the engine)"
        );
        let v = verdict(&r[1]);
        assert!(v.contains("all parked with music NOT met (10000 parked, 9000 heard, 50.0% of the"), "{v}");
        assert!(v.contains("floor NOT met (70.0%)") && v.contains("2 ms NOT met (20.000 ms)"), "{v}");
        assert!(v.contains("0 lost NOT met (30,"), "{v}");
        assert_eq!(
            streams_verdict(&r),
            "10000 parked calls with music: NOT met (10000: 9000 heard, 50.0% of the packets delivered)"
        );
        assert_eq!(streams_verdict(&r[..1]), "10000 parked calls with music: not measured (no count of 10000 or more)");
        let mut all =
            MohRun::from_json(&report(10_000, 10_000, 5_000_000, 20_000.0, 30, 0.7)).unwrap_or_else(|e| panic!("{e}"));
        assert!(streams_verdict(&[all.clone()]).contains(": met (10000: 10000 heard, 100.0%"));
        all.music.delivered = 0.998;
        assert!(streams_verdict(&[all]).contains("NOT met"), "0.2% of the packets missing");
        assert!(MohRun::from_json("{}").is_err());
    }

    #[test]
    fn the_tables_and_the_summary_hold_every_run() {
        let none = NoMusic::from_json(r#"{"cycles_per_engine_cpu_s":17000.4,"rate_achieved":9000,"cycles_failed":0}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = table(&runs(), Some(&none));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 2 + 1 + 2 + 3, "{t}");
        assert!(lines[0].contains("pacing error (ms)") && lines[0].contains("floor p99"), "{t}");
        assert!(
            lines[2].trim_start().starts_with("1000    1000    100.0%     50000 |    285000    300000  95.0%"),
            "{t}"
        );
        assert!(
            lines[2].contains(" 0.080   0.600   9.000 ") && lines[2].trim_end().ends_with("100.0%     0.700"),
            "{t}"
        );
        assert!(lines[3].contains(" 20.000 ") && lines[3].contains("  70.0% ") && lines[3].contains("  50.0% "), "{t}");
        assert!(lines[5].contains("park cycles per") && lines[5].contains("the music while the cycles ran"), "{t}");
        assert_eq!(lines[7].trim_end(), "      0 |      9000       -       -  17000 |", "{t}");
        assert_eq!(
            lines[8].trim_end(),
            "   1000 |      4001    9000   16000  17000 |     80.0%    5.000        0      900",
            "{t}"
        );
        let args =
            MohArgs { counts: vec![1000, 10_000], seconds: 10.0, load: os(&["--tenants", "100"]), engine: vec![] };
        let text = summary_json(&args, &runs(), Some(&none));
        let j = Json::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(Json::Arr(items)) = j.get("runs") else { panic!("no runs in {text}") };
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].num(&["music", "pacing", "p99_us"]), Some(20_000.0));
        assert_eq!(items[1].num(&["cycles_music", "skipped"]), Some(900.0));
        assert_eq!(items[1].get("with_music"), Some(&Json::Bool(false)));
        assert_eq!(items[0].num(&["floor_ratio"]), Some(0.95));
        assert_eq!(j.num(&["no_music", "cycles_per_engine_cpu_s"]), Some(17_000.4));
        assert_eq!(j.num(&["goals", "pacing_p99_ms"]), Some(2.0));
        let text = summary_json(&args, &[], None);
        assert_eq!(Json::parse(&text).map(|j| j.get("no_music").cloned()), Ok(Some(Json::Null)));
    }
}
