//! The generator's state machine and event loop (one thread).
//!
//! Every cycle lives in a slot; a slot's buffers (requests kept for
//! retransmission, ACKs, the 200 to the re-INVITE) are reused by the next
//! cycle, so after warm-up nothing is allocated per message. Incoming
//! messages are matched by index: our Call-IDs carry the slot and its
//! generation, and a park-info NOTIFY names its extension, whose current
//! cycle is looked up in a table indexed by tenant and extension.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sipark::proto::sip::parse::{Method, SipMessage, Uri};

use super::hist::Histogram;
use super::net::{BATCH, Net, NetStats, Rx};
use super::wire::{self, BG_EXT_BASE, Ctx, Dialog, EXT_BASE, Remote};
use super::{Failure, LoadConfig, LoadError, Mode};

/// Extension table value: no cycle.
const FREE: u32 = 0;
/// Extension table value: never used again (a failed cycle may have left
/// state behind in the engine).
const QUARANTINED: u32 = u32::MAX;
/// How often timers are scanned.
const SCAN: Duration = Duration::from_millis(10);
/// Most cycles started in one loop turn (open loop catching up).
const MAX_STARTS_PER_TURN: u32 = 256;
/// Most `recvmmsg` batches read from one socket in one loop turn.
const MAX_BATCHES_PER_TURN: usize = 8;

/// Client transaction kinds of a slot.
const CT_NONE: u8 = 0;
const CT_PARK: u8 = b'p';
const CT_RETRIEVE: u8 = b'r';
const CT_BYE: u8 = b'b';
/// The parked party's BYE after a retrieve was refused 503 (overload).
const CT_PARK_BYE: u8 = b'q';

/// Counters the generator keeps (cumulative over the run).
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    pub started: u64,
    pub ok: u64,
    pub failed: u64,
    pub not_started: u64,
    pub failures: [u64; Failure::COUNT],
    /// Our own retransmissions (requests and 2xx responses).
    pub retransmissions: u64,
    /// Retransmissions received from the engine (requests and 2xx).
    pub duplicates: u64,
    /// Messages that matched nothing current.
    pub stray: u64,
    /// Answers we sent to stray requests.
    pub stray_answered: u64,
    pub registered: u64,
    pub registration_failed: u64,
    pub unregistered: u64,
    pub unregistration_failed: u64,
    /// Background calls parked (200 received and ACKed).
    pub bg_ok: u64,
    /// Background parks refused (a final error response).
    pub bg_refused: u64,
    /// Background parks that got no final answer within 64·T1, or were
    /// still unanswered or not sent when their phase ran out of time.
    pub bg_no_answer: u64,
    /// Background calls the engine hung up (BYE) while they were parked.
    pub bg_lost: u64,
    /// Background calls hung up by our BYE (2xx received).
    pub bg_bye_ok: u64,
    /// Background BYEs refused or unanswered.
    pub bg_bye_failed: u64,
    /// Final error responses (300..=699) to our cycle requests, by status
    /// code minus 300.
    pub refusals: [u64; 400],
    /// Cycles whose park INVITE the engine refused `503 Service
    /// Unavailable` (overload control, or the transaction cap): ended
    /// cleanly, neither ok nor failed. (A 503 that names a limit, such as
    /// `Park Capacity Reached`, fails the cycle.)
    pub shed_parks: u64,
    /// Cycles whose retrieve the engine refused `503 Service Unavailable`
    /// after the park was admitted: the parked party hangs up (BYE), and
    /// the cycle ends, neither ok nor failed (a failure if that BYE fails).
    pub shed_retrieves: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: 0,
            ok: 0,
            failed: 0,
            not_started: 0,
            failures: [0; Failure::COUNT],
            retransmissions: 0,
            duplicates: 0,
            stray: 0,
            stray_answered: 0,
            registered: 0,
            registration_failed: 0,
            unregistered: 0,
            unregistration_failed: 0,
            bg_ok: 0,
            bg_refused: 0,
            bg_no_answer: 0,
            bg_lost: 0,
            bg_bye_ok: 0,
            bg_bye_failed: 0,
            refusals: [0; 400],
            shed_parks: 0,
            shed_retrieves: 0,
        }
    }
}

impl Counters {
    fn refused(&mut self, code: u16) {
        if let Some(n) = self.refusals.get_mut(usize::from(code.saturating_sub(300))) {
            *n += 1;
        }
    }
}

/// One client transaction of ours that may need retransmitting.
#[derive(Default)]
struct Txn {
    kind: u8,
    sock: usize,
    /// Got a provisional response (INVITE: no more retransmissions).
    proceeding: bool,
    next: u64,
    interval: u64,
    buf: Vec<u8>,
}

impl Txn {
    /// Starts the transaction of kind `kind` whose request is in `buf`, sent
    /// from socket `sock` at `now`: its first retransmission is due T1 later.
    fn start(&mut self, kind: u8, sock: usize, t1: u64, now: u64) {
        self.kind = kind;
        self.sock = sock;
        self.proceeding = false;
        self.interval = t1;
        self.next = now + t1;
    }
}

#[derive(Default)]
struct Slot {
    generation: u32,
    active: bool,
    tenant: u32,
    ext_idx: u32,
    retriever: u32,
    parker: u32,
    started: u64,
    deadline: u64,
    park_sent: u64,
    park_ok_at: u64,
    retr_sent: u64,
    ct: Txn,
    park_ok: bool,
    park_ack: Vec<u8>,
    /// The parked party's BYE, written from the park's 200, sent only if
    /// the retrieve is refused 503.
    park_bye: Vec<u8>,
    park_seen: u64,
    park_version: u64,
    retr_started: bool,
    retr_ok: bool,
    retr_ack: Vec<u8>,
    bye_buf: Vec<u8>,
    reinv_cseq: u32,
    reinv_acked: bool,
    uas: Vec<u8>,
    uas_pending: bool,
    uas_sock: usize,
    uas_dst: Option<SocketAddr>,
    uas_next: u64,
    uas_interval: u64,
    clear_seen: u64,
    clear_version: u64,
    bye_sent: bool,
    bye_ok: bool,
    bye_in: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum RegState {
    #[default]
    Idle,
    Pending,
    Done,
    Failed,
}

/// Where a background parked call is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum BgState {
    /// Not sent yet.
    #[default]
    Idle,
    /// INVITE sent, no final answer yet.
    Inviting,
    /// 200 received and ACKed.
    Parked,
    /// Refused, unanswered, or not sent in time.
    Failed,
    /// BYE sent, no final answer yet.
    Hanging,
    /// Hung up (BYE answered with 2xx).
    Done,
    /// The BYE was refused or unanswered.
    HangupFailed,
    /// The engine hung it up while parked.
    Lost,
}

/// The engine's side of a background call's dialog, kept for its ACK and BYE.
#[derive(Debug)]
struct BgRemote {
    tag: Box<[u8]>,
    target: Box<[u8]>,
    routes: Box<[Box<[u8]>]>,
}

/// One background parked call: state and retransmission timer of its
/// current client transaction (INVITE or BYE).
#[derive(Debug, Default)]
struct Bg {
    state: BgState,
    /// INVITE: a provisional response arrived (no more retransmissions).
    proceeding: bool,
    next: u64,
    interval: u64,
    give_up: u64,
    remote: Option<Box<BgRemote>>,
}

impl BgRemote {
    fn of(r: &Remote<'_>) -> BgRemote {
        BgRemote {
            tag: r.tag.into(),
            target: r.target.into(),
            routes: r.routes().iter().map(|x| (*x).into()).collect(),
        }
    }

    fn remote(&self) -> Option<Remote<'_>> {
        let mut routes: [&[u8]; wire::MAX_ROUTES] = [&[]; wire::MAX_ROUTES];
        if self.routes.len() > routes.len() {
            return None;
        }
        for (slot, r) in routes.iter_mut().zip(self.routes.iter()) {
            *slot = r;
        }
        Some(Remote { tag: &self.tag, target: &self.target, routes, n_routes: self.routes.len() })
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Reg {
    state: RegState,
    cseq: u32,
    next: u64,
    interval: u64,
    give_up: u64,
}

/// Where the generator's datagrams go: the UDP sockets of [`Net`], or
/// memory (`load::mem`, which feeds a [`sipark::proto::shard::Shard`]
/// directly). Socket `i` is the generator's `i`-th local address.
pub trait Transport {
    /// Number of local sockets (at least 1).
    fn sockets(&self) -> usize;
    /// The local address of socket `i`.
    fn local(&self, i: usize) -> SocketAddr;
    /// Sends (or queues) `data` to `dst` from socket `i`.
    fn send(&mut self, i: usize, dst: SocketAddr, data: &[u8]);
}

impl Transport for Net {
    fn sockets(&self) -> usize {
        self.len()
    }

    fn local(&self, i: usize) -> SocketAddr {
        Net::local(self, i)
    }

    fn send(&mut self, i: usize, dst: SocketAddr, data: &[u8]) {
        Net::send(self, i, dst, data);
    }
}

/// The generator: the park-cycle state machine over a [`Transport`].
pub struct Gen<'c, T: Transport = Net> {
    cfg: &'c LoadConfig,
    ctx: Ctx,
    pub net: T,
    clock: Instant,
    hostports: Vec<Vec<u8>>,
    ip: Vec<u8>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots `0..high` have been used.
    high: usize,
    max_slots: usize,
    active: u32,
    ext_owner: Vec<u32>,
    ext_version: Vec<u64>,
    regs: Vec<Reg>,
    /// Background parked calls (`--background-parked`), by number.
    bg: Vec<Bg>,
    /// Background calls with a transaction in flight.
    bg_inflight: Vec<u32>,
    bg_buf: Vec<u8>,
    /// Where background calls' SDP says to send media (address text and
    /// port), call `k` to entry `k % len`; empty: nowhere anyone listens
    /// ([`bg_rtp`] on the generator's address).
    bg_media: Vec<(Vec<u8>, u16)>,
    /// Final error responses to background INVITEs, by status code minus 300.
    pub bg_refusals: [u64; 400],
    rng: u64,
    scratch: Vec<u8>,
    body: Vec<u8>,
    user: Vec<u8>,
    all_devices: u64,
    t1: u64,
    t2: u64,
    cycle_timeout: u64,
    pub c: Counters,
    pub h_park: Histogram,
    pub h_notify: Histogram,
    pub h_retrieve: Histogram,
    /// Whole admitted cycles: first park INVITE sent to the last BYE answer.
    pub h_cycle: Histogram,
    /// Refused requests: first INVITE sent to its 503 received.
    pub h_shed: Histogram,
    /// Of those, the 503s the engine's XDP program sent (their Via is the
    /// request's as sent: an `rport` without a value; ADR 0022).
    pub h_shed_nic: Histogram,
    /// When the datagram being handled reached its socket (the kernel's
    /// receive stamp, on the generator's clock), if known: where the
    /// latencies end.
    arrived: Option<u64>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn us(ns: u64) -> u64 {
    ns / 1000
}

impl<'c> Gen<'c, Net> {
    /// Binds the sockets and sizes the tables.
    pub fn new(cfg: &'c LoadConfig, nonce: u32) -> Result<Gen<'c, Net>, LoadError> {
        let net = Net::bind(cfg.bind, cfg.sockets).map_err(|e| LoadError::Io(format!("bind {}: {e}", cfg.bind)))?;
        Ok(Gen::with_transport(cfg, nonce, net))
    }
}

impl<'c, T: Transport> Gen<'c, T> {
    /// A generator sending through `net` (whose local addresses go into
    /// Via and Contact).
    pub fn with_transport(cfg: &'c LoadConfig, nonce: u32, net: T) -> Gen<'c, T> {
        let hostports: Vec<Vec<u8>> = (0..net.sockets()).map(|i| net.local(i).to_string().into_bytes()).collect();
        let ip = match cfg.bind {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a.to_string(),
        }
        .into_bytes();
        let exts = cfg.tenants as usize * cfg.extensions as usize;
        let devices = exts * cfg.devices as usize;
        let max_slots = match cfg.mode {
            Mode::Closed { concurrency } => concurrency as usize,
            // One cycle per extension at a time, and room to pick a free one.
            Mode::Open { .. } => (cfg.max_inflight as usize).min((exts / 2).max(1)),
        };
        let t1 = ns(cfg.t1).max(1);
        Gen {
            cfg,
            ctx: Ctx::new(nonce, &cfg.park_fac, &cfg.retrieve_fac, cfg.bind.is_ipv6()),
            net,
            clock: Instant::now(),
            hostports,
            ip,
            slots: Vec::with_capacity(max_slots),
            free: Vec::with_capacity(max_slots),
            high: 0,
            max_slots,
            active: 0,
            ext_owner: vec![FREE; exts],
            ext_version: vec![0; exts],
            regs: vec![Reg::default(); devices],
            bg: Vec::new(),
            bg_inflight: Vec::new(),
            bg_buf: Vec::with_capacity(2048),
            bg_media: Vec::new(),
            bg_refusals: [0; 400],
            rng: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
            scratch: Vec::with_capacity(2048),
            body: Vec::with_capacity(512),
            user: Vec::with_capacity(32),
            all_devices: if cfg.devices >= 64 { u64::MAX } else { (1u64 << cfg.devices) - 1 },
            t1,
            t2: ns(cfg.t2).max(t1),
            cycle_timeout: 64 * t1,
            c: Counters::default(),
            h_park: Histogram::new(),
            h_notify: Histogram::new(),
            h_retrieve: Histogram::new(),
            h_cycle: Histogram::new(),
            h_shed: Histogram::new(),
            h_shed_nic: Histogram::new(),
            arrived: None,
        }
    }

    /// Nanoseconds since the generator started.
    pub fn now(&self) -> u64 {
        ns(self.clock.elapsed())
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn rand_below(&mut self, n: u32) -> u32 {
        (((self.rand() >> 32) * u64::from(n.max(1))) >> 32) as u32
    }

    /// Global device number of device `k` of extension index `e` of `tenant`.
    fn device(&self, tenant: u32, e: u32, k: u32) -> u32 {
        (tenant * self.cfg.extensions + e) * self.cfg.devices + k
    }

    fn device_sock(&self, dev: u32) -> usize {
        dev as usize % self.net.sockets()
    }

    fn slot_sock(&self, slot: usize) -> usize {
        slot % self.net.sockets()
    }

    // ----- input ----------------------------------------------------------

    /// Handles one datagram from `src` received on socket `sock` at `now`
    /// (nanoseconds on the generator's clock).
    pub fn on_datagram(&mut self, sock: usize, src: SocketAddr, data: &[u8], now: u64) {
        let Ok(msg) = SipMessage::parse(data) else {
            self.c.stray += 1;
            return;
        };
        match msg.method() {
            None => self.on_response(&msg, now),
            Some(m) => self.on_request(sock, src, &msg, m, now),
        }
    }

    // ----- responses ------------------------------------------------------

    fn on_response(&mut self, msg: &SipMessage<'_>, now: u64) {
        let id = msg.call_id().ok().and_then(|c| wire::parse_id(c, Some(&self.ctx.call_id_host)));
        let (Some((kind, slot, generation)), Ok(cseq), Some(code)) = (id, msg.cseq(), msg.status()) else {
            self.c.stray += 1;
            return;
        };
        if kind == b'g' {
            self.on_reg_response(slot as usize, cseq.seq, code, now);
            return;
        }
        if kind == b'k' {
            self.on_bg_response(slot as usize, cseq.method, code, msg, now);
            return;
        }
        let s = slot as usize;
        if s >= self.high || !self.slots[s].active || self.slots[s].generation != generation {
            self.c.stray += 1;
            return;
        }
        match (kind, cseq.method) {
            (b'p', Method::Invite) => self.on_invite_response(s, b'p', code, msg, now),
            (b'p', Method::Bye) => self.on_park_bye_response(s, code),
            (b'r', Method::Invite) => self.on_invite_response(s, b'r', code, msg, now),
            (b'r', Method::Bye) => {
                if code < 200 {
                    return;
                }
                let sl = &mut self.slots[s];
                if sl.bye_ok || sl.ct.kind != CT_BYE {
                    self.c.duplicates += 1;
                    return;
                }
                sl.ct.kind = CT_NONE;
                if code < 300 {
                    sl.bye_ok = true;
                    self.progress(s, now);
                } else {
                    self.c.refused(code);
                    self.fail(s, Failure::ByeRefused);
                }
            }
            _ => self.c.stray += 1,
        }
    }

    fn on_invite_response(&mut self, s: usize, kind: u8, code: u16, msg: &SipMessage<'_>, now: u64) {
        let sl = &mut self.slots[s];
        let ct_kind = if kind == b'p' { CT_PARK } else { CT_RETRIEVE };
        if code < 200 {
            if sl.ct.kind == ct_kind {
                sl.ct.proceeding = true;
            }
            return;
        }
        let done = if kind == b'p' { sl.park_ok } else { sl.retr_ok };
        let sock = if kind == b'p' { self.slot_sock(s) } else { self.device_sock(self.retriever_dev(s)) };
        let target = self.cfg.target;
        let sl = &mut self.slots[s];
        if code >= 300 && sl.ct.kind != ct_kind && sl.ct.kind == CT_PARK_BYE {
            // The refused retrieve's 503 again (our ACK was lost), while the
            // parked party hangs up: already taken.
            self.c.duplicates += 1;
            return;
        }
        if code >= 300 {
            // A final error: ACK it (same branch), then the cycle failed.
            if sl.ct.kind == ct_kind && wire::ack_non_2xx(&mut self.scratch, &sl.ct.buf, msg) {
                self.net.send(sock, target, &self.scratch);
            }
            self.c.refused(code);
            if code == 503 && sl.ct.kind == ct_kind && msg.reason_phrase() == Some(b"Service Unavailable") {
                // Overload (sipark's overload control, or its transaction
                // cap): a refusal, not a failure. The 503s of a full park
                // or registrar name their limit and fail the cycle.
                let sent = if kind == b'p' { sl.park_sent } else { sl.retr_sent };
                let at = self.arrived.unwrap_or(now);
                self.h_shed.record(us(at.saturating_sub(sent)));
                if msg.top_via().ok().and_then(|v| v.param(b"rport")) == Some(None) {
                    self.h_shed_nic.record(us(at.saturating_sub(sent)));
                }
                if kind == b'p' {
                    self.c.shed_parks += 1;
                    self.refused(s);
                } else {
                    self.c.shed_retrieves += 1;
                    self.hang_up_parked(s, now);
                }
                return;
            }
            let why = if kind == b'p' { Failure::ParkRefused } else { Failure::RetrieveRefused };
            self.fail(s, why);
            return;
        }
        if done {
            // The engine resent its 2xx: our ACK was late or lost.
            self.c.duplicates += 1;
            self.c.retransmissions += 1;
            let ack = if kind == b'p' { &sl.park_ack } else { &sl.retr_ack };
            self.net.send(sock, target, ack);
            return;
        }
        let d =
            Dialog { kind, slot: s as u32, generation: sl.generation, tenant: sl.tenant, ext: EXT_BASE + sl.ext_idx };
        let hostport = &self.hostports[sock];
        let built = if kind == b'p' {
            wire::in_dialog(&mut sl.park_ack, &self.ctx, &d, hostport, msg, b"ACK", 1, b'a')
                && wire::in_dialog(&mut sl.park_bye, &self.ctx, &d, hostport, msg, b"BYE", 2, b'x')
        } else {
            wire::in_dialog(&mut sl.retr_ack, &self.ctx, &d, hostport, msg, b"ACK", 1, b'c')
                && wire::in_dialog(&mut sl.bye_buf, &self.ctx, &d, hostport, msg, b"BYE", 2, b'b')
        };
        if !built {
            self.fail(s, Failure::BadMessage);
            return;
        }
        sl.ct.kind = CT_NONE;
        if kind == b'p' {
            sl.park_ok = true;
            let at = self.arrived.unwrap_or(now);
            sl.park_ok_at = at;
            self.h_park.record(us(at.saturating_sub(sl.park_sent)));
            self.net.send(sock, target, &sl.park_ack);
        } else {
            sl.retr_ok = true;
            self.h_retrieve.record(us(self.arrived.unwrap_or(now).saturating_sub(sl.retr_sent)));
            self.net.send(sock, target, &sl.retr_ack);
        }
        self.progress(s, now);
    }

    /// The answer to the parked party's BYE after a refused retrieve.
    fn on_park_bye_response(&mut self, s: usize, code: u16) {
        if code < 200 {
            return;
        }
        if self.slots[s].ct.kind != CT_PARK_BYE {
            self.c.duplicates += 1;
            return;
        }
        if code < 300 {
            self.refused(s);
        } else {
            self.c.refused(code);
            self.fail(s, Failure::ByeRefused);
        }
    }

    fn on_reg_response(&mut self, dev: usize, cseq: u32, code: u16, _now: u64) {
        let Some(r) = self.regs.get_mut(dev) else {
            self.c.stray += 1;
            return;
        };
        if code < 200 {
            return;
        }
        if r.state != RegState::Pending || r.cseq != cseq {
            self.c.duplicates += 1;
            return;
        }
        let ok = code < 300;
        r.state = if ok { RegState::Done } else { RegState::Failed };
        match (cseq, ok) {
            (1, true) => self.c.registered += 1,
            (1, false) => self.c.registration_failed += 1,
            (_, true) => self.c.unregistered += 1,
            (_, false) => self.c.unregistration_failed += 1,
        }
    }

    // ----- requests -------------------------------------------------------

    fn respond(&mut self, sock: usize, src: SocketAddr, msg: &SipMessage<'_>, status: &[u8], to_tag: Option<&[u8]>) {
        wire::response(&mut self.scratch, msg, status, to_tag, None, None);
        self.net.send(sock, src, &self.scratch);
    }

    fn on_request(&mut self, sock: usize, src: SocketAddr, msg: &SipMessage<'_>, method: Method<'_>, now: u64) {
        let id = msg.call_id().ok().and_then(|c| wire::parse_id(c, Some(&self.ctx.call_id_host)));
        if let Some((kind, slot, generation)) = id {
            if kind == b'k' {
                self.on_bg_request(sock, src, slot as usize, msg, method);
                return;
            }
            let s = slot as usize;
            let current = s < self.high && self.slots[s].active && self.slots[s].generation == generation;
            if kind == b'p' && current {
                match method {
                    Method::Invite => self.on_reinvite(s, sock, src, msg, now),
                    Method::Ack => self.on_parked_ack(s, msg, now),
                    Method::Bye => self.on_parked_bye(s, sock, src, msg, now),
                    _ => {
                        self.c.stray += 1;
                        self.c.stray_answered += 1;
                        self.respond(sock, src, msg, b"405 Method Not Allowed", None);
                    }
                }
                return;
            }
            // A request in a dialog of a finished cycle, or to the retriever
            // (sipark only sends it one if the cycle went wrong).
            self.c.stray += 1;
            if method != Method::Ack {
                self.c.stray_answered += 1;
                self.respond(sock, src, msg, b"481 Call/Transaction Does Not Exist", None);
            }
            return;
        }
        match method {
            Method::Notify => self.on_notify(sock, src, msg, now),
            Method::Ack => self.c.stray += 1,
            _ => {
                self.c.stray += 1;
                self.c.stray_answered += 1;
                self.respond(sock, src, msg, b"405 Method Not Allowed", None);
            }
        }
    }

    fn on_reinvite(&mut self, s: usize, sock: usize, src: SocketAddr, msg: &SipMessage<'_>, now: u64) {
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        let sl = &mut self.slots[s];
        if sl.reinv_cseq != 0 && sl.reinv_cseq == cseq {
            self.c.duplicates += 1;
            self.c.retransmissions += 1;
            self.net.send(sock, src, &sl.uas);
            return;
        }
        if !sl.retr_started || sl.reinv_cseq != 0 {
            // Not the retrieve's re-INVITE (a recall, or a second offer).
            self.c.stray += 1;
            self.c.stray_answered += 1;
            self.respond(sock, src, msg, b"491 Request Pending", None);
            return;
        }
        sl.reinv_cseq = cseq;
        self.body.clear();
        wire::sdp(&mut self.body, &self.ctx, &self.ip, parked_rtp(s), s as u32, 2, true);
        self.user.clear();
        self.user.extend_from_slice(b"pk");
        wire::num(&mut self.user, s as u64);
        let sl = &mut self.slots[s];
        wire::response(&mut sl.uas, msg, b"200 OK", None, Some((&self.user, &self.hostports[sock])), Some(&self.body));
        sl.uas_pending = true;
        sl.uas_sock = sock;
        sl.uas_dst = Some(src);
        sl.uas_interval = self.t1;
        sl.uas_next = now + self.t1;
        self.net.send(sock, src, &sl.uas);
    }

    fn on_parked_ack(&mut self, s: usize, msg: &SipMessage<'_>, now: u64) {
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        let sl = &mut self.slots[s];
        if sl.reinv_cseq == 0 || cseq != sl.reinv_cseq {
            self.c.stray += 1;
            return;
        }
        if sl.reinv_acked {
            self.c.duplicates += 1;
            return;
        }
        sl.reinv_acked = true;
        sl.uas_pending = false;
        self.progress(s, now);
    }

    fn on_parked_bye(&mut self, s: usize, sock: usize, src: SocketAddr, msg: &SipMessage<'_>, now: u64) {
        self.respond(sock, src, msg, b"200 OK", None);
        let sl = &mut self.slots[s];
        if !sl.bye_sent {
            // sipark hung up the parked party on its own.
            self.fail(s, Failure::HungUp);
            return;
        }
        if sl.bye_in {
            self.c.duplicates += 1;
            self.c.retransmissions += 1;
            return;
        }
        sl.bye_in = true;
        self.progress(s, now);
    }

    /// A park-info NOTIFY to device `<ext>-d<k>`; the tenant is the To host.
    fn on_notify(&mut self, sock: usize, src: SocketAddr, msg: &SipMessage<'_>, now: u64) {
        if msg.event() != Some(b"park-info") {
            self.c.stray += 1;
            self.c.stray_answered += 1;
            self.respond(sock, src, msg, b"489 Bad Event", None);
            return;
        }
        self.respond(sock, src, msg, b"200 OK", Some(b"ln"));
        let Some((idx, k)) = self.notify_target(msg) else {
            self.c.stray += 1;
            self.c.stray_answered += 1;
            return;
        };
        let owner = self.ext_owner[idx];
        if owner == FREE || owner == QUARANTINED {
            // A late copy for a finished cycle.
            self.c.stray += 1;
            self.c.stray_answered += 1;
            return;
        }
        let s = (owner - 1) as usize;
        let body = msg.body();
        let Some(version) = wire::park_info_version(body) else {
            self.c.stray += 1;
            self.c.stray_answered += 1;
            return;
        };
        let bit = 1u64 << k;
        let last = self.ext_version[idx];
        let sl = &mut self.slots[s];
        if wire::park_info_has_parked(body) {
            if version <= last || (sl.park_version != 0 && version < sl.park_version) {
                self.c.duplicates += 1;
                self.c.retransmissions += 1;
                return;
            }
            if sl.park_version != 0 && version != sl.park_version {
                self.c.stray += 1;
                self.c.stray_answered += 1;
                return;
            }
            if sl.park_seen & bit != 0 {
                self.c.duplicates += 1;
                self.c.retransmissions += 1;
                return;
            }
            sl.park_version = version;
            sl.park_seen |= bit;
            self.h_notify.record(us(self.arrived.unwrap_or(now).saturating_sub(sl.park_ok_at)));
        } else {
            if sl.park_version == 0 || version <= sl.park_version {
                self.c.duplicates += 1;
                self.c.retransmissions += 1;
                return;
            }
            if sl.clear_seen & bit != 0 {
                self.c.duplicates += 1;
                self.c.retransmissions += 1;
                return;
            }
            sl.clear_seen |= bit;
            sl.clear_version = sl.clear_version.max(version);
        }
        self.progress(s, now);
    }

    /// `(extension table index, device k)` of a NOTIFY's target.
    fn notify_target(&self, msg: &SipMessage<'_>) -> Option<(usize, u32)> {
        let ruri = Uri::parse(msg.request_uri()?).ok()?;
        let user = ruri.user?;
        let dash = memchr::memmem::find(user, b"-d")?;
        let ext = u32::try_from(wire::parse_num(&user[..dash])?).ok()?;
        let k = u32::try_from(wire::parse_num(&user[dash + 2..])?).ok()?;
        let to = msg.to_hdr().ok()?;
        let tenant = wire::parse_domain(to.uri.host)?;
        let e = ext.checked_sub(EXT_BASE)?;
        if tenant >= self.cfg.tenants || e >= self.cfg.extensions || k >= self.cfg.devices.min(64) {
            return None;
        }
        Some(((tenant * self.cfg.extensions + e) as usize, k))
    }

    // ----- background parked calls ----------------------------------------

    /// Tenant and extension number of background call `k`: extension
    /// `BG_EXT_BASE + k / tenants` of tenant `k % tenants`.
    fn bg_home(&self, k: u32) -> (u32, u32) {
        let t = self.cfg.tenants.max(1);
        (k % t, BG_EXT_BASE + k / t)
    }

    fn bg_dialog(&self, k: u32) -> Dialog {
        let (tenant, ext) = self.bg_home(k);
        Dialog { kind: b'k', slot: k, generation: 0, tenant, ext }
    }

    fn bg_sock(&self, k: u32) -> usize {
        k as usize % self.net.sockets()
    }

    /// Background call `k`'s SDP names `addrs[k % addrs.len()]` as its
    /// media address from now on (`c=` and `m=`), where it names
    /// [`bg_rtp`] on the generator's address without: the music-on-hold
    /// bench's RTP receivers (`load::moh`). The addresses must be of the
    /// generator's family (its SDP says `IN IP4` or `IN IP6` by `bind`).
    pub fn set_background_media(&mut self, addrs: &[SocketAddr]) {
        self.bg_media = addrs.iter().map(|a| (a.ip().to_string().into_bytes(), a.port())).collect();
    }

    /// Writes background call `k`'s park INVITE (Referred-By: its own,
    /// unregistered extension) into `bg_buf`.
    fn build_bg_invite(&mut self, k: u32) {
        let d = self.bg_dialog(k);
        let sock = self.bg_sock(k);
        self.body.clear();
        match self.bg_media.get(k as usize % self.bg_media.len().max(1)) {
            Some((ip, port)) => wire::sdp(&mut self.body, &self.ctx, ip, *port, k, 1, false),
            None => wire::sdp(&mut self.body, &self.ctx, &self.ip, bg_rtp(k), k, 1, false),
        }
        self.user.clear();
        self.user.extend_from_slice(b"bg");
        wire::num(&mut self.user, u64::from(k));
        wire::invite(&mut self.bg_buf, &self.ctx, &d, &self.hostports[sock], &self.user, Some(d.ext), &self.body);
    }

    /// Writes background call `k`'s ACK (CSeq 1) or BYE (CSeq 2) into
    /// `bg_buf`; false if it has no dialog.
    fn build_bg_in_dialog(&mut self, k: u32, bye: bool) -> bool {
        let d = self.bg_dialog(k);
        let sock = self.bg_sock(k);
        let Some(remote) = self.bg.get(k as usize).and_then(|b| b.remote.as_deref()).and_then(BgRemote::remote) else {
            return false;
        };
        let (method, cseq, branch) = if bye { (&b"BYE"[..], 2, b'm') } else { (&b"ACK"[..], 1, b'l') };
        wire::in_dialog_to(&mut self.bg_buf, &self.ctx, &d, &self.hostports[sock], &remote, method, cseq, branch);
        true
    }

    /// Sends background call `k`'s park INVITE at `now`.
    fn begin_bg_park(&mut self, k: u32, now: u64) {
        self.build_bg_invite(k);
        let sock = self.bg_sock(k);
        self.net.send(sock, self.cfg.target, &self.bg_buf);
        let t1 = self.t1;
        if let Some(b) = self.bg.get_mut(k as usize) {
            *b = Bg {
                state: BgState::Inviting,
                proceeding: false,
                next: now + t1,
                interval: t1,
                give_up: now + 64 * t1,
                remote: None,
            };
        }
    }

    /// Sends background call `k`'s BYE at `now`; false if it has no dialog.
    fn begin_bg_bye(&mut self, k: u32, now: u64) -> bool {
        if !self.build_bg_in_dialog(k, true) {
            return false;
        }
        let sock = self.bg_sock(k);
        self.net.send(sock, self.cfg.target, &self.bg_buf);
        let t1 = self.t1;
        if let Some(b) = self.bg.get_mut(k as usize) {
            b.state = BgState::Hanging;
            b.proceeding = false;
            b.next = now + t1;
            b.interval = t1;
            b.give_up = now + 64 * t1;
        }
        true
    }

    fn on_bg_response(&mut self, k: usize, method: Method<'_>, code: u16, msg: &SipMessage<'_>, _now: u64) {
        let Some(state) = self.bg.get(k).map(|b| b.state) else {
            self.c.stray += 1;
            return;
        };
        let sock = self.bg_sock(k as u32);
        let target = self.cfg.target;
        match method {
            Method::Invite if code < 200 => {
                if state == BgState::Inviting {
                    self.bg[k].proceeding = true;
                }
            }
            Method::Invite if code >= 300 => {
                if state != BgState::Inviting && state != BgState::Failed {
                    self.c.stray += 1;
                    return;
                }
                // ACK it (same branch as the INVITE), also when resent.
                self.build_bg_invite(k as u32);
                if wire::ack_non_2xx(&mut self.scratch, &self.bg_buf, msg) {
                    self.net.send(sock, target, &self.scratch);
                }
                if state == BgState::Inviting {
                    self.bg[k].state = BgState::Failed;
                    self.c.bg_refused += 1;
                    if let Some(n) = self.bg_refusals.get_mut(usize::from(code.saturating_sub(300))) {
                        *n += 1;
                    }
                } else {
                    self.c.duplicates += 1;
                }
            }
            Method::Invite => match state {
                BgState::Inviting => {
                    let Some(remote) = Remote::of(msg) else {
                        self.bg[k].state = BgState::Failed;
                        self.c.bg_refused += 1;
                        return;
                    };
                    self.bg[k].remote = Some(Box::new(BgRemote::of(&remote)));
                    self.bg[k].state = BgState::Parked;
                    self.c.bg_ok += 1;
                    if self.build_bg_in_dialog(k as u32, false) {
                        self.net.send(sock, target, &self.bg_buf);
                    }
                }
                BgState::Parked | BgState::Hanging => {
                    // The engine resent its 2xx: our ACK was late or lost.
                    self.c.duplicates += 1;
                    if self.build_bg_in_dialog(k as u32, false) {
                        self.c.retransmissions += 1;
                        self.net.send(sock, target, &self.bg_buf);
                    }
                }
                _ => self.c.stray += 1,
            },
            Method::Bye => {
                if code < 200 {
                    return;
                }
                if state != BgState::Hanging {
                    self.c.duplicates += 1;
                    return;
                }
                if code < 300 {
                    self.bg[k].state = BgState::Done;
                    self.c.bg_bye_ok += 1;
                } else {
                    self.bg[k].state = BgState::HangupFailed;
                    self.c.bg_bye_failed += 1;
                }
            }
            _ => self.c.stray += 1,
        }
    }

    /// A request in a background call's dialog: only a BYE is expected
    /// (the engine hung the call up, e.g. at its park timeout).
    fn on_bg_request(&mut self, sock: usize, src: SocketAddr, k: usize, msg: &SipMessage<'_>, method: Method<'_>) {
        let state = self.bg.get(k).map(|b| b.state);
        match (method, state) {
            (Method::Bye, Some(BgState::Parked)) => {
                self.respond(sock, src, msg, b"200 OK", None);
                self.bg[k].state = BgState::Lost;
                self.c.bg_lost += 1;
            }
            (Method::Bye, Some(BgState::Lost | BgState::Hanging | BgState::Done)) => {
                self.respond(sock, src, msg, b"200 OK", None);
            }
            (Method::Ack, _) => self.c.stray += 1,
            _ => {
                self.c.stray += 1;
                self.c.stray_answered += 1;
                self.respond(sock, src, msg, b"481 Call/Transaction Does Not Exist", None);
            }
        }
    }

    /// Retransmissions and give-ups of the background transactions in
    /// flight (those in state `pending`).
    fn scan_background(&mut self, now: u64, pending: BgState) {
        let target = self.cfg.target;
        for i in 0..self.bg_inflight.len() {
            let k = self.bg_inflight[i];
            let Some(b) = self.bg.get_mut(k as usize) else { continue };
            if b.state != pending {
                continue;
            }
            let invite = pending == BgState::Inviting;
            if now >= b.give_up {
                if invite {
                    b.state = BgState::Failed;
                    self.c.bg_no_answer += 1;
                } else {
                    b.state = BgState::HangupFailed;
                    self.c.bg_bye_failed += 1;
                }
                continue;
            }
            if b.proceeding || now < b.next {
                continue;
            }
            b.interval = if invite { b.interval * 2 } else { (b.interval * 2).min(self.t2) };
            b.next = now + b.interval;
            let built = if invite {
                self.build_bg_invite(k);
                true
            } else {
                self.build_bg_in_dialog(k, true)
            };
            if built {
                self.net.send(self.bg_sock(k), target, &self.bg_buf);
                self.c.retransmissions += 1;
            }
        }
    }

    /// Background calls parked now (parked and not yet hung up by anyone).
    pub fn background_parked_now(&self) -> u64 {
        self.bg.iter().filter(|b| b.state == BgState::Parked).count() as u64
    }

    // ----- cycles ---------------------------------------------------------

    fn retriever_dev(&self, s: usize) -> u32 {
        let sl = &self.slots[s];
        self.device(sl.tenant, sl.ext_idx, sl.retriever)
    }

    /// Starts one cycle at `now`; false if no slot or no idle extension
    /// was found.
    pub fn start_cycle(&mut self, now: u64) -> bool {
        let s = match self.free.pop() {
            Some(s) => s as usize,
            None if self.high < self.max_slots => {
                self.slots.push(Slot::default());
                self.high += 1;
                self.high - 1
            }
            None => return false,
        };
        let mut pick = None;
        for _ in 0..32 {
            let t = self.rand_below(self.cfg.tenants);
            let e = self.rand_below(self.cfg.extensions);
            let idx = (t * self.cfg.extensions + e) as usize;
            if self.ext_owner[idx] == FREE {
                pick = Some((t, e, idx));
                break;
            }
        }
        let Some((tenant, e, idx)) = pick else {
            self.free.push(s as u32);
            return false;
        };
        let parker = if self.cfg.extensions > 1 {
            EXT_BASE + (e + 1 + self.rand_below(self.cfg.extensions - 1)) % self.cfg.extensions
        } else {
            EXT_BASE + self.cfg.extensions
        };
        let retriever = self.rand_below(self.cfg.devices);
        self.ext_owner[idx] = s as u32 + 1;
        let sock = self.slot_sock(s);
        let sl = &mut self.slots[s];
        sl.generation = sl.generation.wrapping_add(1);
        sl.active = true;
        sl.tenant = tenant;
        sl.ext_idx = e;
        sl.retriever = retriever;
        sl.parker = parker;
        sl.started = now;
        sl.deadline = now + self.cycle_timeout;
        sl.park_ok = false;
        sl.park_seen = 0;
        sl.park_version = 0;
        sl.retr_started = false;
        sl.retr_ok = false;
        sl.reinv_cseq = 0;
        sl.reinv_acked = false;
        sl.uas_pending = false;
        sl.clear_seen = 0;
        sl.clear_version = 0;
        sl.bye_sent = false;
        sl.bye_ok = false;
        sl.bye_in = false;
        let d = Dialog { kind: b'p', slot: s as u32, generation: sl.generation, tenant, ext: EXT_BASE + e };
        self.body.clear();
        wire::sdp(&mut self.body, &self.ctx, &self.ip, parked_rtp(s), s as u32, 1, false);
        self.user.clear();
        self.user.extend_from_slice(b"pk");
        wire::num(&mut self.user, s as u64);
        let sl = &mut self.slots[s];
        wire::invite(&mut sl.ct.buf, &self.ctx, &d, &self.hostports[sock], &self.user, Some(parker), &self.body);
        sl.ct.start(CT_PARK, sock, self.t1, now);
        sl.park_sent = now;
        self.net.send(sock, self.cfg.target, &sl.ct.buf);
        self.active += 1;
        self.c.started += 1;
        true
    }

    fn start_retrieve(&mut self, s: usize, now: u64) {
        let dev = self.retriever_dev(s);
        let sock = self.device_sock(dev);
        let sl = &self.slots[s];
        let ext = EXT_BASE + sl.ext_idx;
        let d = Dialog { kind: b'r', slot: s as u32, generation: sl.generation, tenant: sl.tenant, ext };
        self.user.clear();
        wire::num(&mut self.user, u64::from(ext));
        self.user.extend_from_slice(b"-d");
        wire::num(&mut self.user, u64::from(sl.retriever));
        self.body.clear();
        wire::sdp(&mut self.body, &self.ctx, &self.ip, device_rtp(dev), dev, 1, false);
        let sl = &mut self.slots[s];
        wire::invite(&mut sl.ct.buf, &self.ctx, &d, &self.hostports[sock], &self.user, None, &self.body);
        sl.retr_started = true;
        sl.retr_sent = now;
        sl.ct.start(CT_RETRIEVE, sock, self.t1, now);
        self.net.send(sock, self.cfg.target, &sl.ct.buf);
    }

    /// Moves cycle `s` on as far as what has happened allows.
    fn progress(&mut self, s: usize, now: u64) {
        let all = self.all_devices;
        let sl = &self.slots[s];
        if !sl.active {
            return;
        }
        if sl.park_ok && sl.park_seen == all && !sl.retr_started {
            self.start_retrieve(s, now);
        }
        let sl = &mut self.slots[s];
        if sl.retr_ok && sl.reinv_acked && sl.clear_seen == all && !sl.bye_sent {
            sl.bye_sent = true;
            std::mem::swap(&mut sl.ct.buf, &mut sl.bye_buf);
            let sock = sl.ct.sock; // the retriever's socket
            sl.ct.start(CT_BYE, sock, self.t1, now);
            self.net.send(sock, self.cfg.target, &sl.ct.buf);
        }
        let sl = &self.slots[s];
        if sl.bye_ok && sl.bye_in {
            let idx = self.ext_index(s);
            self.ext_version[idx] = sl.clear_version;
            self.ext_owner[idx] = FREE;
            self.c.ok += 1;
            self.h_cycle.record(us(self.arrived.unwrap_or(now).saturating_sub(sl.started)));
            self.release(s);
        }
    }

    /// Ends cycle `s`, refused by overload control with nothing left in the
    /// engine: its extension is free again.
    fn refused(&mut self, s: usize) {
        if !self.slots[s].active {
            return;
        }
        let idx = self.ext_index(s);
        // A clearing NOTIFY may still come: the next cycle's park-info
        // must be newer than this cycle's.
        self.ext_version[idx] = self.ext_version[idx].max(self.slots[s].park_version);
        self.ext_owner[idx] = FREE;
        self.release(s);
    }

    /// After a retrieve refused 503: the parked party hangs up (BYE on the
    /// park's dialog), so that the cycle leaves nothing behind.
    fn hang_up_parked(&mut self, s: usize, now: u64) {
        let sock = self.slot_sock(s);
        let sl = &mut self.slots[s];
        std::mem::swap(&mut sl.ct.buf, &mut sl.park_bye);
        sl.ct.start(CT_PARK_BYE, sock, self.t1, now);
        self.net.send(sock, self.cfg.target, &sl.ct.buf);
    }

    fn ext_index(&self, s: usize) -> usize {
        let sl = &self.slots[s];
        (sl.tenant * self.cfg.extensions + sl.ext_idx) as usize
    }

    fn release(&mut self, s: usize) {
        let sl = &mut self.slots[s];
        sl.active = false;
        sl.ct.kind = CT_NONE;
        sl.uas_pending = false;
        self.free.push(s as u32);
        self.active -= 1;
    }

    fn fail(&mut self, s: usize, why: Failure) {
        if !self.slots[s].active {
            return;
        }
        let idx = self.ext_index(s);
        // A refused park leaves nothing behind in the engine; anything else
        // may have (a parked or bridged call): never use that extension again.
        let sl = &self.slots[s];
        let clean = why == Failure::ParkRefused && sl.park_seen == 0 && !sl.retr_started;
        self.ext_owner[idx] = if clean { FREE } else { QUARANTINED };
        self.c.failed += 1;
        self.c.failures[why as usize] += 1;
        self.release(s);
    }

    /// What a cycle that ran out of time was waiting for.
    fn stuck_at(&self, s: usize) -> Failure {
        let sl = &self.slots[s];
        let all = self.all_devices;
        if sl.ct.kind == CT_PARK_BYE {
            Failure::ByeNoAnswer
        } else if !sl.park_ok {
            Failure::ParkNoAnswer
        } else if sl.park_seen != all {
            Failure::NoParkNotify
        } else if sl.reinv_cseq == 0 {
            Failure::NoReinvite
        } else if !sl.retr_ok {
            Failure::RetrieveNoAnswer
        } else if !sl.reinv_acked {
            Failure::NoReinviteAck
        } else if sl.clear_seen != all {
            Failure::NoClearNotify
        } else if !sl.bye_ok {
            Failure::ByeNoAnswer
        } else {
            Failure::ByeNotRelayed
        }
    }

    /// Retransmissions and cycle deadlines.
    fn scan(&mut self, now: u64) {
        let target = self.cfg.target;
        for s in 0..self.high {
            if !self.slots[s].active {
                continue;
            }
            if now >= self.slots[s].deadline {
                let why = self.stuck_at(s);
                self.fail(s, why);
                continue;
            }
            let t2 = self.t2;
            let sl = &mut self.slots[s];
            let ct = &mut sl.ct;
            if ct.kind != CT_NONE && !ct.proceeding && now >= ct.next {
                let invite = ct.kind != CT_BYE && ct.kind != CT_PARK_BYE;
                ct.interval = if invite { ct.interval * 2 } else { (ct.interval * 2).min(t2) };
                ct.next = now + ct.interval;
                self.net.send(ct.sock, target, &ct.buf);
                self.c.retransmissions += 1;
            }
            if sl.uas_pending
                && now >= sl.uas_next
                && let Some(dst) = sl.uas_dst
            {
                sl.uas_interval = (sl.uas_interval * 2).min(t2);
                sl.uas_next = now + sl.uas_interval;
                self.net.send(sl.uas_sock, dst, &sl.uas);
                self.c.retransmissions += 1;
            }
        }
    }

    /// Fails every cycle still running (the hard stop).
    fn abandon_all(&mut self) {
        for s in 0..self.high {
            self.fail(s, Failure::Unfinished);
        }
    }

    fn send_register(&mut self, dev: u32, cseq: u32, expires: u32) {
        let per_tenant = self.cfg.extensions * self.cfg.devices;
        let tenant = dev / per_tenant;
        let e = (dev % per_tenant) / self.cfg.devices;
        let k = dev % self.cfg.devices;
        let sock = self.device_sock(dev);
        wire::register(
            &mut self.scratch,
            &self.ctx,
            &self.hostports[sock],
            dev,
            tenant,
            EXT_BASE + e,
            k,
            cseq,
            expires,
        );
        self.net.send(sock, self.cfg.target, &self.scratch);
    }

    /// Cycles in flight.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Number of devices (tenants × extensions × devices per extension).
    pub fn devices(&self) -> u32 {
        self.regs.len() as u32
    }

    /// Sends the REGISTER (CSeq 1, Expires 3600) of device `dev` at `now`;
    /// its answer is taken by [`Gen::on_datagram`]. For drivers with their
    /// own event loop (the UDP driver uses [`Gen::register_all`]).
    pub fn begin_register(&mut self, dev: u32, now: u64) {
        let Some(r) = self.regs.get_mut(dev as usize) else { return };
        *r = Reg {
            state: RegState::Pending,
            cseq: 1,
            next: now + self.t1,
            interval: self.t1,
            give_up: now + 64 * self.t1,
        };
        self.send_register(dev, 1, 3600);
    }

    /// Devices whose REGISTER has no final answer yet.
    pub fn registrations_pending(&self) -> usize {
        self.regs.iter().filter(|r| r.state == RegState::Pending).count()
    }

    /// Ends registration: extensions with a device that did not register
    /// are not used; an error if no device registered.
    pub fn finish_registration(&mut self) -> Result<(), LoadError> {
        let per_ext = self.cfg.devices as usize;
        for (dev, r) in self.regs.iter().enumerate() {
            if r.state != RegState::Done {
                self.ext_owner[dev / per_ext] = QUARANTINED;
            }
        }
        if self.c.registered == 0 {
            return Err(LoadError::Setup(format!("no device could register with {}", self.cfg.target)));
        }
        Ok(())
    }
}

impl<'c> Gen<'c, Net> {
    // ----- event loop -----------------------------------------------------

    /// Sends what is queued, waits up to `wait` for datagrams, handles all
    /// that arrived, and sends the answers.
    fn pump(&mut self, rx: &mut Rx, wait: Duration) -> Result<(), LoadError> {
        self.net.flush_all();
        self.net.poll(wait).map_err(|e| LoadError::Io(format!("poll: {e}")))?;
        for i in 0..self.net.len() {
            if !self.net.readable(i) {
                continue;
            }
            for _ in 0..MAX_BATCHES_PER_TURN {
                let n = rx.recv(&mut self.net, i);
                let now = self.now();
                for k in 0..n {
                    match rx.get(k) {
                        Some((src, data)) => {
                            // The latencies end when the datagram reached
                            // our socket, not when this loop got to it.
                            self.arrived = Some(now.saturating_sub(rx.waited(k)));
                            self.on_datagram(i, src, data, now);
                            self.arrived = None;
                        }
                        None => self.c.stray += 1,
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
        self.net.flush_all();
        Ok(())
    }

    // ----- phases ---------------------------------------------------------

    /// Registers (`cseq` 1, Expires 3600) or unregisters (`cseq` 2,
    /// expires 0) every device that `eligible` allows, at most `window` at
    /// a time, until all are answered or `limit` passes.
    fn registration_phase(&mut self, rx: &mut Rx, cseq: u32, limit: Instant) -> Result<(), LoadError> {
        let expires = if cseq == 1 { 3600 } else { 0 };
        let window = self.cfg.register_window.max(1) as usize;
        let total = self.regs.len();
        let mut cursor = 0;
        let mut lo = 0;
        let mut pending = 0usize;
        let mut next_scan = self.now();
        loop {
            while pending < window && cursor < total {
                let dev = cursor;
                cursor += 1;
                let eligible = cseq == 1 || self.regs[dev].state == RegState::Done;
                if !eligible {
                    continue;
                }
                let now = self.now();
                self.regs[dev] = Reg {
                    state: RegState::Pending,
                    cseq,
                    next: now + self.t1,
                    interval: self.t1,
                    give_up: now + 64 * self.t1,
                };
                self.send_register(dev as u32, cseq, expires);
                pending += 1;
            }
            while lo < cursor && self.regs[lo].state != RegState::Pending {
                lo += 1;
            }
            pending = (lo..cursor).filter(|&d| self.regs[d].state == RegState::Pending).count();
            if pending == 0 && cursor >= total {
                return Ok(());
            }
            if Instant::now() >= limit {
                return Err(LoadError::Timeout(format!(
                    "{} of {total} devices still unanswered",
                    if cseq == 1 { "registration" } else { "unregistration" },
                )));
            }
            let now = self.now();
            let wait = Duration::from_nanos(next_scan.saturating_sub(now)).min(SCAN);
            self.pump(rx, wait)?;
            let now = self.now();
            if now >= next_scan {
                next_scan = now + ns(SCAN);
                for dev in lo..cursor {
                    let r = self.regs[dev];
                    if r.state != RegState::Pending {
                        continue;
                    }
                    if now >= r.give_up {
                        self.regs[dev].state = RegState::Failed;
                        if cseq == 1 {
                            self.c.registration_failed += 1;
                        } else {
                            self.c.unregistration_failed += 1;
                        }
                    } else if now >= r.next {
                        let interval = (r.interval * 2).min(self.t2);
                        self.regs[dev].interval = interval;
                        self.regs[dev].next = now + interval;
                        self.send_register(dev as u32, cseq, expires);
                        self.c.retransmissions += 1;
                    }
                }
            }
        }
    }

    /// Registers every device. Extensions with a device that failed to
    /// register are not used.
    pub fn register_all(&mut self, rx: &mut Rx, limit: Instant) -> Result<(), LoadError> {
        self.registration_phase(rx, 1, limit)?;
        self.finish_registration()
    }

    /// Removes the bindings of every registered device (best effort).
    pub fn unregister_all(&mut self, rx: &mut Rx, limit: Instant) -> Result<(), LoadError> {
        self.registration_phase(rx, 2, limit)
    }

    /// Parks the background calls (`background_parked` of them), at most
    /// `background_window` INVITEs in flight, until every one is answered
    /// or `limit` passes; then those unanswered or not sent count as failed
    /// (`bg_no_answer`).
    pub fn park_background(&mut self, rx: &mut Rx, limit: Instant) -> Result<(), LoadError> {
        self.bg.clear();
        self.bg.resize_with(self.cfg.background_parked as usize, Bg::default);
        self.background_phase(rx, false, limit)
    }

    /// Hangs up (BYE) every background call still parked, at most
    /// `background_window` at a time, until all are answered or `limit`
    /// passes (then the rest count as `bg_bye_failed`).
    pub fn hangup_background(&mut self, rx: &mut Rx, limit: Instant) -> Result<(), LoadError> {
        self.background_phase(rx, true, limit)
    }

    fn background_phase(&mut self, rx: &mut Rx, bye: bool, limit: Instant) -> Result<(), LoadError> {
        let window = self.cfg.background_window.max(1) as usize;
        let total = self.bg.len();
        let pending = if bye { BgState::Hanging } else { BgState::Inviting };
        let mut cursor = 0usize;
        self.bg_inflight.clear();
        let mut next_scan = self.now() + ns(SCAN);
        loop {
            let bg = &self.bg;
            self.bg_inflight.retain(|&k| bg[k as usize].state == pending);
            while self.bg_inflight.len() < window && cursor < total {
                let k = cursor as u32;
                cursor += 1;
                let now = self.now();
                if bye {
                    if self.bg[k as usize].state != BgState::Parked {
                        continue;
                    }
                    if !self.begin_bg_bye(k, now) {
                        self.bg[k as usize].state = BgState::HangupFailed;
                        self.c.bg_bye_failed += 1;
                        continue;
                    }
                } else {
                    self.begin_bg_park(k, now);
                }
                self.bg_inflight.push(k);
            }
            if self.bg_inflight.is_empty() && cursor >= total {
                self.net.flush_all();
                return Ok(());
            }
            if Instant::now() >= limit {
                // Out of time: whatever is unanswered or not sent failed.
                let unsent = cursor..total;
                for k in self.bg_inflight.iter().map(|&k| k as usize).chain(unsent) {
                    let b = &mut self.bg[k];
                    match (bye, b.state) {
                        (false, BgState::Idle | BgState::Inviting) => {
                            b.state = BgState::Failed;
                            self.c.bg_no_answer += 1;
                        }
                        (true, BgState::Parked | BgState::Hanging) => {
                            b.state = BgState::HangupFailed;
                            self.c.bg_bye_failed += 1;
                        }
                        _ => {}
                    }
                }
                self.bg_inflight.clear();
                self.net.flush_all();
                return Ok(());
            }
            let now = self.now();
            let wait = Duration::from_nanos(next_scan.saturating_sub(now)).min(SCAN);
            self.pump(rx, wait)?;
            let now = self.now();
            if now >= next_scan {
                next_scan = now + ns(SCAN);
                self.scan_background(now, pending);
            }
        }
    }

    /// Answers whatever arrives, without starting anything, until `until`.
    pub fn idle(&mut self, rx: &mut Rx, until: Instant) -> Result<(), LoadError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.net.flush_all();
                return Ok(());
            }
            self.pump(rx, left.min(SCAN))?;
        }
    }

    /// Runs the cycles until the cycle count or duration is reached and
    /// every started cycle has ended, or `hard_stop` passes.
    pub fn run_cycles(&mut self, rx: &mut Rx, hard_stop: Instant) -> Result<(), LoadError> {
        self.run_phase(rx, hard_stop, self.cfg.duration, self.cfg.cycles)
    }

    /// Runs cycles for `d` as [`Gen::run_cycles`] would, then forgets their
    /// latencies; the counters go on (the report takes differences).
    pub fn warm_up(&mut self, rx: &mut Rx, hard_stop: Instant, d: Duration) -> Result<(), LoadError> {
        self.run_phase(rx, hard_stop, Some(d), None)?;
        self.h_park = Histogram::new();
        self.h_notify = Histogram::new();
        self.h_retrieve = Histogram::new();
        self.h_cycle = Histogram::new();
        self.h_shed = Histogram::new();
        self.h_shed_nic = Histogram::new();
        Ok(())
    }

    /// Starts cycles until `cycles` have started in this phase or
    /// `duration` has passed, then lets the started ones end.
    fn run_phase(
        &mut self,
        rx: &mut Rx,
        hard_stop: Instant,
        duration: Option<Duration>,
        cycles: Option<u64>,
    ) -> Result<(), LoadError> {
        let begin = self.now();
        let stop_at = duration.map(|d| begin.saturating_add(ns(d)));
        let base = self.c;
        let started = |c: &Counters| c.started - base.started;
        let offered = |c: &Counters| c.started + c.not_started - base.started - base.not_started;
        let interval = match self.cfg.mode {
            Mode::Open { rate } => (1e9 / rate.max(1e-3)) as u64,
            Mode::Closed { .. } => 0,
        };
        let mut next_start = begin;
        let mut next_scan = begin + ns(SCAN);
        loop {
            let now = self.now();
            let out_of_time = Instant::now() >= hard_stop;
            let stopping =
                out_of_time || cycles.is_some_and(|n| offered(&self.c) >= n) || stop_at.is_some_and(|t| now >= t);
            if out_of_time {
                self.abandon_all();
                self.net.flush_all();
                return Ok(());
            }
            if stopping && self.active == 0 {
                self.net.flush_all();
                return Ok(());
            }
            let mut wake = next_scan;
            if !stopping {
                match self.cfg.mode {
                    Mode::Closed { concurrency } => {
                        let mut n = 0;
                        while self.active < concurrency
                            && n < MAX_STARTS_PER_TURN
                            && cycles.is_none_or(|c| started(&self.c) < c)
                        {
                            if !self.start_cycle(now) {
                                break;
                            }
                            n += 1;
                        }
                    }
                    Mode::Open { .. } => {
                        let mut n = 0;
                        while next_start <= now
                            && n < MAX_STARTS_PER_TURN
                            && cycles.is_none_or(|c| offered(&self.c) < c)
                        {
                            if !self.start_cycle(now) {
                                self.c.not_started += 1;
                            }
                            next_start = next_start.saturating_add(interval);
                            n += 1;
                        }
                        wake = wake.min(next_start);
                    }
                }
            }
            let now = self.now();
            self.pump(rx, Duration::from_nanos(wake.saturating_sub(now)))?;
            let now = self.now();
            if now >= next_scan {
                self.scan(now);
                next_scan = now + ns(SCAN);
            }
        }
    }

    /// Socket counters so far.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats
    }
}

/// Media port of the parked party of slot `s` (only written into SDP).
fn parked_rtp(s: usize) -> u16 {
    20_000 + ((s % 10_000) as u16) * 2
}

/// Media port of background call `k` (only written into SDP).
fn bg_rtp(k: u32) -> u16 {
    30_000 + ((k % 5_000) as u16) * 2
}

/// Media port of device `dev` (only written into SDP).
fn device_rtp(dev: u32) -> u16 {
    40_000 + ((dev % 10_000) as u16) * 2
}
