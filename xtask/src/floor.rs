//! The floor of a plain `cargo xtask bench`: after the engine's run, the same engine arguments
//! plus `--bare-io` (a bare UDP responder on the same worker I/O path: same `--io` backend,
//! `--workers`, sockets, rings, send path and pinning, and no SIP), driven by
//! `sipark-load --floor` with the same load arguments (closed-loop concurrency, duration or
//! cycles, warm-up) and a park cycle's datagram count and sizes. Its engine CPU per cycle is
//! read from `/proc/<pid>/stat` as the engine's is, and
//!
//! `floor ratio (engine CPU per cycle / bare I/O CPU per cycle): R`
//!
//! is printed next to the engine's figure, and added to the engine run's JSON as `floor` (the
//! floor run's own JSON) and `floor_ratio`. The floor's table goes to target/bench/floor.txt,
//! its JSON to target/bench/floor.json and the bare engine's log to
//! target/bench/sipark-bare.log.

use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sweep::{Json, jnum};
use crate::{has_flag, root, start_engine_probed, stop_engine};

/// Why a run gets no floor (`None`: it gets one).
pub(crate) fn skip_reason(load_args: &[OsString]) -> Option<&'static str> {
    if has_flag(load_args, "--rate") {
        return Some("an open-loop run (--rate); the floor runs closed loop only");
    }
    if has_flag(load_args, "--background-parked") {
        return Some("--background-parked has no bare equivalent");
    }
    None
}

/// Sends a bare request for a 16-byte reply to `addr` every 200 ms until the reply comes back,
/// `engine` exits, or `limit` passes. The request is `sipark::io::bare`'s format (xtask does not
/// link the engine): 2 bytes of wanted length, big-endian, then a tag the reply starts with.
fn wait_for_bare_answer(addr: SocketAddr, engine: &mut Child, limit: Duration) -> Result<(), String> {
    const PROBE: &[u8; 16] = b"\x00\x10xtask-probe-16";
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        if let Ok(Some(status)) = engine.try_wait() {
            return Err(format!("sipark --bare-io exited during start-up ({status})"));
        }
        if start.elapsed() > limit {
            return Err(format!("sipark --bare-io did not answer on {addr} within {limit:?}"));
        }
        let _ = sock.send_to(PROBE, addr);
        if let Ok((len, from)) = sock.recv_from(&mut buf)
            && from == addr
            && buf[..len] == PROBE[..]
        {
            return Ok(());
        }
    }
}

/// The engine's and the floor's figures, as printed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Floor {
    pub engine_us: f64,
    pub engine_cycles_per_cpu_s: f64,
    pub floor_us: f64,
    pub floor_cycles_per_cpu_s: f64,
    pub floor_failed: f64,
    pub datagrams_in: f64,
    pub datagrams_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
}

impl Floor {
    /// Reads both runs' JSON; `Err` names what is missing.
    pub(crate) fn from_json(engine: &Json, floor: &Json) -> Result<Floor, String> {
        let need = |j: &Json, who: &str, key: &str| j.num(&[key]).ok_or_else(|| format!("the {who} run has no {key}"));
        Ok(Floor {
            engine_us: need(engine, "engine", "engine_cpu_us_per_cycle")?,
            engine_cycles_per_cpu_s: need(engine, "engine", "cycles_per_engine_cpu_s")?,
            floor_us: need(floor, "floor", "engine_cpu_us_per_cycle")?,
            floor_cycles_per_cpu_s: need(floor, "floor", "cycles_per_engine_cpu_s")?,
            floor_failed: need(floor, "floor", "cycles_failed")?,
            datagrams_in: need(floor, "floor", "datagrams_in_per_cycle")?,
            datagrams_out: need(floor, "floor", "datagrams_out_per_cycle")?,
            bytes_in: need(floor, "floor", "bytes_in_per_cycle")?,
            bytes_out: need(floor, "floor", "bytes_out_per_cycle")?,
        })
    }

    /// Engine CPU per cycle over bare I/O CPU per cycle.
    pub(crate) fn ratio(&self) -> f64 {
        self.engine_us / self.floor_us
    }

    /// The lines printed after the engine's table.
    pub(crate) fn lines(&self) -> String {
        format!(
            "\nfloor: sipark --bare-io (same --io, --workers, sockets and pinning; no SIP), {:.0} datagrams in ({:.0} B) \
             and {:.0} out ({:.0} B) per cycle\n  \
             engine  {:>9.0} park cycles per engine CPU-s  {:>8.2} µs per cycle\n  \
             floor   {:>9.0} bare cycles per engine CPU-s  {:>8.2} µs per cycle  ({:.0} failed)\n\
             floor ratio (engine CPU per cycle / bare I/O CPU per cycle): {:.2}\n",
            self.datagrams_in,
            self.bytes_in,
            self.datagrams_out,
            self.bytes_out,
            self.engine_cycles_per_cpu_s,
            self.engine_us,
            self.floor_cycles_per_cpu_s,
            self.floor_us,
            self.floor_failed,
            self.ratio()
        )
    }
}

/// The engine run's JSON object with `"floor": <floor>` and `"floor_ratio": ratio` added as its
/// last members; checked to parse.
pub(crate) fn with_floor(engine_json: &str, floor_json: &str, ratio: f64) -> Result<String, String> {
    let body = engine_json.trim_end().strip_suffix('}').ok_or("the engine JSON is not an object")?;
    let text = format!("{body},\"floor\":{},\"floor_ratio\":{}}}\n", floor_json.trim(), jnum(ratio));
    Json::parse(&text).map_err(|e| format!("JSON with the floor added: {e}"))?;
    Ok(text)
}

/// Runs the floor after the engine's run and reports it; `engine_json` is the engine run's
/// JSON file, which gets the floor added. Returns whether it worked.
pub(crate) fn floor(
    release: &Path,
    load_args: &[OsString],
    engine_args: &[OsString],
    out_dir: &Path,
    engine_json: &Path,
) -> bool {
    let mut bare_args = engine_args.to_vec();
    bare_args.push("--bare-io".into());
    let json = out_dir.join("floor.json");
    let txt = out_dir.join("floor.txt");
    let _ = std::fs::remove_file(&json);
    let Ok((mut engine, addr)) = start_engine_probed(
        &release.join("sipark"),
        &bare_args,
        &out_dir.join("sipark-bare.log"),
        wait_for_bare_answer,
    ) else {
        return false;
    };
    let out = match std::fs::File::create(&txt) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xtask: cannot create {}: {e}", txt.display());
            stop_engine(&mut engine, Duration::from_secs(20));
            return false;
        }
    };
    eprintln!("xtask: the floor: sipark-load --floor against sipark --bare-io (pid {}) on {addr}", engine.id());
    let status = Command::new(release.join("sipark-load"))
        .current_dir(root())
        .arg("--floor")
        .arg("--engine-pid")
        .arg(engine.id().to_string())
        .arg("--target")
        .arg(addr.to_string())
        .args(load_args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(out)
        .status();
    stop_engine(&mut engine, Duration::from_secs(20));
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("xtask: sipark-load --floor: {s}; see {}", txt.display()),
        Err(e) => {
            eprintln!("xtask: cannot run sipark-load --floor: {e}");
            return false;
        }
    }
    match report(engine_json, &json) {
        Ok(text) => {
            print!("{text}");
            eprintln!(
                "xtask: floor table in {}; JSON in {} and {}",
                txt.display(),
                json.display(),
                engine_json.display()
            );
            true
        }
        Err(e) => {
            eprintln!("xtask: floor: {e}; see {}", txt.display());
            false
        }
    }
}

/// Reads both JSON files, adds the floor to the engine's, and returns the lines to print.
fn report(engine_json: &Path, floor_json: &Path) -> Result<String, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let (engine_text, floor_text) = (read(engine_json)?, read(floor_json)?);
    let parse = |t: &str, p: &Path| Json::parse(t).map_err(|e| format!("{}: {e}", p.display()));
    let f = Floor::from_json(&parse(&engine_text, engine_json)?, &parse(&floor_text, floor_json)?)?;
    let combined = with_floor(&engine_text, &floor_text, f.ratio())?;
    std::fs::write(engine_json, combined).map_err(|e| format!("{}: {e}", engine_json.display()))?;
    Ok(f.lines())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    const ENGINE: &str = r#"{"mode":"closed","cycles_ok":1000,"cycles_per_engine_cpu_s":16570.2,"engine_cpu_us_per_cycle":60.35,"background_lost":0}"#;
    const FLOOR: &str = r#"{"mode":"floor","datagrams_in_per_cycle":11,"datagrams_out_per_cycle":11,"bytes_in_per_cycle":3680,"bytes_out_per_cycle":6205,"cycles_failed":0,"cycles_per_engine_cpu_s":19528.1,"engine_cpu_us_per_cycle":51.21}"#;

    #[test]
    fn the_ratio_line_and_the_json() {
        let parse = |t: &str| Json::parse(t).unwrap_or_else(|e| panic!("{e}"));
        let f = Floor::from_json(&parse(ENGINE), &parse(FLOOR)).unwrap_or_else(|e| panic!("{e}"));
        let lines = f.lines();
        assert!(lines.contains("\nfloor ratio (engine CPU per cycle / bare I/O CPU per cycle): 1.18\n"), "{lines}");
        assert!(
            lines.contains("19528 bare cycles per engine CPU-s") && lines.contains("51.21 µs per cycle"),
            "{lines}"
        );
        let combined = with_floor(&format!("{ENGINE}\n"), FLOOR, f.ratio()).unwrap_or_else(|e| panic!("{e}"));
        let j = parse(&combined);
        assert_eq!(j.num(&["floor_ratio"]), Some(1.178));
        assert_eq!(j.num(&["floor", "engine_cpu_us_per_cycle"]), Some(51.21));
        assert_eq!(j.num(&["engine_cpu_us_per_cycle"]), Some(60.35), "the engine's own figures stay");
        assert!(with_floor("[1]", FLOOR, 1.0).is_err());
        assert!(Floor::from_json(&parse(ENGINE), &parse(r#"{"mode":"floor"}"#)).is_err(), "a floor without figures");
    }

    #[test]
    fn open_loop_and_background_runs_get_no_floor() {
        assert_eq!(skip_reason(&os(&["--concurrency", "128", "--duration", "5"])), None);
        assert!(skip_reason(&os(&["--rate", "1000"])).is_some());
        assert!(skip_reason(&os(&["--background-parked=10"])).is_some());
    }
}
