//! The portable backend of a worker (`--io mmsg`, and `--io auto` where
//! io_uring is not allowed): a non-blocking socket read with `recvmmsg`
//! and written with `sendmmsg` in batches, and `ppoll` on the socket plus
//! an eventfd that peers write to wake the worker. It needs nothing newer
//! than Linux 3.0 and no io_uring, so it runs under seccomp profiles and
//! with `kernel.io_uring_disabled` set; it costs one more system call per
//! batch than the io_uring backend.

use std::collections::VecDeque;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::shared::Waker;
use super::sys::{eventfd_clear, new_eventfd};
use super::uring::{RX_STAMP_SPACE, rx_stamp};
use super::worker::{Core, Io, queue_delay};
use crate::proto::shard::Transmit;
use crate::proto::sip::Transport;

pub use super::batch::BATCH;
use super::batch::Batch;
/// Receive calls per turn before the other work gets its turn.
const RECV_ROUNDS: usize = 8;
/// Size of each receive buffer; longer datagrams are dropped (MSG_TRUNC).
pub const RECV_BUF_SIZE: usize = 9216;
/// Transmits taken from the shard and not yet accepted by the kernel.
/// Past it they stay queued in the shard until the socket drains.
const MAX_PENDING: usize = 4 * BATCH;
/// Consecutive receive errors (other than `EAGAIN`/`EINTR`) that end the
/// worker.
const MAX_RECV_ERRORS: u32 = 64;

/// A worker's recvmmsg/sendmmsg state.
pub struct MmsgIo {
    socket: UdpSocket,
    /// Our own eventfd: peers hold a duplicate and write to it.
    event: OwnedFd,
    id: u16,
    rx: Batch,
    rx_bufs: Box<[u8]>,
    /// Control-message room of each receive header (`RX_STAMP_SPACE`
    /// bytes each, as `u64`s for the alignment), when the socket stamps
    /// datagrams (overload control); empty otherwise.
    rx_ctrl: Box<[u64]>,
    tx: Batch,
    /// Transmits taken from the shard, oldest first.
    pending: VecDeque<Transmit>,
    /// The last send hit `EAGAIN`: wait for `POLLOUT`.
    send_blocked: bool,
    recv_errors: u32,
}

// The raw pointers in the batches point only into the MmsgIo's own boxed
// slices; it is created and used on one worker thread.

impl Io for MmsgIo {
    fn new(id: u16, socket: UdpSocket, stamps: bool) -> Result<(MmsgIo, Waker, &'static str), String> {
        socket.set_nonblocking(true).map_err(|e| format!("O_NONBLOCK on the socket: {e}"))?;
        let event = new_eventfd().map_err(|e| format!("eventfd: {e}"))?;
        let peer_copy = event.try_clone().map_err(|e| format!("dup of eventfd: {e}"))?;
        let mut rx = Batch::new();
        let mut rx_bufs = vec![0u8; BATCH * RECV_BUF_SIZE].into_boxed_slice();
        for (i, chunk) in rx_bufs.chunks_exact_mut(RECV_BUF_SIZE).enumerate() {
            rx.iovs[i] = libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: RECV_BUF_SIZE };
        }
        let words = RX_STAMP_SPACE.div_ceil(8);
        let mut rx_ctrl = vec![0u64; if stamps { BATCH * words } else { 0 }].into_boxed_slice();
        for (i, chunk) in rx_ctrl.chunks_exact_mut(words.max(1)).enumerate() {
            rx.hdrs[i].msg_hdr.msg_control = chunk.as_mut_ptr().cast();
        }
        let io = MmsgIo {
            socket,
            event,
            id,
            rx,
            rx_bufs,
            rx_ctrl,
            tx: Batch::new(),
            pending: VecDeque::with_capacity(MAX_PENDING),
            send_blocked: false,
            recv_errors: 0,
        };
        Ok((io, Waker::Event(peer_copy), "recvmmsg/sendmmsg"))
    }

    fn run(&mut self, core: &mut Core) -> io::Result<()> {
        let mut readable = true;
        loop {
            let now = Instant::now();
            core.busy = false;
            core.apply_config(now);
            if readable {
                self.receive(core, now)?;
            } else if !self.rx_ctrl.is_empty() {
                core.on_load(now, Duration::ZERO);
            }
            core.drain_inbox(now);
            core.run_timers(now);
            core.run_media(now);
            self.send(core);
            for (s, waker) in core.take_wakes() {
                if let Err(e) = waker.wake_event() {
                    debug!(worker = self.id, peer = s, error = %e, "eventfd wake failed");
                }
            }
            if core.should_exit(now, self.pending.is_empty()) {
                return Ok(());
            }
            readable = self.wait(core.wait_time(now))?;
        }
    }

    fn finish(self, core: &mut Core) {
        // Nothing is in flight in the kernel; what is still pending is
        // given back to the shard's pool and dropped with it.
        for t in self.pending {
            core.recycle(t.payload);
        }
    }
}

impl MmsgIo {
    /// Receives up to `RECV_ROUNDS` batches. With stamps, each batch's
    /// queueing delay goes to [`Core::on_load`] before its datagrams (zero
    /// when the first finds nothing waiting).
    fn receive(&mut self, core: &mut Core, now: Instant) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let stamps = !self.rx_ctrl.is_empty();
        for round in 0..RECV_ROUNDS {
            self.rx.rearm(if stamps { RX_STAMP_SPACE } else { 0 });
            // SAFETY: every header points at its own name and iovec in
            // `self.rx`, each iovec at its own RECV_BUF_SIZE chunk of
            // `self.rx_bufs`, and (with stamps) its control pointer at its
            // own RX_STAMP_SPACE bytes of `self.rx_ctrl`; all outlive the
            // call. The timeout is null.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if n <= 0 && round == 0 && stamps {
                core.on_load(now, Duration::ZERO);
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => return Ok(()),
                    _ => {
                        self.recv_errors += 1;
                        warn!(worker = self.id, error = %e, "recvmmsg failed");
                        if self.recv_errors >= MAX_RECV_ERRORS {
                            return Err(io::Error::new(e.kind(), format!("recvmmsg keeps failing: {e}")));
                        }
                        return Ok(());
                    }
                }
            }
            self.recv_errors = 0;
            let n = n as usize;
            if stamps && n > 0 {
                let oldest = (0..n).filter_map(|i| self.stamp_of(i)).min();
                core.on_load(now, queue_delay(oldest));
            }
            for i in 0..n {
                match self.rx.received(i, RECV_BUF_SIZE) {
                    (Some(src), Some(len)) => {
                        let data = &self.rx_bufs[i * RECV_BUF_SIZE..i * RECV_BUF_SIZE + len];
                        core.on_datagram(now, src, data);
                    }
                    _ => {
                        core.stats.datagrams_in.inc();
                        core.stats.dropped.inc();
                    }
                }
            }
            if n < BATCH {
                return Ok(());
            }
        }
        // Every round came back full: more is probably waiting.
        core.busy = true;
        Ok(())
    }

    /// The kernel receive stamp of the `i`-th datagram of the last batch.
    fn stamp_of(&self, i: usize) -> Option<Duration> {
        let h = &self.rx.hdrs[i].msg_hdr;
        if h.msg_flags & libc::MSG_CTRUNC != 0 || h.msg_control.is_null() {
            return None;
        }
        let len = h.msg_controllen.min(RX_STAMP_SPACE);
        // SAFETY: `msg_control` points at this header's RX_STAMP_SPACE
        // bytes of `self.rx_ctrl`, which the kernel filled up to
        // `msg_controllen` (capped at that room).
        let control = unsafe { std::slice::from_raw_parts(h.msg_control.cast::<u8>(), len) };
        rx_stamp(control)
    }

    /// Moves the shard's transmits into `pending` and sends as much as the
    /// socket takes, `BATCH` per call.
    fn send(&mut self, core: &mut Core) {
        let fd = self.socket.as_raw_fd();
        loop {
            while self.pending.len() < MAX_PENDING {
                match core.poll_transmit() {
                    Some(t) if t.transport != Transport::Udp => core.send_stream(t),
                    Some(t) => self.pending.push_back(t),
                    None => break,
                }
            }
            if self.pending.is_empty() {
                return;
            }
            let k = self.pending.len().min(BATCH);
            for (i, t) in self.pending.iter().take(k).enumerate() {
                self.tx.point(i, t.dst, &t.payload);
            }
            // SAFETY: headers 0..k point at their own names and iovecs in
            // `self.tx`, and the iovecs at payloads owned by `pending`,
            // which is not touched during the call.
            let sent = unsafe { libc::sendmmsg(fd, self.tx.hdrs.as_mut_ptr(), k as libc::c_uint, libc::MSG_DONTWAIT) };
            if sent < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::ENOBUFS) => {
                        self.send_blocked = true;
                        return;
                    }
                    Some(libc::EINTR) => continue,
                    _ => {
                        // The first datagram cannot be sent (a bad
                        // destination): count it and go on with the rest.
                        core.stats.send_errors.inc();
                        debug!(worker = self.id, error = %e, "send failed");
                        if let Some(t) = self.pending.pop_front() {
                            core.recycle(t.payload);
                        }
                        continue;
                    }
                }
            }
            self.send_blocked = false;
            for _ in 0..sent {
                if let Some(t) = self.pending.pop_front() {
                    core.stats.datagrams_out.inc();
                    core.recycle(t.payload);
                }
            }
        }
    }

    /// Waits up to `wait` for the socket (readable, or writable while a
    /// send is blocked) or the eventfd. Returns whether the socket may be
    /// readable.
    fn wait(&mut self, wait: Duration) -> io::Result<bool> {
        let sock_events = libc::POLLIN | if self.send_blocked { libc::POLLOUT } else { 0 };
        let mut fds = [
            libc::pollfd { fd: self.socket.as_raw_fd(), events: sock_events, revents: 0 },
            libc::pollfd { fd: self.event.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ts = libc::timespec {
            tv_sec: wait.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
        };
        // SAFETY: `fds` is a valid array of 2 pollfds and `ts` a valid
        // timespec, both alive for the call; no signal mask is passed.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(true);
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            eventfd_clear(&self.event);
        }
        if fds[0].revents & libc::POLLOUT != 0 {
            self.send_blocked = false;
        }
        Ok(fds[0].revents & (libc::POLLIN | libc::POLLERR) != 0)
    }
}
