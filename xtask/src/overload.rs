//! `cargo xtask bench --overload M1,M2,...`: overload control against one worker
//! (docs/decisions/0021-overload-control.md). First the maximum: a fresh release sipark with
//! `--workers 1` (pinned; ENGINE-ARGS may say otherwise) and overload control off
//! (`--overload-delay-ms 0`: the engine's capacity, not what it admits) under a closed loop of
//! 128 cycles in flight; then, per multiple M, a fresh engine with ENGINE-ARGS offered M times
//! that maximum, open loop. Each run lasts S seconds after the load arguments' warm-up; the
//! devices register 64 at a time unless LOAD-ARGS say otherwise. Prints the goodput as a share
//! of the maximum, the p99 of admitted cycles, the latency of the 503s, the cycles shed and the
//! retransmissions, and writes target/bench/overload/{max,<M>x,summary}.json.
//!
//! With `--xdp` (root only), every engine runs in a network namespace A with its XDP program on
//! A's end of a veth pair (`sipark --xdp <iface> --xdp-mode native`, listening on that end's
//! address; sipark-load attaches a pass-through XDP program to B's end, `--xdp-peer`, without
//! which a veth drops the 503s XDP sends back), and
//! sipark-load runs in namespace B (see netns.rs), so that the program sees the generator's
//! traffic, which on loopback it does not. Once the generator is done, before the engine stops,
//! the engine's `sipark_xdp_packets_total` counters are read from its metrics: every reason's
//! count goes into the run's JSON (`xdp_packets`), and the table adds `pass`, `shed` and
//! `shed_ack`. They count every frame since the engine started: the registrations, the warm-up
//! and the clean-up as well as the measured window.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use crate::netns::{Netns, is_root};
use crate::sweep::{Json, MAX_CONCURRENCY, Place, drive_load, jnum, jopt, json_args, jstr, run_load_on, write_file};
use crate::{
    cargo_build, create_dir, distinct_items, has_flag, mode_options, split_bench_args, stop_engine, target_dir,
};

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench --overload M1,M2,... [--overload-seconds S] [--xdp] [--] [LOAD-ARGS...]
       [--engine ENGINE-ARGS...]
  --overload M1,M2,...  multiples of the measured maximum to offer (open loop), e.g. 2,4; the
                        maximum is measured first (closed loop, --concurrency 128)
  --overload-seconds S  seconds of load per run, after LOAD-ARGS' --warmup (default 10)
  --xdp                 (root) each engine in a network namespace with its XDP program on a
                        veth end (sipark --xdp, native mode), sipark-load in another; the XDP counters by
                        reason go into each run's JSON, pass, shed and shed_ack into the table
  LOAD-ARGS             other sipark-load flags (not --rate, --concurrency, --duration, --cycles,
                        --json; with --xdp not --bind), e.g. --warmup 8 (default
                        --register-window 64)
  ENGINE-ARGS           sipark's (default --workers 1, pinned); the maximum adds
                        --overload-delay-ms 0 (with --xdp not --listen, --metrics, --xdp)
Writes target/bench/overload/max.json, <M>x.json and summary.json.";

/// Registrations in flight at set-up: a burst of sipark-load's default 512 can be shed as an
/// overload of its own.
const REGISTER_WINDOW: &str = "64";
/// Most multiples one run takes.
const MAX_MULTIPLES: usize = 8;
/// The issue's goals: goodput as a share of the maximum, p99 of admitted cycles (ms), and the
/// 503's latency (ms).
const GOODPUT_GOAL: f64 = 0.9;
const ADMITTED_P99_GOAL_MS: f64 = 50.0;
const SHED_GOAL_MS: f64 = 1.0;
/// With `--xdp`: the second octet of the veth pair's network (10.202.x.0/24, x from the pid),
/// and the engine's SIP and metrics ports on A's end.
const XDP_NET: u8 = 202;
const XDP_SIP_PORT: u16 = 5060;
const XDP_METRICS_PORT: u16 = 9464;
/// The engine's XDP verdict counters (a Prometheus counter, labelled `action` and `reason`).
const XDP_SERIES: &str = "sipark_xdp_packets_total";
/// The XDP reasons the table shows; a reason the engine does not count shows 0.
const XDP_SHOWN: [&str; 3] = ["pass", "shed", "shed_ack"];

/// The arguments of an overload run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverloadArgs {
    pub multiples: Vec<f64>,
    pub seconds: f64,
    /// Engines in a network namespace with `--xdp`, the generator in another.
    pub xdp: bool,
    pub load: Vec<OsString>,
    pub engine: Vec<OsString>,
}

/// Parses `cargo xtask bench` arguments for an overload run: `None` without `--overload`.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<OverloadArgs>, String> {
    let (mixed, mut engine) = split_bench_args(args);
    let xdp = mixed.iter().any(|a| a == "--xdp");
    let mixed: Vec<OsString> = mixed.into_iter().filter(|a| a != "--xdp").collect();
    let (multiples, seconds, mut load) =
        mode_options(mixed, "--overload", "--overload-seconds", "the run", parse_multiples)?;
    let Some(multiples) = multiples else {
        return if xdp { Err("--xdp needs --overload".into()) } else { Ok(None) };
    };
    if xdp {
        if has_flag(&load, "--bind") {
            return Err("--bind cannot be combined with --xdp (the run sets it)".into());
        }
        if let Some(flag) = ["--listen", "--metrics", "--xdp"].into_iter().find(|f| has_flag(&engine, f)) {
            return Err(format!("--engine {flag} cannot be combined with --xdp (the run sets it)"));
        }
    }
    if !has_flag(&engine, "--workers") {
        engine.splice(0..0, ["--workers".into(), "1".into()]);
    }
    if !has_flag(&load, "--register-window") {
        load.extend(["--register-window".into(), REGISTER_WINDOW.into()]);
    }
    Ok(Some(OverloadArgs { multiples, seconds: seconds.unwrap_or(10.0), xdp, load, engine }))
}

/// `M1,M2,...`: distinct multiples in 0.1..=100.
fn parse_multiples(list: &str) -> Result<Vec<f64>, String> {
    distinct_items(
        list,
        MAX_MULTIPLES,
        |item| match item.parse::<f64>() {
            Ok(m) if m.is_finite() && (0.1..=100.0).contains(&m) => Ok(m),
            _ => Err(format!("--overload: `{item}` is not a multiple in 0.1..=100")),
        },
        |item| format!("--overload: {item} given twice"),
        || format!("--overload: at most {MAX_MULTIPLES} multiples"),
    )
}

/// Percentiles of one latency, microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Lat {
    pub count: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Lat {
    fn of(j: &Json, key: &str) -> Lat {
        let n = |k: &str| j.num(&[key, k]).unwrap_or(f64::NAN);
        Lat { count: n("count"), p99_us: n("p99_us"), max_us: n("max_us") }
    }

    fn json(&self) -> String {
        format!("{{\"count\":{},\"p99_us\":{},\"max_us\":{}}}", jnum(self.count), jnum(self.p99_us), jnum(self.max_us))
    }
}

/// What one run measured (from sipark-load's JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    /// `max`, or the multiple (`2x`).
    pub name: String,
    /// The multiple of the maximum offered; `None` for the maximum itself.
    pub multiple: Option<f64>,
    pub rate_target: Option<f64>,
    pub rate_achieved: f64,
    pub cycles_ok: f64,
    pub cycles_failed: f64,
    pub shed_park: f64,
    pub shed_retrieve: f64,
    pub not_started: f64,
    pub park_notify: Lat,
    pub retrieve_200: Lat,
    pub cycle: Lat,
    pub shed_503: Lat,
    /// Of the 503s, those the engine's XDP program sent (ADR 0022).
    pub shed_503_nic: Lat,
    pub retransmissions_sent: f64,
    pub duplicates_received: f64,
    pub engine_cpu_s: Option<f64>,
    /// With `--xdp`: the engine's XDP frames by reason (`xdp_packets` in the run's JSON), in the
    /// engine's order; `None` without `--xdp` or when they could not be read.
    pub xdp: Option<Vec<(String, f64)>>,
}

impl Run {
    pub(crate) fn from_json(name: &str, multiple: Option<f64>, text: &str) -> Result<Run, String> {
        let j = Json::parse(text)?;
        let need = |k: &str| j.num(&[k]).ok_or_else(|| format!("no number `{k}` in the report"));
        Ok(Run {
            name: name.to_string(),
            multiple,
            rate_target: j.num(&["rate_target"]),
            rate_achieved: need("rate_achieved")?,
            cycles_ok: need("cycles_ok")?,
            cycles_failed: need("cycles_failed")?,
            shed_park: need("cycles_shed_park")?,
            shed_retrieve: need("cycles_shed_retrieve")?,
            not_started: j.num(&["cycles_not_started"]).unwrap_or(0.0),
            park_notify: Lat::of(&j, "park_notify"),
            retrieve_200: Lat::of(&j, "retrieve_200"),
            cycle: Lat::of(&j, "cycle"),
            shed_503: Lat::of(&j, "shed_503"),
            shed_503_nic: Lat::of(&j, "shed_503_nic"),
            retransmissions_sent: need("retransmissions_sent")?,
            duplicates_received: need("duplicates_received")?,
            engine_cpu_s: j.num(&["engine_cpu_s"]),
            xdp: match j.get("xdp_packets") {
                Some(Json::Obj(members)) => Some(
                    members
                        .iter()
                        .map(|(k, v)| match v {
                            Json::Num(n) => Ok((k.clone(), *n)),
                            _ => Err(format!("xdp_packets: `{k}` is not a number")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => None,
            },
        })
    }

    /// Frames the engine's XDP program counted for `reason`: 0 for a reason it does not count,
    /// `None` without counters.
    fn xdp_count(&self, reason: &str) -> Option<f64> {
        let counts = self.xdp.as_ref()?;
        Some(counts.iter().find(|(r, _)| r == reason).map_or(0.0, |(_, n)| *n))
    }

    fn xdp_json(&self) -> String {
        match &self.xdp {
            Some(counts) => xdp_json(counts),
            None => "null".into(),
        }
    }
}

/// The frames of each reason in the engine's metrics text (`sipark_xdp_packets_total{action=...,
/// reason=...} N`), summed over the other labels, in the order the reasons first appear.
pub(crate) fn xdp_counts(metrics: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some((series, value)) = line.trim().rsplit_once(' ') else { continue };
        let Some(labels) = series.strip_prefix(XDP_SERIES).and_then(|l| l.strip_prefix('{')) else { continue };
        let reason = labels.split(',').find_map(|l| l.trim().strip_prefix("reason=\"")?.split('"').next());
        let (Some(reason), Ok(v)) = (reason, value.parse::<f64>()) else { continue };
        match out.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += v,
            None => out.push((reason.to_owned(), v)),
        }
    }
    out
}

/// `{"pass":12,"not_sip":0,...}`.
fn xdp_json(counts: &[(String, f64)]) -> String {
    let members: Vec<String> = counts.iter().map(|(r, n)| format!("{}:{}", jstr(r), jnum(*n))).collect();
    format!("{{{}}}", members.join(","))
}

/// A run's JSON object with `"xdp_packets": {...}` added as its last member; checked to parse.
fn with_xdp(run_json: &str, counts: &[(String, f64)]) -> Result<String, String> {
    let body = run_json.trim_end().strip_suffix('}').ok_or("the run's JSON is not an object")?;
    let text = format!("{body},\"xdp_packets\":{}}}\n", xdp_json(counts));
    Json::parse(&text).map_err(|e| format!("JSON with the XDP counters added: {e}"))?;
    Ok(text)
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

/// `12.3` or `-` when nothing was measured.
fn ms_or_dash(l: &Lat, us: f64) -> String {
    if l.count > 0.0 && us.is_finite() { format!("{:.3}", ms(us)) } else { "-".into() }
}

/// Completed cycles per engine CPU-second.
fn per_cpu(r: &Run) -> Option<f64> {
    r.engine_cpu_s.filter(|s| *s > 0.0).map(|s| r.cycles_ok / s)
}

/// The results as a table: goodput against the maximum, latencies of admitted cycles and of
/// the 503s, shed cycles, retransmissions, and the engine's CPU with the completed cycles per
/// engine CPU-second as a share of the maximum's (on a shared machine the engine's share of a
/// core moves from run to run; this figure does not follow it). When a run has XDP counters
/// (`--xdp`), the frames the XDP program passed and shed come last (`-`: not read).
pub(crate) fn table(max: f64, runs: &[Run]) -> String {
    let max_per_cpu = runs.iter().find(|r| r.multiple.is_none()).and_then(per_cpu);
    let xdp = runs.iter().any(|r| r.xdp.is_some());
    let mut head = [String::new(), String::new()];
    if xdp {
        head[0] = format!(" | {:>29} | {:>17}", "XDP frames", "XDP's 503 (ms)");
        head[1] = " |".to_owned();
        for reason in XDP_SHOWN {
            let _ = write!(head[1], " {reason:>9}");
        }
        let _ = write!(head[1], " | {:>8} {:>8}", "p99", "max");
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<7} {:>9} {:>9} {:>8} {:>7} {:>15} | {:>25} | {:>17} | {:>15} | {:>15}{}",
        "offered",
        "offered",
        "goodput",
        "of max",
        "failed",
        "shed 503",
        "admitted p99 (ms)",
        "503 latency (ms)",
        "retransmissions",
        "engine",
        head[0]
    );
    let _ = writeln!(
        o,
        "{:<7} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7} | {:>7} {:>8} {:>8} | {:>8} {:>8} | {:>7} {:>7} | {:>6} {:>8}{}",
        "",
        "cycles/s",
        "cycles/s",
        "",
        "",
        "park",
        "retr.",
        "NOTIFY",
        "retrieve",
        "cycle",
        "p99",
        "max",
        "ours",
        "engine",
        "CPU-s",
        "per CPU",
        head[1]
    );
    for r in runs {
        let share = if max > 0.0 { 100.0 * r.rate_achieved / max } else { f64::NAN };
        let mut frames = String::new();
        if xdp {
            frames.push_str(" |");
            for reason in XDP_SHOWN {
                let _ = write!(frames, " {:>9}", r.xdp_count(reason).map_or_else(|| "-".into(), |n| format!("{n}")));
            }
            let nic = &r.shed_503_nic;
            let _ = write!(frames, " | {:>8} {:>8}", ms_or_dash(nic, nic.p99_us), ms_or_dash(nic, nic.max_us));
        }
        let _ = writeln!(
            o,
            "{:<7} {:>9.0} {:>9.0} {:>7.1}% {:>7} {:>7} {:>7} | {:>7} {:>8} {:>8} | {:>8} {:>8} | {:>7} {:>7} | {:>6} {:>8}{}",
            r.name,
            r.rate_target.unwrap_or(f64::NAN),
            r.rate_achieved,
            share,
            r.cycles_failed,
            r.shed_park,
            r.shed_retrieve,
            ms_or_dash(&r.park_notify, r.park_notify.p99_us),
            ms_or_dash(&r.retrieve_200, r.retrieve_200.p99_us),
            ms_or_dash(&r.cycle, r.cycle.p99_us),
            ms_or_dash(&r.shed_503, r.shed_503.p99_us),
            ms_or_dash(&r.shed_503, r.shed_503.max_us),
            r.retransmissions_sent,
            r.duplicates_received,
            r.engine_cpu_s.map_or_else(|| "n/a".into(), |s| format!("{s:.2}")),
            match (per_cpu(r), max_per_cpu) {
                (Some(v), Some(m)) if m > 0.0 => format!("{:.1}%", 100.0 * v / m),
                _ => "n/a".into(),
            },
            frames
        );
    }
    o
}

/// Whether a run at a multiple met the issue's goals, in words.
pub(crate) fn verdict(max: f64, r: &Run) -> String {
    let goodput = max > 0.0 && r.rate_achieved >= GOODPUT_GOAL * max;
    let admitted = [r.park_notify.p99_us, r.retrieve_200.p99_us].iter().all(|&p| ms(p) < ADMITTED_P99_GOAL_MS);
    let yes = |b: bool| if b { "met" } else { "NOT met" };
    let shed = if r.shed_503.count > 0.0 { yes(ms(r.shed_503.max_us) <= SHED_GOAL_MS) } else { "n/a (no 503)" };
    // With --xdp: the 503s XDP sent, apart (the worker's wait in its queue).
    let nic = &r.shed_503_nic;
    let nic = if r.xdp.is_some() && nic.count > 0.0 {
        format!(
            " (the {:.0} from XDP: p99 {:.3} ms, max {:.3} ms, p99 {})",
            nic.count,
            ms(nic.p99_us),
            ms(nic.max_us),
            yes(ms(nic.p99_us) <= SHED_GOAL_MS)
        )
    } else {
        String::new()
    };
    format!(
        "{}: goodput >= {:.0}% of max {}; admitted p99 < {ADMITTED_P99_GOAL_MS} ms {}; 503 within {SHED_GOAL_MS} ms {shed}{nic}",
        r.name,
        GOODPUT_GOAL * 100.0,
        yes(goodput),
        yes(admitted),
    )
}

/// target/bench/overload/summary.json.
pub(crate) fn summary_json(args: &OverloadArgs, max: f64, runs: &[Run]) -> String {
    let items: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":{},\"multiple\":{},\"rate_target\":{},\"rate_achieved\":{},\"goodput_share\":{},\
                 \"cycles_ok\":{},\"cycles_failed\":{},\"cycles_shed_park\":{},\"cycles_shed_retrieve\":{},\
                 \"cycles_not_started\":{},\"park_notify\":{},\"retrieve_200\":{},\"cycle\":{},\"shed_503\":{},\"shed_503_nic\":{},\
                 \"retransmissions_sent\":{},\"duplicates_received\":{},\"engine_cpu_s\":{},\"xdp_packets\":{}}}",
                jstr(&r.name),
                jopt(r.multiple),
                jopt(r.rate_target),
                jnum(r.rate_achieved),
                jnum(if max > 0.0 { r.rate_achieved / max } else { f64::NAN }),
                jnum(r.cycles_ok),
                jnum(r.cycles_failed),
                jnum(r.shed_park),
                jnum(r.shed_retrieve),
                jnum(r.not_started),
                r.park_notify.json(),
                r.retrieve_200.json(),
                r.cycle.json(),
                r.shed_503.json(),
                r.shed_503_nic.json(),
                jnum(r.retransmissions_sent),
                jnum(r.duplicates_received),
                jopt(r.engine_cpu_s),
                r.xdp_json()
            )
        })
        .collect();
    let multiples: Vec<String> = args.multiples.iter().map(|m| jnum(*m)).collect();
    format!(
        "{{\"seconds_per_run\":{},\"multiples\":[{}],\"xdp\":{},\"max_concurrency\":{MAX_CONCURRENCY},\"maximum\":{},\
         \"load_args\":[{}],\"engine_args\":[{}],\"goals\":{{\"goodput_share\":{GOODPUT_GOAL},\
         \"admitted_p99_ms\":{ADMITTED_P99_GOAL_MS},\"shed_503_ms\":{SHED_GOAL_MS}}},\"runs\":[\n{}\n]}}\n",
        jnum(args.seconds),
        multiples.join(","),
        args.xdp,
        jnum(max),
        json_args(&args.load),
        json_args(&args.engine),
        items.join(",\n")
    )
}

/// `engine` with overload control off: any `--overload-delay-ms` (`--x V` or `--x=V`) replaced
/// by `--overload-delay-ms 0`.
fn overload_off(engine: &[OsString]) -> Vec<OsString> {
    let flag = "--overload-delay-ms";
    let mut out = Vec::with_capacity(engine.len() + 2);
    let mut skip = false;
    for a in engine {
        if std::mem::take(&mut skip) {
            continue;
        }
        let text = a.to_string_lossy();
        if text == flag {
            skip = true;
        } else if !text.starts_with(&format!("{flag}=")) {
            out.push(a.clone());
        }
    }
    out.extend([flag.into(), "0".into()]);
    out
}

/// One run against a fresh engine started with `engine`.
fn run_one(
    args: &OverloadArgs,
    engine: &[OsString],
    name: &str,
    multiple: Option<f64>,
    extra: &[String],
) -> Result<Run, String> {
    let dir = target_dir().join("bench").join("overload");
    // The engine's one worker pins itself to the first CPU; the generator, which needs more CPU
    // the more it offers, keeps to the others, so that it never takes the worker's core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others = (cores > 1).then(|| format!("1-{}", cores - 1));
    let (text, status) = if args.xdp {
        run_load_xdp(&args.load, engine, &dir, name, extra, others.as_deref())?
    } else {
        run_load_on(&args.load, engine, &dir, name, extra, others.as_deref())?
    };
    let r = Run::from_json(name, multiple, &text)
        .map_err(|e| format!("{}: {e}", dir.join(format!("{name}.json")).display()))?;
    if !status.success() {
        eprintln!("xtask: sipark-load {status} for {name} ({} cycles failed)", r.cycles_failed);
    }
    Ok(r)
}

/// [`run_load_on`] across a veth pair made for this run: the engine in namespace A with `--xdp`
/// on A's end, listening on its address, and the generator in B, kept to `cpus`. Once the
/// generator is done, and before the engine stops, the engine's XDP counters are read from its
/// metrics and added to the run's JSON as `xdp_packets` (left out, with a warning, when they
/// cannot be read). The namespaces are deleted before this returns.
fn run_load_xdp(
    load_args: &[OsString],
    engine_args: &[OsString],
    dir: &Path,
    name: &str,
    extra: &[String],
    cpus: Option<&str>,
) -> Result<(String, ExitStatus), String> {
    let ns = Netns::new("ovl", "vo", XDP_NET)?;
    let (sip, metrics) = (ns.addr(1, XDP_SIP_PORT), ns.addr(1, XDP_METRICS_PORT));
    // Native mode. A veth drops what the program sends back (XDP_TX, the overload 503s of ADR
    // 0022) unless its other end runs an XDP program too: sipark-load attaches a pass-through one
    // to B's end (`--xdp-peer`). XDP runs where the veth delivers, on the generator's core; on a
    // NIC it runs on the core of the receive queue, and needs no peer.
    let mut args: Vec<OsString> =
        ["--listen", &sip.to_string(), "--metrics", &metrics.to_string(), "--xdp", &ns.if_a, "--xdp-mode", "native"]
            .map(OsString::from)
            .into();
    if !has_flag(engine_args, "--moh") {
        args.extend(["--moh".into(), "off".into()]);
    }
    args.extend(engine_args.iter().cloned());
    let release = target_dir().join("release");
    let log = dir.join(format!("{name}.sipark.log"));
    let mut engine = ns.start_engine(&release.join("sipark"), &args, &log, Duration::from_secs(20))?;
    let mut extra = extra.to_vec();
    extra.extend(["--bind".into(), ns.host(2), "--xdp-peer".into(), ns.if_b.clone()]);
    let place = Place { cpus, netns: Some(&ns.b) };
    let result = drive_load(place, engine.id(), sip, load_args, dir, name, &extra);
    let scrape = ns.http_get_from_b(metrics, "/metrics");
    stop_engine(&mut engine, Duration::from_secs(20));
    drop(ns);
    let (text, status) = result?;
    let json = dir.join(format!("{name}.json"));
    let added = scrape.and_then(|m| with_xdp(&text, &xdp_counts(&m))).and_then(|t| {
        std::fs::write(&json, &t).map_err(|e| format!("{}: {e}", json.display()))?;
        Ok(t)
    });
    match added {
        Ok(t) => Ok((t, status)),
        Err(e) => {
            eprintln!("xtask: {name}: no XDP counters: {e}");
            Ok((text, status))
        }
    }
}

/// The maximum, then one run per multiple; the exit code is failure when a run left no figures.
pub(crate) fn overload(args: &OverloadArgs) -> ExitCode {
    if args.xdp && !is_root() {
        eprintln!("xtask: --overload --xdp needs root (network namespaces, veth pairs and XDP); run it as root");
        return ExitCode::FAILURE;
    }
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let dir = target_dir().join("bench").join("overload");
    if let Err(code) = create_dir(&dir) {
        return code;
    }
    let secs = format!("{}", args.seconds);
    eprintln!("xtask: overload: the maximum (closed loop, {MAX_CONCURRENCY} in flight, overload control off)");
    let closed = ["--concurrency".to_string(), MAX_CONCURRENCY.to_string(), "--duration".into(), secs.clone()];
    let engine_max = overload_off(&args.engine);
    let max_run = match run_one(args, &engine_max, "max", None, &closed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xtask: overload: the maximum: {e}");
            return ExitCode::FAILURE;
        }
    };
    let max = max_run.rate_achieved;
    eprintln!("xtask:   maximum {max:.0} cycles/s");
    let mut runs = vec![max_run];
    let mut ok = max > 0.0;
    for m in &args.multiples {
        let rate = (m * max).max(1.0).round();
        let name = format!("{m}x");
        eprintln!("xtask: overload: {name} = {rate} cycles/s offered (open loop)");
        let extra = ["--rate".to_string(), format!("{rate}"), "--duration".into(), secs.clone()];
        match run_one(args, &args.engine, &name, Some(*m), &extra) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("xtask: overload: {name}: {e}");
                ok = false;
            }
        }
    }
    let place = if args.xdp { ", engine in a network namespace with --xdp on a veth" } else { "" };
    println!("\noverload: one worker{place}, {} s per run, files in {}\n", args.seconds, dir.display());
    print!("{}", table(max, &runs));
    println!();
    for r in runs.iter().filter(|r| r.multiple.is_some()) {
        println!("{}", verdict(max, r));
    }
    let summary = dir.join("summary.json");
    ok &= write_file(&summary, &summary_json(args, max, &runs));
    println!("\nsummary: {}", summary.display());
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn arguments_without_overload_are_another_bench() {
        assert_eq!(parse_args(&os(&["--cycles", "5"])), Ok(None));
        assert_eq!(parse_args(&os(&["--engine", "--overload", "2"])), Ok(None));
    }

    #[test]
    fn overload_arguments_are_parsed_and_pin_one_worker() {
        let a = parse_args(&os(&["--overload", "2, 4", "--warmup", "8", "--engine", "--io", "mmsg"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("an overload run"));
        assert_eq!(a.multiples, vec![2.0, 4.0]);
        assert_eq!(a.seconds, 10.0);
        assert_eq!(a.load, os(&["--warmup", "8", "--register-window", "64"]));
        assert_eq!(a.engine, os(&["--workers", "1", "--io", "mmsg"]));
        let a = parse_args(&os(&[
            "--overload=3",
            "--overload-seconds",
            "20",
            "--register-window=8",
            "--engine",
            "--workers",
            "2",
        ]))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("an overload run"));
        assert_eq!((a.multiples, a.seconds), (vec![3.0], 20.0));
        assert_eq!(a.load, os(&["--register-window=8"]), "the load's own window wins");
        assert_eq!(a.engine, os(&["--workers", "2"]), "the engine's own --workers wins");
    }

    #[test]
    fn xdp_is_ours_before_engine_and_the_engines_after_it() {
        let a = parse_args(&os(&["--overload", "2", "--xdp", "--", "--warmup", "2"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("an overload run"));
        assert!(a.xdp);
        assert_eq!(a.load, os(&["--warmup", "2", "--register-window", "64"]), "--xdp is not the load's");
        assert_eq!(a.engine, os(&["--workers", "1"]));
        let a = parse_args(&os(&["--overload", "2"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("an overload run"));
        assert!(!a.xdp, "off unless asked");
        for (args, want) in [
            (&["--xdp"][..], "--xdp needs --overload"),
            (&["--overload", "2", "--xdp", "--bind", "10.0.0.2"], "--bind cannot be combined with --xdp"),
            (&["--overload", "2", "--xdp", "--engine", "--metrics", "x"], "--engine --metrics cannot be combined"),
            (&["--overload", "2", "--xdp", "--engine", "--xdp=eth0"], "--engine --xdp cannot be combined"),
        ] {
            match parse_args(&os(args)) {
                Err(e) => assert!(e.starts_with(want), "{args:?}: {e}"),
                Ok(a) => panic!("{args:?} accepted: {a:?}"),
            }
        }
        // Without ours, an engine's `--xdp IFACE` and a load's `--bind` are theirs.
        let a = parse_args(&os(&["--overload", "2", "--bind", "127.0.0.2", "--engine", "--xdp", "lo"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("an overload run"));
        assert!(!a.xdp);
        assert_eq!(a.engine, os(&["--workers", "1", "--xdp", "lo"]));
    }

    #[test]
    fn the_maximum_runs_with_overload_control_off() {
        assert_eq!(overload_off(&os(&["--workers", "1"])), os(&["--workers", "1", "--overload-delay-ms", "0"]));
        assert_eq!(
            overload_off(&os(&["--overload-delay-ms", "2", "--io", "mmsg", "--overload-delay-ms=3"])),
            os(&["--io", "mmsg", "--overload-delay-ms", "0"])
        );
    }

    #[test]
    fn bad_overload_arguments_are_refused() {
        for (args, want) in [
            (&["--overload", "0"][..], "--overload: `0` is not a multiple in 0.1..=100"),
            (&["--overload", "2,2"], "--overload: 2 given twice"),
            (&["--overload", "2", "--rate", "9"], "--rate cannot be combined with --overload (the run sets it)"),
            (&["--overload-seconds", "5"], "--overload-seconds needs --overload"),
            (&["--overload", "2", "--overload-seconds", "0"], "--overload-seconds: expected seconds in 1..=300"),
        ] {
            match parse_args(&os(args)) {
                Err(e) => assert!(e.starts_with(want), "{args:?}: {e}"),
                Ok(a) => panic!("{args:?} accepted: {a:?}"),
            }
        }
    }

    fn run(name: &str, achieved: f64, notify_p99_us: f64, shed_max_us: f64) -> Run {
        let lat = |p99: f64, max: f64| Lat { count: 10.0, p99_us: p99, max_us: max };
        Run {
            name: name.into(),
            multiple: Some(2.0),
            rate_target: Some(20_000.0),
            rate_achieved: achieved,
            cycles_ok: achieved * 10.0,
            cycles_failed: 0.0,
            shed_park: 100.0,
            shed_retrieve: 1.0,
            not_started: 0.0,
            park_notify: lat(notify_p99_us, notify_p99_us),
            retrieve_200: lat(1000.0, 2000.0),
            cycle: lat(3000.0, 4000.0),
            shed_503: lat(500.0, shed_max_us),
            shed_503_nic: lat(30.0, 90.0),
            retransmissions_sent: 3.0,
            duplicates_received: 4.0,
            engine_cpu_s: Some(10.0),
            xdp: None,
        }
    }

    #[test]
    fn the_verdict_checks_each_goal() {
        assert_eq!(
            verdict(10_000.0, &run("2x", 9_500.0, 2_000.0, 800.0)),
            "2x: goodput >= 90% of max met; admitted p99 < 50 ms met; 503 within 1 ms met"
        );
        assert_eq!(
            verdict(10_000.0, &run("4x", 8_000.0, 60_000.0, 1_500.0)),
            "4x: goodput >= 90% of max NOT met; admitted p99 < 50 ms NOT met; 503 within 1 ms NOT met"
        );
        let mut off = run("2x", 5_000.0, 2_000_000.0, 0.0);
        off.shed_503.count = 0.0;
        assert_eq!(
            verdict(10_000.0, &off),
            "2x: goodput >= 90% of max NOT met; admitted p99 < 50 ms NOT met; 503 within 1 ms n/a (no 503)"
        );
    }

    #[test]
    fn the_table_shows_goodput_against_the_maximum() {
        let mut max = run("max", 10_000.0, 1_000.0, 0.0);
        max.multiple = None;
        // 100,000 cycles in 10 engine CPU-s at the maximum; 95,000 in 19 at 2x: half as many
        // per CPU-second.
        let mut two = run("2x", 9_500.0, 2_000.0, 800.0);
        two.engine_cpu_s = Some(19.0);
        let t = table(10_000.0, &[max, two]);
        let row = t.lines().nth(3).unwrap_or_default();
        assert!(row.starts_with("2x"), "{t}");
        assert!(row.contains("95.0%"), "{t}");
        assert!(row.contains("2.000") && row.contains("0.800"), "{t}");
        assert!(row.trim_end().ends_with("19.00    50.0%"), "{t}");
    }

    #[test]
    fn xdp_counters_are_read_from_the_metrics_by_reason() {
        let metrics = "# HELP sipark_xdp_packets Frames seen by the XDP program, by verdict and reason\n\
                       # TYPE sipark_xdp_packets counter\n\
                       sipark_xdp_packets_total{action=\"pass\",reason=\"pass\"} 1200\n\
                       sipark_xdp_packets_total{action=\"drop\",reason=\"not_sip\"} 0\n\
                       sipark_xdp_packets_total{action=\"drop\",reason=\"shed\"} 30\n\
                       sipark_xdp_packets_total{action=\"pass\",reason=\"not_ours\"} 7\n\
                       sipark_xdp_packets_created{action=\"pass\",reason=\"pass\"} 99\n\
                       sipark_datagrams_in_total{worker=\"0\"} 1300\n";
        let counts = xdp_counts(metrics);
        let want = [("pass", 1200.0), ("not_sip", 0.0), ("shed", 30.0), ("not_ours", 7.0)];
        assert_eq!(counts, want.map(|(r, n)| (r.to_owned(), n)));
        assert_eq!(xdp_counts("sipark_handoff_ratio 0\n"), vec![]);
    }

    #[test]
    fn the_table_shows_the_xdp_frames_when_read() {
        let mut max = run("max", 10_000.0, 1_000.0, 0.0);
        max.multiple = None;
        max.xdp = Some(vec![("pass".into(), 500_000.0), ("not_ours".into(), 9.0)]);
        let mut two = run("2x", 9_500.0, 2_000.0, 800.0);
        two.xdp = Some(vec![("pass".into(), 400_000.0), ("shed".into(), 3.0), ("shed_ack".into(), 2.0)]);
        let four = run("4x", 9_000.0, 2_000.0, 800.0);
        let t = table(10_000.0, &[max.clone(), two, four]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].trim_end().ends_with("|                    XDP frames |    XDP's 503 (ms)")
                && lines[1].trim_end().ends_with("pass      shed  shed_ack |      p99      max"),
            "{t}"
        );
        let nic = "|    0.030    0.090";
        assert!(
            lines[2].trim_end().ends_with(&format!("|    500000         0         0 {nic}")),
            "a reason not counted is 0: {t}"
        );
        assert!(lines[3].trim_end().ends_with(&format!("|    400000         3         2 {nic}")), "{t}");
        assert!(lines[4].trim_end().ends_with(&format!("|         -         -         - {nic}")), "not read: {t}");
        max.xdp = None;
        assert!(!table(10_000.0, &[max]).contains("XDP"), "no XDP columns without counters");
    }

    #[test]
    fn xdp_counters_go_into_the_runs_json_and_the_summary() {
        let text = r#"{"rate_target":null,"rate_achieved":9000,"cycles_ok":90000,"cycles_failed":0,
            "cycles_shed_park":0,"cycles_shed_retrieve":0,"retransmissions_sent":0,"duplicates_received":0}"#;
        let counts = vec![("pass".to_owned(), 1200.0), ("shed".to_owned(), 30.0)];
        let with = with_xdp(text, &counts).unwrap_or_else(|e| panic!("{e}"));
        let r = Run::from_json("max", None, &with).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.xdp, Some(counts));
        assert_eq!((r.xdp_count("shed"), r.xdp_count("shed_ack")), (Some(30.0), Some(0.0)));
        assert_eq!(Run::from_json("max", None, text).map(|r| r.xdp), Ok(None));
        assert!(with_xdp("[1]", &[]).is_err());
        let args = OverloadArgs { multiples: vec![2.0], seconds: 3.0, xdp: true, load: vec![], engine: vec![] };
        let summary = summary_json(&args, 9000.0, &[r, run("2x", 9_000.0, 1.0, 1.0)]);
        let j = Json::parse(&summary).unwrap_or_else(|e| panic!("{e}\n{summary}"));
        assert_eq!(j.get("xdp"), Some(&Json::Bool(true)));
        let Some(Json::Arr(runs)) = j.get("runs") else { panic!("no runs in {summary}") };
        assert_eq!(runs[0].num(&["xdp_packets", "pass"]), Some(1200.0));
        assert_eq!(runs[1].get("xdp_packets"), Some(&Json::Null));
    }

    #[test]
    fn a_report_is_read_back() {
        let text = r#"{"rate_target":20000,"rate_achieved":9000.5,"cycles_ok":90005,"cycles_failed":0,
            "cycles_shed_park":1200,"cycles_shed_retrieve":3,"cycles_not_started":0,
            "park_notify":{"count":1,"p50_us":1,"p99_us":2,"p999_us":3,"max_us":4,"mean_us":1},
            "retrieve_200":{"count":1,"p50_us":1,"p99_us":5,"p999_us":6,"max_us":7,"mean_us":1},
            "cycle":{"count":1,"p50_us":1,"p99_us":8,"p999_us":9,"max_us":10,"mean_us":1},
            "shed_503":{"count":1200,"p50_us":100,"p99_us":300,"p999_us":400,"max_us":900,"mean_us":1},
            "retransmissions_sent":7,"duplicates_received":8,"engine_cpu_s":9.5}"#;
        let r = Run::from_json("2x", Some(2.0), text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.shed_park, r.shed_retrieve, r.cycle.p99_us), (1200.0, 3.0, 8.0));
        assert_eq!((r.shed_503.p99_us, r.shed_503.max_us), (300.0, 900.0));
        assert!(Run::from_json("2x", None, "{}").is_err());
    }
}
