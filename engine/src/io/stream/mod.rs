//! The stream front: one thread that owns every TCP and TLS connection
//! (RFC 3261 §18), in an `epoll` loop (level-triggered, through libc).
//!
//! * Listeners: TCP on the UDP listen address (same port), TLS on its own
//!   address; both non-blocking. Past `max_connections` an accepted socket
//!   is closed at once and counted.
//! * Each connection ([`conn`]) has a [`Framer`](crate::proto::sip::stream::Framer); every framed
//!   message is parsed once to find its owner ([`route::owner`](crate::proto::route::owner)) and copied
//!   into that worker's inbox as a [`Handoff`](super::shared::Handoff) with its transport, the way
//!   workers hand datagrams to each other; the owner is woken with an
//!   eventfd write (mmsg workers) or a `MsgRingData` from this thread's
//!   small ring (io_uring workers). CRLFCRLF keep-alives get a CRLF back.
//! * Workers put every [`Transmit`] whose transport is not UDP on
//!   [`StreamQueue`] (lock-free, bounded) and wake this thread's eventfd.
//!   The connection to `(dst, transport)` is reused when there is one (it
//!   is keyed by the peer's address, so responses and in-dialog requests go
//!   back on the connection the peer opened); otherwise a TCP connection is
//!   opened (non-blocking connect, messages queued until it completes), and
//!   a TLS one only when a CA file was given (`--tls-ca`; the server name
//!   is the IP address); without it the message is dropped and counted.
//! * Limits: per-connection write backlog (past it the connection is
//!   closed), idle timeout (no bytes either way), TLS handshake and TCP
//!   connect timeout, message size (in the framer).
//! * TLS certificates are chosen by SNI ([`SniResolver`]). A reload
//!   (SIGHUP) hands this thread a new resolver through
//!   [`StreamQueue::set_certs`]; new handshakes use it, open connections
//!   keep theirs.
//!
//! See docs/decisions/0014-stream-transports.md for why this is one thread.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use io_uring::{IoUring, opcode, types};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};
use tracing::{debug, info, warn};

use super::shared::{CloseReason, DropReason, Peers, StreamQueue, StreamStats, Waker, dec, inc};
use super::signal::block_shutdown_signals;
use super::sys::eventfd_clear;
use super::tls::{SniResolver, TlsCert, client_config, server_config};
use super::uring::UD_WAKE;
use crate::proto::shard::Transmit;
use crate::proto::sip::Transport;
use crate::proto::sip::stream::PONG;

mod conn;
use conn::{Closing, Conn, Deliver, Throttle};

/// Transmits taken from the queue per loop turn.
const QUEUE_BATCH: usize = 4096;
/// Bytes asked of each read.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per readiness event before other connections get their turn.
const READS_PER_EVENT: usize = 8;
/// Accepts per readiness event.
const ACCEPTS_PER_EVENT: usize = 64;
/// epoll events taken per wait.
const EVENTS: usize = 256;
/// Longest wait, so that a lost wake-up costs at most this.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// How long the listeners rest after the process ran out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning of each kind per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Buffers handed to `writev` at once.
const WRITEV_MAX: usize = 16;
/// How long a connection whose framing is lost waits for the 400 its shard
/// builds from the unframeable message's header section, before closing.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

const TOKEN_WAKE: u64 = 0;
const TOKEN_TCP: u64 = 1;
const TOKEN_TLS: u64 = 2;
const TOKEN_CONN_BASE: u64 = 16;

/// Limits on stream connections.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Open connections (inbound and outbound together).
    pub max_connections: usize,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Largest message, header section and body together.
    pub max_message: usize,
    /// Bytes queued for one connection and not yet written; past it the
    /// connection is closed.
    pub max_backlog: usize,
    /// Longest TLS handshake, and longest outbound TCP connect.
    pub handshake_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(1800),
            max_message: crate::proto::sip::stream::DEFAULT_MAX_MESSAGE,
            max_backlog: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The TLS listener.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: SocketAddr,
    /// `host[:port]` for Via/Contact (`Config.advertise_tls`); default: the
    /// bound TLS address, or the UDP advertise host with the TLS port when
    /// listening on an unspecified address.
    pub advertise: Option<String>,
    /// Certificates by SNI name: `--tls-cert` (`domain: None`, the
    /// default) and the tenants' own (`tls_cert` in the tenants file). A
    /// handshake without SNI, or with a name no entry has, gets the default;
    /// without a default it fails. At least one entry.
    pub certs: Vec<TlsCert>,
}

/// How to run the stream transports.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Listen for TCP on the UDP listen address.
    pub tcp: bool,
    pub tls: Option<TlsListen>,
    /// Trust anchors for outbound TLS connections; without them sipark
    /// opens none (a TLS message to a peer with no connection is dropped).
    pub tls_client_roots: Option<Arc<RootCertStore>>,
    pub limits: StreamLimits,
}

impl Default for StreamOptions {
    /// TCP on, TLS off, default limits.
    fn default() -> StreamOptions {
        StreamOptions { tcp: true, tls: None, tls_client_roots: None, limits: StreamLimits::default() }
    }
}

impl StreamOptions {
    /// Whether any stream listener (or outbound TLS) is configured.
    pub fn enabled(&self) -> bool {
        self.tcp || self.tls.is_some() || self.tls_client_roots.is_some()
    }
}

/// `[tcp, tls]` index of a stream transport.
fn slot(t: Transport) -> usize {
    usize::from(t == Transport::Tls)
}

/// The listeners, bound by [`bind`] before any thread starts.
#[derive(Debug)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub tls: Option<(TcpListener, Arc<ServerConfig>)>,
    pub client: Option<Arc<ClientConfig>>,
}

impl Listeners {
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_cloexec(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Binds the TCP listener on `udp` (the bound UDP address: same port) and
/// the TLS listener, and builds the TLS configurations.
pub fn bind(opts: &StreamOptions, udp: SocketAddr) -> Result<Listeners, (SocketAddr, String)> {
    let tcp = if opts.tcp { Some(listen(udp).map_err(|e| (udp, format!("TCP: {e}")))?) } else { None };
    let tls = match &opts.tls {
        None => None,
        Some(t) => {
            let cfg = server_config(&t.certs).map_err(|e| (t.listen, e))?;
            Some((listen(t.listen).map_err(|e| (t.listen, format!("TLS: {e}")))?, cfg))
        }
    };
    let client = match &opts.tls_client_roots {
        None => None,
        Some(roots) => Some(client_config(roots.clone()).map_err(|e| (udp, e))?),
    };
    Ok(Listeners { tcp, tls, client })
}

/// Everything the stream thread starts with.
pub struct StreamInit {
    pub listeners: Listeners,
    pub limits: StreamLimits,
    pub peers: Arc<Peers>,
    pub queue: Arc<StreamQueue>,
    pub n: u16,
}

fn epoll_ctl(epoll: &OwnedFd, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the call; `fd` is open (the
    // caller owns it).
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

const EV_IN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const EV_OUT: u32 = libc::EPOLLOUT as u32;

/// The stream thread's state.
struct Front {
    epoll: OwnedFd,
    queue: Arc<StreamQueue>,
    peers: Arc<Peers>,
    stats: Arc<StreamStats>,
    n: u16,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<ServerConfig>)>,
    client: Option<Arc<ClientConfig>>,
    limits: StreamLimits,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    next_gen: u32,
    by_addr: HashMap<(SocketAddr, Transport), usize>,
    wake: Vec<bool>,
    ring: Option<IoUring>,
    ring_failed: bool,
    /// Listeners taken out of epoll until then (out of descriptors).
    paused_until: Option<Instant>,
    draining: bool,
    next_sweep: Instant,
    sweep_every: Duration,
    warn_frame: Throttle,
    warn_accept: Throttle,
    warn_tls: Throttle,
    warn_connect: Throttle,
}

/// The stream thread's body.
pub fn run(init: StreamInit) {
    block_shutdown_signals();
    let StreamInit { listeners, limits, peers, queue, n } = init;
    // SAFETY: epoll_create1 takes no pointers; a negative return is an error.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        warn!(error = %io::Error::last_os_error(), "epoll_create1 failed: TCP and TLS are off");
        return;
    }
    // SAFETY: `fd` was just returned by epoll_create1 and is owned by no one else.
    let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
    let now = Instant::now();
    let sweep_every = (limits.idle_timeout.min(limits.handshake_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut f = Front {
        epoll,
        stats: queue.stats.clone(),
        queue,
        peers,
        n: n.max(1),
        tcp: listeners.tcp,
        tls: listeners.tls,
        client: listeners.client,
        limits,
        conns: Vec::new(),
        free: Vec::new(),
        live: 0,
        next_gen: 1,
        by_addr: HashMap::new(),
        wake: vec![false; usize::from(n.max(1))],
        ring: None,
        ring_failed: false,
        paused_until: None,
        draining: false,
        next_sweep: now + sweep_every,
        sweep_every,
        warn_frame: Throttle::new(),
        warn_accept: Throttle::new(),
        warn_tls: Throttle::new(),
        warn_connect: Throttle::new(),
    };
    if let Err(e) = f.register_fixed() {
        warn!(error = %e, "cannot set up the stream epoll set: TCP and TLS are off");
        return;
    }
    f.run();
}

impl Front {
    fn register_fixed(&mut self) -> io::Result<()> {
        epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, self.queue.event.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_WAKE)?;
        self.register_listeners(libc::EPOLL_CTL_ADD)
    }

    fn register_listeners(&self, op: libc::c_int) -> io::Result<()> {
        if let Some(l) = &self.tcp {
            epoll_ctl(&self.epoll, op, l.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_TCP)?;
        }
        if let Some((l, _)) = &self.tls {
            epoll_ctl(&self.epoll, op, l.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_TLS)?;
        }
        Ok(())
    }

    fn run(&mut self) {
        // SAFETY: all-zero is a valid epoll_event.
        let mut events: Vec<libc::epoll_event> = (0..EVENTS).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut busy = false;
        loop {
            if self.queue.stop.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            let mut wait =
                if busy { Duration::ZERO } else { MAX_WAIT.min(self.next_sweep.saturating_duration_since(now)) };
            if let Some(t) = self.paused_until {
                wait = wait.min(t.saturating_duration_since(now));
            }
            let ms = i32::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
            // SAFETY: `events` has EVENTS valid, writable entries.
            let k = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, ms) };
            let k = if k < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "epoll_wait failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                0
            } else {
                k as usize
            };
            let now = Instant::now();
            for ev in &events[..k] {
                let (token, flags) = (ev.u64, ev.events);
                match token {
                    TOKEN_WAKE => {
                        eventfd_clear(&self.queue.event);
                        self.queue.notified.store(false, Ordering::SeqCst);
                    }
                    TOKEN_TCP => self.accept(Transport::Tcp, now),
                    TOKEN_TLS => self.accept(Transport::Tls, now),
                    t => self.on_conn_event(t, flags, now),
                }
            }
            if let Some(resolver) = self.queue.certs.pop() {
                self.swap_certs(resolver);
            }
            busy = self.drain_queue(now);
            self.flush_wakes();
            if !self.draining && self.peers.stop.load(Ordering::Acquire) {
                // Shutdown started: no new connections; the open ones keep
                // serving the shards' last messages until the workers exit.
                self.draining = true;
                let _ = self.register_listeners(libc::EPOLL_CTL_DEL);
                self.tcp = None;
                self.tls = None;
                info!(connections = self.live, "stream listeners closed");
            }
            if let Some(t) = self.paused_until
                && now >= t
            {
                self.paused_until = None;
                if !self.draining {
                    let _ = self.register_listeners(libc::EPOLL_CTL_ADD);
                }
            }
            if now >= self.next_sweep {
                self.sweep(now);
                self.next_sweep = now + self.sweep_every;
            }
        }
        self.close_all();
    }

    /// Puts a reloaded certificate set behind the TLS listener. The rest of
    /// its configuration (and the session cache) is kept.
    fn swap_certs(&mut self, resolver: Arc<SniResolver>) {
        let Some((_, cfg)) = self.tls.as_mut() else {
            return; // no TLS listener (or closed for shutdown)
        };
        let (names, default) = (resolver.names(), resolver.has_default());
        let mut next = ServerConfig::clone(cfg);
        next.cert_resolver = resolver;
        *cfg = Arc::new(next);
        info!(names, default, "TLS certificates replaced");
    }

    fn accept(&mut self, transport: Transport, now: Instant) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let r = match transport {
                Transport::Tls => self.tls.as_ref().map(|(l, _)| l.accept()),
                _ => self.tcp.as_ref().map(TcpListener::accept),
            };
            let Some(r) = r else {
                return;
            };
            match r {
                Ok((sock, peer)) => {
                    if self.live >= self.limits.max_connections {
                        self.stats.count_close(CloseReason::Limit);
                        let max = self.live;
                        self.warn_accept.run(now, |more| {
                            warn!(%peer, max, suppressed = more, "max connections reached: closing a new connection")
                        });
                        continue;
                    }
                    let tls = match transport {
                        Transport::Tls => match self.tls.as_ref().map(|(_, c)| ServerConnection::new(c.clone())) {
                            Some(Ok(c)) => Some(Box::new(Connection::Server(c))),
                            _ => continue,
                        },
                        _ => None,
                    };
                    if let Err(e) = sock.set_nonblocking(true) {
                        debug!(%peer, error = %e, "O_NONBLOCK on an accepted socket failed");
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    inc(&self.stats.accepted[slot(transport)]);
                    self.insert(sock, peer, transport, tls, false, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        self.warn_accept.run(now, |more| {
                            warn!(error = %e, suppressed = more, "cannot accept stream connections; pausing 100 ms")
                        });
                        let _ = self.register_listeners(libc::EPOLL_CTL_DEL);
                        self.paused_until = Some(now + ACCEPT_PAUSE);
                        return;
                    }
                    _ => debug!(error = %e, "accept failed"),
                },
            }
        }
    }

    /// Adds a connection to the table, epoll and the address index.
    fn insert(
        &mut self,
        sock: TcpStream,
        peer: SocketAddr,
        transport: Transport,
        tls: Option<Box<Connection>>,
        connecting: bool,
        now: Instant,
    ) -> Option<usize> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let token = (u64::from(generation) << 32) | (idx as u64 + TOKEN_CONN_BASE);
        let events = EV_IN | if connecting { EV_OUT } else { 0 };
        if let Err(e) = epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), events, token) {
            warn!(%peer, error = %e, "cannot add a stream connection to epoll");
            self.free.push(idx);
            return None;
        }
        let conn = Conn::new(sock, peer, transport, generation, tls, connecting, self.limits.max_message, now);
        self.conns[idx] = Some(conn);
        self.live += 1;
        inc(&self.stats.connections[slot(transport)]);
        // The newest connection from an address is the one to answer on.
        self.by_addr.insert((peer, transport), idx);
        debug!(%peer, transport = transport.via_token(), outbound = connecting, "stream connection opened");
        Some(idx)
    }

    fn on_conn_event(&mut self, token: u64, flags: u32, now: Instant) {
        let idx = ((token & 0xffff_ffff) - TOKEN_CONN_BASE) as usize;
        let generation = (token >> 32) as u32;
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.generation != generation {
            return; // closed (and the slot reused) earlier in this batch
        }
        let err = flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let mut result = Ok(());
        if conn.connecting && (flags & EV_OUT != 0 || err) {
            let failure = match conn.sock.take_error() {
                Ok(None) if !err => None,
                Ok(None) => Some(io::Error::from(io::ErrorKind::ConnectionRefused)),
                Ok(Some(e)) | Err(e) => Some(e),
            };
            match failure {
                None => {
                    conn.connecting = false;
                    conn.last = now;
                }
                Some(e) => {
                    let peer = conn.peer;
                    self.warn_connect
                        .run(now, |more| warn!(%peer, error = %e, suppressed = more, "stream connect failed"));
                    result = Err(CloseReason::Error);
                }
            }
        }
        if result.is_ok()
            && flags & (EV_IN | (libc::EPOLLHUP | libc::EPOLLERR) as u32) != 0
            && !conn.connecting
            && conn.closing.is_none()
        {
            let mut d = Deliver {
                peers: &self.peers,
                n: self.n,
                stats: &self.stats,
                wake: &mut self.wake,
                throttle: &mut self.warn_frame,
                now,
            };
            result = conn.on_readable(&mut d, now);
            if let Err(reason) = result
                && conn.framer.failed_head().is_some()
            {
                conn.closing = Some(Closing { reason, by: now + ANSWER_GRACE, answered: false });
                result = Ok(());
            }
        }
        if result.is_ok() {
            result = conn.flush(now);
        }
        match result {
            Ok(()) if conn.answered() => {
                let reason = conn.closing.map_or(CloseReason::Error, |c| c.reason);
                self.close(idx, reason);
            }
            Ok(()) => self.update_interest(idx),
            Err(r) => self.close(idx, r),
        }
    }

    /// Keeps EPOLLOUT in the interest set exactly while there is output.
    fn update_interest(&mut self, idx: usize) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        let want = conn.wants_out();
        // A closing connection reads nothing more: without EPOLLIN, bytes
        // still arriving do not wake the loop (HUP and ERR still do).
        let reading = conn.closing.is_none();
        if want == conn.epollout && reading != conn.reading_off {
            return;
        }
        let token = (u64::from(conn.generation) << 32) | (idx as u64 + TOKEN_CONN_BASE);
        let events = if reading { EV_IN } else { 0 } | if want { EV_OUT } else { 0 };
        match epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, conn.sock.as_raw_fd(), events, token) {
            Ok(()) => {
                conn.epollout = want;
                conn.reading_off = !reading;
            }
            Err(e) => {
                debug!(peer = %conn.peer, error = %e, "epoll_ctl MOD failed");
                self.close(idx, CloseReason::Error);
            }
        }
    }

    fn close(&mut self, idx: usize, reason: CloseReason) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        if matches!(reason, CloseReason::Idle | CloseReason::Shutdown)
            && let Some(tls) = conn.tls.as_deref_mut()
        {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut conn.sock);
        }
        // Dropping the socket closes it, which also takes it out of epoll.
        if self.by_addr.get(&(conn.peer, conn.transport)) == Some(&idx) {
            self.by_addr.remove(&(conn.peer, conn.transport));
        }
        let unsent = conn.out.iter().filter(|b| b.as_slice() != PONG).count() as u64;
        if unsent > 0 {
            self.stats.count_drop(DropReason::Unsent, unsent);
        }
        self.stats.count_close(reason);
        dec(&self.stats.connections[slot(conn.transport)]);
        self.live -= 1;
        self.free.push(idx);
        debug!(peer = %conn.peer, transport = conn.transport.via_token(), reason = reason.label(), "stream connection closed");
    }

    /// Takes the workers' transmits and queues each on its connection.
    /// Returns whether more are waiting.
    fn drain_queue(&mut self, now: Instant) -> bool {
        for _ in 0..QUEUE_BATCH {
            let Some(t) = self.queue.queue.pop() else {
                return false;
            };
            self.transmit(t, now);
        }
        true
    }

    fn transmit(&mut self, t: Transmit, now: Instant) {
        let Transmit { dst, transport, payload } = t;
        if transport == Transport::Udp || payload.is_empty() {
            return; // workers send UDP; an empty message is nothing to send
        }
        let idx = match self.by_addr.get(&(dst, transport)) {
            Some(&i) => i,
            None => match self.open(dst, transport, now) {
                Some(i) => i,
                None => return,
            },
        };
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.out_bytes + payload.len() > self.limits.max_backlog {
            let peer = conn.peer;
            self.stats.count_drop(DropReason::Unsent, 1);
            self.warn_connect.run(
                now,
                |more| warn!(%peer, suppressed = more, "stream write backlog over its cap: closing the connection"),
            );
            self.close(idx, CloseReason::Backlog);
            return;
        }
        inc(&self.stats.messages_out[slot(transport)]);
        conn.enqueue(payload);
        if let Some(c) = conn.closing.as_mut() {
            c.answered = true;
        }
        match conn.flush(now) {
            Ok(()) if conn.answered() => {
                let reason = conn.closing.map_or(CloseReason::Error, |c| c.reason);
                self.close(idx, reason);
            }
            Ok(()) => self.update_interest(idx),
            Err(r) => self.close(idx, r),
        }
    }

    /// Opens a connection to `dst` (TLS only with `--tls-ca`).
    fn open(&mut self, dst: SocketAddr, transport: Transport, now: Instant) -> Option<usize> {
        let tls = match transport {
            Transport::Tls => {
                let Some(cfg) = self.client.clone() else {
                    self.stats.count_drop(DropReason::NoTlsClient, 1);
                    self.warn_tls.run(now, |more| {
                        warn!(
                            %dst, suppressed = more,
                            "TLS message for a peer with no open connection dropped (give --tls-ca to open one)"
                        )
                    });
                    return None;
                };
                match ClientConnection::new(cfg, ServerName::IpAddress(dst.ip().into())) {
                    Ok(c) => Some(Box::new(Connection::Client(c))),
                    Err(e) => {
                        self.stats.count_drop(DropReason::Unsent, 1);
                        debug!(%dst, error = %e, "cannot start a TLS client connection");
                        return None;
                    }
                }
            }
            _ => None,
        };
        if self.live >= self.limits.max_connections || self.draining {
            self.stats.count_drop(DropReason::Limit, 1);
            return None;
        }
        let sock = match connect(dst) {
            Ok(s) => s,
            Err(e) => {
                self.stats.count_drop(DropReason::Unsent, 1);
                self.warn_connect.run(now, |more| warn!(%dst, error = %e, suppressed = more, "stream connect failed"));
                return None;
            }
        };
        let idx = self.insert(sock, dst, transport, tls, true, now);
        if idx.is_some() {
            inc(&self.stats.opened[slot(transport)]);
        } else {
            self.stats.count_drop(DropReason::Unsent, 1);
        }
        idx
    }

    /// Closes connections idle too long, and handshakes/connects that take
    /// too long.
    fn sweep(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let Some(conn) = &self.conns[idx] else {
                continue;
            };
            if let Some(c) = conn.closing
                && now >= c.by
            {
                self.close(idx, c.reason);
            } else if conn.handshaking() && now.saturating_duration_since(conn.opened) >= self.limits.handshake_timeout
            {
                self.close(idx, CloseReason::Handshake);
            } else if now.saturating_duration_since(conn.last) >= self.limits.idle_timeout {
                self.close(idx, CloseReason::Idle);
            }
        }
    }

    /// Wakes the workers marked this turn.
    fn flush_wakes(&mut self) {
        let mut rings: Vec<RawFd> = Vec::new();
        for (s, flag) in self.wake.iter_mut().enumerate() {
            if !std::mem::take(flag) {
                continue;
            }
            match self.peers.wakers.get(s) {
                Some(w @ Waker::Event(_)) => {
                    if let Err(e) = w.wake_event() {
                        debug!(worker = s, error = %e, "eventfd wake failed");
                    }
                }
                Some(Waker::Ring(fd)) => rings.push(fd.as_raw_fd()),
                None => {}
            }
        }
        if rings.is_empty() || self.ring_failed {
            return;
        }
        if self.ring.is_none() {
            match IoUring::new(64) {
                Ok(r) => self.ring = Some(r),
                Err(e) => {
                    warn!(error = %e, "no io_uring for waking workers: stream messages wait up to 500 ms");
                    self.ring_failed = true;
                    return;
                }
            }
        }
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let cap = ring.params().sq_entries() as usize;
        for chunk in rings.chunks(cap.max(1)) {
            for &fd in chunk {
                let e = opcode::MsgRingData::new(types::Fd(fd), 0, UD_WAKE, None).build().user_data(0);
                // SAFETY: MsgRingData refers to no memory of ours; the
                // target fd is kept open by `self.peers`.
                if unsafe { ring.submission().push(&e) }.is_err() {
                    break;
                }
            }
            if let Err(e) = ring.submit_and_wait(chunk.len()) {
                debug!(error = %e, "MsgRing wake failed");
            }
            ring.completion().for_each(drop);
        }
    }

    /// Stop: one last non-blocking write of what is queued, then close.
    fn close_all(&mut self) {
        let now = Instant::now();
        for idx in 0..self.conns.len() {
            if let Some(conn) = self.conns[idx].as_mut() {
                let _ = conn.flush(now);
                self.close(idx, CloseReason::Shutdown);
            }
        }
        debug!("stream thread exited");
    }
}

/// A non-blocking connect to `dst`.
fn connect(dst: SocketAddr) -> io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::for_address(dst), socket2::Type::STREAM, None)?;
    s.set_cloexec(true)?;
    s.set_nonblocking(true)?;
    let _ = s.set_nodelay(true);
    match s.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}
