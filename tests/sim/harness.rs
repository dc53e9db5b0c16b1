//! The simulation harness: N shards, scripted phones, an in-memory network
//! and a virtual clock (in the manner of quinn-proto's test `Pair`).
//!
//! The clock never waits: each step jumps straight to the next thing that
//! can happen (a datagram arriving, a shard timer, a phone timer). The
//! network delays every datagram by `latency` plus a random share of
//! `reorder`, and loses or duplicates datagrams at the configured rates,
//! all from one seeded PRNG so that every run is reproducible.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipark::proto::config::Config;
use sipark::proto::route::{Owner, owner};
use sipark::proto::shard::{Ban, Packets, ParkEvent, Seed, Shard, WallClock};
use sipark::proto::sip::parse::SipMessage;
use sipark::proto::stats::ShardStats;

use crate::phone::Phone;

/// Unix time of the simulation's start: 2026-11-24T18:00:00Z.
pub const START_UNIX: u64 = 1_795_543_200;
/// The park-info `parked-at` of a call parked within the first second.
pub const START_UTC: &str = "2026-11-24T18:00:00Z";

/// xorshift64* — small, seeded, good enough for network dice.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Avoid the all-zero state and spread small seeds.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Network knobs.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub dup: f64,
    /// Up to this much extra random delay per copy (reorders datagrams).
    pub reorder: Duration,
    /// Probability that a copy arrives corrupted (1 to 3 random edits).
    pub corrupt: f64,
}

impl Default for Net {
    fn default() -> Self {
        Net { latency: Duration::from_millis(10), loss: 0.0, dup: 0.0, reorder: Duration::ZERO, corrupt: 0.0 }
    }
}

struct Flight {
    at: Instant,
    seq: u64,
    src: SocketAddr,
    dst: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Flight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Flight {}
impl PartialOrd for Flight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Flight {
    /// Reversed, so that `BinaryHeap` pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Most trace lines kept (for failure messages).
const TRACE_KEEP: usize = 400;
/// Most steps one `run_*` call may take before it is declared a livelock.
const MAX_STEPS: u64 = 3_000_000;
/// Most steps at one instant before it is declared a livelock.
const MAX_STEPS_SAME_INSTANT: u64 = 100_000;

/// The simulated world.
pub struct Sim {
    pub cfg: Arc<Config>,
    pub shards: Vec<Shard>,
    pub phones: Vec<Phone>,
    /// sipark's address (every shard's; the workers share one socket address).
    pub server: SocketAddr,
    pub start: Instant,
    pub now: Instant,
    pub net: Net,
    rng: Rng,
    flights: BinaryHeap<Flight>,
    seq: u64,
    by_addr: HashMap<SocketAddr, usize>,
    trace: VecDeque<String>,
    /// Datagrams sipark sent to an address no phone has (first line, bounded).
    pub stray: Vec<String>,
    /// Datagrams sipark sent (all copies before loss).
    pub server_sent: u64,
    /// Datagram copies the network corrupted.
    pub corrupted: u64,
    /// When set, every datagram delivered to sipark is also kept here
    /// (up to `CAPTURE_KEEP`), e.g. as a fuzzing corpus.
    pub capture: Option<Vec<(SocketAddr, Vec<u8>)>>,
    /// When set, every datagram sipark sent, with its destination, in order
    /// (up to `CAPTURE_KEEP`).
    pub sent: Option<Vec<(SocketAddr, Vec<u8>)>>,
    /// Every park-lifecycle event the shards reported: (shard, time since
    /// the start, event).
    pub events: Vec<(usize, Duration, ParkEvent)>,
    /// Every ban a shard decided: (shard, time since the start, ban). Each
    /// is handed to the other shards as the workers do
    /// ([`Shard::import_ban`]).
    pub bans: Vec<(usize, Duration, Ban)>,
    /// With [`Sim::enable_media`]: every music-on-hold packet the shards
    /// sent (time since the start, shard, destination, bytes), up to
    /// `RTP_KEEP`. RTP is not delivered to the phones.
    pub rtp: Option<Vec<Sent>>,
}

/// A music-on-hold packet a shard sent: time since the start, shard,
/// destination, bytes.
pub type Sent = (Duration, usize, SocketAddr, Vec<u8>);

/// Most packets `Sim::rtp` keeps.
pub const RTP_KEEP: usize = 200_000;

/// The port of shard `i`'s media socket with [`Sim::enable_media`].
pub fn media_port(i: usize) -> u16 {
    40_000 + 2 * i as u16
}

/// Most datagrams `Sim::capture` keeps.
pub const CAPTURE_KEEP: usize = 20_000;

impl Sim {
    /// A world with `n` shards sharing `cfg`; `seed` drives the network dice.
    pub fn new(n: u16, cfg: Config, seed: u64) -> Sim {
        Sim::with_seeds(n, cfg, seed, seed)
    }

    /// A world whose network dice come from `seed` and whose shards' entropy
    /// (hash keys, tags, Call-IDs) from `shard_seed`.
    pub fn with_seeds(n: u16, cfg: Config, seed: u64, shard_seed: u64) -> Sim {
        let start = Instant::now();
        let cfg = Arc::new(cfg);
        let wall = WallClock { at: start, unix: Duration::from_secs(START_UNIX) };
        // Each shard's entropy comes from the seed too: the same seed, the same run.
        let shards = (0..n)
            .map(|i| Shard::new(i, n, Arc::clone(&cfg), wall, Seed::from_u64(shard_seed ^ u64::from(i))))
            .collect();
        let server: SocketAddr = cfg.advertise.parse().unwrap_or_else(|e| panic!("advertise {:?}: {e}", cfg.advertise));
        Sim {
            cfg,
            shards,
            phones: Vec::new(),
            server,
            start,
            now: start,
            net: Net::default(),
            rng: Rng::new(seed),
            flights: BinaryHeap::new(),
            seq: 0,
            by_addr: HashMap::new(),
            trace: VecDeque::new(),
            stray: Vec::new(),
            server_sent: 0,
            corrupted: 0,
            capture: None,
            sent: None,
            events: Vec::new(),
            bans: Vec::new(),
            rtp: None,
        }
    }

    /// Gives each shard a media socket (sipark's address, port
    /// [`media_port`]), as the workers do: parks may get music on hold, and
    /// its packets are kept in `rtp`.
    pub fn enable_media(&mut self) {
        for (i, shard) in self.shards.iter_mut().enumerate() {
            shard.set_media(SocketAddr::new(self.server.ip(), media_port(i)));
        }
        self.rtp = Some(Vec::new());
    }

    /// The music-on-hold packets sent to `dst`: (time since the start,
    /// bytes).
    pub fn rtp_to(&self, dst: SocketAddr) -> Vec<(Duration, &[u8])> {
        let all = self.rtp.iter().flatten();
        all.filter(|(_, _, d, _)| *d == dst).map(|(t, _, _, b)| (*t, b.as_slice())).collect()
    }

    /// Sends each shard's music-on-hold packets due now into `rtp`.
    fn pump_media(&mut self) {
        let Some(rtp) = self.rtp.as_mut() else { return };
        let (now, elapsed) = (self.now, self.now - self.start);
        let mut out = Packets::with_limit(1024);
        for (i, shard) in self.shards.iter_mut().enumerate() {
            while shard.media_timeout().is_some_and(|t| t <= now) {
                out.clear();
                shard.poll_media(now, &mut out);
                for (dst, bytes) in out.iter() {
                    if rtp.len() < RTP_KEEP {
                        rtp.push((elapsed, i, dst, bytes.to_vec()));
                    }
                }
                if !out.is_full() {
                    break;
                }
            }
        }
    }

    /// Adds a phone for `user@domain`; returns its index in `phones`.
    pub fn add_phone(&mut self, user: &str, domain: &str, display: Option<&str>) -> usize {
        let id = self.phones.len();
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (id % 250) as u8));
        let addr = SocketAddr::new(ip, 5062 + id as u16);
        let phone = Phone::new(
            id,
            addr,
            user,
            domain,
            display,
            self.server,
            self.cfg.timers.t1,
            self.cfg.timers.t2,
            self.start,
        );
        self.by_addr.insert(addr, id);
        self.phones.push(phone);
        id
    }

    /// Time since the start of the simulation.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Sum of one counter over all shards.
    pub fn stat(&self, f: impl Fn(&ShardStats) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s.stats())).sum()
    }

    /// The lifecycle events reported so far, without shard and time.
    pub fn lifecycle(&self) -> Vec<ParkEvent> {
        self.events.iter().map(|(_, _, e)| *e).collect()
    }

    /// Every shard reports drained.
    pub fn is_drained(&self) -> bool {
        self.shards.iter().all(Shard::is_drained)
    }

    /// Starts graceful shutdown on every shard.
    pub fn shutdown_all(&mut self) {
        let now = self.now;
        for s in &mut self.shards {
            s.shutdown(now);
        }
    }

    /// The last datagrams seen, for failure messages.
    pub fn trace(&self) -> String {
        let mut s = String::new();
        for line in &self.trace {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    fn note(&mut self, line: String) {
        if self.trace.len() == TRACE_KEEP {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn first_line(data: &[u8]) -> String {
        let end = data.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(data.len()).min(120);
        String::from_utf8_lossy(&data[..end]).into_owned()
    }

    /// Puts one datagram on the wire, subject to the network knobs.
    fn launch(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let ms = self.elapsed().as_millis();
        let line = Self::first_line(&data);
        if self.rng.chance(self.net.loss) {
            self.note(format!("{ms:>9} {src} -> {dst} LOST {line}"));
            return;
        }
        let copies = if self.rng.chance(self.net.dup) { 2 } else { 1 };
        self.note(format!("{ms:>9} {src} -> {dst} {line}{}", if copies == 2 { " (x2)" } else { "" }));
        for _ in 0..copies {
            let extra =
                if self.net.reorder.is_zero() { Duration::ZERO } else { self.net.reorder.mul_f64(self.rng.unit()) };
            let mut copy = data.clone();
            if self.rng.chance(self.net.corrupt) {
                for _ in 0..=self.rng.below(3) {
                    mutate_once(&mut self.rng, &mut copy, DONOR);
                }
                self.corrupted += 1;
            }
            self.seq += 1;
            self.flights.push(Flight { at: self.now + self.net.latency + extra, seq: self.seq, src, dst, data: copy });
        }
    }

    /// Moves everything the shards and phones want to send onto the wire.
    fn pump(&mut self) {
        let mut batch: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        let elapsed = self.now - self.start;
        for (i, shard) in self.shards.iter_mut().enumerate() {
            while let Some(t) = shard.poll_transmit() {
                if let Some(sent) = self.sent.as_mut()
                    && sent.len() < CAPTURE_KEEP
                {
                    sent.push((t.dst, t.payload.clone()));
                }
                batch.push((self.server, t.dst, t.payload.clone()));
                shard.recycle(t.payload);
            }
            while let Some(e) = shard.poll_event() {
                self.events.push((i, elapsed, e));
            }
        }
        // Bans go to every other shard, as the workers' inboxes take them.
        let first_new = self.bans.len();
        for (i, shard) in self.shards.iter_mut().enumerate() {
            while let Some(b) = shard.poll_ban() {
                self.bans.push((i, elapsed, b));
            }
        }
        let now = self.now;
        for &(from, _, ban) in &self.bans[first_new..] {
            for (i, shard) in self.shards.iter_mut().enumerate() {
                if i != from {
                    shard.import_ban(now, ban);
                }
            }
        }
        self.server_sent += batch.len() as u64;
        for phone in &mut self.phones {
            while let Some((dst, data)) = phone.poll_transmit() {
                batch.push((phone.addr, dst, data));
            }
        }
        for (src, dst, data) in batch {
            self.launch(src, dst, data);
        }
    }

    /// The shard a datagram for sipark goes to, as the workers route it.
    pub fn route(&self, data: &[u8]) -> usize {
        match SipMessage::parse(data) {
            Ok(msg) => match owner(&msg, self.shards.len() as u16) {
                Owner::Shard(s) => usize::from(s),
                Owner::Local => 0,
            },
            Err(_) => 0,
        }
    }

    /// Hands a datagram from `src` to sipark right now (bypassing the network).
    pub fn inject(&mut self, src: SocketAddr, data: &[u8]) {
        let idx = self.route(data);
        let now = self.now;
        match SipMessage::parse(data) {
            Ok(msg) => self.shards[idx].handle(now, src, &msg),
            Err(_) => self.shards[idx].handle(now, src, data),
        }
    }

    fn deliver(&mut self, f: Flight) {
        if f.dst == self.server {
            if let Some(c) = self.capture.as_mut()
                && c.len() < CAPTURE_KEEP
            {
                c.push((f.src, f.data.clone()));
            }
            self.inject(f.src, &f.data);
        } else if let Some(&p) = self.by_addr.get(&f.dst) {
            let now = self.now;
            self.phones[p].handle(now, f.src, &f.data);
        } else if self.stray.len() < 1000 {
            self.stray.push(format!("to {}: {}", f.dst, Self::first_line(&f.data)));
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let flights = self.flights.peek().map(|f| f.at);
        let shards = self.shards.iter().filter_map(Shard::poll_timeout).min();
        let media = self.rtp.as_ref().and_then(|_| self.shards.iter().filter_map(Shard::media_timeout).min());
        let phones = self.phones.iter().filter_map(Phone::poll_timeout).min();
        [flights, shards, media, phones].into_iter().flatten().min()
    }

    /// Runs everything due at the next event, if it is not after `limit`.
    /// Returns false when nothing is due up to `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.pump();
        let Some(at) = self.next_event() else { return false };
        if at > limit {
            return false;
        }
        if at > self.now {
            self.now = at;
        }
        let now = self.now;
        while self.flights.peek().is_some_and(|f| f.at <= now) {
            if let Some(f) = self.flights.pop() {
                self.deliver(f);
            }
        }
        for shard in &mut self.shards {
            if shard.poll_timeout().is_some_and(|t| t <= now) {
                shard.handle_timeout(now);
            }
        }
        for phone in &mut self.phones {
            if phone.poll_timeout().is_some_and(|t| t <= now) {
                phone.handle_timeout(now);
            }
        }
        self.pump_media();
        self.pump();
        true
    }

    fn guard(&self, steps: &mut u64, same: &mut u64, last: &mut Instant) {
        *steps += 1;
        if self.now == *last {
            *same += 1;
        } else {
            *same = 0;
            *last = self.now;
        }
        if *steps > MAX_STEPS || *same > MAX_STEPS_SAME_INSTANT {
            panic!(
                "simulation livelock at t={:?} after {steps} steps (same instant {same} times)\n{}",
                self.elapsed(),
                self.trace()
            );
        }
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let (mut steps, mut same, mut last) = (0, 0, self.now);
        while self.step(end) {
            self.guard(&mut steps, &mut same, &mut last);
        }
        if self.now < end {
            self.now = end;
        }
    }

    /// Runs until `cond` holds (checked after every step), for at most
    /// `max` of virtual time. Returns whether it held.
    pub fn run_until(&mut self, max: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + max;
        let (mut steps, mut same, mut last) = (0, 0, self.now);
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(end) {
                if self.now < end {
                    self.now = end;
                }
                return cond(self);
            }
            self.guard(&mut steps, &mut same, &mut last);
        }
    }

    /// Like [`Sim::run_until`], but panics with `what` and the trace when
    /// `cond` does not hold in time.
    pub fn expect(&mut self, max: Duration, what: &str, cond: impl FnMut(&Sim) -> bool) {
        if !self.run_until(max, cond) {
            panic!("timed out after {max:?} waiting for: {what} (t={:?})\n{}", self.elapsed(), self.trace());
        }
    }
}

/// Seconds, as a `Duration`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Milliseconds, as a `Duration`.
pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Header lines the corrupting network splices into datagrams.
const DONOR: &[u8] = b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsp0.1;rport\r\n\
To: <sip:103@acme.example>;tag=x\r\nFrom: <sip:park@acme.example>;tag=y\r\n\
CSeq: 2 BYE\r\nContact: *\r\nExpires: 0\r\nContent-Length: 10\r\nEvent: park-info\r\n\
Call-ID: a@b\r\nMax-Forwards: 0\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nRecord-Route: <sip:127.0.0.9;lr>\r\n";

pub const ALPHABET: &[u8] = b":;,<>@=\"\\ \t\r\n/.*%?-_+0123456789abcdefzABCDEFZ\x00\xff";

/// One random change to `msg`.
pub fn mutate_once(rng: &mut Rng, msg: &mut Vec<u8>, donor: &[u8]) {
    let len = msg.len();
    let pos = |rng: &mut Rng| rng.below(len as u64 + 1) as usize;
    match rng.below(11) {
        0 => {
            for _ in 0..=rng.below(8) {
                if !msg.is_empty() {
                    let i = rng.below(msg.len() as u64) as usize;
                    msg[i] = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
                }
            }
        }
        1 => msg.truncate(pos(rng)),
        2 => {
            let at = pos(rng).min(msg.len());
            let n = 1 + rng.below(16) as usize;
            let ins: Vec<u8> = (0..n).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect();
            msg.splice(at..at, ins);
        }
        3 | 4 => {
            // Delete (3) or duplicate (4) a line.
            let lines: Vec<usize> = std::iter::once(0)
                .chain(msg.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
                .collect();
            let k = rng.below(lines.len() as u64) as usize;
            let start = lines[k].min(msg.len());
            let end = lines.get(k + 1).copied().unwrap_or(msg.len()).min(msg.len());
            let line = msg[start..end].to_vec();
            if rng.below(2) == 0 && start < end {
                msg.drain(start..end);
            } else {
                msg.splice(start..start, line);
            }
        }
        5 => {
            // Splice a line from another message in.
            let lines: Vec<&[u8]> = donor.split(|&b| b == b'\n').collect();
            let line = lines[rng.below(lines.len() as u64) as usize];
            let at = msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut ins = line.to_vec();
            ins.push(b'\n');
            msg.splice(at..at, ins);
        }
        6 => {
            let text = String::from_utf8_lossy(msg).into_owned();
            let n = match rng.below(4) {
                0 => u64::from(u32::MAX),
                1 => 99_999_999_999,
                _ => rng.below(3000),
            };
            let re = text.replacen("Content-Length: ", &format!("Content-Length: {n}"), 1);
            *msg = re.into_bytes();
        }
        7 => {
            let text = String::from_utf8_lossy(msg).replace("\r\n", "\n");
            *msg = text.into_bytes();
        }
        8 => {
            let n = rng.below(1500) as usize;
            *msg = (0..n).map(|_| rng.below(256) as u8).collect();
        }
        9 => {
            // Change a tag, branch or number somewhere.
            let text = String::from_utf8_lossy(msg).into_owned();
            let keys = ["tag=", "branch=z9hG4bK", "CSeq: ", "expires=", "call=", "Expires: "];
            let key = keys[rng.below(keys.len() as u64) as usize];
            let re = text.replacen(key, &format!("{key}{}", rng.below(100)), 1);
            *msg = re.into_bytes();
        }
        _ => {
            // A very long header value.
            let at = msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut ins = b"X-Junk: ".to_vec();
            ins.extend(std::iter::repeat_n(b'a', 2000 + rng.below(60_000) as usize));
            ins.extend_from_slice(b"\r\n");
            msg.splice(at..at, ins);
        }
    }
}
