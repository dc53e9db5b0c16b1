//! One worker: a thread pinned to a core, owning one [`Shard`], one UDP
//! socket (`SO_REUSEPORT` group member) and one io_uring, driven by a plain
//! completion loop (no async runtime).
//!
//! A loop turn:
//! 1. read `Instant::now()` (once);
//! 2. take every completion: received datagrams are parsed and routed
//!    ([`route::owner`]): ours go to the shard, others are copied into the
//!    owner's inbox (a bounded lock-free queue) and the owner is woken with
//!    `MsgRingData`; finished sends give their buffer back to the shard;
//! 3. drain our own inbox (hand-offs from other workers);
//! 4. run the shard's timers when due;
//! 5. turn `shard.poll_transmit()` into `SendMsg` SQEs;
//! 6. one `io_uring_enter`: submit everything and wait for a completion or
//!    the shard's next deadline.
//!
//! No lock is taken on the datagram path; the start-up hand-shake uses
//! channels.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tracing::{debug, info, warn};

use super::uring::{
    BufRing, RingMode, SendSlab, UD_CANCEL, UD_MSG_SENT, UD_RECV, UD_SEND, UD_TAG_MASK, UD_WAKE, new_ring,
    read_sockaddr,
};
use crate::proto::config::Config;
use crate::proto::parse::SipMessage;
use crate::proto::route::{self, Owner};
use crate::proto::shard::{Shard, WallClock};
use crate::proto::stats::ShardStats;

/// Submission queue entries per worker ring (more than the send slab plus
/// one wake per peer, so one turn never fills it).
pub const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries per worker ring.
pub const CQ_ENTRIES: u32 = 16384;
/// Provided receive buffers per worker.
pub const RECV_BUFFERS: u16 = 1024;
/// Size of each receive buffer. Each one also holds the 16-byte
/// `io_uring_recvmsg_out` header and a `sockaddr_storage`, so the largest
/// datagram accepted is `RECV_BUF_SIZE - 144` bytes; longer ones arrive
/// truncated and are dropped (and counted).
pub const RECV_BUF_SIZE: u32 = 9216;
/// Sends in flight per worker.
pub const SEND_SLOTS: u32 = 1024;
/// Hand-offs waiting in one worker's inbox; past it they are dropped.
pub const INBOX_CAPACITY: usize = 16384;
/// Hand-offs drained per loop turn (the rest wait for the next turn).
const INBOX_BATCH: usize = 4096;
/// Longest single wait, so that a lost wake-up costs at most this.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// How long an exiting worker waits for its receive to be cancelled and
/// its sends to complete before it leaks their memory instead.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// Consecutive receive errors (other than `ENOBUFS`) that end the worker.
const MAX_RECV_ERRORS: u32 = 64;
/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;

/// A datagram received by one worker and owned by another's shard.
#[derive(Debug)]
pub struct Handoff {
    pub src: SocketAddr,
    pub data: Box<[u8]>,
}

/// One worker's inbox of hand-offs.
#[derive(Debug)]
pub struct Inbox {
    queue: ArrayQueue<Handoff>,
    /// Set by a sender that has sent (or is about to send) a wake-up the
    /// owner has not consumed yet; cleared by the owner before draining.
    notified: AtomicBool,
}

impl Inbox {
    pub fn new(capacity: usize) -> Inbox {
        Inbox { queue: ArrayQueue::new(capacity.max(1)), notified: AtomicBool::new(false) }
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
    /// Duplicates of every worker's ring fd (`MsgRingData` targets). They
    /// keep each ring alive until the last worker is gone, so a late wake
    /// never lands on a reused fd number.
    pub ring_fds: Box<[OwnedFd]>,
}

/// What a worker reports once its ring and shard exist.
#[derive(Debug)]
pub struct Ready {
    pub ring_fd: OwnedFd,
    pub stats: Arc<ShardStats>,
    pub mode: RingMode,
}

/// Everything a worker thread starts with.
pub struct WorkerInit {
    pub id: u16,
    pub n: u16,
    pub socket: UdpSocket,
    pub cfg: Arc<Config>,
    pub wall: WallClock,
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

/// The worker thread's body. Returns an error text if the worker failed.
pub fn run(init: WorkerInit) -> Result<(), String> {
    block_shutdown_signals();
    let WorkerInit { id, n, socket, cfg, wall, cpu, grace, ready, go } = init;
    if let Some(cpu) = cpu {
        match pin_to_cpu(cpu) {
            Ok(()) => debug!(worker = id, cpu, "pinned"),
            Err(e) => {
                warn!(worker = id, cpu, error = %e, "cannot pin worker to its core; running unpinned")
            }
        }
    }
    let now = Instant::now();
    let mut worker = match Worker::new(id, n, socket, cfg, wall, now) {
        Ok((w, r)) => {
            if ready.send((id, Ok(r))).is_err() {
                return Err("start-up aborted".into());
            }
            w
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
    worker.peers = Some(peers);
    let result = worker.run(grace);
    worker.finish();
    result.map_err(|e| format!("worker {id}: {e}"))
}

/// Queues one SQE on `ring`, submitting first if the queue is full.
fn push_sqe(ring: &mut IoUring, e: &squeue::Entry) -> io::Result<()> {
    // SAFETY: every SQE built by a worker points only at memory that
    // outlives its operation (see the buffer lifetime rule in `io::uring`).
    if unsafe { ring.submission().push(e) }.is_ok() {
        return Ok(());
    }
    ring.submit()?;
    // SAFETY: as above.
    unsafe { ring.submission().push(e) }.map_err(|_| io::Error::other("submission queue full"))
}

/// A worker's state. Field order is drop order: the ring is closed before
/// the buffers, slab and socket it refers to are freed. Closing alone does
/// not wait for the kernel, so [`Worker::finish`] first waits for every
/// operation to end (or leaks the memory if they do not).
struct Worker {
    ring: IoUring,
    bufs: BufRing,
    slab: SendSlab,
    recv_hdr: Box<libc::msghdr>,
    socket: UdpSocket,
    shard: Shard,
    stats: Arc<ShardStats>,
    peers: Option<Arc<Peers>>,
    id: u16,
    n: u16,
    recv_armed: bool,
    recv_errors: u32,
    /// Peers to wake with `MsgRingData` at the end of this turn.
    wake: Vec<bool>,
    /// Completions copied out of the CQ this turn.
    cqes: Vec<cqueue::Entry>,
    /// `poll_transmit` may have more: the slab was full.
    transmit_blocked: bool,
    /// Work is left for the next turn: do not sleep.
    busy: bool,
}

impl Worker {
    fn new(
        id: u16,
        n: u16,
        socket: UdpSocket,
        cfg: Arc<Config>,
        wall: WallClock,
        now: Instant,
    ) -> Result<(Worker, Ready), String> {
        let (ring, mode) = new_ring(SQ_ENTRIES, CQ_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        let bufs = BufRing::new(RECV_BUFFERS, RECV_BUF_SIZE, BGID).map_err(|e| format!("buffer ring memory: {e}"))?;
        // SAFETY: `bufs` is stored in the same Worker after `ring`, so the
        // ring is dropped (closed) before the buffer memory is unmapped;
        // `finish` also waits for the receive to end first.
        unsafe { bufs.register(&ring) }.map_err(|e| format!("register_buf_ring (kernel 5.19+): {e}"))?;
        // SAFETY: the ring's fd is open for as long as `ring` lives, which
        // covers this borrow; the duplicate is an independent descriptor.
        let ring_fd = unsafe { BorrowedFd::borrow_raw(ring.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| format!("dup of ring fd: {e}"))?;
        // SAFETY: all-zero is a valid msghdr; only the name length matters
        // for a multishot receive.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let shard = Shard::new(id, n, cfg, wall, now);
        let stats = shard.stats().clone();
        let ready = Ready { ring_fd, stats: stats.clone(), mode };
        let w = Worker {
            ring,
            bufs,
            slab: SendSlab::new(SEND_SLOTS),
            recv_hdr,
            socket,
            shard,
            stats,
            peers: None,
            id,
            n,
            recv_armed: false,
            recv_errors: 0,
            wake: vec![false; usize::from(n)],
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            transmit_blocked: false,
            busy: false,
        };
        Ok((w, ready))
    }

    /// Queues one SQE, submitting first if the queue is full.
    fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        push_sqe(&mut self.ring, e)
    }

    /// Arms the multishot receive (kernel 6.0).
    fn arm_recv(&mut self) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(types::Fd(self.socket.as_raw_fd()), &*self.recv_hdr, self.bufs.bgid())
            .build()
            .user_data(UD_RECV);
        self.push(&e)?;
        self.recv_armed = true;
        Ok(())
    }

    fn run(&mut self, grace: Duration) -> io::Result<()> {
        let mut deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.busy = false;
            self.take_completions(now)?;
            self.drain_inbox(now);
            if let Some(t) = self.shard.poll_timeout()
                && t <= now
            {
                self.shard.handle_timeout(now);
            }
            let stop = self.peers.as_ref().is_none_or(|p| p.stop.load(Ordering::Acquire));
            if deadline.is_none() && stop {
                info!(worker = self.id, grace_s = grace.as_secs_f64(), "worker shutting down");
                self.shard.shutdown(now);
                deadline = Some(now + grace);
            }
            self.flush_transmits()?;
            self.flush_wakes()?;
            if !self.recv_armed {
                self.arm_recv()?;
            }
            if let Some(d) = deadline {
                if self.shard.is_drained() && self.slab.in_flight() == 0 && !self.transmit_blocked {
                    info!(worker = self.id, "worker drained");
                    return Ok(());
                }
                if now >= d {
                    warn!(worker = self.id, "shutdown grace elapsed before the shard drained");
                    return Ok(());
                }
            }
            let wait = if self.busy {
                Duration::ZERO
            } else {
                let mut until = now + MAX_WAIT;
                if let Some(t) = self.shard.poll_timeout() {
                    until = until.min(t);
                }
                if let Some(d) = deadline {
                    until = until.min(d);
                }
                until.saturating_duration_since(now)
            };
            self.submit_and_wait(wait)?;
        }
    }

    /// Submits every queued SQE and waits up to `wait` for a completion.
    fn submit_and_wait(&mut self, wait: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // ETIME: the wait timed out. EINTR: a signal. EBUSY/EAGAIN:
                // completions must be reaped first (the next turn does).
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }

    fn take_completions(&mut self, now: Instant) -> io::Result<()> {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion());
        if cqes.len() == cqes.capacity() {
            self.busy = true;
        }
        for cqe in &cqes {
            let ud = cqe.user_data();
            match ud & UD_TAG_MASK {
                UD_RECV => self.on_recv(now, cqe)?,
                UD_SEND => self.on_send(ud as u32, cqe.result()),
                UD_WAKE => {} // the inbox is drained every turn
                UD_MSG_SENT if cqe.result() < 0 => {
                    let e = io::Error::from_raw_os_error(-cqe.result());
                    debug!(worker = self.id, error = %e, "MsgRing wake failed");
                }
                _ => {}
            }
        }
        self.cqes = cqes;
        self.bufs.publish();
        Ok(())
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        if res >= 0 {
            self.stats.datagrams_out.inc();
        } else {
            self.stats.send_errors.inc();
            debug!(worker = self.id, error = %io::Error::from_raw_os_error(-res), "send failed");
        }
        if let Some(payload) = self.slab.complete(slot) {
            self.shard.recycle(payload);
        }
    }

    fn on_recv(&mut self, now: Instant, cqe: &cqueue::Entry) -> io::Result<()> {
        let flags = cqe.flags();
        if !cqueue::more(flags) {
            self.recv_armed = false; // re-armed at the end of the turn
        }
        let res = cqe.result();
        if res < 0 {
            let errno = -res;
            match errno {
                libc::ENOBUFS => debug!(worker = self.id, "receive buffers exhausted; re-arming"),
                libc::ECANCELED | libc::EINTR => {}
                _ => {
                    self.recv_errors += 1;
                    let e = io::Error::from_raw_os_error(errno);
                    warn!(worker = self.id, error = %e, "receive failed");
                    if self.recv_errors >= MAX_RECV_ERRORS {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "multishot recvmsg keeps failing (needs Linux 6.0+; the recvmmsg \
                                 fallback backend is not implemented yet): {e}"
                            ),
                        ));
                    }
                }
            }
            return Ok(());
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return Ok(());
        };
        self.recv_errors = 0;
        self.on_datagram(now, bid, res as usize);
        // The datagram has been handled or copied: the buffer goes back.
        self.bufs.recycle(bid);
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, bid: u16, len: usize) {
        let Worker { bufs, recv_hdr, shard, stats, peers, id, n, wake, .. } = self;
        stats.datagrams_in.inc();
        let Some(buf) = bufs.buffer(bid, len) else {
            stats.dropped.inc();
            return;
        };
        let Ok(out) = types::RecvMsgOut::parse(buf, recv_hdr) else {
            stats.dropped.inc();
            return;
        };
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            stats.dropped.inc();
            return;
        }
        let Some(src) = read_sockaddr(out.name_data()) else {
            stats.dropped.inc();
            return;
        };
        let data = out.payload_data();
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
                let Some(peers) = peers.as_ref() else { return };
                let Some(inbox) = peers.inboxes.get(usize::from(s)) else {
                    shard.handle_message(now, src, &msg);
                    return;
                };
                match inbox.queue.push(Handoff { src, data: data.into() }) {
                    Ok(()) => {
                        stats.handoffs_out.inc();
                        if !inbox.notified.swap(true, Ordering::SeqCst) {
                            wake[usize::from(s)] = true;
                        }
                    }
                    Err(_) => stats.handoffs_dropped.inc(),
                }
            }
            _ => shard.handle_message(now, src, &msg),
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        let Worker { peers, shard, stats, id, busy, .. } = self;
        let Some(inbox) = peers.as_ref().and_then(|p| p.inboxes.get(usize::from(*id))) else {
            return;
        };
        inbox.notified.store(false, Ordering::SeqCst);
        for _ in 0..INBOX_BATCH {
            let Some(h) = inbox.queue.pop() else {
                return;
            };
            stats.handoffs_in.inc();
            shard.handle(now, h.src, &h.data);
        }
        // Batch used up: more may be waiting.
        *busy = true;
    }

    /// Turns pending transmits into `SendMsg` SQEs while send slots last.
    fn flush_transmits(&mut self) -> io::Result<()> {
        self.transmit_blocked = false;
        let fd = self.socket.as_raw_fd();
        loop {
            if !self.slab.has_free() {
                self.transmit_blocked = true;
                return Ok(());
            }
            let Some(t) = self.shard.poll_transmit() else {
                return Ok(());
            };
            let (slot, hdr) = match self.slab.prepare(t.dst, t.payload) {
                Ok(x) => x,
                Err(payload) => {
                    self.shard.recycle(payload);
                    self.transmit_blocked = true;
                    return Ok(());
                }
            };
            // `hdr` points into the slab slot, untouched until the CQE.
            let e = opcode::SendMsg::new(types::Fd(fd), hdr).build().user_data(UD_SEND | u64::from(slot));
            self.push(&e)?;
        }
    }

    /// Sends the `MsgRingData` wake-ups (kernel 5.18) queued this turn.
    fn flush_wakes(&mut self) -> io::Result<()> {
        let Worker { ring, peers, wake, id, .. } = self;
        let Some(peers) = peers.as_ref() else {
            return Ok(());
        };
        for (s, flag) in wake.iter_mut().enumerate() {
            if !std::mem::take(flag) {
                continue;
            }
            let Some(fd) = peers.ring_fds.get(s) else {
                continue;
            };
            let e = opcode::MsgRingData::new(types::Fd(fd.as_raw_fd()), i32::from(*id), UD_WAKE, None)
                .build()
                .user_data(UD_MSG_SENT);
            push_sqe(ring, &e)?;
        }
        Ok(())
    }

    /// Ends the receive and waits (bounded) for in-flight operations; if
    /// they do not end in time, the worker's memory is leaked rather than
    /// freed under the kernel.
    fn finish(mut self) {
        let until = Instant::now() + EXIT_WAIT;
        if self.recv_armed {
            let e = opcode::AsyncCancel::new(UD_RECV).build().user_data(UD_CANCEL);
            if self.push(&e).is_err() {
                warn!(worker = self.id, "cannot cancel the receive; leaking its buffers");
                std::mem::forget(self);
                return;
            }
        }
        loop {
            let now = Instant::now();
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.clear();
            cqes.extend(self.ring.completion());
            for cqe in &cqes {
                let ud = cqe.user_data();
                match ud & UD_TAG_MASK {
                    UD_RECV => {
                        if !cqueue::more(cqe.flags()) {
                            self.recv_armed = false;
                        }
                        if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                            self.bufs.recycle(bid);
                        }
                    }
                    UD_SEND => self.on_send(ud as u32, cqe.result()),
                    _ => {}
                }
            }
            self.cqes = cqes;
            if !self.recv_armed && self.slab.in_flight() == 0 {
                debug!(worker = self.id, "worker exited cleanly");
                return;
            }
            if now >= until {
                warn!(
                    worker = self.id,
                    sends = self.slab.in_flight(),
                    recv = self.recv_armed,
                    "operations still in flight at exit; leaking their memory"
                );
                std::mem::forget(self);
                return;
            }
            if let Err(e) = self.submit_and_wait(until.saturating_duration_since(now)) {
                warn!(worker = self.id, error = %e, "io_uring_enter failed at exit; leaking");
                std::mem::forget(self);
                return;
            }
        }
    }
}
