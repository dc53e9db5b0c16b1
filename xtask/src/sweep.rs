//! `cargo xtask bench --sweep R1,R2,...`: one open-loop sipark-load run per rate and one
//! closed-loop run (the maximum), each against a freshly started release sipark; then a table,
//! target/bench/sweep/summary.json and two SVG charts in docs/img/ (see plot.rs).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use crate::plot::{self, Chart, Guide, Point, Scale, Series};
use crate::{
    cargo_build, create_dir, distinct_items, mode_options, root, split_bench_args, start_engine, stop_engine,
    target_dir,
};

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench --sweep R1,R2,... [--sweep-seconds S] [--] [LOAD-ARGS...] [--engine ENGINE-ARGS...]
  --sweep R1,R2,...   open-loop rates (cycles/s), one fresh sipark per rate, plus one closed-loop
                      run (--concurrency 128) as the maximum
  --sweep-seconds S   seconds of load per run (default 8)
  LOAD-ARGS           other sipark-load flags (not --rate, --concurrency, --duration, --cycles, --json)
  ENGINE-ARGS         sipark's (default --workers 2)
Writes target/bench/sweep/<R>.json, max.json, summary.json, and docs/img/bench-latency.svg and
docs/img/bench-efficiency.svg.";

/// Cycles in flight in the closed-loop (maximum) run.
pub(crate) const MAX_CONCURRENCY: u32 = 128;
/// Most rates one sweep runs.
const MAX_RATES: usize = 32;
/// The issue's latency goal, ms (p99).
const LATENCY_GOAL_MS: f64 = 1.0;
/// The issue's efficiency goal: park cycles per engine CPU-second.
const EFFICIENCY_GOAL: f64 = 15_000.0;

/// The arguments of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SweepArgs {
    pub rates: Vec<f64>,
    pub seconds: f64,
    pub load: Vec<OsString>,
    pub engine: Vec<OsString>,
}

/// Parses `cargo xtask bench` arguments for a sweep: `None` without `--sweep` (a plain bench).
/// `--sweep` and `--sweep-seconds` (`--x V` or `--x=V`) are ours, anywhere before `--engine`.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<SweepArgs>, String> {
    let (mixed, engine) = split_bench_args(args);
    let (rates, seconds, load) = mode_options(mixed, "--sweep", "--sweep-seconds", "the sweep", parse_rates)?;
    let Some(rates) = rates else { return Ok(None) };
    Ok(Some(SweepArgs { rates, seconds: seconds.unwrap_or(8.0), load, engine }))
}

/// `R1,R2,...`: distinct rates in 0.001..=1000000 cycles/s (sipark-load's range), at most
/// [`MAX_RATES`].
fn parse_rates(list: &str) -> Result<Vec<f64>, String> {
    distinct_items(
        list,
        MAX_RATES,
        |item| match item.parse::<f64>() {
            Ok(r) if r.is_finite() && (0.001..=1e6).contains(&r) => Ok(r),
            _ => Err(format!("--sweep: `{item}` is not a rate in 0.001..=1000000 cycles/s")),
        },
        |item| format!("--sweep: rate {item} given twice"),
        || format!("--sweep: at most {MAX_RATES} rates"),
    )
}

/// A minimal JSON value, enough to read sipark-load's report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Deepest nesting [`Json::parse`] accepts.
const MAX_DEPTH: usize = 32;

impl Json {
    /// Parses one JSON document (surrounding whitespace allowed).
    pub(crate) fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser { s: text.as_bytes(), i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number at `path` (members of nested objects).
    pub(crate) fn num(&self, path: &[&str]) -> Option<f64> {
        let mut v = self;
        for k in path {
            v = v.get(k)?;
        }
        match v {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i)
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("bad literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(self.err("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a member name"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(self.err("expected :"));
                    }
                    self.i += 1;
                    members.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(self.err("expected , or }")),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
                text.parse::<f64>().map(Json::Num).map_err(|_| self.err("bad number"))
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| self.err("string not UTF-8")),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return Err(self.err("unterminated escape")) };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("short \\u escape"))?;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            self.i += 4;
                            // Surrogate halves (never written by sipark-load) become U+FFFD.
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

/// Percentiles of one latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Lat {
    pub count: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Lat {
    /// `{"count":…,"p50_us":…,"p99_us":…,"p999_us":…}`.
    pub(crate) fn json(&self) -> String {
        format!(
            "{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{}}}",
            jnum(self.count),
            jnum(self.p50_us),
            jnum(self.p99_us),
            jnum(self.p999_us)
        )
    }

    fn of(j: &Json, key: &str) -> Lat {
        let n = |k: &str| j.num(&[key, k]).unwrap_or(f64::NAN);
        Lat { count: n("count"), p50_us: n("p50_us"), p99_us: n("p99_us"), p999_us: n("p999_us") }
    }
}

/// What one run of the sweep measured (from sipark-load's JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunResult {
    /// `1000` for an open-loop rate, `max` for the closed-loop run.
    pub name: String,
    /// Offered rate (open loop).
    pub rate_target: Option<f64>,
    /// Cycles in flight (closed loop).
    pub concurrency: Option<f64>,
    pub rate_achieved: f64,
    pub cycles_ok: f64,
    pub cycles_failed: f64,
    pub cycles_not_started: f64,
    pub park_200: Lat,
    pub park_notify: Lat,
    pub retrieve_200: Lat,
    pub engine_cpu_s: Option<f64>,
    pub cycles_per_engine_cpu_s: Option<f64>,
}

impl RunResult {
    /// Reads the figures of sipark-load's JSON report.
    pub(crate) fn from_json(name: &str, text: &str) -> Result<RunResult, String> {
        let j = Json::parse(text)?;
        let need = |k: &str| j.num(&[k]).ok_or_else(|| format!("no number `{k}` in the report"));
        Ok(RunResult {
            name: name.to_string(),
            rate_target: j.num(&["rate_target"]),
            concurrency: j.num(&["concurrency"]),
            rate_achieved: need("rate_achieved")?,
            cycles_ok: need("cycles_ok")?,
            cycles_failed: need("cycles_failed")?,
            cycles_not_started: j.num(&["cycles_not_started"]).unwrap_or(0.0),
            park_200: Lat::of(&j, "park_200"),
            park_notify: Lat::of(&j, "park_notify"),
            retrieve_200: Lat::of(&j, "retrieve_200"),
            engine_cpu_s: j.num(&["engine_cpu_s"]),
            cycles_per_engine_cpu_s: j.num(&["cycles_per_engine_cpu_s"]),
        })
    }

    fn offered(&self) -> String {
        match (self.rate_target, self.concurrency) {
            (Some(r), _) => plot::format_tick(r),
            (_, Some(c)) => format!("max (c={c})"),
            _ => self.name.clone(),
        }
    }
}

/// The name of a rate's files: `1000` for 1000 cycles/s, `1500.5` for 1500.5.
pub(crate) fn rate_name(rate: f64) -> String {
    format!("{rate}")
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// The results as a table for people.
pub(crate) fn table(results: &[RunResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<14} {:>10} {:>8} {:>8} | {:>26} | {:>26} | {:>10}",
        "offered", "achieved", "failed", "not", "park 200 -> NOTIFY (ms)", "retrieve INVITE -> 200 (ms)", "cycles per"
    );
    let _ = writeln!(
        o,
        "{:<14} {:>10} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>10}",
        "(cycles/s)", "cycles/s", "", "started", "p50", "p99", "p99.9", "p50", "p99", "p99.9", "engine CPU-s"
    );
    for r in results {
        let cpu = r.cycles_per_engine_cpu_s.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}"));
        let _ = writeln!(
            o,
            "{:<14} {:>10.1} {:>8} {:>8} | {:>8.3} {:>8.3} {:>8.3} | {:>8.3} {:>8.3} {:>8.3} | {:>10}",
            r.offered(),
            r.rate_achieved,
            r.cycles_failed,
            r.cycles_not_started,
            ms(r.park_notify.p50_us),
            ms(r.park_notify.p99_us),
            ms(r.park_notify.p999_us),
            ms(r.retrieve_200.p50_us),
            ms(r.retrieve_200.p99_us),
            ms(r.retrieve_200.p999_us),
            cpu
        );
    }
    o
}

/// A finite JSON number, else null.
pub(crate) fn jnum(v: f64) -> String {
    if v.is_finite() { format!("{}", (v * 1e3).round() / 1e3) } else { "null".into() }
}

pub(crate) fn jopt(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), jnum)
}

/// A JSON string (the names and arguments written here are plain text).
pub(crate) fn jstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Arguments as a comma-separated list of JSON strings (without the brackets).
pub(crate) fn json_args(v: &[OsString]) -> String {
    v.iter().map(|a| jstr(&a.to_string_lossy())).collect::<Vec<_>>().join(",")
}

/// target/bench/sweep/summary.json: the settings, the goals, and one object per run.
pub(crate) fn summary_json(args: &SweepArgs, results: &[RunResult]) -> String {
    let runs: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":{},\"mode\":{},\"rate_target\":{},\"concurrency\":{},\"rate_achieved\":{},\"cycles_ok\":{},\
                 \"cycles_failed\":{},\"cycles_not_started\":{},\"park_200\":{},\"park_notify\":{},\"retrieve_200\":{},\
                 \"engine_cpu_s\":{},\"cycles_per_engine_cpu_s\":{}}}",
                jstr(&r.name),
                jstr(if r.rate_target.is_some() { "open" } else { "closed" }),
                jopt(r.rate_target),
                jopt(r.concurrency),
                jnum(r.rate_achieved),
                jnum(r.cycles_ok),
                jnum(r.cycles_failed),
                jnum(r.cycles_not_started),
                r.park_200.json(),
                r.park_notify.json(),
                r.retrieve_200.json(),
                jopt(r.engine_cpu_s),
                jopt(r.cycles_per_engine_cpu_s)
            )
        })
        .collect();
    format!(
        "{{\"seconds_per_run\":{},\"rates\":[{}],\"max_concurrency\":{MAX_CONCURRENCY},\"load_args\":[{}],\"engine_args\":[{}],\
         \"goals\":{{\"p99_ms\":{},\"cycles_per_engine_cpu_s\":{}}},\"runs\":[\n{}\n]}}\n",
        jnum(args.seconds),
        args.rates.iter().map(|r| jnum(*r)).collect::<Vec<_>>().join(","),
        json_args(&args.load),
        json_args(&args.engine),
        jnum(LATENCY_GOAL_MS),
        jnum(EFFICIENCY_GOAL),
        runs.join(",\n")
    )
}

impl RunResult {
    /// Whether every cycle of the run completed (none failed, none was skipped).
    pub(crate) fn clean(&self) -> bool {
        self.cycles_failed == 0.0 && self.cycles_not_started == 0.0
    }
}

/// The runs in plotting order: open loop by offered rate, then the closed loop.
fn plot_order(results: &[RunResult]) -> Vec<&RunResult> {
    let mut v: Vec<&RunResult> = results.iter().collect();
    v.sort_by(|a, b| match (a.rate_target, b.rate_target) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    v
}

/// The note on a clean run's point: the closed-loop (maximum) run is marked.
fn note(r: &RunResult) -> Option<String> {
    r.concurrency.map(|c| format!("max: closed loop, {c} in flight"))
}

/// The subtitle: run length and which runs had failed cycles (drawn hollow, not joined).
fn subtitle(seconds: f64, results: &[RunResult]) -> String {
    let failed: Vec<String> = plot_order(results).into_iter().filter(|r| !r.clean()).map(RunResult::offered).collect();
    if failed.is_empty() {
        format!("{seconds} s per run; every cycle completed")
    } else {
        format!("{seconds} s per run; hollow: runs with failed cycles (offered {})", failed.join(", "))
    }
}

/// A line through the clean runs and, when there are any, hollow markers for the others.
fn series_pair(
    name: &str,
    color: &'static str,
    results: &[RunResult],
    y: impl Fn(&RunResult) -> Option<f64>,
) -> Vec<Series> {
    let point = |r: &RunResult, note: Option<String>| Some(Point { x: r.rate_achieved, y: y(r)?, note });
    let order = plot_order(results);
    let clean: Vec<Point> = order.iter().filter(|r| r.clean()).filter_map(|r| point(r, note(r))).collect();
    let failed: Vec<Point> = order.iter().filter(|r| !r.clean()).filter_map(|r| point(r, None)).collect();
    let mut v = vec![Series { name: name.into(), points: clean, color, line: true, hollow: false }];
    if !failed.is_empty() {
        v.push(Series {
            name: format!("{name},\nruns with failed cycles"),
            points: failed,
            color,
            line: false,
            hollow: true,
        });
    }
    v
}

/// The latency chart: p99 park 200 → NOTIFY and retrieve INVITE → 200 (ms, log scale) against
/// the achieved rate, with the 1 ms goal.
pub(crate) fn latency_chart(seconds: f64, results: &[RunResult]) -> Chart {
    let mut series =
        series_pair("park 200 → NOTIFY p99", plot::COLORS[0], results, |r| Some(ms(r.park_notify.p99_us)));
    series.extend(series_pair("retrieve INVITE → 200 p99", plot::COLORS[1], results, |r| {
        Some(ms(r.retrieve_200.p99_us))
    }));
    Chart {
        title: "sipark p99 latency against load".into(),
        subtitle: subtitle(seconds, results),
        x_label: "achieved park cycles per second".into(),
        y_label: "p99 latency (ms, log scale)".into(),
        y_scale: Scale::Log,
        series,
        guides: vec![Guide { value: LATENCY_GOAL_MS, label: "goal: p99 ≤ 1 ms".into() }],
    }
}

/// The efficiency chart: park cycles per engine CPU-second against the achieved rate, with
/// the 15,000 goal.
pub(crate) fn efficiency_chart(seconds: f64, results: &[RunResult]) -> Chart {
    Chart {
        title: "sipark park cycles per engine CPU-second".into(),
        subtitle: subtitle(seconds, results),
        x_label: "achieved park cycles per second".into(),
        y_label: "park cycles per engine CPU-second".into(),
        y_scale: Scale::Linear,
        series: series_pair("cycles per engine CPU-s", plot::COLORS[2], results, |r| {
            r.cycles_per_engine_cpu_s.filter(|v| v.is_finite())
        }),
        guides: vec![Guide { value: EFFICIENCY_GOAL, label: "goal: 15,000".into() }],
    }
}

/// Writes `text` to `path`, reporting failure.
pub(crate) fn write_file(path: &Path, text: &str) -> bool {
    match std::fs::write(path, text) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("xtask: cannot write {}: {e}", path.display());
            false
        }
    }
}

/// One run: a fresh engine, sipark-load with `extra` (rate or concurrency, duration, JSON
/// file) whose table goes to `<dir>/<name>.txt`; the figures, or why there are none.
fn run_one(args: &SweepArgs, dir: &Path, name: &str, extra: &[String]) -> Result<RunResult, String> {
    let (text, status) = run_load(&args.load, &args.engine, dir, name, extra)?;
    let r = RunResult::from_json(name, &text)
        .map_err(|e| format!("{}: {e}", dir.join(format!("{name}.json")).display()))?;
    if !status.success() {
        eprintln!(
            "xtask: sipark-load {status} for {name} ({} cycles failed); see {}",
            r.cycles_failed,
            dir.join(format!("{name}.txt")).display()
        );
    }
    Ok(r)
}

/// Starts a fresh release engine (`engine` args, log in `<dir>/<name>.sipark.log`), runs the
/// release sipark-load against it with `load` and `extra` and `--json <dir>/<name>.json` (its
/// table goes to `<dir>/<name>.txt`), stops the engine, and returns the JSON text and
/// sipark-load's exit status. An exit status of 1 (some cycles failed) still has figures.
pub(crate) fn run_load(
    load_args: &[OsString],
    engine_args: &[OsString],
    dir: &Path,
    name: &str,
    extra: &[String],
) -> Result<(String, ExitStatus), String> {
    run_load_on(load_args, engine_args, dir, name, extra, None)
}

/// [`run_load`], the generator kept to `cpus` (a `taskset -c` list) when given, off the cores
/// the engine's pinned workers take.
pub(crate) fn run_load_on(
    load_args: &[OsString],
    engine_args: &[OsString],
    dir: &Path,
    name: &str,
    extra: &[String],
    cpus: Option<&str>,
) -> Result<(String, ExitStatus), String> {
    let release = target_dir().join("release");
    let (mut engine, addr) =
        start_engine(&release.join("sipark"), engine_args, &dir.join(format!("{name}.sipark.log")))
            .map_err(|_| "the engine did not start".to_string())?;
    let place = Place { cpus, netns: None };
    let result = drive_load(place, engine.id(), addr, load_args, dir, name, extra);
    stop_engine(&mut engine, Duration::from_secs(20));
    result
}

/// Where sipark-load runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Place<'a> {
    /// A `taskset -c` list to keep it to, off the cores the engine's pinned workers take.
    pub cpus: Option<&'a str>,
    /// The network namespace to run it in (`ip netns exec`).
    pub netns: Option<&'a str>,
}

/// The command line that starts `binary` at `place`: `[ip netns exec NS] [taskset -c CPUS]
/// binary`.
fn placed(binary: &Path, place: Place) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(ns) = place.netns {
        argv.extend(["ip", "netns", "exec", ns].map(OsString::from));
    }
    if let Some(cpus) = place.cpus {
        argv.extend(["taskset", "-c", cpus].map(OsString::from));
    }
    argv.push(binary.into());
    argv
}

/// Runs the release sipark-load at `place` against the running engine `engine_pid` on `addr`
/// with `load_args`, `extra` and `--json <dir>/<name>.json` (its table goes to
/// `<dir>/<name>.txt`), and returns the JSON text and sipark-load's exit status; the engine is
/// left running. An exit status of 1 (some cycles failed) still has figures.
pub(crate) fn drive_load(
    place: Place,
    engine_pid: u32,
    addr: SocketAddr,
    load_args: &[OsString],
    dir: &Path,
    name: &str,
    extra: &[String],
) -> Result<(String, ExitStatus), String> {
    let json = dir.join(format!("{name}.json"));
    let txt = dir.join(format!("{name}.txt"));
    let _ = std::fs::remove_file(&json);
    let out = std::fs::File::create(&txt).map_err(|e| format!("cannot create {}: {e}", txt.display()))?;
    let argv = placed(&target_dir().join("release").join("sipark-load"), place);
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(root())
        .arg("--engine-pid")
        .arg(engine_pid.to_string())
        .arg("--target")
        .arg(addr.to_string())
        .args(load_args)
        .args(extra)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(out)
        .status()
        .map_err(|e| format!("cannot run sipark-load: {e}"))?;
    // Exit 1 (some cycles failed) still has figures; they are what overload looks like.
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("sipark-load ({status}) left no {}: {e}; see {}", json.display(), txt.display()))?;
    Ok((text, status))
}

/// Runs the sweep; the exit code is failure when a run left no figures or a file could not be
/// written.
pub(crate) fn sweep(args: &SweepArgs) -> ExitCode {
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let dir = target_dir().join("bench").join("sweep");
    let img = root().join("docs").join("img");
    for d in [&dir, &img] {
        if let Err(code) = create_dir(d) {
            return code;
        }
    }
    let secs = format!("{}", args.seconds);
    let mut plan: Vec<(String, Vec<String>)> = args
        .rates
        .iter()
        .map(|r| (rate_name(*r), vec!["--rate".into(), format!("{r}"), "--duration".into(), secs.clone()]))
        .collect();
    plan.push((
        "max".into(),
        vec!["--concurrency".into(), MAX_CONCURRENCY.to_string(), "--duration".into(), secs.clone()],
    ));
    let mut results = Vec::new();
    let mut ok = true;
    for (i, (name, extra)) in plan.iter().enumerate() {
        eprintln!("xtask: sweep run {}/{}: sipark-load {}", i + 1, plan.len(), extra.join(" "));
        match run_one(args, &dir, name, extra) {
            Ok(r) => {
                eprintln!(
                    "xtask:   {:.1} cycles/s achieved, {} failed, p99 park->NOTIFY {:.3} ms, retrieve {:.3} ms",
                    r.rate_achieved,
                    r.cycles_failed,
                    ms(r.park_notify.p99_us),
                    ms(r.retrieve_200.p99_us)
                );
                results.push(r);
            }
            Err(e) => {
                eprintln!("xtask: sweep run {name}: {e}");
                ok = false;
            }
        }
    }
    println!("\nsweep: {} s per run, files in {}\n", args.seconds, dir.display());
    print!("{}", table(&results));
    let summary = dir.join("summary.json");
    let latency = img.join("bench-latency.svg");
    let efficiency = img.join("bench-efficiency.svg");
    ok &= write_file(&summary, &summary_json(args, &results));
    ok &= write_file(&latency, &plot::render(&latency_chart(args.seconds, &results)));
    ok &= write_file(&efficiency, &plot::render(&efficiency_chart(args.seconds, &results)));
    println!("\nsummary: {}\ncharts:  {}\n         {}", summary.display(), latency.display(), efficiency.display());
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;
    use crate::plot::tests::check_well_formed;

    #[test]
    fn arguments_without_sweep_are_a_plain_bench() {
        assert_eq!(parse_args(&os(&["--", "--rate", "1000"])), Ok(None));
        assert_eq!(parse_args(&os(&[])), Ok(None));
        // `--sweep` after `--engine` is the engine's.
        assert_eq!(parse_args(&os(&["--engine", "--sweep", "1"])), Ok(None));
    }

    #[test]
    fn sweep_arguments_are_parsed() {
        let a = parse_args(&os(&["--sweep", "1000,2000, 4000", "--tenants", "10", "--engine", "--workers", "1"]));
        assert_eq!(
            a,
            Ok(Some(SweepArgs {
                rates: vec![1000.0, 2000.0, 4000.0],
                seconds: 8.0,
                load: os(&["--tenants", "10"]),
                engine: os(&["--workers", "1"]),
            }))
        );
        let a = parse_args(&os(&["--", "--sweep-seconds=2.5", "--sweep=500"]));
        assert_eq!(a, Ok(Some(SweepArgs { rates: vec![500.0], seconds: 2.5, load: vec![], engine: vec![] })));
    }

    #[test]
    fn bad_sweep_arguments_are_refused() {
        for (args, why) in [
            (&["--sweep"][..], "needs a value"),
            (&["--sweep", "1000,x"], "not a rate"),
            (&["--sweep", "0"], "not a rate"),
            (&["--sweep", "1000,"], "not a rate"),
            (&["--sweep", "inf"], "not a rate"),
            (&["--sweep", "5,5"], "twice"),
            (&["--sweep", "5", "--sweep", "6"], "twice"),
            (&["--sweep", "5", "--sweep-seconds", "0.5"], "1..=300"),
            (&["--sweep", "5", "--sweep-seconds", "x"], "1..=300"),
            (&["--sweep-seconds", "5"], "needs --sweep"),
            (&["--sweep", "5", "--rate", "9"], "--rate cannot"),
            (&["--sweep", "5", "--json=x"], "--json cannot"),
            (&["--sweep", "5", "--duration", "3"], "--duration cannot"),
            (&["--sweep", "5", "--concurrency", "3"], "--concurrency cannot"),
        ] {
            match parse_args(&os(args)) {
                Err(e) => assert!(e.contains(why), "{args:?}: `{e}` lacks `{why}`"),
                Ok(v) => panic!("{args:?} accepted: {v:?}"),
            }
        }
        let many: Vec<String> = (1..=33).map(|i| i.to_string()).collect();
        match parse_args(&os(&["--sweep", &many.join(",")])) {
            Err(e) => assert!(e.contains("at most 32"), "{e}"),
            Ok(v) => panic!("33 rates accepted: {v:?}"),
        }
    }

    #[test]
    fn the_generator_is_placed_in_its_namespace_and_off_the_workers_cores() {
        let load = Path::new("/t/sipark-load");
        assert_eq!(placed(load, Place::default()), os(&["/t/sipark-load"]));
        assert_eq!(
            placed(load, Place { cpus: Some("1-3"), netns: None }),
            os(&["taskset", "-c", "1-3", "/t/sipark-load"])
        );
        assert_eq!(
            placed(load, Place { cpus: Some("1"), netns: Some("spkovl7b") }),
            os(&["ip", "netns", "exec", "spkovl7b", "taskset", "-c", "1", "/t/sipark-load"])
        );
    }

    #[test]
    fn rate_names() {
        assert_eq!(rate_name(1000.0), "1000");
        assert_eq!(rate_name(1500.5), "1500.5");
    }

    #[test]
    fn json_parser_reads_values_and_refuses_garbage() {
        let j = Json::parse(r#" {"a": [1, -2.5e3, true, null], "b": {"c": "x\"\u00e9\n"}, "d": {}} "#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            j.get("a"),
            Some(&Json::Arr(vec![Json::Num(1.0), Json::Num(-2500.0), Json::Bool(true), Json::Null]))
        );
        assert_eq!(j.get("b").and_then(|b| b.get("c")), Some(&Json::Str("x\"é\n".into())));
        assert_eq!(j.get("d"), Some(&Json::Obj(vec![])));
        assert_eq!(j.num(&["a"]), None);
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "{\"a\":1} x", "\"abc", "tru", "{1:2}", "-", "\"\\q\""] {
            assert!(Json::parse(bad).is_err(), "accepted {bad:?}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Json::parse(&deep).is_err(), "nesting is bounded");
    }

    /// A report as sipark-load writes it (fields trimmed to what matters plus some others).
    fn report(rate: &str, achieved: f64, failed: u64, notify_p99: u64, retrieve_p99: u64, per_cpu: &str) -> String {
        format!(
            r#"{{"target":"127.0.0.1:5060","mode":"open","rate_target":{rate},"concurrency":null,"tenants":1000,
            "cycles_ok":8000,"cycles_failed":{failed},"cycles_not_started":0,"failures":{{"timeout":2}},"refusals":{{}},
            "window_s":8.0,"rate_achieved":{achieved},
            "park_200":{{"count":8000,"p50_us":100,"p99_us":300,"p999_us":900,"max_us":2000,"mean_us":120.5}},
            "park_notify":{{"count":16000,"p50_us":150,"p99_us":{notify_p99},"p999_us":1500,"max_us":3000,"mean_us":160}},
            "retrieve_200":{{"count":8000,"p50_us":110,"p99_us":{retrieve_p99},"p999_us":1200,"max_us":2500,"mean_us":130}},
            "engine_cpu_s":0.5,"generator_cpu_s":1.2,"cycles_per_engine_cpu_s":{per_cpu},"cycles_per_generator_cpu_s":6000}}"#
        )
    }

    fn results() -> Vec<RunResult> {
        let mut v: Vec<RunResult> = [
            ("4000", report("4000", 3100.0, 2, 25_000, 40_000, "16000.5")),
            ("1000", report("1000", 999.5, 0, 400, 350, "9000")),
            ("2000", report("2000", 1998.0, 0, 600, 500, "12000")),
        ]
        .iter()
        .map(|(n, t)| RunResult::from_json(n, t).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect();
        let max = report("null", 3500.0, 0, 2000, 2500, "null").replace("\"concurrency\":null", "\"concurrency\":128");
        v.push(RunResult::from_json("max", &max).unwrap_or_else(|e| panic!("max: {e}")));
        v
    }

    #[test]
    fn reports_are_read() {
        let r = results();
        assert_eq!(r[1].rate_target, Some(1000.0));
        assert_eq!(r[1].rate_achieved, 999.5);
        assert_eq!((r[0].cycles_failed, r[1].cycles_failed), (2.0, 0.0));
        assert_eq!(r[1].park_notify, Lat { count: 16000.0, p50_us: 150.0, p99_us: 400.0, p999_us: 1500.0 });
        assert_eq!(r[0].cycles_per_engine_cpu_s, Some(16000.5));
        assert_eq!((r[3].rate_target, r[3].concurrency, r[3].cycles_per_engine_cpu_s), (None, Some(128.0), None));
        let err = RunResult::from_json("x", r#"{"cycles_ok":1}"#).err().unwrap_or_default();
        assert!(err.contains("rate_achieved"), "{err}");
    }

    #[test]
    fn table_has_a_row_per_run() {
        let t = table(&results());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 4, "{t}");
        assert!(lines[3].starts_with("1,000 ") && lines[3].contains("999.5") && lines[3].contains("0.400"), "{t}");
        assert!(lines[3].trim_end().ends_with("9000"), "{t}");
        assert!(lines[2].starts_with("4,000 ") && lines[2].contains(" 2 "), "{t}");
        assert!(lines[5].starts_with("max (c=128)") && lines[5].trim_end().ends_with("n/a"), "{t}");
    }

    #[test]
    fn summary_is_json_with_every_run() {
        let args = SweepArgs {
            rates: vec![1000.0, 2000.0, 4000.0],
            seconds: 8.0,
            load: os(&["--tenants", "1\"0"]),
            engine: vec![],
        };
        let text = summary_json(&args, &results());
        let j = Json::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(Json::Arr(runs)) = j.get("runs") else { panic!("no runs in {text}") };
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[0].num(&["retrieve_200", "p99_us"]), Some(40_000.0));
        assert_eq!(runs[3].get("mode"), Some(&Json::Str("closed".into())));
        assert_eq!(runs[3].get("cycles_per_engine_cpu_s"), Some(&Json::Null));
        assert_eq!(j.num(&["goals", "cycles_per_engine_cpu_s"]), Some(15_000.0));
        assert_eq!(j.get("load_args"), Some(&Json::Arr(vec![Json::Str("--tenants".into()), Json::Str("1\"0".into())])));
    }

    #[test]
    fn charts_hold_every_run_with_figures() {
        let r = results();
        let lat = latency_chart(8.0, &r);
        let shape: Vec<(usize, bool, bool)> = lat.series.iter().map(|s| (s.points.len(), s.line, s.hollow)).collect();
        // Clean runs joined (1000, 2000, max in that order), the failed one hollow, per latency.
        assert_eq!(shape, [(3, true, false), (1, false, true), (3, true, false), (1, false, true)]);
        let xs: Vec<f64> = lat.series[0].points.iter().map(|p| p.x).collect();
        assert_eq!(xs, [999.5, 1998.0, 3500.0]);
        assert_eq!(lat.series[3].points[0].y, 40.0, "ms");
        assert_eq!(lat.subtitle, "8 s per run; hollow: runs with failed cycles (offered 4,000)");
        let svg = plot::render(&lat);
        let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 8 + 4, "{svg}");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("max: closed loop, 128 in flight").count(), 2, "{svg}");
        let eff = efficiency_chart(8.0, &r);
        let shape: Vec<(usize, bool, bool)> = eff.series.iter().map(|s| (s.points.len(), s.line, s.hollow)).collect();
        assert_eq!(shape, [(2, true, false), (1, false, true)], "the run without engine CPU is left out");
        let svg = plot::render(&eff);
        let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 3 + 2, "{svg}");
        assert!(svg.contains(">15,000</text>") && svg.contains(">goal: 15,000</text>"), "{svg}");
        let all_clean: Vec<RunResult> = r.into_iter().filter(RunResult::clean).collect();
        let eff = efficiency_chart(8.0, &all_clean);
        assert_eq!(eff.series.len(), 1, "no hollow series without failed runs");
        assert_eq!(eff.subtitle, "8 s per run; every cycle completed");
    }
}
