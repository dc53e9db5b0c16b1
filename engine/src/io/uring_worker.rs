//! The io_uring backend of a worker ([`super::worker`] has the common
//! part, [`super::uring`] the building blocks): one ring per worker, a
//! multishot `RecvMsg` (kernel 6.0) filling a provided buffer ring, one
//! `SendMsg` per datagram from a fixed slab, submitted in one
//! `io_uring_enter` per turn together with the wait, and `MsgRingData`
//! (kernel 5.18) wake-ups between rings. [`probe`] tells whether it can
//! run here.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tracing::{debug, warn};

use super::shared::Waker;
use super::uring::{
    BufRing, RX_STAMP_SPACE, SendSlab, UD_CANCEL, UD_MSG_SENT, UD_RECV, UD_SEND, UD_TAG_MASK, UD_WAKE, new_ring,
    read_sockaddr, rx_stamp,
};
use super::worker::{Core, Io, queue_delay};
use crate::proto::sip::Transport;

/// Submission queue entries per worker ring (more than the send slab plus
/// one wake per peer, so one turn never fills it).
pub const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries per worker ring.
pub const CQ_ENTRIES: u32 = 16384;
/// Provided receive buffers per worker.
pub const RECV_BUFFERS: u16 = 1024;
/// Size of each receive buffer. Each one also holds the 16-byte
/// `io_uring_recvmsg_out` header, a `sockaddr_storage` and, with overload
/// control on, the 32-byte receive stamp ([`RX_STAMP_SPACE`]), so the
/// largest datagram accepted is `RECV_BUF_SIZE - 176` bytes; longer ones
/// arrive truncated and are dropped (and counted).
pub const RECV_BUF_SIZE: u32 = 9216;
/// Sends in flight per worker.
pub const SEND_SLOTS: u32 = 1024;
/// How long an exiting worker waits for its receive to be cancelled and
/// its sends to complete before it leaks their memory instead.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// Consecutive receive errors (other than `ENOBUFS`) that end the worker.
const MAX_RECV_ERRORS: u32 = 64;
/// Buffer group id of the receive buffer ring.
const BGID: u16 = 0;

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

/// Whether the io_uring backend can run here: one worker's ring and
/// registered buffer ring, at the workers' sizes (what a seccomp profile,
/// `kernel.io_uring_disabled`, a memory limit or an old kernel refuses), on
/// a kernel that has multishot `RECVMSG` (6.0). `Err` says why not.
pub fn probe() -> Result<(), String> {
    if let Some((major, minor)) = kernel_version()
        && (major, minor) < (6, 0)
    {
        return Err(format!("kernel {major}.{minor} lacks multishot RECVMSG (6.0+)"));
    }
    let (ring, _) = new_ring(SQ_ENTRIES, CQ_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
    let bufs = BufRing::new(RECV_BUFFERS, RECV_BUF_SIZE, 0).map_err(|e| format!("buffer ring memory: {e}"))?;
    // SAFETY: no operation is ever submitted on this ring, and `ring` is
    // dropped (closed) before `bufs`.
    let registered = unsafe { bufs.register(&ring) };
    drop(ring);
    registered.map_err(|e| format!("register_buf_ring (kernel 5.19+): {e}"))
}

/// The running kernel's major and minor version, from `uname`.
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: all-zero is a valid utsname for uname to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let release: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let mut parts = release.split(|&b| b == b'.' || b == b'-');
    let num = |p: Option<&[u8]>| std::str::from_utf8(p?).ok()?.parse::<u32>().ok();
    Some((num(parts.next())?, num(parts.next())?))
}

/// A worker's io_uring state. Field order is drop order: the ring is
/// closed before the buffers, slab and socket it refers to are freed.
/// Closing alone does not wait for the kernel, so [`Io::finish`] first
/// waits for every operation to end (or leaks the memory if they do not).
pub struct UringIo {
    ring: IoUring,
    bufs: BufRing,
    slab: SendSlab,
    recv_hdr: Box<libc::msghdr>,
    socket: UdpSocket,
    id: u16,
    recv_armed: bool,
    recv_errors: u32,
    /// Completions copied out of the CQ this turn.
    cqes: Vec<cqueue::Entry>,
    /// `poll_transmit` may have more: the slab was full.
    transmit_blocked: bool,
    /// Each datagram carries its kernel receive stamp: report each turn's
    /// queueing delay ([`Core::on_load`]).
    stamps: bool,
}

impl Io for UringIo {
    fn new(id: u16, socket: UdpSocket, stamps: bool) -> Result<(UringIo, Waker, &'static str), String> {
        let (ring, mode) = new_ring(SQ_ENTRIES, CQ_ENTRIES).map_err(|e| format!("io_uring_setup: {e}"))?;
        let bufs = BufRing::new(RECV_BUFFERS, RECV_BUF_SIZE, BGID).map_err(|e| format!("buffer ring memory: {e}"))?;
        // SAFETY: `bufs` is stored in the same UringIo after `ring`, so the
        // ring is dropped (closed) before the buffer memory is unmapped;
        // `finish` also waits for the receive to end first.
        unsafe { bufs.register(&ring) }.map_err(|e| format!("register_buf_ring (kernel 5.19+): {e}"))?;
        // SAFETY: the ring's fd is open for as long as `ring` lives, which
        // covers this borrow; the duplicate is an independent descriptor.
        let ring_fd = unsafe { BorrowedFd::borrow_raw(ring.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| format!("dup of ring fd: {e}"))?;
        // SAFETY: all-zero is a valid msghdr; only the name and control
        // lengths matter for a multishot receive (the kernel lays both out
        // in each provided buffer).
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if stamps {
            recv_hdr.msg_controllen = RX_STAMP_SPACE as _;
        }
        let io = UringIo {
            ring,
            bufs,
            slab: SendSlab::new(SEND_SLOTS),
            recv_hdr,
            socket,
            id,
            recv_armed: false,
            recv_errors: 0,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            transmit_blocked: false,
            stamps,
        };
        Ok((io, Waker::Ring(ring_fd), mode.name()))
    }

    fn run(&mut self, core: &mut Core) -> io::Result<()> {
        loop {
            let now = Instant::now();
            core.busy = false;
            core.apply_config(now);
            self.take_completions(core, now)?;
            core.drain_inbox(now);
            core.run_timers(now);
            core.run_media(now);
            self.flush_transmits(core)?;
            self.flush_wakes(core)?;
            if !self.recv_armed {
                self.arm_recv()?;
            }
            if core.should_exit(now, self.slab.in_flight() == 0 && !self.transmit_blocked) {
                return Ok(());
            }
            self.submit_and_wait(core.wait_time(now))?;
        }
    }

    /// Ends the receive and waits (bounded) for in-flight operations; if
    /// they do not end in time, the worker's memory is leaked rather than
    /// freed under the kernel.
    fn finish(mut self, core: &mut Core) {
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
                    UD_SEND => self.on_send(core, ud as u32, cqe.result()),
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

impl UringIo {
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

    fn take_completions(&mut self, core: &mut Core, now: Instant) -> io::Result<()> {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.ring.completion());
        if cqes.len() == cqes.capacity() {
            core.busy = true;
        }
        if self.stamps {
            let oldest = cqes.iter().filter_map(|cqe| self.stamp_of(cqe)).min();
            core.on_load(now, queue_delay(oldest));
        }
        for cqe in &cqes {
            let ud = cqe.user_data();
            match ud & UD_TAG_MASK {
                UD_RECV => self.on_recv(core, now, cqe)?,
                UD_SEND => self.on_send(core, ud as u32, cqe.result()),
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

    /// The kernel receive stamp of the datagram a receive completion
    /// carries, if it is one and has a stamp.
    fn stamp_of(&self, cqe: &cqueue::Entry) -> Option<Duration> {
        if cqe.user_data() & UD_TAG_MASK != UD_RECV || cqe.result() < 0 {
            return None;
        }
        let bid = cqueue::buffer_select(cqe.flags())?;
        let buf = self.bufs.buffer(bid, cqe.result() as usize)?;
        let out = types::RecvMsgOut::parse(buf, &self.recv_hdr).ok()?;
        if out.is_control_data_truncated() {
            return None;
        }
        rx_stamp(out.control_data())
    }

    fn on_send(&mut self, core: &mut Core, slot: u32, res: i32) {
        if res >= 0 {
            core.stats.datagrams_out.inc();
        } else {
            core.stats.send_errors.inc();
            debug!(worker = self.id, error = %io::Error::from_raw_os_error(-res), "send failed");
        }
        if let Some(payload) = self.slab.complete(slot) {
            core.recycle(payload);
        }
    }

    fn on_recv(&mut self, core: &mut Core, now: Instant, cqe: &cqueue::Entry) -> io::Result<()> {
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
                            format!("multishot recvmsg keeps failing (needs Linux 6.0+; try --io mmsg): {e}"),
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
        self.on_buffer(core, now, bid, res as usize);
        // The datagram has been handled or copied: the buffer goes back.
        self.bufs.recycle(bid);
        Ok(())
    }

    /// One filled provided buffer: header, source address, payload.
    fn on_buffer(&mut self, core: &mut Core, now: Instant, bid: u16, len: usize) {
        let out = self.bufs.buffer(bid, len).and_then(|buf| types::RecvMsgOut::parse(buf, &self.recv_hdr).ok());
        let Some(out) = out.filter(|o| !o.is_payload_truncated() && !o.is_name_data_truncated()) else {
            core.stats.datagrams_in.inc();
            core.stats.dropped.inc();
            return;
        };
        match read_sockaddr(out.name_data()) {
            Some(src) => core.on_datagram(now, src, out.payload_data()),
            None => {
                core.stats.datagrams_in.inc();
                core.stats.dropped.inc();
            }
        }
    }

    /// Turns pending transmits into `SendMsg` SQEs while send slots last.
    fn flush_transmits(&mut self, core: &mut Core) -> io::Result<()> {
        self.transmit_blocked = false;
        let fd = self.socket.as_raw_fd();
        loop {
            if !self.slab.has_free() {
                self.transmit_blocked = true;
                return Ok(());
            }
            let Some(t) = core.poll_transmit() else {
                return Ok(());
            };
            if t.transport != Transport::Udp {
                core.send_stream(t);
                continue;
            }
            let (slot, hdr) = match self.slab.prepare(t.dst, t.payload) {
                Ok(x) => x,
                Err(payload) => {
                    core.recycle(payload);
                    self.transmit_blocked = true;
                    return Ok(());
                }
            };
            // `hdr` points into the slab slot, untouched until the CQE.
            let e = opcode::SendMsg::new(types::Fd(fd), hdr).build().user_data(UD_SEND | u64::from(slot));
            self.push(&e)?;
        }
    }

    /// Sends the wake-ups queued this turn: `MsgRingData` (kernel 5.18)
    /// to ring workers.
    fn flush_wakes(&mut self, core: &mut Core) -> io::Result<()> {
        let id = i32::from(core.id);
        for (s, waker) in core.take_wakes() {
            match waker {
                Waker::Ring(fd) => {
                    let e = opcode::MsgRingData::new(types::Fd(fd.as_raw_fd()), id, UD_WAKE, None)
                        .build()
                        .user_data(UD_MSG_SENT);
                    push_sqe(&mut self.ring, &e)?;
                }
                Waker::Event(_) => {
                    if let Err(e) = waker.wake_event() {
                        debug!(worker = self.id, peer = s, error = %e, "eventfd wake failed");
                    }
                }
            }
        }
        Ok(())
    }
}
