//! `sipark --bare-io` (hidden; the floor of `cargo xtask bench`): every datagram is answered to
//! its source with one of the size its first two bytes ask for, through the workers' own I/O
//! path on both backends; anything else is dropped and counted; only on loopback.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sipark::io::bare::{ECHO, request};

use super::{BIN, Sipark, options, sample};

/// (request size, reply size asked for): the range of a park cycle's datagrams and the edges.
const EXCHANGES: [(usize, u16); 6] = [(320, 1), (2 + 8, 700), (1400, 9), (16, 16), (900, 4000), (40, 8192)];

/// Sends every exchange from 4 sockets (with a tag naming socket and exchange), plus one SIP
/// OPTIONS that must be dropped; collects replies for up to 5 s (resending unanswered requests
/// every 500 ms); checks each reply's size, tag and source; returns the engine.
fn exchange(extra: &[&str]) -> Sipark {
    let mut args = vec!["--bare-io"];
    args.extend_from_slice(extra);
    let sp = Sipark::start(&args);
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            s
        })
        .collect();
    // tag -> (socket, request, reply size)
    let mut pending: BTreeMap<[u8; 8], (usize, Vec<u8>, usize)> = BTreeMap::new();
    for (k, s) in socks.iter().enumerate() {
        for (i, &(size, reply)) in EXCHANGES.iter().enumerate() {
            let tag = [b't', b'a', b'g', b'-', b'0' + k as u8, b'-', b'0' + i as u8, b'.'];
            let mut r = Vec::new();
            request(&mut r, reply, &tag, size);
            assert_eq!(r.len(), size);
            s.send_to(&r, sp.listen).expect("send request");
            pending.insert(tag, (k, r, usize::from(reply)));
        }
    }
    let local = socks[0].local_addr().expect("local");
    socks[0].send_to(&options("acme.example", local, "bare@test", "z9hG4bKbare"), sp.listen).expect("send OPTIONS");

    let mut answered = 0;
    let mut buf = vec![0u8; 16384];
    let end = Instant::now() + Duration::from_secs(5);
    let mut resend = Instant::now() + Duration::from_millis(500);
    while !pending.is_empty() && Instant::now() < end {
        for (k, s) in socks.iter().enumerate() {
            let Ok((n, from)) = s.recv_from(&mut buf) else { continue };
            assert_eq!(from, sp.listen, "the reply comes from the listen address");
            let reply = &buf[..n];
            // A reply shorter than the tag is matched by its socket and size (unique per socket).
            let tag: Option<[u8; 8]> = match reply.get(2..10) {
                Some(t) => t.try_into().ok(),
                None => pending.iter().find(|(_, (sock, _, size))| *sock == k && *size == n).map(|(t, _)| *t),
            };
            let Some((sock, req, size)) = tag.and_then(|t| pending.remove(&t)) else {
                // A duplicate of a resent request, already checked.
                continue;
            };
            assert_eq!(sock, k, "the reply to {tag:?} goes to the socket that sent it");
            assert_eq!(n, size, "reply to {tag:?} has the size asked for");
            let echo = size.min(ECHO).min(req.len());
            assert_eq!(reply[..echo], req[..echo], "reply starts with the request's first bytes");
            assert!(reply[echo..].iter().all(|&b| b == 0), "then zeros");
            answered += 1;
        }
        if Instant::now() >= resend {
            for (sock, req, _) in pending.values() {
                socks[*sock].send_to(req, sp.listen).expect("resend");
            }
            resend = Instant::now() + Duration::from_millis(500);
        }
    }
    assert!(pending.is_empty(), "unanswered after 5 s: {:?}", pending.keys().collect::<Vec<_>>());
    assert_eq!(answered, 4 * EXCHANGES.len());
    // The OPTIONS got nothing back (its socket is drained: everything it got was checked).
    socks[0].set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    while let Ok((n, _)) = socks[0].recv_from(&mut buf) {
        assert!(!buf[..n].starts_with(b"SIP/2.0"), "a SIP answer in bare mode");
    }
    sp
}

/// The engine's counters agree: every request in, every reply out, the OPTIONS dropped. A
/// send is counted when its completion is reaped, which may come after the peer has the
/// datagram: the counters are read again for up to 2 s.
fn check_counters(sp: &Sipark) {
    let asked = (4 * EXCHANGES.len()) as u64;
    let end = Instant::now() + Duration::from_secs(2);
    let text = loop {
        let text = sp.scrape();
        if sample(&text, "sipark_datagrams_out_total") >= asked || Instant::now() >= end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // At least: unanswered requests may have been resent.
    assert!(sample(&text, "sipark_datagrams_in_total") > asked, "{text}");
    assert!(sample(&text, "sipark_datagrams_out_total") >= asked, "{text}");
    assert_eq!(sample(&text, "sipark_dropped_total"), 1, "the OPTIONS is dropped:\n{text}");
    assert_eq!(sample(&text, "sipark_parse_errors_total"), 0, "nothing is parsed:\n{text}");
}

#[test]
fn bare_io_answers_each_datagram_with_the_size_it_asks_for() {
    check_counters(&exchange(&[]));
}

#[test]
fn bare_io_answers_each_datagram_with_the_size_it_asks_for_mmsg() {
    check_counters(&exchange(&["--io", "mmsg"]));
}

#[test]
fn bare_io_refuses_other_than_loopback_and_sip_only_options() {
    for args in [&["--listen", "0.0.0.0:0"][..], &["--listen", "127.0.0.1:0", "--steer", "on"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--bare-io")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} --bare-io must exit 2; stderr:\n{stderr}");
        assert!(stderr.contains("--bare-io"), "{args:?}: the error names the flag:\n{stderr}");
    }
}
