//! What every worker has whatever its I/O backend: the thread start-up
//! hand-shake, core pinning, the inboxes of cross-shard hand-offs, the
//! wake-up handles, and [`Core`], the per-turn logic around the [`Shard`]
//! (routing a received datagram, draining the inbox, timers, shutdown).
//!
//! A worker is a thread pinned to a core that owns one [`Shard`] and one UDP
//! socket (an `SO_REUSEPORT` group member). Its I/O backend is either
//! [`super::uring_worker`] (io_uring: multishot receive into a provided
//! buffer ring, batched `SendMsg`, `MsgRingData` wake-ups) or
//! [`super::mmsg`] (`recvmmsg`/`sendmmsg` and `ppoll`, eventfd wake-ups),
//! chosen engine-wide by `--io`. Both call the same [`Core`] methods in the
//! same order each turn:
//! 1. read `Instant::now()` once;
//! 2. receive: each datagram goes to [`Core::on_datagram`], which hands it
//!    to the shard or, when another shard owns it ([`route::owner`]),
//!    copies it into the owner's inbox and marks the owner for a wake-up;
//! 3. [`Core::drain_inbox`] (first a new configuration, if a reload queued
//!    one: [`Shard::reconfigure`]); 4. [`Core::run_timers`];
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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tracing::{debug, info, warn};

use super::Serve;
use super::bare::Bare;
use crate::proto::config::Config;
use crate::proto::route::{self, Owner};
use crate::proto::shard::{Seed, Shard, Transmit, WallClock};
use crate::proto::sip::parse::SipMessage;
use crate::proto::sip::{Peer, Transport};
use crate::proto::stats::ShardStats;

/// Hand-offs waiting in one worker's inbox; past it they are dropped.
pub const INBOX_CAPACITY: usize = 16384;
/// Hand-offs drained per loop turn (the rest wait for the next turn).
const INBOX_BATCH: usize = 4096;
/// Longest single wait, so that a lost wake-up costs at most this.
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// Which I/O backend the workers run (the same for every worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring (Linux 6.0+): [`super::uring_worker`].
    Uring,
    /// `recvmmsg`/`sendmmsg` with `ppoll`: [`super::mmsg`].
    Mmsg,
}

/// A message for a worker's shard received elsewhere: a datagram received
/// by another worker, or a message the stream thread framed out of a TCP or
/// TLS connection (`transport` says which; `src` is the peer's address).
#[derive(Debug)]
pub struct Handoff {
    pub src: SocketAddr,
    pub transport: Transport,
    pub data: Box<[u8]>,
}

/// New configurations waiting in one inbox; a reload past it replaces the
/// oldest (only the newest matters).
const CONFIG_SLOTS: usize = 2;

/// One worker's inbox of hand-offs, and of configuration reloads.
#[derive(Debug)]
pub struct Inbox {
    pub queue: ArrayQueue<Handoff>,
    /// Configurations from a reload (SIGHUP), oldest first; the worker
    /// gives the newest to its shard at the start of its next drain.
    pub config: ArrayQueue<Arc<Config>>,
    /// Set by a sender that has sent (or is about to send) a wake-up the
    /// owner has not consumed yet; cleared by the owner before draining.
    pub notified: AtomicBool,
}

impl Inbox {
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            queue: ArrayQueue::new(capacity.max(1)),
            config: ArrayQueue::new(CONFIG_SLOTS),
            notified: AtomicBool::new(false),
        }
    }

    /// Queues a new configuration for the owner (which must then be
    /// woken); never blocks, and drops the oldest queued one when full.
    pub fn push_config(&self, cfg: Arc<Config>) {
        let _ = self.config.force_push(cfg);
        self.notified.store(true, Ordering::SeqCst);
    }
}

/// How to wake a worker that may be blocked waiting for I/O.
#[derive(Debug)]
pub enum Waker {
    /// A duplicate of the worker's io_uring fd: the target of a
    /// `MsgRingData` (kernel 5.18), which completes in the sleeping ring.
    Ring(OwnedFd),
    /// An eventfd the worker polls (the mmsg backend).
    Event(OwnedFd),
}

impl Waker {
    /// Wakes an [`Waker::Event`] worker with one `write`. A ring worker
    /// can only be woken by a `MsgRingData` from a ring: an error here.
    pub fn wake_event(&self) -> io::Result<()> {
        match self {
            Waker::Event(fd) => eventfd_add(fd, 1),
            Waker::Ring(_) => Err(io::Error::other("a ring worker is woken with MsgRingData, not a write")),
        }
    }
}

/// Creates a non-blocking eventfd.
pub fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a negative return is an error.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `n` to an eventfd's counter. A full counter (`EAGAIN`) already
/// means "wake up", so it counts as success.
pub fn eventfd_add(fd: &OwnedFd, n: u64) -> io::Result<()> {
    let v = n.to_ne_bytes();
    // SAFETY: `v` is 8 readable bytes, as eventfd writes require.
    let rc = unsafe { libc::write(fd.as_raw_fd(), v.as_ptr().cast(), v.len()) };
    if rc == 8 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) { Ok(()) } else { Err(e) }
}

/// Resets an eventfd's counter (non-blocking read).
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut v = [0u8; 8];
    // SAFETY: `v` is 8 writable bytes; the fd is non-blocking, so an
    // empty counter returns EAGAIN, which is fine.
    let _ = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), v.len()) };
}

/// What all workers share once they are all set up. Read-only apart from
/// the atomics and lock-free queues.
#[derive(Debug)]
pub struct Peers {
    /// Set once to ask every worker to shut down.
    pub stop: AtomicBool,
    /// Inbox of worker `i`.
    pub inboxes: Box<[Inbox]>,
    /// How to wake worker `i`. The fds are duplicates that stay open until
    /// the last worker is gone, so a late wake never lands on a reused fd.
    pub wakers: Box<[Waker]>,
    /// The stream thread's queue (TCP/TLS transmits), if it runs.
    pub stream: Option<Arc<super::stream::StreamQueue>>,
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
    pub ready: mpsc::Sender<(u16, Result<Ready, String>)>,
    /// `Some(peers)`: run; `None`: another worker failed, exit.
    pub go: mpsc::Receiver<Option<Arc<Peers>>>,
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cpu index past CPU_SETSIZE"));
    }
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c < CPU_SETSIZE`, inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Blocks SIGINT and SIGTERM on the calling thread, so that only the
/// thread waiting for them (the main thread) receives them.
pub fn block_shutdown_signals() {
    if let Err(e) = super::signal::block() {
        warn!(error = %e, "cannot block SIGINT/SIGTERM on a worker thread");
    }
}

/// One I/O backend's per-worker state, driven by [`run`].
pub trait Io: Sized {
    /// Sets the backend up on the worker thread (rings are bound to the
    /// thread that creates them). Returns the waker peers use and a name.
    fn new(id: u16, socket: UdpSocket) -> Result<(Self, Waker, &'static str), String>;
    /// The loop, until the shard has drained after a shutdown.
    fn run(&mut self, core: &mut Core) -> io::Result<()>;
    /// Ends in-flight operations before the memory they use is freed.
    fn finish(self, core: &mut Core);
}

/// The worker thread's body. Returns an error text if the worker failed.
pub fn run(init: WorkerInit) -> Result<(), String> {
    match init.backend {
        Backend::Uring => run_with::<super::uring_worker::UringIo>(init),
        Backend::Mmsg => run_with::<super::mmsg::MmsgIo>(init),
    }
}

fn run_with<B: Io>(init: WorkerInit) -> Result<(), String> {
    block_shutdown_signals();
    let WorkerInit { id, n, backend: _, serve, socket, cfg, wall, seed, cpu, grace, ready, go } = init;
    if let Some(cpu) = cpu {
        match pin_to_cpu(cpu) {
            Ok(()) => debug!(worker = id, cpu, "pinned"),
            Err(e) => {
                warn!(worker = id, cpu, error = %e, "cannot pin worker to its core; running unpinned")
            }
        }
    }
    let (mut backend, service, stats) = match B::new(id, socket) {
        Ok((backend, waker, mode)) => {
            let (service, stats) = match serve {
                Serve::Sip => {
                    let shard = Shard::new(id, n, cfg, wall, seed);
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
}

impl Core {
    fn new(id: u16, n: u16, service: Service, stats: Arc<ShardStats>, peers: Arc<Peers>, grace: Duration) -> Core {
        Core { service, stats, peers, id, n, wake: vec![false; usize::from(n)], busy: false, deadline: None, grace }
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
        let msg = match SipMessage::parse(data) {
            Ok(m) => m,
            Err(_) => {
                // Unframeable: the shard counts and drops it.
                shard.handle(now, src, data);
                return;
            }
        };
        match route::owner(&msg, *n) {
            Owner::Shard(s) if s != *id => {
                let Some(inbox) = peers.inboxes.get(usize::from(s)) else {
                    shard.handle(now, src, &msg);
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
            _ => shard.handle(now, src, &msg),
        }
    }

    /// Hands this turn's share of the inbox to the shard, after a new
    /// configuration if a reload queued one.
    pub fn drain_inbox(&mut self, now: Instant) {
        let Core { peers, service, stats, id, busy, .. } = self;
        let Some(inbox) = peers.inboxes.get(usize::from(*id)) else {
            return;
        };
        inbox.notified.store(false, Ordering::SeqCst);
        let mut newest = None;
        while let Some(cfg) = inbox.config.pop() {
            newest = Some(cfg);
        }
        let Service::Sip(shard) = service else {
            // The bare responder takes no configuration and no hand-offs.
            return;
        };
        if let Some(cfg) = newest {
            shard.reconfigure(now, cfg);
            debug!(worker = *id, "configuration reloaded");
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
        if self.deadline.is_none() && self.peers.stop.load(Ordering::Acquire) {
            info!(worker = self.id, grace_s = self.grace.as_secs_f64(), "worker shutting down");
            if let Service::Sip(shard) = &mut self.service {
                shard.shutdown(now);
            }
            self.deadline = Some(now + self.grace);
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
        if let Service::Sip(shard) = &self.service
            && let Some(t) = shard.poll_timeout()
        {
            until = until.min(t);
        }
        if let Some(d) = self.deadline {
            until = until.min(d);
        }
        until.saturating_duration_since(now)
    }
}
