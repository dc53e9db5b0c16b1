//! Music on hold (issue 14): the park's SDP answer, and the RTP stream a
//! parked call hears from the moment it is parked until a retrieve or an
//! answered recall bridges it, it hangs up, or the engine shuts down.

use std::net::SocketAddr;
use std::time::Duration;

use sipark::proto::config::{Config, Moh};
use sipark::proto::media::audio::ulaw_decode;
use sipark::proto::media::rtp::Header;

use crate::fixtures::{ACME, Office};
use crate::harness::{Sim, media_port, ms, secs};

/// Where `phone`'s SDP tells sipark to send its media.
fn rtp_addr(sim: &Sim, phone: usize) -> SocketAddr {
    let p = &sim.phones[phone];
    SocketAddr::new(p.addr.ip(), p.rtp_port)
}

/// A world of `n` shards with media sockets, and the usual office.
fn world(n: u16, cfg: Config, seed: u64) -> (Sim, Office) {
    let mut sim = Sim::new(n, cfg, seed);
    sim.enable_media();
    let o = sim.office(ACME);
    (sim, o)
}

/// The packets sent to `dst` at or after `from` (time since the start).
fn packets_since(sim: &Sim, dst: SocketAddr, from: Duration) -> Vec<(Duration, Header, Vec<u8>)> {
    sim.rtp_to(dst)
        .into_iter()
        .filter(|(t, _)| *t >= from)
        .map(|(t, b)| (t, Header::read(b).unwrap_or_else(|| panic!("not RTP: {b:?}")), b[12..].to_vec()))
        .collect()
}

/// Asserts `packets` are one stream of `pt`: 20 ms apart, sequence +1 and
/// timestamp +160 each, one SSRC, the marker bit on the first only when
/// `from_start`.
fn assert_one_stream(packets: &[(Duration, Header, Vec<u8>)], pt: u8, from_start: bool) {
    let (_, first, _) = &packets[0];
    for (i, (t, h, payload)) in packets.iter().enumerate() {
        assert_eq!(h.payload_type, pt, "packet {i}");
        assert_eq!(h.ssrc, first.ssrc, "packet {i}: one SSRC");
        assert_eq!(h.seq, first.seq.wrapping_add(i as u16), "packet {i}: sequence");
        assert_eq!(h.timestamp, first.timestamp.wrapping_add(160 * i as u32), "packet {i}: timestamp");
        assert_eq!(h.marker, from_start && i == 0, "packet {i}: marker");
        assert_eq!(payload.len(), 160, "20 ms of G.711");
        assert_eq!(*t, packets[0].0 + ms(20 * i as u64), "packet {i}: paced every 20 ms");
    }
}

#[test]
fn a_parked_call_is_answered_sendonly_from_the_media_socket_and_hears_fifty_packets_a_second() {
    let (mut sim, o) = world(2, Config::default(), 141);
    let call = sim.start_park(o.alice, ACME, "103", None);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.alice, txn, secs(5));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    let answer = ok.body();
    let ports = [media_port(0), media_port(1)];
    let port = ports
        .into_iter()
        .find(|p| answer.contains(&format!("m=audio {p} RTP/AVP 0\r\n")))
        .unwrap_or_else(|| panic!("the answer names a shard's media port, PCMU only: {answer}"));
    for line in ["c=IN IP4 127.0.0.1\r\n", "a=rtpmap:0 PCMU/8000\r\n", "a=ptime:20\r\n", "a=sendonly\r\n"] {
        assert!(answer.contains(line), "{line:?} in {answer}");
    }
    assert!(!answer.contains("a=inactive"), "{answer}");
    let parked_at = sim.elapsed();
    sim.run_for(secs(2));
    let got = packets_since(&sim, rtp_addr(&sim, o.alice), Duration::ZERO);
    let in_window = got.iter().filter(|(t, ..)| *t >= parked_at + secs(1) && *t < parked_at + secs(2)).count();
    assert_eq!(in_window, 50, "50 packets a second");
    assert_one_stream(&got, 0, true);
    let shard = sim.rtp.iter().flatten().next().map(|(_, s, ..)| *s).expect("a packet");
    assert_eq!(media_port(shard), port, "sent by the shard whose port the SDP named");
    // Music, not silence: the decoded samples move.
    let samples: Vec<i32> = got.iter().flat_map(|(.., p)| p.iter().map(|&b| i32::from(ulaw_decode(b)))).collect();
    let rms = (samples.iter().map(|s| f64::from(s * s)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 300.0, "audible: RMS {rms:.0}");
    assert_eq!(sim.stat(|s| s.moh_streams.get()), 1);
    assert_eq!(sim.stat(|s| s.moh_streams_started.get()), 1);
    assert_eq!(sim.stat(|s| s.moh_packets.get()), got.len() as u64);
}

#[test]
fn the_music_stops_at_the_parked_legs_answer_to_the_retrieve() {
    let (mut sim, o) = world(2, Config::default(), 142);
    sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(1));
    let alice = rtp_addr(&sim, o.alice);
    assert!(!sim.rtp_to(alice).is_empty());
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(200), "{r:?}");
    // The parked leg's 200 to the re-INVITE came before the retriever's 200.
    let answered = sim.phones[o.carol].received.iter().rev().find(|m| m.code() == Some(200)).map(|m| m.at);
    let answered = answered.expect("the retriever's 200").saturating_sub(ms(10));
    let after: Vec<_> = packets_since(&sim, alice, answered + ms(1));
    assert!(after.is_empty(), "no music once bridged: {} packets", after.len());
    sim.run_for(secs(2));
    assert!(packets_since(&sim, alice, answered + ms(1)).is_empty());
    assert_eq!(sim.stat(|s| s.moh_streams.get()), 0);
}

#[test]
fn hanging_up_or_shutting_down_stops_the_music() {
    let (mut sim, o) = world(1, Config::default(), 143);
    let a = sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&o, o.dave);
    sim.run_for(secs(1));
    assert_eq!(sim.stat(|s| s.moh_streams.get()), 2);
    sim.hangup(o.alice, a);
    let hung_up = sim.elapsed();
    sim.run_for(secs(1));
    assert!(packets_since(&sim, rtp_addr(&sim, o.alice), hung_up).is_empty(), "no music after the BYE");
    assert!(!packets_since(&sim, rtp_addr(&sim, o.dave), hung_up).is_empty(), "the other call still hears it");
    sim.shutdown_all();
    let down = sim.elapsed();
    sim.run_for(secs(2));
    assert!(packets_since(&sim, rtp_addr(&sim, o.dave), down + ms(1)).is_empty(), "no music after shutdown");
    assert_eq!(sim.stat(|s| s.moh_streams.get()), 0);
}

#[test]
fn the_music_plays_through_the_recall_until_the_parker_answers() {
    let mut cfg = Config::default();
    cfg.defaults.park_timeout = secs(5);
    let (mut sim, o) = world(2, cfg, 144);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    sim.park_by_bob(&o, o.alice);
    let alice = rtp_addr(&sim, o.alice);
    let ringing = sim.run_until(secs(10), |s| !s.phones[o.bob[0]].incoming().is_empty());
    assert!(ringing, "the recall rings the parker\n{}", sim.trace());
    let recall_at = sim.elapsed();
    sim.run_for(secs(1));
    let during = packets_since(&sim, alice, recall_at);
    assert_eq!(during.len(), 50, "the music goes on while the recall rings");
    let rc = sim.phones[o.bob[0]].incoming()[0];
    let now = sim.now;
    assert!(sim.phones[o.bob[0]].answer(now, rc));
    let ok = sim.run_until(secs(5), |s| s.stat(|st| st.bridged.get()) == 1);
    assert!(ok, "the recall bridges\n{}", sim.trace());
    let bridged = sim.elapsed();
    sim.run_for(secs(1));
    assert!(packets_since(&sim, alice, bridged + ms(1)).is_empty(), "no music once the recall is bridged");
    assert_one_stream(&packets_since(&sim, alice, Duration::ZERO), 0, true);
}

#[test]
fn a_park_without_an_offer_gets_sipark_s_music_offer_and_the_ack_s_answer_addresses_it() {
    let (mut sim, o) = world(1, Config::default(), 145);
    // The phone answers with PCMA only.
    sim.phones[o.alice].media_override = Some("m=audio {port} RTP/AVP 8\r\na=recvonly\r\n".into());
    let now = sim.now;
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &[], false);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.alice, txn, secs(5));
    let offer = ok.body();
    let port = media_port(0);
    assert!(offer.contains(&format!("m=audio {port} RTP/AVP 0 8\r\n")), "{offer}");
    assert!(offer.contains("a=sendonly\r\n") && offer.contains("a=ptime:20\r\n"), "{offer}");
    sim.run_for(secs(1));
    let got = packets_since(&sim, rtp_addr(&sim, o.alice), Duration::ZERO);
    assert!(got.len() >= 45, "music from the ACK on: {}", got.len());
    assert_one_stream(&got, 8, true);
}

#[test]
fn offers_sipark_cannot_stream_to_keep_the_silent_hold() {
    let offers = [
        ("no G.711", "m=audio {port} RTP/AVP 9 18\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n"),
        ("SRTP", "m=audio {port} RTP/SAVP 0 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n"),
        ("the phone holds", "m=audio {port} RTP/AVP 0\r\na=sendonly\r\n"),
    ];
    for (i, (what, media)) in offers.into_iter().enumerate() {
        let (mut sim, o) = world(1, Config::default(), 146 + i as u64);
        sim.phones[o.alice].media_override = Some(media.into());
        let call = sim.start_park(o.alice, ACME, "103", None);
        let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
        let ok = sim.final_of(o.alice, txn, secs(5));
        assert_eq!(ok.code(), Some(200), "{what}: {ok:?}");
        let answer = ok.body();
        assert!(answer.contains("a=inactive") && !answer.contains("sendonly"), "{what}: {answer}");
        sim.run_for(secs(1));
        assert!(sim.rtp.iter().flatten().next().is_none(), "{what}: no RTP");
        assert_eq!(sim.stat(|s| s.parked.get()), 1, "{what}: parked all the same");
    }
}

#[test]
fn the_offered_ptime_paces_the_stream() {
    let (mut sim, o) = world(1, Config::default(), 150);
    sim.phones[o.alice].media_override = Some("m=audio {port} RTP/AVP 0\r\na=ptime:30\r\n".into());
    sim.park_by_bob(&o, o.alice);
    let got = packets_since(&sim, rtp_addr(&sim, o.alice), Duration::ZERO);
    let answer = sim.phones[o.alice].received.iter().find(|m| m.code() == Some(200)).map(|m| m.body());
    assert!(answer.unwrap_or_default().contains("a=ptime:30\r\n"));
    sim.run_for(secs(1));
    let got: Vec<_> = packets_since(&sim, rtp_addr(&sim, o.alice), got.first().map_or(Duration::ZERO, |p| p.0));
    for w in got.windows(2) {
        assert_eq!(w[1].0 - w[0].0, ms(30));
        assert_eq!(w[1].1.timestamp.wrapping_sub(w[0].1.timestamp), 240);
        assert_eq!(w[1].2.len(), 240);
    }
    assert!(got.len() >= 33, "{}", got.len());
}

#[test]
fn a_tenant_with_music_off_keeps_the_silent_hold() {
    let mut cfg = Config::default();
    cfg.defaults.moh = Moh::Off;
    let (mut sim, o) = world(1, cfg, 151);
    sim.park_by_bob(&o, o.alice);
    let answer = sim.phones[o.alice].received.iter().find(|m| m.code() == Some(200)).map(|m| m.body());
    assert!(answer.as_ref().is_some_and(|a| a.contains("a=inactive") && a.contains("m=audio 9 ")), "{answer:?}");
    sim.run_for(secs(1));
    assert!(sim.rtp.iter().flatten().next().is_none());
}

#[test]
fn past_the_streams_limit_a_parked_call_is_held_in_silence_and_counted() {
    let mut cfg = Config::default();
    cfg.music.max_streams = 1;
    let (mut sim, o) = world(1, cfg, 152);
    sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&o, o.dave);
    let answers: Vec<String> =
        [o.alice, o.dave].iter().map(|&p| sim.phones[p].responses(200)[0].body()).collect::<Vec<_>>();
    assert!(answers[0].contains("a=sendonly"), "{}", answers[0]);
    assert!(answers[1].contains("a=inactive"), "{}", answers[1]);
    assert_eq!(sim.stat(|s| s.moh_refused.get()), 1);
    sim.run_for(secs(1));
    assert!(!sim.rtp_to(rtp_addr(&sim, o.alice)).is_empty());
    assert!(sim.rtp_to(rtp_addr(&sim, o.dave)).is_empty());
    assert_eq!(sim.stat(|s| s.parked.get()), 2);
}

#[test]
fn a_refer_park_plays_music_to_the_parked_leg() {
    let (mut sim, o) = world(2, Config::default(), 153);
    sim.park_by_bob(&o, o.alice);
    let (c, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    sim.run_for(ms(300));
    let alice = rtp_addr(&sim, o.alice);
    let bridged = sim.elapsed();
    sim.run_for(secs(1));
    let refer_sent = sim.elapsed();
    let now = sim.now;
    let carol = sim.phones[o.carol].party();
    let extra = vec!["Refer-To: <sip:*68103@acme.example>".to_owned(), format!("Referred-By: {carol}")];
    let t = sim.phones[o.carol].in_dialog(now, c, "REFER", &extra);
    assert_eq!(sim.final_of(o.carol, t, secs(5)).code(), Some(202));
    let refer_at = sim.elapsed();
    sim.run_for(secs(1));
    let hold = sim.phones[o.alice].calls[0].reinvites.last().map(|m| m.body()).unwrap_or_default();
    assert!(hold.contains("a=sendonly"), "the re-INVITE offers music: {hold}");
    let since = packets_since(&sim, alice, bridged);
    assert!(since.iter().all(|(t, ..)| *t >= refer_sent), "no music while bridged");
    assert!(packets_since(&sim, alice, refer_at).len() >= 45, "music after the REFER park");
}

#[test]
fn each_tenant_hears_its_own_music() {
    use std::sync::Arc;

    use sipark::proto::config::parse_tenants;
    use sipark::proto::media::audio::Audio;
    use sipark::proto::sip::sdp::Codec;

    const BETA: &str = "beta.example";
    let text = format!(
        "[[tenant]]\ndomain = \"{ACME}\"\nmoh = \"/srv/acme.wav\"\n[[tenant]]\ndomain = \"{BETA}\"\n\
         [[tenant]]\ndomain = \"gamma.example\"\nmoh = \"off\"\n"
    );
    let mut cfg = Config::default();
    let (defaults, tenants) = parse_tenants(&text, cfg.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    cfg.defaults = defaults;
    cfg.tenants = tenants;
    // What the CLI reads and decodes from the file: a slow ramp.
    let ramp: Vec<i16> = (0..4000).map(|i| (i * 8 - 16_000) as i16).collect();
    let acme_music = Arc::new(Audio::from_pcm(&ramp).unwrap_or_else(|e| panic!("{e}")));
    cfg.music.files.insert("/srv/acme.wav".into(), Arc::clone(&acme_music));
    let mut sim = Sim::new(1, cfg, 154);
    sim.enable_media();
    let acme = sim.office(ACME);
    let beta = sim.office(BETA);
    let gamma = sim.office("gamma.example");
    for o in [&acme, &beta, &gamma] {
        sim.park_by_bob(o, o.alice);
    }
    sim.run_for(secs(1));
    let heard = |sim: &Sim, o: &Office| packets_since(sim, rtp_addr(sim, o.alice), Duration::ZERO);
    let (a, b, g) = (heard(&sim, &acme), heard(&sim, &beta), heard(&sim, &gamma));
    assert!(g.is_empty(), "gamma has music off");
    assert!(a.len() >= 45 && b.len() >= 45, "{} {}", a.len(), b.len());
    // acme hears its file from the start of the loop; beta the tune.
    let mut want = vec![0u8; 160];
    for (i, (.., payload)) in a.iter().enumerate() {
        acme_music.fill(Codec::Pcmu, 160 * i, &mut want);
        assert_eq!(payload, &want, "acme's packet {i} is its file's audio");
    }
    let tune = Audio::shared_tune();
    for (i, (.., payload)) in b.iter().enumerate() {
        tune.fill(Codec::Pcmu, 160 * i, &mut want);
        assert_eq!(payload, &want, "beta's packet {i} is sipark's tune");
    }
}
