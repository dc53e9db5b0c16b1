//! Overload 503s sent from XDP (ADR 0022), against the real binary: a
//! flood of new INVITEs overloads the worker that owns the tenant; from
//! then on XDP answers the refused ones itself, so that they never reach a
//! worker, and drops the ACKs of overload 503s.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use sipark::bpf::{Xdp, XdpConfig};

use crate::engine::Engine;
use crate::metrics::DATAGRAMS_IN;
use crate::sip::{Client, invite};
use crate::topo::Topo;
use crate::{grew, xdp_grew};

/// Requests refused by the shards themselves.
const SHED: &str = "sipark_requests_shed_total";
/// The most INVITEs the flood sends (bounded even if no overload comes).
const MAX_FLOOD: usize = 40_000;

/// A header's value in a response.
fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split("\r\n").skip(1).take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// SO_RCVBUFFORCE of 8 MiB (root), so that the 503s XDP sends back at
/// once are not lost in the client's socket while it is still sending.
fn grow_receive_buffer(c: &Client) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket this test owns, with a pointer to a
    // c_int that lives through the call and its size.
    let rc = unsafe {
        libc::setsockopt(
            c.sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// The branch of the top Via.
fn branch(text: &str) -> Option<&str> {
    header(text, "Via")?.split(";branch=").nth(1)?.split(';').next()
}

/// The ACK of a non-2xx final response `resp` to the INVITE `req`: the
/// INVITE's Request-URI, top Via and From, the response's To (RFC 3261
/// §17.1.1.3).
fn ack_for(req: &str, resp: &str) -> Vec<u8> {
    let ruri = req.lines().next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default();
    let line = |name: &str, text: &str| {
        text.split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .unwrap_or_default()
            .to_owned()
    };
    let (via, from, call_id) = (line("via", req), line("from", req), line("call-id", req));
    let to = line("to", resp);
    format!(
        "ACK {ruri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n{from}\r\n{to}\r\n{call_id}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn refused_invites_are_answered_503_from_xdp_and_their_acks_dropped() {
    let topo = Topo::new('o', 204);
    let mut sp = Engine::start(
        &topo,
        "xdp_shed",
        &[
            "--xdp",
            &topo.if_a,
            "--overload-delay-ms",
            "1",
            "--overload-resume-ms",
            "0.5",
            "--overload-window-ms",
            "0",
            "--overload-hold-ms",
            "3000",
        ],
        "acme.example",
    );
    sp.wait_log("XDP filter attached", Duration::from_secs(1));
    // A veth drops what XDP on one end sends back (XDP_TX) unless the other
    // end has NAPI, which an XDP program turns on (GRO does not deliver
    // such frames on 6.18): the filter on B's end, with a port nothing is
    // sent to, passes everything. A NIC needs nothing of the kind.
    let _peer = topo.in_b(|| {
        Xdp::attach(&XdpConfig::pass_through(&topo.if_b))
            .unwrap_or_else(|e| panic!("a pass-through XDP program on B's end: {e}"))
    });
    let dst = sp.sip;
    let m0 = sp.scrape(&topo);
    let clients = Client::many(&topo, 2, 8);
    for c in &clients {
        grow_receive_buffer(c);
    }
    let mut sent: HashMap<String, Vec<u8>> = HashMap::new();
    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    let drain = |answers: &mut HashMap<String, Vec<String>>| {
        for c in &clients {
            for d in c.recv_all() {
                let text = String::from_utf8_lossy(&d).into_owned();
                let id = header(&text, "Call-ID").unwrap_or_default().to_owned();
                answers.entry(id).or_default().push(text);
            }
        }
    };
    // Bursts of 256 INVITEs (a veth ring's worth), until XDP has refused
    // some hundreds or 5 s have passed.
    let end = Instant::now() + Duration::from_secs(5);
    while sent.len() < MAX_FLOOD && Instant::now() < end {
        for k in 0..256 {
            let i = sent.len();
            let c = &clients[i % clients.len()];
            let id = format!("flood-{i}@netns");
            let req = invite("acme.example", c.local, &id);
            c.send(dst, &req);
            sent.insert(id, req);
            if k % 32 == 31 {
                drain(&mut answers);
            }
        }
        if sent.len().is_multiple_of(2560) && xdp_grew(&m0, &sp.scrape(&topo), "tx", "shed") >= 500 {
            break;
        }
    }
    let wait = Instant::now() + Duration::from_secs(2);
    while Instant::now() < wait {
        drain(&mut answers);
        thread::sleep(Duration::from_millis(20));
    }
    let m1 = sp.scrape(&topo);
    let xdp_shed = xdp_grew(&m0, &m1, "tx", "shed");
    let worker_shed = grew(&m0, &m1, SHED, &[]);
    let into_workers = grew(&m0, &m1, DATAGRAMS_IN, &[]);
    let ours: Vec<(&String, &String)> = answers
        .iter()
        .flat_map(|(id, rs)| rs.iter().map(move |r| (id, r)))
        .filter(|(_, r)| r.starts_with("SIP/2.0 503 "))
        .collect();
    // XDP copies the Via lines as received; a worker adds `received`.
    let from_xdp = ours.iter().filter(|(_, r)| !header(r, "Via").unwrap_or_default().contains("received=")).count();
    eprintln!(
        "xdp_shed: {} INVITEs sent, {} answered, {} 503s received ({from_xdp} from XDP); XDP sent {xdp_shed}, the \
         workers {worker_shed}; {into_workers} datagrams reached the workers",
        sent.len(),
        answers.len(),
        ours.len()
    );
    assert!(xdp_shed > 0, "the flood never made XDP refuse anything; engine metrics:\n{}", m1.text);
    assert!(
        into_workers + xdp_shed <= sent.len() as u64,
        "{into_workers} datagrams reached the workers and XDP answered {xdp_shed}, of {} sent: XDP's refusals must not \
         reach a worker",
        sent.len()
    );
    // Every 503 (XDP's or a worker's) is a complete answer to its INVITE.
    for (id, r) in &ours {
        let to = header(r, "To").unwrap_or_default();
        assert!(to.contains(";tag=ovl-"), "{id}: the To tag of an overload 503:\n{r}");
        let retry: u32 = header(r, "Retry-After").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!((4..=8).contains(&retry), "{id}: Retry-After {retry}:\n{r}");
        let req = String::from_utf8_lossy(&sent[*id]).into_owned();
        assert_eq!(branch(r), branch(&req), "{id}: Via copied");
        assert_eq!(header(r, "CSeq"), Some("1 INVITE"), "{id}");
    }
    // The veth pair's rings (256 frames) may drop a few in a flood.
    assert!(from_xdp as u64 * 10 >= xdp_shed * 9, "{from_xdp} 503s from XDP came back, XDP says it sent {xdp_shed}");

    // The ACKs of the 503s, paced so that the veth drops none: XDP drops
    // each one, and no datagram reaches a worker meanwhile.
    let mut acks = 0u64;
    for (id, r) in ours.iter().take(400) {
        let req = String::from_utf8_lossy(&sent[*id]).into_owned();
        let c = clients.iter().find(|c| req.contains(&c.local.to_string())).unwrap_or(&clients[0]);
        c.send(dst, &ack_for(&req, r));
        acks += 1;
        if acks.is_multiple_of(8) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    thread::sleep(Duration::from_millis(200));
    let m2 = sp.scrape(&topo);
    assert_eq!(xdp_grew(&m1, &m2, "drop", "shed_ack"), acks, "ACKs of overload 503s dropped in XDP:\n{}", m2.text);
    assert_eq!(grew(&m1, &m2, DATAGRAMS_IN, &[]), 0, "no ACK of a 503 reached a worker");
    sp.stop();
}
