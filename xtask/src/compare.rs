//! `cargo xtask compare`: the park-spot signalling cost of a traditional deployment (Kamailio
//! as registrar and presence server, tests/kamailio/presence.cfg) against sipark's, measured
//! side by side on loopback.
//!
//! Traditional: every tenant has `--spots` park-spot extensions that REGISTER, and `--watchers`
//! phones that each hold one BLF `Event: dialog` subscription per spot; the phones also
//! register their own extension. Every registration and subscription is refreshed every
//! `--expiry` seconds (time compressed: real deployments use about 3600 s), the refreshes spread
//! evenly. During the parks window the PBX PUBLISHes park state (dialog-info, `confirmed`, then
//! `terminated` after the hold) for `--parks-per-minute` spots, and Kamailio NOTIFYs watchers.
//!
//! sipark: the same tenants and phones; the phones register their own extension (same expiry)
//! and nothing else. During the parks window a caller parks calls on the phones' extensions
//! (INVITE `*68<ext>` with Referred-By, ACK, BYE after the hold); sipark sends park-info
//! NOTIFYs, which the phones answer.
//!
//! The clients are std UDP sockets in this process (one per role); they count every datagram
//! in both directions. Server CPU is utime + stime from /proc (every process of Kamailio's
//! process group; the sipark process). Each model gets a ramp of `--expiry` seconds (the first
//! registrations and subscriptions, spread like the refreshes), then an idle window and a parks
//! window of `--seconds / 2` each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::{
    cargo_build, clock_ticks_per_sec, create_dir, free_port, parse_proc_stat, root, start_engine, stop_engine,
    take_options, target_dir,
};

pub(crate) const USAGE: &str = "usage: cargo xtask compare [--tenants T] [--spots S] [--watchers W] [--expiry SECS]
                           [--seconds SECS] [--parks-per-minute N] [--hold SECS]
  --tenants T            tenants (default 1000)
  --spots S              park-spot extensions per tenant, traditional model (default 10)
  --watchers W           phones per tenant; traditional: each watches every spot (default 5)
  --expiry SECS          REGISTER and SUBSCRIBE expiry, time compressed (default 60; real: 3600)
  --seconds SECS         measured time per model: half idle, half parks (default 60)
  --parks-per-minute N   parks started per minute in the parks window (default 120)
  --hold SECS            time a call stays parked (default 5)";

/// Where the Debian package keeps the presence module.
const PRESENCE_SO: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kamailio/modules/presence_dialoginfo.so",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules/presence_dialoginfo.so",
    "/usr/lib/kamailio/modules/presence_dialoginfo.so",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompareArgs {
    pub tenants: u32,
    pub spots: u32,
    pub watchers: u32,
    pub expiry: u32,
    pub seconds: u32,
    pub parks_per_minute: u32,
    pub hold: u32,
}

impl Default for CompareArgs {
    fn default() -> Self {
        CompareArgs { tenants: 1000, spots: 10, watchers: 5, expiry: 60, seconds: 60, parks_per_minute: 120, hold: 5 }
    }
}

impl CompareArgs {
    /// Length of the idle window and of the parks window.
    fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.seconds / 2))
    }
}

/// Parses `cargo xtask compare` arguments (`--name V` or `--name=V`).
pub(crate) fn parse_args(args: &[OsString]) -> Result<CompareArgs, String> {
    let mut a = CompareArgs::default();
    let names = ["--tenants", "--spots", "--watchers", "--expiry", "--seconds", "--parks-per-minute", "--hold"];
    let (options, rest) = take_options(args.to_vec(), &names)?;
    if let Some(arg) = rest.first() {
        return Err(format!("unknown argument `{}`", arg.to_string_lossy()));
    }
    for (name, v) in options {
        let name = name.as_str();
        let slot = match name {
            "--tenants" => (&mut a.tenants, 1, 100_000),
            "--spots" => (&mut a.spots, 1, 100),
            "--watchers" => (&mut a.watchers, 1, 100),
            "--expiry" => (&mut a.expiry, 10, 3600),
            "--seconds" => (&mut a.seconds, 4, 3600),
            "--parks-per-minute" => (&mut a.parks_per_minute, 0, 60_000),
            "--hold" => (&mut a.hold, 1, 600),
            _ => unreachable!("take_options returns only the names asked for"),
        };
        let (field, min, max) = slot;
        *field = v
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{name}: expected an integer in {min}..={max}, got `{v}`"))?;
    }
    let subs = u64::from(a.tenants) * u64::from(a.spots) * u64::from(a.watchers);
    if subs > 1_000_000 {
        return Err(format!("{subs} subscriptions (tenants x spots x watchers) is more than 1,000,000"));
    }
    if a.hold + 1 >= a.seconds / 2 {
        return Err(format!("--hold ({}) must be shorter than the parks window (--seconds / 2 - 1)", a.hold));
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// Minimal SIP text helpers (the clients only need a few headers).

/// The value of the first header `name` (or its compact form), trimmed; case-insensitive.
pub(crate) fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name).next()
}

/// Every value of header `name` (or its compact form), one per header line, in order.
fn headers<'a>(msg: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let compact = match name.to_ascii_lowercase().as_str() {
        "call-id" => Some("i"),
        "via" => Some("v"),
        "from" => Some("f"),
        "to" => Some("t"),
        "contact" => Some("m"),
        "event" => Some("o"),
        "content-length" => Some("l"),
        "content-type" => Some("c"),
        _ => None,
    };
    let name = name.to_string();
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n").skip(1).filter_map(move |line| {
        let (n, v) = line.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(&name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))).then(|| v.trim())
    })
}

/// The `tag` parameter of a From/To value.
pub(crate) fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// The status code of a response, `None` for a request.
pub(crate) fn status_of(msg: &str) -> Option<u16> {
    let rest = msg.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// The method of a request, `None` for a response.
pub(crate) fn method_of(msg: &str) -> Option<&str> {
    if msg.starts_with("SIP/") {
        return None;
    }
    msg.split(' ').next().filter(|m| !m.is_empty())
}

/// The method named in the CSeq header.
fn cseq_method(msg: &str) -> Option<&str> {
    header(msg, "CSeq")?.split_ascii_whitespace().nth(1)
}

/// The URI inside the first `<...>` of a header value, or the value up to `;`.
fn uri_in(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// A `200 OK` (or other `status`) for `req`: its Vias, From, To (with `to_tag` added when it
/// has none), Call-ID and CSeq. `None` when a mandatory header is missing.
pub(crate) fn response_to(req: &str, status: u16, reason: &str, to_tag: &str) -> Option<String> {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    let mut vias = 0;
    for v in headers(req, "Via") {
        let _ = write!(out, "Via: {v}\r\n");
        vias += 1;
    }
    if vias == 0 {
        return None;
    }
    let _ = write!(out, "From: {}\r\n", header(req, "From")?);
    let to = header(req, "To")?;
    if tag_of(to).is_some() {
        let _ = write!(out, "To: {to}\r\n");
    } else {
        let _ = write!(out, "To: {to};tag={to_tag}\r\n");
    }
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "Call-ID")?,
        header(req, "CSeq")?
    );
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Counting sockets.

/// Datagrams sent and received on one role's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    sent: u64,
    recv: u64,
}

impl Count {
    fn total(self) -> u64 {
        self.sent + self.recv
    }

    fn since(self, earlier: Count) -> Count {
        Count { sent: self.sent - earlier.sent, recv: self.recv - earlier.recv }
    }
}

/// One role's non-blocking socket and its counters.
struct Role {
    sock: UdpSocket,
    addr: SocketAddr,
    count: Count,
    send_errors: u64,
}

impl Role {
    fn new() -> Result<Role, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| format!("nonblocking: {e}"))?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        Ok(Role { sock, addr, count: Count::default(), send_errors: 0 })
    }

    fn send(&mut self, data: &str, to: SocketAddr) {
        // A full socket buffer is retried briefly: the counts must match what went out.
        for _ in 0..100 {
            match self.sock.send_to(data.as_bytes(), to) {
                Ok(_) => {
                    self.count.sent += 1;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(200)),
                Err(_) => break,
            }
        }
        self.send_errors += 1;
    }

    /// The next datagram, if one is waiting (at most 64 KiB; others are dropped).
    fn recv(&mut self, buf: &mut [u8]) -> Option<(String, SocketAddr)> {
        loop {
            match self.sock.recv_from(buf) {
                Ok((n, from)) => {
                    self.count.recv += 1;
                    return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }
}

/// Due times of periodic jobs, earliest first.
type Schedule = BinaryHeap<Reverse<(Instant, usize)>>;

/// Spreads `n` jobs evenly over `period` starting at `start`.
fn spread(n: usize, start: Instant, period: Duration) -> Schedule {
    let mut s = Schedule::with_capacity(n);
    for i in 0..n {
        let offset = period.mul_f64(i as f64 / n.max(1) as f64);
        s.push(Reverse((start + offset, i)));
    }
    s
}

/// Pops every job due at `now`, pushing it back `period` later.
fn due(s: &mut Schedule, now: Instant, period: Duration, mut f: impl FnMut(usize)) {
    while let Some(Reverse((at, i))) = s.peek().copied() {
        if at > now {
            break;
        }
        s.pop();
        f(i);
        s.push(Reverse((at + period, i)));
    }
}

fn tenant_domain(t: u32) -> String {
    format!("t{t}.compare.example")
}

fn spot_user(s: u32) -> String {
    format!("7{:02}", s + 1)
}

fn phone_user(w: u32) -> String {
    format!("1{:02}", w)
}

fn register(user: &str, domain: &str, me: SocketAddr, call_id: &str, cseq: u32, expiry: u32) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}.{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=r{cseq}\r\nTo: <sip:{user}@{domain}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\nExpires: {expiry}\r\n\
         User-Agent: xtask-compare\r\nContent-Length: 0\r\n\r\n"
    )
}

/// One registration: the user, the domain, its Call-ID and next CSeq.
struct Reg {
    user: String,
    domain: String,
    call_id: String,
    cseq: u32,
}

fn regs_for(tenants: u32, per_tenant: u32, user: fn(u32) -> String, tag: &str) -> Vec<Reg> {
    let mut v = Vec::with_capacity((tenants * per_tenant) as usize);
    for t in 0..tenants {
        for i in 0..per_tenant {
            v.push(Reg { user: user(i), domain: tenant_domain(t), call_id: format!("{tag}-{t}-{i}@xtask"), cseq: 1 });
        }
    }
    v
}

/// What one model's clients saw in one window.
#[derive(Clone, Debug, Default)]
struct Window {
    secs: f64,
    /// Park-related datagrams (both directions) by kind, e.g. "spot REGISTER".
    park: Vec<(&'static str, Count)>,
    /// The phones' own REGISTER traffic (both models have it).
    phone_reg: Count,
    /// Call signalling of the parks themselves (sipark model only: INVITE/ACK/BYE and replies).
    calls: Count,
    cpu_secs: f64,
    parks: u64,
    errors: Vec<String>,
}

impl Window {
    fn park_total(&self) -> u64 {
        self.park.iter().map(|(_, c)| c.total()).sum()
    }
}

/// Clock ticks used so far by every process in process group `pgid`.
fn group_cpu_ticks(pgid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut sum = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if stat_pgrp(&stat) == Some(pgid)
            && let Some((_, own, _)) = parse_proc_stat(&stat)
        {
            sum += own;
        }
    }
    sum
}

/// The process group (field 5) of a `/proc/<pid>/stat` line.
pub(crate) fn stat_pgrp(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(2)?.parse().ok()
}

fn pid_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_proc_stat(&s))
        .map_or(0, |(_, own, _)| own)
}

// ---------------------------------------------------------------------------------------------
// Traditional model.

struct Sub {
    watcher: u32,
    tenant: u32,
    spot: u32,
    call_id: String,
    to_tag: Option<String>,
    cseq: u32,
}

struct Trad {
    server: SocketAddr,
    expiry: u32,
    phone_role: Role,
    spot_role: Role,
    watch_role: Role,
    pub_role: Role,
    phones: Vec<Reg>,
    spots: Vec<Reg>,
    subs: Vec<Sub>,
    sub_by_call: HashMap<String, usize>,
    /// Per spot: the SIP-ETag of its live publication and when that expires.
    etags: Vec<Option<(String, Instant)>>,
    pub_by_call: HashMap<String, usize>,
    pub_seq: u64,
    notifies: u64,
    errors: HashMap<String, u64>,
    buf: Vec<u8>,
}

impl Trad {
    fn new(a: &CompareArgs, server: SocketAddr) -> Result<Trad, String> {
        let phones = regs_for(a.tenants, a.watchers, phone_user, "tp");
        let spots = regs_for(a.tenants, a.spots, spot_user, "ts");
        let mut subs = Vec::with_capacity((a.tenants * a.watchers * a.spots) as usize);
        let mut sub_by_call = HashMap::new();
        for t in 0..a.tenants {
            for w in 0..a.watchers {
                for s in 0..a.spots {
                    let call_id = format!("sub-{t}-{w}-{s}@xtask");
                    sub_by_call.insert(call_id.clone(), subs.len());
                    subs.push(Sub { watcher: w, tenant: t, spot: s, call_id, to_tag: None, cseq: 1 });
                }
            }
        }
        Ok(Trad {
            server,
            expiry: a.expiry,
            phone_role: Role::new()?,
            spot_role: Role::new()?,
            watch_role: Role::new()?,
            pub_role: Role::new()?,
            etags: vec![None; spots.len()],
            phones,
            spots,
            subs,
            sub_by_call,
            pub_by_call: HashMap::new(),
            pub_seq: 0,
            notifies: 0,
            errors: HashMap::new(),
            buf: vec![0; 65536],
        })
    }

    fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }

    fn send_reg(role: &mut Role, reg: &mut Reg, server: SocketAddr, expiry: u32) {
        let msg = register(&reg.user, &reg.domain, role.addr, &reg.call_id, reg.cseq, expiry);
        reg.cseq += 1;
        role.send(&msg, server);
    }

    fn send_sub(&mut self, i: usize) {
        let me = self.watch_role.addr;
        let sub = &mut self.subs[i];
        let domain = tenant_domain(sub.tenant);
        let (spot, phone) = (spot_user(sub.spot), phone_user(sub.watcher));
        let to = match &sub.to_tag {
            Some(tag) => format!("<sip:{spot}@{domain}>;tag={tag}"),
            None => format!("<sip:{spot}@{domain}>"),
        };
        let msg = format!(
            "SUBSCRIBE sip:{spot}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKs{i}.{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{phone}@{domain}>;tag=w{i}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{phone}@{me}>\r\nEvent: dialog\r\n\
             Accept: application/dialog-info+xml\r\nExpires: {expiry}\r\nUser-Agent: xtask-compare\r\n\
             Content-Length: 0\r\n\r\n",
            cseq = sub.cseq,
            call_id = sub.call_id,
            expiry = self.expiry
        );
        sub.cseq += 1;
        self.watch_role.send(&msg, self.server);
    }

    /// PUBLISH park state `state` ("confirmed" or "terminated") for spot `s`.
    fn publish(&mut self, s: usize, state: &str, now: Instant) {
        let me = self.pub_role.addr;
        let (user, domain) = (self.spots[s].user.clone(), self.spots[s].domain.clone());
        self.pub_seq += 1;
        let n = self.pub_seq;
        let call_id = format!("pub-{n}@xtask");
        self.pub_by_call.insert(call_id.clone(), s);
        let body = format!(
            "<?xml version=\"1.0\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{n}\" \
             state=\"full\" entity=\"sip:{user}@{domain}\">\r\n<dialog id=\"park{n}\" direction=\"recipient\">\
             <state>{state}</state></dialog>\r\n</dialog-info>\r\n"
        );
        let if_match = match &self.etags[s] {
            Some((etag, until)) if *until > now => format!("SIP-If-Match: {etag}\r\n"),
            _ => String::new(),
        };
        let msg = format!(
            "PUBLISH sip:{user}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKp{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=p{n}\r\nTo: <sip:{user}@{domain}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 PUBLISH\r\nEvent: dialog\r\nExpires: {expiry}\r\n{if_match}\
             Content-Type: application/dialog-info+xml\r\nContent-Length: {len}\r\n\r\n{body}",
            expiry = self.expiry,
            len = body.len()
        );
        self.pub_role.send(&msg, self.server);
    }

    /// Handles everything waiting on the sockets.
    fn drain(&mut self, now: Instant) {
        let mut buf = std::mem::take(&mut self.buf);
        // Registration replies: counted only.
        while self.phone_role.recv(&mut buf).is_some() {}
        while let Some((msg, _)) = self.spot_role.recv(&mut buf) {
            if status_of(&msg).is_some_and(|s| s >= 300) {
                self.error(format!("spot REGISTER answered {}", status_of(&msg).unwrap_or(0)));
            }
        }
        while let Some((msg, from)) = self.watch_role.recv(&mut buf) {
            self.on_watcher_msg(&msg, from);
        }
        while let Some((msg, _)) = self.pub_role.recv(&mut buf) {
            let Some(status) = status_of(&msg) else { continue };
            if status < 200 {
                continue;
            }
            let spot = header(&msg, "Call-ID").and_then(|c| self.pub_by_call.remove(c));
            match (status, spot) {
                (200..=299, Some(s)) => {
                    if let Some(etag) = header(&msg, "SIP-ETag") {
                        let secs = header(&msg, "Expires").and_then(|e| e.parse().ok()).unwrap_or(self.expiry);
                        self.etags[s] =
                            Some((etag.to_string(), now + Duration::from_secs(u64::from(secs.saturating_sub(2)))));
                    }
                }
                (_, s) => {
                    if let Some(s) = s {
                        self.etags[s] = None;
                    }
                    self.error(format!("PUBLISH answered {status}"));
                }
            }
        }
        self.buf = buf;
    }

    fn on_watcher_msg(&mut self, msg: &str, from: SocketAddr) {
        if let Some(method) = method_of(msg) {
            if method == "NOTIFY" {
                self.notifies += 1;
                if let Some(ok) = response_to(msg, 200, "OK", "x") {
                    self.watch_role.send(&ok, from);
                }
            } else {
                self.error(format!("watcher got {method}"));
            }
            return;
        }
        let Some(status) = status_of(msg) else { return };
        if status < 200 || cseq_method(msg) != Some("SUBSCRIBE") {
            return;
        }
        let Some(i) = header(msg, "Call-ID").and_then(|c| self.sub_by_call.get(c)).copied() else {
            return;
        };
        if (200..300).contains(&status) {
            if self.subs[i].to_tag.is_none() {
                self.subs[i].to_tag = header(msg, "To").and_then(tag_of).map(str::to_string);
            }
        } else {
            // 481 and friends: the next refresh starts a new subscription.
            self.subs[i].to_tag = None;
            self.error(format!("SUBSCRIBE answered {status}"));
        }
    }

    fn counts(&self) -> Vec<(&'static str, Count)> {
        vec![
            ("spot REGISTER", self.spot_role.count),
            ("BLF SUBSCRIBE/NOTIFY", self.watch_role.count),
            ("PUBLISH", self.pub_role.count),
        ]
    }
}

/// A running Kamailio in its own process group.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
}

impl Kamailio {
    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

fn kamailio_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("kamailio"))
        .find(|p| p.is_file())
}

fn start_kamailio(bin: &Path, dir: &Path) -> Result<Kamailio, String> {
    let db = dir.join("db");
    let run = dir.join("run");
    for d in [&db, &run] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let templates = Path::new("/usr/share/kamailio/dbtext/kamailio");
    for t in ["version", "presentity", "active_watchers", "watchers", "xcap", "pua"] {
        std::fs::copy(templates.join(t), db.join(t))
            .map_err(|e| format!("cannot copy db_text table {t} from {}: {e}", templates.display()))?;
    }
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log_path = dir.join("kamailio.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(root().join("tests/kamailio/presence.cfg"));
    cmd.args(["-DD", "-E", "-n", "2", "-m", "512", "-M", "32"]);
    cmd.arg("-l").arg(format!("udp:{addr}"));
    cmd.arg("-A").arg(format!("DBURL=\"text://{}\"", db.display()));
    cmd.arg("-A").arg(format!("SERVER_ADDR=\"sip:{addr}\""));
    cmd.arg("-w").arg(dir).arg("-Y").arg(&run);
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut kam = Kamailio { child, addr };
    eprintln!("xtask: kamailio (pid {}) on {addr}, log in {}", kam.child.id(), log_path.display());
    if let Err(e) = crate::wait_for_answer("kamailio", addr, &mut kam.child, Duration::from_secs(15)) {
        return Err(format!("kamailio: {e} (see {})", log_path.display()));
    }
    Ok(kam)
}

/// Counters at a window boundary: park-related counts by kind, the phones' registrations,
/// Kamailio's CPU ticks, and when.
type TradMark = (Vec<(&'static str, Count)>, Count, u64, Instant);

/// Runs the traditional model against `kam`: ramp, idle window, parks window.
fn run_traditional(a: &CompareArgs, kam: &Kamailio) -> Result<(Window, Window), String> {
    let mut m = Trad::new(a, kam.addr)?;
    let period = Duration::from_secs(u64::from(a.expiry));
    let start = Instant::now();
    let mut phone_s = spread(m.phones.len(), start, period);
    let mut spot_s = spread(m.spots.len(), start, period);
    let mut sub_s = spread(m.subs.len(), start, period);
    let win = a.window();
    let idle_at = start + period + Duration::from_secs(2);
    let parks_at = idle_at + win;
    let end = parks_at + win;
    let mut next_park = parks_at;
    let park_gap = if a.parks_per_minute == 0 { win * 2 } else { Duration::from_secs(60) / a.parks_per_minute };
    let last_park_start = end - Duration::from_secs(u64::from(a.hold) + 1);
    let hold = Duration::from_secs(u64::from(a.hold));
    let mut ends: std::collections::VecDeque<(Instant, usize)> = std::collections::VecDeque::new();
    let mut park_n: usize = 0;
    let mut parks = 0u64;
    let pgid = kam.child.id();
    let ticks = clock_ticks_per_sec() as f64;
    let mut marks: Vec<TradMark> = Vec::new();
    let mut phase = 0;
    eprintln!(
        "xtask: traditional: {} phone + {} spot registrations, {} BLF subscriptions, refreshed every {} s; ramp {} s",
        m.phones.len(),
        m.spots.len(),
        m.subs.len(),
        a.expiry,
        a.expiry
    );
    loop {
        let now = Instant::now();
        if phase < 3 && now >= [idle_at, parks_at, end][phase] {
            marks.push((m.counts(), m.phone_role.count, group_cpu_ticks(pgid), now));
            phase += 1;
            match phase {
                1 => eprintln!("xtask: traditional: idle window ({} s)", win.as_secs()),
                2 => eprintln!(
                    "xtask: traditional: parks window ({} s, {} parks/min)",
                    win.as_secs(),
                    a.parks_per_minute
                ),
                _ => {}
            }
        }
        if phase == 3 {
            break;
        }
        let (server, expiry) = (m.server, m.expiry);
        due(&mut phone_s, now, period, |i| Trad::send_reg(&mut m.phone_role, &mut m.phones[i], server, expiry));
        due(&mut spot_s, now, period, |i| Trad::send_reg(&mut m.spot_role, &mut m.spots[i], server, expiry));
        let mut subs_due = Vec::new();
        due(&mut sub_s, now, period, |i| subs_due.push(i));
        for i in subs_due {
            m.send_sub(i);
        }
        if phase == 2 && a.parks_per_minute > 0 && now >= next_park && next_park <= last_park_start {
            // Spots taken round-robin across tenants: tenant k, spot k / tenants.
            let tenants = a.tenants as usize;
            let s = (park_n % tenants) * a.spots as usize + (park_n / tenants) % a.spots as usize;
            park_n += 1;
            parks += 1;
            m.publish(s, "confirmed", now);
            ends.push_back((now + hold, s));
            next_park += park_gap;
        }
        while let Some(&(at, s)) = ends.front() {
            if at > now {
                break;
            }
            ends.pop_front();
            m.publish(s, "terminated", now);
        }
        m.drain(now);
        std::thread::sleep(Duration::from_micros(500));
    }
    let mut errs: Vec<String> = m.errors.iter().map(|(k, v)| format!("{k} ({v}x)")).collect();
    let send_errors =
        m.phone_role.send_errors + m.spot_role.send_errors + m.watch_role.send_errors + m.pub_role.send_errors;
    if send_errors > 0 {
        errs.push(format!("{send_errors} client sends failed"));
    }
    errs.sort();
    let window = |from: usize, parks: u64| -> Window {
        let (c0, p0, t0, at0) = &marks[from];
        let (c1, p1, t1, at1) = &marks[from + 1];
        Window {
            secs: at1.duration_since(*at0).as_secs_f64(),
            park: c1.iter().zip(c0).map(|((k, b), (_, e))| (*k, b.since(*e))).collect(),
            phone_reg: p1.since(*p0),
            calls: Count::default(),
            cpu_secs: (t1 - t0) as f64 / ticks,
            parks,
            errors: errs.clone(),
        }
    };
    Ok((window(0, 0), window(1, parks)))
}

// ---------------------------------------------------------------------------------------------
// sipark model.

/// One park call in flight: the caller's Call-ID index and where it is.
struct Park {
    n: u64,
    to_tag: Option<String>,
    target: Option<String>,
    bye_at: Option<Instant>,
    done: bool,
}

fn run_sipark(a: &CompareArgs, server: SocketAddr, pid: u32) -> Result<(Window, Window), String> {
    let mut phone_role = Role::new()?;
    let mut caller = Role::new()?;
    let mut phones = regs_for(a.tenants, a.watchers, phone_user, "sp");
    let period = Duration::from_secs(u64::from(a.expiry));
    let start = Instant::now();
    let mut phone_s = spread(phones.len(), start, period);
    let win = a.window();
    let idle_at = start + period + Duration::from_secs(2);
    let parks_at = idle_at + win;
    let end = parks_at + win;
    let park_gap = if a.parks_per_minute == 0 { win * 2 } else { Duration::from_secs(60) / a.parks_per_minute };
    let last_park_start = end - Duration::from_secs(u64::from(a.hold) + 1);
    let hold = Duration::from_secs(u64::from(a.hold));
    let mut next_park = parks_at;
    let mut parks: Vec<Park> = Vec::new();
    let mut by_call: HashMap<String, usize> = HashMap::new();
    let mut notify_count = Count::default();
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let ticks = clock_ticks_per_sec() as f64;
    let mut marks: Vec<(Count, Count, Count, u64, Instant)> = Vec::new();
    let mut phase = 0;
    let mut completed = 0u64;
    let me = caller.addr;
    eprintln!(
        "xtask: sipark: {} phone registrations, refreshed every {} s; ramp {} s",
        phones.len(),
        a.expiry,
        a.expiry
    );
    loop {
        let now = Instant::now();
        if phase < 3 && now >= [idle_at, parks_at, end][phase] {
            marks.push((notify_count, phone_role.count, caller.count, pid_cpu_ticks(pid), now));
            phase += 1;
            match phase {
                1 => eprintln!("xtask: sipark: idle window ({} s)", win.as_secs()),
                2 => eprintln!("xtask: sipark: parks window ({} s, {} parks/min)", win.as_secs(), a.parks_per_minute),
                _ => {}
            }
        }
        if phase == 3 {
            break;
        }
        // sipark refuses expiries under 60 s (423, Min-Expires: 60): ask for at least that,
        // still refreshing every --expiry seconds.
        due(&mut phone_s, now, period, |i| Trad::send_reg(&mut phone_role, &mut phones[i], server, a.expiry.max(60)));
        if phase == 2 && a.parks_per_minute > 0 && now >= next_park && next_park <= last_park_start {
            let k = parks.len() as u64;
            let tenant = (k % u64::from(a.tenants)) as u32;
            let target = ((k / u64::from(a.tenants)) % u64::from(a.watchers)) as u32;
            let parker = (target + 1) % a.watchers;
            let domain = tenant_domain(tenant);
            let (ext, parker) = (phone_user(target), phone_user(parker));
            let call_id = format!("park-{k}@xtask");
            let sdp = format!(
                "v=0\r\no=xtask {k} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
                port = 20000 + (k % 10000) * 2
            );
            let invite = format!(
                "INVITE sip:*68{ext}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKi{k};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:999@{domain}>;tag=c{k}\r\nTo: <sip:*68{ext}@{domain}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:999@{me}>\r\n\
                 Referred-By: <sip:{parker}@{domain}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {len}\r\n\r\n{sdp}",
                len = sdp.len()
            );
            by_call.insert(call_id, parks.len());
            parks.push(Park { n: k, to_tag: None, target: None, bye_at: None, done: false });
            caller.send(&invite, server);
            next_park += park_gap;
        }
        // BYEs that are due.
        for p in parks.iter_mut() {
            if let (Some(at), Some(tag), Some(target)) = (p.bye_at, &p.to_tag, &p.target)
                && at <= now
            {
                let k = p.n;
                let bye = format!(
                    "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKb{k};rport\r\nMax-Forwards: 70\r\n\
                     From: <sip:999@x>;tag=c{k}\r\nTo: <sip:park@x>;tag={tag}\r\nCall-ID: park-{k}@xtask\r\n\
                     CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
                );
                p.bye_at = None;
                caller.send(&bye, server);
            }
        }
        while let Some((msg, from)) = phone_role.recv(&mut buf) {
            if method_of(&msg) == Some("NOTIFY") {
                notify_count.recv += 1;
                if let Some(ok) = response_to(&msg, 200, "OK", "ph") {
                    phone_role.send(&ok, from);
                    notify_count.sent += 1;
                }
            } else if let Some(s) = status_of(&msg).filter(|&s| s >= 300) {
                *errors.entry(format!("phone REGISTER answered {s}")).or_default() += 1;
            }
        }
        while let Some((msg, from)) = caller.recv(&mut buf) {
            let Some(&i) = header(&msg, "Call-ID").and_then(|c| by_call.get(c)) else { continue };
            if let Some(method) = method_of(&msg) {
                // A BYE from sipark (it should not send one here): answer it.
                if let Some(ok) = response_to(&msg, 200, "OK", "c") {
                    caller.send(&ok, from);
                }
                *errors.entry(format!("caller got {method}")).or_default() += 1;
                continue;
            }
            let Some(status) = status_of(&msg) else { continue };
            match (cseq_method(&msg), status) {
                (_, 100..=199) => {}
                (Some("INVITE"), 200..=299) => {
                    let p = &mut parks[i];
                    let tag = header(&msg, "To").and_then(tag_of).unwrap_or("").to_string();
                    let target = header(&msg, "Contact").map(uri_in).unwrap_or("").to_string();
                    let k = p.n;
                    let ack = format!(
                        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa{k};rport\r\nMax-Forwards: 70\r\n\
                         From: <sip:999@x>;tag=c{k}\r\nTo: <sip:park@x>;tag={tag}\r\nCall-ID: park-{k}@xtask\r\n\
                         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                    );
                    caller.send(&ack, from);
                    if p.to_tag.is_none() {
                        p.to_tag = Some(tag);
                        p.target = Some(target);
                        p.bye_at = Some(now + hold);
                    }
                }
                (Some("BYE"), 200..=299) => {
                    if !parks[i].done {
                        parks[i].done = true;
                        completed += 1;
                    }
                }
                (m, s) => {
                    *errors.entry(format!("{} answered {s}", m.unwrap_or("?"))).or_default() += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let mut errs: Vec<String> = errors.iter().map(|(k, v)| format!("{k} ({v}x)")).collect();
    if parks.len() as u64 != completed {
        errs.push(format!(
            "{} of {} parks did not complete (no 200 to the BYE)",
            parks.len() as u64 - completed,
            parks.len()
        ));
    }
    if phone_role.send_errors + caller.send_errors > 0 {
        errs.push(format!("{} client sends failed", phone_role.send_errors + caller.send_errors));
    }
    errs.sort();
    let window = |from: usize, parks: u64| -> Window {
        let (n0, p0, c0, t0, at0) = &marks[from];
        let (n1, p1, c1, t1, at1) = &marks[from + 1];
        let notes = n1.since(*n0);
        // The phone socket carries the REGISTERs and the NOTIFYs; split them.
        let phone = p1.since(*p0);
        Window {
            secs: at1.duration_since(*at0).as_secs_f64(),
            park: vec![("park-info NOTIFY", notes)],
            phone_reg: Count { sent: phone.sent - notes.sent, recv: phone.recv - notes.recv },
            calls: c1.since(*c0),
            cpu_secs: (t1 - t0) as f64 / ticks,
            parks,
            errors: errs.clone(),
        }
    };
    Ok((window(0, 0), window(1, parks.len() as u64)))
}

// ---------------------------------------------------------------------------------------------
// Report.

/// Scales a count over `secs` seconds to one hour.
pub(crate) fn per_hour(n: f64, secs: f64) -> f64 {
    if secs <= 0.0 { 0.0 } else { n * 3600.0 / secs }
}

/// A number with thousands separators (rounded), e.g. 12,345,678.
pub(crate) fn group(n: f64) -> String {
    let v = n.round().max(0.0) as u64;
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render(a: &CompareArgs, trad: &(Window, Window), sp: Option<&(Window, Window)>) -> String {
    let compress = 3600.0 / f64::from(a.expiry);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncompare: {} tenants; traditional: {} spots/tenant registered, {} phones/tenant each watching every spot \
         ({} BLF dialog subscriptions); sipark: {} phones/tenant registered, no spots, no subscriptions.",
        a.tenants,
        a.spots,
        a.watchers,
        u64::from(a.tenants) * u64::from(a.spots) * u64::from(a.watchers),
        a.watchers
    );
    let _ = writeln!(
        out,
        "time compressed: REGISTER/SUBSCRIBE expiry {} s (realistic: 3600 s, i.e. refresh traffic x{:.0} lower); \
         windows of {} s scaled to one hour; parks: {}/min, held {} s.",
        a.expiry,
        compress,
        a.window().as_secs(),
        a.parks_per_minute,
        a.hold
    );
    let _ = writeln!(
        out,
        "park-related messages = every datagram both ways at the clients: traditional: spot REGISTER, SUBSCRIBE, NOTIFY, PUBLISH and their replies; sipark: park-info NOTIFY and 200.\n"
    );
    let col = |w: Option<&Window>, f: &dyn Fn(&Window) -> String| w.map_or_else(|| "n/a".to_string(), f);
    let (ti, tp) = (&trad.0, &trad.1);
    let (si, spk) = (sp.map(|s| &s.0), sp.map(|s| &s.1));
    let rows: Vec<(String, String, String)> = vec![
        (
            format!("park-related msgs/h, idle ({} s expiry)", a.expiry),
            group(per_hour(ti.park_total() as f64, ti.secs)),
            col(si, &|w| group(per_hour(w.park_total() as f64, w.secs))),
        ),
        (
            "park-related msgs/h, idle (3600 s expiry)".into(),
            group(per_hour(ti.park_total() as f64, ti.secs) / compress),
            col(si, &|w| group(per_hour(w.park_total() as f64, w.secs) / compress)),
        ),
        (
            format!("park-related msgs/h, parks window ({} s expiry)", a.expiry),
            group(per_hour(tp.park_total() as f64, tp.secs)),
            col(spk, &|w| group(per_hour(w.park_total() as f64, w.secs))),
        ),
        (
            "park-related msgs per park (parks window minus idle rate)".into(),
            per_park(ti, tp),
            sp.map_or_else(|| "n/a".to_string(), |s| per_park(&s.0, &s.1)),
        ),
        ("parks in the window".into(), tp.parks.to_string(), col(spk, &|w| w.parks.to_string())),
        (
            format!("phones' own REGISTER msgs/h ({} s expiry, both models)", a.expiry),
            group(per_hour(ti.phone_reg.total() as f64, ti.secs)),
            col(si, &|w| group(per_hour(w.phone_reg.total() as f64, w.secs))),
        ),
        (
            "park call signalling msgs/h, parks window (INVITE/ACK/BYE + replies)".into(),
            "not simulated".into(),
            col(spk, &|w| group(per_hour(w.calls.total() as f64, w.secs))),
        ),
        (
            format!("server CPU s/h, idle ({} s expiry)", a.expiry),
            format!("{:.1}", per_hour(ti.cpu_secs, ti.secs)),
            col(si, &|w| format!("{:.1}", per_hour(w.cpu_secs, w.secs))),
        ),
        (
            "server CPU s/h, idle (3600 s expiry)".into(),
            format!("{:.2}", per_hour(ti.cpu_secs, ti.secs) / compress),
            col(si, &|w| format!("{:.2}", per_hour(w.cpu_secs, w.secs) / compress)),
        ),
        (
            format!("server CPU s/h, parks window ({} s expiry)", a.expiry),
            format!("{:.1}", per_hour(tp.cpu_secs, tp.secs)),
            col(spk, &|w| format!("{:.1}", per_hour(w.cpu_secs, w.secs))),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let _ = writeln!(out, "{:<w0$}  {:>22}  {:>14}", "", "traditional (Kamailio)", "sipark");
    for (k, t, s) in &rows {
        let _ = writeln!(out, "{k:<w0$}  {t:>22}  {s:>14}");
    }
    let _ = writeln!(
        out,
        "\nnotes: a traditional park = PUBLISH confirmed + PUBLISH terminated, each NOTIFYing all {w} watchers of the \
         spot; a sipark park = 2 park-info NOTIFYs to each contact registered for the park extension (1 phone \
         here). The park calls themselves (to the PBX's park spot, or sipark's *68 INVITE) exist in both models; \
         only sipark's are simulated and shown. CPU at 3600 s expiry scales the whole idle CPU by {e}/3600 \
         (both servers do little besides refreshes when idle). sipark runs with --workers 1; Kamailio with 2 UDP \
         children plus its timer processes.",
        w = a.watchers,
        e = a.expiry
    );
    let _ = writeln!(out, "\nbreakdown (datagrams sent+received by the clients):");
    for (name, w) in
        [("traditional idle", Some(ti)), ("traditional parks", Some(tp)), ("sipark idle", si), ("sipark parks", spk)]
    {
        if let Some(w) = w {
            let parts: Vec<String> =
                w.park.iter().map(|(k, c)| format!("{k} {} out / {} in", c.sent, c.recv)).collect();
            let _ = writeln!(out, "  {name:<18} {:.1} s: {}", w.secs, parts.join(", "));
        }
    }
    if let Some(s) = sp {
        let idle = per_hour(s.0.park_total() as f64, s.0.secs);
        let _ = writeln!(
            out,
            "\ngoal: {} idle messages per hour (sipark){}",
            group(idle),
            if s.0.park_total() == 0 { "" } else { "  <-- NOT MET" }
        );
    } else {
        let _ = writeln!(out, "\nsipark side not run");
    }
    let mut errors: Vec<String> = ti.errors.iter().map(|e| format!("traditional: {e}")).collect();
    if let Some(s) = sp {
        errors.extend(s.0.errors.iter().map(|e| format!("sipark: {e}")));
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "problems seen: {}", errors.join("; "));
    }
    out
}

fn per_park(idle: &Window, parks: &Window) -> String {
    if parks.parks == 0 {
        return "n/a".into();
    }
    let idle_rate = idle.park_total() as f64 / idle.secs.max(1e-9);
    let extra = parks.park_total() as f64 - idle_rate * parks.secs;
    format!("{:.1}", extra / parks.parks as f64)
}

pub(crate) fn compare(args: &[OsString]) -> ExitCode {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask compare: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(kam_bin) = kamailio_bin() else {
        eprintln!(
            "xtask compare: kamailio is not installed; run: apt-get install -y kamailio kamailio-presence-modules"
        );
        return ExitCode::from(2);
    };
    if !PRESENCE_SO.iter().any(|p| Path::new(p).is_file()) {
        eprintln!(
            "xtask compare: Kamailio's presence modules are missing; run: apt-get install -y kamailio-presence-modules"
        );
        return ExitCode::from(2);
    }
    if !Path::new("/usr/share/kamailio/dbtext/kamailio/presentity").is_file() {
        eprintln!("xtask compare: Kamailio's db_text tables are missing; run: apt-get install -y kamailio");
        return ExitCode::from(2);
    }
    let dir = target_dir().join("compare");
    if let Err(code) = create_dir(&dir) {
        return code;
    }
    if let Err(code) = cargo_build(&["build", "--release", "-p", "sipark", "--bin", "sipark"], &[]) {
        return code;
    }
    // Traditional.
    let mut kam = match start_kamailio(&kam_bin, &dir) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("xtask compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trad = run_traditional(&a, &kam);
    kam.stop();
    let trad = match trad {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask compare: traditional run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // sipark.
    let binary = target_dir().join("release").join("sipark");
    let engine_args: Vec<OsString> = ["--workers", "1"].map(OsString::from).to_vec();
    let sp = match start_engine(&binary, &engine_args, &dir.join("sipark.log")) {
        Ok((mut engine, addr)) => {
            let r = run_sipark(&a, addr, engine.id());
            stop_engine(&mut engine, Duration::from_secs(15));
            match r {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("xtask compare: sipark run failed: {e}");
                    None
                }
            }
        }
        Err(_) => None,
    };
    print!("{}", render(&a, &trad, sp.as_ref()));
    if sp.is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os;

    #[test]
    fn arguments_parse_with_defaults() {
        let a = parse_args(&[]).unwrap_or_else(|e| panic!("defaults refused: {e}"));
        assert_eq!(a, CompareArgs::default());
        let a = parse_args(&os(&[
            "--tenants",
            "10",
            "--spots=3",
            "--watchers",
            "2",
            "--expiry",
            "30",
            "--seconds=20",
            "--parks-per-minute",
            "0",
            "--hold",
            "2",
        ]))
        .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(
            a,
            CompareArgs { tenants: 10, spots: 3, watchers: 2, expiry: 30, seconds: 20, parks_per_minute: 0, hold: 2 }
        );
        assert_eq!(a.window(), Duration::from_secs(10));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["--tenants"][..],
            &["--tenants", "0"],
            &["--tenants", "many"],
            &["--expiry", "5"],
            &["--bogus", "1"],
            &["--hold", "30", "--seconds", "60"],
            &["--tenants", "100000", "--spots", "100", "--watchers", "100"],
        ] {
            if let Ok(a) = parse_args(&os(bad)) {
                panic!("{bad:?} was accepted as {a:?}");
            }
        }
    }

    const NOTIFY: &str = "NOTIFY sip:101@127.0.0.1:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa\r\n\
        v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\nFrom: <sip:701@t1.example>;tag=srv\r\nt: <sip:101@t1.example>;tag=w3\r\n\
        i: abc@x\r\nCSeq: 7 NOTIFY\r\nEvent: dialog\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn headers_are_found_by_long_and_compact_name() {
        assert_eq!(header(NOTIFY, "call-id"), Some("abc@x"));
        assert_eq!(header(NOTIFY, "To"), Some("<sip:101@t1.example>;tag=w3"));
        assert_eq!(headers(NOTIFY, "Via").count(), 2);
        assert_eq!(header(NOTIFY, "Expires"), None);
        assert_eq!(method_of(NOTIFY), Some("NOTIFY"));
        assert_eq!(status_of(NOTIFY), None);
        assert_eq!(cseq_method(NOTIFY), Some("NOTIFY"));
        assert_eq!(status_of("SIP/2.0 481 Call/Transaction Does Not Exist\r\n\r\n"), Some(481));
        assert_eq!(method_of("SIP/2.0 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn tags_and_uris_are_extracted() {
        assert_eq!(tag_of("<sip:a@b;tag=no>;tag=yes"), Some("yes"));
        assert_eq!(tag_of("<sip:a@b>"), None);
        assert_eq!(tag_of("sip:a@b;tag=t1"), Some("t1"));
        assert_eq!(uri_in("<sip:sp0@127.0.0.1:5060;transport=udp>;expires=3"), "sip:sp0@127.0.0.1:5060;transport=udp");
        assert_eq!(uri_in("sip:x@y;lr"), "sip:x@y");
    }

    #[test]
    fn responses_copy_the_transaction_headers() {
        let ok = response_to(NOTIFY, 200, "OK", "zz").unwrap_or_else(|| panic!("no response built"));
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert_eq!(headers(&ok, "Via").count(), 2, "{ok}");
        assert_eq!(header(&ok, "To"), Some("<sip:101@t1.example>;tag=w3"), "an existing To tag is kept");
        assert_eq!(header(&ok, "CSeq"), Some("7 NOTIFY"));
        assert!(ok.ends_with("Content-Length: 0\r\n\r\n"), "{ok}");
        let untagged = NOTIFY.replace(";tag=w3", "");
        let ok = response_to(&untagged, 200, "OK", "zz").unwrap_or_else(|| panic!("no response built"));
        assert_eq!(header(&ok, "To"), Some("<sip:101@t1.example>;tag=zz"));
        assert_eq!(response_to("NOTIFY sip:a SIP/2.0\r\nCSeq: 1 NOTIFY\r\n\r\n", 200, "OK", "t"), None);
    }

    #[test]
    fn schedules_spread_evenly_and_repeat() {
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut s = spread(4, t0, period);
        let mut seen = Vec::new();
        due(&mut s, t0 + Duration::from_millis(5_001), period, |i| seen.push(i));
        assert_eq!(seen, vec![0, 1, 2], "jobs at 0, 2.5 and 5 s are due at 5.001 s");
        seen.clear();
        due(&mut s, t0 + Duration::from_millis(10_000), period, |i| seen.push(i));
        assert_eq!(seen, vec![3, 0], "job 3 at 7.5 s, then job 0 again at 10 s");
    }

    #[test]
    fn report_helpers() {
        assert_eq!(per_hour(10.0, 30.0), 1200.0);
        assert_eq!(per_hour(10.0, 0.0), 0.0);
        assert_eq!(group(1_234_567.4), "1,234,567");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(0.0), "0");
        let stat = "1234 (kam (x) y) S 1 1200 1200 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 0 0";
        assert_eq!(stat_pgrp(stat), Some(1200));
        assert_eq!(parse_proc_stat(stat).map(|(_, own, _)| own), Some(10));
    }
}
