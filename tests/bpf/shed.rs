//! Overload 503s answered by `sipark_xdp` itself (ADR 0022): with a
//! shard's refused share in `sipark_shed`, a new INVITE or REGISTER whose
//! admission hash falls in the share comes back out of the program
//! (`XDP_TX`) as a `503 Service Unavailable` with `Retry-After`; the ACK of
//! such a 503 is dropped. The frames the program sends back are read as
//! the client would: Ethernet, IP and UDP headers, checksums, and the SIP
//! response through sipark's parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sipark::bpf::abi::{SHED_ONE, reason};
use sipark::bpf::{DEFAULT_SCANNERS, ShedMap, XdpConfig, XdpMode, XdpShed, XdpTester, monotonic_ns};
use sipark::proto::overload::admission_hash;
use sipark::proto::route::{shard_of, tenant_hash};
use sipark::proto::sip::parse::{HeaderName, SipMessage};

use crate::frame::{Frame, SIP_PORT};
use crate::require_bpf;

const DROP: u32 = 1;
const PASS: u32 = 2;
const TX: u32 = 3;
const KEY: u32 = 0x5eed_0001;

fn config(shards: u32) -> XdpConfig {
    XdpConfig {
        ifaces: Vec::new(),
        mode: XdpMode::Auto,
        ports: vec![SIP_PORT],
        strict: true,
        tenants: vec![("acme.example".to_owned(), None)],
        default_rate: None,
        block: Vec::new(),
        scanners: DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
        shards,
        shed: Some(XdpShed { key: KEY, retry_after: (4, 8), retrieve_fac: "*88".to_owned() }),
    }
}

fn load(cfg: &XdpConfig) -> (XdpTester, ShedMap) {
    require_bpf();
    let t = XdpTester::load(cfg).unwrap_or_else(|e| panic!("loading sipark_xdp: {e}"));
    let m = t.shed().unwrap_or_else(|e| panic!("the shed map: {e}"));
    (t, m)
}

fn set(m: &mut ShedMap, shard: u32, refuse: u32, ack_until_ns: u64) {
    m.set(shard, refuse, ack_until_ns).unwrap_or_else(|e| panic!("writing the shed map: {e}"));
}

/// A request as a phone sends it; `extra` header lines go before
/// Content-Length, `to_tag` onto To.
fn sip(method: &str, ruri: &str, call_id: &str, to_tag: Option<&str>, extra: &str) -> Vec<u8> {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:101@acme.example>;tag=a1\r\n\
         To: <sip:103@acme.example>{tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:101@192.0.2.1:40000>\r\n\
         {extra}Content-Type: application/sdp\r\n\
         Content-Length: 25\r\n\r\n\
         v=0\r\no=- 1 1 IN IP4 x\r\n\r\n"
    )
    .into_bytes()
}

fn park(call_id: &str) -> Vec<u8> {
    sip("INVITE", "sip:*68103@acme.example", call_id, None, "Referred-By: <sip:102@acme.example>\r\n")
}

fn run(t: &mut XdpTester, frame: &[u8], what: &str) -> (u32, Vec<u8>) {
    t.run_out(frame).unwrap_or_else(|e| panic!("{what}: test run failed: {e}"))
}

fn expect(t: &mut XdpTester, frame: &[u8], want: u32, what: &str) {
    let (got, _) = run(t, frame, what);
    assert_eq!(got, want, "{what}: XDP action {got}, expected {want} (1 drop, 2 pass, 3 tx)");
}

/// The one's-complement sum of `bytes` (RFC 1071), folded.
fn ones_sum(bytes: &[u8], mut sum: u32) -> u32 {
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// A frame the program sent back, read as its receiver would. Checks the
/// lengths and checksums, and that addresses and ports are `sent`'s
/// swapped; returns the UDP payload.
fn answered(sent: &Frame, out: &[u8]) -> Vec<u8> {
    let l3 = 14 + 4 * sent.vlans.len();
    assert_eq!(&out[..6], &[0x02, 0, 0, 0, 0, 1], "destination MAC: the request's source");
    assert_eq!(&out[6..12], &[0x02, 0, 0, 0, 0, 2], "source MAC: the request's destination");
    let (udp, pseudo, src, dst) = match sent.src {
        IpAddr::V4(_) => {
            let ip = &out[l3..l3 + 20];
            assert_eq!(ones_sum(ip, 0), 0xffff, "IPv4 header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), out.len() - l3, "IPv4 total length");
            assert_eq!(ip[8], 64, "TTL");
            let s = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap_or_default()));
            let d = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap_or_default()));
            let mut pseudo = ip[12..20].to_vec();
            pseudo.extend_from_slice(&[0, 17]);
            (l3 + 20, pseudo, s, d)
        }
        IpAddr::V6(_) => {
            let ip = &out[l3..l3 + 40];
            assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), out.len() - l3 - 40, "IPv6 payload length");
            assert_eq!(ip[7], 64, "hop limit");
            let s = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap_or_default()));
            let d = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap_or_default()));
            let mut pseudo = ip[8..40].to_vec();
            pseudo.extend_from_slice(&[0, 17]);
            (l3 + 40, pseudo, s, d)
        }
    };
    assert_eq!((src, dst), (sent.dst, sent.src), "addresses swapped");
    let u = &out[udp..];
    assert_eq!(u16::from_be_bytes([u[0], u[1]]), sent.dport, "source port: the request's destination");
    assert_eq!(u16::from_be_bytes([u[2], u[3]]), sent.sport, "destination port: the request's source");
    assert_eq!(usize::from(u16::from_be_bytes([u[4], u[5]])), u.len(), "UDP length");
    assert_ne!(u16::from_be_bytes([u[6], u[7]]), 0, "a UDP checksum is set");
    let mut pseudo = pseudo;
    pseudo.extend_from_slice(&(u.len() as u16).to_be_bytes());
    assert_eq!(ones_sum(u, ones_sum(&pseudo, 0)), 0xffff, "UDP checksum");
    u[8..].to_vec()
}

/// Checks that `payload` is the 503 for `request`: the request's Via
/// lines, From, Call-ID and CSeq as received, its To with the tag
/// `ovl-<admission hash>`, Retry-After in 4..=8, no body.
fn check_503(request: &[u8], payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let req = SipMessage::parse(request).unwrap_or_else(|e| panic!("the request: {e:?}"));
    let resp = SipMessage::parse(payload).unwrap_or_else(|e| panic!("the 503 does not parse ({e:?}):\n{text}"));
    assert_eq!(resp.status(), Some(503), "{text}");
    assert_eq!(resp.reason_phrase(), Some(&b"Service Unavailable"[..]), "{text}");
    let vias = |m: &SipMessage<'_>| m.header_values(HeaderName::Via).map(<[u8]>::to_vec).collect::<Vec<_>>();
    assert_eq!(vias(&resp), vias(&req), "Via lines copied in order:\n{text}");
    for name in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        assert_eq!(resp.header(name), req.header(name), "{name:?} copied:\n{text}");
    }
    let call_id = req.call_id().unwrap_or_else(|e| panic!("Call-ID: {e:?}"));
    let cseq = req.cseq().unwrap_or_else(|e| panic!("CSeq: {e:?}")).seq;
    let want_tag = format!("ovl-{:08x}", admission_hash(KEY, call_id, cseq));
    let to = resp.to_hdr().unwrap_or_else(|e| panic!("To: {e:?}\n{text}"));
    assert_eq!(to.tag(), Some(want_tag.as_bytes()), "To tag: the kernel's admission hash is route.rs's:\n{text}");
    let req_to = req.to_hdr().unwrap_or_else(|e| panic!("To: {e:?}"));
    assert_eq!(to.uri.raw, req_to.uri.raw, "To URI kept");
    let retry: u32 = std::str::from_utf8(resp.header_raw(b"Retry-After").unwrap_or_default())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("Retry-After:\n{text}"));
    assert!((4..=8).contains(&retry), "Retry-After {retry}");
    assert_eq!(resp.content_length().and_then(Result::ok), Some(0), "{text}");
    assert!(resp.body().is_empty());
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

#[test]
fn a_refused_park_and_register_are_answered_503_by_xdp() {
    let (mut t, mut m) = load(&config(1));
    let invite = park("refuse-me-1@192.0.2.1");
    let frame = Frame::udp4(&invite);
    expect(&mut t, &frame.build(), PASS, "nothing refused yet");

    set(&mut m, 0, SHED_ONE, 0);
    let (action, out) = run(&mut t, &frame.build(), "park INVITE, all refused");
    assert_eq!(action, TX, "the park INVITE is answered from XDP");
    check_503(&invite, &answered(&frame, &out));

    let reg = sip("REGISTER", "sip:acme.example", "reg-1@192.0.2.1", None, "Expires: 3600\r\n");
    let frame = Frame::udp4(&reg);
    let (action, out) = run(&mut t, &frame.build(), "REGISTER");
    assert_eq!(action, TX, "REGISTER is new work");
    check_503(&reg, &answered(&frame, &out));

    let c = t.counters().unwrap_or_else(|e| panic!("counters: {e}"));
    assert_eq!((c[reason::TX_SHED], c[reason::PASS]), (2, 1), "{c:?}");
}

#[test]
fn ipv6_vlan_several_vias_and_compact_headers() {
    let (mut t, mut m) = load(&config(1));
    set(&mut m, 0, SHED_ONE, 0);
    let invite = b"INVITE sip:*68103@acme.example SIP/2.0\r\n\
        v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-p1\r\n\
        Via: SIP/2.0/UDP proxy.example;branch=z9hG4bK-p2, SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK-p3\r\n\
        VIA: SIP/2.0/UDP [2001:db8::1]:40000;branch=z9hG4bK-phone\r\n\
        f: <sip:101@acme.example>;tag=x\r\n\
        t: sip:103@acme.example\r\n\
        i: compact-1\r\n\
        CSEQ: 7 INVITE\r\n\
        l: 0\r\n\r\n"
        .to_vec();
    let mut frame = Frame::udp6(&invite);
    frame.vlans = vec![42];
    let (action, out) = run(&mut t, &frame.build(), "compact IPv6 INVITE");
    assert_eq!(action, TX);
    let payload = answered(&frame, &out);
    check_503(&invite, &payload);
    let text = String::from_utf8_lossy(&payload);
    assert!(text.contains("\r\nt: sip:103@acme.example;tag=ovl-"), "the addr-spec To gets its tag:\n{text}");
}

#[test]
fn what_xdp_leaves_to_the_worker() {
    let (mut t, mut m) = load(&config(1));
    set(&mut m, 0, SHED_ONE, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a retrieve", sip("INVITE", "sip:*88103@acme.example", "r1", None, "")),
        ("a retrieve with Replaces", sip("INVITE", "sip:103@acme.example", "r2", None, "Replaces: x;to-tag=1;from-tag=2\r\n")),
        ("a re-INVITE with a To tag", sip("INVITE", "sip:*68103@acme.example", "r3", Some("b7"), "")),
        ("an in-dialog request to sipark's Contact", sip("INVITE", "sip:sp0.1a2b@198.51.100.1", "r4", None, "")),
        ("OPTIONS", sip("OPTIONS", "sip:acme.example", "r5", None, "")),
        ("BYE", sip("BYE", "sip:*68103@acme.example", "r6", Some("b7"), "")),
        ("a REGISTER to the registrar's address", sip("REGISTER", "sip:198.51.100.1", "r7", None, "")),
        (
            "a folded To",
            b"INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
              To: <sip:103@acme.example>\r\n ;x=y\r\nCall-ID: f1\r\nCSeq: 1 INVITE\r\n\r\n"
                .to_vec(),
        ),
        (
            "two Call-IDs (the worker answers 400)",
            b"INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
              To: <sip:103@acme.example>\r\nCall-ID: d1\r\nCall-ID: d2\r\nCSeq: 1 INVITE\r\n\r\n"
                .to_vec(),
        ),
        (
            "no Call-ID",
            b"INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
              To: <sip:103@acme.example>\r\nCSeq: 1 INVITE\r\n\r\n"
                .to_vec(),
        ),
        (
            "nine Via lines",
            format!(
                "INVITE sip:*68103@acme.example SIP/2.0\r\n{}From: <sip:a@b>;tag=1\r\nTo: <sip:103@acme.example>\r\n\
                 Call-ID: v9\r\nCSeq: 1 INVITE\r\n\r\n",
                "Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\n".repeat(9)
            )
            .into_bytes(),
        ),
        ("headers cut before their end", park("cut")[..120].to_vec()),
    ];
    for (what, bytes) in &cases {
        expect(&mut t, &Frame::udp4(bytes).build(), PASS, what);
    }
    let mut opts = Frame::udp4(&park("opts"));
    opts.ip_options = 4;
    expect(&mut t, &opts.build(), PASS, "IPv4 with options");
    let c = t.counters().unwrap_or_else(|e| panic!("counters: {e}"));
    assert_eq!(c[reason::TX_SHED], 0, "{c:?}");
}

#[test]
fn the_share_is_decided_by_the_admission_hash_as_in_the_shard() {
    let (mut t, mut m) = load(&config(1));
    let refuse = SHED_ONE / 2;
    set(&mut m, 0, refuse, 0);
    let mut refused = 0;
    for i in 0..200 {
        let call_id = format!("{i}-share@192.0.2.1");
        let frame = Frame::udp4(&park(&call_id)).build();
        let want = if admission_hash(KEY, call_id.as_bytes(), 1) >> 16 < refuse { TX } else { PASS };
        expect(&mut t, &frame, want, &call_id);
        expect(&mut t, &frame, want, &format!("{call_id} again: the same answer"));
        refused += usize::from(want == TX);
    }
    assert!((70..=130).contains(&refused), "{refused} of 200 refused at half");
    // Call-IDs longer than the 255 bytes hashed, and with white space
    // around the value: the kernel reads the value as the parser does.
    for call_id in ["x".repeat(300), "tab-and-space".to_owned()] {
        let invite = sip("INVITE", "sip:*68103@acme.example", &call_id, None, "")
            .replace_str(&format!("Call-ID: {call_id}"), &format!("Call-ID:\t {call_id} \t"));
        set(&mut m, 0, SHED_ONE, 0);
        let frame = Frame::udp4(&invite);
        let (action, out) = run(&mut t, &frame.build(), "odd Call-ID");
        assert_eq!(action, TX);
        check_503(&invite, &answered(&frame, &out));
    }
}

#[test]
fn only_the_owning_shards_share_counts() {
    let shards = 4;
    let (mut t, mut m) = load(&config(shards));
    let owner = u32::from(shard_of(b"acme.example", shards as u16));
    assert_eq!(u32::from(sipark::proto::route::reduce(tenant_hash(b"acme.example"), shards as u16)), owner);
    let frame = Frame::udp4(&park("owner@192.0.2.1")).build();
    for other in (0..shards).filter(|&s| s != owner) {
        set(&mut m, other, SHED_ONE, 0);
    }
    expect(&mut t, &frame, PASS, "other shards refuse everything, not acme's");
    set(&mut m, owner, SHED_ONE, 0);
    expect(&mut t, &frame, TX, "acme's shard refuses");
}

#[test]
fn the_ack_of_an_overload_503_is_dropped_while_its_window_lasts() {
    let (mut t, mut m) = load(&config(1));
    let ack = |tag: &str| Frame::udp4(&sip("ACK", "sip:*68103@acme.example", "a1", Some(tag), "")).build();
    expect(&mut t, &ack("ovl-0a1b2c3d"), PASS, "no window yet");
    set(&mut m, 0, 0, monotonic_ns() + 60_000_000_000);
    expect(&mut t, &ack("ovl-0a1b2c3d"), DROP, "in its window, refusing nothing any more");
    expect(&mut t, &ack("b7"), PASS, "the ACK of another answer");
    set(&mut m, 0, 0, monotonic_ns().saturating_sub(1));
    expect(&mut t, &ack("ovl-0a1b2c3d"), PASS, "after its window");
    let c = t.counters().unwrap_or_else(|e| panic!("counters: {e}"));
    assert_eq!((c[reason::DROP_SHED_ACK], c[reason::PASS]), (1, 3), "{c:?}");
}

/// `str::replace` on bytes that are UTF-8.
trait ReplaceStr {
    fn replace_str(self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceStr for Vec<u8> {
    fn replace_str(self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(self).unwrap_or_default().replace(from, to).into_bytes()
    }
}
