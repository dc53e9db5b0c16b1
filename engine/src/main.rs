//! The `sipark` binary: CLI, logging, signals; the work is in
//! [`sipark::io::Engine`].
//!
//! Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the
//! engine cannot start or a worker fails, 2 for bad flags or configuration.
//!
//! SIGHUP re-reads the tenants file and the TLS certificates and hands them
//! to the running engine; a file that does not load leaves everything as
//! it was (docs/decisions/0016-reload.md).

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use sipark::bpf::{self, XdpConfig, XdpMode};
use sipark::io::stream::{self, StreamLimits, StreamOptions, TlsCert, TlsListen};
use sipark::io::{Engine, IoChoice, IoOptions, Reload, Serve, SteerChoice, signal};
use sipark::proto::config::{
    self, Cidr, Config, DatapathPolicy, Limits, OutboundProxy, RateLimit, TenantCert, TenantMode, TenantPolicy,
    Tenants, Timers,
};
use sipark::proto::sip::parse::Uri;
use sipark::proto::sip::{Peer, Transport};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IoArg {
    /// io_uring if this kernel and sandbox allow it, else mmsg (logged).
    Auto,
    /// io_uring only (Linux 6.0+); fail to start otherwise.
    Uring,
    /// recvmmsg/sendmmsg: portable, slower.
    Mmsg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SteerArg {
    /// Steer when BPF is allowed, else warn once and hand off.
    Auto,
    /// Steer, or fail to start.
    On,
    /// The kernel's hash picks the worker; workers hand off.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum XdpModeArg {
    /// Native (driver) mode where the driver has it, else generic (skb).
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode: works on every interface, after the skb is built.
    Skb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// SIP call-park engine: park with a feature code, park-info NOTIFY,
/// retrieve by 3PCC. UDP, TCP and TLS.
#[derive(Debug, Parser)]
#[command(name = "sipark", version, about)]
struct Args {
    /// UDP address to listen on (TCP listens on the same address).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:5060")]
    listen: SocketAddr,
    /// Do not listen for SIP over TCP.
    #[arg(long)]
    no_tcp: bool,
    /// Listen for SIP over TLS on this address (needs --tls-cert and
    /// --tls-key, or tenants with tls_cert and tls_key).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM): the default, for clients whose SNI
    /// names no tenant with its own certificate. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Host[:port] written into Via and Contact for TLS (default: the TLS
    /// listen address, or the advertise host with the TLS port).
    #[arg(long, value_name = "HOST[:PORT]")]
    tls_advertise: Option<String>,
    /// CA certificates (PEM) to verify peers with when sipark must open a
    /// TLS connection itself; without it such messages are dropped.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Most open TCP/TLS connections; past it new ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Close a TCP/TLS connection after this many seconds without traffic.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    tcp_idle_timeout: u64,
    /// Largest SIP message accepted on TCP/TLS (headers and body), bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 65_535)]
    max_message_size: usize,
    /// Bytes queued for one TCP/TLS connection; past it the connection is closed.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    max_write_backlog: usize,
    /// Seconds a TLS handshake (or an outbound TCP connect) may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    tls_handshake_timeout: u64,
    /// Host[:port] written into Via and Contact (default: the listen address).
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise: Option<String>,
    /// Worker threads (= shards); default: the number of usable cores.
    #[arg(long, value_name = "N")]
    workers: Option<u16>,
    /// Do not pin worker i to core i.
    #[arg(long)]
    no_pin: bool,
    /// Tenants file (TOML); without it every domain is a tenant. Re-read
    /// on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tenants: Option<std::path::PathBuf>,
    /// Park feature code (Request-URI user prefix).
    #[arg(long, value_name = "CODE", default_value = "*68")]
    park_fac: String,
    /// Retrieve feature code.
    #[arg(long, value_name = "CODE", default_value = "*88")]
    retrieve_fac: String,
    /// Seconds a call stays parked before it is recalled.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    park_timeout: u64,
    /// Seconds a recall rings the parker before the parked call is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    recall_timeout: u64,
    /// Most calls parked on one extension.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_parks_per_ext: u32,
    /// Most registered contacts per extension.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_contacts: u32,
    /// SIP timer T1 (RTT estimate), milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    t1_ms: u64,
    /// SIP timer T2, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 4000)]
    t2_ms: u64,
    /// SIP timer T4, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    t4_ms: u64,
    /// Serve Prometheus metrics (GET /metrics) on this TCP address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Log format (filter with RUST_LOG; default "info").
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Hang up a bridged call after this many seconds. sipark sees no media,
    /// so this bounds what a lost BYE can leave behind.
    #[arg(long, value_name = "SECS", default_value_t = 43_200)]
    max_call_duration: u64,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = IoArg::Auto)]
    io: IoArg,
    /// Steer each datagram to the worker that owns its tenant with an
    /// sk_reuseport BPF program.
    #[arg(long, value_enum, default_value_t = SteerArg::Auto)]
    steer: SteerArg,
    /// Attach the XDP pre-filter to these interfaces (drops non-SIP,
    /// scanners, blocklisted sources, unknown tenants, tenants over rate).
    #[arg(long, value_name = "IFACE[,IFACE..]", value_delimiter = ',')]
    xdp: Vec<String>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// Default per-tenant limit on out-of-dialog requests, enforced in XDP:
    /// RATE per second, bursts of BURST (default: RATE). Needs --xdp.
    #[arg(long, value_name = "RATE[/BURST]")]
    tenant_rate: Option<RateLimit>,
    /// Drop datagrams from this source network in XDP (repeatable; the
    /// tenants file's `block` list adds to it). Needs --xdp.
    #[arg(long, value_name = "CIDR")]
    block: Vec<Cidr>,
    /// Also drop requests whose User-Agent starts with this (case-insensitive;
    /// repeatable; added to the built-in scanner list). Needs --xdp.
    #[arg(long, value_name = "PREFIX")]
    scanner_ua: Vec<String>,
    /// Trust requests from this source network without digest
    /// authentication, for every tenant (repeatable; a tenant's `trust`
    /// adds to it). With trusted peers set, a tenant without `users`
    /// refuses every other source with 403.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    trust: Vec<Cidr>,
    /// Seconds a digest nonce is accepted after it is issued.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    nonce_validity: u64,
    /// Send NOTIFYs and recall INVITEs to sip:<ext>@<domain> through this
    /// proxy (e.g. sip:10.0.0.5:5060;transport=tcp), which forks them to
    /// the extension's devices, instead of to locally registered contacts.
    #[arg(long, value_name = "URI")]
    outbound_proxy: Option<String>,
    /// Seconds to drain parked calls and transactions on SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    shutdown_grace: u64,
    /// Benchmarks only (the floor of `cargo xtask bench`): serve no SIP;
    /// each worker answers every datagram with one of the size its first two
    /// bytes ask for, on the same I/O path (see `sipark::io::bare`).
    /// Loopback only; no TCP, TLS, steering or XDP.
    #[arg(long, hide = true)]
    bare_io: bool,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// A feature code: non-empty, at most 16 characters of `0-9 * # A-Z a-z`.
fn check_fac(flag: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'#');
    if ok { Ok(()) } else { Err(format!("{flag} {v:?}: expected 1-16 characters of 0-9, *, #, letters")) }
}

/// Everything derived from the flags before any socket is bound.
struct Plan {
    io: IoOptions,
    streams: StreamOptions,
    xdp_desc: String,
    defaults: TenantPolicy,
    tenants: TenantMode,
    tenants_desc: String,
    outbound_proxy: Option<OutboundProxy>,
    nonce_secret: [u8; 32],
}

fn plan(args: &Args) -> Result<Plan, String> {
    check_fac("--park-fac", &args.park_fac)?;
    check_fac("--retrieve-fac", &args.retrieve_fac)?;
    if args.park_fac.eq_ignore_ascii_case(&args.retrieve_fac) {
        return Err("--park-fac and --retrieve-fac must differ".into());
    }
    if args.park_timeout == 0 || args.park_timeout > 86_400 {
        return Err("--park-timeout must be 1..=86400 seconds".into());
    }
    if args.recall_timeout == 0 || args.recall_timeout > 3600 {
        return Err("--recall-timeout must be 1..=3600 seconds".into());
    }
    if args.max_parks_per_ext == 0 || args.max_parks_per_ext > 1000 {
        return Err("--max-parks-per-ext must be 1..=1000".into());
    }
    if args.max_contacts == 0 || args.max_contacts > 1000 {
        return Err("--max-contacts must be 1..=1000".into());
    }
    if args.t1_ms == 0 || args.t1_ms > 60_000 {
        return Err("--t1-ms must be 1..=60000".into());
    }
    if args.t2_ms < args.t1_ms || args.t2_ms > 600_000 {
        return Err("--t2-ms must be at least --t1-ms and at most 600000".into());
    }
    if args.t4_ms == 0 || args.t4_ms > 600_000 {
        return Err("--t4-ms must be 1..=600000".into());
    }
    if args.max_call_duration < 60 || args.max_call_duration > 7 * 86_400 {
        return Err("--max-call-duration must be 60..=604800 seconds".into());
    }
    if args.shutdown_grace > 3600 {
        return Err("--shutdown-grace must be 0..=3600 seconds".into());
    }
    let workers = match args.workers {
        Some(0) => return Err("--workers must be at least 1".into()),
        Some(n) if n > 1024 => return Err("--workers must be at most 1024".into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| u16::try_from(n.get().min(1024)).unwrap_or(1)),
    };
    if let Some(a) = &args.advertise {
        check_advertise("--advertise", a)?;
    }
    let (defaults, tenants, tenants_desc, datapath, tenant_certs) = match &args.tenants {
        None => (
            cli_defaults(args),
            TenantMode::Open,
            "open (every domain)".to_owned(),
            DatapathPolicy::default(),
            Vec::new(),
        ),
        Some(path) => {
            let t = read_tenants(args, path)?;
            let desc = format!("strict ({} from {})", tenant_count(&t.mode), path.display());
            (t.defaults, t.mode, desc, t.datapath, t.certs)
        }
    };
    if args.nonce_validity == 0 || args.nonce_validity > 86_400 {
        return Err("--nonce-validity must be 1..=86400 seconds".into());
    }
    let outbound_proxy = args.outbound_proxy.as_deref().map(outbound_proxy).transpose()?;
    let mut streams = stream_options(args, &tenant_certs)?;
    let xdp = xdp_config(args, &tenants, datapath)?;
    let xdp_desc = xdp.as_ref().map_or_else(|| "off".to_owned(), |x| x.ifaces.join(","));
    let mut io = IoOptions {
        listen: args.listen,
        workers,
        pin: !args.no_pin,
        metrics: args.metrics,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        io: match args.io {
            IoArg::Auto => IoChoice::Auto,
            IoArg::Uring => IoChoice::Uring,
            IoArg::Mmsg => IoChoice::Mmsg,
        },
        steer: match args.steer {
            SteerArg::Auto => SteerChoice::Auto,
            SteerArg::On => SteerChoice::On,
            SteerArg::Off => SteerChoice::Off,
        },
        xdp,
        serve: Serve::Sip,
    };
    let nonce_secret = random_secret()?;
    if args.bare_io {
        bare_io_plan(args, &mut io, &mut streams)?;
    }
    Ok(Plan { io, streams, xdp_desc, defaults, tenants, tenants_desc, outbound_proxy, nonce_secret })
}

/// `--bare-io`: the workers serve the bare responder, which answers anyone
/// with up to 8 KiB, so only on loopback, and with nothing that expects SIP
/// (TCP, TLS, steering, XDP).
fn bare_io_plan(args: &Args, io: &mut IoOptions, streams: &mut StreamOptions) -> Result<(), String> {
    if !args.listen.ip().is_loopback() {
        return Err("--bare-io answers any datagram: it listens on a loopback address only".into());
    }
    if args.tls_listen.is_some() || !args.xdp.is_empty() || args.steer == SteerArg::On {
        return Err("--bare-io serves no SIP: --tls-listen, --xdp and --steer on do not apply".into());
    }
    io.serve = Serve::Bare;
    io.steer = SteerChoice::Off;
    streams.tcp = false;
    streams.tls_client_roots = None;
    Ok(())
}

/// The tenant policy the CLI flags give, which the tenants file overrides.
fn cli_defaults(args: &Args) -> TenantPolicy {
    TenantPolicy {
        park_timeout: Duration::from_secs(args.park_timeout),
        max_parks_per_ext: args.max_parks_per_ext,
        ..TenantPolicy::default()
    }
}

/// Reads and parses the tenants file at `path` (at start and on SIGHUP).
/// Relative `tls_cert`/`tls_key` paths are taken from the file's directory.
fn read_tenants(args: &Args, path: &std::path::Path) -> Result<Tenants, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--tenants {}: {e}", path.display()))?;
    let mut t =
        config::parse_tenants_file(&text, cli_defaults(args)).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    for c in &mut t.certs {
        c.cert = dir.join(&c.cert);
        c.key = dir.join(&c.key);
    }
    Ok(t)
}

/// "3 tenants", "1 tenant".
fn tenant_count(mode: &TenantMode) -> String {
    match mode {
        TenantMode::Strict(m) if m.len() == 1 => "1 tenant".to_owned(),
        TenantMode::Strict(m) => format!("{} tenants", m.len()),
        TenantMode::Open => "every domain".to_owned(),
    }
}

/// The TLS listener's certificates: `--tls-cert`/`--tls-key` as the
/// default, then each tenant's own for its domain (read now, at start and
/// on SIGHUP).
fn tls_certs(args: &Args, tenants: &[TenantCert]) -> Result<Vec<TlsCert>, String> {
    let mut certs = Vec::with_capacity(tenants.len() + 1);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        certs.push(stream::load_cert(None, cert, key).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?);
    }
    for t in tenants {
        let c = stream::load_cert(Some(t.domain.clone()), &t.cert, &t.key)
            .map_err(|e| format!("tenant {:?}: tls_cert/tls_key: {e}", t.domain))?;
        certs.push(c);
    }
    Ok(certs)
}

/// `--outbound-proxy`: a `sip:` or `sips:` URI without a user, its host
/// resolved now (the first address).
fn outbound_proxy(raw: &str) -> Result<OutboundProxy, String> {
    let bad = |why: &str| format!("--outbound-proxy {raw:?}: {why}");
    let uri = Uri::parse(raw.as_bytes()).map_err(|e| bad(e.reason()))?;
    let scheme_ok = uri.scheme.eq_ignore_ascii_case(b"sip") || uri.scheme.eq_ignore_ascii_case(b"sips");
    let transport = match (Transport::of_uri(&uri), uri.param(b"transport")) {
        (Some(t), _) if scheme_ok => t,
        (None, None) if scheme_ok => Transport::Udp,
        _ => return Err(bad("expected a sip: or sips: URI, transport udp, tcp or tls")),
    };
    if uri.user.is_some() || uri.headers.is_some() {
        return Err(bad("a proxy URI has no user part and no headers"));
    }
    let host = std::str::from_utf8(uri.host).map_err(|_| bad("host is not text"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port.unwrap_or(if transport == Transport::Tls { 5061 } else { 5060 });
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("the host has no address"))?;
    Ok(OutboundProxy { peer: Peer { addr, transport }, uri: raw.into() })
}

/// TCP and TLS settings from the flags and the tenants' certificates
/// (reads the certificate files).
fn stream_options(args: &Args, tenant_certs: &[TenantCert]) -> Result<StreamOptions, String> {
    if args.max_connections == 0 || args.max_connections > 1_000_000 {
        return Err("--max-connections must be 1..=1000000".into());
    }
    if args.tcp_idle_timeout == 0 || args.tcp_idle_timeout > 86_400 {
        return Err("--tcp-idle-timeout must be 1..=86400 seconds".into());
    }
    if args.max_message_size < 1024 || args.max_message_size > 1 << 20 {
        return Err("--max-message-size must be 1024..=1048576 bytes".into());
    }
    if args.max_write_backlog < args.max_message_size || args.max_write_backlog > 64 << 20 {
        return Err("--max-write-backlog must be at least --max-message-size and at most 64 MiB".into());
    }
    if args.tls_handshake_timeout == 0 || args.tls_handshake_timeout > 300 {
        return Err("--tls-handshake-timeout must be 1..=300 seconds".into());
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    let tls = match &args.tls_listen {
        None => {
            if args.tls_cert.is_some() || args.tls_advertise.is_some() {
                return Err("--tls-cert, --tls-key and --tls-advertise need --tls-listen".into());
            }
            if !tenant_certs.is_empty() {
                warn!(
                    tenants = tenant_certs.len(),
                    "the tenants file names TLS certificates, but there is no --tls-listen: they are not used"
                );
            }
            None
        }
        Some(listen) => {
            if let Some(a) = &args.tls_advertise {
                check_advertise("--tls-advertise", a)?;
            }
            let certs = tls_certs(args, tenant_certs)?;
            if certs.is_empty() {
                return Err("--tls-listen needs --tls-cert and --tls-key, or tenants with tls_cert and tls_key".into());
            }
            if args.tls_cert.is_none() {
                info!(
                    tenants = certs.len(),
                    "no --tls-cert: a TLS handshake whose SNI names no tenant with a certificate fails"
                );
            }
            Some(TlsListen { listen: *listen, advertise: args.tls_advertise.clone(), certs })
        }
    };
    let tls_client_roots = match &args.tls_ca {
        Some(path) => Some(stream::load_roots(path).map_err(|e| format!("--tls-ca: {e}"))?),
        None => None,
    };
    Ok(StreamOptions {
        tcp: !args.no_tcp,
        tls,
        tls_client_roots,
        limits: StreamLimits {
            max_connections: args.max_connections,
            idle_timeout: Duration::from_secs(args.tcp_idle_timeout),
            max_message: args.max_message_size,
            max_backlog: args.max_write_backlog,
            handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
        },
    })
}

/// A `host[:port]` fit for Via and Contact.
fn check_advertise(flag: &str, a: &str) -> Result<(), String> {
    if a.is_empty() || a.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>;,\"@".contains(&b)) {
        return Err(format!("{flag} {a:?} is not a host[:port]"));
    }
    Ok(())
}

/// The XDP program's settings from the flags and the tenants file; `None`
/// without `--xdp` (then the XDP-only flags are refused).
fn xdp_config(args: &Args, tenants: &TenantMode, datapath: DatapathPolicy) -> Result<Option<XdpConfig>, String> {
    if args.xdp.is_empty() {
        let xdp_only = args.tenant_rate.is_some() || !args.block.is_empty() || !args.scanner_ua.is_empty();
        if xdp_only {
            return Err("--tenant-rate, --block and --scanner-ua need --xdp".into());
        }
        return Ok(None);
    }
    if let Err(e) = bpf::objects_built() {
        return Err(format!("--xdp: {e}"));
    }
    let own: hashbrown::HashMap<&str, RateLimit> = datapath.rates.iter().map(|(d, r)| (d.as_str(), *r)).collect();
    let (strict, tenants) = match tenants {
        TenantMode::Open => (false, datapath.rates.iter().map(|(d, r)| (d.clone(), Some(*r))).collect()),
        TenantMode::Strict(map) => (true, map.keys().map(|d| (d.clone(), own.get(d.as_str()).copied())).collect()),
    };
    let mut block: Vec<(IpAddr, u8)> = args.block.iter().map(|c| (c.addr, c.prefix)).collect();
    block.extend(datapath.block.iter().map(|c| (c.addr, c.prefix)));
    let mut scanners: Vec<String> = bpf::DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect();
    scanners.extend(args.scanner_ua.iter().map(|s| s.to_ascii_lowercase()));
    let cfg = XdpConfig {
        ifaces: args.xdp.clone(),
        mode: match args.xdp_mode {
            XdpModeArg::Auto => XdpMode::Auto,
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Skb => XdpMode::Skb,
        },
        ports: Vec::new(),
        strict,
        tenants,
        default_rate: datapath.default_rate.or(args.tenant_rate),
        block,
        scanners,
    };
    cfg.validate().map_err(|e| format!("--xdp: {e}"))?;
    Ok(Some(cfg))
}

fn build_config(args: &Args, plan: &Plan, bound: SocketAddr) -> Config {
    let advertise = match args.advertise.as_deref() {
        Some(a) => config::advertise_for(bound, Some(a)),
        None if bound.ip().is_unspecified() => {
            let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port());
            warn!(
                listen = %bound,
                advertise = %loopback,
                "listening on an unspecified address: advertising {loopback}; set --advertise to the address peers reach"
            );
            config::advertise_for(loopback, None)
        }
        None => config::advertise_for(bound, None),
    };
    Config {
        advertise,
        park_fac: args.park_fac.clone(),
        retrieve_fac: args.retrieve_fac.clone(),
        defaults: plan.defaults.clone(),
        tenants: plan.tenants.clone(),
        recall_timeout: Duration::from_secs(args.recall_timeout),
        max_contacts: args.max_contacts,
        timers: Timers {
            t1: Duration::from_millis(args.t1_ms),
            t2: Duration::from_millis(args.t2_ms),
            t4: Duration::from_millis(args.t4_ms),
        },
        limits: Limits { max_call_duration: Duration::from_secs(args.max_call_duration), ..Limits::default() },
        trust: args.trust.clone(),
        nonce_secret: plan.nonce_secret,
        nonce_validity: Duration::from_secs(args.nonce_validity),
        outbound_proxy: plan.outbound_proxy.clone(),
        ..Config::default()
    }
}

/// 32 random bytes from the kernel, the digest nonce key of this process.
fn random_secret() -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    let mut filled = 0;
    while filled < key.len() {
        let tail = &mut key[filled..];
        // SAFETY: the pointer and length describe `tail`, which lives across the call.
        let n = unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("getrandom: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(key)
}

/// SIGHUP: re-reads the tenants file and the TLS certificates and hands
/// them to the engine. Any error leaves the running configuration as it is.
fn reload(args: &Args, engine: &mut Engine) {
    let tls = engine.tls_addr().is_some();
    if args.tenants.is_none() && !tls {
        info!("SIGHUP: nothing to reload (no --tenants file and no TLS listener)");
        return;
    }
    match try_reload(args, engine) {
        Ok(desc) => {
            engine.count_reload(true);
            info!(tenants = %desc, tls_certificates = tls, "configuration reloaded");
        }
        Err(e) => {
            engine.count_reload(false);
            error!(error = %e, "reload failed; the running configuration stays");
        }
    }
}

fn try_reload(args: &Args, engine: &mut Engine) -> Result<String, String> {
    let tenants = match &args.tenants {
        Some(path) => Some(read_tenants(args, path)?),
        None => None,
    };
    let tls_certs = match engine.tls_addr() {
        Some(_) => {
            let certs = tls_certs(args, tenants.as_ref().map_or(&[][..], |t| &t.certs))?;
            if certs.is_empty() {
                return Err("the TLS listener would have no certificate (no --tls-cert, no tenant tls_cert)".into());
            }
            Some(certs)
        }
        None => None,
    };
    let mut cfg = Config::clone(engine.config());
    let mut xdp = None;
    let desc = match tenants {
        Some(t) => {
            xdp = xdp_config(args, &t.mode, t.datapath)?;
            let desc = tenant_count(&t.mode);
            cfg.defaults = t.defaults;
            cfg.tenants = t.mode;
            desc
        }
        None => tenant_count(&cfg.tenants),
    };
    engine.reload(Reload { cfg, tls_certs, xdp })?;
    Ok(desc)
}

fn main() -> ExitCode {
    let args = Args::parse(); // exits 2 on bad flags
    init_logging(args.log_format);
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            error!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask and
    // only sigtimedwait below sees SIGINT/SIGTERM/SIGHUP.
    if let Err(e) = signal::block() {
        error!("cannot block SIGINT/SIGTERM/SIGHUP: {e}");
        return ExitCode::from(1);
    }
    let mut advertise = String::new();
    let mut engine = match Engine::start_with(&plan.io, &plan.streams, |bound| {
        let cfg = build_config(&args, &plan, bound);
        advertise.clone_from(&cfg.advertise);
        cfg
    }) {
        Ok(e) => e,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    if plan.io.serve == Serve::Bare {
        warn!("--bare-io: no SIP is served; every datagram is answered with the size it asks for (benchmarks only)");
    }
    info!(
        listen = %engine.local_addr(),
        advertise = %advertise,
        workers = plan.io.workers,
        pinned = plan.io.pin,
        io = %engine.io_mode(),
        steering = engine.steering(),
        xdp = %plan.xdp_desc,
        tenants = %plan.tenants_desc,
        metrics = %engine.metrics_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        tcp = %engine.tcp_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        tls = %engine.tls_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        advertise_tls = engine.advertise_tls().unwrap_or("-"),
        "sipark started"
    );

    let mut failed = false;
    loop {
        match signal::wait(Duration::from_millis(200)) {
            Some(signal::Signal::Hup) => reload(&args, &mut engine),
            Some(sig) => {
                info!(signal = sig.name(), grace_s = plan.io.shutdown_grace.as_secs(), "shutting down");
                break;
            }
            None => {}
        }
        engine.maintain(Instant::now());
        if engine.worker_exited() {
            error!("a worker stopped unexpectedly; shutting down");
            failed = true;
            break;
        }
    }
    engine.shutdown();
    // Workers exit within the grace period (plus their exit wait); a
    // second signal ends the process at once.
    let started = Instant::now();
    while !engine.all_exited() {
        match signal::wait(Duration::from_millis(100)) {
            Some(signal::Signal::Hup) => info!("SIGHUP during shutdown: ignored"),
            Some(sig) => {
                warn!(signal = sig.name(), "second signal: exiting without draining");
                std::process::exit(1);
            }
            None => {}
        }
        if started.elapsed() > plan.io.shutdown_grace + Duration::from_secs(5) {
            warn!("workers did not stop in time; exiting");
            std::process::exit(1);
        }
    }
    match engine.join() {
        Ok(()) if !failed => {
            info!("shutdown complete");
            ExitCode::SUCCESS
        }
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            error!("worker failed: {e}");
            ExitCode::from(1)
        }
    }
}
