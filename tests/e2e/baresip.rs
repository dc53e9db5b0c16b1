//! baresip (Debian package `baresip`, 1.0.0) as a real phone in the end-to-end tests: one
//! process per phone, each with its own configuration directory in the test's artifact
//! directory, SIP on the phone's own loopback address, and audio that needs no sound card.
//!
//! The configuration (see [`Baresip::start`]):
//! * `sip_listen` and `net_interface` on 127.0.NET.host: SIP is bound there and SDP names it.
//!   baresip 1.0.0 binds its RTP sockets on the wildcard address, on a port of `rtp_ports`, so
//!   its RTP leaves from 127.0.0.1 (the kernel's source for loopback): a phone's media is known
//!   by its port, which no other socket on the machine can hold.
//! * `audio_source ausine,<Hz>`: a sine at 48 kHz stereo (the only format `ausine` makes;
//!   `ausrc_srate`/`ausrc_channels` let baresip resample it to G.711's 8 kHz mono). No player
//!   module is loaded, so baresip decodes what it receives and plays it nowhere.
//! * modules `g711` (PCMU, PCMA), `ausine`, and the apps `account` (reads `accounts`) and `menu`
//!   (the `/dial` command of `-e`, automatic answer, and following a REFER: baresip's menu
//!   dials the Refer-To on its own, which is a blind transfer).
//! * one account `<sip:EXT@acme.example>;outbound="sip:<sipark>";regint=0;answermode=auto`: no
//!   REGISTER, incoming calls answered at once, and every request it starts sent to sipark
//!   (no DNS for acme.example).
//!
//! Each process is bounded: `-t` makes baresip quit by itself, and drop sends SIGTERM (baresip
//! hangs up its calls and exits), then SIGKILL.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Ctx, DOMAIN, tail};

/// How long a baresip may run before it quits by itself (`-t`).
const LIFETIME_S: u32 = 120;
/// How long baresip may take to load its modules and account.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the baresip binary; panics with a clear message when it is not installed: the test
/// must never pass without running.
pub fn baresip_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join("baresip");
        if cand.is_file() {
            return cand;
        }
    }
    panic!(
        "`baresip` (Debian package `baresip`) is not installed or not on PATH: the end-to-end \
         test of music on hold with real phones needs it. Run scripts/install-deps.sh (or \
         `cargo xtask test`, which runs it)."
    );
}

/// What a phone is.
pub struct Phone<'a> {
    /// The user part of its AoR (`<sip:ext@acme.example>`).
    pub ext: &'a str,
    /// It listens on 127.0.NET.host.
    pub host: u8,
    /// Its `rtp_ports` (inclusive).
    pub rtp_ports: (u16, u16),
    /// Where it sends every request it starts (sipark).
    pub outbound: SocketAddr,
    /// Extra account parameters, e.g. `audio_codecs=PCMA,PCMU`.
    pub params: &'a [&'a str],
    /// Commands run once baresip is ready (`-e`), e.g. `/dial sip:*88103@acme.example`.
    pub commands: &'a [String],
    /// The frequency of its sine, in Hz.
    pub tone_hz: u32,
}

/// A running baresip; stopped on drop.
pub struct Baresip {
    child: Option<Child>,
    label: String,
    /// Its SIP address (UDP).
    pub sip: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Writes `label`'s configuration into the artifact directory, starts baresip with it, and
    /// waits until it is ready (its modules and account loaded, its SIP socket bound).
    pub fn start(ctx: &Ctx, label: &str, phone: &Phone<'_>) -> Baresip {
        let bin = baresip_bin();
        let sip = ctx.addr(phone.host);
        let ip: Ipv4Addr = ctx.ip(phone.host);
        let dir = ctx.path(&format!("{label}.baresip"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut config = String::new();
        let _ = writeln!(config, "poll_method\t\tepoll");
        let _ = writeln!(config, "sip_listen\t\t{sip}");
        let _ = writeln!(config, "net_interface\t\t{ip}");
        let _ = writeln!(config, "call_local_timeout\t{LIFETIME_S}");
        let _ = writeln!(config, "call_max_calls\t\t4");
        let _ = writeln!(config, "audio_source\t\tausine,{}", phone.tone_hz);
        let _ = writeln!(config, "ausrc_srate\t\t48000");
        let _ = writeln!(config, "ausrc_channels\t\t2");
        let _ = writeln!(config, "audio_buffer\t\t20-160");
        let _ = writeln!(config, "rtp_ports\t\t{}-{}", phone.rtp_ports.0, phone.rtp_ports.1);
        let _ = writeln!(config, "rtp_timeout\t\t0");
        let _ = writeln!(config, "module_path\t\t/usr/lib/baresip/modules");
        let _ = writeln!(config, "module\t\t\tg711.so");
        let _ = writeln!(config, "module\t\t\tausine.so");
        let _ = writeln!(config, "module_app\t\taccount.so");
        let _ = writeln!(config, "module_app\t\tmenu.so");
        fs::write(dir.join("config"), config).expect("write baresip config");
        let mut account =
            format!("<sip:{}@{DOMAIN}>;outbound=\"sip:{}\";regint=0;answermode=auto", phone.ext, phone.outbound);
        for p in phone.params {
            account.push(';');
            account.push_str(p);
        }
        account.push('\n');
        fs::write(dir.join("accounts"), account).expect("write baresip accounts");

        let log = ctx.path(&format!("{label}.baresip.log"));
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log fd");
        let mut cmd = Command::new(&bin);
        // -s: SIP trace into the log.
        cmd.arg("-f").arg(&dir).arg("-s").arg("-t").arg(LIFETIME_S.to_string());
        for c in phone.commands {
            cmd.arg("-e").arg(c);
        }
        cmd.current_dir(&dir).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut b = Baresip { child: Some(child), label: label.to_string(), sip, log };
        b.wait_ready();
        b
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            if log.contains("baresip is ready.") {
                return;
            }
            let child = self.child.as_mut().expect("baresip running");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("baresip {} exited ({status}) before it was ready; its log:\n{}", self.label, tail(&log, 4000));
            }
            assert!(
                Instant::now() < deadline,
                "baresip {} not ready within {READY_TIMEOUT:?}; its log:\n{}",
                self.label,
                tail(&log, 4000)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far (stdout and stderr, with the SIP trace).
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// SIGTERM (baresip hangs up its calls and exits), then SIGKILL after `limit`. Returns
    /// whether it exited by itself.
    pub fn stop(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, not
            // reaped yet (we still hold its `Child`), so it cannot name another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
