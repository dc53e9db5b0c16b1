//! Everything that touches sockets, io_uring, threads or the clock.
//!
//! [`Engine::start`] binds one UDP socket per worker (an `SO_REUSEPORT`
//! group on the listen address), starts one pinned worker thread per shard
//! ([`worker`]), each driving its own I/O backend, and optionally the
//! metrics endpoint ([`metrics`]). [`Engine::shutdown`] asks every worker
//! to drain its shard; [`Engine::join`] waits for them.
//!
//! Backends (`--io`): io_uring ([`uring_worker`], Linux 6.0 or later for
//! multishot `RECVMSG`; see [`uring`] for each operation's kernel) or
//! `recvmmsg`/`sendmmsg` ([`mmsg`]). `auto` probes io_uring once at start
//! and falls back to mmsg with one log line.
//!
//! TCP and TLS ([`stream`]) are served by one more thread, which owns every
//! connection and hands framed messages to the owning worker's inbox;
//! workers give it their TCP/TLS transmits through a queue.
//!
//! [`Engine::reload`] (SIGHUP) hands every worker a new [`Config`] through
//! its inbox, the stream thread a new certificate set, and updates the XDP
//! maps in place; see docs/decisions/0016-reload.md.
//!
//! [`Serve::Bare`] (`sipark --bare-io`, hidden) runs the same workers with
//! the [`bare`] responder instead of shards: the floor that
//! `cargo xtask bench` compares the engine's CPU per park cycle with.
//!
//! # Module graph
//!
//! No two modules of `io` import each other: each one below imports only
//! modules listed after it (the `layering` test of the crate checks that
//! the graph stays a DAG). Types that cross threads live in the leaf-most
//! module that all their users can import: [`shared`].
//!
//! | module                     | imports, within `io`                      |
//! |----------------------------|-------------------------------------------|
//! | `mod` ([`Engine`])         | all but `bare` and `signal`               |
//! | [`metrics`]                | `shared`                                  |
//! | [`stream`]                 | `shared`, `signal`, `sys`, `tls`, `uring` |
//! | [`uring_worker`]           | `worker`, `shared`, `uring`               |
//! | [`mmsg`]                   | `worker`, `shared`, `sys`, `uring`        |
//! | [`worker`]                 | `shared`, `bare`, `signal`, `sys`         |
//! | [`shared`]                 | `sys`, `tls`                              |
//! | [`bare`], [`signal`], [`sys`], [`tls`], [`uring`] | nothing (leaves) |

pub mod bare;
pub mod batch;
pub mod media;
pub mod metrics;
pub mod mmsg;
pub mod shared;
pub mod signal;
pub mod stream;
pub mod sys;
pub mod tls;
pub mod uring;
pub mod uring_worker;
pub mod worker;

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashSet;

use io_uring::{IoUring, opcode, types};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::{debug, info, warn};

use crate::proto::config::Config;
use crate::proto::shard::{Seed, WallClock};
use crate::proto::stats::ShardStats;
pub use shared::Serve;
use shared::{INBOX_CAPACITY, Inbox, Peers, StreamQueue, Waker};
use stream::StreamOptions;
use tls::{SniResolver, TlsCert};
use uring::UD_WAKE;
use worker::{Backend, WorkerInit};

/// Socket buffer size asked for (each of SO_RCVBUF and SO_SNDBUF).
pub const SOCKET_BUFFER: usize = 4 << 20;
/// How long start-up waits for every worker to set up its ring.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a failed XDP map update the removal is tried again.
const XDP_RETRY: Duration = Duration::from_secs(10);
/// How often the XDP ban map is swept of bans that are over.
const BAN_SWEEP: Duration = Duration::from_secs(10);

/// How to run the I/O side.
#[derive(Debug, Clone)]
pub struct IoOptions {
    /// UDP address every worker socket binds (port 0: pick one).
    pub listen: SocketAddr,
    /// Number of workers (= shards), at least 1.
    pub workers: u16,
    /// Pin worker `i` to the `i`-th CPU this process may use.
    pub pin: bool,
    /// Serve Prometheus metrics on this TCP address.
    pub metrics: Option<SocketAddr>,
    /// Longest time a worker waits for its shard to drain at shutdown.
    pub shutdown_grace: Duration,
    /// I/O backend.
    pub io: IoChoice,
    /// sk_reuseport steering.
    pub steer: SteerChoice,
    /// The XDP pre-filter to attach (its `ports` are filled in with the
    /// bound port).
    pub xdp: Option<crate::bpf::XdpConfig>,
    /// What the workers serve.
    pub serve: Serve,
    /// The media sockets of music on hold (`None`: none, no music).
    pub media: Option<media::MediaOptions>,
}

/// `--steer`: whether the sk_reuseport program steers datagrams to the
/// worker that owns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerChoice {
    /// Steer when BPF is allowed; otherwise one warning, and the kernel's
    /// hash plus cross-shard hand-off.
    Auto,
    /// Steer or fail to start.
    On,
    /// Kernel hash plus hand-off.
    Off,
}

/// `--io`: which backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when the probe succeeds, else mmsg (one warning).
    Auto,
    /// io_uring or fail.
    Uring,
    /// `recvmmsg`/`sendmmsg`.
    Mmsg,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The options make no sense.
    #[error("{0}")]
    Options(String),
    /// A UDP socket could not be set up or bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    /// io_uring (or the buffer ring) could not be set up.
    #[error(
        "I/O backend unavailable (worker {worker}: {cause}); io_uring needs Linux 6.0+ with io_uring \
         allowed (check sysctl kernel.io_uring_disabled, container seccomp profiles and RLIMIT_MEMLOCK); \
         --io mmsg runs without it"
    )]
    Uring { worker: u16, cause: String },
    /// A BPF program could not be loaded or attached.
    #[error("{what}: {source}")]
    Bpf { what: &'static str, source: crate::bpf::BpfError },
    /// The metrics listener could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
    /// A TCP or TLS listener could not be set up.
    #[error("cannot listen on {addr}: {cause}")]
    Stream { addr: SocketAddr, cause: String },
    /// A thread could not be started, or a worker vanished during start-up.
    #[error("cannot start worker threads: {0}")]
    Thread(String),
}

/// The running I/O side: worker threads and the metrics thread.
#[derive(Debug)]
pub struct Engine {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    io_mode: String,
    peers: Arc<Peers>,
    stats: Vec<Arc<ShardStats>>,
    workers: Vec<JoinHandle<Result<(), String>>>,
    metrics: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    /// The stream thread and its queue.
    stream: Option<(JoinHandle<()>, Arc<StreamQueue>)>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    advertise_tls: Option<String>,
    /// Detached when dropped, after the workers have stopped.
    xdp: Option<crate::bpf::Xdp>,
    steering: Option<crate::bpf::Steering>,
    /// The configuration the shards run with (the last one handed out).
    cfg: Arc<Config>,
    /// `sipark_config_reloads_total`.
    reloads: Arc<metrics::ReloadStats>,
    /// With XDP: the policy of the last reload (or of the start), with the
    /// attached ports, and the tenants a reload removed that stay in the
    /// map until their parked calls can no longer be retrieved.
    xdp_live: Option<crate::bpf::XdpConfig>,
    xdp_retiring: Vec<Retiring>,
    /// With XDP: the engine's own handle on the ban map, to sweep it, and
    /// when next.
    xdp_bans: Option<(crate::bpf::BanMap, Instant)>,
}

/// A tenant removed by a reload, kept in the XDP map until `until`.
#[derive(Debug, Clone)]
struct Retiring {
    domain: String,
    rate: Option<crate::bpf::Rate>,
    until: Instant,
}

/// What a reload (SIGHUP) changes. Everything is checked before anything
/// is applied.
#[derive(Debug)]
pub struct Reload {
    /// The shards' new configuration. Build it from [`Engine::config`]:
    /// what the files do not set (advertise, nonce secret, trust, ...)
    /// stays.
    pub cfg: Config,
    /// The TLS listener's new certificate set; `None` keeps the current
    /// one. Ignored without a TLS listener.
    pub tls_certs: Option<Vec<TlsCert>>,
    /// The XDP program's new tenants, rates and blocklist; `None` keeps
    /// them. Ignored without `--xdp`. Its `ports` are taken from the
    /// attached program.
    pub xdp: Option<crate::bpf::XdpConfig>,
}

/// Creates one member of the `SO_REUSEPORT` group on `addr`.
fn bind_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_cloexec(true)?;
    if let Err(e) = s.set_recv_buffer_size(SOCKET_BUFFER) {
        warn!(error = %e, "cannot set SO_RCVBUF");
    }
    if let Err(e) = s.set_send_buffer_size(SOCKET_BUFFER) {
        warn!(error = %e, "cannot set SO_SNDBUF");
    }
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

/// Warns once if the kernel capped the socket buffers (Linux reports
/// twice the granted size; the cap is net.core.rmem_max / wmem_max).
fn check_buffers(s: &UdpSocket) {
    let s = socket2::SockRef::from(s);
    if let Ok(n) = s.recv_buffer_size()
        && n < SOCKET_BUFFER
    {
        warn!(granted = n, wanted = SOCKET_BUFFER, "SO_RCVBUF capped; raise net.core.rmem_max");
    }
    if let Ok(n) = s.send_buffer_size()
        && n < SOCKET_BUFFER
    {
        warn!(granted = n, wanted = SOCKET_BUFFER, "SO_SNDBUF capped; raise net.core.wmem_max");
    }
}

/// What the XDP program needs to answer overload control's refusals
/// itself (docs/decisions/0022-overload-503-in-xdp.md); `None` when
/// overload control is off.
fn xdp_shed(cfg: &Config) -> Option<crate::bpf::XdpShed> {
    let b = cfg.limits.overload?;
    Some(crate::bpf::XdpShed {
        key: crate::proto::overload::admission_key(&cfg.nonce_secret),
        retry_after: b.retry_after,
        retrieve_fac: cfg.retrieve_fac.clone(),
    })
}

impl Engine {
    /// Binds the sockets, starts the workers (and metrics), and returns
    /// once every worker's ring is up. `make_config` gets the bound address
    /// (its port is the real one when `opts.listen` has port 0). TCP listens
    /// on the same address; TLS is off ([`Engine::start_with`] sets both).
    pub fn start(opts: &IoOptions, make_config: impl FnOnce(SocketAddr) -> Config) -> Result<Engine, StartError> {
        Engine::start_with(opts, &StreamOptions::default(), make_config)
    }

    /// [`Engine::start`] with the stream transports as `streams` says.
    /// With TLS on, `Config.advertise_tls` is set here from the bound TLS
    /// address (see [`stream::TlsListen::advertise`]).
    pub fn start_with(
        opts: &IoOptions,
        streams: &StreamOptions,
        make_config: impl FnOnce(SocketAddr) -> Config,
    ) -> Result<Engine, StartError> {
        let n = opts.workers;
        if n == 0 {
            return Err(StartError::Options("--workers must be at least 1".into()));
        }
        // The first socket picks the port when asked for port 0; the rest
        // join its SO_REUSEPORT group on the same port.
        let first = bind_socket(opts.listen).map_err(|source| StartError::Bind { addr: opts.listen, source })?;
        let local_addr = first.local_addr().map_err(|source| StartError::Bind { addr: opts.listen, source })?;
        check_buffers(&first);
        let mut sockets = vec![first];
        for _ in 1..n {
            let s = bind_socket(local_addr).map_err(|source| StartError::Bind { addr: local_addr, source })?;
            sockets.push(s);
        }
        let steering = match opts.steer {
            SteerChoice::Off => None,
            // One socket: nothing to steer between.
            _ if n == 1 => None,
            choice => match crate::bpf::Steering::attach(&sockets, n) {
                Ok(s) => Some(s),
                Err(e) if choice == SteerChoice::Auto => {
                    warn!(
                        error = %e,
                        "BPF steering unavailable: the kernel's hash picks the worker and datagrams are handed \
                         across shards (--steer off silences this)"
                    );
                    None
                }
                Err(source) => return Err(StartError::Bpf { what: "--steer on", source }),
            },
        };
        let metrics_listener = match opts.metrics {
            Some(addr) => Some(TcpListener::bind(addr).map_err(|source| StartError::Metrics { addr, source })?),
            None => None,
        };
        let backend = match opts.io {
            IoChoice::Uring => Backend::Uring,
            IoChoice::Mmsg => Backend::Mmsg,
            IoChoice::Auto => match uring_worker::probe() {
                Ok(()) => Backend::Uring,
                Err(cause) => {
                    warn!(%cause, "io_uring unavailable: falling back to recvmmsg/sendmmsg (--io mmsg), which is slower");
                    Backend::Mmsg
                }
            },
        };
        let listeners = if streams.enabled() {
            Some(stream::bind(streams, local_addr).map_err(|(addr, cause)| StartError::Stream { addr, cause })?)
        } else {
            None
        };
        let tcp_addr = listeners.as_ref().and_then(stream::Listeners::tcp_addr);
        let tls_addr = listeners.as_ref().and_then(stream::Listeners::tls_addr);
        let mut cfg = make_config(local_addr);
        let advertise_tls = tls_addr.map(|bound| {
            let given = streams.tls.as_ref().and_then(|t| t.advertise.as_deref());
            tls_advertise(given, bound, &cfg.advertise)
        });
        if let Some(a) = &advertise_tls {
            cfg.advertise_tls.clone_from(a);
        }
        let queue = match &listeners {
            Some(_) => Some(Arc::new(
                StreamQueue::new().map_err(|e| StartError::Thread(format!("stream queue eventfd: {e}")))?,
            )),
            None => None,
        };
        let cfg = Arc::new(cfg);
        let host = crate::proto::env::advertise_host(&cfg.advertise);
        let mut medias = media::bind_all(opts.media.as_ref(), n, local_addr, host)
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let xdp_live = opts.xdp.as_ref().map(|x| {
            let mut x = x.clone();
            // The SIP port, and the stream listeners' ports: XDP drops banned
            // and blocked sources over TCP and TLS too (ADR 0019).
            x.ports = vec![local_addr.port()];
            let streams = listeners.as_ref().map(|l| [l.tcp_addr(), l.tls_addr()]).unwrap_or_default();
            for port in streams.into_iter().flatten().map(|a| a.port()) {
                if !x.ports.contains(&port) {
                    x.ports.push(port);
                }
            }
            x.shards = u32::from(n);
            x.shed = xdp_shed(&cfg);
            x
        });
        let xdp = match &xdp_live {
            None => None,
            // Logs each interface's attach mode itself.
            Some(cfg) => {
                Some(crate::bpf::Xdp::attach(cfg).map_err(|source| StartError::Bpf { what: "--xdp", source })?)
            }
        };
        // One handle on the ban map per worker, and one to sweep it with;
        // one on the shed map per worker.
        let mut ban_maps = Vec::new();
        let mut shed_maps = Vec::new();
        if let Some(x) = &xdp {
            for _ in 0..=n {
                ban_maps.push(Some(x.bans().map_err(|source| StartError::Bpf { what: "--xdp ban map", source })?));
            }
            for _ in 0..n {
                shed_maps.push(Some(x.shed().map_err(|source| StartError::Bpf { what: "--xdp shed map", source })?));
            }
        }
        let xdp_bans = ban_maps.pop().flatten().map(|m| (m, Instant::now() + BAN_SWEEP));
        let reloads = Arc::new(metrics::ReloadStats::default());
        let wall =
            WallClock { at: Instant::now(), unix: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() };
        let cpus = if opts.pin { sys::allowed_cpus() } else { Vec::new() };
        if opts.pin && cpus.is_empty() {
            warn!("cannot read the CPU affinity mask; workers run unpinned");
        }

        // Each shard's entropy: its hash keys and tags.
        let seeds = (0..n)
            .map(|_| sys::random_bytes().map(Seed))
            .collect::<io::Result<Vec<Seed>>>()
            .map_err(|e| StartError::Thread(format!("getrandom: {e}")))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut gos = Vec::with_capacity(usize::from(n));
        let mut handles = Vec::with_capacity(usize::from(n));
        for (i, socket) in (0..n).zip(sockets) {
            let (go_tx, go_rx) = mpsc::channel();
            let init = WorkerInit {
                id: i,
                n,
                backend,
                serve: opts.serve,
                socket,
                cfg: cfg.clone(),
                wall,
                seed: seeds[usize::from(i)],
                cpu: (!cpus.is_empty()).then(|| cpus[usize::from(i) % cpus.len()]),
                grace: opts.shutdown_grace,
                bans: ban_maps.get_mut(usize::from(i)).and_then(Option::take),
                shed: shed_maps.get_mut(usize::from(i)).and_then(Option::take),
                media: medias.get_mut(usize::from(i)).and_then(Option::take),
                ready: ready_tx.clone(),
                go: go_rx,
            };
            let spawned = std::thread::Builder::new().name(format!("sipark-w{i}")).spawn(move || run_worker(init));
            match spawned {
                Ok(h) => {
                    handles.push(h);
                    gos.push(go_tx);
                }
                Err(e) => {
                    abort(gos, handles);
                    return Err(StartError::Thread(e.to_string()));
                }
            }
        }
        drop(ready_tx);

        let mut ready: Vec<Option<worker::Ready>> = (0..n).map(|_| None).collect();
        let mut failure: Option<StartError> = None;
        for _ in 0..n {
            match ready_rx.recv_timeout(READY_TIMEOUT) {
                Ok((i, Ok(r))) => {
                    if let Some(slot) = ready.get_mut(usize::from(i)) {
                        *slot = Some(r);
                    }
                }
                Ok((i, Err(cause))) => {
                    failure.get_or_insert(StartError::Uring { worker: i, cause });
                }
                Err(e) => {
                    failure.get_or_insert(StartError::Thread(format!("a worker did not report ready: {e}")));
                    break;
                }
            }
        }
        let ready: Vec<worker::Ready> = ready.into_iter().flatten().collect();
        if let Some(f) = failure.or_else(|| {
            (ready.len() != usize::from(n)).then(|| StartError::Thread("a worker did not report ready".into()))
        }) {
            abort(gos, handles);
            return Err(f);
        }

        let mut modes: Vec<&str> = ready.iter().map(|r| r.mode).collect();
        modes.sort_unstable();
        modes.dedup();
        let io_mode = match backend {
            Backend::Uring => format!("io_uring ({})", modes.join(", ")),
            Backend::Mmsg => modes.join(", "),
        };
        let stats: Vec<Arc<ShardStats>> = ready.iter().map(|r| r.stats.clone()).collect();
        let peers = Arc::new(Peers {
            stop: AtomicBool::new(false),
            inboxes: (0..n).map(|_| Inbox::new(INBOX_CAPACITY)).collect(),
            wakers: ready.into_iter().map(|r| r.waker).collect(),
            stream: queue.clone(),
        });
        let mut stream_thread = None;
        if let (Some(listeners), Some(queue)) = (listeners, queue.clone()) {
            let init = stream::StreamInit { listeners, limits: streams.limits, peers: peers.clone(), queue, n };
            match std::thread::Builder::new().name("sipark-stream".into()).spawn(move || stream::run(init)) {
                Ok(h) => stream_thread = Some(h),
                Err(e) => {
                    abort(gos, handles);
                    return Err(StartError::Thread(format!("stream thread: {e}")));
                }
            }
        }
        for go in &gos {
            // A worker that already exited shows up at join.
            let _ = go.send(Some(peers.clone()));
        }

        let mut metrics_addr = None;
        let mut metrics = None;
        if let Some(listener) = metrics_listener {
            metrics_addr = listener.local_addr().ok();
            let stop = Arc::new(AtomicBool::new(false));
            let mut registry = metrics::registry(
                stats.clone(),
                queue.as_ref().map(|q| q.stats.clone()),
                xdp.as_ref().map(crate::bpf::Xdp::stats),
                steering.as_ref().map(crate::bpf::Steering::stats),
            );
            registry.register_collector(Box::new(metrics::ReloadCollector { stats: reloads.clone() }));
            let stop2 = stop.clone();
            let h = std::thread::Builder::new()
                .name("sipark-metrics".into())
                .spawn(move || metrics::serve(listener, registry, stop2));
            match h {
                Ok(h) => metrics = Some((h, stop)),
                Err(e) => warn!(error = %e, "cannot start the metrics thread; metrics disabled"),
            }
        }

        let stream = stream_thread.zip(queue);
        Ok(Engine {
            local_addr,
            metrics_addr,
            io_mode,
            peers,
            stats,
            workers: handles,
            metrics,
            stream,
            tcp_addr,
            tls_addr,
            advertise_tls,
            xdp,
            steering,
            cfg,
            reloads,
            xdp_live,
            xdp_retiring: Vec::new(),
            xdp_bans,
        })
    }

    /// The configuration the shards were last given.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// Applies a reload: TLS certificates checked first (nothing changes
    /// if they are unusable), then the XDP maps get the new tenants (old
    /// ones stay, see [`Engine::maintain`]), then every worker gets the new
    /// configuration through its inbox and is woken, and the stream thread
    /// its new certificates. Parked calls and transactions are untouched:
    /// each shard keeps its state and only changes the policy it applies.
    pub fn reload(&mut self, r: Reload) -> Result<(), String> {
        let now = Instant::now();
        let resolver = match (&r.tls_certs, self.tls_addr) {
            (Some(certs), Some(_)) => Some(SniResolver::new(certs).map_err(|e| format!("TLS certificates: {e}"))?),
            _ => None,
        };
        if let (Some(xdp), Some(live), Some(next)) = (self.xdp.as_mut(), self.xdp_live.as_ref(), r.xdp) {
            let next = crate::bpf::XdpConfig {
                ports: live.ports.clone(),
                shards: live.shards,
                shed: xdp_shed(&r.cfg),
                ..next
            };
            let retiring = retire(&self.cfg, live, &next, &self.xdp_retiring, now);
            let mut applied = next.clone();
            applied.tenants.extend(retiring.iter().map(|t| (t.domain.clone(), t.rate)));
            xdp.update(&applied).map_err(|e| format!("XDP maps: {e}"))?;
            if !retiring.is_empty() {
                info!(tenants = retiring.len(), "removed tenants stay in the XDP filter until their parked calls end");
            }
            self.xdp_live = Some(next);
            self.xdp_retiring = retiring;
        }
        let cfg = Arc::new(r.cfg);
        for inbox in self.peers.inboxes.iter() {
            inbox.push_config(cfg.clone());
        }
        if let Err(e) = wake_all(&self.peers) {
            debug!(error = %e, "cannot wake workers with MsgRing; they take the new configuration within 500 ms");
        }
        self.cfg = cfg;
        if let (Some(resolver), Some((_, q))) = (resolver, &self.stream) {
            q.set_certs(resolver);
        }
        Ok(())
    }

    /// Counts a reload in `sipark_config_reloads_total{result}`.
    pub fn count_reload(&self, ok: bool) {
        let c = if ok { &self.reloads.ok } else { &self.reloads.error };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads so far: (ok, error).
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads.ok.load(Ordering::Relaxed), self.reloads.error.load(Ordering::Relaxed))
    }

    /// Housekeeping for the main thread's loop: sweeps bans that are over
    /// out of the XDP ban map (every 10 s), and takes tenants a reload
    /// removed out of the XDP maps once their parked calls are over.
    pub fn maintain(&mut self, now: Instant) {
        if let Some((bans, next)) = self.xdp_bans.as_mut()
            && *next <= now
        {
            *next = now + BAN_SWEEP;
            match bans.sweep() {
                Ok(0) => {}
                Ok(n) => debug!(bans = n, "bans that are over taken out of the XDP map"),
                Err(e) => warn!(error = %e, "cannot sweep the XDP ban map"),
            }
        }
        let (Some(xdp), Some(live)) = (self.xdp.as_mut(), self.xdp_live.as_ref()) else {
            return;
        };
        if !self.xdp_retiring.iter().any(|t| t.until <= now) {
            return;
        }
        let remaining: Vec<Retiring> = self.xdp_retiring.iter().filter(|t| t.until > now).cloned().collect();
        let mut next = live.clone();
        next.tenants.extend(remaining.iter().map(|t| (t.domain.clone(), t.rate)));
        match xdp.update(&next) {
            Ok(()) => {
                info!(
                    removed = self.xdp_retiring.len() - remaining.len(),
                    "removed tenants taken out of the XDP filter"
                );
                self.xdp_retiring = remaining;
            }
            Err(e) => {
                warn!(error = %e, "cannot update the XDP maps; trying again in 10 s");
                for t in &mut self.xdp_retiring {
                    t.until = t.until.max(now + XDP_RETRY);
                }
            }
        }
    }

    /// Tenants a reload removed that the XDP filter still lets through.
    pub fn xdp_retiring(&self) -> usize {
        self.xdp_retiring.len()
    }

    /// Whether the sk_reuseport program steers datagrams.
    pub fn steering(&self) -> bool {
        self.steering.is_some()
    }

    /// Whether the XDP pre-filter is attached.
    pub fn xdp(&self) -> bool {
        self.xdp.is_some()
    }

    /// The address the workers are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TCP listener's address, if TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The TLS listener's address, if TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The `host:port` advertised for TLS, if TLS is on.
    pub fn advertise_tls(&self) -> Option<&str> {
        self.advertise_tls.as_deref()
    }

    /// The stream transports' counters, if the stream thread runs.
    pub fn stream_stats(&self) -> Option<&Arc<shared::StreamStats>> {
        self.stream.as_ref().map(|(_, q)| &q.stats)
    }

    /// The metrics endpoint's address, if serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The I/O backend as set up, e.g. `io_uring (single_issuer+defer_taskrun)`.
    pub fn io_mode(&self) -> &str {
        &self.io_mode
    }

    /// Every worker's stats, by worker id.
    pub fn stats(&self) -> &[Arc<ShardStats>] {
        &self.stats
    }

    /// Whether some worker thread has already ended (before a shutdown
    /// this means it failed).
    pub fn worker_exited(&self) -> bool {
        self.workers.iter().any(JoinHandle::is_finished)
    }

    /// Whether every worker thread has ended.
    pub fn all_exited(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Asks every worker to shut its shard down gracefully, and wakes them.
    /// Idempotent.
    pub fn shutdown(&self) {
        if self.peers.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // Workers check the flag at least every 500 ms anyway; the
        // MsgRing wake-ups make it immediate.
        if let Err(e) = wake_all(&self.peers) {
            debug!(error = %e, "cannot wake workers with MsgRing; they notice within 500 ms");
        }
        // The stream thread stops accepting; it closes its connections
        // once the workers are gone (in `join`).
        if let Some((_, q)) = &self.stream {
            q.wake();
        }
    }

    /// Waits for every worker (after [`Engine::shutdown`], or until they
    /// fail), then stops the metrics thread. Returns the first worker
    /// failure.
    pub fn join(mut self) -> Result<(), String> {
        self.join_all()
    }

    fn join_all(&mut self) -> Result<(), String> {
        let mut result = Ok(());
        for h in self.workers.drain(..) {
            let r = match h.join() {
                Ok(r) => r,
                Err(_) => Err("a worker thread panicked".to_owned()),
            };
            if let Err(e) = r
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        // The workers are gone: nothing more to send on the connections.
        if let Some((h, q)) = self.stream.take() {
            q.stop();
            if h.join().is_err() && result.is_ok() {
                result = Err("the stream thread panicked".to_owned());
            }
        }
        if let Some((h, stop)) = self.metrics.take() {
            stop.store(true, Ordering::Release);
            let _ = h.join();
        }
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.workers.is_empty() || self.metrics.is_some() || self.stream.is_some() {
            self.shutdown();
            let _ = self.join_all();
        }
    }
}

/// The TLS `host:port` for Via and Contact: as given (with the bound port
/// when it has none), else the bound address, or, when that is unspecified
/// (0.0.0.0), the UDP advertise host with the TLS port.
fn tls_advertise(given: Option<&str>, bound: SocketAddr, udp_advertise: &str) -> String {
    match given {
        Some(a) => crate::proto::config::advertise_for(bound, Some(a)),
        None if bound.ip().is_unspecified() => {
            let host = match udp_advertise.strip_prefix('[') {
                Some(rest) => rest.split_once(']').map_or(udp_advertise, |(h, _)| h),
                None => udp_advertise.rsplit_once(':').map_or(udp_advertise, |(h, _)| h),
            };
            if host.contains(':') { format!("[{host}]:{}", bound.port()) } else { format!("{host}:{}", bound.port()) }
        }
        None => bound.to_string(),
    }
}

/// The tenants to keep in the XDP map after a reload from `live` to `next`
/// although `next` does not have them: those removed now, and those removed
/// earlier whose time is not up, unless `next` has them again. A parked
/// call is recalled after its tenant's park timeout, the recall rings for
/// the recall timeout, and its transactions end within 64*T1; until then
/// its tenant's out-of-dialog requests (a retrieve) must still pass.
fn retire(
    old: &Config,
    live: &crate::bpf::XdpConfig,
    next: &crate::bpf::XdpConfig,
    retiring: &[Retiring],
    now: Instant,
) -> Vec<Retiring> {
    let kept: HashSet<&str> = next.tenants.iter().map(|(d, _)| d.as_str()).collect();
    let mut out: Vec<Retiring> = retiring.iter().filter(|t| !kept.contains(t.domain.as_str())).cloned().collect();
    let already: HashSet<String> = out.iter().map(|t| t.domain.clone()).collect();
    for (domain, rate) in &live.tenants {
        if kept.contains(domain.as_str()) || already.contains(domain) {
            continue;
        }
        let park = old.tenant(domain.as_bytes()).map_or(old.defaults.park_timeout, |p| p.park_timeout);
        let until = now + park + old.recall_timeout + old.timers.t1 * 64;
        out.push(Retiring { domain: domain.clone(), rate: *rate, until });
    }
    out
}

/// A worker thread's body: [`worker::run`] with the backend its `init`
/// names. Returns an error text if the worker failed.
fn run_worker(init: WorkerInit) -> Result<(), String> {
    match init.backend {
        Backend::Uring => worker::run::<uring_worker::UringIo>(init),
        Backend::Mmsg => worker::run::<mmsg::MmsgIo>(init),
    }
}

/// Tells workers waiting at start-up to exit, and joins them.
fn abort(gos: Vec<mpsc::Sender<Option<Arc<Peers>>>>, handles: Vec<JoinHandle<Result<(), String>>>) {
    for go in &gos {
        let _ = go.send(None);
    }
    drop(gos);
    for h in handles {
        let _ = h.join();
    }
}

/// Wakes every worker: eventfd workers with a write, ring workers with one
/// `MsgRingData` (kernel 5.18) each from a short-lived ring of the calling
/// thread.
fn wake_all(peers: &Peers) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut ring_fds = Vec::new();
    for w in &peers.wakers {
        match w {
            Waker::Ring(fd) => ring_fds.push(fd),
            Waker::Event(_) => w.wake_event()?,
        }
    }
    if ring_fds.is_empty() {
        return Ok(());
    }
    let n = u32::try_from(ring_fds.len()).unwrap_or(u32::MAX);
    let mut ring = IoUring::new(n.clamp(1, 4096).next_power_of_two())?;
    for chunk in ring_fds.chunks(ring.params().sq_entries() as usize) {
        for fd in chunk {
            let e = opcode::MsgRingData::new(types::Fd(fd.as_raw_fd()), 0, UD_WAKE, None).build().user_data(0);
            // SAFETY: MsgRingData refers to no memory of ours; the target
            // fd is kept open by `peers` for the whole call.
            unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
        }
        ring.submit_and_wait(chunk.len())?;
        ring.completion().for_each(drop);
    }
    Ok(())
}
