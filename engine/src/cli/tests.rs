//! The flags as the binary gets them (`Args::try_parse_from`), planned
//! against in-memory files ([`Fake`]): what each flag lands in, and the
//! text of each refusal.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;

use super::{Args, Plan, Reloaded, Sources, plan, reload_plan};
use crate::io::tls::{self, TlsCert};
use crate::io::{IoChoice, Serve, SteerChoice};
use crate::proto::config::{Admission, Cidr, Config, Guard, Limits, RecallTo, TenantMode, TenantPolicy, Timers};
use crate::proto::overload::Bounds;
use crate::proto::sip::Transport;

const SECRET: [u8; 32] = [7; 32];
const TENANTS: &str = "/etc/sipark/tenants.toml";

/// Files, certificates and host names held in memory. A certificate is
/// "on disk" when both its chain and its key path are in `pem`.
struct Fake {
    cores: usize,
    files: HashMap<PathBuf, String>,
    blobs: HashMap<PathBuf, Vec<u8>>,
    pem: Vec<PathBuf>,
    hosts: HashMap<&'static str, Vec<IpAddr>>,
}

impl Fake {
    fn new() -> Fake {
        Fake { cores: 3, files: HashMap::new(), blobs: HashMap::new(), pem: Vec::new(), hosts: HashMap::new() }
    }

    fn file(mut self, path: &str, text: &str) -> Fake {
        self.files.insert(path.into(), text.to_owned());
        self
    }

    fn blob(mut self, path: &str, bytes: Vec<u8>) -> Fake {
        self.blobs.insert(path.into(), bytes);
        self
    }

    fn pem(mut self, paths: &[&str]) -> Fake {
        self.pem.extend(paths.iter().map(PathBuf::from));
        self
    }

    fn host(mut self, name: &'static str, addrs: &[IpAddr]) -> Fake {
        self.hosts.insert(name, addrs.to_vec());
        self
    }

    fn missing(path: &Path) -> String {
        format!("{}: I/O error: No such file or directory (os error 2)", path.display())
    }
}

impl Sources for Fake {
    fn cores(&self) -> usize {
        self.cores
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.blobs.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn load_cert(&self, domain: Option<String>, cert: &Path, key: &Path) -> Result<TlsCert, String> {
        for p in [cert, key] {
            if !self.pem.iter().any(|x| x == p) {
                return Err(Fake::missing(p));
            }
        }
        let name = domain.clone().unwrap_or_else(|| "default.example".into());
        let ck = rcgen::generate_simple_self_signed(vec![name]).unwrap_or_else(|e| panic!("rcgen: {e}"));
        let der = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap_or_else(|e| panic!("key: {e}"));
        tls::cert_from_der(domain, vec![ck.cert.der().clone()], der)
    }

    fn load_roots(&self, ca: &Path) -> Result<Arc<RootCertStore>, String> {
        if !self.pem.iter().any(|x| x == ca) {
            return Err(Fake::missing(ca));
        }
        let ck = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap_or_else(|e| panic!("{e}"));
        let mut roots = RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap_or_else(|e| panic!("root: {e}"));
        Ok(Arc::new(roots))
    }

    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.hosts.get(host).cloned().ok_or_else(|| io::Error::other("Name or service not known"))?,
        };
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    fn nonce_secret(&self) -> io::Result<[u8; 32]> {
        Ok(SECRET)
    }
}

fn args(flags: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("sipark").chain(flags.iter().copied()))
        .unwrap_or_else(|e| panic!("{flags:?} do not parse: {e}"))
}

fn planned_with(flags: &[&str], sources: &Fake) -> Plan {
    plan(&args(flags), sources).unwrap_or_else(|e| panic!("{flags:?} refused: {e}"))
}

fn planned(flags: &[&str]) -> Plan {
    planned_with(flags, &Fake::new())
}

fn refused_with(flags: &[&str], sources: &Fake) -> String {
    match plan(&args(flags), sources) {
        Ok(p) => panic!("{flags:?} accepted: {p:#?}"),
        Err(e) => e,
    }
}

fn refused(flags: &[&str]) -> String {
    refused_with(flags, &Fake::new())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn strict(cfg: &Config) -> &hashbrown::HashMap<String, TenantPolicy> {
    match &cfg.tenants {
        TenantMode::Strict(map) => map,
        TenantMode::Open => panic!("expected strict tenants, got open"),
    }
}

#[test]
fn no_flags_give_the_documented_defaults() {
    let p = planned(&[]);
    assert_eq!(p.io.listen, addr("0.0.0.0:5060"));
    assert_eq!(p.io.workers, 3, "one worker per usable core");
    assert!(p.io.pin);
    assert_eq!(p.io.metrics, None);
    assert_eq!(p.io.shutdown_grace, Duration::from_secs(10));
    assert_eq!((p.io.io, p.io.steer, p.io.serve), (IoChoice::Auto, SteerChoice::Auto, Serve::Sip));
    assert!(p.io.xdp.is_none());
    assert!(p.streams.tcp, "TCP listens beside UDP");
    assert!(p.streams.tls.is_none() && p.streams.tls_client_roots.is_none());
    let l = p.streams.limits;
    assert_eq!(
        (l.max_connections, l.idle_timeout, l.max_message, l.max_backlog, l.handshake_timeout),
        (10_000, Duration::from_secs(1800), 65_535, 1 << 20, Duration::from_secs(10))
    );
    assert_eq!((p.xdp_desc.as_str(), p.tenants_desc.as_str()), ("off", "open (every domain)"));

    let cfg = p.config(addr("0.0.0.0:5060"));
    assert_eq!(cfg.advertise, "127.0.0.1:5060", "an unspecified address is advertised as loopback");
    assert_eq!((cfg.park_fac.as_str(), cfg.retrieve_fac.as_str()), ("*68", "*88"));
    assert_eq!(cfg.tenants, TenantMode::Open);
    assert_eq!(
        cfg.defaults,
        TenantPolicy { park_timeout: Duration::from_secs(300), max_parks_per_ext: 8, ..TenantPolicy::default() }
    );
    assert_eq!(cfg.recall_timeout, Duration::from_secs(30));
    assert_eq!(cfg.max_contacts, 10);
    let timers =
        Timers { t1: Duration::from_millis(500), t2: Duration::from_millis(4000), t4: Duration::from_millis(5000) };
    assert_eq!(cfg.timers, timers);
    assert_eq!(cfg.limits, Limits { max_call_duration: Duration::from_secs(43_200), ..Limits::default() });
    assert!(cfg.trust.is_empty());
    assert_eq!(cfg.nonce_secret, SECRET, "the key comes from the sources");
    assert_eq!(cfg.nonce_validity, Duration::from_secs(300));
    let guard = Guard {
        source_failures: 5,
        user_failures: 10,
        window: Duration::from_secs(60),
        ban: Duration::from_secs(60),
        max_ban: Duration::from_secs(3600),
    };
    assert_eq!(cfg.guard, guard);
    assert_eq!(cfg.outbound_proxy, None);
}

#[test]
fn auth_flags_land_in_the_guard_policy() {
    let flags = [
        "--auth-failures",
        "0",
        "--auth-user-failures",
        "25",
        "--auth-window",
        "300",
        "--auth-ban",
        "120",
        "--auth-ban-max",
        "86400",
    ];
    let cfg = planned(&flags).config(addr("127.0.0.1:5060"));
    let want = Guard {
        source_failures: 0,
        user_failures: 25,
        window: Duration::from_secs(300),
        ban: Duration::from_secs(120),
        max_ban: Duration::from_secs(86_400),
    };
    assert_eq!(cfg.guard, want);
}

#[test]
fn workers_default_to_the_cores_within_1_to_1024() {
    for (cores, workers) in [(1, 1), (0, 1), (64, 64), (5000, 1024)] {
        let p = planned_with(&[], &Fake { cores, ..Fake::new() });
        assert_eq!(p.io.workers, workers, "{cores} cores");
    }
    assert_eq!(planned(&["--workers", "7"]).io.workers, 7, "the flag wins over the core count");
}

#[test]
fn out_of_range_and_contradictory_flags_are_refused_by_name() {
    let cases: &[(&[&str], &str)] = &[
        (&["--park-fac", ""], r#"--park-fac "": expected 1-16 characters of 0-9, *, #, letters"#),
        (&["--retrieve-fac", "*8 8"], r#"--retrieve-fac "*8 8": expected 1-16 characters of 0-9, *, #, letters"#),
        (&["--park-fac", "*12345678901234567"], "--park-fac \"*12345678901234567\": expected 1-16 characters"),
        (&["--park-fac", "*7A", "--retrieve-fac", "*7a"], "--park-fac and --retrieve-fac must differ"),
        (&["--park-timeout", "0"], "--park-timeout must be 1..=86400 seconds"),
        (&["--park-timeout", "86401"], "--park-timeout must be 1..=86400 seconds"),
        (&["--recall-timeout", "3601"], "--recall-timeout must be 1..=3600 seconds"),
        (&["--max-parks-per-ext", "0"], "--max-parks-per-ext must be 1..=1000"),
        (&["--max-contacts", "1001"], "--max-contacts must be 1..=1000"),
        (&["--t1-ms", "0"], "--t1-ms must be 1..=60000"),
        (&["--t1-ms", "800", "--t2-ms", "700"], "--t2-ms must be at least --t1-ms and at most 600000"),
        (&["--t4-ms", "600001"], "--t4-ms must be 1..=600000"),
        (&["--max-call-duration", "59"], "--max-call-duration must be 60..=604800 seconds"),
        (&["--shutdown-grace", "3601"], "--shutdown-grace must be 0..=3600 seconds"),
        (&["--workers", "0"], "--workers must be at least 1"),
        (&["--workers", "1025"], "--workers must be at most 1024"),
        (&["--advertise", "pbx example"], r#"--advertise "pbx example" is not a host[:port]"#),
        (&["--advertise", "a@b"], r#"--advertise "a@b" is not a host[:port]"#),
        (&["--nonce-validity", "0"], "--nonce-validity must be 1..=86400 seconds"),
        (&["--auth-failures", "1001"], "--auth-failures must be 0..=1000 and --auth-user-failures 0..=100000"),
        (&["--auth-window", "0"], "--auth-window must be 1..=86400 seconds"),
        (&["--auth-ban", "86401"], "--auth-ban must be 1..=86400 seconds"),
        (
            &["--auth-ban", "600", "--auth-ban-max", "300"],
            "--auth-ban-max must be at least --auth-ban and at most 2592000 seconds",
        ),
        (&["--max-connections", "0"], "--max-connections must be 1..=1000000"),
        (&["--tcp-idle-timeout", "86401"], "--tcp-idle-timeout must be 1..=86400 seconds"),
        (&["--max-message-size", "1023"], "--max-message-size must be 1024..=1048576 bytes"),
        (
            &["--max-message-size", "4096", "--max-write-backlog", "4095"],
            "--max-write-backlog must be at least --max-message-size and at most 64 MiB",
        ),
        (&["--tls-handshake-timeout", "301"], "--tls-handshake-timeout must be 1..=300 seconds"),
        (&["--tls-key", "k.pem"], "--tls-cert and --tls-key go together"),
        (&["--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-cert, --tls-key and --tls-advertise need --tls-listen"),
        (&["--tls-advertise", "sips.example"], "--tls-cert, --tls-key and --tls-advertise need --tls-listen"),
        (
            &["--tls-listen", "127.0.0.1:5061"],
            "--tls-listen needs --tls-cert and --tls-key, or tenants with tls_cert and tls_key",
        ),
        (&["--tenant-rate", "100"], "--tenant-rate, --block and --scanner-ua need --xdp"),
        (&["--block", "192.0.2.0/24"], "--tenant-rate, --block and --scanner-ua need --xdp"),
        (&["--scanner-ua", "probe"], "--tenant-rate, --block and --scanner-ua need --xdp"),
        (
            &["--bare-io", "--listen", "192.0.2.1:5060"],
            "--bare-io answers any datagram: it listens on a loopback address only",
        ),
        (
            &["--bare-io", "--listen", "127.0.0.1:5060", "--steer", "on"],
            "--bare-io serves no SIP: --tls-listen, --xdp and --steer on do not apply",
        ),
        (&["--tls-ca", "/etc/ca.pem"], "--tls-ca: /etc/ca.pem: I/O error: No such file or directory (os error 2)"),
        (&["--overload-delay-ms", "0.01"], "--overload-delay-ms must be 0 (off) or 0.05..=10000"),
        (&["--overload-delay-ms=-1"], "--overload-delay-ms must be 0 (off) or 0.05..=10000"),
        (
            &["--overload-delay-ms", "1", "--overload-resume-ms", "2"],
            "--overload-resume-ms must be above 0 and at most --overload-delay-ms",
        ),
        (&["--overload-resume-ms", "0"], "--overload-resume-ms must be above 0 and at most --overload-delay-ms"),
        (&["--overload-window-ms", "60001"], "--overload-window-ms must be 0..=60000"),
        (&["--overload-hold-ms", "600001"], "--overload-hold-ms must be 0..=600000"),
        (&["--overload-retry-after", "0"], r#"--overload-retry-after "0": expected N or MIN-MAX seconds"#),
        (&["--overload-retry-after", "9-3"], r#"--overload-retry-after "9-3": expected N or MIN-MAX seconds"#),
        (&["--overload-retry-after", "2-x"], r#"--overload-retry-after "2-x": expected N or MIN-MAX seconds"#),
    ];
    for (flags, want) in cases {
        let got = refused(flags);
        assert!(got.starts_with(want), "{flags:?}:\n got: {got}\nwant: {want}");
    }
}

#[test]
fn the_first_error_in_flag_order_is_reported() {
    // Feature codes are checked before timers, timers before TCP limits.
    assert_eq!(
        refused(&["--park-fac", "", "--t1-ms", "0"]),
        r#"--park-fac "": expected 1-16 characters of 0-9, *, #, letters"#
    );
    assert_eq!(refused(&["--max-connections", "0", "--t1-ms", "0"]), "--t1-ms must be 1..=60000");
}

#[test]
fn advertise_takes_the_bound_port_unless_it_names_one() {
    let cases = [
        (None, "192.0.2.1:5070", "192.0.2.1:5070"),
        (None, "0.0.0.0:5070", "127.0.0.1:5070"),
        (None, "[2001:db8::1]:5070", "[2001:db8::1]:5070"),
        (Some("pbx.example"), "0.0.0.0:5070", "pbx.example:5070"),
        (Some("pbx.example:5080"), "0.0.0.0:5070", "pbx.example:5080"),
        (Some("[2001:db8::2]"), "192.0.2.1:5070", "[2001:db8::2]:5070"),
        (Some("[2001:db8::2]:5080"), "192.0.2.1:5070", "[2001:db8::2]:5080"),
    ];
    for (flag, bound, want) in cases {
        let p = match flag {
            Some(a) => planned(&["--advertise", a]),
            None => planned(&[]),
        };
        assert_eq!(p.config(addr(bound)).advertise, want, "--advertise {flag:?}, bound {bound}");
    }
}

#[test]
fn tls_listen_takes_the_certificates_and_tls_advertise() {
    let sources = Fake::new().pem(&["/c.pem", "/k.pem"]);
    let flags = ["--tls-listen", "127.0.0.1:5061", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"];
    let p = planned_with(&flags, &sources);
    let tls = p.streams.tls.unwrap_or_else(|| panic!("no TLS listener"));
    assert_eq!((tls.listen, tls.advertise), (addr("127.0.0.1:5061"), None));
    assert_eq!(tls.certs.iter().map(|c| c.domain.clone()).collect::<Vec<_>>(), [None], "one default certificate");

    let with = |a: &'static str| [&flags[..], &["--tls-advertise", a]].concat();
    let p = planned_with(&with("sips.example:5062"), &sources);
    assert_eq!(p.streams.tls.and_then(|t| t.advertise).as_deref(), Some("sips.example:5062"));
    let e = refused_with(&with("sips example"), &sources);
    assert_eq!(e, r#"--tls-advertise "sips example" is not a host[:port]"#);
    let e = refused_with(&flags, &Fake::new());
    assert_eq!(e, "--tls-cert/--tls-key: /c.pem: I/O error: No such file or directory (os error 2)");
}

#[test]
fn trust_lists_repeat_and_split_on_commas() {
    let p = planned(&["--trust", "10.0.0.0/8,192.0.2.7", "--trust", "2001:db8::/32"]);
    let cfg = p.config(addr("192.0.2.1:5060"));
    assert_eq!(cfg.trust, [cidr("10.0.0.0/8"), cidr("192.0.2.7/32"), cidr("2001:db8::/32")]);
    let open = &cfg.defaults;
    assert_eq!(cfg.admission(open, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))), Admission::Trusted);
    assert_eq!(cfg.admission(open, "::ffff:192.0.2.7".parse().unwrap_or_else(|e| panic!("{e}"))), Admission::Trusted);
    assert_eq!(
        cfg.admission(open, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8))),
        Admission::Refused,
        "with trusted peers, a tenant without users refuses the rest"
    );
    assert!(Args::try_parse_from(["sipark", "--trust", "10.0.0.0/33"]).is_err(), "clap refuses a bad CIDR");
}

#[test]
fn outbound_proxy_is_a_sip_uri_without_user_resolved_at_start() {
    let sources = Fake::new()
        .host("proxy.example", &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 6))])
        .host("void.example", &[]);
    let cases = [
        ("sip:10.0.0.5", "10.0.0.5:5060", Transport::Udp),
        ("sip:10.0.0.5:5070;transport=tcp", "10.0.0.5:5070", Transport::Tcp),
        ("sip:proxy.example;lr", "192.0.2.5:5060", Transport::Udp),
        ("sips:proxy.example", "192.0.2.5:5061", Transport::Tls),
        ("sip:proxy.example;transport=tls", "192.0.2.5:5061", Transport::Tls),
        ("sip:[2001:db8::5]:5090", "[2001:db8::5]:5090", Transport::Udp),
    ];
    for (raw, want, transport) in cases {
        let p = planned_with(&["--outbound-proxy", raw], &sources);
        let proxy = p.config(addr("192.0.2.1:5060")).outbound_proxy.unwrap_or_else(|| panic!("{raw}: no proxy"));
        assert_eq!((proxy.peer.addr, proxy.peer.transport), (addr(want), transport), "{raw}");
        assert_eq!(&*proxy.uri, raw, "the URI is kept as written, for the Route header");
    }
    let refusals = [
        ("sip:park@10.0.0.5", "a proxy URI has no user part and no headers"),
        ("sip:10.0.0.5?Subject=x", "a proxy URI has no user part and no headers"),
        ("sip:10.0.0.5;transport=sctp", "expected a sip: or sips: URI, transport udp, tcp or tls"),
        ("tel:+15551234", "expected a sip: or sips: URI, transport udp, tcp or tls"),
        ("garbage", "Bad Request-URI"),
        ("sip:nowhere.example", "Name or service not known"),
        ("sip:void.example", "the host has no address"),
    ];
    for (raw, why) in refusals {
        let e = refused_with(&["--outbound-proxy", raw], &sources);
        assert_eq!(e, format!("--outbound-proxy {raw:?}: {why}"), "{raw}");
    }
}

const TWO_TENANTS: &str = r#"
block = ["198.51.100.0/24"]

[defaults]
park_timeout = 120
rate = 50

[[tenant]]
domain = "A.example"
max_parks_per_ext = 2
tls_cert = "certs/a.pem"
tls_key = "certs/a.key"

[[tenant]]
domain = "b.example"
park_timeout = 60
recall_to = "group"
recall_group = ["200"]
"#;

#[test]
fn tenants_file_overrides_the_cli_defaults_it_names() {
    let sources = Fake::new().file(TENANTS, TWO_TENANTS);
    let p = planned_with(&["--park-timeout", "200", "--max-parks-per-ext", "5", "--tenants", TENANTS], &sources);
    assert_eq!(p.tenants_desc, format!("strict (2 tenants from {TENANTS})"));
    let cfg = p.config(addr("192.0.2.1:5060"));
    // [defaults] sets park_timeout; max_parks_per_ext stays the flag's.
    assert_eq!((cfg.defaults.park_timeout, cfg.defaults.max_parks_per_ext), (Duration::from_secs(120), 5));
    let tenants = strict(&cfg);
    let mut names: Vec<&str> = tenants.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["a.example", "b.example"], "domains are lowercased");
    let a = &tenants["a.example"];
    assert_eq!((a.park_timeout, a.max_parks_per_ext), (Duration::from_secs(120), 2));
    let b = &tenants["b.example"];
    assert_eq!((b.park_timeout, b.max_parks_per_ext, b.recall_to), (Duration::from_secs(60), 5, RecallTo::Group));
    // Without --tls-listen the tenant's certificate is not read (a warning says so).
    assert!(p.streams.tls.is_none());
}

#[test]
fn tenant_certificates_are_read_beside_the_tenants_file() {
    let sources = Fake::new().file(TENANTS, TWO_TENANTS).pem(&["/etc/sipark/certs/a.pem", "/etc/sipark/certs/a.key"]);
    let p = planned_with(&["--tenants", TENANTS, "--tls-listen", "127.0.0.1:5061"], &sources);
    let tls = p.streams.tls.unwrap_or_else(|| panic!("no TLS listener"));
    let domains: Vec<Option<String>> = tls.certs.iter().map(|c| c.domain.clone()).collect();
    assert_eq!(domains, [Some("a.example".to_owned())], "no --tls-cert: only the tenant's, by SNI");

    let e = refused_with(
        &["--tenants", TENANTS, "--tls-listen", "127.0.0.1:5061"],
        &Fake::new().file(TENANTS, TWO_TENANTS),
    );
    assert_eq!(
        e,
        r#"tenant "a.example": tls_cert/tls_key: /etc/sipark/certs/a.pem: I/O error: No such file or directory (os error 2)"#
    );
}

#[test]
fn a_tenants_file_that_does_not_load_names_the_file() {
    let e = refused_with(&["--tenants", TENANTS], &Fake::new());
    assert_eq!(e, format!("--tenants {TENANTS}: entity not found"));
    let bad = "[[tenant]]\ndomain = \"a.example\"\n\n[[tenant]]\ndomain = \"bad domain\"\n";
    let e = refused_with(&["--tenants", TENANTS], &Fake::new().file(TENANTS, bad));
    assert_eq!(e, format!(r#"{TENANTS}: tenants file: "bad domain" is not a domain name"#));
    let e = refused_with(&["--tenants", TENANTS], &Fake::new().file(TENANTS, "[defaults]\npark_timeout = 0\n"));
    assert_eq!(e, format!("{TENANTS}: tenants file: park_timeout must be 1..=86400 seconds"));
}

#[test]
fn max_flags_land_in_limits_policy_and_streams() {
    let p = planned(&[
        "--max-call-duration",
        "3600",
        "--max-contacts",
        "4",
        "--max-parks-per-ext",
        "2",
        "--max-connections",
        "500",
        "--max-message-size",
        "4096",
        "--max-write-backlog",
        "8192",
        "--tcp-idle-timeout",
        "60",
        "--tls-handshake-timeout",
        "3",
    ]);
    let cfg = p.config(addr("192.0.2.1:5060"));
    assert_eq!(cfg.limits, Limits { max_call_duration: Duration::from_secs(3600), ..Limits::default() });
    assert_eq!((cfg.max_contacts, cfg.defaults.max_parks_per_ext), (4, 2));
    let l = p.streams.limits;
    assert_eq!(
        (l.max_connections, l.max_message, l.max_backlog, l.idle_timeout, l.handshake_timeout),
        (500, 4096, 8192, Duration::from_secs(60), Duration::from_secs(3))
    );
}

#[test]
fn overload_flags_set_the_bounds_and_zero_turns_it_off() {
    let bounds = |flags: &[&str]| planned(flags).config(addr("192.0.2.1:5060")).limits.overload;
    assert_eq!(bounds(&[]), Some(Bounds::default()), "on by default, with the documented bounds");
    let b = bounds(&[
        "--overload-delay-ms",
        "5",
        "--overload-resume-ms",
        "1.5",
        "--overload-window-ms",
        "0",
        "--overload-hold-ms",
        "250",
        "--overload-retry-after",
        "10",
    ]);
    let want = Bounds {
        high: Duration::from_millis(5),
        low: Duration::from_micros(1500),
        window: Duration::ZERO,
        hold: Duration::from_millis(250),
        retry_after: (10, 10),
    };
    assert_eq!(b, Some(want));
    let b = bounds(&["--overload-retry-after", "2-6"]);
    assert_eq!(b.map(|b| b.retry_after), Some((2, 6)));
    assert_eq!(bounds(&["--overload-delay-ms", "0"]), None);
}

#[test]
fn the_other_flags_land_where_they_say() {
    let p = planned(&[
        "--listen",
        "127.0.0.1:0",
        "--no-tcp",
        "--no-pin",
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:9090",
        "--shutdown-grace",
        "0",
        "--io",
        "mmsg",
        "--steer",
        "off",
        "--park-fac",
        "*70",
        "--retrieve-fac",
        "#71",
        "--park-timeout",
        "45",
        "--recall-timeout",
        "15",
        "--t1-ms",
        "100",
        "--t2-ms",
        "800",
        "--t4-ms",
        "900",
        "--nonce-validity",
        "60",
    ]);
    assert_eq!((p.io.listen, p.io.workers, p.io.pin), (addr("127.0.0.1:0"), 2, false));
    assert_eq!((p.io.metrics, p.io.shutdown_grace), (Some(addr("127.0.0.1:9090")), Duration::ZERO));
    assert_eq!((p.io.io, p.io.steer), (IoChoice::Mmsg, SteerChoice::Off));
    assert!(!p.streams.tcp);
    let cfg = p.config(addr("127.0.0.1:40000"));
    assert_eq!(cfg.advertise, "127.0.0.1:40000", "port 0: the bound port is advertised");
    assert_eq!((cfg.park_fac.as_str(), cfg.retrieve_fac.as_str()), ("*70", "#71"));
    assert_eq!((cfg.defaults.park_timeout, cfg.recall_timeout), (Duration::from_secs(45), Duration::from_secs(15)));
    let ms = Duration::from_millis;
    assert_eq!(cfg.timers, Timers { t1: ms(100), t2: ms(800), t4: ms(900) });
    assert_eq!(cfg.nonce_validity, Duration::from_secs(60));
}

#[test]
fn bare_io_serves_no_sip() {
    let p = planned(&["--bare-io", "--listen", "127.0.0.1:5060"]);
    assert_eq!((p.io.serve, p.io.steer), (Serve::Bare, SteerChoice::Off));
    assert!(!p.streams.tcp, "no TCP listener");
    let flags = ["--bare-io", "--listen", "127.0.0.1:5060", "--tls-ca", "/ca.pem"];
    let p = planned_with(&flags, &Fake::new().pem(&["/ca.pem"]));
    assert!(p.streams.tls_client_roots.is_none(), "no SIP, so no outbound TLS");
    assert!(planned_with(&flags[3..], &Fake::new().pem(&["/ca.pem"])).streams.tls_client_roots.is_some());
}

#[test]
fn xdp_takes_the_tenants_and_the_blocklists() {
    let sources = Fake::new().file(TENANTS, TWO_TENANTS);
    let flags = [
        "--xdp",
        "eth0,eth1",
        "--xdp-mode",
        "skb",
        "--tenants",
        TENANTS,
        "--tenant-rate",
        "10/20",
        "--block",
        "203.0.113.0/24",
        "--scanner-ua",
        "ProbeX",
    ];
    let r = plan(&args(&flags), &sources);
    if let Err(e) = crate::bpf::objects_built() {
        assert_eq!(r.err(), Some(format!("--xdp: {e}")), "without the BPF objects --xdp is refused");
        return;
    }
    let p = r.unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(p.xdp_desc, "eth0,eth1");
    let x = p.io.xdp.unwrap_or_else(|| panic!("no XDP configuration"));
    assert_eq!(
        (x.ifaces.as_slice(), x.mode, x.strict),
        (&["eth0".to_owned(), "eth1".to_owned()][..], crate::bpf::XdpMode::Skb, true)
    );
    let mut tenants: Vec<&str> = x.tenants.iter().map(|(d, _)| d.as_str()).collect();
    tenants.sort_unstable();
    assert_eq!(tenants, ["a.example", "b.example"]);
    assert_eq!(x.default_rate.map(|r| (r.per_sec, r.burst)), Some((50, 50)), "the file's [defaults] rate wins");
    assert_eq!(x.block, [(cidr("203.0.113.0/24").addr, 24), (cidr("198.51.100.0/24").addr, 24)]);
    assert_eq!(x.scanners.last().map(String::as_str), Some("probex"), "added, lowercased, after the built-in list");
    assert_eq!(x.scanners.len(), crate::bpf::DEFAULT_SCANNERS.len() + 1);
}

const ONE_TENANT: &str = "[[tenant]]\ndomain = \"a.example\"\n";

/// The running configuration and the flags it was planned from.
fn running(flags: &[&str], sources: &Fake) -> (Args, Config) {
    let p = planned_with(flags, sources);
    (args(flags), p.config(addr("192.0.2.1:5060")))
}

fn reloaded(a: &Args, sources: &Fake, current: &Config, tls: bool) -> Reloaded {
    reload_plan(a, sources, current, tls).unwrap_or_else(|e| panic!("reload refused: {e}"))
}

#[test]
fn reload_replaces_the_tenants_and_keeps_the_rest() {
    let flags = ["--tenants", TENANTS, "--trust", "10.0.0.0/8", "--advertise", "pbx.example"];
    let (a, current) = running(&flags, &Fake::new().file(TENANTS, ONE_TENANT));
    assert_eq!(strict(&current).len(), 1);

    let r = reloaded(&a, &Fake::new().file(TENANTS, TWO_TENANTS), &current, false);
    assert_eq!(r.tenants_desc, "2 tenants");
    let next = &r.reload.cfg;
    assert_eq!(strict(next).len(), 2);
    assert_eq!(next.defaults.park_timeout, Duration::from_secs(120), "the new file's [defaults]");
    assert_eq!(next.defaults.max_parks_per_ext, 8, "what the file does not set comes from the flags again");
    assert_eq!((next.advertise.as_str(), next.nonce_secret), ("pbx.example:5060", current.nonce_secret));
    assert_eq!(next.trust, current.trust);
    assert!(r.reload.tls_certs.is_none(), "no TLS listener: no certificates read");
    assert!(r.reload.xdp.is_none(), "no --xdp: nothing for the filter");
}

#[test]
fn reload_is_all_or_nothing() {
    let (a, current) = running(&["--tenants", TENANTS], &Fake::new().file(TENANTS, ONE_TENANT));
    // One good tenant, then a bad one: nothing of the file is taken.
    let half = format!("{ONE_TENANT}\n[[tenant]]\ndomain = \"b.example\"\npark_timeout = 0\n");
    let e = reload_plan(&a, &Fake::new().file(TENANTS, &half), &current, false).map(|r| r.tenants_desc);
    assert_eq!(e, Err(format!("{TENANTS}: tenants file: park_timeout must be 1..=86400 seconds")));
    let e = reload_plan(&a, &Fake::new(), &current, false).map(|r| r.tenants_desc);
    assert_eq!(e, Err(format!("--tenants {TENANTS}: entity not found")), "a file gone is an error, not zero tenants");
    // A good file whose tenant certificate is missing: refused as a whole.
    let e = reload_plan(&a, &Fake::new().file(TENANTS, TWO_TENANTS), &current, true).map(|r| r.tenants_desc);
    assert_eq!(
        e,
        Err(r#"tenant "a.example": tls_cert/tls_key: /etc/sipark/certs/a.pem: I/O error: No such file or directory (os error 2)"#
            .to_owned())
    );
}

#[test]
fn reload_reads_the_tls_certificates_again() {
    let tls = ["--tls-listen", "127.0.0.1:5061", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"];
    let sources = Fake::new().pem(&["/c.pem", "/k.pem"]);
    let (a, current) = running(&tls, &sources);
    let r = reloaded(&a, &sources, &current, true);
    assert_eq!(r.tenants_desc, "every domain");
    assert_eq!(r.reload.tls_certs.map(|c| c.len()), Some(1));
    let e = reload_plan(&a, &Fake::new(), &current, true).map(|r| r.tenants_desc);
    assert_eq!(e, Err("--tls-cert/--tls-key: /c.pem: I/O error: No such file or directory (os error 2)".to_owned()));

    // Tenant certificates only: a file that drops the last one leaves the listener without any.
    let flags = ["--tenants", TENANTS, "--tls-listen", "127.0.0.1:5061"];
    let with_cert = Fake::new().file(TENANTS, TWO_TENANTS).pem(&["/etc/sipark/certs/a.pem", "/etc/sipark/certs/a.key"]);
    let (a, current) = running(&flags, &with_cert);
    let e = reload_plan(&a, &Fake::new().file(TENANTS, ONE_TENANT), &current, true).map(|r| r.tenants_desc);
    assert_eq!(e, Err("the TLS listener would have no certificate (no --tls-cert, no tenant tls_cert)".to_owned()));
}

/// A WAV of `samples` 16-bit samples at `rate` Hz, mono.
fn wav(rate: u32, samples: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..samples).flat_map(|i| (((i % 40) as i16 - 20) * 800).to_le_bytes()).collect();
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

#[test]
fn moh_names_the_tune_a_file_or_off_and_each_file_is_decoded_once() {
    use crate::proto::config::Moh;
    let p = planned(&[]);
    let cfg = p.config(addr("192.0.2.1:5060"));
    assert_eq!(cfg.defaults.moh, Moh::Tune, "sipark's own tune by default");
    assert!(cfg.music_of(&cfg.defaults).is_some_and(|a| a.len() > 8000));
    assert_eq!(cfg.music.max_streams, crate::proto::config::DEFAULT_MAX_STREAMS);
    let media = p.io.media.expect("media sockets by default");
    assert_eq!((media.listen, media.port, media.advertise), (None, 0, None));
    let off = planned(&["--moh", "off"]).config(addr("192.0.2.1:5060"));
    assert_eq!(off.defaults.moh, Moh::Off);
    assert!(off.music_of(&off.defaults).is_none());

    let tenants = "[defaults]\nmoh = \"/srv/hold.wav\"\n[[tenant]]\ndomain = \"a.example\"\nmoh = \"off\"\n\
                   [[tenant]]\ndomain = \"b.example\"\n[[tenant]]\ndomain = \"c.example\"\nmoh = \"/srv/c.wav\"\n";
    let sources =
        Fake::new().file(TENANTS, tenants).blob("/srv/hold.wav", wav(8000, 800)).blob("/srv/c.wav", wav(8000, 160));
    let flags = ["--tenants", TENANTS, "--moh-max-streams", "99", "--media-port", "30000"];
    let p = planned_with(&flags, &sources);
    assert_eq!(p.io.media.map(|m| m.port), Some(30000));
    let cfg = p.config(addr("192.0.2.1:5060"));
    assert_eq!(cfg.music.max_streams, 99);
    assert_eq!(cfg.music.files.len(), 2, "each file once");
    let t = strict(&cfg);
    assert!(cfg.music_of(&t["a.example"]).is_none());
    assert_eq!(cfg.music_of(&t["b.example"]).map(|a| a.len()), Some(800), "the [defaults] file");
    assert_eq!(cfg.music_of(&t["c.example"]).map(|a| a.len()), Some(160));

    let e = refused_with(&["--moh", "/srv/none.wav"], &Fake::new());
    assert!(e.starts_with("moh /srv/none.wav: ") && e.contains("not found"), "{e}");
    let e = refused_with(&["--moh", "/srv/cd.wav"], &Fake::new().blob("/srv/cd.wav", wav(44_100, 44_100)));
    assert_eq!(e, "moh /srv/cd.wav: sample rate 44100 Hz: music on hold needs 8000 Hz");
    let e = refused_with(&["--moh-max-streams", "2000000"], &Fake::new());
    assert_eq!(e, "--moh-max-streams must be 0..=1000000");
    let parse = Args::try_parse_from(["sipark", "--moh", ""]).map(|_| ()).map_err(|e| e.to_string());
    assert!(parse.is_err_and(|e| e.contains("moh needs")), "an empty --moh is refused");
}

#[test]
fn a_reload_whose_music_does_not_decode_keeps_the_running_audio() {
    let tenants = "[defaults]\nmoh = \"/srv/hold.wav\"\n[[tenant]]\ndomain = \"a.example\"\n";
    let good = Fake::new().file(TENANTS, tenants).blob("/srv/hold.wav", wav(8000, 800));
    let a = args(&["--tenants", TENANTS]);
    let current = plan(&a, &good).unwrap_or_else(|e| panic!("{e}")).config(addr("192.0.2.1:5060"));
    let bad = Fake::new().file(TENANTS, tenants).blob("/srv/hold.wav", b"RIFF....WAVE".to_vec());
    let e = reload_plan(&a, &bad, &current, false).map(|r| r.tenants_desc);
    assert!(e.as_ref().is_err_and(|e| e.starts_with("moh /srv/hold.wav: ")), "{e:?}");
    let changed = Fake::new().file(TENANTS, tenants).blob("/srv/hold.wav", wav(8000, 1600));
    let next = reload_plan(&a, &changed, &current, false).unwrap_or_else(|e| panic!("{e}"));
    let cfg = next.reload.cfg;
    assert_eq!(cfg.music_of(&cfg.defaults).map(|m| m.len()), Some(1600), "the file is read again on reload");
}
