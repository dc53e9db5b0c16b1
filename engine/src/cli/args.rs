//! The flags (clap derive). Each field's doc comment is its `--help`
//! text; [`super::plan()`] checks the values and turns them into a plan.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::proto::config::{Cidr, DEFAULT_MAX_STREAMS, Moh, RateLimit};

/// `--moh`: `tune`, `off` or a file's path.
fn parse_moh(v: &str) -> Result<Moh, String> {
    Moh::parse(v).map_err(str::to_owned)
}

/// `--io`: which I/O backend the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoArg {
    /// io_uring if this kernel and sandbox allow it, else mmsg (logged).
    Auto,
    /// io_uring only (Linux 6.0+); fail to start otherwise.
    Uring,
    /// recvmmsg/sendmmsg: portable, slower.
    Mmsg,
}

/// `--steer`: whether an sk_reuseport program picks each datagram's worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SteerArg {
    /// Steer when BPF is allowed, else warn once and hand off.
    Auto,
    /// Steer, or fail to start.
    On,
    /// The kernel's hash picks the worker; workers hand off.
    Off,
}

/// `--xdp-mode`: how the XDP pre-filter is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode where the driver has it, else generic (skb).
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode: works on every interface, after the skb is built.
    Skb,
}

/// `--log-format`. (The variants have no doc comments: `--help` lists
/// them as plain possible values.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// SIP call-park engine: park with a feature code, park-info NOTIFY,
/// retrieve by 3PCC. UDP, TCP and TLS.
#[derive(Debug, Parser)]
#[command(name = "sipark", version, about)]
// The doc comments are help text, not Markdown: `Host[:port]` is no link, `<ext>` no tag.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
pub struct Args {
    /// UDP address to listen on (TCP listens on the same address).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:5060")]
    pub listen: SocketAddr,
    /// Do not listen for SIP over TCP.
    #[arg(long)]
    pub no_tcp: bool,
    /// Listen for SIP over TLS on this address (needs --tls-cert and
    /// --tls-key, or tenants with tls_cert and tls_key).
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM): the default, for clients whose SNI
    /// names no tenant with its own certificate. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Host[:port] written into Via and Contact for TLS (default: the TLS
    /// listen address, or the advertise host with the TLS port).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub tls_advertise: Option<String>,
    /// CA certificates (PEM) to verify peers with when sipark must open a
    /// TLS connection itself; without it such messages are dropped.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Most open TCP/TLS connections; past it new ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Close a TCP/TLS connection after this many seconds without traffic.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub tcp_idle_timeout: u64,
    /// Largest SIP message accepted on TCP/TLS (headers and body), bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 65_535)]
    pub max_message_size: usize,
    /// Bytes queued for one TCP/TLS connection; past it the connection is closed.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub max_write_backlog: usize,
    /// Seconds a TLS handshake (or an outbound TCP connect) may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tls_handshake_timeout: u64,
    /// Host[:port] written into Via and Contact (default: the listen address).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,
    /// Music on hold for parked calls (the default of every tenant):
    /// `tune` (sipark's own), `off` (inactive hold, silence), or an 8 kHz
    /// mono WAV file (16-bit PCM, µ-law or A-law). Re-read on SIGHUP.
    #[arg(long, value_name = "FILE|tune|off", default_value = "tune", value_parser = parse_moh)]
    pub moh: Moh,
    /// Address the media sockets of music on hold bind (default: the
    /// listen address's).
    #[arg(long, value_name = "IP")]
    pub media_listen: Option<IpAddr>,
    /// First media port: worker i sends music from PORT + 2i. 0: each
    /// worker picks a free port (written into its SDP).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub media_port: u16,
    /// Address written into SDP for the media sockets (default: the bound
    /// address, else the advertised host's).
    #[arg(long, value_name = "IP")]
    pub media_advertise: Option<IpAddr>,
    /// Most music-on-hold streams per worker; calls past it are held in
    /// silence (counted in sipark_moh_refused_total).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_STREAMS)]
    pub moh_max_streams: u32,
    /// Worker threads (= shards); default: the number of usable cores.
    #[arg(long, value_name = "N")]
    pub workers: Option<u16>,
    /// Do not pin worker i to core i.
    #[arg(long)]
    pub no_pin: bool,
    /// Tenants file (TOML); without it every domain is a tenant. Re-read
    /// on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Park feature code (Request-URI user prefix).
    #[arg(long, value_name = "CODE", default_value = "*68")]
    pub park_fac: String,
    /// Retrieve feature code.
    #[arg(long, value_name = "CODE", default_value = "*88")]
    pub retrieve_fac: String,
    /// Seconds a call stays parked before it is recalled.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub park_timeout: u64,
    /// Seconds a recall rings the parker before the parked call is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub recall_timeout: u64,
    /// Most calls parked on one extension.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_parks_per_ext: u32,
    /// Most registered contacts per extension.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_contacts: u32,
    /// SIP timer T1 (RTT estimate), milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub t1_ms: u64,
    /// SIP timer T2, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 4000)]
    pub t2_ms: u64,
    /// SIP timer T4, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub t4_ms: u64,
    /// Serve Prometheus metrics (GET /metrics) on this TCP address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Log format (filter with RUST_LOG; default "info").
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Hang up a bridged call after this many seconds. sipark sees no media,
    /// so this bounds what a lost BYE can leave behind.
    #[arg(long, value_name = "SECS", default_value_t = 43_200)]
    pub max_call_duration: u64,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = IoArg::Auto)]
    pub io: IoArg,
    /// Steer each datagram to the worker that owns its tenant with an
    /// sk_reuseport BPF program.
    #[arg(long, value_enum, default_value_t = SteerArg::Auto)]
    pub steer: SteerArg,
    /// Attach the XDP pre-filter to these interfaces (drops non-SIP,
    /// scanners, blocklisted sources, unknown tenants, tenants over rate).
    #[arg(long, value_name = "IFACE[,IFACE..]", value_delimiter = ',')]
    pub xdp: Vec<String>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    /// Default per-tenant limit on out-of-dialog requests, enforced in XDP:
    /// RATE per second, bursts of BURST (default: RATE). Needs --xdp.
    #[arg(long, value_name = "RATE[/BURST]")]
    pub tenant_rate: Option<RateLimit>,
    /// Drop datagrams from this source network in XDP (repeatable; the
    /// tenants file's `block` list adds to it). Needs --xdp.
    #[arg(long, value_name = "CIDR")]
    pub block: Vec<Cidr>,
    /// Also drop requests whose User-Agent starts with this (case-insensitive;
    /// repeatable; added to the built-in scanner list). Needs --xdp.
    #[arg(long, value_name = "PREFIX")]
    pub scanner_ua: Vec<String>,
    /// Trust requests from this source network without digest
    /// authentication, for every tenant (repeatable; a tenant's `trust`
    /// adds to it). With trusted peers set, a tenant without `users`
    /// refuses every other source with 403.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub trust: Vec<Cidr>,
    /// Seconds a digest nonce is accepted after it is issued.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub nonce_validity: u64,
    /// Failed digest responses one source (an IPv4 address, an IPv6 /64)
    /// may make within --auth-window; at this many it is banned: all it
    /// sends is dropped (with --xdp, in XDP). 0: never ban. Trusted peers
    /// are never banned.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub auth_failures: u32,
    /// Failed digest responses for one user, from any sources, within
    /// --auth-window; at this many the user is locked: its credentials are
    /// checked only from sources it authenticated from. 0: never lock.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub auth_user_failures: u32,
    /// Seconds failures are counted in, from the first one.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub auth_window: u64,
    /// Seconds of a first ban or lock; each repeat doubles it.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub auth_ban: u64,
    /// Longest ban or lock, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub auth_ban_max: u64,
    /// Send NOTIFYs and recall INVITEs to sip:<ext>@<domain> through this
    /// proxy (e.g. sip:10.0.0.5:5060;transport=tcp), which forks them to
    /// the extension's devices, instead of to locally registered contacts.
    #[arg(long, value_name = "URI")]
    pub outbound_proxy: Option<String>,
    /// Overload control: when a worker's receive path queues this long (the
    /// oldest datagram of each batch waited this many milliseconds) for
    /// --overload-window-ms, it is overloaded and answers new out-of-dialog
    /// requests (park, retrieve, REGISTER; not OPTIONS) 503 with
    /// Retry-After, all of them past this delay. In-dialog requests, ACK,
    /// CANCEL and responses are always served. 0 turns overload control off.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    pub overload_delay_ms: f64,
    /// Milliseconds the delay must stay at or over --overload-delay-ms
    /// before a worker is overloaded (a burst or a short stall is not).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub overload_window_ms: u64,
    /// The delay, milliseconds, at or under which an overloaded worker
    /// admits every new request again; between it and --overload-delay-ms
    /// it admits a share that falls as the delay grows (retrieves: all).
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    pub overload_resume_ms: f64,
    /// Milliseconds the delay must stay under --overload-resume-ms before
    /// a worker is no longer overloaded.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub overload_hold_ms: u64,
    /// Retry-After of overload control's 503, seconds: N, or MIN-MAX to
    /// draw each one at random (so refused clients do not return together).
    #[arg(long, value_name = "SECS[-SECS]", default_value = "4-8")]
    pub overload_retry_after: String,
    /// Seconds to drain parked calls and transactions on SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Benchmarks only (the floor of `cargo xtask bench`): serve no SIP;
    /// each worker answers every datagram with one of the size its first two
    /// bytes ask for, on the same I/O path (see `sipark::io::bare`).
    /// Loopback only; no TCP, TLS, steering or XDP.
    #[arg(long, hide = true)]
    pub bare_io: bool,
}
