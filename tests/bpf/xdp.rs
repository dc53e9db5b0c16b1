//! `sipark_xdp` verdicts on hand-built frames, through `XdpTester` (the
//! program loaded and configured, run with BPF_PROG_TEST_RUN).

use std::time::Instant;

use sipark::bpf::abi::{N_REASONS, REASON_NAMES, reason};
use sipark::bpf::{BpfError, DEFAULT_SCANNERS, Rate, XdpConfig, XdpMode, XdpTester, monotonic_ns};
use sipark::proto::shard::Source;

use crate::frame::{Frame, request, response};
use crate::require_bpf;

const DROP: u32 = 1;
const PASS: u32 = 2;

fn config(strict: bool) -> XdpConfig {
    XdpConfig {
        ifaces: Vec::new(),
        mode: XdpMode::Auto,
        ports: vec![5060, 5080],
        strict,
        tenants: vec![("acme.example".to_owned(), None), ("Beta.Example".to_owned(), None)],
        default_rate: None,
        block: Vec::new(),
        scanners: DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
        shards: 1,
        shed: None,
    }
}

fn load(cfg: &XdpConfig) -> XdpTester {
    require_bpf();
    XdpTester::load(cfg).unwrap_or_else(|e| panic!("loading sipark_xdp: {e}"))
}

/// Runs `frame` and checks the action; `what` names the case.
fn expect(t: &mut XdpTester, frame: &[u8], want: u32, what: &str) {
    let got = t.run(frame).unwrap_or_else(|e| panic!("{what}: test run failed: {e}"));
    assert_eq!(got, want, "{what}: XDP action {got}, expected {want} (1 drop, 2 pass)");
}

/// Checks every counter: `want` lists (reason, count); the rest are 0.
fn expect_counts(t: &XdpTester, want: &[(usize, u64)], what: &str) {
    let got = t.counters().unwrap_or_else(|e| panic!("{what}: reading counters: {e}"));
    let mut exp = [0u64; N_REASONS];
    for &(r, n) in want {
        exp[r] = n;
    }
    let named = |c: &[u64; N_REASONS]| {
        REASON_NAMES.iter().zip(c).filter(|(_, n)| **n != 0).map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>()
    };
    assert_eq!(got, exp, "{what}: counters {:?}, expected {:?}", named(&got), named(&exp));
}

fn invite(host: &str) -> Vec<u8> {
    request("INVITE", &format!("sip:alice@{host}"), Some("Acme Phone 1.0"))
}

#[test]
fn known_tenant_passes_unknown_is_dropped_in_strict_mode() {
    let mut t = load(&config(true));
    expect(&mut t, &Frame::udp4(&invite("acme.example")).build(), PASS, "known tenant INVITE");
    expect(&mut t, &Frame::udp4(&invite("ACME.Example")).build(), PASS, "mixed-case host of a known tenant");
    expect(&mut t, &Frame::udp4(&invite("beta.example")).build(), PASS, "tenant configured in mixed case");
    expect(&mut t, &Frame::udp4(&invite("evil.example")).build(), DROP, "unknown tenant, strict");
    expect(&mut t, &Frame::udp4(&invite("acme.example.evil")).build(), DROP, "a longer host is another tenant");
    expect(
        &mut t,
        &Frame::udp4(&request("OPTIONS", "sips:acme.example:5061;transport=tls", None)).build(),
        PASS,
        "sips: URI without user, with port and params",
    );
    expect(
        &mut t,
        &Frame::udp4(&request("REGISTER", "sip:acme.example", None)).build(),
        PASS,
        "REGISTER to a tenant's registrar",
    );
    expect(&mut t, &Frame::udp4(&request("BYE", "tel:+15551234", None)).build(), DROP, "tel: URI names no tenant");
    expect(&mut t, &Frame::udp4(&request("INFO", "http://acme.example/", None)).build(), DROP, "not a SIP URI");
    expect(&mut t, &Frame::udp4(&request("MESSAGE", "sip:bob@", None)).build(), DROP, "no host");
    expect_counts(&t, &[(reason::PASS, 5), (reason::DROP_UNKNOWN_TENANT, 5)], "strict mode");
}

#[test]
fn open_mode_serves_any_tenant() {
    let mut t = load(&config(false));
    expect(&mut t, &Frame::udp4(&invite("evil.example")).build(), PASS, "unknown tenant, open mode");
    expect(&mut t, &Frame::udp4(&invite("acme.example")).build(), PASS, "known tenant, open mode");
    expect(&mut t, &Frame::udp4(&request("BYE", "tel:+15551234", None)).build(), PASS, "tel: URI, open mode");
    expect_counts(&t, &[(reason::PASS, 3)], "open mode");
}

#[test]
fn responses_and_in_dialog_requests_pass_without_tenant_check() {
    let mut t = load(&config(true));
    expect(&mut t, &Frame::udp4(&response("z9hG4bKsp1.abc", None)).build(), PASS, "response");
    expect(&mut t, &Frame::udp4(&response("z9hG4bK-foreign", None)).build(), PASS, "response with a foreign branch");
    expect(
        &mut t,
        &Frame::udp4(&request("BYE", "sip:sp1.abc@198.51.100.1:5060", None)).build(),
        PASS,
        "in-dialog request to sip:sp1.abc@",
    );
    expect(
        &mut t,
        &Frame::udp4(&request("ACK", "sip:sp65535.k3@[2001:db8::2]", None)).build(),
        PASS,
        "in-dialog request, 5 digits, IPv6 host",
    );
    expect(
        &mut t,
        &Frame::udp4(&request("BYE", "sip:sp123456.abc@198.51.100.1", None)).build(),
        DROP,
        "six digits is not one of our Contacts",
    );
    expect(&mut t, &Frame::udp4(&request("BYE", "sip:sp.abc@198.51.100.1", None)).build(), DROP, "no digits");
    expect(&mut t, &Frame::udp4(&request("BYE", "sip:sp70000.a@198.51.100.1", None)).build(), DROP, "over 65535");
    expect(
        &mut t,
        &Frame::udp4(&request("BYE", "sip:SP1.abc@198.51.100.1", None)).build(),
        DROP,
        "prefix is case-sensitive",
    );
    expect_counts(&t, &[(reason::PASS, 4), (reason::DROP_UNKNOWN_TENANT, 4)], "in-dialog");
}

#[test]
fn not_sip_is_dropped() {
    let mut t = load(&config(false));
    let cases: [(&str, &[u8]); 8] = [
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"),
        ("CRLF keep-alive", b"\r\n\r\n"),
        ("single CRLF", b"\r\n"),
        ("one byte", b"I"),
        ("lowercase method", b"invite sip:acme.example SIP/2.0\r\n\r\n"),
        ("method without space", b"INVITEsip:acme.example SIP/2.0\r\n\r\n"),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: acme.example\r\n\r\n"),
        ("SIP/2.0 without space", b"SIP/2.0\r\n"),
    ];
    for (what, payload) in cases {
        expect(&mut t, &Frame::udp4(payload).build(), DROP, what);
    }
    expect(&mut t, &Frame::udp4(b"").build(), DROP, "empty payload");
    let mut short_len = Frame::udp4(b"INVITE sip:acme.example SIP/2.0\r\n\r\n").build();
    // UDP length 4 (< 8): malformed.
    let udp_len_at = 14 + 20 + 4;
    short_len[udp_len_at..udp_len_at + 2].copy_from_slice(&4u16.to_be_bytes());
    expect(&mut t, &short_len, DROP, "UDP length under 8");
    expect_counts(&t, &[(reason::DROP_NOT_SIP, 10)], "not SIP");
}

#[test]
fn every_method_is_recognised() {
    let mut t = load(&config(false));
    let methods = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "NOTIFY",
        "SUBSCRIBE",
        "REFER",
        "INFO",
        "UPDATE",
        "PRACK",
        "MESSAGE",
        "PUBLISH",
    ];
    for m in methods {
        expect(&mut t, &Frame::udp4(&request(m, "sip:acme.example", None)).build(), PASS, m);
    }
    expect(&mut t, &Frame::udp4(&request("FOO", "sip:acme.example", None)).build(), DROP, "unknown method");
    expect_counts(&t, &[(reason::PASS, 14), (reason::DROP_NOT_SIP, 1)], "methods");
}

#[test]
fn scanners_are_dropped() {
    let mut t = load(&config(false));
    for ua in ["friendly-scanner", "SIPVicious", "sipcli/v1.8", "sipvicious 0.3.4", "sundayddr", "SIVuS"] {
        expect(&mut t, &Frame::udp4(&invite_with_ua(ua)).build(), DROP, &format!("scanner UA {ua:?}"));
    }
    // Name in another case, no space / several spaces / tab around the colon.
    for raw in ["user-agent:friendly-scanner", "USER-AGENT   :   sipcli", "User-Agent:\tsmap"] {
        let m = format!("OPTIONS sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n{raw}\r\n\r\n");
        expect(&mut t, &Frame::udp4(m.as_bytes()).build(), DROP, raw);
    }
    expect(&mut t, &Frame::udp4(&response("z9hG4bKsp1.x", Some("friendly-scanner"))).build(), DROP, "scanner response");
    for ua in ["Acme Phone 1.0", "Linphone/5.2", "friendly", "scanner friendly-scanner"] {
        expect(&mut t, &Frame::udp4(&invite_with_ua(ua)).build(), PASS, &format!("normal UA {ua:?}"));
    }
    // Only a header line counts: not a value of another header, not the body.
    let in_body = b"MESSAGE sip:acme.example SIP/2.0\r\nContent-Length: 30\r\n\r\nUser-Agent: friendly-scanner\r\n";
    expect(&mut t, &Frame::udp4(in_body).build(), PASS, "User-Agent text in the body");
    let in_value = b"MESSAGE sip:acme.example SIP/2.0\r\nSubject: User-Agent: friendly-scanner\r\n\r\n";
    expect(&mut t, &Frame::udp4(in_value).build(), PASS, "User-Agent text inside another header");
    expect_counts(&t, &[(reason::DROP_SCANNER, 10), (reason::PASS, 6)], "scanners");
}

fn invite_with_ua(ua: &str) -> Vec<u8> {
    request("INVITE", "sip:alice@acme.example", Some(ua))
}

#[test]
fn own_scanner_list_replaces_the_default() {
    let mut cfg = config(false);
    cfg.scanners = vec!["EvilBot".to_owned()];
    let mut t = load(&cfg);
    expect(&mut t, &Frame::udp4(&invite_with_ua("evilbot/2")).build(), DROP, "configured signature");
    expect(&mut t, &Frame::udp4(&invite_with_ua("friendly-scanner")).build(), PASS, "default list not loaded");
    cfg.scanners = vec!["x".repeat(33)];
    match XdpTester::load(&cfg) {
        Err(BpfError::Config(_)) => {}
        other => panic!("a 33-byte signature must be a config error, got {other:?}"),
    }
}

#[test]
fn truncated_frames() {
    let mut t = load(&config(true));
    let full = Frame::udp4(&invite("acme.example")).build();
    // Cut inside the IPv4 header, inside the UDP header: not ours, passed.
    expect(&mut t, &full[..14], PASS, "Ethernet header only");
    expect(&mut t, &full[..14 + 10], PASS, "cut in the IPv4 header");
    expect(&mut t, &full[..14 + 20 + 4], PASS, "cut in the UDP header");
    // The UDP length promises more than the frame holds: the present bytes
    // are inspected.
    expect(&mut t, &full[..14 + 20 + 8], DROP, "UDP header, no payload");
    expect(&mut t, &full[..14 + 20 + 8 + 3], DROP, "payload cut to 'INV'");
    expect(&mut t, &full[..14 + 20 + 8 + 20], DROP, "payload cut in the host (unknown tenant 'acm')");
    expect(&mut t, &full[..14 + 20 + 8 + 30], PASS, "payload cut after the Request-URI");
    let v6 = Frame::udp6(&invite("acme.example")).build();
    expect(&mut t, &v6[..14 + 30], PASS, "cut in the IPv6 header");
    let vlan = Frame { vlans: vec![7], ..Frame::udp4(b"x") }.build();
    expect(&mut t, &vlan[..16], PASS, "cut in the VLAN tag");
    expect_counts(
        &t,
        &[(reason::PASS_NOT_OURS, 5), (reason::DROP_NOT_SIP, 2), (reason::DROP_UNKNOWN_TENANT, 1), (reason::PASS, 1)],
        "truncated",
    );
    match t.run(&full[..13]) {
        Err(BpfError::Config(_)) => {}
        other => panic!("a 13-byte frame must be refused before the kernel, got {other:?}"),
    }
}

#[test]
fn ipv6_vlan_ip_options() {
    let mut t = load(&config(true));
    expect(&mut t, &Frame::udp6(&invite("acme.example")).build(), PASS, "IPv6 known tenant");
    expect(&mut t, &Frame::udp6(&invite("evil.example")).build(), DROP, "IPv6 unknown tenant");
    expect(&mut t, &Frame { vlans: vec![100], ..Frame::udp4(&invite("acme.example")) }.build(), PASS, "802.1Q");
    expect(&mut t, &Frame { vlans: vec![100], ..Frame::udp4(&invite("evil.example")) }.build(), DROP, "802.1Q unknown");
    expect(&mut t, &Frame { vlans: vec![5], ..Frame::udp6(&invite("evil.example")) }.build(), DROP, "802.1Q IPv6");
    for opts in [4, 8, 40] {
        let f = Frame { ip_options: opts, ..Frame::udp4(&invite("evil.example")) };
        expect(&mut t, &f.build(), DROP, &format!("IPv4 with {opts} option bytes, unknown tenant"));
        let f = Frame { ip_options: opts, ..Frame::udp4(&invite("acme.example")) };
        expect(&mut t, &f.build(), PASS, &format!("IPv4 with {opts} option bytes"));
    }
    expect(&mut t, &Frame { dport: 5080, ..Frame::udp4(&invite("evil.example")) }.build(), DROP, "second port");
    expect_counts(&t, &[(reason::PASS, 5), (reason::DROP_UNKNOWN_TENANT, 7)], "v6/vlan/options");
}

#[test]
fn not_ours_and_unparsed_pass() {
    let mut t = load(&config(true));
    let garbage = b"not sip at all";
    expect(&mut t, &Frame { dport: 53, ..Frame::udp4(garbage) }.build(), PASS, "other UDP port");
    expect(&mut t, &Frame { dport: 53, ..Frame::udp6(garbage) }.build(), PASS, "other UDP port, IPv6");
    expect(&mut t, &Frame { tcp: true, ..Frame::udp4(garbage) }.build(), PASS, "TCP to 5060");
    expect(&mut t, &Frame { tcp: true, ..Frame::udp6(garbage) }.build(), PASS, "TCP to 5060, IPv6");
    let mut arp = Frame::udp4(garbage).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    expect(&mut t, &arp, PASS, "ARP");
    expect_counts(&t, &[(reason::PASS_NOT_OURS, 5)], "not ours");

    expect(&mut t, &Frame { frag: (185, false), ..Frame::udp4(garbage) }.build(), PASS, "later fragment");
    expect(&mut t, &Frame { frag: (0, true), ..Frame::udp4(garbage) }.build(), PASS, "first fragment to our port");
    expect(&mut t, &Frame { hop_by_hop: true, ..Frame::udp6(garbage) }.build(), PASS, "IPv6 hop-by-hop");
    expect(&mut t, &Frame { vlans: vec![1, 2], ..Frame::udp4(garbage) }.build(), PASS, "two VLAN tags");
    expect(
        &mut t,
        &Frame { frag: (0, true), dport: 53, ..Frame::udp4(garbage) }.build(),
        PASS,
        "first fragment to another port",
    );
    expect_counts(&t, &[(reason::PASS_NOT_OURS, 6), (reason::PASS_UNPARSED, 4)], "unparsed");
}

#[test]
fn blocklist_v4_and_v6() {
    let mut cfg = config(false);
    cfg.block = vec![
        ("203.0.113.0".parse().expect("v4"), 24),
        ("2001:db8:bad::".parse().expect("v6"), 48),
        ("198.18.0.7".parse().expect("v4"), 32),
    ];
    let mut t = load(&cfg);
    let inv = invite("acme.example");
    expect(&mut t, &Frame::udp4(&inv).from("203.0.113.77").build(), DROP, "v4 in /24");
    expect(&mut t, &Frame::udp4(&inv).from("198.18.0.7").build(), DROP, "v4 /32");
    expect(&mut t, &Frame::udp6(&inv).from("2001:db8:bad:1::5").build(), DROP, "v6 in /48");
    expect(&mut t, &Frame::udp4(b"garbage").from("203.0.113.1").build(), DROP, "blocked before the SIP check");
    let first_frag = Frame { frag: (0, true), ..Frame::udp4(&inv).from("203.0.113.9") };
    expect(&mut t, &first_frag.build(), DROP, "first fragment from a blocked source");
    expect(&mut t, &Frame::udp4(&inv).from("203.0.114.1").build(), PASS, "v4 outside the /24");
    expect(&mut t, &Frame::udp4(&inv).from("198.18.0.8").build(), PASS, "v4 next to the /32");
    expect(&mut t, &Frame::udp6(&inv).from("2001:db8:bae::1").build(), PASS, "v6 outside the /48");
    expect(
        &mut t,
        &Frame { dport: 53, ..Frame::udp4(&inv).from("203.0.113.77") }.build(),
        PASS,
        "blocked source, other port",
    );
    expect_counts(&t, &[(reason::DROP_BLOCKED, 5), (reason::PASS, 3), (reason::PASS_NOT_OURS, 1)], "blocklist");

    cfg.block = vec![("10.0.0.0".parse().expect("v4"), 33)];
    match XdpTester::load(&cfg) {
        Err(BpfError::Config(_)) => {}
        other => panic!("a /33 IPv4 prefix must be a config error, got {other:?}"),
    }
}

#[test]
fn tcp_from_a_banned_or_blocked_source_is_dropped() {
    let mut cfg = config(true);
    cfg.block = vec![("192.0.2.66".parse().unwrap_or_else(|e| panic!("{e}")), 32)];
    let mut t = load(&cfg);
    let mut bans = t.bans().unwrap_or_else(|e| panic!("ban map: {e}"));
    let banned: std::net::IpAddr = "192.0.2.7".parse().unwrap_or_else(|e| panic!("{e}"));
    bans.ban(Source::of(banned).bytes(), std::time::Duration::from_secs(60)).unwrap_or_else(|e| panic!("ban: {e}"));
    let syn = |src: &str| Frame { tcp: true, ..Frame::udp4(b"") }.from(src).build();
    expect(&mut t, &syn("192.0.2.7"), DROP, "a banned guesser's TCP segment to the SIP port");
    expect(&mut t, &syn("192.0.2.66"), DROP, "a blocked source over TCP");
    expect(&mut t, &syn("192.0.2.8"), PASS, "another source over TCP");
    expect(
        &mut t,
        &Frame { dport: 80, ..Frame { tcp: true, ..Frame::udp4(b"") } }.from("192.0.2.7").build(),
        PASS,
        "TCP to another port",
    );
    expect_counts(&t, &[(reason::DROP_BANNED, 1), (reason::DROP_BLOCKED, 1), (reason::PASS_NOT_OURS, 2)], "TCP");
}

#[test]
fn banned_sources_are_dropped_until_their_ban_ends() {
    let mut t = load(&config(true));
    let mut bans = t.bans().unwrap_or_else(|e| panic!("the ban map: {e}"));
    let src = |a: &str| Source::of(a.parse().unwrap_or_else(|e| panic!("{a}: {e}"))).bytes();
    let now = monotonic_ns();
    let minute = 60_000_000_000;
    let ban = |bans: &mut sipark::bpf::BanMap, a: &str, until: u64| {
        bans.insert(src(a), until).unwrap_or_else(|e| panic!("banning {a}: {e}"));
    };
    ban(&mut bans, "192.0.2.1", now + minute);
    ban(&mut bans, "192.0.2.2", now - 1);
    ban(&mut bans, "2001:db8:1:2::1", now + minute);
    let inv = invite("acme.example");
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.1").build(), DROP, "a banned source");
    expect(&mut t, &Frame::udp4(&response("z9hG4bKsp1.a", None)).from("192.0.2.1").build(), DROP, "its responses too");
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.2").build(), PASS, "a ban that is over");
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.3").build(), PASS, "another address");
    expect(&mut t, &Frame::udp6(&inv).from("2001:db8:1:2:abcd::9").build(), DROP, "another address of a banned /64");
    expect(&mut t, &Frame::udp6(&inv).from("2001:db8:1:3::1").build(), PASS, "the next /64");
    expect(&mut t, &Frame::udp6(&inv).from("::ffff:192.0.2.1").build(), PASS, "IPv6 that looks like a mapped IPv4");
    expect(
        &mut t,
        &Frame { dport: 53, ..Frame::udp4(&inv).from("192.0.2.1") }.build(),
        PASS,
        "a banned source, another port",
    );
    expect_counts(&t, &[(reason::DROP_BANNED, 3), (reason::PASS, 4), (reason::PASS_NOT_OURS, 1)], "bans");
    // The program deleted the entry it found over; the others stay.
    let mut left: Vec<[u8; 16]> =
        bans.entries().unwrap_or_else(|e| panic!("{e}")).into_iter().map(|(k, _)| k).collect();
    left.sort_unstable();
    let mut want = vec![src("192.0.2.1"), src("2001:db8:1:2::1")];
    want.sort_unstable();
    assert_eq!(left, want, "the expired entry is gone");
    // A lifted ban (the source is trusted now) stops dropping at once;
    // lifting one that is not there is no error.
    bans.remove(src("192.0.2.1")).unwrap_or_else(|e| panic!("{e}"));
    bans.remove(src("192.0.2.77")).unwrap_or_else(|e| panic!("{e}"));
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.1").build(), PASS, "a lifted ban");
    ban(&mut bans, "192.0.2.1", now + minute);
    // A sweep takes out what is over, and only that.
    ban(&mut bans, "192.0.2.9", monotonic_ns() - 1);
    assert_eq!(bans.sweep().unwrap_or_else(|e| panic!("{e}")), 1);
    assert_eq!(bans.entries().unwrap_or_else(|e| panic!("{e}")).len(), 2);
    // A ban written with a duration ends by itself.
    bans.ban(src("192.0.2.3"), std::time::Duration::from_millis(200)).unwrap_or_else(|e| panic!("{e}"));
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.3").build(), DROP, "banned for 200 ms");
    std::thread::sleep(std::time::Duration::from_millis(250));
    expect(&mut t, &Frame::udp4(&inv).from("192.0.2.3").build(), PASS, "200 ms later");
}

/// Sends `n` requests for `host` back-to-back; returns (passed, seconds taken).
fn burst(t: &mut XdpTester, host: &str, n: usize) -> (usize, f64) {
    let frame = Frame::udp4(&invite(host)).build();
    let start = Instant::now();
    let mut passed = 0;
    for i in 0..n {
        match t.run(&frame) {
            Ok(PASS) => passed += 1,
            Ok(DROP) => {}
            other => panic!("request {i} for {host}: {other:?}"),
        }
    }
    (passed, start.elapsed().as_secs_f64())
}

#[test]
fn per_tenant_rate_limit() {
    let mut cfg = config(true);
    cfg.tenants = vec![
        ("acme.example".to_owned(), Some(Rate { per_sec: 10, burst: 5 })),
        ("beta.example".to_owned(), None),
        ("gamma.example".to_owned(), None),
    ];
    cfg.default_rate = Some(Rate { per_sec: 100, burst: 3 });
    let mut t = load(&cfg);

    // GCRA, 100 ms interval, burst 5: exactly 5 back-to-back, plus one per
    // 100 ms that the burst itself took.
    let (passed, secs) = burst(&mut t, "acme.example", 20);
    let slack = (secs / 0.1).ceil() as usize;
    assert!(
        (5..=5 + slack).contains(&passed),
        "rate 10/s burst 5: {passed} of 20 passed in {secs:.3}s (expected 5..={})",
        5 + slack
    );
    // The other tenants have their own buckets (default rate 100/s burst 3).
    let (beta, secs_b) = burst(&mut t, "beta.example", 3);
    assert_eq!(beta, 3, "beta must pass while acme is limited ({secs_b:.3}s)");
    let (gamma, _) = burst(&mut t, "gamma.example", 1);
    assert_eq!(gamma, 1, "gamma must pass");
    let c = t.counters().unwrap_or_else(|e| panic!("counters: {e}"));
    assert_eq!(c[reason::DROP_RATE], (20 - passed) as u64, "rate_limited count: {c:?}");
    assert_eq!(c[reason::PASS], (passed + 4) as u64, "pass count: {c:?}");

    // The default rate (100/s, burst 3) applies to a tenant without its own.
    let (passed, secs) = burst(&mut t, "beta.example", 30);
    let slack = (secs / 0.01).ceil() as usize;
    assert!(passed <= 3 + slack && passed < 30, "default rate: {passed} of 30 passed in {secs:.3}s");
}

#[test]
fn open_mode_default_rate_limits_unknown_hosts() {
    let mut cfg = config(false);
    cfg.default_rate = Some(Rate { per_sec: 1, burst: 0 });
    let mut t = load(&cfg);
    let (passed, secs) = burst(&mut t, "random.example", 5);
    let slack = secs.ceil() as usize;
    assert!((1..=1 + slack).contains(&passed), "1/s burst 0: {passed} of 5 passed in {secs:.3}s");
    let (other, _) = burst(&mut t, "other.example", 1);
    assert_eq!(other, 1, "another host has its own bucket");
}

#[test]
fn bad_configs_are_refused() {
    require_bpf();
    let cases: Vec<(&str, XdpConfig)> = vec![
        ("no ports", XdpConfig { ports: vec![], ..config(true) }),
        ("nine ports", XdpConfig { ports: (5060..5069).collect(), ..config(true) }),
        ("port 0", XdpConfig { ports: vec![0], ..config(true) }),
        ("zero rate", XdpConfig { default_rate: Some(Rate { per_sec: 0, burst: 1 }), ..config(true) }),
        ("empty tenant", XdpConfig { tenants: vec![(String::new(), None)], ..config(true) }),
        ("17 scanners", XdpConfig { scanners: (0..17).map(|i| format!("s{i}")).collect(), ..config(true) }),
    ];
    for (what, cfg) in cases {
        match XdpTester::load(&cfg) {
            Err(BpfError::Config(msg)) => assert!(!msg.is_empty(), "{what}: empty message"),
            other => panic!("{what}: expected a config error, got {other:?}"),
        }
    }
}

/// A REGISTER whose Request-URI is the registrar's address (the tenant is in its To header, which
/// route.rs reads) is not dropped as an unknown tenant; such REGISTERs share one bucket at the
/// default rate. ACK and CANCEL of a tenant over its rate still pass: they belong to transactions
/// that were admitted.
#[test]
fn register_to_another_host_and_ack_cancel_are_not_cut() {
    let mut cfg = config(true);
    cfg.tenants = vec![("acme.example".to_owned(), Some(Rate { per_sec: 1, burst: 1 }))];
    cfg.default_rate = Some(Rate { per_sec: 1, burst: 2 });
    let mut t = load(&cfg);
    let reg = |host: &str| Frame::udp4(&request("REGISTER", &format!("sip:{host}"), None)).build();
    expect(&mut t, &reg("192.0.2.1"), PASS, "REGISTER to the registrar's IP, 1st");
    expect(&mut t, &reg("registrar.carrier.example"), PASS, "REGISTER to another host, 2nd (shared bucket)");
    expect(&mut t, &reg("192.0.2.1"), DROP, "3rd unattributed REGISTER: over the shared burst of 2");
    expect(&mut t, &Frame::udp4(&invite("evil.example")).build(), DROP, "an INVITE for an unknown host still is");

    expect(&mut t, &Frame::udp4(&invite("acme.example")).build(), PASS, "acme's one-request burst");
    expect(&mut t, &Frame::udp4(&invite("acme.example")).build(), DROP, "acme over its rate");
    let ack = Frame::udp4(&request("ACK", "sip:*68103@acme.example", None)).build();
    let cancel = Frame::udp4(&request("CANCEL", "sip:*68103@acme.example", None)).build();
    for i in 0..3 {
        expect(&mut t, &ack, PASS, &format!("ACK {i} of acme over its rate"));
        expect(&mut t, &cancel, PASS, &format!("CANCEL {i} of acme over its rate"));
    }
    let unknown_ack = Frame::udp4(&request("ACK", "sip:*68103@evil.example", None)).build();
    expect(&mut t, &unknown_ack, DROP, "an ACK for an unknown tenant is still dropped in strict mode");
    expect_counts(
        &t,
        &[(reason::PASS, 9), (reason::DROP_RATE, 2), (reason::DROP_UNKNOWN_TENANT, 2)],
        "REGISTER, ACK, CANCEL",
    );
}
