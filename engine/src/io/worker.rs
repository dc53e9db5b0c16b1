//! What every worker has whatever its I/O backend: the thread start-up
//! hand-shake, core pinning, the [`Io`] trait a backend implements, and
//! [`Core`], the per-turn logic around the [`Shard`] (routing a received
//! datagram, draining the inbox, timers, shutdown). The inboxes and wake-up
//! handles it shares with the other threads are in [`super::shared`].
//!
//! A worker is a thread pinned to a core that owns one [`Shard`] and one UDP
//! socket (an `SO_REUSEPORT` group member). Its I/O backend is either
//! [`super::uring_worker`] (io_uring: multishot receive into a provided
//! buffer ring, batched `SendMsg`, `MsgRingData` wake-ups) or
//! [`super::mmsg`] (`recvmmsg`/`sendmmsg` and `ppoll`, eventfd wake-ups),
//! chosen engine-wide by `--io`. Both import this module, which imports
//! neither: [`run`] is generic over [`Io`] and the engine picks the backend.
//! Both call the same [`Core`] methods in the same order each turn:
//! 1. read `Instant::now()` once, and apply a new configuration if a reload
//!    queued one ([`Core::apply_config`]: before the turn's datagrams, so
//!    that a request sent after the reload was logged meets it);
//! 2. receive: with overload control on, first [`Core::on_load`] with the
//!    batch's queueing delay (how long its oldest datagram waited since the
//!    kernel stamped it, `SO_TIMESTAMPNS`; docs/decisions/0021); then each
//!    datagram goes to [`Core::on_datagram`], which hands it
//!    to the shard or, when another shard owns it ([`route::owner`]),
//!    copies it into the owner's inbox and marks the owner for a wake-up;
//! 3. [`Core::drain_inbox`] (first the bans other workers decided:
//!    [`Shard::import_ban`]); 4. [`Core::run_timers`], which also takes the
//!    bans this shard decided ([`Shard::poll_ban`]) to the XDP ban map and
//!    to the other workers' inboxes;
//! 5. send what `shard.poll_transmit()` yields (TCP/TLS transmits go to the
//!    stream thread, [`Core::send_stream`]); 6. send the wake-ups;
//! 7. [`Core::should_exit`], then wait for I/O or [`Core::wait_time`].
//!
//! No lock is taken on the datagram path; the start-up hand-shake uses
//! channels.
//!
//! With [`Serve::Bare`] (`--bare-io`), [`Core`] serves the [`Bare`]
//! responder instead of a shard, through the same calls: no routing, no
//! hand-offs, no timers.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::bare::Bare;
use super::media::{Media, MediaSocket};
use super::shared::{Handoff, Peers, Serve, Waker};
use super::signal::block_shutdown_signals;
use super::sys::{enable_rx_timestamps, pin_to_cpu};
use crate::bpf::{BanMap, ShedMap, monotonic_ns};
use crate::proto::config::Config;
use crate::proto::route::{self, Owner};
use crate::proto::shard::{Seed, Shard, Transmit, WallClock};
use crate::proto::sip::parse::SipMessage;
use crate::proto::sip::{Peer, Transport};
use crate::proto::stats::ShardStats;

/// Hand-offs drained per loop turn (the rest wait for the next turn).
const INBOX_BATCH: usize = 4096;
/// Longest single wait, so that a lost wake-up costs at most this.
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// The queueing delay of a batch whose oldest kernel receive stamp is
/// `oldest` (time since the Unix epoch, `CLOCK_REALTIME`): the time on the
/// same clock now, less the stamp. Zero without a stamp, or when the clock
/// was stepped back past it.
pub fn queue_delay(oldest: Option<Duration>) -> Duration {
    let Some(oldest) = oldest else { return Duration::ZERO };
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(Duration::ZERO, |now| now.saturating_sub(oldest))
}

/// Which I/O backend the workers run (the same for every worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring (Linux 6.0+): [`super::uring_worker`].
    Uring,
    /// `recvmmsg`/`sendmmsg` with `ppoll`: [`super::mmsg`].
    Mmsg,
}

/// What a worker reports once its backend and shard exist.
#[derive(Debug)]
pub struct Ready {
    pub waker: Waker,
    pub stats: Arc<ShardStats>,
    /// The backend as set up, for the start-up log line.
    pub mode: &'static str,
}

/// Everything a worker thread starts with.
pub struct WorkerInit {
    pub id: u16,
    pub n: u16,
    pub backend: Backend,
    pub serve: Serve,
    pub socket: UdpSocket,
    pub cfg: Arc<Config>,
    pub wall: WallClock,
    /// The shard's entropy (hash keys, tags), drawn from the kernel.
    pub seed: Seed,
    /// CPU to pin to, if pinning.
    pub cpu: Option<usize>,
    pub grace: Duration,
    /// With `--xdp`: this worker's handle on the XDP ban map.
    pub bans: Option<BanMap>,
    /// With `--xdp` and overload control: its handle on the XDP shed map.
    pub shed: Option<ShedMap>,
    /// Its media socket for music on hold, and the address SDP names for
    /// it; `None`: no music.
    pub media: Option<MediaSocket>,
    pub ready: mpsc::Sender<(u16, Result<Ready, String>)>,
    /// `Some(peers)`: run; `None`: another worker failed, exit.
    pub go: mpsc::Receiver<Option<Arc<Peers>>>,
}

/// One I/O backend's per-worker state, driven by [`run`].
pub trait Io: Sized {
    /// Sets the backend up on the worker thread (rings are bound to the
    /// thread that creates them). With `stamps`, the socket stamps each
    /// datagram with its receive time, and the backend reads the stamps
    /// and reports each batch's queueing delay ([`Core::on_load`]).
    /// Returns the waker peers use and a name.
    fn new(id: u16, socket: UdpSocket, stamps: bool) -> Result<(Self, Waker, &'static str), String>;
    /// The loop, until the shard has drained after a shutdown.
    fn run(&mut self, core: &mut Core) -> io::Result<()>;
    /// Ends in-flight operations before the memory they use is freed.
    fn finish(self, core: &mut Core);
}

/// The worker thread's body, with backend `B` (the one `init.backend`
/// names). Returns an error text if the worker failed.
pub fn run<B: Io>(init: WorkerInit) -> Result<(), String> {
    block_shutdown_signals();
    let WorkerInit { id, n, backend: _, serve, socket, cfg, wall, seed, cpu, grace, bans, shed, media, ready, go } =
        init;
    if let Some(cpu) = cpu {
        match pin_to_cpu(cpu) {
            Ok(()) => debug!(worker = id, cpu, "pinned"),
            Err(e) => {
                warn!(worker = id, cpu, error = %e, "cannot pin worker to its core; running unpinned")
            }
        }
    }
    // Overload control's signal: the kernel's receive time of each datagram.
    let stamps = serve == Serve::Sip
        && cfg.limits.overload.is_some()
        && match enable_rx_timestamps(&socket) {
            Ok(()) => true,
            Err(e) => {
                warn!(worker = id, error = %e, "SO_TIMESTAMPNS refused: overload control is off for this worker");
                false
            }
        };
    let (mut backend, service, stats) = match B::new(id, socket, stamps) {
        Ok((backend, waker, mode)) => {
            let (service, stats) = match serve {
                Serve::Sip => {
                    let mut shard = Shard::new(id, n, cfg, wall, seed);
                    if let Some(m) = &media {
                        shard.set_media(m.advertised);
                    }
                    let stats = shard.stats().clone();
                    (Service::Sip(shard), stats)
                }
                Serve::Bare => (Service::Bare(Bare::new()), Arc::new(ShardStats::default())),
            };
            let r = Ready { waker, stats: stats.clone(), mode };
            if ready.send((id, Ok(r))).is_err() {
                return Err("start-up aborted".into());
            }
            (backend, service, stats)
        }
        Err(e) => {
            let _ = ready.send((id, Err(e.clone())));
            return Err(e);
        }
    };
    let peers = match go.recv() {
        Ok(Some(p)) => p,
        _ => return Ok(()), // another worker failed; nothing was started
    };
    let mut core = Core::new(id, n, service, stats, peers, grace);
    core.xdp_bans = bans;
    core.media = media.filter(|_| serve == Serve::Sip).map(|m| Media::new(m.socket));
    core.xdp_shed = if stamps { shed } else { None };
    if let (Some(_), Service::Sip(shard)) = (&core.xdp_shed, &mut core.service) {
        shard.set_nic_screening(true);
    }
    let result = backend.run(&mut core);
    backend.finish(&mut core);
    result.map_err(|e| format!("worker {id}: {e}"))
}

/// What a worker's [`Core`] serves ([`Serve`]). One per worker, built once
/// and never moved; boxing the shard would only add an indirection to every
/// datagram.
#[allow(clippy::large_enum_variant)]
enum Service {
    Sip(Shard),
    Bare(Bare),
}

/// The backend-independent half of a worker: its shard (or bare responder)
/// and its place among the peers.
pub struct Core {
    service: Service,
    pub stats: Arc<ShardStats>,
    pub peers: Arc<Peers>,
    pub id: u16,
    pub n: u16,
    /// Peers to wake at the end of this turn.
    wake: Vec<bool>,
    /// Work is left for the next turn: do not sleep.
    pub busy: bool,
    /// Set once shutdown has started: when the worker gives up draining.
    deadline: Option<Instant>,
    grace: Duration,
    /// With `--xdp`: where this worker writes the bans its shard decides.
    pub xdp_bans: Option<BanMap>,
    /// With `--xdp` and overload control: where it publishes the share of
    /// new requests its shard refuses (ADR 0022).
    pub xdp_shed: Option<ShedMap>,
    /// Its media socket (music on hold).
    media: Option<Media>,
}

impl Core {
    fn new(id: u16, n: u16, service: Service, stats: Arc<ShardStats>, peers: Arc<Peers>, grace: Duration) -> Core {
        Core {
            service,
            stats,
            peers,
            id,
            n,
            wake: vec![false; usize::from(n)],
            busy: false,
            deadline: None,
            grace,
            xdp_bans: None,
            xdp_shed: None,
            media: None,
        }
    }

    /// Music on hold: hands the shard what arrived on the media socket,
    /// then sends the packets due by `now`. Each backend calls it once a
    /// turn, after the timers; with no stream playing it costs nothing (what
    /// arrives meanwhile waits in the socket, bounded by its buffer, and
    /// latches nothing when read).
    pub fn run_media(&mut self, now: Instant) {
        let Core { media, service, stats, .. } = self;
        if let (Some(media), Service::Sip(shard)) = (media, service)
            && shard.media_active()
        {
            media.receive(shard);
            media.send(now, shard, stats);
        }
    }

    /// Handles one received datagram from `src`: to our shard, or copied
    /// into its owner's inbox (or, bare, answered).
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        let Core { service, stats, peers, id, n, wake, .. } = self;
        stats.datagrams_in.inc();
        let shard = match service {
            Service::Sip(shard) => shard,
            Service::Bare(bare) => {
                if !bare.handle(src, data) {
                    stats.dropped.inc();
                }
                return;
            }
        };
        if *n <= 1 {
            shard.handle(now, src, data);
            return;
        }
        // Every shard learns every ban: a banned source is dropped here,
        // before it costs a parse or a hand-off.
        if shard.drop_if_banned(now, src.ip()) {
            return;
        }
        let mut slot = None;
        let msg = match SipMessage::parse_in(data, &mut slot) {
            Ok(m) => m,
            Err(_) => {
                // Unframeable: the shard counts and drops it.
                shard.handle(now, src, data);
                return;
            }
        };
        match route::owner(msg, *n) {
            Owner::Shard(s) if s != *id => {
                let Some(inbox) = peers.inboxes.get(usize::from(s)) else {
                    shard.handle(now, src, msg);
                    return;
                };
                match inbox.queue.push(Handoff { src, transport: Transport::Udp, data: data.into() }) {
                    Ok(()) => {
                        stats.handoffs_out.inc();
                        if !inbox.notified.swap(true, Ordering::SeqCst) {
                            wake[usize::from(s)] = true;
                        }
                    }
                    Err(_) => stats.handoffs_dropped.inc(),
                }
            }
            _ => shard.handle(now, src, msg),
        }
    }

    /// The queueing delay of the batch about to be handed over: how long its
    /// oldest datagram waited since the kernel received it (zero when
    /// nothing waited). Overload control's input
    /// (docs/decisions/0021-overload-control.md).
    ///
    /// With `--xdp`, a change of the share of new requests the shard
    /// refuses goes to the XDP program at once, which answers those 503
    /// itself from then on (docs/decisions/0022-overload-503-in-xdp.md).
    pub fn on_load(&mut self, now: Instant, delay: Duration) {
        let Core { service, stats, id, xdp_shed, .. } = self;
        let Service::Sip(shard) = service else { return };
        shard.handle_load(now, delay);
        if let Some(map) = xdp_shed.as_mut()
            && let Some(share) = shard.poll_shed(now)
        {
            let until = monotonic_ns().saturating_add(u64::try_from(share.ack_for.as_nanos()).unwrap_or(u64::MAX));
            if let Err(e) = map.set(u32::from(*id), share.refuse, until) {
                stats.overload_xdp_errors.inc();
                debug!(worker = *id, error = %e, "cannot write the refused share to the XDP map; the shard refuses alone");
            }
        }
    }

    /// Applies the newest configuration a reload queued, if any. The
    /// backends call it first in each turn, before the turn's datagrams:
    /// the reload is logged once every inbox holds it, so a request sent
    /// after the log line meets the new configuration.
    pub fn apply_config(&mut self, now: Instant) {
        let Core { peers, service, id, .. } = self;
        let Some(inbox) = peers.inboxes.get(usize::from(*id)) else {
            return;
        };
        let mut newest = None;
        while let Some(cfg) = inbox.config.pop() {
            newest = Some(cfg);
        }
        if let (Some(cfg), Service::Sip(shard)) = (newest, service) {
            shard.reconfigure(now, cfg);
            debug!(worker = *id, "configuration reloaded");
        }
    }

    /// Hands this turn's share of the inbox to the shard, after a new
    /// configuration if a reload queued one.
    pub fn drain_inbox(&mut self, now: Instant) {
        self.apply_config(now);
        let Core { peers, service, stats, id, busy, .. } = self;
        let Some(inbox) = peers.inboxes.get(usize::from(*id)) else {
            return;
        };
        inbox.notified.store(false, Ordering::SeqCst);
        let Service::Sip(shard) = service else {
            // The bare responder takes no configuration and no hand-offs.
            return;
        };
        while let Some(ban) = inbox.bans.pop() {
            shard.import_ban(now, ban);
        }
        for _ in 0..INBOX_BATCH {
            let Some(h) = inbox.queue.pop() else {
                return;
            };
            if h.transport == Transport::Udp {
                stats.handoffs_in.inc();
            }
            shard.handle(now, Peer { addr: h.src, transport: h.transport }, &h.data[..]);
        }
        // Batch used up: more may be waiting.
        *busy = true;
    }

    /// Hands a TCP/TLS transmit to the stream thread, which owns the
    /// connections (and from now on the buffer). Without a stream thread it
    /// is dropped and counted as a send error.
    pub fn send_stream(&self, t: Transmit) {
        match &self.peers.stream {
            Some(q) => q.send(t),
            None => {
                self.stats.send_errors.inc();
                debug!(worker = self.id, dst = %t.dst, transport = t.transport.via_token(), "no stream transport: dropped");
            }
        }
    }

    /// Runs due timers, and starts the shutdown once it is asked for.
    /// The turn's park-lifecycle events are dropped here: nothing consumes
    /// them yet (a journal and the admin event stream will).
    pub fn run_timers(&mut self, now: Instant) {
        if let Service::Sip(shard) = &mut self.service {
            if shard.poll_timeout().is_some_and(|t| t <= now) {
                shard.handle_timeout(now);
            }
            while shard.poll_event().is_some() {}
        }
        self.spread_bans(now);
        if self.deadline.is_none() && self.peers.stop.load(Ordering::Acquire) {
            info!(worker = self.id, grace_s = self.grace.as_secs_f64(), "worker shutting down");
            if let Service::Sip(shard) = &mut self.service {
                shard.shutdown(now);
            }
            self.deadline = Some(now + self.grace);
        }
    }

    /// Takes the bans the shard decided this turn to the XDP ban map, so
    /// that the kernel drops the source before any worker sees it, and to
    /// every other worker, whose shards then drop it too (and wakes them).
    fn spread_bans(&mut self, now: Instant) {
        let Core { service, stats, peers, id, wake, xdp_bans, .. } = self;
        let Service::Sip(shard) = service else { return };
        while let Some(source) = shard.poll_lifted() {
            if let Some(map) = xdp_bans.as_mut()
                && let Err(e) = map.remove(source.bytes())
            {
                stats.auth_xdp_ban_errors.inc();
                warn!(worker = *id, %source, error = %e, "cannot lift the ban in the XDP map; it ends at its time");
            }
        }
        while let Some(ban) = shard.poll_ban() {
            if let Some(map) = xdp_bans.as_mut()
                && let Err(e) = map.ban(ban.source.bytes(), ban.until.saturating_duration_since(now))
            {
                stats.auth_xdp_ban_errors.inc();
                warn!(worker = *id, source = %ban.source, error = %e, "cannot write the ban to the XDP map; the shards still drop the source");
            }
            for (i, inbox) in peers.inboxes.iter().enumerate() {
                if i == usize::from(*id) {
                    continue;
                }
                match inbox.bans.push(ban) {
                    Ok(()) => {
                        if !inbox.notified.swap(true, Ordering::SeqCst) {
                            wake[i] = true;
                        }
                    }
                    Err(_) => stats.handoffs_dropped.inc(),
                }
            }
        }
    }

    /// The next datagram to send.
    #[inline]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        match &mut self.service {
            Service::Sip(shard) => shard.poll_transmit(),
            Service::Bare(bare) => bare.poll_transmit(),
        }
    }

    /// Gives a sent (or dropped) datagram's buffer back for reuse.
    #[inline]
    pub fn recycle(&mut self, payload: Vec<u8>) {
        match &mut self.service {
            Service::Sip(shard) => shard.recycle(payload),
            Service::Bare(bare) => bare.recycle(payload),
        }
    }

    /// Takes the peers marked for a wake-up this turn.
    pub fn take_wakes(&mut self) -> impl Iterator<Item = (usize, &Waker)> + '_ {
        let wakers = &self.peers.wakers;
        self.wake
            .iter_mut()
            .enumerate()
            .filter_map(move |(s, flag)| if std::mem::take(flag) { wakers.get(s).map(|w| (s, w)) } else { None })
    }

    /// Whether the worker should leave its loop: shutting down and either
    /// drained (with `io_idle`: nothing of ours left in flight) or out of
    /// grace.
    pub fn should_exit(&self, now: Instant, io_idle: bool) -> bool {
        let Some(d) = self.deadline else {
            return false;
        };
        let drained = match &self.service {
            Service::Sip(shard) => shard.is_drained(),
            Service::Bare(_) => true,
        };
        if drained && io_idle {
            info!(worker = self.id, "worker drained");
            return true;
        }
        if now >= d {
            warn!(worker = self.id, "shutdown grace elapsed before the shard drained");
            return true;
        }
        false
    }

    /// How long the backend may block: zero when busy, else until the next
    /// timer, the shutdown deadline, or [`MAX_WAIT`].
    pub fn wait_time(&self, now: Instant) -> Duration {
        if self.busy {
            return Duration::ZERO;
        }
        let mut until = now + MAX_WAIT;
        if let Service::Sip(shard) = &self.service {
            for t in [shard.poll_timeout(), shard.media_timeout()].into_iter().flatten() {
                until = until.min(t);
            }
        }
        if let Some(d) = self.deadline {
            until = until.min(d);
        }
        until.saturating_duration_since(now)
    }
}
