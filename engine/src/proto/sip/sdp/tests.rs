use super::*;

#[test]
fn the_hold_basis_gives_the_same_hold_answers() {
    let offers: [&[u8]; 4] = [
        b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=ice-ufrag:x\r\n\
          m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
          a=fmtp:101 0-16\r\na=candidate:1 1 UDP 1 10.0.0.1 4000 typ host\r\na=sendrecv\r\n\
          m=video 0 RTP/AVP 96\r\nm=video 5000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=crypto:1 AES x\r\n",
        b"v=0\no=a 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
        b"v=0\r\ns=-\r\nm=broken\r\na=rtpmap:0 PCMU/8000\r\n",
        b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n",
    ];
    let origin = Origin::new(9);
    for offer in offers {
        let basis = hold_basis(offer);
        assert!(basis.len() <= offer.len() + 2, "{}", String::from_utf8_lossy(&basis));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ok = hold_answer(&mut a, offer, origin, "192.0.2.1");
        assert_eq!(hold_answer(&mut b, &basis, origin, "192.0.2.1"), ok);
        assert_eq!(a, b, "{}", String::from_utf8_lossy(offer));
    }
    assert!(!hold_basis(offers[0]).windows(9).any(|w| w == b"candidate"), "ICE lines are not kept");
    // More kept lines than the first pass notes: all are kept, in order.
    for m_lines in [11, 12, 13, 40] {
        let mut offer = b"v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n".to_vec();
        let mut want = b"v=0\r\n".to_vec();
        for i in 0..m_lines {
            let m = format!("m=audio {} RTP/AVP 0\r\n", 4000 + 2 * i);
            let rtpmap = "a=rtpmap:0 PCMU/8000\r\n";
            offer.extend_from_slice(format!("{m}a=sendrecv\r\n{rtpmap}").as_bytes());
            want.extend_from_slice(format!("{m}{rtpmap}").as_bytes());
        }
        assert_eq!(String::from_utf8_lossy(&hold_basis(&offer)), String::from_utf8_lossy(&want), "{m_lines} m-lines");
    }
    assert_eq!(&*hold_basis(b"not sdp"), b"not sdp");
    assert!(hold_basis(b"").is_empty());
}

const OFFER: &[u8] = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\nm=video 0 RTP/AVP 31\r\n";

#[test]
fn hold_answer_mirrors_m_lines_inactive() {
    let mut out = Vec::new();
    assert!(hold_answer(&mut out, OFFER, Origin { session: 7, version: 3 }, "198.51.100.1"));
    let text = String::from_utf8(out).expect("ascii");
    assert!(text.starts_with("v=0\r\no=sipark 7 3 IN IP4 198.51.100.1\r\n"), "{text}");
    assert!(text.contains("m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"), "{text}");
    assert!(text.contains("a=fmtp:101 0-15\r\na=inactive\r\n"), "{text}");
    assert!(text.contains("m=video 0 RTP/AVP 31\r\n"), "{text}");
    assert!(!text.contains("sendrecv"), "{text}");
    assert_eq!(text.matches("a=inactive").count(), 1, "{text}");
}

#[test]
fn rewrite_keeps_media_and_replaces_origin() {
    let mut out = Vec::new();
    assert!(rewrite_origin(&mut out, OFFER, Origin { session: 9, version: 2 }, "[2001:db8::1]"));
    let text = String::from_utf8(out).expect("ascii");
    assert!(text.contains("o=sipark 9 2 IN IP6 2001:db8::1\r\n"), "{text}");
    assert!(text.contains("c=IN IP4 192.0.2.10\r\n"), "{text}");
    assert!(!text.contains("alice"), "{text}");
}

#[test]
fn the_two_piece_rewrite_writes_what_the_line_by_line_one_does() {
    // Each form the two-piece copy must refuse, and the usual one.
    let sdps: [(&[u8], bool); 10] = [
        (OFFER, true),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\n", true),
        (b"v=0\r\no=a\r\r\ns=-\r\nx=\ry\r\n", true),
        (b"v=0\no=a 1 1 IN IP4 h\ns=-\n", false),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\n\r\ns=-\r\n", false),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\n\r\n", false),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\n\r\r\n", true),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\ns=-", false),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\no=b 2 2 IN IP4 h\r\n", false),
        (b"v=0\r\ns=-\r\nc=IN IP4 h\r\n", false),
    ];
    for (sdp, two_pieces) in sdps {
        assert_eq!(lone_origin(sdp).is_some(), two_pieces, "{}", String::from_utf8_lossy(sdp));
        let mut fast = b"head".to_vec();
        let ok = rewrite_origin(&mut fast, sdp, Origin { session: 9, version: 2 }, "192.0.2.1");
        // The line-by-line rewrite, as the fallback does it.
        let mut slow = b"head".to_vec();
        let mut wrote = false;
        for line in lines(sdp) {
            if line.starts_with(b"o=") {
                write_origin(&mut slow, Origin { session: 9, version: 2 }, "192.0.2.1");
                wrote = true;
            } else {
                slow.extend_from_slice(line);
                slow.extend_from_slice(b"\r\n");
            }
        }
        assert!(ok);
        if wrote {
            assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
        }
    }
}

#[test]
fn an_sdp_without_origin_gets_one_after_its_version_line() {
    let mut out = b"prefix".to_vec();
    let sdp = b"v=0\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert!(rewrite_origin(&mut out, sdp, Origin { session: 9, version: 2 }, "192.0.2.1"));
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "prefixv=0\r\no=sipark 9 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
}

#[test]
fn not_sdp_is_refused() {
    let mut out = Vec::new();
    assert!(!hold_answer(&mut out, b"<xml/>", Origin::new(1), "h"));
    assert!(!hold_answer(&mut out, b"v=0\r\ns=-\r\n", Origin::new(1), "h"));
    assert!(out.is_empty());
}

#[test]
fn hold_offer_is_an_inactive_audio_offer() {
    let mut out = Vec::new();
    hold_offer(&mut out, Origin { session: 5, version: 1 }, "[2001:db8::1]");
    let text = String::from_utf8(out).expect("ascii");
    assert!(text.starts_with("v=0\r\no=sipark 5 1 IN IP6 2001:db8::1\r\n"), "{text}");
    assert!(text.contains("c=IN IP6 2001:db8::1\r\n"), "{text}");
    assert!(text.contains("m=audio 9 RTP/AVP 0 8 9 18 101\r\n"), "{text}");
    assert!(text.ends_with("a=inactive\r\n"), "{text}");
    assert!(is_sdp(text.as_bytes()));
}

/// An SDP with `session` lines between its `s=` and `t=` lines and `media`
/// after them, each line ended by CRLF.
fn sdp(session: &[&str], media: &[&str]) -> Vec<u8> {
    let mut text = String::from("v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\n");
    for line in session {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("t=0 0\r\n");
    for line in media {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.into_bytes()
}

/// [`music_choice`] on [`sdp`]`(session, media)`.
fn music(session: &[&str], media: &[&str]) -> Option<Music> {
    music_choice(&sdp(session, media))
}

fn to(addr: &str) -> Option<SocketAddr> {
    Some(addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}")))
}

const AT: &str = "c=IN IP4 192.0.2.10";

#[test]
fn music_choice_takes_pcmu_or_pcma_in_the_offers_order() {
    let pcmu = Music { codec: Codec::Pcmu, ptime_ms: 20, dest: to("192.0.2.10:4000") };
    let pcma = Music { codec: Codec::Pcma, ..pcmu };
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 0"]), Some(pcmu));
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 8"]), Some(pcma));
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 8 0"]), Some(pcma));
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 0 8 101"]), Some(pcmu));
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 9 18 8 0 101"]), Some(pcma));
    // Several ports: the first carries the stream.
    assert_eq!(music(&[AT], &["m=audio 4000/2 RTP/AVP 0"]), Some(pcmu));
}

#[test]
fn music_choice_needs_g711_audio_on_plain_rtp() {
    for m in [
        "m=audio 4000 RTP/AVP 9 18",
        "m=audio 4000 RTP/AVP 101 80",
        "m=audio 4000 RTP/SAVP 0 8",
        "m=audio 4000 RTP/SAVPF 0",
        "m=audio 4000 UDP/TLS/RTP/SAVPF 0 8",
        "m=audio 4000 rtp/avp 0",
        "m=video 4000 RTP/AVP 0",
        "m=audio 0 RTP/AVP 0",
        "m=audio x RTP/AVP 0",
        "m=audio 4000 RTP/AVP",
        "m=audio 4000",
    ] {
        assert_eq!(music(&[AT], &[m]), None, "{m}");
    }
    assert_eq!(music(&[AT], &[]), None);
    assert_eq!(music_choice(b"<xml/>"), None);
    assert_eq!(music_choice(b""), None);
}

#[test]
fn music_choice_refuses_keyed_streams() {
    let m = "m=audio 4000 RTP/AVP 0";
    let key = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let print = "a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB";
    assert_eq!(music(&[AT], &[m, key]), None);
    assert_eq!(music(&[AT], &[m, "a=sendrecv", print]), None);
    // Keys of another m-section do not count.
    assert!(music(&[AT], &[m, "m=video 5000 RTP/SAVP 96", key]).is_some());
}

#[test]
fn music_choice_follows_the_offered_direction() {
    let m = "m=audio 4000 RTP/AVP 0";
    let cases: [(&[&str], &[&str], bool); 11] = [
        (&[], &[m], true),
        (&[], &[m, "a=sendrecv"], true),
        (&[], &[m, "a=recvonly"], true),
        (&[], &[m, "a=sendonly"], false),
        (&[], &[m, "a=inactive"], false),
        (&["a=sendonly"], &[m], false),
        (&["a=inactive"], &[m], false),
        (&["a=recvonly"], &[m], true),
        (&["a=sendonly"], &[m, "a=sendrecv"], true),
        (&["a=sendrecv"], &[m, "a=sendonly"], false),
        // The first direction attribute of a level counts.
        (&[], &[m, "a=recvonly", "a=inactive"], true),
    ];
    for (session, media, served) in cases {
        assert_eq!(music(session, media).is_some(), served, "{session:?} {media:?}");
    }
}

#[test]
fn music_choice_takes_the_first_audio_stream_it_could_serve() {
    let second = |codec| Some(Music { codec, ptime_ms: 20, dest: to("192.0.2.10:5000") });
    let cases: [(&[&str], Option<Music>); 6] = [
        (&["m=audio 0 RTP/AVP 0", "m=audio 5000 RTP/AVP 0"], second(Codec::Pcmu)),
        (&["m=video 4000 RTP/AVP 0", "m=audio 5000 RTP/AVP 8"], second(Codec::Pcma)),
        (&["m=audio 4000 RTP/AVP 9", "m=audio 5000 RTP/AVP 0"], second(Codec::Pcmu)),
        (&["m=audio 4000 RTP/SAVP 0", "a=crypto:1 x", "m=audio 5000 RTP/AVP 0"], second(Codec::Pcmu)),
        // What comes before the chosen m-section, or after it, does not count.
        (
            &["m=audio 0 RTP/AVP 0", "c=IN IP4 10.9.9.9", "a=ptime:60", "a=sendonly", "m=audio 5000 RTP/AVP 0"],
            second(Codec::Pcmu),
        ),
        (&["m=audio 5000 RTP/AVP 0", "m=video 6000 RTP/AVP 96", "a=inactive", "a=ptime:40"], second(Codec::Pcmu)),
    ];
    for (media, want) in cases {
        assert_eq!(music(&[AT], media), want, "{media:?}");
    }
    // The first such stream is the one answered; a later one does not
    // stand in for it.
    assert_eq!(music(&[AT], &["m=audio 4000 RTP/AVP 0", "a=sendonly", "m=audio 5000 RTP/AVP 0"]), None);
}

#[test]
fn music_choice_rounds_and_clamps_the_ptime() {
    let m = "m=audio 4000 RTP/AVP 0";
    let ptime = |session: &[&str], media: &[&str]| music(session, media).map(|music| music.ptime_ms);
    for (line, want) in [
        ("a=ptime:30", 30),
        ("a=ptime:25", 30),
        ("a=ptime:24", 20),
        ("a=ptime:24.9", 20),
        ("a=ptime:25.0", 30),
        ("a=ptime:30.0", 30),
        ("a=ptime: 40 ", 40),
        ("a=ptime:200", 60),
        ("a=ptime:99999999999999999999", 60),
        ("a=ptime:5", 10),
        ("a=ptime:0", 10),
        ("a=ptime:", 20),
        ("a=ptime:abc", 20),
        ("a=ptime:-30", 20),
        ("a=ptime:.5", 20),
    ] {
        assert_eq!(ptime(&[], &[m, line]), Some(want), "{line}");
    }
    assert_eq!(ptime(&[], &[m]), Some(20));
    assert_eq!(ptime(&["a=ptime:40"], &[m]), Some(40));
    assert_eq!(ptime(&["a=ptime:40"], &[m, "a=ptime:10"]), Some(10));
    assert_eq!(ptime(&[], &[m, "a=ptime:30", "a=ptime:10"]), Some(30));
}

#[test]
fn music_choice_sends_to_the_offered_connection_address() {
    let m = "m=audio 4000 RTP/AVP 0";
    let dest = |session: &[&str], media: &[&str]| music(session, media).map(|music| music.dest);
    assert_eq!(dest(&[AT], &[m]), Some(to("192.0.2.10:4000")));
    assert_eq!(dest(&[AT], &[m, "c=IN IP4 198.51.100.7"]), Some(to("198.51.100.7:4000")));
    assert_eq!(dest(&[], &[m, "c=IN IP4 198.51.100.7", "c=IN IP4 198.51.100.8"]), Some(to("198.51.100.7:4000")));
    assert_eq!(dest(&["c=IN IP4 0.0.0.0"], &[m]), Some(None));
    assert_eq!(dest(&[AT], &[m, "c=IN IP4 0.0.0.0"]), Some(None));
    assert_eq!(dest(&["c=IN IP6 ::"], &[m]), Some(None));
    assert_eq!(dest(&["c=IN IP6 2001:db8::7"], &[m]), Some(to("[2001:db8::7]:4000")));
    assert_eq!(dest(&["c=IN IP4 233.252.0.1/127"], &[m]), Some(to("233.252.0.1:4000")));
    assert_eq!(dest(&["c=IN IP4 233.252.0.1/127/3"], &[m]), Some(to("233.252.0.1:4000")));
    assert_eq!(dest(&["c=IN IP6 ff15::101/3"], &[m]), Some(to("[ff15::101]:4000")));
    for bad in [
        "c=IN IP4 phone.example.com",
        "c=IN IP4 2001:db8::7",
        "c=IN IP6 192.0.2.10",
        "c=IN IP4",
        "c=XX IP4 192.0.2.10",
        "c=IN IPX 192.0.2.10",
    ] {
        assert_eq!(dest(&[bad], &[m]), Some(None), "{bad}");
    }
    assert_eq!(dest(&[], &[m]), Some(None));
}

/// An offer of audio (PCMU, PCMA, telephone events) and video, as a
/// desk phone sends it.
const AV_OFFER: &[u8] = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
a=sendrecv\r\nm=video 51372 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 VP8/90000\r\n";

#[test]
fn music_answer_sends_one_stream_and_rejects_the_rest() {
    let music = music_choice(AV_OFFER).expect("PCMU is offered");
    assert_eq!(music, Music { codec: Codec::Pcmu, ptime_ms: 20, dest: to("192.0.2.10:49170") });
    let mut out = b"head".to_vec();
    let media = "203.0.113.5:30000".parse().expect("address");
    assert!(music_answer(&mut out, AV_OFFER, Origin { session: 7, version: 3 }, "198.51.100.1", media, &music));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "headv=0\r\no=sipark 7 3 IN IP4 198.51.100.1\r\ns=sipark\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendonly\r\n\
         m=video 0 RTP/AVP 96 97\r\n"
    );
    // The codec and packet time are the caller's, the order of m-lines the
    // offer's, malformed m-lines left out as in a hold answer.
    let offer = sdp(
        &[AT],
        &["m=video 5000 RTP/AVP 96", "m=broken", "m=audio 0 RTP/AVP 0", "m=audio 4000 RTP/AVP 8 0", "a=ptime:30"],
    );
    let music = Music { codec: Codec::Pcmu, ptime_ms: 40, dest: None };
    let mut out = Vec::new();
    assert!(music_answer(
        &mut out,
        &offer,
        Origin { session: 1, version: 2 },
        "h",
        "192.0.2.1:6000".parse().expect("a"),
        &music
    ));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "v=0\r\no=sipark 1 2 IN IP4 h\r\ns=sipark\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
         m=video 0 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n\
         m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:40\r\na=sendonly\r\n"
    );
}

#[test]
fn music_answer_names_the_media_socket() {
    let music = music_choice(AV_OFFER).expect("PCMU is offered");
    let answer = |host: &str, media: &str| {
        let mut out = Vec::new();
        let media = media.parse().expect("address");
        assert!(music_answer(&mut out, AV_OFFER, Origin { session: 5, version: 1 }, host, media, &music));
        String::from_utf8(out).expect("ascii")
    };
    let text = answer("[2001:db8::1]", "[2001:db8::5]:40000");
    assert!(
        text.starts_with("v=0\r\no=sipark 5 1 IN IP6 2001:db8::1\r\ns=sipark\r\nc=IN IP6 2001:db8::5\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nm=audio 40000 RTP/AVP 0\r\n"), "{text}");
    // The origin's family is the host's, the connection's the socket's.
    let text = answer("sip.example.com", "[2001:db8::5]:40000");
    assert!(text.contains("o=sipark 5 1 IN IP4 sip.example.com\r\ns=sipark\r\nc=IN IP6 2001:db8::5\r\n"), "{text}");
    let text = answer("[2001:db8::1]", "192.0.2.5:40000");
    assert!(text.contains("o=sipark 5 1 IN IP6 2001:db8::1\r\ns=sipark\r\nc=IN IP4 192.0.2.5\r\n"), "{text}");
    // A dual-stack socket's IPv4-mapped address is written as IPv4.
    let text = answer("192.0.2.1", "[::ffff:192.0.2.5]:40000");
    assert!(text.contains("\r\nc=IN IP4 192.0.2.5\r\n"), "{text}");
}

#[test]
fn music_answer_refuses_what_it_cannot_serve() {
    let pcmu = Music { codec: Codec::Pcmu, ptime_ms: 20, dest: None };
    let pcma = Music { codec: Codec::Pcma, ..pcmu };
    let media = "192.0.2.1:6000".parse().expect("address");
    let cases: [(Vec<u8>, Music); 8] = [
        (b"<xml/>".to_vec(), pcmu),
        (b"".to_vec(), pcmu),
        (sdp(&[AT], &[]), pcmu),
        (sdp(&[AT], &["m=audio 4000 RTP/AVP 9 18"]), pcmu),
        (sdp(&[AT], &["m=audio 4000 RTP/SAVP 0"]), pcmu),
        (sdp(&[AT], &["m=audio 4000 RTP/AVP 0", "a=sendonly"]), pcmu),
        (sdp(&["a=inactive"], &["m=audio 4000 RTP/AVP 0"]), pcmu),
        // A codec the chosen stream does not offer.
        (sdp(&[AT], &["m=audio 4000 RTP/AVP 0 101", "m=audio 5000 RTP/AVP 8"]), pcma),
    ];
    for (offer, music) in cases {
        let mut out = b"head".to_vec();
        assert!(
            !music_answer(&mut out, &offer, Origin::new(1), "h", media, &music),
            "{}",
            String::from_utf8_lossy(&offer)
        );
        assert_eq!(out, b"head", "{}", String::from_utf8_lossy(&offer));
    }
}

#[test]
fn music_offer_is_a_sendonly_g711_offer() {
    let mut out = b"head".to_vec();
    music_offer(&mut out, Origin { session: 5, version: 1 }, "198.51.100.1", "203.0.113.5:30000".parse().expect("a"));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "headv=0\r\no=sipark 5 1 IN IP4 198.51.100.1\r\ns=sipark\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
         m=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendonly\r\n"
    );
    let mut out = Vec::new();
    music_offer(
        &mut out,
        Origin { session: 5, version: 2 },
        "[2001:db8::1]",
        "[2001:db8::5]:30002".parse().expect("a"),
    );
    let text = String::from_utf8(out).expect("ascii");
    assert!(
        text.starts_with("v=0\r\no=sipark 5 2 IN IP6 2001:db8::1\r\ns=sipark\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nm=audio 30002 RTP/AVP 0 8\r\n"), "{text}");
}

#[test]
fn the_hold_basis_gives_the_same_music() {
    let mut many = sdp(&["c=IN IP4 192.0.2.10", "a=sendonly"], &[]);
    for i in 0..14 {
        let m = if i == 9 { "m=audio 7000 RTP/AVP 18 8" } else { "m=audio 0 RTP/AVP 0" };
        let lines = format!("{m}\r\na=rtpmap:0 PCMU/8000\r\na=ptime:30\r\nc=IN IP4 10.0.0.{i}\r\na=sendrecv\r\n");
        many.extend_from_slice(lines.as_bytes());
    }
    let offers: Vec<Vec<u8>> = vec![
        AV_OFFER.to_vec(),
        // A WebRTC-like offer: ICE, keys by DTLS, then a plain stream.
        b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 AB:CD\r\n\
          m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:efgh\r\n\
          a=candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host\r\na=fingerprint:sha-256 AB:CD\r\n\
          a=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\na=sendrecv\r\n\
          m=audio 6000 RTP/AVP 8 0\r\nc=IN IP4 192.0.2.10\r\na=ptime:30\r\na=candidate:2 1 udp 1 192.0.2.10 6000 typ host\r\n"
            .to_vec(),
        // Best-effort SRTP: keys on a plain RTP/AVP stream.
        sdp(
            &[AT],
            &[
                "m=audio 4000 RTP/AVP 0 8",
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
                "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
                "a=sendrecv",
            ],
        ),
        // A sendrecv that overrides the session's sendonly is kept.
        sdp(&["c=IN IP4 192.0.2.10", "a=sendonly", "a=ptime:40"], &["m=audio 4000 RTP/AVP 0", "a=sendrecv"]),
        // LF only; the media level overrides the session's address and
        // direction; redundant sendrecv lines go.
        b"v=0\no=a 1 1 IN IP4 h\ns=-\nc=IN IP4 192.0.2.10\na=sendrecv\nt=0 0\nm=audio 4000 RTP/AVP 8\n\
          c=IN IP4 198.51.100.9\na=ptime:25\na=sendrecv\na=inactive\na=ptime:60\n"
            .to_vec(),
        // The chosen stream is not the first: IPv6 with a suffix,
        // a recvonly offer, a session-level ptime.
        sdp(
            &["c=IN IP6 ::", "a=ptime:10"],
            &[
                "m=audio 0 RTP/AVP 0",
                "a=sendonly",
                "c=IN IP4 10.0.0.1",
                "m=audio 4002 RTP/AVP 0",
                "c=IN IP6 2001:db8::9/2",
                "a=recvonly",
                "m=video 4004 RTP/AVP 96",
                "c=IN IP4 10.0.0.2",
            ],
        ),
        // Old-style hold, LF only.
        b"v=0\no=a 1 1 IN IP4 h\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\na=ptime:20\n".to_vec(),
        // The first stream that could be chosen is inactive.
        sdp(&[AT], &["m=audio 4000 RTP/AVP 0", "a=inactive", "m=audio 5000 RTP/AVP 0"]),
        // Malformed and unserved lines before the chosen one.
        b"v=0\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nm=broken\r\na=ptime:30\r\nm=audio 4000 RTP/AVP 9\r\nm=audio 5000 RTP/AVP 0\r\n"
            .to_vec(),
        // More kept lines than the first pass of the basis notes.
        many,
        sdp(&[AT], &[]),
        b"not sdp".to_vec(),
    ];
    let origin = Origin { session: 3, version: 4 };
    let media: SocketAddr = "203.0.113.5:30000".parse().expect("address");
    let mut served = 0;
    for offer in &offers {
        let shown = String::from_utf8_lossy(offer);
        let basis = hold_basis(offer);
        let choice = music_choice(offer);
        assert_eq!(music_choice(&basis), choice, "{shown}");
        // Where nothing could be served, the answer is refused either way.
        let music = choice.unwrap_or(Music { codec: Codec::Pcmu, ptime_ms: 20, dest: None });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ok = music_answer(&mut a, offer, origin, "192.0.2.1", media, &music);
        assert_eq!(music_answer(&mut b, &basis, origin, "192.0.2.1", media, &music), ok, "{shown}");
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{shown}");
        served += usize::from(ok);
        // The lines kept for the music do not change a hold answer.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ok = hold_answer(&mut a, offer, origin, "192.0.2.1");
        assert_eq!(hold_answer(&mut b, &basis, origin, "192.0.2.1"), ok, "{shown}");
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{shown}");
        let basis = String::from_utf8_lossy(&basis);
        for gone in ["candidate", "ice-", "inline:", "sha-256", "rtcp-mux", "group:"] {
            assert!(!basis.contains(gone), "{gone} kept: {basis}");
        }
    }
    assert_eq!(served, 8, "offers that could be served");
    // What the basis keeps of a keyed stream: one marker.
    assert_eq!(
        String::from_utf8_lossy(&hold_basis(&offers[2])),
        "v=0\r\nc=IN IP4 192.0.2.10\r\nm=audio 4000 RTP/AVP 0 8\r\na=crypto:\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&hold_basis(&offers[4])),
        "v=0\r\nc=IN IP4 192.0.2.10\r\nm=audio 4000 RTP/AVP 8\r\nc=IN IP4 198.51.100.9\r\na=ptime:25\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&hold_basis(&offers[3])),
        "v=0\r\nc=IN IP4 192.0.2.10\r\na=sendonly\r\na=ptime:40\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"
    );
}
