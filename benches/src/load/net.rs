//! The generator's UDP sockets: non-blocking, read with `recvmmsg`, written
//! with `sendmmsg` from fixed per-socket batches, waited on with `ppoll`.
//! Nothing here allocates after [`Net::bind`] and [`Rx::new`].

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Datagrams per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 64;
/// Largest datagram received; longer ones are counted and dropped.
pub const RX_SIZE: usize = 8192;
/// Largest datagram sent.
pub const TX_SIZE: usize = 2048;
/// Socket buffer size asked for.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Counters of the socket layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams received (truncated ones included).
    pub received: u64,
    /// Datagrams not sent: the kernel refused them, or too long.
    pub send_dropped: u64,
    /// Datagrams received longer than [`RX_SIZE`].
    pub truncated: u64,
}

/// `SocketAddr` to a C socket address (the engine's conversion).
pub fn to_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = sipark::io::uring::write_sockaddr(addr, &mut ss);
    (ss, len)
}

/// A C socket address to `SocketAddr` (IPv4 and IPv6 only; the engine's
/// conversion, which shows a v4-mapped IPv6 peer as IPv4).
pub fn from_raw(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `ss` is a whole sockaddr_storage; its first `len` bytes are
    // readable as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(ss).cast::<u8>(), len) };
    sipark::io::uring::read_sockaddr(bytes)
}

/// An all-zero `msghdr` (null pointers, zero lengths: valid).
fn unsafe_zeroed_msghdr() -> libc::msghdr {
    // SAFETY: every field of msghdr is an integer or a raw pointer, for
    // which all-zero is valid.
    unsafe { zeroed() }
}

/// Nanoseconds of `CLOCK_REALTIME`, the clock of `SO_TIMESTAMPNS`.
fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Control bytes per received datagram: room for one `SCM_TIMESTAMPNS`.
const CTRL: usize = 64;

/// Sets an integer `SOL_SOCKET` option; whether the kernel took it. A
/// failure leaves the default (the default buffer size; for
/// `SO_TIMESTAMPNS`, no receive stamps, and a datagram counts as arrived
/// when it is read).
pub(crate) fn set_int(fd: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: `v` is a valid c_int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            std::ptr::addr_of!(v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

struct TxQueue {
    buf: Box<[u8]>,
    lens: [usize; BATCH],
    dst: Box<[libc::sockaddr_storage; BATCH]>,
    dst_len: [libc::socklen_t; BATCH],
    n: usize,
}

/// The sockets and their send batches.
pub struct Net {
    socks: Vec<UdpSocket>,
    local: Vec<SocketAddr>,
    fds: Vec<libc::pollfd>,
    tx: Vec<TxQueue>,
    /// Counters.
    pub stats: NetStats,
}

impl Net {
    /// Binds `count` sockets on `ip`, ephemeral ports.
    pub fn bind(ip: IpAddr, count: usize) -> io::Result<Net> {
        let mut socks = Vec::with_capacity(count);
        let mut local = Vec::with_capacity(count);
        let mut fds = Vec::with_capacity(count);
        let mut tx = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            s.set_nonblocking(true)?;
            set_int(s.as_raw_fd(), libc::SO_RCVBUF, SOCKET_BUFFER);
            set_int(s.as_raw_fd(), libc::SO_SNDBUF, SOCKET_BUFFER);
            set_int(s.as_raw_fd(), libc::SO_TIMESTAMPNS, 1);
            local.push(s.local_addr()?);
            fds.push(libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            socks.push(s);
            tx.push(TxQueue {
                buf: vec![0u8; BATCH * TX_SIZE].into_boxed_slice(),
                lens: [0; BATCH],
                // SAFETY: all-zero sockaddr_storage values are valid.
                dst: Box::new(unsafe { zeroed() }),
                dst_len: [0; BATCH],
                n: 0,
            });
        }
        Ok(Net { socks, local, fds, tx, stats: NetStats::default() })
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether there are no sockets (never, after `bind`).
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The local address of socket `i`.
    pub fn local(&self, i: usize) -> SocketAddr {
        self.local[i]
    }

    /// Queues `data` for `dst` on socket `i`; sends the batch when full.
    pub fn send(&mut self, i: usize, dst: SocketAddr, data: &[u8]) {
        if data.len() > TX_SIZE || i >= self.tx.len() {
            self.stats.send_dropped += 1;
            return;
        }
        if self.tx[i].n == BATCH {
            self.flush(i);
        }
        let q = &mut self.tx[i];
        let k = q.n;
        q.buf[k * TX_SIZE..k * TX_SIZE + data.len()].copy_from_slice(data);
        q.lens[k] = data.len();
        let (ss, len) = to_raw(dst);
        q.dst[k] = ss;
        q.dst_len[k] = len;
        q.n += 1;
    }

    /// Sends every queued datagram.
    pub fn flush_all(&mut self) {
        for i in 0..self.tx.len() {
            if self.tx[i].n > 0 {
                self.flush(i);
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let fd = self.socks[i].as_raw_fd();
        let q = &mut self.tx[i];
        let n = q.n;
        // SAFETY: all-zero iovec and mmsghdr values are valid (null pointers, zero lengths).
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for k in 0..n {
            iov[k].iov_base = q.buf[k * TX_SIZE..].as_mut_ptr().cast();
            iov[k].iov_len = q.lens[k];
            msgs[k].msg_hdr.msg_name = std::ptr::addr_of_mut!(q.dst[k]).cast();
            msgs[k].msg_hdr.msg_namelen = q.dst_len[k];
            msgs[k].msg_hdr.msg_iov = std::ptr::addr_of_mut!(iov[k]);
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        let mut done = 0;
        let mut waits = 0;
        while done < n {
            // SAFETY: `msgs[done..n]` point into `iov`, `q.buf` and `q.dst`,
            // which live and stay unmoved until the call returns.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr().add(done), (n - done) as libc::c_uint, 0) };
            if r > 0 {
                done += r as usize;
                self.stats.sent += r as u64;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN | libc::ENOBUFS) if waits < 20 => {
                    waits += 1;
                    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 5) };
                }
                _ => {
                    // E.g. ECONNREFUSED from an earlier ICMP error: skip one.
                    done += 1;
                    self.stats.send_dropped += 1;
                }
            }
        }
        q.n = 0;
    }

    /// Waits until a socket is readable or `timeout` passes. Afterwards
    /// [`Net::readable`] tells which.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(60) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        for f in &mut self.fds {
            f.revents = 0;
        }
        // SAFETY: `fds` is a valid array of `len` pollfds; no signal mask.
        let r = unsafe { libc::ppoll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether socket `i` had something to read at the last poll.
    pub fn readable(&self, i: usize) -> bool {
        self.fds[i].revents & (libc::POLLIN | libc::POLLERR) != 0
    }

    fn fd(&self, i: usize) -> libc::c_int {
        self.socks[i].as_raw_fd()
    }
}

/// The receive arena: one batch of datagrams at a time.
pub struct Rx {
    buf: Box<[u8]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    name_lens: [libc::socklen_t; BATCH],
    lens: [usize; BATCH],
    flags: [libc::c_int; BATCH],
    /// Each datagram's control messages (its kernel receive stamp).
    ctrl: Box<[[u64; CTRL / 8]; BATCH]>,
    ctrl_lens: [usize; BATCH],
    /// `CLOCK_REALTIME` when the batch was read.
    read_at: u64,
    n: usize,
}

impl Default for Rx {
    fn default() -> Self {
        Rx::new()
    }
}

impl Rx {
    /// Allocates the arena.
    pub fn new() -> Rx {
        Rx {
            buf: vec![0u8; BATCH * RX_SIZE].into_boxed_slice(),
            // SAFETY: all-zero sockaddr_storage values are valid.
            names: Box::new(unsafe { zeroed() }),
            name_lens: [0; BATCH],
            lens: [0; BATCH],
            flags: [0; BATCH],
            ctrl: Box::new([[0; CTRL / 8]; BATCH]),
            ctrl_lens: [0; BATCH],
            read_at: 0,
            n: 0,
        }
    }

    /// Reads up to [`BATCH`] datagrams from socket `i` of `net` without
    /// waiting; returns how many (0 when none is waiting or on error).
    pub fn recv(&mut self, net: &mut Net, i: usize) -> usize {
        let fd = net.fd(i);
        // SAFETY: all-zero iovec and mmsghdr values are valid.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for k in 0..BATCH {
            iov[k].iov_base = self.buf[k * RX_SIZE..].as_mut_ptr().cast();
            iov[k].iov_len = RX_SIZE;
            msgs[k].msg_hdr.msg_name = std::ptr::addr_of_mut!(self.names[k]).cast();
            msgs[k].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[k].msg_hdr.msg_iov = std::ptr::addr_of_mut!(iov[k]);
            msgs[k].msg_hdr.msg_iovlen = 1;
            msgs[k].msg_hdr.msg_control = self.ctrl[k].as_mut_ptr().cast();
            msgs[k].msg_hdr.msg_controllen = CTRL as _;
        }
        let r = loop {
            // SAFETY: every header points into `iov`, `self.buf` and
            // `self.names`, which outlive the call; no timeout pointer.
            let r = unsafe {
                libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break r;
        };
        if r <= 0 {
            // EAGAIN, or an ICMP error reported on the socket: nothing read.
            self.n = 0;
            return 0;
        }
        let n = r as usize;
        self.read_at = realtime_ns();
        for (k, m) in msgs.iter().enumerate().take(n) {
            self.lens[k] = m.msg_len as usize;
            self.name_lens[k] = m.msg_hdr.msg_namelen;
            self.flags[k] = m.msg_hdr.msg_flags;
            self.ctrl_lens[k] = m.msg_hdr.msg_controllen;
        }
        self.n = n;
        net.stats.received += n as u64;
        n
    }

    /// How long datagram `k` of the last batch had waited in its socket when
    /// the batch was read (nanoseconds; 0 without a kernel stamp).
    pub fn waited(&self, k: usize) -> u64 {
        if k >= self.n {
            return 0;
        }
        let mut hdr: libc::msghdr = unsafe_zeroed_msghdr();
        hdr.msg_control = self.ctrl[k].as_ptr().cast_mut().cast();
        hdr.msg_controllen = self.ctrl_lens[k].min(CTRL) as _;
        // SAFETY: `hdr` describes the control bytes the kernel wrote for
        // datagram k (its length as returned); CMSG_* walk only inside them.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    let at = (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64);
                    return self.read_at.saturating_sub(at);
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        0
    }

    /// Datagram `k` of the last batch: its source and bytes, or `None` if
    /// it was truncated or its source is unreadable.
    pub fn get(&self, k: usize) -> Option<(SocketAddr, &[u8])> {
        if k >= self.n || self.flags[k] & libc::MSG_TRUNC != 0 || self.lens[k] > RX_SIZE {
            return None;
        }
        let src = from_raw(&self.names[k], self.name_lens[k])?;
        Some((src, &self.buf[k * RX_SIZE..k * RX_SIZE + self.lens[k]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addresses_round_trip() {
        for a in ["127.0.0.1:5060", "10.1.2.3:1", "[::1]:5080"] {
            let addr: SocketAddr = a.parse().unwrap_or_else(|e| panic!("{a}: {e}"));
            let (ss, len) = to_raw(addr);
            assert_eq!(from_raw(&ss, len), Some(addr), "{a}");
        }
    }

    #[test]
    fn batches_go_through_loopback() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut net = Net::bind(ip, 2).unwrap_or_else(|e| panic!("bind: {e}"));
        let dst = net.local(1);
        for k in 0..150u32 {
            net.send(0, dst, format!("msg {k}").as_bytes());
        }
        net.flush_all();
        assert_eq!(net.stats.sent, 150, "{:?}", net.stats);
        let mut rx = Rx::new();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < 150 && std::time::Instant::now() < deadline {
            net.poll(Duration::from_millis(50)).unwrap_or_else(|e| panic!("poll: {e}"));
            if !net.readable(1) {
                continue;
            }
            let n = rx.recv(&mut net, 1);
            for k in 0..n {
                let (src, data) = rx.get(k).unwrap_or_else(|| panic!("datagram {k} unreadable"));
                assert_eq!(src, net.local(0));
                got.push(String::from_utf8_lossy(data).into_owned());
            }
        }
        assert_eq!(got.len(), 150, "received {got:?}");
        assert_eq!(got[0], "msg 0");
        assert_eq!(got[149], "msg 149");
        assert_eq!(net.stats.received, 150);
    }

    #[test]
    fn the_wait_in_the_socket_is_read_from_the_kernel_stamp() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut net = Net::bind(ip, 2).unwrap_or_else(|e| panic!("bind: {e}"));
        let dst = net.local(1);
        net.send(0, dst, b"late");
        net.flush_all();
        std::thread::sleep(Duration::from_millis(30));
        let mut rx = Rx::new();
        assert_eq!(rx.recv(&mut net, 1), 1);
        let waited = rx.waited(0);
        assert!(
            (25_000_000..5_000_000_000).contains(&waited),
            "the datagram waited {waited} ns in the socket, about 30 ms"
        );
        assert_eq!(rx.waited(1), 0, "no such datagram");
    }
}
