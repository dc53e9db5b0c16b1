//! The floor of `cargo xtask bench` (`sipark-load --floor`): a park cycle's
//! datagrams with no SIP in them, against `sipark --bare-io`, which answers
//! each one on the engine's own I/O path without parsing it
//! (`sipark::io::bare`). The engine's CPU per such "cycle" is what the
//! worker I/O path alone costs, and the engine's CPU per real park cycle
//! divided by it is the floor ratio.
//!
//! A floor cycle is the park cycle's datagrams, in order, as exchanges: the
//! k-th datagram the generator sends into the engine has the size of the
//! k-th datagram of a real cycle into the engine, and asks for a reply of
//! the size of the k-th datagram of a real cycle out of it ([`CycleShape`],
//! generated in memory through one shard by the generator's own message
//! writers). The next exchange starts when the reply comes back: 11 in and
//! 11 out with 2 devices, one in flight per cycle, and as many cycles in
//! flight as `--concurrency` (closed loop only).
//!
//! A request's tag (after the 2-byte length) is the slot (u32) and the
//! exchange's sequence number (u32), big-endian, so a reply matches one
//! exchange; an unanswered exchange is sent again after T1 and the cycle
//! fails after 64·T1, as in [`super::driver`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipark::io::bare;
use sipark::proto::config::Config;

use super::mem::{ENGINE, ShardCycles, SizeLog};
use super::net::{self, Net, Rx};
use super::report::{json_str, num};
use super::{LoadConfig, LoadError, Mode};

/// Cycles generated in memory to average the sizes over.
pub const SHAPE_CYCLES: u32 = 64;
/// Virtual time per datagram in the in-memory run (as in the shard bench).
const SHAPE_STEP: Duration = Duration::from_micros(100);
/// Bytes of a floor request's tag: slot and sequence number.
const TAG: usize = 8;
/// How often unanswered exchanges are looked for.
const SCAN: Duration = Duration::from_millis(10);

/// The sizes of one park cycle's datagrams, in order: into the engine and
/// out of it (as many of each: `7 + 2·devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleShape {
    pub ins: Vec<usize>,
    pub outs: Vec<usize>,
}

impl CycleShape {
    /// The cycle of `load` (its tenants, extensions, devices and feature
    /// codes) generated in memory: every device is registered with one
    /// in-memory shard, then `cycles` cycles run one at a time, and each
    /// datagram's size is the mean, rounded, of its place in every cycle.
    /// Every cycle must have the same number of datagrams each way.
    pub fn from_memory(load: &LoadConfig, cycles: u32) -> Result<CycleShape, String> {
        let mut cfg = load.clone();
        cfg.target = ENGINE;
        cfg.mode = Mode::Closed { concurrency: 1 };
        let engine =
            Config { park_fac: load.park_fac.clone(), retrieve_fac: load.retrieve_fac.clone(), ..Config::default() };
        let mut sim = ShardCycles::new(&cfg, Arc::new(engine), 1, SHAPE_STEP)?;
        sim.timed = false;
        let mut sum: Option<(Vec<usize>, Vec<usize>)> = None;
        for c in 0..cycles.max(1) {
            sim.sizes = Some(SizeLog::default());
            sim.run(1)?;
            let log = sim.sizes.take().unwrap_or_default();
            match &mut sum {
                None => sum = Some((log.ins, log.outs)),
                Some((ins, outs)) => {
                    if log.ins.len() != ins.len() || log.outs.len() != outs.len() {
                        return Err(format!(
                            "cycle {c} had {} datagrams in and {} out, the first {} and {}",
                            log.ins.len(),
                            log.outs.len(),
                            ins.len(),
                            outs.len()
                        ));
                    }
                    ins.iter_mut().zip(&log.ins).for_each(|(a, b)| *a += b);
                    outs.iter_mut().zip(&log.outs).for_each(|(a, b)| *a += b);
                }
            }
        }
        let (ins, outs) = sum.unwrap_or_default();
        let n = cycles.max(1) as usize;
        let mean = |v: Vec<usize>| v.into_iter().map(|s| (s + n / 2) / n).collect();
        let shape = CycleShape { ins: mean(ins), outs: mean(outs) };
        shape.check()?;
        Ok(shape)
    }

    /// Whether the floor can send it: the same count each way, each request
    /// long enough for its tag and short enough to send, each reply one the
    /// responder gives and the generator receives whole.
    pub fn check(&self) -> Result<(), String> {
        if self.ins.is_empty() || self.ins.len() != self.outs.len() {
            return Err(format!(
                "{} datagrams in and {} out: not a cycle of exchanges",
                self.ins.len(),
                self.outs.len()
            ));
        }
        if let Some(s) = self.ins.iter().find(|&&s| !(bare::HEADER + TAG..=net::TX_SIZE).contains(&s)) {
            return Err(format!("a datagram of {s} bytes into the engine: the floor sends 10..={}", net::TX_SIZE));
        }
        let most = bare::MAX_REPLY.min(net::RX_SIZE);
        if let Some(s) = self.outs.iter().find(|&&s| !(1..=most).contains(&s)) {
            return Err(format!("a datagram of {s} bytes out of the engine: the responder answers 1..={most}"));
        }
        Ok(())
    }

    /// Bytes into the engine per cycle.
    pub fn bytes_in(&self) -> usize {
        self.ins.iter().sum()
    }

    /// Bytes out of the engine per cycle.
    pub fn bytes_out(&self) -> usize {
        self.outs.iter().sum()
    }
}

/// One cycle slot: its current exchange.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    active: bool,
    /// The exchange of the cycle waiting for its reply.
    step: usize,
    /// Sequence number of that exchange (in its tag).
    seq: u32,
    /// When the exchange was last sent, and first sent.
    sent: Option<Instant>,
    first: Option<Instant>,
}

/// Counters of the floor's cycles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloorCounts {
    pub started: u64,
    pub ok: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Replies that matched no waiting exchange (late duplicates).
    pub stray: u64,
}

/// The floor generator: slots, sockets, the shape.
struct Floor<'a> {
    cfg: &'a LoadConfig,
    shape: &'a CycleShape,
    net: Net,
    slots: Vec<Slot>,
    buf: Vec<u8>,
    c: FloorCounts,
}

impl Floor<'_> {
    /// Sends exchange `slots[s].step` (again, if already sent).
    fn send(&mut self, s: usize, now: Instant) {
        let slot = &mut self.slots[s];
        let k = slot.step;
        let mut tag = [0u8; TAG];
        tag[..4].copy_from_slice(&(s as u32).to_be_bytes());
        tag[4..].copy_from_slice(&slot.seq.to_be_bytes());
        let reply = u16::try_from(self.shape.outs[k]).unwrap_or(u16::MAX);
        bare::request(&mut self.buf, reply, &tag, self.shape.ins[k]);
        slot.sent = Some(now);
        slot.first.get_or_insert(now);
        let sock = s % self.net.len();
        self.net.send(sock, self.cfg.target, &self.buf);
    }

    fn start(&mut self, s: usize, now: Instant) {
        let slot = &mut self.slots[s];
        slot.active = true;
        slot.step = 0;
        slot.seq = slot.seq.wrapping_add(1);
        slot.first = None;
        self.c.started += 1;
        self.send(s, now);
    }

    /// One reply: the next exchange of its cycle, or the cycle's end.
    /// Returns the slot whose cycle ended, if one did.
    fn on_reply(&mut self, src: SocketAddr, data: &[u8], now: Instant) -> Option<usize> {
        let tag = data.get(bare::HEADER..bare::HEADER + TAG);
        let (s, seq) = match tag {
            Some(t) if src == self.cfg.target => {
                (u32::from_be_bytes([t[0], t[1], t[2], t[3]]) as usize, u32::from_be_bytes([t[4], t[5], t[6], t[7]]))
            }
            _ => {
                self.c.stray += 1;
                return None;
            }
        };
        let expected = self.slots.get(s).is_some_and(|slot| slot.active && slot.seq == seq);
        if !expected || data.len() != self.shape.outs[self.slots[s].step] {
            self.c.stray += 1;
            return None;
        }
        let slot = &mut self.slots[s];
        slot.step += 1;
        slot.seq = slot.seq.wrapping_add(1);
        slot.first = None;
        if slot.step == self.shape.ins.len() {
            slot.active = false;
            self.c.ok += 1;
            return Some(s);
        }
        self.send(s, now);
        None
    }

    /// Sends again what has waited T1; fails cycles that waited 64·T1.
    fn scan(&mut self, now: Instant) {
        for s in 0..self.slots.len() {
            let slot = self.slots[s];
            if !slot.active {
                continue;
            }
            if slot.first.is_some_and(|f| now.duration_since(f) >= 64 * self.cfg.t1) {
                self.slots[s].active = false;
                self.c.failed += 1;
            } else if slot.sent.is_some_and(|t| now.duration_since(t) >= self.cfg.t1) {
                self.c.retransmissions += 1;
                self.send(s, now);
            }
        }
    }

    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.active).count()
    }

    /// Starts cycles in every free slot until `duration` has passed or
    /// `cycles` have started in this phase, then lets the started ones end
    /// (or fail); everything stops at `hard_stop`.
    fn phase(
        &mut self,
        rx: &mut Rx,
        duration: Option<Duration>,
        cycles: Option<u64>,
        hard_stop: Instant,
    ) -> Result<(), LoadError> {
        let begin = Instant::now();
        let base = self.c.started;
        let mut next_scan = begin + SCAN;
        let mut stopping = false;
        loop {
            let now = Instant::now();
            if now >= hard_stop {
                let left = self.active() as u64;
                self.c.failed += left;
                self.slots.iter_mut().for_each(|s| s.active = false);
                return Ok(());
            }
            stopping = stopping
                || duration.is_some_and(|d| now.duration_since(begin) >= d)
                || cycles.is_some_and(|n| self.c.started - base >= n);
            if !stopping {
                for s in 0..self.slots.len() {
                    if !self.slots[s].active && cycles.is_none_or(|n| self.c.started - base < n) {
                        self.start(s, now);
                    }
                }
            }
            self.net.flush_all();
            if stopping && self.active() == 0 {
                return Ok(());
            }
            self.net.poll(next_scan.saturating_duration_since(now)).map_err(|e| LoadError::Io(format!("poll: {e}")))?;
            let now = Instant::now();
            for sock in 0..self.net.len() {
                if !self.net.readable(sock) {
                    continue;
                }
                loop {
                    let n = rx.recv(&mut self.net, sock);
                    for k in 0..n {
                        let Some((src, data)) = rx.get(k) else {
                            self.c.stray += 1;
                            continue;
                        };
                        // Closed loop: a slot whose cycle ended starts the next one at once.
                        if let Some(s) = self.on_reply(src, data, now)
                            && !stopping
                            && cycles.is_none_or(|c| self.c.started - base < c)
                        {
                            self.start(s, now);
                        }
                    }
                    if n < net::BATCH {
                        break;
                    }
                }
            }
            if now >= next_scan {
                self.scan(now);
                next_scan = now + SCAN;
            }
        }
    }
}

/// What a floor run measured (the window only).
#[derive(Debug, Clone, PartialEq)]
pub struct FloorReport {
    pub target: String,
    pub concurrency: u32,
    pub warmup_s: f64,
    pub sockets: usize,
    pub shape: CycleShape,
    pub window_s: f64,
    pub cycles_started: u64,
    pub cycles_ok: u64,
    pub cycles_failed: u64,
    pub retransmissions: u64,
    pub stray: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub rate_achieved: f64,
    pub engine_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
    /// Floor cycles per engine CPU-second.
    pub cycles_per_engine_cpu_s: Option<f64>,
    /// Its inverse: engine CPU microseconds per floor cycle.
    pub engine_cpu_us_per_cycle: Option<f64>,
    pub cycles_per_generator_cpu_s: f64,
}

/// Drives `cfg.target` (a `sipark --bare-io`) with floor cycles of `shape`:
/// closed loop at `cfg`'s concurrency, `cfg.warmup` unrecorded first, then
/// `cfg.duration` or `cfg.cycles`, all within `cfg.timeout`.
pub fn run(cfg: &LoadConfig, shape: &CycleShape) -> Result<FloorReport, LoadError> {
    cfg.validate()?;
    shape.check().map_err(LoadError::Config)?;
    let Mode::Closed { concurrency } = cfg.mode else {
        return Err(LoadError::Config("the floor runs closed loop only (--concurrency, not --rate)".into()));
    };
    let hard_stop = Instant::now() + cfg.timeout;
    let net = Net::bind(cfg.bind, cfg.sockets).map_err(|e| LoadError::Io(format!("bind: {e}")))?;
    let mut f = Floor {
        cfg,
        shape,
        net,
        slots: vec![Slot::default(); concurrency as usize],
        buf: Vec::with_capacity(net::TX_SIZE),
        c: FloorCounts::default(),
    };
    let mut rx = Rx::new();
    if !cfg.warmup.is_zero() {
        f.phase(&mut rx, Some(cfg.warmup), None, hard_stop)?;
    }
    let c0 = f.c;
    let net0 = f.net.stats;
    let engine0 = cfg.engine_cpu.read().map_err(|e| LoadError::Io(format!("engine CPU: {e}")))?;
    let self0 = cfg.self_cpu.read();
    let t0 = Instant::now();
    f.phase(&mut rx, cfg.duration, cfg.cycles, hard_stop)?;
    let window = t0.elapsed();
    let gen_cpu = cfg.self_cpu.read().saturating_sub(self0);
    let engine1 = cfg.engine_cpu.read().map_err(|e| LoadError::Io(format!("engine CPU: {e}")))?;
    let (c1, net1) = (f.c, f.net.stats);
    let engine_cpu_s = match (engine0, engine1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let ok = c1.ok - c0.ok;
    let window_s = window.as_secs_f64();
    let per = |n: u64, d: f64| if d > 0.0 { n as f64 / d } else { 0.0 };
    Ok(FloorReport {
        target: cfg.target.to_string(),
        concurrency,
        warmup_s: cfg.warmup.as_secs_f64(),
        sockets: f.net.len(),
        shape: shape.clone(),
        window_s,
        cycles_started: c1.started - c0.started,
        cycles_ok: ok,
        cycles_failed: c1.failed - c0.failed,
        retransmissions: c1.retransmissions - c0.retransmissions,
        stray: c1.stray - c0.stray,
        datagrams_sent: net1.sent - net0.sent,
        datagrams_received: net1.received - net0.received,
        rate_achieved: per(ok, window_s),
        engine_cpu_s,
        generator_cpu_s: gen_cpu.as_secs_f64(),
        cycles_per_engine_cpu_s: engine_cpu_s.filter(|s| *s > 0.0).map(|s| ok as f64 / s),
        engine_cpu_us_per_cycle: engine_cpu_s.filter(|_| ok > 0).map(|s| s * 1e6 / ok as f64),
        cycles_per_generator_cpu_s: per(ok, gen_cpu.as_secs_f64()),
    })
}

impl FloorReport {
    /// The figures as one JSON object.
    pub fn to_json(&self) -> String {
        let opt_f = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), num);
        let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        format!(
            "{{\"target\":{},\"mode\":\"floor\",\"concurrency\":{},\"warmup_s\":{},\"sockets\":{},\
             \"datagrams_in_per_cycle\":{},\"datagrams_out_per_cycle\":{},\"bytes_in_per_cycle\":{},\
             \"bytes_out_per_cycle\":{},\"sizes_in\":[{}],\"sizes_out\":[{}],\"window_s\":{},\
             \"cycles_started\":{},\"cycles_ok\":{},\"cycles_failed\":{},\"retransmissions_sent\":{},\
             \"stray\":{},\"datagrams_sent\":{},\"datagrams_received\":{},\"rate_achieved\":{},\
             \"engine_cpu_s\":{},\"generator_cpu_s\":{},\"cycles_per_engine_cpu_s\":{},\
             \"engine_cpu_us_per_cycle\":{},\"cycles_per_generator_cpu_s\":{}}}",
            json_str(&self.target),
            self.concurrency,
            num(self.warmup_s),
            self.sockets,
            self.shape.ins.len(),
            self.shape.outs.len(),
            self.shape.bytes_in(),
            self.shape.bytes_out(),
            list(&self.shape.ins),
            list(&self.shape.outs),
            num(self.window_s),
            self.cycles_started,
            self.cycles_ok,
            self.cycles_failed,
            self.retransmissions,
            self.stray,
            self.datagrams_sent,
            self.datagrams_received,
            num(self.rate_achieved),
            opt_f(self.engine_cpu_s),
            num(self.generator_cpu_s),
            opt_f(self.cycles_per_engine_cpu_s),
            opt_f(self.engine_cpu_us_per_cycle),
            num(self.cycles_per_generator_cpu_s),
        )
    }
}

impl fmt::Display for FloorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"));
        writeln!(f, "sipark-load --floor against {} (sipark --bare-io: no SIP)", self.target)?;
        writeln!(
            f,
            "  cycle shape          {} datagrams in ({} B), {} out ({} B), as exchanges, one in flight per cycle",
            self.shape.ins.len(),
            self.shape.bytes_in(),
            self.shape.outs.len(),
            self.shape.bytes_out()
        )?;
        writeln!(f, "  sizes in             {:?}", self.shape.ins)?;
        writeln!(f, "  sizes out            {:?}", self.shape.outs)?;
        writeln!(
            f,
            "  load                 closed loop, {} in flight, {} sockets, {:.0} s warm-up, {:.2} s window",
            self.concurrency, self.sockets, self.warmup_s, self.window_s
        )?;
        writeln!(
            f,
            "  cycles               {} ok, {} failed, {} started; {} retransmissions, {} stray",
            self.cycles_ok, self.cycles_failed, self.cycles_started, self.retransmissions, self.stray
        )?;
        writeln!(f, "  rate                 {:.0} cycles/s", self.rate_achieved)?;
        writeln!(
            f,
            "  engine CPU           {} s: {} cycles per engine CPU-s, {} µs per cycle",
            opt(self.engine_cpu_s, 2),
            opt(self.cycles_per_engine_cpu_s, 0),
            opt(self.engine_cpu_us_per_cycle, 2)
        )?;
        writeln!(
            f,
            "  generator CPU        {:.2} s: {:.0} cycles per own CPU-s",
            self.generator_cpu_s, self.cycles_per_generator_cpu_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(tenants: u32, devices: u32) -> LoadConfig {
        let mut l = LoadConfig::new(ENGINE);
        l.tenants = tenants;
        l.extensions = 3;
        l.devices = devices;
        l.sockets = 4;
        l
    }

    #[test]
    fn the_shape_is_a_real_cycle_generated_in_memory() {
        let shape = CycleShape::from_memory(&load(20, 2), 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((shape.ins.len(), shape.outs.len()), (11, 11), "{shape:?}");
        // The park INVITE (with SDP) is the first datagram in, and larger than its ACK.
        assert!(shape.ins[0] > 500 && shape.ins[0] > shape.ins[1], "{shape:?}");
        assert!(shape.ins.iter().chain(&shape.outs).all(|&s| (200..2048).contains(&s)), "{shape:?}");
        let three = CycleShape::from_memory(&load(20, 3), 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((three.ins.len(), three.outs.len()), (13, 13), "7 + 2 per device each way");
    }

    #[test]
    fn shapes_the_floor_cannot_send_are_refused() {
        let ok = CycleShape { ins: vec![10, 2048], outs: vec![1, 8192] };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!((ok.bytes_in(), ok.bytes_out()), (2058, 8193));
        for bad in [
            CycleShape { ins: vec![], outs: vec![] },
            CycleShape { ins: vec![100], outs: vec![100, 100] },
            CycleShape { ins: vec![9], outs: vec![100] },
            CycleShape { ins: vec![2049], outs: vec![100] },
            CycleShape { ins: vec![100], outs: vec![0] },
            CycleShape { ins: vec![100], outs: vec![8193] },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
