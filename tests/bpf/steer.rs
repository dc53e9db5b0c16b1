//! `sipark_steer` on a real SO_REUSEPORT group of loopback UDP sockets:
//! each datagram must arrive on the socket of the shard route.rs names.

use std::net::{SocketAddr, UdpSocket};
use std::thread::sleep;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use sipark::bpf::{SteerStats, Steering};
use sipark::proto::route::shard_of;

use crate::frame::{request, response};
use crate::require_bpf;

const N: u16 = 4;
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// `n` UDP sockets bound with SO_REUSEPORT to one ephemeral 127.0.0.1 port.
fn reuseport_group(n: u16) -> (Vec<UdpSocket>, SocketAddr) {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut socks = Vec::new();
    for i in 0..n {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap_or_else(|e| panic!("socket: {e}"));
        s.set_reuse_port(true).unwrap_or_else(|e| panic!("SO_REUSEPORT: {e}"));
        s.bind(&addr.into()).unwrap_or_else(|e| panic!("bind socket {i} to {addr}: {e}"));
        if i == 0 {
            addr = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or_else(|| panic!("no local address for the first socket"));
        }
        s.set_nonblocking(true).unwrap_or_else(|e| panic!("nonblocking: {e}"));
        socks.push(UdpSocket::from(s));
    }
    (socks, addr)
}

/// Sends `msg` from `from` and returns the index of the group socket it
/// arrived on (checking the bytes).
fn deliver(group: &[UdpSocket], to: SocketAddr, from: &UdpSocket, msg: &[u8], what: &str) -> usize {
    from.send_to(msg, to).unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let deadline = Instant::now() + RECV_TIMEOUT;
    let mut buf = [0u8; 2048];
    loop {
        for (i, s) in group.iter().enumerate() {
            match s.recv_from(&mut buf) {
                Ok((n, src)) => {
                    assert_eq!(&buf[..n], msg, "{what}: socket {i} got other bytes (from {src})");
                    assert_eq!(src, from.local_addr().expect("client addr"), "{what}: unexpected source");
                    return i;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{what}: recv on socket {i}: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "{what}: nothing arrived within {RECV_TIMEOUT:?}");
        sleep(Duration::from_millis(1));
    }
}

fn read(stats: &SteerStats) -> (u64, u64) {
    stats.read().unwrap_or_else(|e| panic!("reading steering counters: {e}"))
}

#[test]
fn datagrams_reach_their_shard() {
    require_bpf();
    let (group, addr) = reuseport_group(N);
    let steering = Steering::attach(&group, N).unwrap_or_else(|e| panic!("attaching sipark_steer: {e}"));
    let stats = steering.stats();
    assert_eq!(read(&stats), (0, 0), "fresh counters");
    let clients: Vec<UdpSocket> =
        (0..5).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("client bind: {e}"))).collect();
    let mut sent = 0u64;
    let mut hits = [0usize; N as usize];

    // Out-of-dialog requests: shard_of(R-URI host, 4), from several ports.
    for i in 0..50 {
        let domain = if i % 3 == 0 { format!("Tenant-{i}.Example") } else { format!("tenant-{i}.example") };
        let method = ["INVITE", "OPTIONS", "SUBSCRIBE", "MESSAGE", "REGISTER"][i % 5];
        let ruri = if i % 2 == 0 { format!("sip:{domain}") } else { format!("sip:user{i}@{domain};transport=udp") };
        let msg = request(method, &ruri, Some("Test/1.0"));
        let want = usize::from(shard_of(domain.as_bytes(), N));
        let got = deliver(&group, addr, &clients[i % clients.len()], &msg, &format!("{method} {ruri}"));
        assert_eq!(got, want, "{method} {ruri}: arrived on socket {got}, shard_of says {want}");
        hits[got] += 1;
        sent += 1;
    }
    assert!(hits.iter().all(|&h| h > 0), "50 tenants should cover all 4 shards: {hits:?}");

    // Responses: the shard in the top Via branch.
    for k in 0..usize::from(N) {
        for (c, client) in clients.iter().enumerate() {
            let msg = response(&format!("z9hG4bKsp{k}.x{c}"), None);
            let got = deliver(&group, addr, client, &msg, &format!("response sp{k} from client {c}"));
            assert_eq!(got, k, "response with branch z9hG4bKsp{k}: arrived on socket {got}");
            sent += 1;
        }
    }

    // In-dialog requests: the shard in the Request-URI user part.
    for k in 0..usize::from(N) {
        for (c, client) in clients.iter().enumerate() {
            let msg = request("BYE", &format!("sip:sp{k}.x{c}@127.0.0.1:{}", addr.port()), None);
            let got = deliver(&group, addr, client, &msg, &format!("BYE sp{k} from client {c}"));
            assert_eq!(got, k, "BYE to sip:sp{k}.x@: arrived on socket {got}");
            sent += 1;
        }
    }
    assert_eq!(read(&stats), (sent, 0), "every datagram so far was steered");

    // Left to the kernel: not SIP, a shard past N, a foreign branch.
    let fallbacks: [(&str, Vec<u8>); 3] = [
        ("garbage", b"\x00\x01garbage".to_vec()),
        ("BYE to sp9", request("BYE", "sip:sp9.x@127.0.0.1", None)),
        ("foreign branch", response("z9hG4bK-other", None)),
    ];
    for (what, msg) in &fallbacks {
        deliver(&group, addr, &clients[0], msg, what);
    }
    assert_eq!(read(&stats), (sent, fallbacks.len() as u64), "fallbacks counted");

    // Dropping the Steering detaches the program: counters stop moving.
    drop(steering);
    let msg = request("OPTIONS", "sip:tenant-1.example", None);
    deliver(&group, addr, &clients[0], &msg, "after detach");
    assert_eq!(read(&stats), (sent, fallbacks.len() as u64), "no counting after the program is detached");
}

#[test]
fn attach_checks_its_arguments() {
    require_bpf();
    let (group, _) = reuseport_group(2);
    match Steering::attach(&group, 3) {
        Err(sipark::bpf::BpfError::Config(_)) => {}
        other => panic!("2 sockets for 3 shards must be a config error, got {other:?}"),
    }
    // A socket without SO_REUSEPORT cannot join the socket array.
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    match Steering::attach(std::slice::from_ref(&plain), 1) {
        Err(sipark::bpf::BpfError::Map(_)) => {}
        other => panic!("a socket without SO_REUSEPORT must be refused, got {other:?}"),
    }
}
