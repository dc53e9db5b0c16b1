//! `cargo xtask bench --instructions`: instructions per park cycle inside the sans-IO shard,
//! counted by callgrind, the way rustls's `ci-bench` counts its handshakes. Instruction counts
//! repeat run to run where times on a shared, noisy machine do not.
//!
//! It builds the release `sipark-icount` (`benches/src/bin/sipark-icount.rs`: park cycles
//! through one in-memory `Shard`, the set-up of the `shard` criterion bench) and runs it under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*mem::icount_window`, so
//! that only the measured window is counted: the warm-up and the registrations before it run
//! with collection off. In that window:
//! * the total (callgrind's `summary:`/`totals:` line) is everything, the generator building
//!   and parsing its side of every message included;
//! * the shard's share is the inclusive cost of every call to a function whose name contains
//!   [`SHARD_ENTRY`]: the `load::mem::shard_entry` wrappers, the only place the drivers call
//!   the shard (`handle`, `timers`, `transmits`, `recycle`), with whatever they call.
//!
//! Both are divided by the cycles measured (which `sipark-icount` prints), printed, and written
//! to target/bench/instructions.json; the callgrind file and valgrind's log stay in
//! target/bench/icount/.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::sweep::{jnum, json_args, jstr, write_file};
use crate::{cargo_build, create_dir, root, take_options, target_dir};

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench --instructions [--warmup-cycles N] [--cycles N] [ICOUNT-ARGS...]
  --warmup-cycles N   cycles run before the measured window, not counted (default 40000: past the
                      32 s of virtual time after which the shard's tables are steady)
  --cycles N          cycles in the measured window (default 5000)
  ICOUNT-ARGS         other sipark-icount flags (--tenants, --extensions, --devices,
                      --concurrency, --step-us; defaults: the shard bench's 1000, 10, 2, 64, 100)
Runs sipark-icount under callgrind (valgrind 3.x) and prints instructions per park cycle inside
the shard and in all; writes target/bench/instructions.json.";

/// The toggle: callgrind collects only inside this function (the measured window).
pub(crate) const WINDOW_FN: &str = "*mem::icount_window";
/// A callee whose name contains this is a shard entry point (`load::mem::shard_entry::*`).
pub(crate) const SHARD_ENTRY: &str = "mem::shard_entry::";
/// Defaults of the counted run.
const WARMUP_CYCLES: u64 = 40_000;
const CYCLES: u64 = 5_000;

/// The arguments of an instruction count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IcountArgs {
    pub warmup_cycles: u64,
    pub cycles: u64,
    /// Passed to sipark-icount as they are.
    pub rest: Vec<OsString>,
}

/// `None` without `--instructions`. `--warmup-cycles` and `--cycles` are ours; the rest go to
/// sipark-icount.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<IcountArgs>, String> {
    if !args.iter().any(|a| a == "--instructions") {
        return Ok(None);
    }
    let args: Vec<OsString> = args.iter().filter(|a| *a != "--instructions").cloned().collect();
    if args.iter().any(|a| a == "--engine") {
        return Err("--instructions runs no engine: --engine does not apply".into());
    }
    let (options, rest) = take_options(args, &["--warmup-cycles", "--cycles"])?;
    let mut out = IcountArgs { warmup_cycles: WARMUP_CYCLES, cycles: CYCLES, rest };
    for (name, value) in options {
        let n: u64 = value.parse().map_err(|_| format!("{name} {value:?}: expected a whole number"))?;
        if name == "--cycles" {
            if n == 0 {
                return Err("--cycles must be at least 1".into());
            }
            out.cycles = n;
        } else {
            out.warmup_cycles = n;
        }
    }
    Ok(Some(out))
}

/// Instruction counts read from one callgrind output file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Every instruction collected (the `summary:` or `totals:` line).
    pub total: u64,
    /// Inclusive instructions of the calls to each matching function, by name, sorted by name.
    /// Calls from one matching function to another are not added again.
    pub matched: Vec<(String, u64)>,
}

impl Counts {
    /// The sum over [`Counts::matched`].
    pub(crate) fn matched_total(&self) -> u64 {
        self.matched.iter().map(|(_, n)| n).sum()
    }
}

/// A name in a callgrind file, `(id) name`, `(id)` or `name` (string compression), resolved
/// with `names`, which learns the definitions.
fn resolve(spec: &str, names: &mut std::collections::HashMap<String, String>) -> String {
    let spec = spec.trim();
    let Some(rest) = spec.strip_prefix('(') else {
        return spec.to_owned();
    };
    let Some((id, name)) = rest.split_once(')') else {
        return spec.to_owned();
    };
    let name = name.trim();
    if name.is_empty() {
        names.get(id).cloned().unwrap_or_default()
    } else {
        names.insert(id.to_owned(), name.to_owned());
        name.to_owned()
    }
}

/// Reads the `Ir` counts out of a callgrind output file (format version 1, with or without
/// string and position compression): the total, and the inclusive cost of every call to a
/// function whose name contains `needle`, by callee, leaving out calls made from inside such
/// a function so that nothing is counted twice.
pub(crate) fn parse_callgrind(text: &str, needle: &str) -> Result<Counts, String> {
    let mut positions = 1usize;
    let mut ir_column: Option<usize> = None;
    let mut summary: Option<u64> = None;
    let mut totals: Option<u64> = None;
    // Function names by compressed id; `fn=` and `cfn=` share one table.
    let mut names = std::collections::HashMap::new();
    let mut caller = String::new();
    let mut callee = String::new();
    let mut matched: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    let cost_of = |line: &str, positions: usize, col: usize| -> Option<u64> {
        // Missing trailing costs are zero.
        line.split_ascii_whitespace().skip(positions).nth(col).map_or(Some(0), |v| v.parse().ok())
    };
    while let Some(line) = lines.next() {
        if let Some(v) = line.strip_prefix("positions:") {
            positions = v.split_ascii_whitespace().count().max(1);
        } else if let Some(v) = line.strip_prefix("events:") {
            ir_column = v.split_ascii_whitespace().position(|e| e == "Ir");
        } else if let Some(v) = line.strip_prefix("summary:") {
            summary = v.split_ascii_whitespace().nth(ir_column.unwrap_or(0)).and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("totals:") {
            totals = v.split_ascii_whitespace().nth(ir_column.unwrap_or(0)).and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("fn=") {
            caller = resolve(v, &mut names);
        } else if let Some(v) = line.strip_prefix("cfn=") {
            callee = resolve(v, &mut names);
        } else if line.starts_with("calls=") {
            // The next line is the call's position and its inclusive cost.
            let Some(cost_line) = lines.next() else {
                return Err("a calls= line ends the file".into());
            };
            if callee.contains(needle) && !caller.contains(needle) {
                let col = ir_column.ok_or("no `events:` line with Ir before the first call")?;
                let cost = cost_of(cost_line, positions, col)
                    .ok_or_else(|| format!("unreadable cost line after a call: {cost_line:?}"))?;
                *matched.entry(callee.clone()).or_default() += cost;
            }
        }
    }
    if ir_column.is_none() {
        return Err("no `events:` line naming Ir: not a callgrind file?".into());
    }
    let total = match (summary, totals) {
        (Some(s), Some(t)) if s != t => return Err(format!("summary {s} and totals {t} differ")),
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err("no summary: or totals: line".into()),
    };
    Ok(Counts { total, matched: matched.into_iter().collect() })
}

/// `key=value` lines of sipark-icount's output.
fn value_of(out: &str, key: &str) -> Option<u64> {
    out.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
}

/// 1234567 as "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The short name of a wrapper: `...::shard_entry::handle` → `handle`.
fn short(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

/// What one counted run found, per cycle.
#[derive(Debug, Clone, PartialEq)]
struct PerCycle {
    cycles: u64,
    warmup_cycles: u64,
    datagrams_in: u64,
    datagrams_out: u64,
    counts: Counts,
}

impl PerCycle {
    fn shard(&self) -> f64 {
        self.counts.matched_total() as f64 / self.cycles as f64
    }

    fn total(&self) -> f64 {
        self.counts.total as f64 / self.cycles as f64
    }

    fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "instructions per park cycle (callgrind Ir; one in-memory Shard; {} cycles measured after {} warm-up cycles)",
            grouped(self.cycles),
            grouped(self.warmup_cycles)
        );
        let parts: Vec<String> = self
            .counts
            .matched
            .iter()
            .map(|(n, c)| format!("{} {}", short(n), grouped((*c as f64 / self.cycles as f64).round() as u64)))
            .collect();
        let _ = writeln!(
            o,
            "  inside the shard        {:>10}   ({})",
            grouped(self.shard().round() as u64),
            parts.join(", ")
        );
        let _ = writeln!(o, "  total, driver included  {:>10}", grouped(self.total().round() as u64));
        let _ = writeln!(
            o,
            "  datagrams per cycle     {:.2} in, {:.2} out",
            self.datagrams_in as f64 / self.cycles as f64,
            self.datagrams_out as f64 / self.cycles as f64
        );
        o
    }

    fn json(&self, args: &IcountArgs) -> String {
        let parts: Vec<String> = self
            .counts
            .matched
            .iter()
            .map(|(n, c)| format!("{}:{}", jstr(short(n)), jnum(*c as f64 / self.cycles as f64)))
            .collect();
        format!(
            "{{\"tool\":\"callgrind\",\"event\":\"Ir\",\"cycles\":{},\"warmup_cycles\":{},\"datagrams_in\":{},\
             \"datagrams_out\":{},\"instructions_total\":{},\"instructions_shard\":{},\
             \"shard_per_cycle\":{},\"total_per_cycle\":{},\"shard_per_cycle_by_entry\":{{{}}},\
             \"icount_args\":[{}]}}\n",
            self.cycles,
            self.warmup_cycles,
            self.datagrams_in,
            self.datagrams_out,
            self.counts.total,
            self.counts.matched_total(),
            jnum(self.shard()),
            jnum(self.total()),
            parts.join(","),
            json_args(&args.rest)
        )
    }
}

/// Runs the count; the exit code says whether it worked.
pub(crate) fn instructions(args: &IcountArgs) -> ExitCode {
    match Command::new("valgrind").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("xtask: --instructions needs valgrind on PATH (apt-get install valgrind)");
            return ExitCode::FAILURE;
        }
    }
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bins"], &[]) {
        return code;
    }
    let out_dir = target_dir().join("bench");
    let dir = out_dir.join("icount");
    if let Err(code) = create_dir(&dir) {
        return code;
    }
    match count(args, &dir) {
        Ok(r) => {
            print!("{}", r.table());
            let json = out_dir.join("instructions.json");
            if !write_file(&json, &r.json(args)) {
                return ExitCode::FAILURE;
            }
            eprintln!("xtask: JSON in {}; callgrind file in {}", json.display(), dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs sipark-icount under callgrind in `dir` and reads what it counted.
fn count(args: &IcountArgs, dir: &Path) -> Result<PerCycle, String> {
    let out_file = dir.join("callgrind.out");
    let log = dir.join("valgrind.log");
    let _ = std::fs::remove_file(&out_file);
    let bin = target_dir().join("release").join("sipark-icount");
    let mut cmd = Command::new("valgrind");
    cmd.current_dir(root())
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(format!("--log-file={}", log.display()))
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={WINDOW_FN}"))
        .arg(&bin)
        .arg("--warmup-cycles")
        .arg(args.warmup_cycles.to_string())
        .arg("--cycles")
        .arg(args.cycles.to_string())
        .args(&args.rest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    eprintln!(
        "xtask: {} under callgrind: {} warm-up cycles, then {} counted (a few minutes)",
        bin.display(),
        args.warmup_cycles,
        args.cycles
    );
    let output = cmd.output().map_err(|e| format!("cannot run valgrind: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("sipark-icount under callgrind: {}; see {}\n{stdout}", output.status, log.display()));
    }
    let cycles = value_of(&stdout, "measured_cycles").ok_or_else(|| format!("no measured_cycles= in:\n{stdout}"))?;
    if cycles != args.cycles {
        return Err(format!("sipark-icount measured {cycles} cycles, not {}", args.cycles));
    }
    if value_of(&stdout, "errors") != Some(0) {
        return Err(format!("retransmissions or misdirected datagrams: the count would be off\n{stdout}"));
    }
    let text = std::fs::read_to_string(&out_file).map_err(|e| format!("{}: {e}", out_file.display()))?;
    let counts = parse_callgrind(&text, SHARD_ENTRY).map_err(|e| format!("{}: {e}", out_file.display()))?;
    if counts.total == 0 {
        return Err(format!("callgrind collected nothing: no function matched --toggle-collect={WINDOW_FN}"));
    }
    if counts.matched.is_empty() || counts.matched_total() > counts.total {
        return Err(format!(
            "no call to a function named *{SHARD_ENTRY}* inside the window (or more than the total): \
             were the shard wrappers renamed or inlined?"
        ));
    }
    Ok(PerCycle {
        cycles,
        warmup_cycles: args.warmup_cycles,
        datagrams_in: value_of(&stdout, "datagrams_in").unwrap_or(0),
        datagrams_out: value_of(&stdout, "datagrams_out").unwrap_or(0),
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    /// Cut from a real callgrind.out of `sipark-icount --warmup-cycles 2000 --cycles 500`
    /// (valgrind 3.19, `--compress-strings=no --compress-pos=no`): the header, the pump's
    /// calls into the shard entry points, one call from inside an entry point, and the end.
    const SAMPLE: &str = "# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 13075
cmd:  /work/wt-bench/target/release/sipark-icount --warmup-cycles 2000 --cycles 500
part: 1

positions: line
events: Ir
summary: 199868382


ob=/work/wt-bench/target/release/sipark-icount
fl=/work/wt-bench/benches/src/load/mem.rs
fn=sipark_benches::load::mem::ShardCycles::pump
268 5500
cfn=sipark_benches::load::mem::shard_entry::timers
calls=27500 76 
268 3536604
269 38500
cfn=sipark_benches::load::mem::shard_entry::handle
calls=47500 70 
269 135316081
0 11000
270 5500
cfn=sipark_benches::load::mem::shard_entry::transmits
calls=47500 86 
270 361000
cfn=<std::sys::pal::unix::time::Timespec>::sub_timespec
calls=47500 106 
78 203500
cfn=sipark_benches::load::mem::shard_entry::recycle
calls=27500 95 
290 165000
291 11000

fn=sipark_benches::load::mem::shard_entry::handle
70 5500
cfn=sipark_benches::load::mem::shard_entry::recycle
calls=10 95 
71 999
cfn=sipark::proto::shard::Shard::handle_message_from
calls=5500 352 
71 120000000

totals: 199868382
";

    #[test]
    fn callgrind_inclusive_costs_of_the_shard_entry_points() {
        let c = parse_callgrind(SAMPLE, SHARD_ENTRY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.total, 199_868_382);
        let names: Vec<&str> = c.matched.iter().map(|(n, _)| short(n)).collect();
        assert_eq!(names, ["handle", "recycle", "timers", "transmits"]);
        // The recycle called from inside handle is already in handle's inclusive cost.
        assert_eq!(c.matched[1].1, 165_000);
        assert_eq!(c.matched_total(), 3_536_604 + 135_316_081 + 361_000 + 165_000);
    }

    #[test]
    fn compressed_names_and_missing_costs_are_read() {
        let text = "events: Ir Dr\npositions: instr line\nsummary: 1000 7\n\
                    fn=(1) main\ncfn=(2) a::mem::shard_entry::handle\ncalls=1 0x10 5\n0x20 6 400 3\n\
                    fn=(3) other\ncfn=(2)\ncalls=2 0x10 5\n+2 * 250\ncfn=(4) a::mem::shard_entry::timers\ncalls=1 0x30 1\n0x40 9\n";
        let c = parse_callgrind(text, SHARD_ENTRY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.total, 1000);
        assert_eq!(
            c.matched,
            vec![("a::mem::shard_entry::handle".to_owned(), 650), ("a::mem::shard_entry::timers".to_owned(), 0)]
        );
    }

    #[test]
    fn not_a_callgrind_file_is_an_error() {
        assert!(parse_callgrind("hello\n", SHARD_ENTRY).is_err());
        assert!(parse_callgrind("events: Ir\n", SHARD_ENTRY).is_err(), "no total");
        assert!(parse_callgrind("events: Ir\nsummary: 5\ntotals: 6\n", SHARD_ENTRY).is_err(), "disagree");
        assert!(parse_callgrind("events: Ir\nsummary: 5\ncfn=x\ncalls=1 2\n", SHARD_ENTRY).is_err(), "cut");
    }

    #[test]
    fn instruction_arguments() {
        assert_eq!(parse_args(&os(&["--cycles", "5"])), Ok(None));
        let a = parse_args(&os(&["--instructions", "--cycles=300", "--tenants", "10"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("not an icount"));
        assert_eq!(a, IcountArgs { warmup_cycles: WARMUP_CYCLES, cycles: 300, rest: os(&["--tenants", "10"]) });
        assert!(parse_args(&os(&["--instructions", "--cycles", "0"])).is_err());
        assert!(parse_args(&os(&["--instructions", "--warmup-cycles", "x"])).is_err());
        assert!(parse_args(&os(&["--instructions", "--engine", "--workers", "1"])).is_err());
    }

    #[test]
    fn sipark_icount_output_and_numbers() {
        let out = "warmup_cycles=40000\nmeasured_cycles=5000\nerrors=0\n";
        assert_eq!(value_of(out, "measured_cycles"), Some(5000));
        assert_eq!(value_of(out, "errors"), Some(0));
        assert_eq!(value_of(out, "cycles"), None);
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
    }
}
