//! The tenants file (TOML): per-tenant policies, the data path's rate
//! limits and blocklist, and per-tenant TLS certificates. Parsing its
//! text is here; reading the file is the I/O layer's job.

use serde::Deserialize;

use std::time::Duration;

use hashbrown::HashMap;

use super::{BodyKind, Cidr, Moh, NotifySet, Password, RateLimit, RecallTo, TenantMode, TenantPolicy, is_extension};

/// What the tenants file says beyond the shards' policies: the data
/// path's rate limits and blocklist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatapathPolicy {
    /// `[defaults] rate/burst`: every tenant without its own.
    pub default_rate: Option<RateLimit>,
    /// Tenants with their own limit (lowercase domain).
    pub rates: Vec<(String, RateLimit)>,
    /// Top-level `block = [...]`.
    pub block: Vec<Cidr>,
}

/// Everything a tenants file decides.
#[derive(Debug, Clone)]
pub struct Tenants {
    pub defaults: TenantPolicy,
    pub mode: TenantMode,
    pub datapath: DatapathPolicy,
    /// Per-tenant TLS certificates (`tls_cert`, `tls_key`), chosen by SNI.
    pub certs: Vec<TenantCert>,
}

/// A tenant's TLS certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCert {
    /// Lowercase domain; the SNI name that selects this certificate.
    pub domain: String,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The tenants file (TOML).
///
/// ```toml
/// block = ["198.51.100.0/24", "2001:db8:bad::/48"]   # dropped in XDP
///
/// [defaults]
/// park_timeout = 300        # seconds
/// max_parks_per_ext = 8
/// rate = 200                # out-of-dialog requests/s per tenant (XDP)
/// burst = 400
/// recall_to = "parker"      # parker | parker-then-group | group
/// recall_group = ["200", "201"]
/// recall_group_delay = 15   # seconds the parker rings alone (parker-then-group)
/// alert_info = "<urn:alert:service:recall:transfer>"   # "" sends none
/// recall_prefix = "[Recall] "
/// notify_parker = false
/// moh = "tune"              # music on hold: "tune" (sipark's own), "off", or an 8 kHz mono WAV
///
/// [[tenant]]
/// domain = "acme.example"
/// park_timeout = 120
/// rate = 50
/// park_groups = [["101", "102", "103"], ["200", "201"]]
/// notify = ["park-info", "dialog-info"]   # documents sent (park-info, broadworks, dialog-info)
/// moh = "/etc/sipark/acme-hold.wav"
///
/// [[tenant.notify_ua]]      # first match on REGISTER's User-Agent wins
/// pattern = "Yealink*"
/// notify = ["broadworks"]
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    block: Vec<String>,
    #[serde(default)]
    defaults: Option<PolicyFile>,
    /// Each `[[tenant]]`: its `domain`, the rest read as a [`PolicyFile`]
    /// (serde's `flatten` would lose `deny_unknown_fields`).
    #[serde(default)]
    tenant: Vec<toml::Table>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    park_timeout: Option<u64>,
    max_parks_per_ext: Option<u32>,
    rate: Option<u32>,
    burst: Option<u32>,
    recall_to: Option<String>,
    recall_group: Option<Vec<String>>,
    recall_group_delay: Option<u64>,
    alert_info: Option<String>,
    recall_prefix: Option<String>,
    notify_parker: Option<bool>,
    park_groups: Option<Vec<Vec<String>>>,
    notify: Option<Vec<BodyKind>>,
    notify_ua: Option<Vec<NotifyUa>>,
    trust: Option<Vec<String>>,
    users: Option<std::collections::BTreeMap<String, String>>,
    moh: Option<String>,
}

/// `[[tenant.notify_ua]]`: documents for devices whose User-Agent matches.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct NotifyUa {
    pattern: String,
    notify: Vec<BodyKind>,
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
    /// A `block` entry is not a CIDR.
    #[error("tenants file: block: {0}")]
    Block(String),
    /// An extension in a list is not one.
    #[error("tenants file: {0:?} is not an extension")]
    BadExtension(String),
    /// A `trust` entry is not a CIDR.
    #[error("tenants file: trust: {0}")]
    Trust(String),
    /// A `users` entry has an empty or overlong name or password.
    #[error("tenants file: users: {0:?} needs a name of 1-64 characters and a password of 1-256")]
    BadUser(String),
    /// `tls_cert` without `tls_key`, or the other way round.
    #[error("tenants file: {0:?} needs both tls_cert and tls_key")]
    HalfCertificate(String),
    /// `users` in `[defaults]`: credentials belong to one realm (tenant).
    #[error("tenants file: users belong in a [[tenant]], not in [defaults]")]
    UsersInDefaults,
    /// An extension is in two park groups.
    #[error("tenants file: extension {0:?} is in two park groups")]
    TwoGroups(String),
}

/// `rate` and `burst` as written (burst alone is refused; it defaults to
/// one second's worth).
fn rate_of(rate: Option<u32>, burst: Option<u32>) -> Result<Option<RateLimit>, TenantsError> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(TenantsError::Range("burst needs a rate")),
        (Some(r), b) => RateLimit::new(r, b.unwrap_or(r)).map(Some).map_err(TenantsError::Range),
    }
}

fn ext_list(list: Vec<String>, what: &'static str) -> Result<Vec<Box<str>>, TenantsError> {
    if list.len() > 100 {
        return Err(TenantsError::Range(what));
    }
    list.into_iter()
        .map(
            |e| {
                if is_extension(e.trim().as_bytes()) { Ok(e.trim().into()) } else { Err(TenantsError::BadExtension(e)) }
            },
        )
        .collect()
}

/// A header value written as configured: no CR, LF or other control.
fn header_text(v: String, what: &'static str) -> Result<Box<str>, TenantsError> {
    if v.len() > 200 || v.bytes().any(|b| b.is_ascii_control()) {
        return Err(TenantsError::Range(what));
    }
    Ok(v.into())
}

fn apply(base: &TenantPolicy, f: PolicyFile) -> Result<TenantPolicy, TenantsError> {
    let mut p = apply_limits(base.clone(), f.park_timeout, f.max_parks_per_ext)?;
    if let Some(r) = f.recall_to {
        p.recall_to =
            r.parse().map_err(|_| TenantsError::Range("recall_to must be parker, parker-then-group or group"))?;
    }
    if let Some(g) = f.recall_group {
        p.recall_group = ext_list(g, "recall_group has at most 100 extensions")?;
    }
    if let Some(d) = f.recall_group_delay {
        if d > 3600 {
            return Err(TenantsError::Range("recall_group_delay must be 0..=3600 seconds"));
        }
        p.recall_group_delay = Duration::from_secs(d);
    }
    if let Some(a) = f.alert_info {
        p.alert_info = header_text(a, "alert_info must be at most 200 characters, no control characters")?;
    }
    if let Some(a) = f.recall_prefix {
        p.recall_prefix = header_text(a, "recall_prefix must be at most 200 characters, no control characters")?;
        if p.recall_prefix.contains('"') || p.recall_prefix.contains('\\') {
            return Err(TenantsError::Range("recall_prefix may not contain '\"' or '\\'"));
        }
    }
    if let Some(n) = f.notify_parker {
        p.notify_parker = n;
    }
    if let Some(groups) = f.park_groups {
        if groups.len() > 1000 {
            return Err(TenantsError::Range("at most 1000 park_groups"));
        }
        p.park_groups = Vec::with_capacity(groups.len());
        p.group_index = HashMap::new();
        for (i, g) in groups.into_iter().enumerate() {
            let members = ext_list(g, "a park group has at most 100 extensions")?;
            if members.is_empty() {
                return Err(TenantsError::Range("a park group needs at least one extension"));
            }
            for m in &members {
                if p.group_index.insert(m.clone(), i as u32).is_some() {
                    return Err(TenantsError::TwoGroups(m.to_string()));
                }
            }
            p.park_groups.push(members.into());
        }
    }
    if let Some(n) = f.notify {
        p.notify = NotifySet::of(&n);
    }
    if let Some(rules) = f.notify_ua {
        if rules.len() > 100 {
            return Err(TenantsError::Range("at most 100 notify_ua rules"));
        }
        p.notify_ua = Vec::with_capacity(rules.len());
        for r in rules {
            if r.pattern.is_empty() || r.pattern.len() > 100 || r.pattern.bytes().any(|b| b.is_ascii_control()) {
                return Err(TenantsError::Range("notify_ua pattern must be 1-100 characters, no control characters"));
            }
            p.notify_ua.push((r.pattern.into(), NotifySet::of(&r.notify)));
        }
    }
    if let Some(list) = f.trust {
        if list.len() > 1000 {
            return Err(TenantsError::Range("at most 1000 trust entries"));
        }
        p.trust = list.iter().map(|c| c.parse()).collect::<Result<_, _>>().map_err(TenantsError::Trust)?;
    }
    if let Some(users) = f.users {
        if users.len() > 100_000 {
            return Err(TenantsError::Range("at most 100000 users per tenant"));
        }
        p.users = HashMap::with_capacity(users.len());
        for (user, password) in users {
            let ok_user = !user.is_empty() && user.len() <= 64 && !user.bytes().any(|b| b.is_ascii_control());
            if !ok_user || password.is_empty() || password.len() > 256 {
                return Err(TenantsError::BadUser(user));
            }
            p.users.insert(user.into(), Password(password.into_bytes().into()));
        }
    }
    if let Some(m) = f.moh {
        p.moh = Moh::parse(&m).map_err(TenantsError::Range)?;
    }
    if p.recall_to != RecallTo::Parker && p.recall_group.is_empty() {
        return Err(TenantsError::Range("recall_to parker-then-group or group needs a recall_group"));
    }
    Ok(p)
}

fn apply_limits(base: TenantPolicy, timeout: Option<u64>, max: Option<u32>) -> Result<TenantPolicy, TenantsError> {
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
    parse_tenants_file(text, defaults).map(|t| (t.defaults, t.mode))
}

/// [`parse_tenants`] plus the data path's part of the file.
pub fn parse_tenants_file(text: &str, defaults: TenantPolicy) -> Result<Tenants, TenantsError> {
    let file: TenantsFile = toml::from_str(text)?;
    let d = file.defaults.unwrap_or_default();
    if d.users.is_some() {
        return Err(TenantsError::UsersInDefaults);
    }
    let default_rate = rate_of(d.rate, d.burst)?;
    let defaults = apply(&defaults, d)?;
    let mut datapath = DatapathPolicy { default_rate, ..DatapathPolicy::default() };
    for b in &file.block {
        datapath.block.push(b.parse().map_err(TenantsError::Block)?);
    }
    let mut map = HashMap::new();
    let mut certs = Vec::new();
    for mut t in file.tenant {
        let raw_domain = match t.remove("domain") {
            Some(toml::Value::String(d)) => d,
            _ => return Err(TenantsError::Toml(serde::de::Error::custom("[[tenant]] needs a string `domain`"))),
        };
        let mut path = |key: &str| match t.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(p)) if !p.is_empty() => Ok(Some(std::path::PathBuf::from(p))),
            Some(_) => Err(TenantsError::Toml(serde::de::Error::custom(format!("{key} must be a file path")))),
        };
        let cert = (path("tls_cert")?, path("tls_key")?);
        let t: PolicyFile = toml::Value::Table(t).try_into()?;
        let domain = raw_domain.trim().to_ascii_lowercase();
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return Err(TenantsError::BadDomain(raw_domain));
        }
        let rate = rate_of(t.rate, t.burst)?;
        let policy = apply(&defaults, t)?;
        if let Some(r) = rate {
            datapath.rates.push((domain.clone(), r));
        }
        match cert {
            (Some(cert), Some(key)) => certs.push(TenantCert { domain: domain.clone(), cert, key }),
            (None, None) => {}
            _ => return Err(TenantsError::HalfCertificate(domain)),
        }
        if map.insert(domain.clone(), policy).is_some() {
            return Err(TenantsError::Duplicate(domain));
        }
    }
    Ok(Tenants { defaults, mode: TenantMode::Strict(map), datapath, certs })
}
