//! In-memory drivers for benchmarks: the engine's sans-IO
//! [`Shard`] fed directly, on a virtual clock, with no sockets.
//!
//! * [`MemWire`] is a [`Transport`] that queues the generator's datagrams,
//!   and [`ShardCycles`] runs the generator's complete park cycles
//!   ([`Gen`], the same state machine as `sipark-load`) against one shard.
//! * [`ParkSim`] drives single operations (register, park, retrieve, BYE)
//!   for the park-table and memory benchmarks, checking every answer.
//!
//! Both advance the shard's clock themselves (`now` is an [`Instant`] that
//! only moves when told to) and run [`Shard::handle_timeout`] whenever a
//! timer is due, so transactions end as they would in a running engine.
//!
//! Every call into the shard goes through [`shard_entry`], and nothing else
//! here names a `Shard` method: when the shard's API changes, those few lines
//! change. [`icount_window`] is the measured window of `sipark-icount`
//! (`cargo xtask bench --instructions`), which counts instructions inside
//! [`shard_entry`]'s functions.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipark::proto::config::Config;
use sipark::proto::shard::{Shard, Transmit, WallClock};
use sipark::proto::sip::parse::{Method, SipMessage};

use super::driver::{Gen, Transport};
use super::wire::{self, Ctx, Dialog};
use super::{Failure, LoadConfig};

/// The engine's address in memory (the default `advertise`).
pub const ENGINE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
/// First port of the generator's in-memory sockets.
pub const PORT_BASE: u16 = 40_000;
/// Wall-clock time the shards believe they started at (2026-06-01).
const UNIX_START: Duration = Duration::from_secs(1_780_272_000);

/// A fresh shard 0 of 1 with `cfg`, created at `now`.
pub fn shard(cfg: Arc<Config>, now: Instant) -> Shard {
    shard_entry::new(cfg, WallClock { at: now, unix: UNIX_START })
}

/// The shard's entry points, as every driver in this module calls them: the
/// only functions in the benchmarks that call a [`Shard`] method that does
/// work (a later change of the shard's API touches these lines only).
///
/// Each is a function of its own that is never inlined, so that callgrind
/// sees every call into the shard: `cargo xtask bench --instructions` adds up
/// the inclusive cost of every call to a function whose name contains
/// `mem::shard_entry::` (see `xtask/src/icount.rs`). A function added here
/// is counted as inside the shard, so put nothing of the driver's in them.
pub mod shard_entry {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Instant;

    use sipark::proto::config::Config;
    use sipark::proto::shard::{Seed, Shard, Transmit, WallClock};

    /// Shard 0 of 1 (set-up only, never inside a measured window), with a
    /// fixed seed: the same hash keys and tags every run, so that
    /// instruction counts repeat exactly.
    #[inline(never)]
    pub fn new(cfg: Arc<Config>, wall: WallClock) -> Shard {
        Shard::new(0, 1, cfg, wall, Seed::from_u64(1))
    }

    /// Hands one datagram from `src` to the shard.
    #[inline(never)]
    pub fn handle(shard: &mut Shard, now: Instant, src: SocketAddr, data: &[u8]) {
        shard.handle(now, src, data);
    }

    /// Runs the timers due at `now`, if any; whether one was due.
    #[inline(never)]
    pub fn timers(shard: &mut Shard, now: Instant) -> bool {
        let due = shard.poll_timeout().is_some_and(|at| at <= now);
        if due {
            shard.handle_timeout(now);
        }
        due
    }

    /// Moves everything the shard has to send into `out`, and drops its
    /// park-lifecycle events (as the workers do).
    #[inline(never)]
    pub fn transmits(shard: &mut Shard, out: &mut Vec<Transmit>) {
        while let Some(tx) = shard.poll_transmit() {
            out.push(tx);
        }
        while shard.poll_event().is_some() {}
    }

    /// Gives a sent datagram's buffer back to the shard's pool.
    #[inline(never)]
    pub fn recycle(shard: &mut Shard, payload: Vec<u8>) {
        shard.recycle(payload);
    }

    /// Tells the shard its receive path's queueing delay (overload
    /// control's input; the drivers here only do so in tests).
    #[inline(never)]
    pub fn load(shard: &mut Shard, now: Instant, delay: std::time::Duration) {
        shard.handle_load(now, delay);
    }
}

/// Runs `cycles` cycles of `sim` ([`ShardCycles::run`]) as the measured
/// window of `sipark-icount`: never inlined, so that callgrind can switch
/// counting on for this call alone (`--toggle-collect`).
#[inline(never)]
pub fn icount_window(sim: &mut ShardCycles<'_>, cycles: u64) -> Result<RunStats, String> {
    sim.run(cycles)
}

/// Sizes of the datagrams through the shard, in order (for [`ShardCycles::sizes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizeLog {
    /// Datagrams into the shard, in bytes.
    pub ins: Vec<usize>,
    /// Datagrams out of it, in bytes.
    pub outs: Vec<usize>,
}

/// A [`Transport`] that queues what the generator sends.
pub struct MemWire {
    locals: Vec<SocketAddr>,
    /// `(socket, datagram)` in sending order; all of it goes to the engine.
    queue: VecDeque<(usize, Vec<u8>)>,
    pool: Vec<Vec<u8>>,
    /// Datagrams sent to somewhere other than the engine.
    pub misdirected: u64,
}

impl MemWire {
    /// `sockets` local addresses `127.0.0.1:40000+i` (1..=1024).
    pub fn new(sockets: usize) -> MemWire {
        let n = sockets.clamp(1, 1024);
        MemWire {
            locals: (0..n).map(|i| SocketAddr::new(ENGINE.ip(), PORT_BASE + i as u16)).collect(),
            queue: VecDeque::with_capacity(1024),
            pool: Vec::new(),
            misdirected: 0,
        }
    }

    /// The socket whose address is `a`, if it is one of ours.
    pub fn socket_of(&self, a: SocketAddr) -> Option<usize> {
        let i = usize::from(a.port().checked_sub(PORT_BASE)?);
        (a.ip() == ENGINE.ip() && i < self.locals.len()).then_some(i)
    }
}

impl Transport for MemWire {
    fn sockets(&self) -> usize {
        self.locals.len()
    }

    fn local(&self, i: usize) -> SocketAddr {
        self.locals[i]
    }

    fn send(&mut self, i: usize, dst: SocketAddr, data: &[u8]) {
        if dst != ENGINE {
            self.misdirected += 1;
            return;
        }
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(data);
        self.queue.push_back((i, b));
    }
}

/// What a run of [`ShardCycles::run`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub cycles: u64,
    /// Time spent inside the shard (`handle`, `handle_timeout`,
    /// `poll_transmit`, `recycle`).
    pub shard_time: Duration,
    /// Wall time of the whole run, generator included.
    pub wall_time: Duration,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
}

/// Complete park cycles of [`Gen`] against one [`Shard`], in memory.
pub struct ShardCycles<'c> {
    pub load_gen: Gen<'c, MemWire>,
    pub shard: Shard,
    t0: Instant,
    /// The virtual clock.
    pub now: Instant,
    /// Virtual time that passes per datagram handed to the shard.
    step: Duration,
    concurrency: u32,
    out: Vec<Transmit>,
    /// Datagrams the shard sent to an address the generator does not have.
    pub misdirected: u64,
    /// Cumulative over every run.
    pub total: RunStats,
    /// Read the clock around each shard call (for `shard_time`); off, the
    /// driver reads no clock per datagram and `shard_time` stays zero.
    pub timed: bool,
    /// When set, the size of every datagram into and out of the shard is
    /// appended to it.
    pub sizes: Option<SizeLog>,
}

impl<'c> ShardCycles<'c> {
    /// A shard with `engine` settings and a generator with `load`'s
    /// tenants, extensions, devices and sockets; every device is
    /// registered (Expires 3600) before this returns. Up to `concurrency`
    /// cycles interleave (see [`ShardCycles::run`]); `step` of virtual time
    /// passes per datagram the shard receives.
    pub fn new(
        load: &'c LoadConfig,
        engine: Arc<Config>,
        concurrency: u32,
        step: Duration,
    ) -> Result<ShardCycles<'c>, String> {
        let t0 = Instant::now();
        let load_gen = Gen::with_transport(load, 0x5eed, MemWire::new(load.sockets));
        let mut me = ShardCycles {
            load_gen,
            shard: shard(engine, t0),
            t0,
            now: t0,
            step,
            concurrency: concurrency.max(1),
            out: Vec::with_capacity(64),
            misdirected: 0,
            total: RunStats::default(),
            timed: true,
            sizes: None,
        };
        let devices = me.load_gen.devices();
        let mut dev = 0;
        while dev < devices {
            let end = (dev + 512).min(devices);
            while dev < end {
                let now = me.vnow();
                me.load_gen.begin_register(dev, now);
                dev += 1;
            }
            me.pump();
        }
        if me.load_gen.registrations_pending() > 0 || me.load_gen.c.registration_failed > 0 {
            return Err(format!(
                "registration: {} pending, {} refused of {devices}",
                me.load_gen.registrations_pending(),
                me.load_gen.c.registration_failed
            ));
        }
        me.load_gen.finish_registration().map_err(|e| e.to_string())?;
        Ok(me)
    }

    /// Virtual time since the shard was created.
    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.t0)
    }

    /// Virtual nanoseconds since the start, for the generator.
    fn vnow(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Moves datagrams between the generator and the shard until both are
    /// quiet.
    fn pump(&mut self) {
        while let Some((sock, buf)) = self.load_gen.net.queue.pop_front() {
            self.now += self.step;
            let src = self.load_gen.net.local(sock);
            let t = self.timed.then(Instant::now);
            shard_entry::timers(&mut self.shard, self.now);
            shard_entry::handle(&mut self.shard, self.now, src, &buf);
            shard_entry::transmits(&mut self.shard, &mut self.out);
            if let Some(t) = t {
                self.total.shard_time += t.elapsed();
            }
            if let Some(log) = &mut self.sizes {
                log.ins.push(buf.len());
            }
            self.load_gen.net.pool.push(buf);
            self.total.datagrams_in += 1;
            let now = self.vnow();
            for tx in self.out.drain(..) {
                self.total.datagrams_out += 1;
                if let Some(log) = &mut self.sizes {
                    log.outs.push(tx.payload.len());
                }
                match self.load_gen.net.socket_of(tx.dst) {
                    Some(i) => self.load_gen.on_datagram(i, ENGINE, &tx.payload, now),
                    None => self.misdirected += 1,
                }
                let t = self.timed.then(Instant::now);
                shard_entry::recycle(&mut self.shard, tx.payload);
                if let Some(t) = t {
                    self.total.shard_time += t.elapsed();
                }
            }
        }
    }

    /// Runs exactly `cycles` more cycles, in rounds of up to
    /// `concurrency`: a round's cycles are started together and their
    /// messages interleave through the shard (first in, first out) until
    /// every one has completed, since nothing in memory waits. Any failed
    /// cycle, or one left unfinished, is an error.
    pub fn run(&mut self, cycles: u64) -> Result<RunStats, String> {
        let before = self.total;
        let first = self.load_gen.c.ok;
        let wall = Instant::now();
        let mut done = 0;
        while done < cycles {
            let round = (cycles - done).min(u64::from(self.concurrency));
            for _ in 0..round {
                let now = self.vnow();
                if !self.load_gen.start_cycle(now) {
                    return Err(format!("no idle extension for a new cycle after {done} cycles"));
                }
            }
            self.pump();
            if self.load_gen.c.failed > 0 {
                let why: Vec<&str> = Failure::ALL
                    .iter()
                    .filter(|f| self.load_gen.c.failures[**f as usize] > 0)
                    .map(|f| f.label())
                    .collect();
                return Err(format!("{} cycles failed: {why:?}", self.load_gen.c.failed));
            }
            if self.load_gen.active() > 0 {
                return Err(format!(
                    "stalled with {} cycles unfinished after {} completed",
                    self.load_gen.active(),
                    self.load_gen.c.ok - first
                ));
            }
            done += round;
        }
        if self.load_gen.c.ok - first != cycles {
            return Err(format!("{} cycles completed, {cycles} started", self.load_gen.c.ok - first));
        }
        self.total.wall_time += wall.elapsed();
        self.total.cycles += cycles;
        Ok(RunStats {
            cycles,
            shard_time: self.total.shard_time - before.shard_time,
            wall_time: self.total.wall_time - before.wall_time,
            datagrams_in: self.total.datagrams_in - before.datagrams_in,
            datagrams_out: self.total.datagrams_out - before.datagrams_out,
        })
    }
}

/// Extensions per tenant in the park-table layout.
pub const TABLE_EXTENSIONS: u32 = 10;

/// Where call `i` of a park table is parked: `(tenant, extension number)`;
/// one call per extension, [`TABLE_EXTENSIONS`] extensions per tenant.
pub fn table_home(i: u32) -> (u32, u32) {
    (i / TABLE_EXTENSIONS, wire::EXT_BASE + i % TABLE_EXTENSIONS)
}

/// `Config::default()` made to hold `calls` parked calls in one shard:
/// park timeout 86,400 s (nothing recalls while measuring), and the
/// per-shard limits raised above what the table and its transactions need.
pub fn table_config(calls: usize) -> Config {
    let mut cfg = Config::default();
    cfg.defaults.park_timeout = Duration::from_secs(86_400);
    let room = calls + calls / 2 + 10_000;
    cfg.limits.max_parked = room;
    cfg.limits.max_dialogs = room;
    cfg.limits.max_bindings = 2 * room;
    cfg.limits.max_transactions = 2_000_000;
    cfg
}

/// Single park-table operations against one shard, every answer checked.
///
/// Identifiers follow the generator's scheme: a park dialog is
/// `Dialog { kind: b'p', slot, generation, .. }` (Call-ID `pS.G@…`), a
/// retrieve dialog uses kind `r`. All phones send from [`PORT_BASE`].
pub struct ParkSim {
    pub shard: Shard,
    /// The virtual clock.
    pub now: Instant,
    ctx: Ctx,
    src: SocketAddr,
    hostport: Vec<u8>,
    body: Vec<u8>,
    user: Vec<u8>,
    req: Vec<u8>,
    ack: Vec<u8>,
    resp: Vec<u8>,
    out: Vec<Transmit>,
    spare: Vec<Transmit>,
    /// Give sent buffers back to the shard's pool (as the I/O layer does).
    pub recycle: bool,
}

impl ParkSim {
    /// A shard with `cfg`, created now.
    pub fn new(cfg: Arc<Config>) -> ParkSim {
        let now = Instant::now();
        let src = SocketAddr::new(ENGINE.ip(), PORT_BASE);
        ParkSim {
            shard: shard(cfg, now),
            now,
            ctx: Ctx::new(4242, "*68", "*88", false),
            src,
            hostport: src.to_string().into_bytes(),
            body: Vec::with_capacity(512),
            user: Vec::with_capacity(32),
            req: Vec::with_capacity(2048),
            ack: Vec::with_capacity(1024),
            resp: Vec::with_capacity(2048),
            out: Vec::with_capacity(64),
            spare: Vec::with_capacity(64),
            recycle: true,
        }
    }

    /// Hands `data` to the shard and collects what it sends; returns the
    /// time spent in the shard.
    fn feed(&mut self, data: &[u8]) -> Duration {
        let t = Instant::now();
        shard_entry::handle(&mut self.shard, self.now, self.src, data);
        shard_entry::transmits(&mut self.shard, &mut self.out);
        t.elapsed()
    }

    fn drop_out(&mut self) {
        for tx in self.out.drain(..) {
            if self.recycle {
                shard_entry::recycle(&mut self.shard, tx.payload);
            }
        }
    }

    /// Answers 200 to every NOTIFY in the collected output (untimed) and
    /// drops the rest; errors on anything else addressed as a request
    /// except ACK.
    fn answer_notifies(&mut self) -> Result<(), String> {
        let mut out = std::mem::take(&mut self.spare);
        std::mem::swap(&mut out, &mut self.out);
        let mut bad = None;
        for tx in &out {
            let Ok(m) = SipMessage::parse(&tx.payload) else {
                bad = Some("unparsable datagram from the shard".to_string());
                continue;
            };
            match m.method() {
                Some(Method::Notify) => {
                    wire::response(&mut self.resp, &m, b"200 OK", Some(b"ln"), None, None);
                    let resp = std::mem::take(&mut self.resp);
                    self.feed(&resp);
                    self.resp = resp;
                }
                Some(Method::Ack) | None => {}
                Some(other) => {
                    bad = Some(format!("unexpected {} from the shard", String::from_utf8_lossy(other.as_bytes())));
                }
            }
        }
        for tx in out.drain(..) {
            if self.recycle {
                shard_entry::recycle(&mut self.shard, tx.payload);
            }
        }
        self.spare = out;
        // Answers to NOTIFYs produce nothing, but keep the queue clean.
        self.drop_out();
        bad.map_or(Ok(()), Err)
    }

    /// Moves the clock on by `d` and runs the timers due; what they send
    /// (NOTIFYs, if any) is answered.
    pub fn advance(&mut self, d: Duration) -> Result<(), String> {
        self.now += d;
        if shard_entry::timers(&mut self.shard, self.now) {
            shard_entry::transmits(&mut self.shard, &mut self.out);
            self.answer_notifies()?;
        }
        Ok(())
    }

    /// The first collected datagram with status `code` and CSeq method
    /// `method`, parsed.
    fn find_response(&self, method: Method<'_>, call_kind: u8) -> Option<(usize, u16)> {
        self.out.iter().enumerate().find_map(|(i, tx)| {
            let m = SipMessage::parse(&tx.payload).ok()?;
            let code = m.status()?;
            let ok = m.cseq().ok()?.method == method && m.call_id().ok()?.first() == Some(&call_kind);
            (ok && code >= 200).then_some((i, code))
        })
    }

    /// Registers device `k` (device number `dev`) of extension `ext` of
    /// `tenant` with `expires` seconds. Untimed.
    pub fn register(&mut self, dev: u32, tenant: u32, ext: u32, k: u32, expires: u32) -> Result<(), String> {
        wire::register(&mut self.req, &self.ctx, &self.hostport, dev, tenant, ext, k, 1, expires);
        let req = std::mem::take(&mut self.req);
        self.feed(&req);
        self.req = req;
        let ok = self.out.iter().any(|tx| SipMessage::parse(&tx.payload).ok().and_then(|m| m.status()) == Some(200));
        self.drop_out();
        if ok { Ok(()) } else { Err(format!("REGISTER of device {dev} not answered 200")) }
    }

    fn park_dialog(slot: u32, generation: u32, tenant: u32, ext: u32) -> Dialog {
        Dialog { kind: b'p', slot, generation, tenant, ext }
    }

    /// Parks call `slot`/`generation` on `ext` of `tenant`: INVITE, 200,
    /// ACK. Returns the time the shard spent on the INVITE and the ACK
    /// (building our messages and answering NOTIFYs are not counted).
    /// With `bye`, the BYE that will hang the call up is written there.
    pub fn park(
        &mut self,
        slot: u32,
        generation: u32,
        tenant: u32,
        ext: u32,
        bye: Option<&mut Vec<u8>>,
    ) -> Result<Duration, String> {
        let d = Self::park_dialog(slot, generation, tenant, ext);
        self.body.clear();
        wire::sdp(&mut self.body, &self.ctx, b"127.0.0.1", 20_000, slot, 1, false);
        self.user.clear();
        self.user.extend_from_slice(b"pk");
        wire::num(&mut self.user, u64::from(slot));
        let parker = if ext > wire::EXT_BASE { ext - 1 } else { ext + 1 };
        wire::invite(&mut self.req, &self.ctx, &d, &self.hostport, &self.user, Some(parker), &self.body);
        let req = std::mem::take(&mut self.req);
        let mut spent = self.feed(&req);
        self.req = req;
        let Some((i, code)) = self.find_response(Method::Invite, b'p') else {
            self.drop_out();
            return Err(format!("park INVITE p{slot}.{generation}: no final answer"));
        };
        if code != 200 {
            self.drop_out();
            return Err(format!("park INVITE p{slot}.{generation} answered {code}"));
        }
        let built = {
            let ok = SipMessage::parse(&self.out[i].payload).map_err(|e| e.reason())?;
            let acked = wire::in_dialog(&mut self.ack, &self.ctx, &d, &self.hostport, &ok, b"ACK", 1, b'a');
            match bye {
                Some(b) => acked && wire::in_dialog(b, &self.ctx, &d, &self.hostport, &ok, b"BYE", 2, b'b'),
                None => acked,
            }
        };
        self.drop_out();
        if !built {
            return Err(format!("park 200 for p{slot}.{generation} lacks a To tag or Contact"));
        }
        let ack = std::mem::take(&mut self.ack);
        spent += self.feed(&ack);
        self.ack = ack;
        self.answer_notifies()?;
        Ok(spent)
    }

    /// Sends a parked party's `bye` (from [`ParkSim::park`]); returns the
    /// shard's time on it. The 200 is checked; NOTIFYs are answered
    /// untimed.
    pub fn bye(&mut self, bye: &[u8]) -> Result<Duration, String> {
        let spent = self.feed(bye);
        let code = self.find_response(Method::Bye, b'p').map(|(_, c)| c);
        self.answer_notifies()?;
        match code {
            Some(200) => Ok(spent),
            c => Err(format!("BYE answered {c:?}")),
        }
    }

    /// Retrieve `*88<ext>@t<tenant>` (no token: the extension's first
    /// retrievable call) by dialog `slot`/`generation`. Returns the shard's
    /// time on the retrieve INVITE (finding the call, 100 Trying, the
    /// re-INVITE to the parked party). Then, untimed, the parked party
    /// refuses the re-INVITE with 486, so the call goes back to parked and
    /// the retriever gets 480 (which is ACKed): the table is as before.
    pub fn retrieve_and_refuse(
        &mut self,
        slot: u32,
        generation: u32,
        tenant: u32,
        ext: u32,
    ) -> Result<Duration, String> {
        let d = Dialog { kind: b'r', slot, generation, tenant, ext };
        self.body.clear();
        wire::sdp(&mut self.body, &self.ctx, b"127.0.0.1", 40_000, slot, 1, false);
        self.user.clear();
        wire::num(&mut self.user, u64::from(ext));
        self.user.extend_from_slice(b"-d0");
        wire::invite(&mut self.req, &self.ctx, &d, &self.hostport, &self.user, None, &self.body);
        let req = std::mem::take(&mut self.req);
        let spent = self.feed(&req);
        // The re-INVITE to the parked party (Call-ID `p…`).
        let reinvite = self.out.iter().position(|tx| {
            SipMessage::parse(&tx.payload).is_ok_and(|m| {
                m.method() == Some(Method::Invite) && m.call_id().is_ok_and(|c| c.first() == Some(&b'p'))
            })
        });
        let Some(ri) = reinvite else {
            let got = self.find_response(Method::Invite, b'r').map(|(_, c)| c);
            self.drop_out();
            self.req = req;
            return Err(format!("retrieve of {ext}@t{tenant}: no re-INVITE (final answer {got:?})"));
        };
        {
            let m = SipMessage::parse(&self.out[ri].payload).map_err(|e| e.reason())?;
            wire::response(&mut self.resp, &m, b"486 Busy Here", None, None, None);
        }
        self.drop_out();
        let resp = std::mem::take(&mut self.resp);
        self.feed(&resp);
        self.resp = resp;
        // Now: the shard's ACK for the 486 and its 480 to the retriever.
        let refused = self.find_response(Method::Invite, b'r');
        let acked = match refused {
            Some((i, 480)) => {
                let m = SipMessage::parse(&self.out[i].payload).map_err(|e| e.reason())?;
                wire::ack_non_2xx(&mut self.ack, &req, &m)
            }
            _ => false,
        };
        self.req = req;
        self.drop_out();
        if !acked {
            return Err(format!("retrieve of {ext}@t{tenant}: retriever got {:?}, not 480", refused.map(|r| r.1)));
        }
        let ack = std::mem::take(&mut self.ack);
        self.feed(&ack);
        self.ack = ack;
        self.answer_notifies()?;
        Ok(spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Mode;

    #[test]
    fn cycles_through_one_shard_in_memory() {
        let mut load = LoadConfig::new(ENGINE);
        load.tenants = 3;
        load.extensions = 4;
        load.devices = 2;
        load.sockets = 4;
        load.mode = Mode::Closed { concurrency: 5 };
        let mut sim = ShardCycles::new(&load, Arc::new(Config::default()), 5, Duration::from_micros(100))
            .unwrap_or_else(|e| panic!("set-up: {e}"));
        assert_eq!(sim.shard.stats().bindings.get(), 24, "every device registered");
        let r = sim.run(23).unwrap_or_else(|e| panic!("cycles: {e}"));
        assert_eq!(r.cycles, 23);
        // 7 + 2·D datagrams each way per cycle.
        assert_eq!((r.datagrams_in, r.datagrams_out), (23 * 11, 23 * 11), "datagrams per cycle");
        let s = sim.shard.stats();
        assert_eq!((s.parks.get(), s.retrieves.get(), s.notifies_sent.get()), (23, 23, 23 * 4));
        assert_eq!((s.parked.get(), s.bridged.get(), s.retransmissions.get()), (0, 0, 0));
        assert_eq!(sim.load_gen.c.ok, 23);
        assert_eq!(sim.misdirected + sim.load_gen.net.misdirected, 0);
        assert!(r.shard_time > Duration::ZERO && r.shard_time <= r.wall_time, "{r:?}");
    }

    #[test]
    fn parks_shed_503_are_refusals_not_failures() {
        let mut load = LoadConfig::new(ENGINE);
        load.tenants = 2;
        load.extensions = 4;
        load.devices = 1;
        load.sockets = 2;
        load.mode = Mode::Closed { concurrency: 4 };
        let mut cfg = Config::default();
        cfg.limits.overload = Some(sipark::proto::overload::Bounds { window: Duration::ZERO, ..Default::default() });
        let mut sim = ShardCycles::new(&load, Arc::new(cfg), 4, Duration::from_micros(100))
            .unwrap_or_else(|e| panic!("set-up: {e}"));
        shard_entry::load(&mut sim.shard, sim.now, Duration::from_secs(1));
        for _ in 0..4 {
            let now = sim.vnow();
            assert!(sim.load_gen.start_cycle(now), "a free extension");
        }
        sim.pump();
        let c = sim.load_gen.c;
        assert_eq!((c.shed_parks, c.shed_retrieves, c.failed, c.ok), (4, 0, 0, 0), "{c:?}");
        assert_eq!(sim.load_gen.active(), 0, "the refused cycles ended");
        assert_eq!(sim.load_gen.h_shed.count(), 4, "each 503's latency");
        assert_eq!(c.refusals[503 - 300], 4);
        assert_eq!(sim.shard.stats().requests_shed.get(), 4);
        // The extensions are free again: with the worker keeping up, the
        // same number of cycles completes.
        shard_entry::load(&mut sim.shard, sim.now, Duration::ZERO);
        sim.now += Duration::from_secs(2);
        shard_entry::load(&mut sim.shard, sim.now, Duration::ZERO);
        let r = sim.run(8).unwrap_or_else(|e| panic!("cycles after the overload: {e}"));
        assert_eq!(r.cycles, 8);
    }

    #[test]
    fn park_retrieve_refused_and_bye_keep_the_table_consistent() {
        let mut sim = ParkSim::new(Arc::new(table_config(100)));
        let parked = |sim: &ParkSim| sim.shard.stats().parked.get();
        let mut byes = Vec::new();
        for i in 0..12 {
            let (tenant, ext) = table_home(i);
            let mut bye = Vec::new();
            sim.park(i, 0, tenant, ext, Some(&mut bye)).unwrap_or_else(|e| panic!("park {i}: {e}"));
            byes.push(bye);
        }
        assert_eq!(parked(&sim), 12);
        assert_eq!(table_home(11), (1, wire::EXT_BASE + 1));
        // A retrieve the parked party refuses leaves the call parked.
        let (tenant, ext) = table_home(5);
        sim.retrieve_and_refuse(5, 1, tenant, ext).unwrap_or_else(|e| panic!("retrieve: {e}"));
        assert_eq!(parked(&sim), 12);
        assert_eq!(sim.shard.stats().retrieves.get(), 0);
        assert_eq!(sim.shard.stats().retrieves_failed.get(), 1);
        // A retrieve where nothing is parked is an error, not a silent pass.
        let err = sim.retrieve_and_refuse(99, 1, 77, wire::EXT_BASE);
        assert!(err.is_err(), "retrieve of an empty extension: {err:?}");
        sim.bye(&byes[5]).unwrap_or_else(|e| panic!("bye: {e}"));
        assert_eq!(parked(&sim), 11);
        // The same BYE again is a retransmission: its transaction answers 200 again.
        sim.bye(&byes[5]).unwrap_or_else(|e| panic!("retransmitted bye: {e}"));
        assert_eq!(parked(&sim), 11);
        sim.advance(Duration::from_secs(40)).unwrap_or_else(|e| panic!("advance: {e}"));
        assert_eq!(sim.shard.stats().transactions.get(), 0, "every transaction ended");
        assert_eq!(parked(&sim), 11);
    }

    #[test]
    fn park_info_notifies_are_answered() {
        let mut sim = ParkSim::new(Arc::new(table_config(10)));
        let (tenant, ext) = table_home(3);
        sim.register(0, tenant, ext, 0, 3600).unwrap_or_else(|e| panic!("register: {e}"));
        sim.register(1, tenant, ext, 1, 3600).unwrap_or_else(|e| panic!("register: {e}"));
        sim.park(3, 0, tenant, ext, None).unwrap_or_else(|e| panic!("park: {e}"));
        let s = sim.shard.stats();
        assert_eq!((s.bindings.get(), s.parked.get(), s.notifies_sent.get()), (2, 1, 2));
        sim.advance(Duration::from_secs(40)).unwrap_or_else(|e| panic!("advance: {e}"));
        let s = sim.shard.stats();
        assert_eq!((s.notifies_failed.get(), s.notifies_retransmitted.get(), s.transactions.get()), (0, 0, 0));
    }
}
