//! From flags to a [`Plan`]: every check of the flags and of the files they
//! name, before any socket is bound. An error is the text the binary logs
//! as `configuration error: …` before it exits 2.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::LOG;
use super::args::{Args, IoArg, SteerArg, XdpModeArg};
use super::sources::Sources;
use crate::bpf::{self, XdpConfig, XdpMode};
use crate::io::media::MediaOptions;
use crate::io::stream::{StreamLimits, StreamOptions, TlsListen};
use crate::io::tls::TlsCert;
use crate::io::{IoChoice, IoOptions, Serve, SteerChoice};
use crate::proto::config::{
    self, Config, DatapathPolicy, Guard, Limits, Music, OutboundProxy, RateLimit, TenantCert, TenantMode, TenantPolicy,
    Tenants, Timers,
};
use crate::proto::media::audio::Audio;
use crate::proto::overload;
use crate::proto::sip::parse::Uri;
use crate::proto::sip::{Peer, Transport};

/// Everything the flags decide, before any socket is bound.
#[derive(Debug)]
pub struct Plan {
    /// The UDP workers.
    pub io: IoOptions,
    /// TCP and TLS.
    pub streams: StreamOptions,
    /// The shards' configuration but for the advertised address, which
    /// waits for the bound one: see [`Plan::config`]. Its `advertise` is
    /// empty, never a usable value.
    template: Config,
    /// `--advertise` as given.
    advertise: Option<String>,
    /// For the start-up line: the `--xdp` interfaces, or `off`.
    pub xdp_desc: String,
    /// For the start-up line: `open (every domain)` or
    /// `strict (N tenants from FILE)`.
    pub tenants_desc: String,
}

impl Plan {
    /// The shards' configuration once UDP is bound on `bound`: advertised
    /// as `--advertise` says (with the bound port if it names none), else
    /// as bound; an unspecified address (`0.0.0.0`) is advertised as
    /// loopback, with a warning.
    pub fn config(&self, bound: SocketAddr) -> Config {
        let advertise = match self.advertise.as_deref() {
            Some(a) => config::advertise_for(bound, Some(a)),
            None if bound.ip().is_unspecified() => {
                let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port());
                warn!(
                    target: LOG,
                    listen = %bound,
                    advertise = %loopback,
                    "listening on an unspecified address: advertising {loopback}; set --advertise to the address peers reach"
                );
                config::advertise_for(loopback, None)
            }
            None => config::advertise_for(bound, None),
        };
        Config { advertise, ..self.template.clone() }
    }
}

/// Checks the flags and reads what they name (through `sources`): the
/// tenants file, the TLS certificates, the CA file, the outbound proxy's
/// address, the nonce key.
pub fn plan(args: &Args, sources: &impl Sources) -> Result<Plan, String> {
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
        None => u16::try_from(sources.cores().clamp(1, 1024)).unwrap_or(1),
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
            let t = read_tenants(args, path, sources)?;
            let desc = format!("strict ({} from {})", tenant_count(&t.mode), path.display());
            (t.defaults, t.mode, desc, t.datapath, t.certs)
        }
    };
    if args.nonce_validity == 0 || args.nonce_validity > 86_400 {
        return Err("--nonce-validity must be 1..=86400 seconds".into());
    }
    let guard = guard_policy(args)?;
    let outbound_proxy = args.outbound_proxy.as_deref().map(|raw| outbound_proxy(raw, sources)).transpose()?;
    let mut streams = stream_options(args, &tenant_certs, sources)?;
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
        media: Some(MediaOptions { listen: args.media_listen, port: args.media_port, advertise: args.media_advertise }),
    };
    let nonce_secret = sources.nonce_secret().map_err(|e| format!("getrandom: {e}"))?;
    if args.bare_io {
        bare_io_plan(args, &mut io, &mut streams)?;
    }
    let template = Config {
        advertise: String::new(),
        park_fac: args.park_fac.clone(),
        retrieve_fac: args.retrieve_fac.clone(),
        defaults,
        tenants,
        recall_timeout: Duration::from_secs(args.recall_timeout),
        max_contacts: args.max_contacts,
        timers: Timers {
            t1: Duration::from_millis(args.t1_ms),
            t2: Duration::from_millis(args.t2_ms),
            t4: Duration::from_millis(args.t4_ms),
        },
        limits: Limits {
            max_call_duration: Duration::from_secs(args.max_call_duration),
            overload: overload_bounds(args)?,
            ..Limits::default()
        },
        trust: args.trust.clone(),
        nonce_secret,
        nonce_validity: Duration::from_secs(args.nonce_validity),
        guard,
        outbound_proxy,
        ..Config::default()
    };
    let music = load_music(args, &template, sources)?;
    let template = Config { music, ..template };
    Ok(Plan { io, streams, template, advertise: args.advertise.clone(), xdp_desc, tenants_desc })
}

/// `--auth-*`: the failure budgets and bans (docs/decisions/0019).
fn guard_policy(args: &Args) -> Result<Guard, String> {
    if args.auth_failures > 1000 || args.auth_user_failures > 100_000 {
        return Err("--auth-failures must be 0..=1000 and --auth-user-failures 0..=100000".into());
    }
    if args.auth_window == 0 || args.auth_window > 86_400 {
        return Err("--auth-window must be 1..=86400 seconds".into());
    }
    if args.auth_ban == 0 || args.auth_ban > 86_400 {
        return Err("--auth-ban must be 1..=86400 seconds".into());
    }
    if args.auth_ban_max < args.auth_ban || args.auth_ban_max > 30 * 86_400 {
        return Err("--auth-ban-max must be at least --auth-ban and at most 2592000 seconds".into());
    }
    Ok(Guard {
        source_failures: args.auth_failures,
        user_failures: args.auth_user_failures,
        window: Duration::from_secs(args.auth_window),
        ban: Duration::from_secs(args.auth_ban),
        max_ban: Duration::from_secs(args.auth_ban_max),
    })
}

/// Overload control's bounds from `--overload-*`; `None` with
/// `--overload-delay-ms 0` (docs/decisions/0021-overload-control.md).
fn overload_bounds(args: &Args) -> Result<Option<overload::Bounds>, String> {
    let ms = |v: f64| Duration::from_nanos((v * 1e6).round() as u64);
    let (high, low) = (args.overload_delay_ms, args.overload_resume_ms);
    if high == 0.0 {
        return Ok(None);
    }
    if !(0.05..=10_000.0).contains(&high) {
        return Err("--overload-delay-ms must be 0 (off) or 0.05..=10000".into());
    }
    if !(low > 0.0 && low <= high) {
        return Err("--overload-resume-ms must be above 0 and at most --overload-delay-ms".into());
    }
    if args.overload_window_ms > 60_000 {
        return Err("--overload-window-ms must be 0..=60000".into());
    }
    if args.overload_hold_ms > 600_000 {
        return Err("--overload-hold-ms must be 0..=600000".into());
    }
    let v = &args.overload_retry_after;
    let secs = |t: &str| t.trim().parse::<u32>().ok().filter(|n| (1..=3600).contains(n));
    let retry_after = match v.split_once('-') {
        None => secs(v).map(|n| (n, n)),
        Some((a, b)) => secs(a).zip(secs(b)).filter(|(a, b)| a <= b),
    }
    .ok_or_else(|| format!("--overload-retry-after {v:?}: expected N or MIN-MAX seconds, 1..=3600, MIN <= MAX"))?;
    Ok(Some(overload::Bounds {
        high: ms(high),
        low: ms(low),
        window: Duration::from_millis(args.overload_window_ms),
        hold: Duration::from_millis(args.overload_hold_ms),
        retry_after,
    }))
}

/// A feature code: non-empty, at most 16 characters of `0-9 * # A-Z a-z`.
fn check_fac(flag: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'#');
    if ok { Ok(()) } else { Err(format!("{flag} {v:?}: expected 1-16 characters of 0-9, *, #, letters")) }
}

/// A `host[:port]` fit for Via and Contact.
fn check_advertise(flag: &str, a: &str) -> Result<(), String> {
    if a.is_empty() || a.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"<>;,\"@".contains(&b)) {
        return Err(format!("{flag} {a:?} is not a host[:port]"));
    }
    Ok(())
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
    io.media = None;
    streams.tcp = false;
    streams.tls_client_roots = None;
    Ok(())
}

/// The tenant policy the CLI flags give, which the tenants file overrides.
fn cli_defaults(args: &Args) -> TenantPolicy {
    TenantPolicy {
        park_timeout: Duration::from_secs(args.park_timeout),
        max_parks_per_ext: args.max_parks_per_ext,
        moh: args.moh.clone(),
        ..TenantPolicy::default()
    }
}

/// The music `cfg`'s policies name, each file read (through `sources`)
/// and decoded once: at start-up, and again on each reload, where an
/// error keeps the running configuration and its audio.
pub(super) fn load_music(args: &Args, cfg: &Config, sources: &impl Sources) -> Result<Music, String> {
    if args.moh_max_streams > 1_000_000 {
        return Err("--moh-max-streams must be 0..=1000000".into());
    }
    let mut files = hashbrown::HashMap::new();
    for path in cfg.music_files() {
        let bytes = sources.read(Path::new(&*path)).map_err(|e| format!("moh {path}: {e}"))?;
        let audio = Audio::from_wav(&bytes).map_err(|e| format!("moh {path}: {e}"))?;
        files.insert(path, Arc::new(audio));
    }
    Ok(Music { files, max_streams: args.moh_max_streams, ..Music::default() })
}

/// Reads and parses the tenants file at `path` (at start and on SIGHUP).
/// Relative `tls_cert`/`tls_key` paths are taken from the file's directory.
pub(super) fn read_tenants(args: &Args, path: &Path, sources: &impl Sources) -> Result<Tenants, String> {
    let text = sources.read_to_string(path).map_err(|e| format!("--tenants {}: {e}", path.display()))?;
    let mut t =
        config::parse_tenants_file(&text, cli_defaults(args)).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for c in &mut t.certs {
        c.cert = dir.join(&c.cert);
        c.key = dir.join(&c.key);
    }
    Ok(t)
}

/// "3 tenants", "1 tenant".
pub(super) fn tenant_count(mode: &TenantMode) -> String {
    match mode {
        TenantMode::Strict(m) if m.len() == 1 => "1 tenant".to_owned(),
        TenantMode::Strict(m) => format!("{} tenants", m.len()),
        TenantMode::Open => "every domain".to_owned(),
    }
}

/// The TLS listener's certificates: `--tls-cert`/`--tls-key` as the
/// default, then each tenant's own for its domain (read now, at start and
/// on SIGHUP).
pub(super) fn tls_certs(args: &Args, tenants: &[TenantCert], sources: &impl Sources) -> Result<Vec<TlsCert>, String> {
    let mut certs = Vec::with_capacity(tenants.len() + 1);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        certs.push(sources.load_cert(None, cert, key).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?);
    }
    for t in tenants {
        let c = sources
            .load_cert(Some(t.domain.clone()), &t.cert, &t.key)
            .map_err(|e| format!("tenant {:?}: tls_cert/tls_key: {e}", t.domain))?;
        certs.push(c);
    }
    Ok(certs)
}

/// `--outbound-proxy`: a `sip:` or `sips:` URI without a user, its host
/// resolved now (the first address).
fn outbound_proxy(raw: &str, sources: &impl Sources) -> Result<OutboundProxy, String> {
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
    let addr = sources
        .resolve(host, port)
        .map_err(|e| bad(&e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| bad("the host has no address"))?;
    Ok(OutboundProxy { peer: Peer { addr, transport }, uri: raw.into() })
}

/// TCP and TLS settings from the flags and the tenants' certificates
/// (which are read now).
fn stream_options(args: &Args, tenant_certs: &[TenantCert], sources: &impl Sources) -> Result<StreamOptions, String> {
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
                    target: LOG,
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
            let certs = tls_certs(args, tenant_certs, sources)?;
            if certs.is_empty() {
                return Err("--tls-listen needs --tls-cert and --tls-key, or tenants with tls_cert and tls_key".into());
            }
            if args.tls_cert.is_none() {
                info!(
                    target: LOG,
                    tenants = certs.len(),
                    "no --tls-cert: a TLS handshake whose SNI names no tenant with a certificate fails"
                );
            }
            Some(TlsListen { listen: *listen, advertise: args.tls_advertise.clone(), certs })
        }
    };
    let tls_client_roots = match &args.tls_ca {
        Some(path) => Some(sources.load_roots(path).map_err(|e| format!("--tls-ca: {e}"))?),
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

/// The XDP program's settings from the flags and the tenants file; `None`
/// without `--xdp` (then the XDP-only flags are refused).
pub(super) fn xdp_config(
    args: &Args,
    tenants: &TenantMode,
    datapath: DatapathPolicy,
) -> Result<Option<XdpConfig>, String> {
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
        // Both filled in by the I/O layer, which knows the workers and the
        // configuration (io::Engine::start).
        shards: 1,
        shed: None,
    };
    cfg.validate().map_err(|e| format!("--xdp: {e}"))?;
    Ok(Some(cfg))
}
