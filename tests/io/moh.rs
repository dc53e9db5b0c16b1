//! Music on hold through the real binary, on both I/O backends: a call
//! parked with a PCMU offer gets a `sendonly` answer naming a worker's
//! media socket and hears RTP from it at 50 packets a second; RTP from
//! another port of the phone's address (a NAT's mapping) moves the stream
//! there; the BYE stops it.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{Sipark, header, in_dialog, park_invite, sample};

/// An SDP offering PCMU (and telephone events) at `rtp`.
fn offer(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// The first final response to `method` on `sock` within 5 s.
fn final_response(sock: &UdpSocket, method: &str) -> String {
    let mut buf = [0u8; 9000];
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
        let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code: u16 = resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
        let cseq = header(&resp, "CSeq").unwrap_or_default();
        if code >= 200 && cseq.ends_with(method) {
            return resp;
        }
    }
    panic!("no final response to {method} within 5 s");
}

/// One received RTP packet: its source, when, and its header fields.
#[derive(Debug)]
struct Rtp {
    from: SocketAddr,
    at: Instant,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: usize,
}

/// Every datagram `sock` receives for `d`, read as RTP.
fn receive(sock: &UdpSocket, d: Duration) -> Vec<Rtp> {
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    let end = Instant::now() + d;
    while Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let b = &buf[..n];
        assert!(n >= 12 && b[0] >> 6 == 2, "not RTP from {from}: {b:?}");
        out.push(Rtp {
            from,
            at: Instant::now(),
            pt: b[1] & 0x7f,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: n - 12,
        });
    }
    out
}

/// `packets` are one paced PCMU stream from `media`, continuing `after`.
fn assert_one_stream(packets: &[Rtp], media: SocketAddr, after: Option<&Rtp>) {
    let first = after.unwrap_or(&packets[0]);
    let skip = usize::from(after.is_none());
    for (i, p) in packets.iter().enumerate() {
        let k = (i + 1 - skip) as u16;
        assert_eq!(p.from, media, "sent from the media socket the SDP named");
        assert_eq!((p.pt, p.payload, p.ssrc), (0, 160, first.ssrc), "PCMU, 20 ms, one SSRC: {p:?}");
        assert_eq!(p.seq, first.seq.wrapping_add(k), "sequence +1: {p:?}");
        let frames = p.ts.wrapping_sub(first.ts) / 160;
        assert!(frames >= u32::from(k) && p.ts.wrapping_sub(first.ts) % 160 == 0, "timestamp +160 a packet: {p:?}");
    }
}

fn music_on_hold_streams_latches_and_stops(extra: &[&str]) {
    let mut args = vec!["--moh", "tune"];
    args.extend_from_slice(extra);
    let mut sp = Sipark::start(&args);
    let media_line = sp.wait_log("music on hold: one media socket per worker", Duration::from_secs(5));
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind sip");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
    let nat = UdpSocket::bind("127.0.0.1:0").expect("bind nat");
    for s in [&sip, &rtp, &nat] {
        s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    }
    let (local, rtp_addr) = (sip.local_addr().expect("addr"), rtp.local_addr().expect("addr"));
    sip.send_to(&park_invite(local, 103, "moh1", &offer(rtp_addr)), sp.listen).expect("send park");
    let ok = final_response(&sip, "INVITE");
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let body = ok.split("\r\n\r\n").nth(1).unwrap_or_default();
    for line in ["m=audio ", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendonly", "c=IN IP4 127.0.0.1"] {
        assert!(body.contains(line), "{line:?} in the park's answer:\n{body}");
    }
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no media port in:\n{body}"));
    let media = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(media_line.contains(&media.to_string()), "the answer names a worker's socket: {media_line}");
    sip.send_to(&in_dialog(local, &ok, "moh1", "ACK", 1, "moh1ACK1"), sp.listen).expect("send ACK");

    let heard = receive(&rtp, Duration::from_millis(1500));
    assert!((70..=77).contains(&heard.len()), "about 50 packets a second: {} in 1.5 s", heard.len());
    assert!(heard[0].marker && heard[1..].iter().all(|p| !p.marker), "the marker on the first packet only");
    assert_one_stream(&heard, media, None);
    let span = heard[heard.len() - 1].at - heard[0].at;
    let rate = (heard.len() - 1) as f64 / span.as_secs_f64();
    assert!((45.0..=55.0).contains(&rate), "{rate:.1} packets a second");

    // The phone's RTP comes from another port (its NAT): the stream follows.
    nat.send_to(&[0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9], media).expect("send rtp");
    let moved = receive(&nat, Duration::from_millis(600));
    assert!(moved.len() >= 20, "the stream moved to the phone's RTP source: {} packets", moved.len());
    let last_before = heard.last();
    assert_eq!(moved[0].ssrc, heard[0].ssrc, "the same stream");
    assert!(moved.iter().all(|p| p.from == media && p.ssrc == heard[0].ssrc));
    assert!(moved[0].seq.wrapping_sub(last_before.map_or(0, |p| p.seq)) < 40, "the sequence goes on");
    let leftovers = receive(&rtp, Duration::from_millis(100));
    assert!(leftovers.len() <= 2, "no more to the SDP's address once latched: {}", leftovers.len());

    sip.send_to(&in_dialog(local, &ok, "moh1", "BYE", 2, "moh1BYE2"), sp.listen).expect("send BYE");
    let bye_ok = final_response(&sip, "BYE");
    assert!(bye_ok.starts_with("SIP/2.0 200 "), "{bye_ok}");
    let _in_flight = receive(&nat, Duration::from_millis(60));
    let after = receive(&nat, Duration::from_millis(400));
    assert!(after.is_empty(), "music after the BYE: {after:?}");

    let metrics = sp.scrape();
    assert!(sample(&metrics, "sipark_moh_packets_total") >= 90, "packets counted");
    assert_eq!(sample(&metrics, "sipark_moh_streams_started_total"), 1);
    assert_eq!(sample(&metrics, "sipark_moh_latched_total"), 1);
    assert_eq!(sample(&metrics, "sipark_moh_streams"), 0);
    assert_eq!(sample(&metrics, "sipark_moh_send_errors_total"), 0);
}

#[test]
fn music_on_hold_streams_latches_and_stops_on_io_uring() {
    music_on_hold_streams_latches_and_stops(&[]);
}

#[test]
fn music_on_hold_streams_latches_and_stops_on_mmsg() {
    music_on_hold_streams_latches_and_stops(&["--io", "mmsg"]);
}
