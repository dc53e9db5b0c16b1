//! The real `sipark` binary run inside namespace A (`ip netns exec`), its
//! log in a per-test artifact directory (printed when the test fails), and
//! its metrics scraped from namespace B.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::sip::{Client, Outcome, options};
use crate::topo::Topo;

const BIN: &str = env!("CARGO_BIN_EXE_sipark");
/// The SIP port in namespace A.
pub const SIP_PORT: u16 = 5060;
/// The metrics port in namespace A.
pub const METRICS_PORT: u16 = 9464;
/// `--shutdown-grace`.
const GRACE_SECS: u64 = 1;
/// How long start-up (BPF load and attach included) may take.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running sipark in namespace A; stopped (SIGTERM, then SIGKILL) on drop,
/// with its log printed when the test is failing.
pub struct Engine {
    child: Option<Child>,
    log: PathBuf,
    pub sip: SocketAddr,
    pub metrics: SocketAddr,
    /// The "sipark started" log line.
    pub started: String,
    name: String,
}

/// Artifact directory for one engine run.
fn artifact_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("netns").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Engine {
    /// Starts `sipark --listen 10.S.T.1:5060 --workers 2 --no-pin --metrics
    /// 10.S.T.1:9464 EXTRA` in namespace A and waits for "sipark started";
    /// then waits until an OPTIONS for `probe_domain` sent from B is
    /// answered. `name` names the artifact directory.
    pub fn start(topo: &Topo, name: &str, extra: &[&str], probe_domain: &str) -> Engine {
        let dir = artifact_dir(name);
        let log = dir.join("engine.log");
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("cannot clone the log fd: {e}"));
        let sip = SocketAddr::new(topo.host(1).into(), SIP_PORT);
        let metrics = SocketAddr::new(topo.host(1).into(), METRICS_PORT);
        let (sip_s, metrics_s) = (sip.to_string(), metrics.to_string());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &topo.ns_a, BIN])
            .args(["--listen", &sip_s, "--workers", "2", "--no-pin", "--metrics", &metrics_s])
            .args(["--shutdown-grace", &GRACE_SECS.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let _ = writeln!(fs::File::create(dir.join("command.txt")).expect("command.txt"), "{cmd:?}");
        // `ip netns exec` execs the command in place (no fork): the child is
        // sipark itself, so signals reach it directly.
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `ip netns exec {} {BIN}`: {e}", topo.ns_a));
        let mut engine =
            Engine { child: Some(child), log, sip, metrics, started: String::new(), name: name.to_owned() };
        engine.started = engine.wait_log("sipark started", START_TIMEOUT);
        engine.wait_answering(topo, probe_domain);
        engine
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`; panics (log attached) if the
    /// engine exits first or the time runs out.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("sipark exited ({status}) before logging {needle:?} (its log follows)");
            }
            assert!(Instant::now() < end, "no log line with {needle:?} within {timeout:?} (the log follows)");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends OPTIONS for `domain` from B until one is answered 200 (10 s).
    fn wait_answering(&mut self, topo: &Topo, domain: &str) {
        let client = Client::bind(topo, 2);
        let end = Instant::now() + Duration::from_secs(10);
        for i in 0.. {
            let id = format!("probe-{i}");
            let req = options(domain, client.local, &id, None);
            match client.exchange(self.sip, &req, &id, Duration::from_millis(300)) {
                Outcome::Answered(200) => return,
                Outcome::Answered(code) => panic!("readiness OPTIONS for {domain} answered {code}, not 200"),
                Outcome::Silent => {}
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("sipark exited ({status}) during start-up (its log follows)");
            }
            assert!(Instant::now() < end, "sipark did not answer OPTIONS for {domain} from B within 10 s");
        }
    }

    /// `GET /metrics` over TCP from namespace B.
    pub fn scrape(&self, topo: &Topo) -> Metrics {
        let addr = self.metrics;
        let text = topo.in_b(|| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("cannot connect to the metrics endpoint {addr} from B: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sipark\r\n\r\n").expect("write the metrics request");
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap_or_else(|e| panic!("reading metrics from {addr}: {e}"));
            out
        });
        assert!(text.starts_with("HTTP/1.1 200 "), "metrics status from {addr}:\n{text}");
        Metrics::parse(&text)
    }

    /// SIGTERM, then waits (grace + 5 s) and panics unless it exits 0.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap_or_else(|| panic!("sipark already stopped"));
        signal(&child, libc::SIGTERM);
        match wait_timeout(&mut child, Duration::from_secs(GRACE_SECS + 5)) {
            Some(status) => {
                assert!(status.success(), "sipark exited with {status} after SIGTERM (its log follows)");
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sipark did not exit within {} s of SIGTERM (its log follows)", GRACE_SECS + 5);
            }
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own
    // child, not yet reaped (only the `Child` we hold can reap it).
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            if wait_timeout(&mut child, Duration::from_secs(GRACE_SECS + 3)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            let log = self.log();
            let keep = log.len().saturating_sub(12_000);
            let start = (keep..log.len()).find(|i| log.is_char_boundary(*i)).unwrap_or(log.len());
            eprintln!(
                "\n====== sipark log of `{}` ({}), last 12000 bytes ======\n{}",
                self.name,
                self.log.display(),
                &log[start..]
            );
        }
    }
}
