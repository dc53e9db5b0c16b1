//! A capture of the UDP datagrams of one test's loopback network, as root: an `AF_PACKET` socket
//! bound to `lo` with a classic BPF filter keeping UDP whose source or destination is in the
//! test's 127.0.NET.0/24, each datagram stamped by the kernel (`SO_TIMESTAMPNS`) when it was
//! received. It sees what the processes under test put on the wire (SIP and RTP alike) without
//! taking part, so a test can hold a real phone's media to account byte by byte.
//!
//! Loopback shows every packet twice to a packet socket: once going out (`PACKET_OUTGOING`)
//! and once coming in; only the second is kept.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::Ctx;
use crate::sip::Msg;

/// Kernel receive buffer of the capture: a few seconds of every stream of a test, with room.
const RCVBUF: libc::c_int = 8 << 20;
/// How often the capture thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// `PACKET_OUTGOING` (linux/if_packet.h): a packet this host sends, as seen on the way out.
const PACKET_OUTGOING: u8 = 4;

/// One UDP datagram seen on `lo`.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the kernel received it (CLOCK_REALTIME, since the Unix epoch).
    pub at: Duration,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

impl Seen {
    /// The payload as a SIP message (lossy UTF-8).
    pub fn sip(&self) -> Msg {
        Msg::new(String::from_utf8_lossy(&self.payload).into_owned())
    }

    pub fn from(&self, a: SocketAddr) -> bool {
        SocketAddr::V4(self.src) == a
    }

    pub fn to(&self, a: SocketAddr) -> bool {
        SocketAddr::V4(self.dst) == a
    }
}

/// The capture of a test's network; the thread stops on drop.
pub struct Sniffer {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// A classic BPF program over the IPv4 header (a `SOCK_DGRAM` packet socket hands it the
/// network header first): accept UDP whose source or destination is in `net`/24.
fn filter(net: Ipv4Addr) -> [libc::sock_filter; 10] {
    // linux/filter.h opcodes.
    const LD_B_ABS: u16 = 0x30;
    const LD_W_ABS: u16 = 0x20;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let net = u32::from(net) & 0xffff_ff00;
    [
        op(LD_B_ABS, 0, 0, 9),                     // 0: protocol
        op(JEQ_K, 0, 7, libc::IPPROTO_UDP as u32), // 1: UDP, else 9
        op(LD_W_ABS, 0, 0, 12),                    // 2: source address
        op(AND_K, 0, 0, 0xffff_ff00),              // 3
        op(JEQ_K, 3, 0, net),                      // 4: in net: 8
        op(LD_W_ABS, 0, 0, 16),                    // 5: destination address
        op(AND_K, 0, 0, 0xffff_ff00),              // 6
        op(JEQ_K, 0, 1, net),                      // 7: in net: 8, else 9
        op(RET_K, 0, 0, 0xffff),                   // 8: keep (64 KiB)
        op(RET_K, 0, 0, 0),                        // 9: drop
    ]
}

fn check(what: &str, rc: libc::c_int) {
    if rc < 0 {
        panic!(
            "packet capture: {what} failed: {} (the music-on-hold end-to-end test sniffs `lo` and \
             must run as root, or with CAP_NET_RAW)",
            io::Error::last_os_error()
        );
    }
}

/// Sets an int socket option, panicking with `what` on error.
fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int, what: &str) {
    // SAFETY: `fd` is an open socket we own; the option value is a live c_int and its exact
    // size is passed, so the kernel reads only that int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(what, rc);
}

/// Opens the capture socket: created with protocol 0 (it receives nothing yet), then the filter,
/// then bound to `lo` for IPv4, so that no packet of another network is ever queued.
fn open(net: Ipv4Addr) -> OwnedFd {
    // SAFETY: socket(2) has no memory-safety preconditions.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check("socket(AF_PACKET, SOCK_DGRAM)", raw);
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let prog = filter(net);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    check("SO_ATTACH_FILTER", rc);
    set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF, "SO_RCVBUFFORCE");
    set_int(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS");
    let timeout = libc::timeval { tv_sec: 0, tv_usec: POLL.as_micros() as libc::suseconds_t };
    // SAFETY: as in `set_int`, with a live timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check("SO_RCVTIMEO", rc);
    // SAFETY: the argument is a NUL-terminated string literal.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert!(lo != 0, "packet capture: no `lo` interface: {}", io::Error::last_os_error());
    // SAFETY: sockaddr_ll is plain old data, for which all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = lo as libc::c_int;
    // SAFETY: `sll` is a live sockaddr_ll and its exact size is passed.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    check("bind(lo, ETH_P_IP)", rc);
    fd
}

/// A datagram and what the kernel said of it.
struct Received {
    len: usize,
    outgoing: bool,
    at: Option<Duration>,
}

/// One recvmsg(2) into `buf`: `None` on timeout (or any error, retried by the caller).
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> Option<Received> {
    // Room for a timespec control message, 8-byte aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: sockaddr_ll is plain old data, for which all zeroes is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data, for which all zeroes is a valid value.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_name = (&raw mut from).cast();
    hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = mem::size_of_val(&control);
    // SAFETY: every pointer in `hdr` (address, one iovec over `buf`, control buffer) points at
    // memory that lives across the call, with its true length; the kernel writes within them.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut hdr, 0) };
    if n < 0 {
        return None;
    }
    let mut at = None;
    // SAFETY: `hdr` was filled by a successful recvmsg, so its control fields describe the
    // control messages written into `control`; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const hdr) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a complete cmsghdr inside `control`.
        let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries one timespec as its data; the data may
            // be unaligned for timespec, hence read_unaligned.
            let ts = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>()) };
            at = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
        }
        // SAFETY: as for CMSG_FIRSTHDR; `cmsg` is one of `hdr`'s control messages.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const hdr, cmsg) };
    }
    Some(Received { len: n as usize, outgoing: from.sll_pkttype == PACKET_OUTGOING, at })
}

/// The UDP datagram in an IPv4 packet (`None` for anything else, and for fragments).
fn udp_of(p: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if frag & 0x3fff != 0 || total < ihl + 8 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    let u = &p[ihl..total];
    let port = |at: usize| u16::from_be_bytes([u[at], u[at + 1]]);
    let len = usize::from(port(4)).clamp(8, u.len());
    Some((SocketAddrV4::new(ip(12), port(0)), SocketAddrV4::new(ip(16), port(2)), &u[8..len]))
}

impl Sniffer {
    /// Starts capturing the UDP traffic of `ctx`'s network (127.0.NET.0/24 as source or
    /// destination). Panics when the packet socket cannot be opened (not root).
    pub fn start(ctx: &Ctx) -> Sniffer {
        let fd = open(ctx.ip(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                let Some(r) = receive(&fd, &mut buf) else { continue };
                if r.outgoing {
                    continue;
                }
                let Some((src, dst, payload)) = udp_of(&buf[..r.len]) else { continue };
                let at = r.at.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
                let s = Seen { at, src, dst, payload: payload.to_vec() };
                seen2.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        });
        Sniffer { seen, stop, handle: Some(handle) }
    }

    /// Everything captured so far, in the order received.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first datagram satisfying `pred`, waiting at most `limit` for it.
    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|s| pred(s)) {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "packet capture: no {what} within {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sleeps until the clock of the kernel's stamps (CLOCK_REALTIME) passes `at`, then a
    /// little longer, so that what the kernel received before `at` has been taken in.
    pub fn settle_past(&self, at: Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        thread::sleep(at.saturating_sub(now) + 3 * POLL);
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
