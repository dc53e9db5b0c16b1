//! The streams driven by a virtual clock: pacing, the RTP fields, the
//! spread of calls over a packet time, stalls, stops, the limit and
//! latching.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::media::audio::Audio;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn call(n: u64) -> CallId {
    CallId::new(n).unwrap_or_else(|| panic!("call id {n}"))
}

/// A ramp, so that each packet's payload tells where in the loop it is.
fn audio() -> Arc<Audio> {
    let samples: Vec<i16> = (0..8000).map(|i| ((i % 800) * 40 - 16_000) as i16).collect();
    Arc::new(Audio::from_pcm(&samples).unwrap_or_else(|e| panic!("audio: {e}")))
}

fn start(codec: Codec, dest: Option<SocketAddr>, peer: &str, random: u64) -> Start {
    Start { codec, ptime_ms: 20, dest, peer_ip: ip(peer), audio: audio(), random }
}

/// Every packet sent from `from` to `to` (inclusive), polling each
/// millisecond: (the millisecond, destination, bytes).
fn run(s: &mut Streams, t0: Instant, from: u64, to: u64) -> Vec<(u64, SocketAddr, Vec<u8>)> {
    let mut out = Packets::with_limit(1024);
    let mut sent = Vec::new();
    for ms in from..=to {
        out.clear();
        s.poll(t0 + Duration::from_millis(ms), &mut out);
        sent.extend(out.iter().map(|(d, b)| (ms, d, b.to_vec())));
    }
    sent
}

#[test]
fn a_stream_sends_a_packet_every_packet_time_with_rtp_s_fields() {
    let t0 = Instant::now();
    let mut s = Streams::new(8);
    let dest = addr("192.0.2.10:4000");
    s.start(t0, call(1), start(Codec::Pcma, Some(dest), "192.0.2.10", 0x1234_5678_9abc_def0)).expect("room");
    let sent = run(&mut s, t0, 0, 199);
    assert_eq!(sent.len(), 10, "200 ms of 20 ms packets");
    let a = audio();
    let mut want = vec![0u8; 160];
    for (i, (ms, dst, bytes)) in sent.iter().enumerate() {
        assert_eq!(*dst, dest);
        assert_eq!(*ms, sent[0].0 + 20 * i as u64, "paced every 20 ms");
        assert_eq!(bytes.len(), 12 + 160);
        let h = Header::read(bytes).expect("RTP");
        let first = Header::read(&sent[0].2).expect("RTP");
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.marker, i == 0, "the marker bit on the first packet only");
        assert_eq!(h.ssrc, first.ssrc);
        assert_eq!(h.seq, first.seq.wrapping_add(i as u16));
        assert_eq!(h.timestamp, first.timestamp.wrapping_add(160 * i as u32));
        a.fill(Codec::Pcma, 160 * i, &mut want);
        assert_eq!(&bytes[12..], &want[..], "packet {i} carries the loop from sample {}", 160 * i);
    }
    assert_eq!(s.tally().packets, 10);
    assert!(sent[0].0 < 20, "the first packet within the first packet time");
}

#[test]
fn streams_of_calls_parked_together_spread_over_the_packet_time() {
    let t0 = Instant::now();
    let mut s = Streams::new(1000);
    for n in 1..=400 {
        let d = SocketAddr::new(ip("192.0.2.10"), 4000 + 2 * n as u16);
        s.start(t0, call(n), start(Codec::Pcmu, Some(d), "192.0.2.10", n)).expect("room");
    }
    let sent = run(&mut s, t0, 0, 39);
    assert_eq!(sent.len(), 800, "two packets each in 40 ms");
    let mut per_ms = [0usize; 20];
    for (ms, ..) in &sent {
        per_ms[(*ms % 20) as usize] += 1;
    }
    assert!(per_ms.iter().all(|&n| n == 40), "400 streams, 20 each millisecond: {per_ms:?}");
    // Different random starts: different SSRCs.
    let ssrcs: std::collections::HashSet<u32> = sent.iter().map(|(.., b)| Header::read(b).expect("RTP").ssrc).collect();
    assert_eq!(ssrcs.len(), 400);
}

#[test]
fn a_stopped_stream_sends_nothing_more_and_its_slot_is_reused() {
    let t0 = Instant::now();
    let mut s = Streams::new(2);
    let (d1, d2) = (addr("192.0.2.1:4000"), addr("192.0.2.2:4000"));
    s.start(t0, call(1), start(Codec::Pcmu, Some(d1), "192.0.2.1", 1)).expect("room");
    s.start(t0, call(2), start(Codec::Pcmu, Some(d2), "192.0.2.2", 2)).expect("room");
    assert!(!s.has_room());
    assert_eq!(s.start(t0, call(3), start(Codec::Pcmu, Some(d2), "192.0.2.2", 3)), Err(Refused::Full));
    run(&mut s, t0, 0, 30);
    assert!(s.stop(call(1)));
    assert!(!s.stop(call(1)), "already stopped");
    assert_eq!(s.len(), 1);
    let t = Instant::now().max(t0 + Duration::from_millis(31));
    let later = t.duration_since(t0).as_millis() as u64;
    // A new call takes the freed slot; the old one's wheel entry is stale.
    s.start(t, call(3), start(Codec::Pcmu, Some(addr("192.0.2.3:4000")), "192.0.2.3", 3)).expect("room again");
    let sent = run(&mut s, t0, later, later + 99);
    assert!(sent.iter().all(|(_, d, _)| *d != d1), "nothing to the stopped call");
    assert_eq!(sent.iter().filter(|(_, d, _)| *d == d2).count(), 5);
    assert_eq!(sent.iter().filter(|(_, d, _)| *d == addr("192.0.2.3:4000")).count(), 5);
    assert!(s.stop(call(2)) && s.stop(call(3)));
    assert!(s.is_empty() && s.next_due().is_none());
    assert!(run(&mut s, t0, later + 100, later + 200).is_empty());
}

#[test]
fn a_stall_skips_the_packets_whose_time_passed_and_sends_no_burst() {
    let t0 = Instant::now();
    let mut s = Streams::new(4);
    s.start(t0, call(1), start(Codec::Pcmu, Some(addr("192.0.2.1:4000")), "192.0.2.1", 9)).expect("room");
    let first = run(&mut s, t0, 0, 19);
    assert_eq!(first.len(), 1);
    // The worker does not run for 105 ms.
    let after = run(&mut s, t0, 125, 125);
    assert_eq!(after.len(), 1, "one packet, not five");
    let (a, b) = (Header::read(&first[0].2).expect("RTP"), Header::read(&after[0].2).expect("RTP"));
    assert_eq!(b.seq, a.seq.wrapping_add(1), "sequence numbers stay contiguous");
    let frames = b.timestamp.wrapping_sub(a.timestamp) / 160;
    assert!(frames >= 5, "the timestamp jumps over the skipped packets: {frames} frames");
    assert_eq!(s.tally().skipped, u64::from(frames) - 1);
    // Then back to one packet per 20 ms.
    assert_eq!(run(&mut s, t0, 126, 225).len(), 5);
}

#[test]
fn a_full_batch_leaves_the_rest_for_the_next_poll() {
    let t0 = Instant::now();
    let mut s = Streams::new(100);
    for n in 1..=50 {
        s.start(t0, call(n), start(Codec::Pcmu, Some(addr("192.0.2.1:4000")), "192.0.2.1", n)).expect("room");
    }
    let mut out = Packets::with_limit(7);
    let at = t0 + Duration::from_millis(19);
    let mut total = 0;
    loop {
        out.clear();
        s.poll(at, &mut out);
        total += out.len();
        if !out.is_full() {
            break;
        }
    }
    assert_eq!(total, 50, "every stream's first packet, seven at a time");
    assert!(s.next_due().is_some_and(|t| t > at));
}

#[test]
fn rtp_from_a_phone_behind_nat_latches_its_stream() {
    let t0 = Instant::now();
    let mut s = Streams::new(8);
    // The SDP names a private address; the signalling came from the NAT.
    s.start(t0, call(1), start(Codec::Pcmu, Some(addr("10.0.0.5:4000")), "203.0.113.7", 1)).expect("room");
    let mut rtp = Vec::new();
    Header { marker: false, payload_type: 0, seq: 1, timestamp: 1, ssrc: 77 }.write(&mut rtp);
    rtp.extend_from_slice(&[0xff; 160]);
    let rtcp = [0x81, 201, 0, 7, 0, 0, 0, 1];
    assert_eq!(s.received(addr("203.0.113.7:34001"), &rtcp), Received::NotRtp);
    assert_eq!(s.received(addr("198.51.100.1:4000"), &rtp), Received::Unknown);
    assert_eq!(s.received(addr("203.0.113.7:34000"), &rtp), Received::Latched);
    assert_eq!(s.received(addr("203.0.113.7:34000"), &rtp), Received::Known);
    assert_eq!(s.destination(call(1)), Some((Some(addr("203.0.113.7:34000")), true)));
    let sent = run(&mut s, t0, 0, 39);
    assert!(!sent.is_empty() && sent.iter().all(|(_, d, _)| *d == addr("203.0.113.7:34000")));
}

#[test]
fn a_source_several_unlatched_streams_could_be_latches_none_unless_its_port_tells() {
    let t0 = Instant::now();
    let mut s = Streams::new(8);
    s.start(t0, call(1), start(Codec::Pcmu, Some(addr("10.0.0.5:4000")), "203.0.113.7", 1)).expect("room");
    s.start(t0, call(2), start(Codec::Pcmu, Some(addr("10.0.0.6:4002")), "203.0.113.7", 2)).expect("room");
    let mut rtp = Vec::new();
    Header { marker: false, payload_type: 0, seq: 1, timestamp: 1, ssrc: 77 }.write(&mut rtp);
    assert_eq!(s.received(addr("203.0.113.7:50000"), &rtp), Received::Ambiguous);
    // A NAT that kept the port: that stream.
    assert_eq!(s.received(addr("203.0.113.7:4002"), &rtp), Received::Latched);
    assert_eq!(s.destination(call(2)), Some((Some(addr("203.0.113.7:4002")), true)));
    // Now only one is left waiting on that address.
    assert_eq!(s.received(addr("203.0.113.7:50000"), &rtp), Received::Latched);
    assert_eq!(s.destination(call(1)), Some((Some(addr("203.0.113.7:50000")), true)));
}

#[test]
fn a_stream_with_no_address_sends_nothing_until_latched() {
    let t0 = Instant::now();
    let mut s = Streams::new(8);
    s.start(t0, call(1), start(Codec::Pcmu, None, "192.0.2.9", 1)).expect("room");
    assert!(run(&mut s, t0, 0, 59).is_empty());
    assert_eq!(s.tally().unaddressed, 3);
    let mut rtp = Vec::new();
    Header { marker: false, payload_type: 0, seq: 1, timestamp: 1, ssrc: 5 }.write(&mut rtp);
    assert_eq!(s.received(addr("192.0.2.9:7078"), &rtp), Received::Latched);
    let sent = run(&mut s, t0, 60, 99);
    assert_eq!(sent.len(), 2);
    assert!(Header::read(&sent[0].2).expect("RTP").marker, "the first packet sent carries the marker");
}

#[test]
fn streams_in_one_millisecond_keep_their_order_from_packet_to_packet() {
    let t0 = Instant::now();
    let mut s = Streams::new(64);
    // 40 streams, two per millisecond slot.
    for n in 1..=40 {
        let d = SocketAddr::new(ip("192.0.2.10"), 4000 + 2 * n as u16);
        s.start(t0, call(n), start(Codec::Pcmu, Some(d), "192.0.2.10", n)).expect("room");
    }
    let sent = run(&mut s, t0, 0, 99);
    let order = |from: u64| -> Vec<SocketAddr> {
        sent.iter().filter(|(ms, ..)| (from..from + 20).contains(ms)).map(|(_, d, _)| *d).collect()
    };
    let first = order(0);
    assert_eq!(first.len(), 40);
    for round in 1..5 {
        assert_eq!(order(20 * round), first, "round {round} sends in the same order as the first");
    }
}
