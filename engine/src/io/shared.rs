//! What the engine's threads share, below all of them: the workers' inboxes
//! and wake-up handles ([`Peers`]), the stream thread's queue and counters
//! ([`StreamQueue`], [`StreamStats`]), and what every worker serves
//! ([`Serve`]). The workers, their backends, the stream thread and the
//! engine import these; this module imports only the leaves [`super::sys`]
//! and [`super::tls`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use tracing::debug;

use super::sys::{eventfd_add, new_eventfd};
use super::tls::SniResolver;
use crate::proto::config::Config;
use crate::proto::shard::{Ban, Transmit};
use crate::proto::sip::Transport;

/// What every worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// SIP: each worker runs its shard.
    Sip,
    /// No SIP: each worker answers every datagram with one of the size it
    /// asks for ([`bare`](super::bare)), on the same I/O path. For
    /// benchmarks only (the floor of `cargo xtask bench`); steer it with
    /// [`SteerChoice::Off`](super::SteerChoice::Off) and without XDP or
    /// stream transports, which expect SIP.
    Bare,
}

/// Hand-offs waiting in one worker's inbox; past it they are dropped.
pub const INBOX_CAPACITY: usize = 16384;

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
/// Bans from other workers waiting in one inbox; past it they are dropped
/// (counted as lost hand-offs): the XDP map, when there is one, still has
/// them.
pub const BAN_SLOTS: usize = 1024;

/// One worker's inbox of hand-offs, and of configuration reloads.
#[derive(Debug)]
pub struct Inbox {
    pub queue: ArrayQueue<Handoff>,
    /// Configurations from a reload (SIGHUP), oldest first; the worker
    /// gives the newest to its shard at the start of its next drain.
    pub config: ArrayQueue<Arc<Config>>,
    /// Bans another worker's shard decided (docs/decisions/0019), for this
    /// worker's shard to apply too.
    pub bans: ArrayQueue<Ban>,
    /// Set by a sender that has sent (or is about to send) a wake-up the
    /// owner has not consumed yet; cleared by the owner before draining.
    pub notified: AtomicBool,
}

impl Inbox {
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            queue: ArrayQueue::new(capacity.max(1)),
            config: ArrayQueue::new(CONFIG_SLOTS),
            bans: ArrayQueue::new(BAN_SLOTS),
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
    pub stream: Option<Arc<StreamQueue>>,
}

/// Transmits waiting for the stream thread; past it workers drop them.
pub const QUEUE_CAPACITY: usize = 16384;

/// Why a connection was closed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    Peer,
    /// No traffic for the idle timeout.
    Idle,
    /// Accepted past `max_connections`.
    Limit,
    /// A socket or TLS error, or unframeable input.
    Error,
    /// A message over the size cap.
    Oversize,
    /// The write backlog passed its cap.
    Backlog,
    /// The TLS handshake or TCP connect took too long.
    Handshake,
    /// sipark stopped.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Peer,
        CloseReason::Idle,
        CloseReason::Limit,
        CloseReason::Error,
        CloseReason::Oversize,
        CloseReason::Backlog,
        CloseReason::Handshake,
        CloseReason::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Idle => "idle",
            CloseReason::Limit => "limit",
            CloseReason::Error => "error",
            CloseReason::Oversize => "oversize",
            CloseReason::Backlog => "backlog",
            CloseReason::Handshake => "handshake",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Why a message was dropped (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Received, but the owner's inbox was full.
    InboxFull,
    /// From a worker, but the stream queue was full.
    QueueFull,
    /// TLS to a peer with no connection, and no `--tls-ca`.
    NoTlsClient,
    /// Queued on a connection that failed or closed before it was written,
    /// or no connection could be opened.
    Unsent,
    /// No connection could be opened: `max_connections` reached.
    Limit,
}

impl DropReason {
    pub const ALL: [DropReason; 5] =
        [DropReason::InboxFull, DropReason::QueueFull, DropReason::NoTlsClient, DropReason::Unsent, DropReason::Limit];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::InboxFull => "inbox_full",
            DropReason::QueueFull => "queue_full",
            DropReason::NoTlsClient => "no_tls_client",
            DropReason::Unsent => "unsent",
            DropReason::Limit => "limit",
        }
    }
}

/// The stream transports' counters. Written by the stream thread (and
/// `dropped{queue_full}` by workers), read by the metrics scrape.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Open connections, `[tcp, tls]` (gauge).
    pub connections: [AtomicU64; 2],
    /// Connections accepted, `[tcp, tls]`.
    pub accepted: [AtomicU64; 2],
    /// Connections sipark opened, `[tcp, tls]`.
    pub opened: [AtomicU64; 2],
    /// Connections closed, by [`CloseReason`] (in `CloseReason::ALL` order).
    pub closed: [AtomicU64; 8],
    /// Messages framed and handed to a worker, `[tcp, tls]`.
    pub messages_in: [AtomicU64; 2],
    /// Messages queued on a connection for writing, `[tcp, tls]`.
    pub messages_out: [AtomicU64; 2],
    /// CRLFCRLF keep-alives answered.
    pub pings: AtomicU64,
    /// Messages dropped, by [`DropReason`] (in `DropReason::ALL` order).
    pub dropped: [AtomicU64; 5],
}

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

impl StreamStats {
    pub fn closed(&self, r: CloseReason) -> u64 {
        CloseReason::ALL.iter().position(|&x| x == r).map_or(0, |i| self.closed[i].load(Ordering::Relaxed))
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        DropReason::ALL.iter().position(|&x| x == r).map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }

    pub(super) fn count_close(&self, r: CloseReason) {
        if let Some(i) = CloseReason::ALL.iter().position(|&x| x == r) {
            inc(&self.closed[i]);
        }
    }

    pub(super) fn count_drop(&self, r: DropReason, n: u64) {
        if let Some(i) = DropReason::ALL.iter().position(|&x| x == r) {
            self.dropped[i].fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What workers share with the stream thread: the queue of outgoing stream
/// messages and how to wake the thread.
#[derive(Debug)]
pub struct StreamQueue {
    pub(super) queue: ArrayQueue<Transmit>,
    /// Set by a worker that has written (or is about to write) the eventfd
    /// the stream thread has not consumed yet.
    pub(super) notified: AtomicBool,
    pub(super) event: OwnedFd,
    /// Set once the workers are gone: close everything and exit.
    pub(super) stop: AtomicBool,
    /// A new certificate set from a reload (SIGHUP), for the TLS listener's
    /// next handshakes; only the newest matters.
    pub(super) certs: ArrayQueue<Arc<SniResolver>>,
    pub stats: Arc<StreamStats>,
}

impl StreamQueue {
    pub fn new() -> io::Result<StreamQueue> {
        Ok(StreamQueue {
            queue: ArrayQueue::new(QUEUE_CAPACITY),
            notified: AtomicBool::new(false),
            event: new_eventfd()?,
            stop: AtomicBool::new(false),
            certs: ArrayQueue::new(1),
            stats: Arc::new(StreamStats::default()),
        })
    }

    /// Hands the TLS listener a new certificate set (a reload): handshakes
    /// from the stream thread's next turn on use it; connections already
    /// open keep theirs. Nothing happens without a TLS listener.
    pub fn set_certs(&self, resolver: SniResolver) {
        let _ = self.certs.force_push(Arc::new(resolver));
        self.wake();
    }

    /// Hands a transmit to the stream thread (called by workers). The
    /// payload is the stream thread's from now on; a full queue drops it.
    pub fn send(&self, t: Transmit) {
        if self.queue.push(t).is_err() {
            self.stats.count_drop(DropReason::QueueFull, 1);
            return;
        }
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Wakes the stream thread.
    pub fn wake(&self) {
        if let Err(e) = eventfd_add(&self.event, 1) {
            // The target this line had when `StreamQueue` was in `stream`.
            debug!(target: "sipark::io::stream", error = %e, "cannot wake the stream thread");
        }
    }

    /// Asks the stream thread to close every connection and exit.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }
}
