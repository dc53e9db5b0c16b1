//! Process plumbing for the end-to-end tests: the real `sipark` binary, SIPp processes, free
//! loopback ports, and per-test artifact directories whose logs are printed when a test fails.
//!
//! Every test gets its own 127.0.NET.0/24 loopback network (sipark on .1, every SIPp process
//! or Rust socket on its own host number) so that tests can run in parallel without sharing
//! addresses, and every process is bounded in time.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::sip::{Msg, Udp};

/// The tenant domain every test uses.
pub const DOMAIN: &str = "acme.example";

/// How long the engine may take to answer its first OPTIONS.
const ENGINE_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-test context: the loopback network and the artifact directory. Declare it first in a
/// test so that it is dropped last (after the processes have been stopped); when the test is
/// panicking, its drop prints the tail of every log in the directory.
pub struct Ctx {
    pub name: String,
    pub dir: PathBuf,
    net: u8,
    pub variant: Variant,
}

/// How the engine under test is run. Each test runs once per variant, on its own network
/// (`net` + [`Variant::net_offset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// As root with the default flags: io_uring, and BPF steering.
    Default,
    /// `--io mmsg`: the recvmmsg/sendmmsg backend.
    Mmsg,
    /// The way a locked-down container runs it: a seccomp filter refuses `io_uring_setup` with
    /// EPERM, and CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_PERFMON are dropped from the
    /// bounding set. The default `--io auto` must fall back to mmsg, steering must fall back to
    /// the kernel's hash and the cross-shard hand-off, and the log must say both.
    Restricted,
}

impl Variant {
    fn net_offset(self) -> u8 {
        match self {
            Variant::Default => 0,
            Variant::Mmsg => 100,
            Variant::Restricted => 150,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Mmsg => "mmsg",
            Variant::Restricted => "restricted",
        }
    }
}

impl Ctx {
    /// `net` must be below 100: the variants add 100 and 150 to it.
    pub fn new(name: &str, net: u8, variant: Variant) -> Ctx {
        // Every end-to-end test fails loudly without SIPp, even those that happen not to run it.
        sipp_bin();
        assert!(net < 100, "test network {net} must be below 100");
        let name = format!("{}/{name}", variant.name());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e").join(&name);
        // A previous run's leftovers would confuse the failure dump.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create artifact dir {}: {e}", dir.display()));
        Ctx { name, dir, net: net + variant.net_offset(), variant }
    }

    /// 127.0.NET.host
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, host)
    }

    /// 127.0.NET.host with a UDP port that is free right now.
    pub fn addr(&self, host: u8) -> SocketAddr {
        free_udp_addr(self.ip(host))
    }

    /// A Rust UDP socket on 127.0.NET.host (ephemeral port).
    pub fn udp(&self, host: u8) -> Udp {
        Udp::bind(self.ip(host))
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let mut out = String::new();
        let _ = writeln!(out, "\n====== e2e `{}` failed; artifacts in {} ======", self.name, self.dir.display());
        let mut files: Vec<PathBuf> =
            fs::read_dir(&self.dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        files.sort();
        for f in files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            if name.ends_with(".csv") {
                continue;
            }
            let keep = if name.starts_with("engine") {
                8000
            } else if name.ends_with("errors.log") {
                4000
            } else {
                2500
            };
            let text = fs::read(&f).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            if text.trim().is_empty() {
                continue;
            }
            let _ = writeln!(out, "------ {name} (last {keep} bytes) ------");
            let _ = writeln!(out, "{}", tail(&text, keep));
        }
        eprintln!("{out}");
    }
}

/// The last `n` bytes of `s` (on a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// An address on `ip` whose UDP port nobody holds right now.
pub fn free_udp_addr(ip: Ipv4Addr) -> SocketAddr {
    let sock =
        UdpSocket::bind(SocketAddrV4::new(ip, 0)).unwrap_or_else(|e| panic!("cannot bind a UDP socket on {ip}: {e}"));
    sock.local_addr().expect("local_addr")
}

/// Is something bound to exactly this UDP address? (Read from /proc/net/udp; `None` when that
/// cannot be read.)
fn udp_bound(addr: SocketAddr) -> Option<bool> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let table = fs::read_to_string("/proc/net/udp").ok()?;
    // Addresses are printed as the raw in-memory u32 in hex, then the port in hex.
    let want = format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.ip().octets()), v4.port());
    Some(table.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(want.as_str())))
}

fn wait_bound(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match udp_bound(addr) {
            Some(true) => return,
            Some(false) => {}
            None => {
                // No /proc: give the process a moment instead.
                thread::sleep(Duration::from_millis(500));
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before binding {addr}");
        }
        if Instant::now() > deadline {
            panic!("{what} did not bind {addr} within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, which has
    // not been reaped yet (we still hold the `Child` and only reap it through it).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits for `child` to exit, at most `limit`.
fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn open_log(path: &Path) -> fs::File {
    fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

/// Makes `cmd` run the way [`Variant::Restricted`] describes: capabilities dropped from the
/// bounding set, then a seccomp filter that fails `io_uring_setup` with EPERM (as Docker's
/// default profile does).
fn restrict(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    // CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF.
    const CAPS: [libc::c_ulong; 4] = [12, 21, 38, 39];
    let stmt = |code, k| libc::sock_filter { code, jt: 0, jf: 0, k };
    let filter = [
        stmt(LD_W_ABS, 4), // seccomp_data.arch
        libc::sock_filter { code: JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH },
        stmt(RET_K, RET_ALLOW),
        stmt(LD_W_ABS, 0), // seccomp_data.nr
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        stmt(RET_K, RET_ERRNO | libc::EPERM as u32),
        stmt(RET_K, RET_ALLOW),
    ];
    // SAFETY: the closure runs in the child between fork and exec and only makes system calls
    // (prctl), which are async-signal-safe; `filter` is moved into it and outlives the calls.
    unsafe {
        cmd.pre_exec(move || {
            for cap in CAPS {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running `sipark` (the real binary). Dropping it sends SIGTERM and waits (then SIGKILL).
pub struct Engine {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Engine {
    /// Starts sipark on 127.0.NET.1 with `--workers 2` plus `extra` flags and waits until it
    /// answers OPTIONS.
    pub fn start(ctx: &Ctx, extra: &[&str]) -> Engine {
        Engine::start_logging_to(ctx, "engine.log", extra)
    }

    /// [`Engine::start`], logging to `log` in the artifact directory (its name must start with
    /// `engine`), for a test that runs two engines.
    pub fn start_logging_to(ctx: &Ctx, log: &str, extra: &[&str]) -> Engine {
        assert!(log.starts_with("engine"), "{log}: the failure dump shows engine* logs");
        let addr = ctx.addr(1);
        let log = ctx.path(log);
        let out = open_log(&log);
        let err = out.try_clone().expect("clone log fd");
        let addr_s = addr.to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipark"));
        cmd.args(["--workers", "2", "--listen", &addr_s, "--advertise", &addr_s])
            // The scenarios written before music on hold expect the silent hold;
            // the music tests ask for `--moh` themselves.
            .args(if extra.contains(&"--moh") { &[][..] } else { &["--moh", "off"][..] })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        match ctx.variant {
            Variant::Default => {}
            Variant::Mmsg => {
                cmd.args(["--io", "mmsg"]);
            }
            Variant::Restricted => restrict(&mut cmd),
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_sipark")));
        let mut engine = Engine { child: Some(child), addr, log };
        engine.wait_ready(ctx);
        let want: &[&str] = match ctx.variant {
            Variant::Default => &["io=io_uring", "steering=true"],
            Variant::Mmsg => &["io=recvmmsg/sendmmsg", "steering=true"],
            Variant::Restricted => {
                &["io_uring unavailable", "io=recvmmsg/sendmmsg", "BPF steering unavailable", "steering=false"]
            }
        };
        // The workers answer before the main thread logs "sipark started".
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let log = engine.log();
            let missing: Vec<&&str> = want.iter().filter(|w| !log.contains(**w)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(Instant::now() < until, "{:?} engine log lacks {missing:?}:\n{log}", ctx.variant);
            thread::sleep(Duration::from_millis(20));
        }
        engine
    }

    fn wait_ready(&mut self, ctx: &Ctx) {
        let addr = self.addr;
        let child = self.child.as_mut().expect("engine running");
        wait_for_options(ctx, 250, addr, ENGINE_READY_TIMEOUT, child, "sipark", String::new);
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        if let Some(child) = self.child.as_ref() {
            send_signal(child, libc::SIGTERM);
        }
    }

    /// Waits at most `limit` for the engine to exit; panics if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("engine already reaped");
        match wait_timeout(&mut child, limit) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sipark did not exit within {limit:?} after SIGTERM");
            }
        }
    }

    /// SIGTERM, then waits at most `limit`; panics unless it exits with status 0.
    pub fn terminate_cleanly(&mut self, limit: Duration) {
        self.sigterm();
        let status = self.wait_exit(limit);
        assert!(status.success(), "sipark exited with {status} after SIGTERM (expected 0)");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&child, libc::SIGTERM);
            if wait_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// An address on 127.0.NET.host whose TCP port is free right now.
pub fn free_tcp(ctx: &Ctx, host: u8) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ctx.ip(host).into(), 0)).expect("bind TCP");
    l.local_addr().expect("local addr")
}

/// sipark's metrics page: `GET /metrics` from `addr` (connecting for up to 5 s).
pub fn scrape(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("metrics {addr}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read metrics");
    out
}

/// The sum over the workers of the series `name` (e.g. `sipark_auth_challenges_total`).
pub fn metric_sum(text: &str, name: &str) -> u64 {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') { rest.split_once("} ")?.1 } else { rest.strip_prefix(' ')? };
            value.trim().parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "no {name} series in the metrics:\n{text}");
    values.iter().sum()
}

// ---------------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------------

/// Path of the sipp binary; panics with a clear message when it is not installed: the
/// end-to-end tests must never pass without running.
pub fn sipp_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join("sipp");
        if cand.is_file() {
            return cand;
        }
    }
    panic!(
        "`sipp` (SIPp) is not installed or not on PATH: the end-to-end tests need it. \
         Run scripts/install-deps.sh (or `cargo xtask test`, which runs it)."
    );
}

fn scenario_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("sipp").join(file)
}

/// What to run SIPp with.
#[derive(Clone)]
pub struct SippSpec {
    scenario: &'static str,
    local: SocketAddr,
    remote: Option<SocketAddr>,
    calls: u32,
    rate: Option<(u32, u32)>,
    limit: Option<u32>,
    pause_ms: u32,
    timeout_s: u32,
    service: Option<String>,
    keys: Vec<(String, String)>,
    inf: Option<String>,
}

impl SippSpec {
    /// A client scenario sending to sipark.
    pub fn uac(scenario: &'static str, local: SocketAddr, engine: SocketAddr) -> SippSpec {
        SippSpec {
            scenario,
            local,
            remote: Some(engine),
            calls: 1,
            rate: None,
            limit: None,
            pause_ms: 0,
            timeout_s: 30,
            service: None,
            keys: vec![("domain".into(), DOMAIN.into())],
            inf: None,
        }
    }

    /// A server scenario waiting for sipark's requests on `local`.
    pub fn uas(scenario: &'static str, local: SocketAddr) -> SippSpec {
        SippSpec { remote: None, ..SippSpec::uac(scenario, local, local) }
    }

    /// `-m`: calls to complete before exiting.
    pub fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }

    /// `-r calls -rp period_ms`.
    pub fn rate(mut self, calls: u32, period_ms: u32) -> Self {
        self.rate = Some((calls, period_ms));
        self
    }

    /// `-l`: simultaneous calls.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// `-d`: length of the scenarios' `<pause/>`.
    pub fn pause_ms(mut self, ms: u32) -> Self {
        self.pause_ms = ms;
        self
    }

    /// `-timeout Ns -timeout_error`.
    pub fn timeout_s(mut self, s: u32) -> Self {
        self.timeout_s = s;
        self
    }

    /// `-s`: the Request-URI user part ([service]).
    pub fn service(mut self, s: &str) -> Self {
        self.service = Some(s.to_string());
        self
    }

    /// `-key name value`: a [name] keyword.
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.retain(|(k, _)| k != name);
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// Injection file content (`-inf`), e.g. "SEQUENTIAL\n103;acme.example;\n".
    pub fn inf(mut self, csv: &str) -> Self {
        self.inf = Some(csv.to_string());
        self
    }
}

/// A running SIPp process; killed on drop.
pub struct Sipp {
    child: Option<Child>,
    label: String,
    spec: SippSpec,
    started: Instant,
    files: SippFiles,
}

#[derive(Clone)]
struct SippFiles {
    stdout: PathBuf,
    stat: PathBuf,
    screen: PathBuf,
    errors: PathBuf,
    messages: PathBuf,
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippOutcome {
    pub label: String,
    pub code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub elapsed: Duration,
    errors: String,
    screen: String,
    messages: PathBuf,
}

impl Sipp {
    /// Starts SIPp. Server scenarios are only returned once their socket is bound, so that
    /// sipark's requests cannot arrive before SIPp listens.
    pub fn spawn(ctx: &Ctx, label: &str, spec: SippSpec) -> Sipp {
        let sipp = sipp_bin();
        let files = SippFiles {
            stdout: ctx.path(&format!("{label}.sipp.out")),
            stat: ctx.path(&format!("{label}.stat.csv")),
            screen: ctx.path(&format!("{label}.screen.log")),
            errors: ctx.path(&format!("{label}.errors.log")),
            messages: ctx.path(&format!("{label}.messages.log")),
        };
        let mut cmd = Command::new(sipp);
        cmd.arg("-sf").arg(scenario_path(spec.scenario));
        cmd.args(["-t", "u1", "-bind_local", "-nostdin"]);
        cmd.arg("-i").arg(spec.local.ip().to_string());
        cmd.arg("-p").arg(spec.local.port().to_string());
        cmd.arg("-m").arg(spec.calls.to_string());
        if let Some((calls, period)) = spec.rate {
            cmd.arg("-r").arg(calls.to_string());
            cmd.arg("-rp").arg(period.to_string());
        }
        if let Some(l) = spec.limit {
            cmd.arg("-l").arg(l.to_string());
        }
        cmd.arg("-d").arg(spec.pause_ms.to_string());
        cmd.arg("-timeout").arg(format!("{}s", spec.timeout_s)).arg("-timeout_error");
        if let Some(s) = &spec.service {
            cmd.arg("-s").arg(s);
        }
        for (k, v) in &spec.keys {
            cmd.arg("-key").arg(k).arg(v);
        }
        if let Some(csv) = &spec.inf {
            let inf = ctx.path(&format!("{label}.inf.csv"));
            fs::write(&inf, csv).expect("write injection file");
            cmd.arg("-inf").arg(inf);
        }
        cmd.args(["-trace_stat", "-fd", "1", "-stf"]).arg(&files.stat);
        cmd.arg("-trace_screen").arg("-screen_file").arg(&files.screen);
        cmd.arg("-trace_err").arg("-error_file").arg(&files.errors);
        cmd.arg("-trace_msg").arg("-message_file").arg(&files.messages);
        if let Some(remote) = spec.remote {
            cmd.arg(remote.to_string());
        }
        let out = open_log(&files.stdout);
        let err = out.try_clone().expect("clone fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start sipp for {label}: {e}"));
        if spec.remote.is_none() {
            wait_bound(spec.local, &mut child, &format!("sipp {label}"));
        }
        Sipp { child: Some(child), label: label.to_string(), spec, started: Instant::now(), files }
    }

    /// Has the process exited already?
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// The SIP messages this SIPp received so far (from its -trace_msg log), in order.
    pub fn received(&self) -> Vec<Msg> {
        read_message_log(&self.files.messages)
    }

    /// Waits until SIPp received `n` requests of `method` with distinct Call-IDs (or panics
    /// after `limit`); returns them.
    pub fn wait_requests(&mut self, method: &str, n: usize, limit: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + limit;
        loop {
            let got = distinct_requests(self.received(), method);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "sipp {} received {} {method} (distinct Call-IDs) within {limit:?}, \
                     expected {n}",
                    self.label,
                    got.len()
                );
            }
            if self.has_exited() {
                panic!("sipp {} exited after receiving {} {method}, expected {n}", self.label, got.len());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for SIPp to exit (its own -timeout bounds it; this adds a margin, then kills).
    pub fn wait(mut self) -> SippOutcome {
        let mut child = self.child.take().expect("sipp already reaped");
        let limit = Duration::from_secs(u64::from(self.spec.timeout_s) + 15);
        let status = match wait_timeout(&mut child, limit) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sipp {} still running {limit:?} after start despite -timeout", self.label);
            }
        };
        let elapsed = self.started.elapsed();
        let screen = read_lossy(&self.files.screen);
        let (successful, failed) = read_stats(&self.files.stat).or_else(|| screen_stats(&screen)).unwrap_or((0, 0));
        SippOutcome {
            label: self.label.clone(),
            code: status.code(),
            successful,
            failed,
            elapsed,
            errors: read_lossy(&self.files.errors),
            screen,
            messages: self.files.messages.clone(),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl SippOutcome {
    /// The SIP messages this SIPp received, in order.
    pub fn received(&self) -> Vec<Msg> {
        read_message_log(&self.messages)
    }

    /// Exit code 0, exactly `calls` successful calls and no failed call.
    pub fn assert_ok(&self, calls: u64) {
        if self.code == Some(0) && self.successful == calls && self.failed == 0 {
            return;
        }
        panic!(
            "sipp {}: exit code {:?}, {} successful / {} failed calls (expected exit 0, {calls} \
             successful, 0 failed)\n--- errors ---\n{}\n--- screen ---\n{}",
            self.label,
            self.code,
            self.successful,
            self.failed,
            tail(&self.errors, 3000),
            tail(&self.screen, 3000)
        );
    }
}

fn read_lossy(p: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// (SuccessfulCall(C), FailedCall(C)) from the last line of a -trace_stat CSV.
fn read_stats(p: &Path) -> Option<(u64, u64)> {
    let text = read_lossy(p);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
}

/// Fallback: the cumulative column of the screen dump.
fn screen_stats(screen: &str) -> Option<(u64, u64)> {
    let cumulative = |label: &str| -> Option<u64> {
        let line = screen.lines().rev().find(|l| l.trim_start().starts_with(label))?;
        line.rsplit('|').next()?.trim().parse().ok()
    };
    Some((cumulative("Successful call")?, cumulative("Failed call")?))
}

/// The messages SIPp logged as received, in order.
fn read_message_log(p: &Path) -> Vec<Msg> {
    let text = read_lossy(p);
    let mut out = Vec::new();
    for block in text.split("\n-----------------------------------------------") {
        // "<timestamp>\nUDP message received [N] bytes :\n\n<message>"
        let Some(pos) = block.find("message received [") else {
            continue;
        };
        let rest = &block[pos..];
        let Some(nl) = rest.find('\n') else {
            continue;
        };
        let msg = rest[nl + 1..].trim_start_matches(['\r', '\n']);
        // SIPp logs the message text followed by blank lines.
        let msg = msg.trim_end_matches(['\r', '\n']);
        if !msg.is_empty() {
            out.push(Msg::new(msg.replace("\r\n", "\n").replace('\n', "\r\n")));
        }
    }
    out
}

/// Requests of `method`, first occurrence per Call-ID (drops retransmissions), in order.
pub fn distinct_requests(msgs: Vec<Msg>, method: &str) -> Vec<Msg> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for m in msgs {
        if m.method() != Some(method) {
            continue;
        }
        let id = m.header("Call-ID").unwrap_or_default().to_string();
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        out.push(m);
    }
    out
}

/// Registers `ext`@DOMAIN with a Contact at `local` by running register.xml from `local`.
pub fn register_with_sipp(ctx: &Ctx, engine: &Engine, label: &str, local: SocketAddr, ext: &str) {
    let spec =
        SippSpec::uac("register.xml", local, engine.addr).inf(&format!("SEQUENTIAL\n{ext};{DOMAIN};\n")).timeout_s(15);
    Sipp::spawn(ctx, label, spec).wait().assert_ok(1);
}

/// Sends OPTIONS from `127.0.N.probe_host` to `addr` every 200 ms until a
/// 200 comes back. Panics if `child` (`what`) exits first, with `log()` in
/// the message, or after `timeout`.
pub fn wait_for_options(
    ctx: &Ctx,
    probe_host: u8,
    addr: SocketAddr,
    timeout: Duration,
    child: &mut Child,
    what: &str,
    log: impl Fn() -> String,
) {
    let probe = ctx.udp(probe_host);
    let deadline = Instant::now() + timeout;
    let mut n = 0u32;
    loop {
        n += 1;
        let call_id = format!("e2e-{what}-ready-{n}");
        probe.send(addr, &crate::sip::options(probe.addr, addr, &call_id));
        let until = Instant::now() + Duration::from_millis(200);
        while let Some((m, _)) = probe.recv_until(until) {
            if m.status() == Some(200) && m.header("Call-ID") == Some(call_id.as_str()) {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before answering OPTIONS on {addr}{}", log());
        }
        if Instant::now() > deadline {
            panic!("{what} did not answer OPTIONS on {addr} within {timeout:?}");
        }
    }
}
