//! Failure budgets and bans for digest authentication
//! (docs/decisions/0019-password-guessing.md).
//!
//! Every failed digest response (a wrong password, an unknown user) counts
//! against the budget of its [`Source`] (an IPv4 address, or an IPv6 /64)
//! and, for a known user, against that user's. A source that reaches its
//! budget within the window is **banned**: the shard drops everything it
//! sends, unread, until the ban ends; each repeat doubles the ban, up to a
//! cap. A user that reaches its budget is **locked**: its credentials are
//! not checked (403) from sources it has not authenticated from, so an
//! attacker spread over many sources cannot go on guessing, while the
//! user's own devices go on working. A source in any trust list is never
//! banned.
//!
//! Sans-IO: time comes in as `now`. A ban is also reported
//! ([`Guard::poll_ban`]) so that the I/O layer can drop the source in XDP
//! and tell the other workers ([`Guard::import`]). Both tables are bounded:
//! records leave once idle, and past the cap a new source or user is not
//! tracked (counted).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::config::{Cidr, Config, Guard as Policy};
use super::ids::Keyed;
use super::stats::ShardStats;

/// Bans decided here and not yet polled; past it the oldest is dropped
/// (counted). The I/O layer polls every loop turn.
const MAX_PENDING_BANS: usize = 1024;
/// Devices remembered per user as having authenticated.
const GOOD_SOURCES: usize = 4;
/// Least time between two sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a ban applies to: an IPv4 address (written `::ffff:a.b.c.d`), or
/// the /64 of an IPv6 address (its last 8 bytes zero), since one IPv6 host
/// usually has a whole /64 to send from. The same 16 bytes key the XDP ban
/// map (`struct sipark_ban_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source([u8; 16]);

impl Source {
    /// The source `ip` belongs to (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => Source(a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => {
                let mut b = a.octets();
                b[8..].fill(0);
                Source(b)
            }
        }
    }

    /// The 16 bytes of the XDP map key.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    /// The network this source stands for: `a.b.c.d/32` or `x:x:x:x::/64`.
    pub fn net(&self) -> Cidr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => Cidr { addr: IpAddr::V4(v4), prefix: 32 },
            None => Cidr { addr: IpAddr::V6(v6), prefix: 64 },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.net();
        match net.addr {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

impl From<Ipv4Addr> for Source {
    fn from(a: Ipv4Addr) -> Source {
        Source::of(IpAddr::V4(a))
    }
}

/// A ban: what [`Guard::poll_ban`] reports and [`Guard::import`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub source: Source,
    /// When it ends.
    pub until: Instant,
    /// How long it lasts from when it was decided.
    pub duration: Duration,
    /// Which ban of this source it is (1 for the first), since its record
    /// was last forgotten.
    pub offence: u32,
}

/// Failures counted in a window that starts at the first one.
#[derive(Debug, Clone, Copy)]
struct Budget {
    start: Instant,
    failures: u32,
}

impl Budget {
    /// Counts one failure at `now`; returns the failures in the window.
    fn fail(&mut self, now: Instant, window: Duration) -> u32 {
        if now.saturating_duration_since(self.start) >= window || self.failures == 0 {
            *self = Budget { start: now, failures: 0 };
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }
}

#[derive(Debug, Clone)]
struct SourceRec {
    budget: Budget,
    offences: u32,
    banned_until: Option<Instant>,
    /// When nothing is left to remember: the window is over, and the
    /// last ban ended `max_ban` ago (so its offence no longer counts).
    idle_at: Instant,
}

#[derive(Debug, Clone)]
struct UserRec {
    budget: Budget,
    offences: u32,
    locked_until: Option<Instant>,
    /// Sources that authenticated as this user, and when (the newest replaces the oldest).
    good: [Option<(Source, Instant)>; GOOD_SOURCES],
    idle_at: Instant,
}

/// The failure budgets, bans and locks of one shard.
pub struct Guard {
    policy: Policy,
    cap: usize,
    hasher: Keyed,
    sources: hashbrown::HashMap<Source, SourceRec, Keyed>,
    /// Keyed by a keyed hash of the tenant and the username.
    users: hashbrown::HashMap<u64, UserRec, Keyed>,
    /// Ban ends, the first on top (some stale: a ban extended later).
    ends: BinaryHeap<Reverse<(Instant, Source)>>,
    /// Bans in force (as of the last [`Guard::handle_timeout`]).
    active: u64,
    pending: VecDeque<Ban>,
    /// Sources whose ban a reload lifted (now trusted), for the I/O layer
    /// to take out of the XDP map.
    lifted: VecDeque<Source>,
    next_sweep: Option<Instant>,
    stats: Arc<ShardStats>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("sources", &self.sources.len())
            .field("users", &self.users.len())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard applying `policy`, with at most `cap` sources and `cap`
    /// users tracked, its tables keyed by `hasher`, counting in `stats`.
    pub fn new(policy: Policy, cap: usize, hasher: Keyed, stats: Arc<ShardStats>) -> Guard {
        Guard {
            policy,
            cap: cap.max(1),
            hasher,
            sources: hashbrown::HashMap::with_hasher(hasher),
            users: hashbrown::HashMap::with_hasher(hasher),
            ends: BinaryHeap::new(),
            active: 0,
            pending: VecDeque::new(),
            lifted: VecDeque::new(),
            next_sweep: None,
            stats,
        }
    }

    /// Whether `ip`'s source is banned at `now`.
    #[inline]
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.active != 0 && self.sources.get(&Source::of(ip)).is_some_and(|r| r.banned_until.is_some_and(|u| u > now))
    }

    /// Whether credentials of `user` of `tenant` (lowercase) from `ip` are
    /// refused unchecked at `now`: the user is locked and `ip` has not
    /// authenticated as it.
    pub fn refuses(&self, tenant: &[u8], user: &[u8], ip: IpAddr, now: Instant) -> bool {
        let Some(r) = self.users.get(&self.user_key(tenant, user)) else { return false };
        let src = Source::of(ip);
        r.locked_until.is_some_and(|u| u > now) && !r.good.iter().flatten().any(|(s, _)| *s == src)
    }

    /// `ip` authenticated as `user` of `tenant` at `now`: remembered as
    /// one of the user's sources, and the user's failures are forgiven.
    pub fn success(&mut self, now: Instant, tenant: &[u8], user: &[u8], ip: IpAddr) {
        let key = self.user_key(tenant, user);
        let keep = self.policy.max_ban;
        let Some(r) = self.user(key, now) else { return };
        let src = Source::of(ip);
        r.budget.failures = 0;
        let slot = match r.good.iter().position(|g| g.is_some_and(|(s, _)| s == src)) {
            Some(i) => i,
            None => (0..GOOD_SOURCES).min_by_key(|&i| r.good[i].map(|(_, at)| at)).unwrap_or(0),
        };
        r.good[slot] = Some((src, now));
        r.idle_at = r.idle_at.max(now + keep);
    }

    /// A failed digest response from `ip` at `now`, for `user` (tenant,
    /// username) when the user exists. Bans the source or locks the user
    /// when it reaches its budget.
    pub fn failure(&mut self, now: Instant, ip: IpAddr, user: Option<(&[u8], &[u8])>, cfg: &Config) {
        let p = self.policy;
        if p.source_failures > 0 {
            let src = Source::of(ip);
            if let Some(r) = self.source(src, now) {
                let n = r.budget.fail(now, p.window);
                r.idle_at = r.idle_at.max(r.budget.start + p.window);
                let banned = r.banned_until.is_some_and(|u| u > now);
                if n >= p.source_failures && !banned {
                    if cfg.trusts_any_of(src.net()) {
                        r.budget.failures = 0;
                        debug!(source = %src, "a trusted peer reached the failure budget: not banned");
                    } else {
                        self.ban(now, src);
                    }
                }
            }
        }
        if let (Some((tenant, name)), true) = (user, p.user_failures > 0) {
            let key = self.user_key(tenant, name);
            let Some(r) = self.user(key, now) else { return };
            let n = r.budget.fail(now, p.window);
            r.idle_at = r.idle_at.max(r.budget.start + p.window);
            if n >= p.user_failures && r.locked_until.is_none_or(|u| u <= now) {
                let d = ban_time(&p, r.offences);
                r.offences = r.offences.saturating_add(1);
                r.locked_until = Some(now + d);
                r.budget.failures = 0;
                r.idle_at = r.idle_at.max(now + d + p.max_ban);
                self.stats.auth_user_locks.inc();
                info!(
                    tenant = %String::from_utf8_lossy(tenant),
                    user = %String::from_utf8_lossy(name),
                    secs = d.as_secs(),
                    "user locked after repeated digest failures: only sources it authenticated from are checked"
                );
            }
        }
    }

    /// A ban another worker decided: applied here as well (not reported
    /// again).
    pub fn import(&mut self, now: Instant, ban: Ban) {
        if ban.until <= now {
            return;
        }
        let max_ban = self.policy.max_ban;
        let Some(r) = self.source(ban.source, now) else { return };
        let was = r.banned_until.is_some_and(|u| u > now);
        if r.banned_until.is_some_and(|u| u >= ban.until) {
            return;
        }
        r.banned_until = Some(ban.until);
        r.offences = r.offences.max(ban.offence);
        r.idle_at = r.idle_at.max(ban.until + max_ban);
        if !was {
            self.active += 1;
        }
        self.ends.push(Reverse((ban.until, ban.source)));
        self.stats.auth_bans_shared.inc();
        debug!(source = %ban.source, secs = ban.duration.as_secs(), "ban from another worker applied");
    }

    /// The next ban decided here, for the I/O layer.
    pub fn poll_ban(&mut self) -> Option<Ban> {
        self.pending.pop_front()
    }

    /// A new configuration: the bans of sources it trusts are lifted at
    /// once (an operator who adds a trusted peer after it was banned does
    /// not wait out the ban). Returns how many.
    pub fn lift_trusted(&mut self, now: Instant, cfg: &Config) -> usize {
        if self.active == 0 {
            return 0;
        }
        let mut n = 0;
        for (src, r) in &mut self.sources {
            if r.banned_until.is_some_and(|u| u > now) && cfg.trusts_any_of(src.net()) {
                // Its entry in `ends` goes stale: handle_timeout checks.
                r.banned_until = None;
                r.budget.failures = 0;
                self.lifted.push_back(*src);
                n += 1;
            }
        }
        self.active = self.active.saturating_sub(n as u64);
        n
    }

    /// The next source whose ban [`Guard::lift_trusted`] lifted, for the
    /// I/O layer.
    pub fn poll_lifted(&mut self) -> Option<Source> {
        self.lifted.pop_front()
    }

    /// When the next ban ends.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.ends.peek().map(|Reverse((at, _))| *at)
    }

    /// Ends the bans due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, src))) = self.ends.peek() {
            if at > now {
                break;
            }
            self.ends.pop();
            if self.sources.get(&src).is_some_and(|r| r.banned_until == Some(at)) {
                self.active = self.active.saturating_sub(1);
                debug!(source = %src, "ban ended");
            }
        }
    }

    /// Bans in force.
    pub fn active_bans(&self) -> u64 {
        self.active
    }

    /// Sources and users tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.users.len())
    }

    fn ban(&mut self, now: Instant, src: Source) {
        let p = self.policy;
        let Some(r) = self.sources.get_mut(&src) else { return };
        let d = ban_time(&p, r.offences);
        r.offences = r.offences.saturating_add(1);
        let until = now + d;
        r.banned_until = Some(until);
        r.budget.failures = 0;
        r.idle_at = r.idle_at.max(until + p.max_ban);
        let ban = Ban { source: src, until, duration: d, offence: r.offences };
        self.active += 1;
        self.ends.push(Reverse((until, src)));
        if self.pending.len() == MAX_PENDING_BANS {
            self.pending.pop_front();
            self.stats.auth_guard_full.inc();
        }
        self.pending.push_back(ban);
        self.stats.auth_bans.inc();
        warn!(
            source = %src,
            secs = d.as_secs(),
            offence = ban.offence,
            failures = p.source_failures,
            window_s = p.window.as_secs(),
            "source banned after repeated digest failures"
        );
    }

    fn user_key(&self, tenant: &[u8], user: &[u8]) -> u64 {
        self.hasher.pair(tenant, user)
    }

    /// The record of `src`, made if there is room (a full table is swept
    /// at most once a second first).
    fn source(&mut self, src: Source, now: Instant) -> Option<&mut SourceRec> {
        if !self.sources.contains_key(&src) && self.sources.len() >= self.cap {
            if self.next_sweep.is_none_or(|t| t <= now) {
                self.next_sweep = Some(now + SWEEP_EVERY);
                self.sources.retain(|_, r| r.idle_at > now);
                self.users.retain(|_, r| r.idle_at > now);
            }
            if self.sources.len() >= self.cap {
                self.stats.auth_guard_full.inc();
                return None;
            }
        }
        let fresh =
            SourceRec { budget: Budget { start: now, failures: 0 }, offences: 0, banned_until: None, idle_at: now };
        Some(self.sources.entry(src).or_insert(fresh))
    }

    /// The record of user `key`, made if there is room.
    fn user(&mut self, key: u64, now: Instant) -> Option<&mut UserRec> {
        if !self.users.contains_key(&key) && self.users.len() >= self.cap {
            if self.next_sweep.is_none_or(|t| t <= now) {
                self.next_sweep = Some(now + SWEEP_EVERY);
                self.sources.retain(|_, r| r.idle_at > now);
                self.users.retain(|_, r| r.idle_at > now);
            }
            if self.users.len() >= self.cap {
                self.stats.auth_guard_full.inc();
                return None;
            }
        }
        let fresh = UserRec {
            budget: Budget { start: now, failures: 0 },
            offences: 0,
            locked_until: None,
            good: [None; GOOD_SOURCES],
            idle_at: now,
        };
        Some(self.users.entry(key).or_insert(fresh))
    }
}

/// The ban (or lock) after `offences` earlier ones: the first ban doubled
/// that many times, at most the longest ban.
fn ban_time(p: &Policy, offences: u32) -> Duration {
    let factor = 1u32.checked_shl(offences.min(31)).unwrap_or(u32::MAX);
    p.ban.saturating_mul(factor).min(p.max_ban).max(p.ban.min(p.max_ban))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::config::{Config, TenantMode, TenantPolicy};
    use crate::proto::ids::Seed;

    fn guard(policy: Policy, cap: usize) -> (Guard, Arc<ShardStats>) {
        let stats = Arc::new(ShardStats::default());
        (Guard::new(policy, cap, Seed::from_u64(5).hasher(3), stats.clone()), stats)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn sources_are_addresses_and_ipv6_64s() {
        assert_eq!(Source::of(ip("192.0.2.7")), Source::of(ip("::ffff:192.0.2.7")));
        assert_ne!(Source::of(ip("192.0.2.7")), Source::of(ip("192.0.2.8")));
        assert_eq!(Source::of(ip("2001:db8:1:2::1")), Source::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(Source::of(ip("2001:db8:1:2::1")), Source::of(ip("2001:db8:1:3::1")));
        assert_eq!(Source::of(ip("192.0.2.7")).to_string(), "192.0.2.7");
        assert_eq!(Source::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
        assert_eq!(Source::of(ip("192.0.2.7")).bytes()[10..], [0xff, 0xff, 192, 0, 2, 7]);
    }

    #[test]
    fn ban_times_double_up_to_the_cap() {
        let p = Policy { ban: secs(60), max_ban: secs(300), ..Policy::default() };
        let got: Vec<u64> = (0..6).map(|o| ban_time(&p, o).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 300, 300, 300]);
        assert_eq!(ban_time(&p, u32::MAX).as_secs(), 300);
        let odd = Policy { ban: secs(600), max_ban: secs(60), ..Policy::default() };
        assert_eq!(ban_time(&odd, 0).as_secs(), 60, "never past the cap");
    }

    #[test]
    fn a_budget_bans_and_the_ban_ends() {
        let (mut g, stats) = guard(Policy::default(), 16);
        let cfg = Config::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..4 {
            g.failure(t0 + secs(i), a, None, &cfg);
        }
        assert!(!g.is_banned(a, t0 + secs(4)));
        // Failures in another window do not add up: the first four left it.
        g.failure(t0 + secs(61), a, None, &cfg);
        assert!(!g.is_banned(a, t0 + secs(61)) && g.poll_ban().is_none());
        for i in 0..4 {
            g.failure(t0 + secs(62 + i), a, None, &cfg);
        }
        let at = t0 + secs(65);
        assert!(g.is_banned(a, at));
        assert!(!g.is_banned(ip("192.0.2.2"), at));
        let ban = g.poll_ban().unwrap_or_else(|| panic!("a ban is reported"));
        assert_eq!((ban.source, ban.until, ban.duration, ban.offence), (Source::of(a), at + secs(60), secs(60), 1));
        assert_eq!((stats.auth_bans.get(), g.active_bans()), (1, 1));
        assert_eq!(g.next_timeout(), Some(at + secs(60)));
        g.handle_timeout(at + secs(59));
        assert_eq!(g.active_bans(), 1);
        g.handle_timeout(at + secs(60));
        assert!(!g.is_banned(a, at + secs(60)));
        assert_eq!((g.active_bans(), g.next_timeout()), (0, None));
        // The next offence within the memory doubles the ban.
        for i in 0..5 {
            g.failure(at + secs(70 + i), a, None, &cfg);
        }
        let ban = g.poll_ban().unwrap_or_else(|| panic!("a second ban"));
        assert_eq!((ban.duration, ban.offence), (secs(120), 2));
    }

    #[test]
    fn trusted_peers_are_never_banned() {
        let (mut g, stats) = guard(Policy::default(), 16);
        let mut beta = TenantPolicy::default();
        beta.trust.push("192.0.2.0/28".parse().unwrap_or_else(|e| panic!("{e}")));
        let mut map = hashbrown::HashMap::new();
        map.insert("beta.example".to_owned(), beta);
        let cfg = Config { tenants: TenantMode::Strict(map), ..Config::default() };
        let t0 = Instant::now();
        for i in 0..50 {
            g.failure(t0 + Duration::from_millis(i), ip("192.0.2.9"), None, &cfg);
            g.failure(t0 + Duration::from_millis(i), ip("2001:db8::1"), None, &cfg);
        }
        assert!(!g.is_banned(ip("192.0.2.9"), t0 + secs(1)), "trusted by beta");
        assert!(g.is_banned(ip("2001:db8::77"), t0 + secs(1)), "same /64");
        assert_eq!(stats.auth_bans.get(), 1);
        // A trust list holding an address of a /64 protects that /64.
        let v6 = Config { trust: vec!["2001:db8:0:5::9/128".parse().unwrap_or_else(|e| panic!("{e}"))], ..cfg };
        for i in 0..10 {
            g.failure(t0 + Duration::from_millis(i), ip("2001:db8:0:5::1"), None, &v6);
        }
        assert!(!g.is_banned(ip("2001:db8:0:5::1"), t0 + secs(1)));
    }

    #[test]
    fn a_reload_that_trusts_a_banned_source_lifts_its_ban() {
        let (mut g, _) = guard(Policy::default(), 16);
        let none = Config::default();
        let t0 = Instant::now();
        for i in 0..5 {
            g.failure(t0 + Duration::from_millis(i), ip("192.0.2.9"), None, &none);
            g.failure(t0 + Duration::from_millis(i), ip("198.51.100.7"), None, &none);
        }
        assert!(g.is_banned(ip("192.0.2.9"), t0 + secs(1)) && g.is_banned(ip("198.51.100.7"), t0 + secs(1)));
        assert_eq!(g.active_bans(), 2);
        assert_eq!(g.lift_trusted(t0 + secs(1), &none), 0, "nothing trusted: nothing lifted");
        let trusting = Config { trust: vec!["192.0.2.0/24".parse().unwrap_or_else(|e| panic!("{e}"))], ..none };
        assert_eq!(g.lift_trusted(t0 + secs(1), &trusting), 1);
        assert!(!g.is_banned(ip("192.0.2.9"), t0 + secs(1)), "trusted now");
        assert!(g.is_banned(ip("198.51.100.7"), t0 + secs(1)), "still banned");
        assert_eq!(g.poll_lifted(), Some(Source::of(ip("192.0.2.9"))), "for the XDP map");
        assert_eq!(g.poll_lifted(), None);
        assert_eq!(g.active_bans(), 1);
        // The lifted ban's end comes and goes without counting twice.
        g.handle_timeout(t0 + secs(3600));
        assert_eq!(g.active_bans(), 0);
    }

    #[test]
    fn a_locked_user_is_checked_only_from_its_own_sources() {
        let p = Policy { user_failures: 3, source_failures: 0, ..Policy::default() };
        let (mut g, stats) = guard(p, 16);
        let cfg = Config::default();
        let t0 = Instant::now();
        let (acme, alice) = (&b"acme.example"[..], &b"101"[..]);
        g.success(t0, acme, alice, ip("198.51.100.1"));
        for i in 0..3u8 {
            assert!(!g.refuses(acme, alice, ip("203.0.113.1"), t0));
            g.failure(t0 + secs(1), ip(&format!("203.0.113.{i}")), Some((acme, alice)), &cfg);
        }
        let t = t0 + secs(2);
        assert!(g.refuses(acme, alice, ip("203.0.113.200"), t), "a new source is refused");
        assert!(!g.refuses(acme, alice, ip("198.51.100.1"), t), "the user's device is not");
        assert!(!g.refuses(acme, b"102", ip("203.0.113.200"), t), "another user is not");
        assert!(!g.refuses(b"beta.example", alice, ip("203.0.113.200"), t), "nor beta's 101");
        assert!(!g.refuses(acme, alice, ip("203.0.113.200"), t0 + secs(62)), "the lock ends");
        assert_eq!(stats.auth_user_locks.get(), 1);
        assert!(g.poll_ban().is_none(), "source bans are off");
        // A success forgives the user's failures.
        let t = t0 + secs(100);
        g.failure(t, ip("203.0.113.1"), Some((acme, alice)), &cfg);
        g.failure(t, ip("203.0.113.1"), Some((acme, alice)), &cfg);
        g.success(t, acme, alice, ip("198.51.100.1"));
        g.failure(t, ip("203.0.113.1"), Some((acme, alice)), &cfg);
        assert!(!g.refuses(acme, alice, ip("203.0.113.9"), t));
    }

    #[test]
    fn imported_bans_apply_once_and_are_not_reported_again() {
        let (mut g, stats) = guard(Policy::default(), 16);
        let t0 = Instant::now();
        let src = Source::of(ip("192.0.2.1"));
        let ban = Ban { source: src, until: t0 + secs(60), duration: secs(60), offence: 1 };
        g.import(t0, ban);
        g.import(t0, ban);
        assert!(g.is_banned(ip("192.0.2.1"), t0 + secs(59)));
        assert_eq!((g.active_bans(), stats.auth_bans_shared.get(), stats.auth_bans.get()), (1, 1, 0));
        assert!(g.poll_ban().is_none());
        // Extended by a longer one: still one ban in force, ending later.
        g.import(t0 + secs(10), Ban { until: t0 + secs(130), ..ban });
        g.handle_timeout(t0 + secs(60));
        assert!(g.is_banned(ip("192.0.2.1"), t0 + secs(100)));
        assert_eq!(g.active_bans(), 1);
        g.handle_timeout(t0 + secs(130));
        assert_eq!(g.active_bans(), 0);
        g.import(t0 + secs(200), Ban { until: t0 + secs(150), ..ban });
        assert!(!g.is_banned(ip("192.0.2.1"), t0 + secs(200)), "an ended ban is ignored");
    }

    #[test]
    fn tables_stay_bounded() {
        let (mut g, stats) = guard(Policy::default(), 8);
        let cfg = Config::default();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            g.failure(t0, a, Some((b"acme.example", &i.to_be_bytes())), &cfg);
            g.success(t0, b"acme.example", &(i + 5000).to_be_bytes(), a);
            let (s, u) = g.tracked();
            assert!(s <= 8 && u <= 8, "{s} sources, {u} users");
        }
        assert!(stats.auth_guard_full.get() > 0);
        // Once idle, records make room again.
        let later = t0 + secs(3600 + 61);
        g.failure(later, ip("192.0.2.1"), None, &cfg);
        assert_eq!(g.tracked().0, 1);
    }
}
