//! The RTP receiver of the music-on-hold bench: a few UDP sockets, each
//! with a large receive buffer, read with `recvmmsg` on a thread of their
//! own, in sweeps a couple of milliseconds apart. Every datagram carries the kernel's receive stamp
//! (`SO_TIMESTAMPNS`) and, once the socket has dropped any, its drop count
//! (`SO_RXQ_OVFL`), so that neither the pacing nor the loss depends on when
//! this thread got to a datagram, and a datagram the receiver's own socket
//! dropped is counted as such, not hidden.
//!
//! A stream is a (socket, SSRC) pair. During a measured window
//! ([`Window`]) each stream's packets are tracked by sequence number: the
//! gap between the kernel stamps of two consecutive packets (sequence
//! number +1), minus the packet time, goes into a histogram as the pacing
//! error; the packets missing from the sequence are lost; a timestamp that
//! jumps by more than one packet's samples between consecutive sequence
//! numbers is audio the sender skipped. Which packets belong to the
//! window is decided by their kernel stamp, not by when they were read.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use sipark::proto::media::rtp::Header;

use crate::load::SelfCpu;
use crate::load::hist::Histogram;
use crate::load::net::set_int;

/// The packet time sipark answers with (no `a=ptime` in the offer): 20 ms.
pub const PTIME_NS: u64 = 20_000_000;
/// Samples per packet at 8 kHz and 20 ms.
pub const SAMPLES: u32 = 160;
/// A 20 ms G.711 packet: the 12-byte RTP header and 160 bytes.
pub const PACKET: usize = 172;
/// Datagrams per `recvmmsg`.
const BATCH: usize = 256;
/// Bytes kept per datagram: a music packet fits; a longer datagram is cut
/// (`MSG_TRUNC`) and counted.
const SLOT: usize = 256;
/// Control bytes per datagram: one `SCM_TIMESTAMPNS` and one `SO_RXQ_OVFL`.
const CTRL: usize = 64;
/// Receive buffer asked for per socket (`SO_RCVBUFFORCE` as root, else
/// `SO_RCVBUF` up to `net.core.rmem_max`).
const RCVBUF: libc::c_int = 32 << 20;
/// Most `recvmmsg` calls on one socket per sweep, so that every socket is
/// read in turn.
const TURN: usize = 8;
/// How long after a window's end its figures are taken: datagrams stamped
/// in the window but not read yet are read first.
const GRACE_NS: u64 = 300_000_000;
/// The pause between two sweeps of the sockets. The receiver does not
/// wait in `poll`: a sender that finds a reader waiting pays for waking it
/// (on loopback the sender's core runs the receive path), and a phone on
/// another machine costs sipark nothing of the kind. Reading a little
/// later changes no figure (the stamps are the kernel's); it makes the
/// batches larger.
const PAUSE: Duration = Duration::from_millis(2);

/// Nanoseconds of `CLOCK_REALTIME`, the clock of `SO_TIMESTAMPNS`.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

fn get_int(fd: libc::c_int, opt: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid and writable for the call; `len` is v's size.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, std::ptr::addr_of_mut!(v).cast(), &mut len) };
    (rc == 0).then_some(v)
}

/// The receiver's sockets, bound and not yet read.
pub struct Sockets {
    socks: Vec<UdpSocket>,
    /// Their addresses, for the SDP of the parked calls.
    pub addrs: Vec<SocketAddr>,
    /// The receive buffer the kernel gave the first socket, bytes (it
    /// doubles what is asked for, for its bookkeeping).
    pub rcvbuf: usize,
}

impl Sockets {
    /// Binds `count` sockets on `ip`, ephemeral ports.
    pub fn bind(ip: IpAddr, count: usize) -> io::Result<Sockets> {
        let mut socks = Vec::with_capacity(count);
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            s.set_nonblocking(true)?;
            let fd = s.as_raw_fd();
            if !set_int(fd, libc::SO_RCVBUFFORCE, RCVBUF) {
                set_int(fd, libc::SO_RCVBUF, RCVBUF);
            }
            if !set_int(fd, libc::SO_TIMESTAMPNS, 1) {
                return Err(io::Error::other("SO_TIMESTAMPNS refused: no kernel receive stamps"));
            }
            if !set_int(fd, libc::SO_RXQ_OVFL, 1) {
                return Err(io::Error::other("SO_RXQ_OVFL refused: the receiver's own drops could not be counted"));
            }
            addrs.push(s.local_addr()?);
            socks.push(s);
        }
        let rcvbuf = get_int(socks[0].as_raw_fd(), libc::SO_RCVBUF).unwrap_or(0).max(0) as usize;
        Ok(Sockets { socks, addrs, rcvbuf })
    }
}

/// A measured window, in `CLOCK_REALTIME` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Most streams tracked; datagrams of further ones are counted apart.
    pub max_streams: usize,
}

/// What the receiver is told.
#[derive(Debug)]
pub enum Command {
    /// Forget the streams and measure this window (the streams seen before
    /// it are tracked, so that its first gaps and sequence numbers count).
    Measure(Window),
    /// End the window being measured at this instant (`CLOCK_REALTIME`
    /// ns), if it ends later.
    Close(u64),
    /// Stop reading and end the thread.
    Stop,
}

/// What one window measured.
#[derive(Debug, Clone)]
pub struct RxReport {
    pub window_s: f64,
    /// Streams with a packet in the window.
    pub streams: u64,
    /// Streams seen before the window and not in it.
    pub streams_silent: u64,
    /// Datagrams of streams past [`Window::max_streams`].
    pub streams_untracked: u64,
    /// RTP packets stamped in the window.
    pub packets: u64,
    /// Packets missing from the streams' sequence numbers in the window.
    pub lost: u64,
    /// Packets that came after a later one of their stream, or twice.
    pub out_of_order: u64,
    /// Packet times the sender skipped: timestamps that moved by more
    /// than one packet between consecutive sequence numbers.
    pub skipped: u64,
    /// Consecutive packets whose timestamps moved by something else than a
    /// whole number of packets.
    pub ts_irregular: u64,
    /// Datagrams the receiver's sockets dropped in the window (their
    /// buffers were full): `SO_RXQ_OVFL`.
    pub socket_drops: u64,
    /// Datagrams in the window that were not RTP, or cut, or not 172 bytes.
    pub not_rtp: u64,
    pub truncated: u64,
    pub other_size: u64,
    /// |inter-arrival gap − packet time| between consecutive packets of a
    /// stream, nanoseconds.
    pub pacing: Histogram,
    /// How long packets waited in the receiver's sockets, µs.
    pub wait: Histogram,
    /// The receiver thread's CPU time in the window.
    pub cpu_s: f64,
}

/// Handles of a running receiver.
pub struct RxHandle {
    pub commands: Sender<Command>,
    pub reports: Receiver<RxReport>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the receiver thread on `socks`.
pub fn spawn(socks: Sockets) -> io::Result<RxHandle> {
    let (commands, cmd_rx) = std::sync::mpsc::channel();
    let (report_tx, reports) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("moh-rx".into())
        .spawn(move || Rx::new(socks.socks).run(&cmd_rx, &report_tx))?;
    Ok(RxHandle { commands, reports, thread })
}

/// One stream's sequence state.
#[derive(Debug, Clone, Copy)]
struct Track {
    /// Highest extended sequence number, that packet's stamp and timestamp.
    hi: u64,
    at: u64,
    ts: u32,
    /// Highest extended sequence number before the window, if any.
    before: Option<u64>,
    /// First and highest in the window, and the packets in it.
    first_in: Option<u64>,
    hi_in: u64,
    n_in: u64,
}

/// A hasher for the (socket, SSRC) keys: one multiply, no DoS concern here.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

type Index = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// The window being measured and its counts.
struct Measuring {
    w: Window,
    index: Index,
    tracks: Vec<Track>,
    r: RxReport,
    /// Per socket: its drop count before the window, and the latest in it.
    drops_before: Vec<u32>,
    drops_in: Vec<u32>,
    cpu_start: Option<std::time::Duration>,
    cpu_end: Option<std::time::Duration>,
}

struct Rx {
    socks: Vec<UdpSocket>,
    buf: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    ctrl: Box<[[u64; CTRL / 8]]>,
    iov: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    /// Per socket: the last drop count seen.
    drops: Vec<u32>,
    m: Option<Measuring>,
}

/// The stamp and drop count in one datagram's control messages.
fn control(msg: &libc::msghdr) -> (Option<u64>, Option<u32>) {
    let (mut stamp, mut drops) = (None, None);
    // SAFETY: `msg` describes the control bytes the kernel wrote for this
    // datagram (`msg_controllen` as returned, within its CTRL bytes);
    // CMSG_* walk only inside them, and each value is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET {
                if (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    stamp = Some((ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64));
                } else if (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (stamp, drops)
}

impl Rx {
    fn new(socks: Vec<UdpSocket>) -> Rx {
        let n = socks.len();
        Rx {
            socks,
            buf: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr values are
            // valid (zero lengths, null pointers).
            names: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            ctrl: vec![[0u64; CTRL / 8]; BATCH].into_boxed_slice(),
            // SAFETY: as above.
            iov: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            msgs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            drops: vec![0; n],
            m: None,
        }
    }

    fn run(mut self, commands: &Receiver<Command>, reports: &Sender<RxReport>) {
        loop {
            match commands.try_recv() {
                Ok(Command::Measure(w)) => self.begin(w),
                Ok(Command::Close(end)) => {
                    if let Some(m) = &mut self.m
                        && end < m.w.end_ns
                    {
                        m.w.end_ns = end.max(m.w.start_ns);
                        m.r.window_s = m.w.end_ns.saturating_sub(m.w.start_ns) as f64 / 1e9;
                    }
                }
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {}
            }
            // Sweep every socket; pause unless one had more than a sweep takes.
            let mut behind = false;
            for i in 0..self.socks.len() {
                let mut calls = 0;
                while self.recv(i) == BATCH {
                    calls += 1;
                    if calls == TURN {
                        behind = true;
                        break;
                    }
                }
            }
            if !behind {
                std::thread::sleep(PAUSE);
            }
            let now = realtime_ns();
            if let Some(m) = &mut self.m {
                if m.cpu_start.is_none() && now >= m.w.start_ns {
                    m.cpu_start = Some(SelfCpu::Thread.read());
                }
                if m.cpu_end.is_none() && now >= m.w.end_ns {
                    m.cpu_end = Some(SelfCpu::Thread.read());
                }
                if now >= m.w.end_ns.saturating_add(GRACE_NS)
                    && let Some(m) = self.m.take()
                    && reports.send(m.finish()).is_err()
                {
                    return;
                }
            }
        }
    }

    fn begin(&mut self, w: Window) {
        let cap = w.max_streams.min(1 << 22);
        let r = RxReport {
            window_s: w.end_ns.saturating_sub(w.start_ns) as f64 / 1e9,
            streams: 0,
            streams_silent: 0,
            streams_untracked: 0,
            packets: 0,
            lost: 0,
            out_of_order: 0,
            skipped: 0,
            ts_irregular: 0,
            socket_drops: 0,
            not_rtp: 0,
            truncated: 0,
            other_size: 0,
            pacing: Histogram::new(),
            wait: Histogram::new(),
            cpu_s: 0.0,
        };
        self.m = Some(Measuring {
            w,
            index: Index::with_capacity_and_hasher(cap, BuildHasherDefault::default()),
            tracks: Vec::with_capacity(cap),
            r,
            drops_before: self.drops.clone(),
            drops_in: self.drops.clone(),
            cpu_start: None,
            cpu_end: None,
        });
    }

    /// One `recvmmsg` on socket `i`; returns how many datagrams it read.
    fn recv(&mut self, i: usize) -> usize {
        for k in 0..BATCH {
            self.iov[k] = libc::iovec { iov_base: self.buf[k * SLOT..].as_mut_ptr().cast(), iov_len: SLOT };
            let h = &mut self.msgs[k].msg_hdr;
            h.msg_name = std::ptr::addr_of_mut!(self.names[k]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::addr_of_mut!(self.iov[k]);
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[k].as_mut_ptr().cast();
            h.msg_controllen = CTRL as _;
            h.msg_flags = 0;
            self.msgs[k].msg_len = 0;
        }
        let fd = self.socks[i].as_raw_fd();
        // SAFETY: every header points at its own name, iovec and control
        // bytes, and each iovec at its own SLOT bytes of `self.buf`; none
        // moves or is touched during the call. No timeout pointer.
        let r = unsafe {
            libc::recvmmsg(fd, self.msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if r <= 0 {
            return 0;
        }
        let n = r as usize;
        let read_at = realtime_ns();
        for k in 0..n {
            let (stamp, drops) = control(&self.msgs[k].msg_hdr);
            // No SO_RXQ_OVFL message: the socket has dropped nothing yet.
            let drops = drops.unwrap_or(self.drops[i]);
            self.drops[i] = drops;
            let Some(m) = &mut self.m else { continue };
            let len = self.msgs[k].msg_len as usize;
            let cut = self.msgs[k].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > SLOT;
            let data = &self.buf[k * SLOT..k * SLOT + len.min(SLOT)];
            m.on_packet(i, data, cut, stamp.unwrap_or(read_at), read_at, drops);
        }
        n
    }
}

impl Measuring {
    fn on_packet(&mut self, sock: usize, data: &[u8], cut: bool, stamp: u64, read_at: u64, drops: u32) {
        if stamp >= self.w.end_ns {
            return;
        }
        let in_win = stamp >= self.w.start_ns;
        if in_win {
            self.drops_in[sock] = drops;
        } else {
            self.drops_before[sock] = drops;
            self.drops_in[sock] = drops;
        }
        let r = &mut self.r;
        if cut {
            r.truncated += u64::from(in_win);
            return;
        }
        let Some(h) = Header::read(data) else {
            r.not_rtp += u64::from(in_win);
            return;
        };
        if in_win {
            r.packets += 1;
            r.other_size += u64::from(data.len() != PACKET);
            r.wait.record(read_at.saturating_sub(stamp) / 1000);
        }
        let key = ((sock as u64) << 32) | u64::from(h.ssrc);
        let Some(&idx) = self.index.get(&key) else {
            if self.tracks.len() >= self.w.max_streams {
                r.streams_untracked += 1;
                return;
            }
            // Offset by 2^16 so that a step back never goes below zero.
            let ext = (1 << 16) + u64::from(h.seq);
            let mut t = Track { hi: ext, at: stamp, ts: h.timestamp, before: None, first_in: None, hi_in: 0, n_in: 0 };
            if in_win {
                t.first_in = Some(ext);
                t.hi_in = ext;
                t.n_in = 1;
            } else {
                t.before = Some(ext);
            }
            self.index.insert(key, self.tracks.len() as u32);
            self.tracks.push(t);
            return;
        };
        let t = &mut self.tracks[idx as usize];
        let delta = h.seq.wrapping_sub(t.hi as u16) as i16;
        if delta <= 0 {
            // A late packet still arrived (a duplicate did not).
            if in_win {
                r.out_of_order += 1;
                t.n_in += u64::from(delta < 0);
            }
            return;
        }
        let ext = t.hi + delta as u64;
        if in_win {
            if delta == 1 {
                r.pacing.record(stamp.saturating_sub(t.at).abs_diff(PTIME_NS));
                let moved = h.timestamp.wrapping_sub(t.ts);
                if moved != SAMPLES {
                    if moved > SAMPLES && moved % SAMPLES == 0 {
                        r.skipped += u64::from(moved / SAMPLES - 1);
                    } else {
                        r.ts_irregular += 1;
                    }
                }
            }
            if t.first_in.is_none() {
                t.first_in = Some(ext);
            }
            t.hi_in = ext;
            t.n_in += 1;
        } else {
            t.before = Some(ext);
        }
        t.hi = ext;
        t.at = stamp;
        t.ts = h.timestamp;
    }

    fn finish(mut self) -> RxReport {
        let r = &mut self.r;
        for t in &self.tracks {
            let Some(first) = t.first_in else {
                r.streams_silent += u64::from(t.before.is_some());
                continue;
            };
            r.streams += 1;
            let base = t.before.unwrap_or(first - 1);
            r.lost += (t.hi_in - base).saturating_sub(t.n_in);
        }
        r.socket_drops = self.drops_in.iter().zip(&self.drops_before).map(|(a, b)| u64::from(a.wrapping_sub(*b))).sum();
        if let (Some(a), Some(b)) = (self.cpu_start, self.cpu_end) {
            r.cpu_s = b.saturating_sub(a).as_secs_f64();
        }
        self.r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = Vec::new();
        Header { marker: false, payload_type: 0, seq, timestamp: ts, ssrc }.write(&mut v);
        v.resize(PACKET, 0xff);
        v
    }

    fn window() -> Measuring {
        let w = Window { start_ns: 1_000_000_000, end_ns: 2_000_000_000, max_streams: 4 };
        let mut rx = Rx::new(Vec::new());
        rx.drops = vec![0, 0];
        rx.begin(w);
        rx.m.unwrap_or_else(|| panic!("measuring"))
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_losses_and_skips_are_counted_per_stream_in_the_window() {
        let mut m = window();
        // One stream on socket 0: a packet every 20 ms from 0.96 s, its sequence number wrapping
        // past 65535; seq 2 is lost, seq 4 comes 3 ms late, and one packet time of audio is
        // skipped between seq 5 and 6.
        let mut at = 960 * MS;
        let mut ts = 1000u32;
        for k in 0..10u16 {
            let seq = 65_533u16.wrapping_add(k);
            if k == 5 {
                at += 20 * MS;
                ts = ts.wrapping_add(SAMPLES);
                continue;
            }
            let jitter = if k == 7 { 3 * MS } else { 0 };
            m.on_packet(0, &packet(seq, ts, 7), false, at + jitter, at + jitter + 50_000, 0);
            at += 20 * MS;
            ts = ts.wrapping_add(if k == 8 { 2 * SAMPLES } else { SAMPLES });
        }
        // Stream B, same SSRC on socket 1: only after the window's end (not counted).
        m.on_packet(1, &packet(1, 0, 7), false, 2_100 * MS, 2_100 * MS, 0);
        // A socket-1 datagram in the window that is not RTP, and one that was cut.
        m.on_packet(1, b"hello", false, 1_500 * MS, 1_500 * MS, 2);
        m.on_packet(1, &packet(9, 0, 9), true, 1_500 * MS, 1_500 * MS, 3);
        let r = m.finish();
        assert_eq!(r.streams, 1, "{r:?}");
        assert_eq!(r.packets, 7, "the two before 1 s are not counted: {r:?}");
        assert_eq!(r.lost, 1, "{r:?}");
        assert_eq!(r.skipped, 1, "{r:?}");
        assert_eq!((r.not_rtp, r.truncated), (1, 1));
        assert_eq!(r.socket_drops, 3, "socket 1 dropped 3 in the window: {r:?}");
        // Consecutive pairs ending in the window: 65534-65535 (it crosses into the window),
        // 65535-0, 0-1, 3-4 (+3 ms), 4-5 (-3 ms), 5-6; not 1-3, across the lost one.
        assert_eq!(r.pacing.count(), 6, "{:?}", r.pacing);
        assert_eq!(r.pacing.max(), 3 * MS);
        assert_eq!(r.pacing.percentile(50.0), 0);
        assert_eq!(r.wait.max(), 50, "µs in the socket");
    }

    #[test]
    fn a_stream_silent_in_the_window_and_streams_past_the_cap_are_reported() {
        let mut m = window();
        m.on_packet(0, &packet(1, 0, 1), false, 900 * MS, 900 * MS, 0);
        for ssrc in 2..=6 {
            m.on_packet(0, &packet(1, 0, ssrc), false, 1_100 * MS, 1_100 * MS, 0);
        }
        m.on_packet(0, &packet(1, 0, 3), false, 1_100 * MS, 1_100 * MS, 0);
        let r = m.finish();
        assert_eq!((r.streams, r.streams_silent, r.streams_untracked), (3, 1, 2), "{r:?}");
        assert_eq!(r.out_of_order, 1, "a duplicate");
        assert_eq!(r.lost, 0);
    }

    #[test]
    fn packets_reach_the_thread_with_their_kernel_stamps() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let socks = Sockets::bind(ip, 2).unwrap_or_else(|e| panic!("bind: {e}"));
        let addrs = socks.addrs.clone();
        assert!(socks.rcvbuf >= 64 << 10, "receive buffer {}", socks.rcvbuf);
        let h = spawn(socks).unwrap_or_else(|e| panic!("spawn: {e}"));
        let now = realtime_ns();
        let w = Window { start_ns: now, end_ns: now + 2_000 * MS, max_streams: 16 };
        h.commands.send(Command::Measure(w)).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(20));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        for k in 0..10u16 {
            for (s, a) in addrs.iter().enumerate() {
                let _ = tx.send_to(&packet(k, u32::from(k) * SAMPLES, 100 + s as u32), a);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = h.reports.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|e| panic!("no report: {e}"));
        let _ = h.commands.send(Command::Stop);
        let _ = h.thread.join();
        assert_eq!((r.streams, r.packets, r.lost, r.socket_drops), (2, 20, 0, 0), "{r:?}");
        assert_eq!(r.pacing.count(), 18);
        // Sleeps of 20 ms give gaps of a little more; nothing near a whole packet time off.
        assert!(r.pacing.percentile(50.0) < 15 * MS, "{:?}", r.pacing);
    }
}
