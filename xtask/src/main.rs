//! Developer tasks for the sipark workspace, run as `cargo xtask <task>`.
//!
//! * `cargo xtask test`: installs the test dependencies (scripts/install-deps.sh), then runs the
//!   whole workspace's tests in three cargo runs: doc-tests, the other crates, and last the
//!   engine's own suite (unit, parser, simulation, I/O and SIPp end-to-end tests), so that the
//!   last thing printed is the summary of a test binary that has tests. The exit code is the
//!   first failing run's. `cargo xtask test ARGS...` runs `cargo test --workspace ARGS...` instead.
//! * `cargo xtask run [ARGS...]`: `cargo run --release -p sipark -- [ARGS...]`.
//! * `cargo xtask install-deps`: only runs scripts/install-deps.sh.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <task> [ARGS...]

tasks:
  test             install test dependencies, then every test of the workspace
  test ARGS...     install test dependencies, then `cargo test --workspace ARGS...`
  run [ARGS...]    `cargo run --release -p sipark -- [ARGS...]`
  install-deps     run scripts/install-deps.sh only";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let task = args.next();
    let rest: Vec<OsString> = args.collect();
    match task.as_ref().and_then(|t| t.to_str()) {
        Some("test") => test(&rest),
        Some("run") => run(&rest),
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
