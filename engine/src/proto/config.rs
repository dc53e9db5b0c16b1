//! Engine configuration: what the CLI and the tenants file decide.
//!
//! Parsing the tenants file's *text* is here; reading the file is the I/O
//! layer's job.

use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Deserialize;

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

/// Per-tenant settings (from the tenants file, or the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantPolicy {
    pub park_timeout: Duration,
    pub max_parks_per_ext: u32,
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
    /// Host (and port) written into Via and Contact.
    pub advertise: String,
    pub park_fac: String,
    pub retrieve_fac: String,
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
}

/// Per-shard caps. Past a cap, new work is refused with 503 and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_transactions: usize,
    pub max_bindings: usize,
    pub max_parked: usize,
    pub max_dialogs: usize,
    /// A bridged call is hung up after this long: sipark has no media to
    /// watch, so this bounds the state a lost BYE can leave behind.
    pub max_call_duration: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transactions: 200_000,
            max_bindings: 1_000_000,
            max_parked: 500_000,
            max_dialogs: 500_000,
            max_call_duration: std::time::Duration::from_secs(12 * 3600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            advertise: "127.0.0.1:5060".into(),
            park_fac: "*68".into(),
            retrieve_fac: "*88".into(),
            defaults: TenantPolicy { park_timeout: Duration::from_secs(300), max_parks_per_ext: 8 },
            tenants: TenantMode::Open,
            recall_timeout: Duration::from_secs(30),
            max_contacts: 10,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            timers: Timers::default(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// The policy for `domain` (any case), or `None` if it is not served.
    pub fn tenant(&self, domain: &[u8]) -> Option<TenantPolicy> {
        match &self.tenants {
            TenantMode::Open => Some(self.defaults),
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
                map.get(key).copied()
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

/// The tenants file (TOML).
///
/// ```toml
/// [defaults]
/// park_timeout = 300        # seconds
/// max_parks_per_ext = 8
///
/// [[tenant]]
/// domain = "acme.example"
/// park_timeout = 120
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    defaults: Option<PolicyFile>,
    #[serde(default)]
    tenant: Vec<TenantEntry>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    park_timeout: Option<u64>,
    max_parks_per_ext: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    domain: String,
    park_timeout: Option<u64>,
    max_parks_per_ext: Option<u32>,
}

/// Why a tenants file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// The text is not valid TOML of the expected shape.
    #[error("tenants file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The same domain is listed twice.
    #[error("tenants file: domain {0:?} is listed twice")]
    Duplicate(String),
    /// A domain is empty or has characters no host name has.
    #[error("tenants file: {0:?} is not a domain name")]
    BadDomain(String),
    /// A value is out of range.
    #[error("tenants file: {0}")]
    Range(&'static str),
}

fn apply(base: TenantPolicy, timeout: Option<u64>, max: Option<u32>) -> Result<TenantPolicy, TenantsError> {
    let mut p = base;
    if let Some(t) = timeout {
        if t == 0 || t > 86_400 {
            return Err(TenantsError::Range("park_timeout must be 1..=86400 seconds"));
        }
        p.park_timeout = Duration::from_secs(t);
    }
    if let Some(m) = max {
        if m == 0 || m > 1000 {
            return Err(TenantsError::Range("max_parks_per_ext must be 1..=1000"));
        }
        p.max_parks_per_ext = m;
    }
    Ok(p)
}

/// Parses the tenants file text into strict mode, starting from `defaults`
/// (the CLI's values). Returns the defaults it ends up with too.
pub fn parse_tenants(text: &str, defaults: TenantPolicy) -> Result<(TenantPolicy, TenantMode), TenantsError> {
    let file: TenantsFile = toml::from_str(text)?;
    let d = file.defaults.unwrap_or_default();
    let defaults = apply(defaults, d.park_timeout, d.max_parks_per_ext)?;
    let mut map = HashMap::new();
    for t in file.tenant {
        let domain = t.domain.trim().to_ascii_lowercase();
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return Err(TenantsError::BadDomain(t.domain));
        }
        let policy = apply(defaults, t.park_timeout, t.max_parks_per_ext)?;
        if map.insert(domain.clone(), policy).is_some() {
            return Err(TenantsError::Duplicate(domain));
        }
    }
    Ok((defaults, TenantMode::Strict(map)))
}

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
        assert!(matches!(parse_tenants(dup, base), Err(TenantsError::Duplicate(_))));
        let bad = "[[tenant]]\ndomain='a b'\n";
        assert!(matches!(parse_tenants(bad, base), Err(TenantsError::BadDomain(_))));
        let range = "[[tenant]]\ndomain='a'\npark_timeout=0\n";
        assert!(matches!(parse_tenants(range, base), Err(TenantsError::Range(_))));
        assert!(matches!(parse_tenants("nonsense = [", base), Err(TenantsError::Toml(_))));
    }
}
