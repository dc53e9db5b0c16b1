//! Engine configuration: what the CLI and the tenants file decide.
//!
//! Parsing the tenants file's *text* is here; reading the file is the I/O
//! layer's job.

use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Deserialize;

mod music;
pub use music::{DEFAULT_MAX_STREAMS, Moh, Music};

use std::fmt;
use std::str::FromStr;

/// Which document a NOTIFY carries; configured per tenant and per
/// User-Agent pattern (`notify = ["park-info", "dialog-info"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum BodyKind {
    /// sipark's own `application/park-info+xml` (docs/park-info.md §4).
    ParkInfo,
    /// BroadWorks-style `application/x-broadworks-callpark-info+xml`.
    BroadWorks,
    /// RFC 4235 `application/dialog-info+xml`, for a BLF key.
    DialogInfo,
}

impl BodyKind {
    /// Every kind, in the order the configuration documents them.
    pub const ALL: [BodyKind; 3] = [BodyKind::ParkInfo, BodyKind::BroadWorks, BodyKind::DialogInfo];

    /// The `Content-Type` of the NOTIFY.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "application/park-info+xml",
            BodyKind::BroadWorks => "application/x-broadworks-callpark-info+xml",
            BodyKind::DialogInfo => "application/dialog-info+xml",
        }
    }

    /// The `Event` header of the NOTIFY.
    ///
    /// BroadWorks carries its call park body in the NOTIFYs of the shared
    /// call appearance package `call-info`; there is no separate event
    /// package for it (docs/park-info.md §11.1).
    pub fn event(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "park-info",
            BodyKind::BroadWorks => "call-info",
            BodyKind::DialogInfo => "dialog",
        }
    }

    /// The name used in the tenants file.
    pub fn name(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "park-info",
            BodyKind::BroadWorks => "broadworks",
            BodyKind::DialogInfo => "dialog-info",
        }
    }
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A body kind name that is not one of [`BodyKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBodyKind(pub String);

impl fmt::Display for UnknownBodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name came from a config file: show at most 64 characters of it.
        let shown: String = self.0.chars().take(64).collect();
        write!(f, "unknown notify body {shown:?} (expected \"park-info\", \"broadworks\" or \"dialog-info\")")
    }
}

impl std::error::Error for UnknownBodyKind {}

impl FromStr for BodyKind {
    type Err = UnknownBodyKind;

    /// Accepts the tenants-file names, in any ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BodyKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownBodyKind(s.into()))
    }
}

impl TryFrom<String> for BodyKind {
    type Error = UnknownBodyKind;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// RFC 3261 timer base values (§17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; 500 ms by default.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE
    /// responses; 4 s by default.
    pub t2: Duration,
    /// Longest time a message stays in the network; 5 s by default.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// Who a recall rings once the park timeout passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecallTo {
    /// The parker's registered devices.
    #[default]
    Parker,
    /// The parker's devices, joined after `recall_group_delay` by the
    /// recall ring group's.
    ParkerThenGroup,
    /// The recall ring group's devices only.
    Group,
}

impl std::str::FromStr for RecallTo {
    type Err = String;

    fn from_str(s: &str) -> Result<RecallTo, String> {
        match s {
            "parker" => Ok(RecallTo::Parker),
            "parker-then-group" => Ok(RecallTo::ParkerThenGroup),
            "group" => Ok(RecallTo::Group),
            _ => Err(format!("{s:?}: expected parker, parker-then-group or group")),
        }
    }
}

/// Per-tenant settings (from the tenants file, or the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    pub park_timeout: Duration,
    pub max_parks_per_ext: u32,
    pub recall_to: RecallTo,
    /// Extensions rung by a group recall, in order.
    pub recall_group: Vec<Box<str>>,
    /// With `parker-then-group`: how long the parker rings alone.
    pub recall_group_delay: Duration,
    /// `Alert-Info` value on recall INVITEs (empty: none).
    pub alert_info: Box<str>,
    /// Written before the parked party's display name on recall INVITEs.
    pub recall_prefix: Box<str>,
    /// Send the parker the park-info NOTIFYs of the calls it parked.
    pub notify_parker: bool,
    /// Park groups: `*58` parks on the first member without a parked
    /// call, and every member is told of every member's parks.
    pub park_groups: Vec<Box<[Box<str>]>>,
    /// Extension → index in `park_groups`, so a lookup does not scan
    /// every group (a tenant may have 1,000 groups of 100).
    pub group_index: HashMap<Box<str>, u32>,
    /// The documents every device is sent (`park-info` by default).
    pub notify: NotifySet,
    /// Per-device overrides: the first pattern matching a REGISTER's
    /// `User-Agent` (`*` matches any run, ASCII case ignored) replaces
    /// `notify` for that device.
    pub notify_ua: Vec<(Box<str>, NotifySet)>,
    /// Sources of this tenant's requests that need no authentication
    /// (its proxies), besides the global `--trust` list.
    pub trust: Vec<Cidr>,
    /// Digest credentials, user → password; the realm is the tenant's
    /// domain. Empty: no digest authentication for this tenant.
    pub users: HashMap<Box<str>, Password>,
    /// What its parked calls hear (`moh`).
    pub moh: Moh,
}

/// A password from the tenants file; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Box<[u8]>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// How a request from some source is admitted for a tenant
/// ([`Config::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From a trusted peer (`--trust`, or the tenant's `trust`).
    Trusted,
    /// The tenant has credentials: the request must carry good ones.
    Digest,
    /// Trusted peers are configured, the source is not one, and the tenant
    /// has no credentials to offer: refused (403).
    Refused,
    /// Nothing is configured: every source is accepted (the embedded
    /// defaults, for a lab).
    Open,
}

/// A set of notification documents, one bit per [`BodyKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotifySet(pub u8);

impl NotifySet {
    pub const PARK_INFO: NotifySet = NotifySet(1);

    pub fn of(kinds: &[BodyKind]) -> NotifySet {
        NotifySet(kinds.iter().fold(0, |m, k| m | NotifySet::bit(*k)))
    }

    fn bit(k: BodyKind) -> u8 {
        1 << BodyKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
    }

    pub fn contains(self, k: BodyKind) -> bool {
        self.0 & NotifySet::bit(k) != 0
    }

    /// The kinds in the set, in [`BodyKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = BodyKind> {
        BodyKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// `*`-glob match, ASCII case ignored (User-Agent patterns).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return pattern.eq_ignore_ascii_case(text);
    };
    let (head, mut rest) = (&pattern[..star], &pattern[star + 1..]);
    if text.len() < head.len() || !text[..head.len()].eq_ignore_ascii_case(head) {
        return false;
    }
    let mut text = &text[head.len()..];
    // Each further `*`-separated piece is matched at its first place.
    loop {
        match rest.iter().position(|&b| b == b'*') {
            Some(next) => {
                let piece = &rest[..next];
                let Some(at) =
                    text.windows(piece.len().max(1)).position(|w| piece.is_empty() || w.eq_ignore_ascii_case(piece))
                else {
                    return piece.is_empty();
                };
                text = &text[at + piece.len()..];
                rest = &rest[next + 1..];
            }
            None => return text.len() >= rest.len() && text[text.len() - rest.len()..].eq_ignore_ascii_case(rest),
        }
    }
}

impl TenantPolicy {
    /// What a device with this `User-Agent` is sent.
    pub fn notify_for(&self, user_agent: Option<&[u8]>) -> NotifySet {
        user_agent
            .and_then(|ua| self.notify_ua.iter().find(|(p, _)| glob_match(p.as_bytes(), ua)))
            .map_or(self.notify, |(_, set)| *set)
    }
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            park_timeout: Duration::from_secs(300),
            max_parks_per_ext: 8,
            recall_to: RecallTo::Parker,
            recall_group: Vec::new(),
            recall_group_delay: Duration::from_secs(15),
            alert_info: DEFAULT_ALERT_INFO.into(),
            recall_prefix: DEFAULT_RECALL_PREFIX.into(),
            notify_parker: false,
            park_groups: Vec::new(),
            group_index: HashMap::new(),
            notify: NotifySet::PARK_INFO,
            notify_ua: Vec::new(),
            trust: Vec::new(),
            users: HashMap::new(),
            moh: Moh::Tune,
        }
    }
}

/// RFC 7462's alert URN for a call coming back from a transfer.
pub const DEFAULT_ALERT_INFO: &str = "<urn:alert:service:recall:transfer>";
pub const DEFAULT_RECALL_PREFIX: &str = "[Recall] ";

impl TenantPolicy {
    /// The park group `ext` belongs to (an extension is in at most one).
    pub fn group_of(&self, ext: &[u8]) -> Option<&[Box<str>]> {
        let ext = std::str::from_utf8(ext).ok()?;
        let i = *self.group_index.get(ext)?;
        self.park_groups.get(i as usize).map(|g| &**g)
    }
}

/// Which domains are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantMode {
    /// Every domain is a tenant with the default policy.
    Open,
    /// Only the listed (lowercase) domains are served.
    Strict(HashMap<String, TenantPolicy>),
}

/// Everything a shard needs to know; shared read-only by all shards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host (and port) written into Via and Contact, for UDP and TCP.
    pub advertise: String,
    /// Host and port written for TLS (`sips:`).
    pub advertise_tls: String,
    pub park_fac: String,
    pub retrieve_fac: String,
    /// Group park feature code (`*58`).
    pub group_park_fac: String,
    pub defaults: TenantPolicy,
    pub tenants: TenantMode,
    pub recall_timeout: Duration,
    pub max_contacts: u32,
    /// Bounds on REGISTER expiry, seconds.
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub timers: Timers,
    /// Caps that keep a shard's memory bounded whatever arrives.
    pub limits: Limits,
    /// Sources trusted for every tenant (`--trust`): no authentication.
    pub trust: Vec<Cidr>,
    /// Key of the stateless digest nonces. `main` draws it at random at
    /// start, so nonces from before a restart are unknown (re-challenged).
    pub nonce_secret: [u8; 32],
    /// How long after it is issued a nonce is accepted (`stale=true` past it).
    pub nonce_validity: Duration,
    /// Failure budgets and bans for digest authentication (`--auth-*`).
    pub guard: Guard,
    /// `--outbound-proxy`: NOTIFYs and recall INVITEs go to
    /// `sip:<ext>@<domain>` through this proxy, which forks them to the
    /// extension's devices, instead of to the embedded registrar's contacts.
    pub outbound_proxy: Option<OutboundProxy>,
    /// Music on hold: the audio the policies name, and the streams' limit.
    pub music: Music,
}

/// The proxy of outbound-proxy mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundProxy {
    /// Where requests are sent (resolved at start).
    pub peer: super::sip::Peer,
    /// Its URI as configured, written as a loose-routing `Route`.
    pub uri: Box<str>,
}

/// Failure budgets for digest authentication, and what happens past them
/// (docs/decisions/0019-password-guessing.md). Fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// A source (an IPv4 address, an IPv6 /64) whose failed digest
    /// responses within `window` reach this is banned: everything it sends
    /// is dropped. 0: sources are never banned.
    pub source_failures: u32,
    /// A user (tenant and username) whose failed responses, from any
    /// sources, within `window` reach this is locked: its credentials are
    /// not checked from sources it has not authenticated from. 0: never.
    pub user_failures: u32,
    /// The window failures are counted in, from the first one.
    pub window: Duration,
    /// The first ban or lock; each repeat doubles it, up to `max_ban`.
    pub ban: Duration,
    /// The longest ban or lock.
    pub max_ban: Duration,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            source_failures: 5,
            user_failures: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(60),
            max_ban: Duration::from_secs(3600),
        }
    }
}

/// Per-shard caps. Past a cap, new work is refused with 503 and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Transactions at work (not yet answered, or retransmitting).
    pub max_transactions: usize,
    /// Finished transactions kept to absorb retransmissions. Past this,
    /// the oldest is ended early (counted), rather than refusing work.
    pub max_lingering: usize,
    pub max_bindings: usize,
    pub max_parked: usize,
    pub max_dialogs: usize,
    /// A bridged call is hung up after this long: sipark has no media to
    /// watch, so this bounds the state a lost BYE can leave behind.
    pub max_call_duration: std::time::Duration,
    /// Nonces whose use is remembered (ADR 0019); past it the oldest
    /// nonce's entry is evicted (counted) and older nonces re-challenged.
    pub max_nonce_counts: usize,
    /// Sources and users whose failures are counted (each); past it a new
    /// one is not tracked (counted).
    pub max_guarded: usize,
    /// Overload control's bounds on the receive path's queueing delay
    /// (`--overload-*`); `None`: off.
    pub overload: Option<super::overload::Bounds>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transactions: 200_000,
            max_lingering: 400_000,
            max_bindings: 1_000_000,
            max_parked: 500_000,
            max_dialogs: 500_000,
            max_call_duration: std::time::Duration::from_secs(12 * 3600),
            max_nonce_counts: 65_536,
            max_guarded: 65_536,
            overload: Some(super::overload::Bounds::default()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            advertise: "127.0.0.1:5060".into(),
            advertise_tls: "127.0.0.1:5061".into(),
            park_fac: "*68".into(),
            retrieve_fac: "*88".into(),
            group_park_fac: "*58".into(),
            defaults: TenantPolicy::default(),
            tenants: TenantMode::Open,
            recall_timeout: Duration::from_secs(30),
            max_contacts: 10,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            timers: Timers::default(),
            limits: Limits::default(),
            trust: Vec::new(),
            nonce_secret: [0; 32],
            nonce_validity: Duration::from_secs(300),
            guard: Guard::default(),
            outbound_proxy: None,
            music: Music::default(),
        }
    }
}

impl Config {
    /// The advertised `host:port` for `transport`.
    pub fn advertise_of(&self, transport: super::sip::Transport) -> &str {
        match transport {
            super::sip::Transport::Tls => &self.advertise_tls,
            _ => &self.advertise,
        }
    }

    /// How a request from `ip` is admitted for `tenant`.
    pub fn admission(&self, tenant: &TenantPolicy, ip: std::net::IpAddr) -> Admission {
        let ip = ip.to_canonical();
        if self.trust.iter().chain(&tenant.trust).any(|c| c.contains(ip)) {
            Admission::Trusted
        } else if !tenant.users.is_empty() {
            Admission::Digest
        } else if !self.trust.is_empty() || !tenant.trust.is_empty() {
            Admission::Refused
        } else {
            Admission::Open
        }
    }

    /// Whether a trust list (the global one, the defaults', or any
    /// tenant's) has an address in `net`: such a source is never banned,
    /// since it is some tenant's trusted peer.
    pub fn trusts_any_of(&self, net: Cidr) -> bool {
        let tenants: Box<dyn Iterator<Item = &TenantPolicy>> = match &self.tenants {
            TenantMode::Open => Box::new(std::iter::empty()),
            TenantMode::Strict(map) => Box::new(map.values()),
        };
        self.trust
            .iter()
            .chain(&self.defaults.trust)
            .chain(tenants.flat_map(|t| t.trust.iter()))
            .any(|c| c.overlaps(&net))
    }

    /// The policy for `domain` (any case), or `None` if it is not served.
    pub fn tenant(&self, domain: &[u8]) -> Option<&TenantPolicy> {
        match &self.tenants {
            TenantMode::Open => Some(&self.defaults),
            TenantMode::Strict(map) => {
                let mut buf = [0u8; 255];
                let d = domain.get(..buf.len().min(domain.len()))?;
                if d.len() != domain.len() {
                    return None;
                }
                for (o, b) in buf.iter_mut().zip(d) {
                    *o = b.to_ascii_lowercase();
                }
                let key = std::str::from_utf8(&buf[..d.len()]).ok()?;
                map.get(key)
            }
        }
    }
}

/// Advertised address parsing helper: `host[:port]`, defaulting the port.
pub fn advertise_for(listen: SocketAddr, advertise: Option<&str>) -> String {
    match advertise {
        Some(a) if a.contains(':') && !a.starts_with('[') => a.to_owned(),
        Some(a) if a.starts_with('[') && a.contains("]:") => a.to_owned(),
        Some(a) => format!("{a}:{}", listen.port()),
        None => listen.to_string(),
    }
}

/// A per-tenant limit on out-of-dialog requests, enforced by the XDP
/// program: `per_sec` on average, with bursts of `burst` back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub burst: u32,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `RATE` or `RATE/BURST` (requests per second; the burst defaults to
    /// one second's worth).
    fn from_str(s: &str) -> Result<RateLimit, String> {
        let (rate, burst) = match s.split_once('/') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let per_sec: u32 = rate.trim().parse().map_err(|_| format!("{s:?}: expected RATE or RATE/BURST"))?;
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| format!("{s:?}: expected RATE or RATE/BURST"))?,
            None => per_sec,
        };
        RateLimit::new(per_sec, burst).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl RateLimit {
    /// Checks the ranges: 1..=1,000,000 per second, burst 1..=1,000,000.
    pub fn new(per_sec: u32, burst: u32) -> Result<RateLimit, &'static str> {
        if per_sec == 0 || per_sec > 1_000_000 {
            return Err("rate must be 1..=1000000 requests per second");
        }
        if burst == 0 || burst > 1_000_000 {
            return Err("burst must be 1..=1000000 requests");
        }
        Ok(RateLimit { per_sec, burst })
    }
}

/// An IPv4 or IPv6 network, `ADDR/PREFIX` (a bare address is a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether the two networks share an address (one holds the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let (wide, narrow) = if self.prefix <= other.prefix { (self, other) } else { (other, self) };
        wide.contains(narrow.addr)
    }

    /// Is `ip` in this network? (An IPv4-mapped IPv6 `ip` counts as IPv4.)
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let (a, b, bits) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix.min(bits as u8));
        let mask = if host_bits >= 128 { 0 } else { u128::MAX << host_bits };
        (a & mask) == (b & mask)
    }
}

/// Is `ext` an extension: 1 to 64 letters, digits and `+ - _ .`, what a
/// dial plan or a feature code names? The one rule for extensions, in
/// REGISTER, park and retrieve Request-URIs, REFER targets and the tenants
/// file alike.
pub fn is_extension(ext: &[u8]) -> bool {
    !ext.is_empty() && ext.len() <= 64 && ext.iter().all(|b| b.is_ascii_alphanumeric() || b"+-_.".contains(b))
}

mod tenants;
pub use tenants::{DatapathPolicy, TenantCert, Tenants, TenantsError, parse_tenants, parse_tenants_file};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_file_strict_mode() {
        let text = r#"
            [defaults]
            park_timeout = 200
            [[tenant]]
            domain = "Acme.Example"
            max_parks_per_ext = 2
            [[tenant]]
            domain = "beta.example"
            park_timeout = 60
        "#;
        let base = Config::default().defaults;
        let (defaults, mode) = parse_tenants(text, base).expect("parses");
        let cfg = Config { defaults, tenants: mode, ..Config::default() };
        let acme = cfg.tenant(b"ACME.example").expect("acme served");
        assert_eq!(acme.park_timeout, Duration::from_secs(200));
        assert_eq!(acme.max_parks_per_ext, 2);
        let beta = cfg.tenant(b"beta.example").expect("beta served");
        assert_eq!(beta.park_timeout, Duration::from_secs(60));
        assert_eq!(cfg.tenant(b"other.example"), None);
    }

    #[test]
    fn tenants_file_errors() {
        let base = Config::default().defaults;
        let dup = "[[tenant]]\ndomain='a.example'\n[[tenant]]\ndomain='A.example'\n";
        assert!(matches!(parse_tenants(dup, base.clone()), Err(TenantsError::Duplicate(_))));
        let bad = "[[tenant]]\ndomain='a b'\n";
        assert!(matches!(parse_tenants(bad, base.clone()), Err(TenantsError::BadDomain(_))));
        let range = "[[tenant]]\ndomain='a'\npark_timeout=0\n";
        assert!(matches!(parse_tenants(range, base.clone()), Err(TenantsError::Range(_))));
        assert!(matches!(parse_tenants("nonsense = [", base.clone()), Err(TenantsError::Toml(_))));
        let burst_alone = "[[tenant]]\ndomain='a'\nburst=5\n";
        assert!(matches!(parse_tenants(burst_alone, base.clone()), Err(TenantsError::Range(_))));
        let zero_rate = "[defaults]\nrate=0\n";
        assert!(matches!(parse_tenants(zero_rate, base.clone()), Err(TenantsError::Range(_))));
        let bad_block = "block = ['10.0.0.0/33']\n";
        assert!(matches!(parse_tenants(bad_block, base.clone()), Err(TenantsError::Block(_))));
        let two_groups = "[[tenant]]\ndomain='a'\npark_groups=[['101','102'],['102']]\n";
        assert!(matches!(parse_tenants(two_groups, base.clone()), Err(TenantsError::TwoGroups(e)) if e == "102"));
        let bad_member = "[[tenant]]\ndomain='a'\npark_groups=[['10 1']]\n";
        assert!(matches!(parse_tenants(bad_member, base.clone()), Err(TenantsError::BadExtension(_))));
        let no_group = "[[tenant]]\ndomain='a'\nrecall_to='group'\n";
        assert!(matches!(parse_tenants(no_group, base.clone()), Err(TenantsError::Range(_))));
        let bad_recall = "[defaults]\nrecall_to='everyone'\n";
        assert!(matches!(parse_tenants(bad_recall, base.clone()), Err(TenantsError::Range(_))));
        let injection = "[defaults]\nalert_info=\"<x>\\r\\nX-Evil: 1\"\n";
        assert!(matches!(parse_tenants(injection, base.clone()), Err(TenantsError::Range(_))));
        let quote = "[defaults]\nrecall_prefix='\"'\n";
        assert!(matches!(parse_tenants(quote, base.clone()), Err(TenantsError::Range(_))));
        let typo = "[[tenant]]\ndomain='a'\nrecal_to='group'\n";
        assert!(matches!(parse_tenants(typo, base), Err(TenantsError::Toml(_))), "unknown keys are refused");
    }

    #[test]
    fn tenants_file_call_control_settings() {
        let text = r#"
            [defaults]
            recall_to = "parker-then-group"
            recall_group = ["200", "201"]
            recall_group_delay = 20
            notify_parker = true
            [[tenant]]
            domain = "acme.example"
            recall_to = "group"
            recall_group = ["300"]
            alert_info = ""
            recall_prefix = "RECALL: "
            park_groups = [["101", "102"], ["103"]]
            [[tenant]]
            domain = "beta.example"
        "#;
        let (defaults, mode) = parse_tenants(text, Config::default().defaults).expect("parses");
        let cfg = Config { defaults, tenants: mode, ..Config::default() };
        let acme = cfg.tenant(b"acme.example").expect("acme");
        assert_eq!(acme.recall_to, RecallTo::Group);
        assert_eq!(acme.recall_group, vec![Box::<str>::from("300")]);
        assert_eq!(acme.recall_group_delay, Duration::from_secs(20), "inherited from [defaults]");
        assert!(acme.notify_parker);
        assert_eq!((&*acme.alert_info, &*acme.recall_prefix), ("", "RECALL: "));
        assert_eq!(acme.group_of(b"102").map(|g| g.len()), Some(2));
        assert_eq!(acme.group_of(b"103").map(|g| g.len()), Some(1));
        assert!(acme.group_of(b"104").is_none());
        let beta = cfg.tenant(b"beta.example").expect("beta");
        assert_eq!(beta.recall_to, RecallTo::ParkerThenGroup);
        assert_eq!(&*beta.alert_info, DEFAULT_ALERT_INFO);
        assert_eq!(&*beta.recall_prefix, DEFAULT_RECALL_PREFIX);
        assert!(beta.park_groups.is_empty(), "groups are per tenant");
        assert_eq!(beta.notify, NotifySet::PARK_INFO, "park-info by default");
    }

    #[test]
    fn tenants_file_notify_bodies_and_user_agent_rules() {
        let text = r#"
            [[tenant]]
            domain = "acme.example"
            notify = ["park-info", "dialog-info"]
            [[tenant.notify_ua]]
            pattern = "Yealink SIP-T*"
            notify = ["broadworks"]
            [[tenant.notify_ua]]
            pattern = "*Linphone*"
            notify = []
        "#;
        let (defaults, mode) = parse_tenants(text, Config::default().defaults).expect("parses");
        let cfg = Config { defaults, tenants: mode, ..Config::default() };
        let acme = cfg.tenant(b"acme.example").expect("acme");
        let kinds = |s: NotifySet| s.kinds().collect::<Vec<_>>();
        assert_eq!(kinds(acme.notify_for(None)), [BodyKind::ParkInfo, BodyKind::DialogInfo]);
        assert_eq!(kinds(acme.notify_for(Some(b"yealink SIP-T54W 96.86.0.70"))), [BodyKind::BroadWorks]);
        assert_eq!(kinds(acme.notify_for(Some(b"Yealink W60B"))), [BodyKind::ParkInfo, BodyKind::DialogInfo]);
        assert!(kinds(acme.notify_for(Some(b"Linphone Desktop/5.2 (belle-sip/5.2)"))).is_empty(), "empty: none");
        let bad = "[[tenant]]\ndomain='a'\nnotify=['xml']\n";
        assert!(matches!(parse_tenants(bad, Config::default().defaults), Err(TenantsError::Toml(_))));
    }

    #[test]
    fn tenants_file_trust_users_and_certificates() {
        let text = r#"
            [defaults]
            trust = ["10.0.0.0/8"]
            [[tenant]]
            domain = "acme.example"
            trust = ["192.0.2.10", "2001:db8::/32"]
            users = { "101" = "pw1", "102" = "pw2" }
            tls_cert = "/etc/sipark/acme.pem"
            tls_key = "/etc/sipark/acme.key"
            [[tenant]]
            domain = "beta.example"
        "#;
        let t = parse_tenants_file(text, TenantPolicy::default()).expect("parses");
        let cfg = Config { defaults: t.defaults, tenants: t.mode, ..Config::default() };
        let acme = cfg.tenant(b"acme.example").expect("acme");
        assert_eq!(acme.users.get("101").map(|p| &*p.0), Some(&b"pw1"[..]));
        assert!(!format!("{acme:?}").contains("pw1"), "Debug hides passwords");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert_eq!(cfg.admission(acme, ip("192.0.2.10")), Admission::Trusted);
        assert_eq!(cfg.admission(acme, ip("::ffff:192.0.2.10")), Admission::Trusted, "mapped IPv4");
        assert_eq!(cfg.admission(acme, ip("2001:db8:1::5")), Admission::Trusted);
        assert_eq!(cfg.admission(acme, ip("192.0.2.11")), Admission::Digest, "a tenant's trust replaces the default");
        let beta = cfg.tenant(b"beta.example").expect("beta");
        assert_eq!(cfg.admission(beta, ip("10.1.2.3")), Admission::Trusted, "[defaults] trust");
        assert_eq!(cfg.admission(beta, ip("192.0.2.10")), Admission::Refused, "no users: an ACL miss is refused");
        let open = Config::default();
        assert_eq!(open.admission(&open.defaults, ip("203.0.113.9")), Admission::Open);
        let global = Config { trust: vec!["203.0.113.0/24".parse().expect("cidr")], ..Config::default() };
        assert_eq!(global.admission(&global.defaults, ip("203.0.113.9")), Admission::Trusted);
        assert_eq!(global.admission(&global.defaults, ip("203.0.114.9")), Admission::Refused);
        assert_eq!(t.certs.len(), 1);
        assert_eq!(t.certs[0].domain, "acme.example");
        assert_eq!(t.certs[0].key, std::path::PathBuf::from("/etc/sipark/acme.key"));

        let bad = [
            "[defaults]\nusers = { \"1\" = \"x\" }",
            "[[tenant]]\ndomain = \"a.example\"\ntrust = [\"nope\"]",
            "[[tenant]]\ndomain = \"a.example\"\nusers = { \"1\" = \"\" }",
            "[[tenant]]\ndomain = \"a.example\"\ntls_cert = \"/x.pem\"",
            "[[tenant]]\ndomain = \"a.example\"\ntls_key = 5",
        ];
        for text in bad {
            assert!(parse_tenants_file(text, TenantPolicy::default()).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(c.contains("10.1.255.1".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("198.51.100.7".parse().expect("ip")));
        let v6: Cidr = "::/0".parse().expect("cidr");
        assert!(v6.contains("2001:db8::1".parse().expect("ip")));
    }

    #[test]
    fn glob_patterns() {
        for (p, t, want) in [
            ("Yealink*", "yealink SIP-T46", true),
            ("Yealink*", "Poly VVX", false),
            ("*VVX*", "PolycomVVX-VVX_410-UA/6.4", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("exact", "EXACT", true),
            ("exact", "exactly", false),
            ("*", "", true),
            ("ab*", "a", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p:?} against {t:?}");
        }
    }

    #[test]
    fn tenants_file_datapath_part() {
        let text = r#"
            block = ["198.51.100.0/24", "2001:db8:bad::/48", "192.0.2.7"]
            [defaults]
            rate = 200
            burst = 400
            [[tenant]]
            domain = "Acme.Example"
            rate = 50
            [[tenant]]
            domain = "beta.example"
        "#;
        let t = parse_tenants_file(text, Config::default().defaults).expect("parses");
        assert_eq!(t.datapath.default_rate, Some(RateLimit { per_sec: 200, burst: 400 }));
        assert_eq!(t.datapath.rates, vec![("acme.example".to_owned(), RateLimit { per_sec: 50, burst: 50 })]);
        let block: Vec<String> = t.datapath.block.iter().map(|c| format!("{}/{}", c.addr, c.prefix)).collect();
        assert_eq!(block, ["198.51.100.0/24", "2001:db8:bad::/48", "192.0.2.7/32"]);
    }

    #[test]
    fn rate_and_cidr_flags() {
        assert_eq!("100".parse::<RateLimit>(), Ok(RateLimit { per_sec: 100, burst: 100 }));
        assert_eq!("100/20".parse::<RateLimit>(), Ok(RateLimit { per_sec: 100, burst: 20 }));
        assert!("0".parse::<RateLimit>().is_err());
        assert!("x/2".parse::<RateLimit>().is_err());
        assert_eq!("10.1.0.0/16".parse::<Cidr>().map(|c| c.prefix), Ok(16));
        assert_eq!("::1".parse::<Cidr>().map(|c| c.prefix), Ok(128));
        assert!("10.0.0.0/40".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn kinds_names_headers_and_parsing() {
        let table = [
            (BodyKind::ParkInfo, "park-info", "application/park-info+xml", "park-info"),
            (BodyKind::BroadWorks, "broadworks", "application/x-broadworks-callpark-info+xml", "call-info"),
            (BodyKind::DialogInfo, "dialog-info", "application/dialog-info+xml", "dialog"),
        ];
        for (kind, name, ctype, event) in table {
            assert_eq!(kind.name(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(kind.content_type(), ctype);
            assert_eq!(kind.event(), event);
            assert_eq!(name.parse::<BodyKind>(), Ok(kind));
            assert_eq!(name.to_ascii_uppercase().parse::<BodyKind>(), Ok(kind));
        }
        for bad in ["", "parkinfo", "dialog", "broadworks ", "x-broadworks-callpark"] {
            match bad.parse::<BodyKind>() {
                Ok(k) => panic!("{bad:?} parsed as {k:?}"),
                Err(e) => assert!(e.to_string().contains("expected \"park-info\""), "{e}"),
            }
        }
        let long = "x".repeat(10_000);
        let msg = long.parse::<BodyKind>().expect_err("unknown").to_string();
        assert!(msg.len() < 200, "error message is bounded: {} bytes", msg.len());
    }

    #[test]
    fn kinds_deserialize_from_toml() {
        #[derive(Deserialize)]
        struct T {
            notify: Vec<BodyKind>,
        }
        let t: T = toml::from_str("notify = [\"park-info\", \"dialog-info\", \"broadworks\"]").expect("parses");
        assert_eq!(t.notify, vec![BodyKind::ParkInfo, BodyKind::DialogInfo, BodyKind::BroadWorks]);
        let err = toml::from_str::<T>("notify = [\"blf\"]").err().expect("unknown kind refused");
        assert!(err.to_string().contains("unknown notify body \"blf\""), "{err}");
    }
}
