//! The media sockets of music on hold (docs/decisions/0023-music-on-hold.md):
//! one UDP socket per worker, bound at start-up, from which the worker
//! sends its shard's RTP streams and on which it reads what the parked
//! phones send (to latch each stream to where its phone really is).
//!
//! Both I/O backends drive it the same way, once per turn
//! ([`super::worker::Core::run_media`]): a non-blocking `recvmmsg` drains
//! what arrived, then the packets due are taken from the shard
//! ([`Shard::poll_media`]) and sent with `sendmmsg`, [`BATCH`] at a time.
//! Nothing is allocated per packet or per call.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::Instant;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, info, warn};

use super::batch::Batch;
use crate::proto::shard::{Packets, Shard};
use crate::proto::stats::ShardStats;

/// Datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: usize = super::batch::BATCH;
/// Receive calls per turn: media from phones is rarely more than RTCP,
/// and never takes the turn from signalling.
const RECV_ROUNDS: usize = 4;
/// Receive buffer per datagram: RTP of up to 60 ms of G.711 fits, larger
/// datagrams are cut and dropped.
const RECV_BUF_SIZE: usize = 1536;
/// Packets taken from the shard per send round.
const SEND_ROUND: usize = 4 * BATCH;
/// Socket buffers of a media socket: a tick of 10,000 streams at 20 ms
/// is 500 packets of 172 bytes.
const MEDIA_BUFFER: usize = 1 << 20;

/// How the media sockets are bound and advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaOptions {
    /// The address to bind (`None`: the SIP listen address's).
    pub listen: Option<IpAddr>,
    /// Worker `i` binds `port + 2·i` (RTP's even ports); 0: each picks one.
    pub port: u16,
    /// The address written into SDP (`None`: the bound one, else the SIP
    /// advertised host when it is an address).
    pub advertise: Option<IpAddr>,
}

/// The address to write into SDP for a socket bound at `bound`: the
/// configured one, else the bound address unless it is unspecified, else
/// the SIP advertised host if it is an address. `None`: nothing a phone
/// could reach.
pub fn media_advertise(opts: &MediaOptions, bound: SocketAddr, sip_host: &str) -> Option<SocketAddr> {
    let sip: Option<IpAddr> = sip_host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    let ip = opts.advertise.or((!bound.ip().is_unspecified()).then_some(bound.ip())).or(sip)?;
    (!ip.is_unspecified()).then_some(SocketAddr::new(ip, bound.port()))
}

/// Binds worker `worker`'s media socket (non-blocking).
pub fn bind_media(opts: &MediaOptions, sip_listen: SocketAddr, worker: u16) -> io::Result<UdpSocket> {
    let ip = opts.listen.unwrap_or(sip_listen.ip());
    let port = match opts.port {
        0 => 0,
        base => base.checked_add(2 * worker).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--media-port {base} leaves no port for worker {worker}"),
            )
        })?,
    };
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_cloexec(true)?;
    s.set_nonblocking(true)?;
    // Best effort: the kernel's limits may be lower.
    let _ = s.set_send_buffer_size(MEDIA_BUFFER);
    let _ = s.set_recv_buffer_size(MEDIA_BUFFER);
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

/// A worker's media socket, and the address SDP names for it.
#[derive(Debug)]
pub struct MediaSocket {
    pub socket: UdpSocket,
    pub advertised: SocketAddr,
}

/// Binds the media socket of each of `n` workers with the address SDP
/// will name for it (`sip_host`: the SIP advertised host, the fallback).
/// `None` in `opts` binds nothing; with no address a phone could reach,
/// music is off (one warning) and nothing is bound. An error names the
/// address that could not be bound.
pub fn bind_all(
    opts: Option<&MediaOptions>,
    n: u16,
    sip_listen: SocketAddr,
    sip_host: &str,
) -> Result<Vec<Option<MediaSocket>>, (SocketAddr, io::Error)> {
    let none = || (0..n).map(|_| None).collect();
    let Some(opts) = opts else { return Ok(none()) };
    let mut out = Vec::with_capacity(usize::from(n));
    for w in 0..n {
        let want = SocketAddr::new(opts.listen.unwrap_or(sip_listen.ip()), opts.port.saturating_add(2 * w));
        let socket = bind_media(opts, sip_listen, w).map_err(|e| (want, e))?;
        let bound = socket.local_addr().map_err(|e| (want, e))?;
        let Some(adv) = media_advertise(opts, bound, sip_host) else {
            warn!(
                bound = %bound,
                "music on hold is off: no address to advertise for the media sockets (set --media-advertise)"
            );
            return Ok(none());
        };
        out.push(Some(MediaSocket { socket, advertised: adv }));
    }
    let addrs: Vec<String> = out.iter().flatten().map(|m| m.advertised.to_string()).collect();
    info!(media = %addrs.join(" "), "music on hold: one media socket per worker");
    Ok(out)
}

/// One worker's media socket and its batches.
pub struct Media {
    socket: UdpSocket,
    rx: Batch,
    rx_bufs: Box<[u8]>,
    tx: Batch,
    packets: Packets,
}

impl Media {
    pub fn new(socket: UdpSocket) -> Media {
        let mut rx = Batch::new();
        let mut rx_bufs = vec![0u8; BATCH * RECV_BUF_SIZE].into_boxed_slice();
        for i in 0..BATCH {
            rx.iovs[i] =
                libc::iovec { iov_base: rx_bufs[i * RECV_BUF_SIZE..].as_mut_ptr().cast(), iov_len: RECV_BUF_SIZE };
        }
        Media { socket, rx, rx_bufs, tx: Batch::new(), packets: Packets::with_limit(SEND_ROUND) }
    }

    /// Hands what the phones sent to the shard, up to [`RECV_ROUNDS`]
    /// batches.
    pub fn receive(&mut self, shard: &mut Shard) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..RECV_ROUNDS {
            self.rx.rearm(0);
            // SAFETY: every header points at its own name and iovec in
            // `self.rx`, and each iovec at its own `RECV_BUF_SIZE` bytes of
            // `self.rx_bufs`, none of which moves or is touched during the
            // call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if n <= 0 {
                return;
            }
            let n = n as usize;
            for i in 0..n {
                match self.rx.received(i, RECV_BUF_SIZE) {
                    (Some(src), Some(len)) => shard.handle_media(src, &self.rx_bufs[i * RECV_BUF_SIZE..][..len]),
                    _ => shard.stats().media_dropped.inc(),
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Sends every packet due by `now`. A packet the kernel refuses (its
    /// buffer full, an unreachable destination) is counted and dropped:
    /// music is not worth sending late.
    pub fn send(&mut self, now: Instant, shard: &mut Shard, stats: &ShardStats) {
        loop {
            self.packets.clear();
            shard.poll_media(now, &mut self.packets);
            let total = self.packets.len();
            let mut done = 0;
            while done < total {
                done += self.send_from(done, stats);
            }
            if total < SEND_ROUND {
                return;
            }
        }
    }

    /// One `sendmmsg` of the packets from `first`; returns how many were
    /// dealt with (sent, or refused and dropped): at least one, but for an
    /// interrupted call.
    fn send_from(&mut self, first: usize, stats: &ShardStats) -> usize {
        let k = (self.packets.len() - first).min(BATCH);
        for i in 0..k {
            let Some((dst, bytes)) = self.packets.get(first + i) else { return k };
            self.tx.point(i, dst, bytes);
        }
        // SAFETY: headers 0..k point at their own names and iovecs in
        // `self.tx`, the iovecs at bytes of `self.packets`, which is not
        // touched during the call; the kernel only reads them.
        let sent = unsafe {
            libc::sendmmsg(self.socket.as_raw_fd(), self.tx.hdrs.as_mut_ptr(), k as libc::c_uint, libc::MSG_DONTWAIT)
        };
        if sent <= 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => 0,
                // The socket's buffer is full: the rest of this batch would
                // fail alike, one system call each. Dropped, all counted.
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    stats.moh_send_errors.add(k as u64);
                    debug!(error = %e, packets = k, "music-on-hold packets not sent");
                    k
                }
                // The first packet's destination is refused: skip it.
                _ => {
                    stats.moh_send_errors.inc();
                    debug!(error = %e, "music-on-hold packet not sent");
                    1
                }
            };
        }
        sent as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_media_address_is_one_a_phone_can_reach() {
        let opts = MediaOptions { listen: None, port: 0, advertise: None };
        let bound: SocketAddr = "0.0.0.0:40000".parse().expect("addr");
        assert_eq!(media_advertise(&opts, bound, "192.0.2.7"), Some("192.0.2.7:40000".parse().expect("addr")));
        assert_eq!(media_advertise(&opts, bound, "[2001:db8::7]"), Some("[2001:db8::7]:40000".parse().expect("addr")));
        assert_eq!(media_advertise(&opts, bound, "sip.example.com"), None, "a name is not an address");
        assert_eq!(media_advertise(&opts, bound, "0.0.0.0"), None);
        let at: SocketAddr = "10.1.1.1:40002".parse().expect("addr");
        assert_eq!(media_advertise(&opts, at, "sip.example.com"), Some(at), "the bound address first");
        let told = MediaOptions { advertise: Some("203.0.113.9".parse().expect("ip")), ..opts };
        assert_eq!(media_advertise(&told, at, "x"), Some("203.0.113.9:40002".parse().expect("addr")));
    }

    #[test]
    fn workers_take_even_ports_from_the_base() {
        let sip: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        // A base whose two ports are free: found by trying, as other tests
        // bind ports meanwhile.
        let bound = (0..50).find_map(|_| {
            let probe = UdpSocket::bind("127.0.0.1:0").ok()?;
            let base = probe.local_addr().ok()?.port() & !1;
            drop(probe);
            let opts = MediaOptions { listen: None, port: base, advertise: None };
            let a = bind_media(&opts, sip, 0).ok()?;
            let b = bind_media(&opts, sip, 1).ok()?;
            Some((base, a, b))
        });
        let (base, a, b) = bound.expect("no base port with two free ports in 50 tries");
        assert_eq!(a.local_addr().expect("addr").port(), base);
        assert_eq!(b.local_addr().expect("addr").port(), base + 2);
        let opts = MediaOptions { listen: None, port: u16::MAX - 1, advertise: None };
        let err = bind_media(&opts, sip, 1).expect_err("no room");
        assert!(err.to_string().contains("leaves no port for worker 1"), "{err}");
        let any = bind_media(&MediaOptions { port: 0, ..opts }, sip, 3).expect("ephemeral");
        assert_ne!(any.local_addr().expect("addr").port(), 0);
    }
}
