//! `cargo xtask bench --guessing`: the online password-guessing attack of issue 13 against the
//! release engine (docs/decisions/0019-password-guessing.md), not a timed test.
//!
//! Three runs of `sipark-guess` (one source, one user of a tenant with
//! `users = { "101" = "739281" }`, guesses as fast as answers come), each against a fresh
//! `sipark --workers 2`:
//!
//! 1. `nobans`: `--auth-failures 0 --auth-user-failures 0`, on loopback: only the
//!    one-wrong-response-per-nonce rule, so every guess costs a second round trip;
//! 2. `bans`: the defaults, on loopback: time to the ban, and what reached the engine after it;
//! 3. `xdp`: the defaults with `--xdp` on one end of a veth pair, sipark in one network namespace
//!    and the attacker in another (root only; `--no-xdp` skips it): what reached a worker after
//!    the ban (the goal is none).
//!
//! Prints each run's report and a table; the reports are in target/bench/guessing/.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use crate::netns::{Netns, is_root};
use crate::{cargo_build, create_dir, start_engine, stop_engine, take_options, target_dir};

pub const USAGE: &str = "usage: cargo xtask bench --guessing [--seconds S] [--window N] [--no-xdp] \
[--engine ENGINE-ARGS...]";

/// The password of the tenant's one user: six digits, as in the issue.
const PASSWORD: &str = "739281";
const DOMAIN: &str = "acme.example";

/// `--guessing` options.
#[derive(Debug, Clone, PartialEq)]
pub struct GuessArgs {
    /// Seconds each run attacks.
    pub seconds: f64,
    /// Requests the attacker keeps in flight.
    pub window: usize,
    pub xdp: bool,
    pub engine: Vec<OsString>,
}

/// `Some` when `args` ask for `--guessing`.
pub fn parse_args(args: &[OsString]) -> Result<Option<GuessArgs>, String> {
    if !args.iter().any(|a| a == "--guessing") {
        return Ok(None);
    }
    let (ours, engine) = crate::split_bench_args(args);
    let no_xdp = ours.iter().any(|a| a == "--no-xdp");
    let ours: Vec<OsString> = ours.into_iter().filter(|a| a != "--guessing" && a != "--no-xdp").collect();
    let (opts, rest) = take_options(ours, &["--seconds", "--window"])?;
    if let Some(extra) = rest.first() {
        return Err(format!("--guessing: unexpected argument {extra:?}"));
    }
    let mut g = GuessArgs { seconds: 5.0, window: 32, xdp: !no_xdp, engine };
    for (name, value) in opts {
        match name.as_str() {
            "--seconds" => {
                g.seconds = value.parse().ok().filter(|s: &f64| *s > 0.0 && *s <= 600.0).ok_or("--seconds: 0 to 600")?
            }
            _ => g.window = value.parse().ok().filter(|w| *w > 0 && *w <= 4096).ok_or("--window: 1 to 4096")?,
        }
    }
    Ok(Some(g))
}

/// One run's `RESULT` line, as (key, value).
type Result_ = Vec<(String, String)>;

fn result_of(stdout: &str) -> Option<Result_> {
    let line = stdout.lines().rev().find(|l| l.starts_with("RESULT "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    )
}

fn get<'r>(r: &'r Result_, key: &str) -> &'r str {
    r.iter().find(|(k, _)| k == key).map_or("-", |(_, v)| v.as_str())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_tcp() -> Result<u16, ExitCode> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| {
        eprintln!("xtask: no free TCP port: {e}");
        ExitCode::FAILURE
    })
}

/// Runs `cmd`, echoing and returning its stdout.
fn run_guess(mut cmd: Command) -> Result<Result_, ExitCode> {
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| {
        eprintln!("xtask: cannot run sipark-guess: {e}");
        ExitCode::FAILURE
    })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    match out.status.code() {
        Some(0) => {}
        Some(1) => eprintln!("xtask: the guesser found the password"),
        other => {
            eprintln!("xtask: sipark-guess failed ({other:?})");
            return Err(ExitCode::FAILURE);
        }
    }
    result_of(&text).ok_or_else(|| {
        eprintln!("xtask: sipark-guess printed no RESULT line");
        ExitCode::FAILURE
    })
}

/// One run on loopback with `extra` engine flags.
fn loopback_run(g: &GuessArgs, label: &str, extra: &[&str], out: &Path, tenants: &Path) -> Result<Result_, ExitCode> {
    let release = target_dir().join("release");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_tcp()?));
    let mut args: Vec<OsString> = ["--no-pin", "--metrics", &metrics.to_string()].iter().map(OsString::from).collect();
    args.push("--tenants".into());
    args.push(tenants.into());
    args.extend(extra.iter().map(OsString::from));
    args.extend(g.engine.iter().cloned());
    let (mut engine, addr) = start_engine(&release.join("sipark"), &args, &out.join(format!("sipark-{label}.log")))?;
    let mut cmd = Command::new(release.join("sipark-guess"));
    cmd.args(["--target", &addr.to_string(), "--metrics", &metrics.to_string(), "--domain", DOMAIN]).args([
        "--seconds",
        &g.seconds.to_string(),
        "--window",
        &g.window.to_string(),
        "--label",
        label,
    ]);
    let r = run_guess(cmd);
    stop_engine(&mut engine, Duration::from_secs(10));
    r
}

/// The XDP run: sipark with `--xdp` in namespace A, the attacker in B.
fn xdp_run(g: &GuessArgs, out: &Path, tenants: &Path) -> Result<Result_, ExitCode> {
    let release = target_dir().join("release");
    let ns = Netns::new("guess", "vg", 201).map_err(|e| {
        eprintln!("xtask: {e}");
        ExitCode::FAILURE
    })?;
    let (sip, metrics) = (format!("{}:5060", ns.host(1)), format!("{}:9464", ns.host(1)));
    let mut args: Vec<OsString> =
        ["--listen", &sip, "--workers", "2", "--no-pin", "--metrics", &metrics, "--xdp", &ns.if_a]
            .iter()
            .map(OsString::from)
            .collect();
    args.push("--tenants".into());
    args.push(tenants.into());
    args.extend(g.engine.iter().cloned());
    let log_path = out.join("sipark-xdp.log");
    let mut engine =
        ns.start_engine(&release.join("sipark"), &args, &log_path, Duration::from_secs(20)).map_err(|e| {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        })?;
    let mut guess = Command::new("ip");
    guess
        .args(["netns", "exec", &ns.b])
        .arg(release.join("sipark-guess"))
        .args(["--target", &sip, "--bind", &ns.host(2), "--metrics", &metrics, "--domain", DOMAIN])
        .args(["--seconds", &g.seconds.to_string(), "--window", &g.window.to_string(), "--label", "xdp"]);
    let r = run_guess(guess);
    stop_engine(&mut engine, Duration::from_secs(10));
    r
}

pub fn guessing(g: &GuessArgs) -> ExitCode {
    let build =
        ["build", "--release", "-p", "sipark", "-p", "sipark-benches", "--bin", "sipark", "--bin", "sipark-guess"];
    if let Err(code) = cargo_build(&build, &[]) {
        return code;
    }
    let out: PathBuf = target_dir().join("bench").join("guessing");
    if let Err(code) = create_dir(&out) {
        return code;
    }
    let tenants = out.join("tenants.toml");
    let text = format!("[[tenant]]\ndomain = \"{DOMAIN}\"\nusers = {{ \"101\" = \"{PASSWORD}\" }}\n");
    if let Err(e) = std::fs::write(&tenants, text) {
        eprintln!("xtask: cannot write {}: {e}", tenants.display());
        return ExitCode::FAILURE;
    }
    let mut runs: Vec<(&str, Result_)> = Vec::new();
    for (label, extra) in [("nobans", &["--auth-failures", "0", "--auth-user-failures", "0"][..]), ("bans", &[][..])] {
        match loopback_run(g, label, extra, &out, &tenants) {
            Ok(r) => runs.push((label, r)),
            Err(code) => return code,
        }
    }
    if g.xdp && !is_root() {
        eprintln!("xtask: the XDP run needs root (network namespaces, XDP); skipped");
    } else if g.xdp {
        match xdp_run(g, &out, &tenants) {
            Ok(r) => runs.push(("xdp", r)),
            Err(code) => return code,
        }
    }
    let rows: [(&str, &str); 9] = [
        ("guesses answered (403)", "answered"),
        ("  per second, until the ban", "answered_per_s"),
        ("ban seen in the metrics (ms)", "ban_ms"),
        ("last answer (ms)", "last_answer_ms"),
        ("after the ban: seconds", "after_s"),
        ("  guesses sent", "sent_after"),
        ("  guesses evaluated per minute", "evaluated_per_min"),
        ("  datagrams reaching a worker", "reached_worker"),
        ("  dropped in XDP", "xdp_drops"),
    ];
    println!("\nguessing benchmark: one source, {} in flight, {} s per run", g.window, g.seconds);
    print!("{:<34}", "");
    for (label, _) in &runs {
        print!("{label:>12}");
    }
    println!();
    for (name, key) in rows {
        print!("{name:<34}");
        for (_, r) in &runs {
            print!("{:>12}", get(r, key));
        }
        println!();
    }
    let found = runs.iter().any(|(_, r)| get(r, "found") != "-");
    if found { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn guessing_arguments() {
        assert_eq!(parse_args(&os(&["--rate", "5"])), Ok(None));
        let g = parse_args(&os(&["--guessing", "--seconds", "2.5", "--no-xdp", "--engine", "--io", "mmsg"]))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("--guessing"));
        assert_eq!(g, GuessArgs { seconds: 2.5, window: 32, xdp: false, engine: os(&["--io", "mmsg"]) });
        assert!(parse_args(&os(&["--guessing", "--seconds", "0"])).is_err());
        assert!(parse_args(&os(&["--guessing", "--cycles", "3"])).is_err());
    }

    #[test]
    fn the_result_line_is_read() {
        let r = result_of("x\nRESULT label=bans answered=5 ban_ms=12\n").unwrap_or_else(|| panic!("no result"));
        assert_eq!((get(&r, "answered"), get(&r, "ban_ms"), get(&r, "xdp_drops")), ("5", "12", "-"));
    }
}
