//! `cargo xtask bench --parked-sweep N1,N2,...`: how the cost of a park cycle grows with the
//! number of calls already parked. Per N, a freshly started release sipark, then one sipark-load
//! run that parks N background calls (`--background-parked N`, kept parked for the whole run),
//! then runs open-loop cycles at a fixed rate for some seconds. Then a table,
//! target/bench/parked/summary.json and two SVG charts in docs/img/ (see plot.rs).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::plot::{self, Chart, Guide, Point, Scale, Series};
use crate::sweep::{Json, RunResult, jnum, jopt, json_args, run_load, write_file};
use crate::{cargo_build, create_dir, distinct_items, has_flag, root, split_bench_args, take_options, target_dir};

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench --parked-sweep N1,N2,... [--parked-rate R] [--sweep-seconds S] [--]
                         [LOAD-ARGS...] [--engine ENGINE-ARGS...]
  --parked-sweep N1,...  background parked calls, one fresh sipark per count (0 allowed)
  --parked-rate R        open-loop park cycles per second during each run (default 2000)
  --sweep-seconds S      seconds of cycles per run (default 8), after the background parks
  LOAD-ARGS              other sipark-load flags (not --rate, --concurrency, --duration,
                         --cycles, --json, --background-parked)
  ENGINE-ARGS            sipark's (default --workers 2)
Each count must stay below sipark's 500,000 parked calls per shard: at most 450,000 per worker.
A count above 0 adds two waits of 64*T1 + 2 s (34 s; sipark-load --background-settle), before
and after the parks, so that no transaction is left in the engine's RSS or CPU figures.
Writes target/bench/parked/<N>.json, summary.json, docs/img/bench-parked.svg and
docs/img/bench-parked-rss.svg.";

/// Most counts one sweep runs.
const MAX_COUNTS: usize = 16;
/// sipark's default `max_parked` per shard.
const MAX_PARKED_PER_SHARD: u64 = 500_000;
/// What a count may reach per engine worker (below the per-shard cap, with room for the
/// cycles and an uneven spread of tenants over the shards).
const PER_WORKER: u64 = 450_000;
/// Workers sipark runs with when ENGINE-ARGS do not say (start_engine's default).
const DEFAULT_WORKERS: u64 = 2;
/// Default cycle rate during a run.
const DEFAULT_RATE: f64 = 2000.0;
/// The issue's latency goal, µs (p99 park 200 → NOTIFY).
const LATENCY_GOAL_US: f64 = 1000.0;
/// The issue's memory goal, bytes per parked call.
const MEMORY_GOAL_BYTES: f64 = 512.0;

/// The arguments of a parked-calls sweep.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParkedArgs {
    pub counts: Vec<u32>,
    pub rate: f64,
    pub seconds: f64,
    pub load: Vec<OsString>,
    pub engine: Vec<OsString>,
}

/// Parses `cargo xtask bench` arguments for a parked-calls sweep: `None` without
/// `--parked-sweep` (then the arguments are a rate sweep's or a plain bench's).
/// `--parked-sweep`, `--parked-rate` and `--sweep-seconds` (`--x V` or `--x=V`) are ours,
/// anywhere before `--engine`.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<ParkedArgs>, String> {
    let (mixed, engine) = split_bench_args(args);
    let (options, load) = take_options(mixed, &["--parked-sweep", "--parked-rate", "--sweep-seconds", "--sweep"])?;
    let (mut counts, mut rate, mut seconds, mut rate_sweep) = (None, None, None, false);
    for (name, value) in options {
        match name.as_str() {
            "--parked-sweep" => {
                if counts.is_some() {
                    return Err("--parked-sweep given twice".into());
                }
                counts = Some(value);
            }
            "--parked-rate" => {
                if rate.is_some() {
                    return Err("--parked-rate given twice".into());
                }
                rate = match value.parse::<f64>() {
                    Ok(r) if r.is_finite() && (1.0..=1e6).contains(&r) => Some(r),
                    _ => return Err(format!("--parked-rate: expected cycles/s in 1..=1000000, got `{value}`")),
                };
            }
            "--sweep-seconds" => {
                if seconds.is_some() {
                    return Err("--sweep-seconds given twice".into());
                }
                seconds = Some(value);
            }
            _ => rate_sweep = true,
        }
    }
    let Some(counts) = counts else {
        return match rate {
            Some(_) => Err("--parked-rate needs --parked-sweep".into()),
            None => Ok(None),
        };
    };
    if rate_sweep {
        return Err("--sweep and --parked-sweep cannot be combined (run them one after the other)".into());
    }
    let seconds = match seconds {
        None => 8.0,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if (1.0..=300.0).contains(&s) => s,
            _ => return Err(format!("--sweep-seconds: expected seconds in 1..=300, got `{v}`")),
        },
    };
    for flag in ["--rate", "--concurrency", "--duration", "--cycles", "--json", "--background-parked"] {
        if has_flag(&load, flag) {
            return Err(format!("{flag} cannot be combined with --parked-sweep (the sweep sets it)"));
        }
    }
    let workers = engine_workers(&engine)?;
    let counts = parse_counts(&counts, workers)?;
    Ok(Some(ParkedArgs { counts, rate: rate.unwrap_or(DEFAULT_RATE), seconds, load, engine }))
}

/// The engine's worker count from its arguments (`--workers N` or `--workers=N`), else the
/// default 2.
fn engine_workers(engine: &[OsString]) -> Result<u64, String> {
    let (found, _) = take_options(engine.to_vec(), &["--workers"])?;
    match found.last() {
        None => Ok(DEFAULT_WORKERS),
        Some((_, v)) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("--engine --workers: expected a positive number, got `{v}`")),
        },
    }
}

/// `N1,N2,...`: distinct counts of background parked calls, each at most 450,000 per engine
/// worker (sipark parks at most 500,000 calls per shard), at most [`MAX_COUNTS`] of them.
fn parse_counts(list: &str, workers: u64) -> Result<Vec<u32>, String> {
    let cap = (PER_WORKER * workers).min(u64::from(u32::MAX));
    distinct_items(
        list,
        MAX_COUNTS,
        |item| match item.parse::<u64>() {
            Ok(n) if n <= cap => Ok(n as u32),
            Ok(_) => Err(format!(
                "--parked-sweep: {item} parked calls is too many for {workers} worker(s): sipark parks at most \
                 {MAX_PARKED_PER_SHARD} per shard, so stay at or below {cap} (450,000 per worker)"
            )),
            Err(_) => Err(format!("--parked-sweep: `{item}` is not a count of parked calls")),
        },
        |item| format!("--parked-sweep: count {item} given twice"),
        || format!("--parked-sweep: at most {MAX_COUNTS} counts"),
    )
}

/// What one run measured (sipark-load's JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParkedResult {
    /// Background parked calls asked for.
    pub parked: u32,
    /// The cycle figures.
    pub run: RunResult,
    pub background_ok: f64,
    pub background_failed: f64,
    pub background_lost: f64,
    pub background_park_s: f64,
    pub background_settle_s: f64,
    pub background_hangup_failed: f64,
    pub engine_cpu_us_per_cycle: Option<f64>,
    pub rss_before: Option<f64>,
    pub rss_after: Option<f64>,
    pub rss_end: Option<f64>,
    pub rss_per_call: Option<f64>,
}

impl ParkedResult {
    /// Reads sipark-load's JSON report of a run with `parked` background calls.
    pub(crate) fn from_json(parked: u32, text: &str) -> Result<ParkedResult, String> {
        let run = RunResult::from_json(&parked.to_string(), text)?;
        let j = Json::parse(text)?;
        let need = |k: &str| j.num(&[k]).ok_or_else(|| format!("no number `{k}` in the report"));
        let per_cycle = j.num(&["engine_cpu_us_per_cycle"]).or_else(|| match run.engine_cpu_s {
            Some(s) if run.cycles_ok > 0.0 => Some(s * 1e6 / run.cycles_ok),
            _ => None,
        });
        Ok(ParkedResult {
            parked,
            background_ok: need("background_ok")?,
            background_failed: need("background_failed")?,
            background_lost: need("background_lost")?,
            background_park_s: need("background_park_s")?,
            background_settle_s: need("background_settle_s")?,
            background_hangup_failed: need("background_hangup_failed")?,
            engine_cpu_us_per_cycle: per_cycle,
            rss_before: j.num(&["engine_rss_before_bytes"]),
            rss_after: j.num(&["engine_rss_after_bytes"]),
            rss_end: j.num(&["engine_rss_end_bytes"]),
            rss_per_call: j.num(&["engine_rss_bytes_per_background_call"]),
            run,
        })
    }

    /// Whether every cycle completed and every background call was parked and stayed parked.
    pub(crate) fn clean(&self) -> bool {
        self.run.clean()
            && self.background_failed == 0.0
            && self.background_lost == 0.0
            && self.background_ok == f64::from(self.parked)
    }
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn mib(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "n/a".into(), |b| format!("{:.1}", b / (1024.0 * 1024.0)))
}

fn opt0(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "n/a".into(), |v| format!("{v:.0}"))
}

/// The results as a table for people.
pub(crate) fn table(results: &[ParkedResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>9} {:>8} {:>6} {:>7} {:>7} | {:>17} | {:>9} | {:>10} | {:>17} | {:>9}",
        "parked",
        "cycles/s",
        "failed",
        "parks",
        "parking",
        "park 200->NOTIFY",
        "retrieve",
        "engine µs",
        "engine RSS MiB",
        "RSS bytes"
    );
    let _ = writeln!(
        o,
        "{:>9} {:>8} {:>6} {:>7} {:>7} | {:>8} {:>8} | {:>9} | {:>10} | {:>8} {:>8} | {:>9}",
        "calls", "", "", "failed", "s", "p50 ms", "p99 ms", "p99 ms", "per cycle", "parked", "end", "per call"
    );
    for r in results {
        let _ = writeln!(
            o,
            "{:>9} {:>8.1} {:>6} {:>7} {:>7.1} | {:>8.3} {:>8.3} | {:>9.3} | {:>10} | {:>8} {:>8} | {:>9}",
            plot::format_tick(f64::from(r.parked)),
            r.run.rate_achieved,
            r.run.cycles_failed + r.run.cycles_not_started,
            r.background_failed + r.background_lost,
            r.background_park_s,
            ms(r.run.park_notify.p50_us),
            ms(r.run.park_notify.p99_us),
            ms(r.run.retrieve_200.p99_us),
            r.engine_cpu_us_per_cycle.filter(|v| v.is_finite()).map_or_else(|| "n/a".into(), |v| format!("{v:.1}")),
            mib(r.rss_after),
            mib(r.rss_end),
            opt0(r.rss_per_call.filter(|_| r.parked > 0)),
        );
    }
    o
}

/// target/bench/parked/summary.json: the settings, the goals, and one object per run.
pub(crate) fn summary_json(args: &ParkedArgs, results: &[ParkedResult]) -> String {
    let runs: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{{\"background_parked\":{},\"background_ok\":{},\"background_failed\":{},\"background_lost\":{},\
                 \"background_park_s\":{},\"background_settle_s\":{},\"background_hangup_failed\":{},\
                 \"rate_target\":{},\"rate_achieved\":{},\"cycles_ok\":{},\"cycles_failed\":{},\"cycles_not_started\":{},\
                 \"park_200\":{},\"park_notify\":{},\"retrieve_200\":{},\"engine_cpu_s\":{},\
                 \"engine_cpu_us_per_cycle\":{},\"cycles_per_engine_cpu_s\":{},\"engine_rss_before_bytes\":{},\
                 \"engine_rss_after_bytes\":{},\"engine_rss_end_bytes\":{},\"engine_rss_bytes_per_parked_call\":{}}}",
                r.parked,
                jnum(r.background_ok),
                jnum(r.background_failed),
                jnum(r.background_lost),
                jnum(r.background_park_s),
                jnum(r.background_settle_s),
                jnum(r.background_hangup_failed),
                jopt(r.run.rate_target),
                jnum(r.run.rate_achieved),
                jnum(r.run.cycles_ok),
                jnum(r.run.cycles_failed),
                jnum(r.run.cycles_not_started),
                r.run.park_200.json(),
                r.run.park_notify.json(),
                r.run.retrieve_200.json(),
                jopt(r.run.engine_cpu_s),
                jopt(r.engine_cpu_us_per_cycle),
                jopt(r.run.cycles_per_engine_cpu_s),
                jopt(r.rss_before),
                jopt(r.rss_after),
                jopt(r.rss_end),
                jopt(r.rss_per_call.filter(|_| r.parked > 0)),
            )
        })
        .collect();
    format!(
        "{{\"rate\":{},\"seconds_per_run\":{},\"counts\":[{}],\"load_args\":[{}],\"engine_args\":[{}],\
         \"goals\":{{\"p99_park_notify_us\":{},\"bytes_per_parked_call\":{}}},\"runs\":[\n{}\n]}}\n",
        jnum(args.rate),
        jnum(args.seconds),
        args.counts.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        json_args(&args.load),
        json_args(&args.engine),
        jnum(LATENCY_GOAL_US),
        jnum(MEMORY_GOAL_BYTES),
        runs.join(",\n")
    )
}

/// The runs by parked-call count.
fn by_count(results: &[ParkedResult]) -> Vec<&ParkedResult> {
    let mut v: Vec<&ParkedResult> = results.iter().collect();
    v.sort_by_key(|r| r.parked);
    v
}

/// The subtitle: the load, and which runs had failures (drawn hollow, not joined).
fn subtitle(args: &ParkedArgs, results: &[ParkedResult]) -> String {
    let failed: Vec<String> =
        by_count(results).into_iter().filter(|r| !r.clean()).map(|r| plot::format_tick(f64::from(r.parked))).collect();
    let load = format!("{} cycles/s for {} s per run", plot::format_tick(args.rate), args.seconds);
    if failed.is_empty() {
        format!("{load}; every cycle and background park completed")
    } else {
        format!("{load}; hollow: runs with failures ({} parked)", failed.join(", "))
    }
}

/// The memory chart's subtitle: how the figure is made, and which runs had failures.
fn rss_subtitle(results: &[ParkedResult]) -> String {
    let failed: Vec<String> =
        by_count(results).into_iter().filter(|r| !r.clean()).map(|r| plot::format_tick(f64::from(r.parked))).collect();
    let how = "engine VmRSS (after the parks − before) / parked calls";
    if failed.is_empty() {
        how.to_string()
    } else {
        format!("{how}; hollow: runs with failures ({})", failed.join(", "))
    }
}

/// A line through the clean runs and, when there are any, hollow markers for the others.
fn series_pair(
    name: &str,
    color: &'static str,
    results: &[ParkedResult],
    y: impl Fn(&ParkedResult) -> Option<f64>,
) -> Vec<Series> {
    let point =
        |r: &ParkedResult| Some(Point { x: f64::from(r.parked), y: y(r).filter(|v| v.is_finite())?, note: None });
    let order = by_count(results);
    let clean: Vec<Point> = order.iter().filter(|r| r.clean()).filter_map(|r| point(r)).collect();
    let failed: Vec<Point> = order.iter().filter(|r| !r.clean()).filter_map(|r| point(r)).collect();
    let mut v = vec![Series { name: name.into(), points: clean, color, line: true, hollow: false }];
    if !failed.is_empty() {
        v.push(Series {
            name: format!("{name},\nruns with failures"),
            points: failed,
            color,
            line: false,
            hollow: true,
        });
    }
    v
}

/// The cost chart: engine CPU µs per cycle and p99 park 200 → NOTIFY (µs, log scale) against
/// the number of parked calls, with the 1 ms latency goal.
pub(crate) fn cost_chart(args: &ParkedArgs, results: &[ParkedResult]) -> Chart {
    let mut series = series_pair("engine CPU µs per cycle", plot::COLORS[2], results, |r| r.engine_cpu_us_per_cycle);
    series.extend(series_pair("park 200 → NOTIFY p99 (µs)", plot::COLORS[0], results, |r| {
        Some(r.run.park_notify.p99_us)
    }));
    Chart {
        title: "sipark park-cycle cost against parked calls".into(),
        subtitle: subtitle(args, results),
        x_label: "calls parked in the background (linear)".into(),
        y_label: "µs (log scale)".into(),
        y_scale: Scale::Log,
        series,
        guides: vec![Guide { value: LATENCY_GOAL_US, label: "goal: p99 ≤ 1 ms".into() }],
    }
}

/// The memory chart: engine RSS bytes per parked call, with the 512-byte goal (runs without
/// background calls have no such figure).
pub(crate) fn rss_chart(results: &[ParkedResult]) -> Chart {
    let with_calls: Vec<ParkedResult> = results.iter().filter(|r| r.parked > 0).cloned().collect();
    Chart {
        title: "sipark engine memory per parked call".into(),
        subtitle: rss_subtitle(&with_calls),
        x_label: "calls parked in the background (linear)".into(),
        y_label: "engine RSS bytes per parked call".into(),
        y_scale: Scale::Linear,
        series: series_pair("RSS bytes per parked call", plot::COLORS[3], &with_calls, |r| r.rss_per_call),
        guides: vec![Guide { value: MEMORY_GOAL_BYTES, label: "goal: 512 B".into() }],
    }
}

/// Runs the parked-calls sweep; the exit code is failure when a run left no figures or a file
/// could not be written.
pub(crate) fn parked_sweep(args: &ParkedArgs) -> ExitCode {
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let dir = target_dir().join("bench").join("parked");
    let img = root().join("docs").join("img");
    for d in [&dir, &img] {
        if let Err(code) = create_dir(d) {
            return code;
        }
    }
    let mut results = Vec::new();
    let mut ok = true;
    for (i, &n) in args.counts.iter().enumerate() {
        let extra: Vec<String> = vec![
            "--rate".into(),
            format!("{}", args.rate),
            "--duration".into(),
            format!("{}", args.seconds),
            "--background-parked".into(),
            n.to_string(),
        ];
        eprintln!("xtask: parked sweep run {}/{}: sipark-load {}", i + 1, args.counts.len(), extra.join(" "));
        let name = n.to_string();
        let result = run_load(&args.load, &args.engine, &dir, &name, &extra).and_then(|(text, status)| {
            let r = ParkedResult::from_json(n, &text)
                .map_err(|e| format!("{}: {e}", dir.join(format!("{name}.json")).display()))?;
            if !status.success() {
                eprintln!(
                    "xtask: sipark-load {status} for {n} parked ({} cycles and {} background parks failed); see {}",
                    r.run.cycles_failed,
                    r.background_failed + r.background_lost,
                    dir.join(format!("{name}.txt")).display()
                );
            }
            Ok(r)
        });
        match result {
            Ok(r) => {
                eprintln!(
                    "xtask:   {} parked in {:.1} s; {:.1} cycles/s, {} failed, p99 park->NOTIFY {:.3} ms, {} µs engine CPU per cycle",
                    r.background_ok,
                    r.background_park_s,
                    r.run.rate_achieved,
                    r.run.cycles_failed,
                    ms(r.run.park_notify.p99_us),
                    r.engine_cpu_us_per_cycle.map_or_else(|| "n/a".into(), |v| format!("{v:.1}"))
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("xtask: parked sweep run {n}: {e}");
                ok = false;
            }
        }
    }
    println!(
        "\nparked sweep: {} cycles/s for {} s per run after the background parks, files in {}\n",
        args.rate,
        args.seconds,
        dir.display()
    );
    print!("{}", table(&results));
    let summary = dir.join("summary.json");
    let cost = img.join("bench-parked.svg");
    let rss = img.join("bench-parked-rss.svg");
    ok &= write_file(&summary, &summary_json(args, &results));
    ok &= write_file(&cost, &plot::render(&cost_chart(args, &results)));
    ok &= write_file(&rss, &plot::render(&rss_chart(&results)));
    println!("\nsummary: {}\ncharts:  {}\n         {}", summary.display(), cost.display(), rss.display());
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;
    use crate::plot::tests::check_well_formed;

    #[test]
    fn arguments_without_parked_sweep_are_someone_elses() {
        assert_eq!(parse_args(&os(&["--sweep", "1000", "--sweep-seconds", "3"])), Ok(None));
        assert_eq!(parse_args(&os(&["--", "--rate", "1000"])), Ok(None));
        assert_eq!(parse_args(&os(&[])), Ok(None));
        assert_eq!(parse_args(&os(&["--engine", "--parked-sweep", "1"])), Ok(None), "the engine's");
    }

    #[test]
    fn parked_sweep_arguments_are_parsed() {
        let a = parse_args(&os(&[
            "--parked-sweep",
            "0, 10000,100000",
            "--tenants",
            "100",
            "--background-window=256",
            "--engine",
            "--workers",
            "1",
        ]));
        assert_eq!(
            a,
            Ok(Some(ParkedArgs {
                counts: vec![0, 10_000, 100_000],
                rate: 2000.0,
                seconds: 8.0,
                load: os(&["--tenants", "100", "--background-window=256"]),
                engine: os(&["--workers", "1"]),
            }))
        );
        let a = parse_args(&os(&["--", "--sweep-seconds=2.5", "--parked-rate", "500", "--parked-sweep=300000"]));
        assert_eq!(
            a,
            Ok(Some(ParkedArgs { counts: vec![300_000], rate: 500.0, seconds: 2.5, load: vec![], engine: vec![] }))
        );
        // 450,000 per worker: 900,000 with the default 2, 1,800,000 with 4.
        assert!(parse_args(&os(&["--parked-sweep", "900000"])).is_ok_and(|a| a.is_some()));
        assert!(parse_args(&os(&["--parked-sweep", "1800000", "--engine", "--workers=4"])).is_ok_and(|a| a.is_some()));
    }

    #[test]
    fn bad_parked_sweep_arguments_are_refused() {
        for (args, why) in [
            (&["--parked-sweep"][..], "needs a value"),
            (&["--parked-sweep", "10,x"], "not a count"),
            (&["--parked-sweep", "-1"], "not a count"),
            (&["--parked-sweep", "10,"], "not a count"),
            (&["--parked-sweep", "1.5"], "not a count"),
            (&["--parked-sweep", "5,5"], "twice"),
            (&["--parked-sweep", "5", "--parked-sweep", "6"], "twice"),
            (&["--parked-sweep", "900001"], "at or below 900000"),
            (&["--parked-sweep", "450001", "--engine", "--workers", "1"], "at or below 450000"),
            (&["--parked-sweep", "5", "--engine", "--workers", "x"], "--workers"),
            (&["--parked-sweep", "5", "--parked-rate", "0"], "1..=1000000"),
            (&["--parked-sweep", "5", "--parked-rate", "nan"], "1..=1000000"),
            (&["--parked-sweep", "5", "--parked-rate", "5", "--parked-rate", "6"], "twice"),
            (&["--parked-rate", "500"], "needs --parked-sweep"),
            (&["--parked-sweep", "5", "--sweep", "1000"], "cannot be combined"),
            (&["--parked-sweep", "5", "--sweep-seconds", "0.5"], "1..=300"),
            (&["--parked-sweep", "5", "--sweep-seconds", "2", "--sweep-seconds", "3"], "twice"),
            (&["--parked-sweep", "5", "--rate", "9"], "--rate cannot"),
            (&["--parked-sweep", "5", "--json=x"], "--json cannot"),
            (&["--parked-sweep", "5", "--duration", "3"], "--duration cannot"),
            (&["--parked-sweep", "5", "--cycles", "3"], "--cycles cannot"),
            (&["--parked-sweep", "5", "--concurrency", "3"], "--concurrency cannot"),
            (&["--parked-sweep", "5", "--background-parked", "3"], "--background-parked cannot"),
        ] {
            match parse_args(&os(args)) {
                Err(e) => assert!(e.contains(why), "{args:?}: `{e}` lacks `{why}`"),
                Ok(v) => panic!("{args:?} accepted: {v:?}"),
            }
        }
        let many: Vec<String> = (1..=17).map(|i| i.to_string()).collect();
        match parse_args(&os(&["--parked-sweep", &many.join(",")])) {
            Err(e) => assert!(e.contains("at most 16"), "{e}"),
            Ok(v) => panic!("17 counts accepted: {v:?}"),
        }
    }

    /// A report as sipark-load writes it (trimmed, plus the background figures).
    fn report(n: u32, ok: u32, failed: u64, notify_p99: u64, engine_cpu: &str, per_call: &str) -> String {
        format!(
            r#"{{"target":"127.0.0.1:5060","mode":"open","rate_target":2000,"concurrency":null,
            "cycles_ok":16000,"cycles_failed":{failed},"cycles_not_started":0,"failures":{{}},"refusals":{{}},
            "window_s":8.0,"rate_achieved":1999.5,
            "park_200":{{"count":16000,"p50_us":100,"p99_us":300,"p999_us":900,"max_us":2000,"mean_us":120.5}},
            "park_notify":{{"count":32000,"p50_us":150,"p99_us":{notify_p99},"p999_us":1500,"max_us":3000,"mean_us":160}},
            "retrieve_200":{{"count":16000,"p50_us":110,"p99_us":700,"p999_us":1200,"max_us":2500,"mean_us":130}},
            "engine_cpu_s":{engine_cpu},"generator_cpu_s":1.2,"cycles_per_engine_cpu_s":null,
            "engine_cpu_us_per_cycle":null,"cycles_per_generator_cpu_s":6000,
            "background_parked":{n},"background_ok":{ok},"background_failed":{},"background_refused":0,
            "background_no_answer":0,"background_lost":0,"background_refusals":{{}},"background_parked_at_end":{ok},
            "background_park_s":12.5,"background_parks_per_s":8000,"background_park_engine_cpu_s":3.1,
            "background_settle_s":34,"background_hangup_ok":{ok},"background_hangup_failed":0,"background_hangup_s":9.5,
            "engine_rss_before_bytes":104857600,"engine_rss_parked_bytes":null,"engine_rss_after_bytes":209715200,
            "engine_rss_end_bytes":220200960,"engine_rss_cleanup_bytes":null,
            "engine_rss_bytes_per_background_call":{per_call}}}"#,
            n - ok
        )
    }

    fn results() -> Vec<ParkedResult> {
        [
            (100_000, report(100_000, 100_000, 0, 900, "2.4", "1048.576")),
            (0, report(0, 0, 0, 400, "1.6", "null")),
            (300_000, report(300_000, 299_990, 0, 5000, "3.2", "349.5")),
        ]
        .iter()
        .map(|(n, t)| ParkedResult::from_json(*n, t).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect()
    }

    fn args() -> ParkedArgs {
        ParkedArgs {
            counts: vec![100_000, 0, 300_000],
            rate: 2000.0,
            seconds: 8.0,
            load: os(&["--tenants", "1\"0"]),
            engine: vec![],
        }
    }

    #[test]
    fn reports_are_read() {
        let r = results();
        assert_eq!(r[0].parked, 100_000);
        assert_eq!((r[0].background_ok, r[0].background_failed), (100_000.0, 0.0));
        assert_eq!(r[0].engine_cpu_us_per_cycle, Some(150.0), "2.4 s / 16,000 cycles");
        assert_eq!(r[0].rss_per_call, Some(1048.576));
        assert_eq!(r[1].rss_per_call, None);
        assert_eq!(r[0].run.park_notify.p99_us, 900.0);
        assert!(r[0].clean() && r[1].clean(), "{r:?}");
        assert!(!r[2].clean(), "10 background parks failed");
        let err = ParkedResult::from_json(5, &report(5, 5, 0, 1, "1", "1").replace("\"background_ok\":5,", ""))
            .err()
            .unwrap_or_default();
        assert!(err.contains("background_ok"), "{err}");
    }

    #[test]
    fn table_has_a_row_per_run_with_the_asked_columns() {
        let t = table(&results());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 3, "{t}");
        for h in ["parked", "cycles/s", "park 200->NOTIFY", "retrieve", "engine µs", "engine RSS MiB", "RSS bytes"] {
            assert!(lines[0].contains(h), "header lacks {h}: {t}");
        }
        // 100,000 parked: 2.4 s engine CPU over 16,000 cycles = 150 µs; 200 MiB after the parks;
        // 1,049 bytes per call.
        let row = lines[2];
        assert!(row.trim_start().starts_with("100,000 "), "{t}");
        assert!(row.contains(" 150.0 ") && row.contains(" 200.0 ") && row.trim_end().ends_with("1049"), "{t}");
        assert!(row.contains(" 0.900 ") && row.contains(" 0.700 "), "{t}");
        assert!(lines[3].trim_end().ends_with("n/a"), "no per-call figure without parked calls: {t}");
        assert!(lines[4].contains(" 10 "), "the 10 failed background parks are shown: {t}");
    }

    #[test]
    fn summary_is_json_with_every_run() {
        let text = summary_json(&args(), &results());
        let j = Json::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(Json::Arr(runs)) = j.get("runs") else { panic!("no runs in {text}") };
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].num(&["background_parked"]), Some(100_000.0));
        assert_eq!(runs[0].num(&["engine_cpu_us_per_cycle"]), Some(150.0));
        assert_eq!(runs[0].num(&["park_notify", "p99_us"]), Some(900.0));
        assert_eq!(runs[0].num(&["engine_rss_after_bytes"]), Some(209_715_200.0));
        assert_eq!(runs[1].get("engine_rss_bytes_per_parked_call"), Some(&Json::Null));
        assert_eq!(runs[2].num(&["background_failed"]), Some(10.0));
        assert_eq!(j.num(&["rate"]), Some(2000.0));
        assert_eq!(j.num(&["goals", "bytes_per_parked_call"]), Some(512.0));
        assert_eq!(j.get("counts"), Some(&Json::Arr(vec![Json::Num(100_000.0), Json::Num(0.0), Json::Num(300_000.0)])));
        assert_eq!(j.get("load_args"), Some(&Json::Arr(vec![Json::Str("--tenants".into()), Json::Str("1\"0".into())])));
    }

    #[test]
    fn charts_hold_every_run_with_figures() {
        let r = results();
        let cost = cost_chart(&args(), &r);
        let shape: Vec<(usize, bool, bool)> = cost.series.iter().map(|s| (s.points.len(), s.line, s.hollow)).collect();
        // Clean runs (0 and 100,000, in that order) joined, the failed 300,000 hollow, per figure.
        assert_eq!(shape, [(2, true, false), (1, false, true), (2, true, false), (1, false, true)]);
        let xs: Vec<f64> = cost.series[0].points.iter().map(|p| p.x).collect();
        assert_eq!(xs, [0.0, 100_000.0]);
        assert_eq!(cost.series[0].points[1].y, 150.0, "µs per cycle");
        assert_eq!(cost.series[3].points[0].y, 5000.0, "p99 in µs");
        assert_eq!(cost.subtitle, "2,000 cycles/s for 8 s per run; hollow: runs with failures (300,000 parked)");
        let svg = plot::render(&cost);
        let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 6 + 4, "{svg}");
        assert!(svg.contains(">goal: p99 ≤ 1 ms</text>"), "{svg}");
        let rss = rss_chart(&r);
        assert_eq!(
            rss.subtitle,
            "engine VmRSS (after the parks − before) / parked calls; hollow: runs with failures (300,000)"
        );
        let shape: Vec<(usize, bool, bool)> = rss.series.iter().map(|s| (s.points.len(), s.line, s.hollow)).collect();
        assert_eq!(shape, [(1, true, false), (1, false, true)], "no point for the run without parked calls");
        assert_eq!(rss.series[1].points[0].y, 349.5);
        let svg = plot::render(&rss);
        let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 2 + 2, "{svg}");
        assert!(svg.contains(">goal: 512 B</text>"), "{svg}");
    }
}
