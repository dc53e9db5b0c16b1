//! Music on hold heard by a real phone: baresip (see `baresip`), parked by a blind transfer,
//! receives sipark's RTP; the test captures the datagrams on `lo` (see `sniff`) and checks
//! them byte by byte, then retrieves the call from a second baresip and checks that the music
//! stops at the parked phone's 200 to sipark's re-INVITE and that the two phones then talk
//! directly.
//!
//! 1. sipark runs with `--moh tune`. A Rust endpoint, the parker (102), calls baresip 101 (which
//!    answers by itself), then REFERs it to `<sip:*68103@acme.example>` with
//!    `Referred-By: <sip:102@acme.example>`; baresip follows the REFER (its `menu` module dials
//!    the Refer-To through its outbound proxy, sipark), reports `SIP/2.0 200 OK` in a NOTIFY,
//!    and the parker hangs up its leg: a blind transfer. baresip 1.0.0 does not copy
//!    Referred-By into the INVITE it sends (nor can it be told to add a header to it), so
//!    sipark parks on the extension the Request-URI names, 103, with the parker unknown.
//! 2. sipark's 200 answers `a=sendonly` with the codec baresip offered first (101 offers PCMA
//!    before PCMU, so that a sipark that always chose PCMU would fail), its `c=`/`m=` naming one
//!    of the media sockets its log lists; for 2 s from the first packet the test checks 50 ± 2
//!    packets a second, the payload type, one SSRC, the marker on the first packet, sequence
//!    numbers + 1 and timestamps + 160, 160-byte payloads, and G.711 samples (decoded here, not
//!    by sipark's code) well above silence. A worker that falls behind skips packets rather
//!    than bursting them: a timestamp that jumps further is accepted only after a stall that
//!    long, the jumps must add up to sipark's `moh_packets_skipped`, and the rate counts the
//!    skipped packets (at most 10 in the window); `moh_packets` must equal the packets
//!    captured.
//! 3. baresip 104 dials `*88103`; sipark re-INVITEs 101 with 104's offer. The last packet of
//!    music must come no later than 100 ms after 101's 200 to that re-INVITE (and no earlier
//!    than 100 ms before the re-INVITE: the music played until the retrieve); within 2 s, RTP
//!    must flow from 104's port to 101's and back, and none of sipark's to 104.
//! 4. 104 hangs up; sipark sends 101 a BYE; every process exits.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::baresip::{Baresip, Phone};
use crate::harness::{Ctx, DOMAIN, Engine, Variant, free_tcp, metric_sum, scrape};
use crate::sip::{self, Agent, Msg, Request, uri_of};
use crate::sniff::{Seen, Sniffer};

const SEC: Duration = Duration::from_secs(1);
/// The test's network: 127.0.85.0/24 (plus the variants' offsets).
const NET: u8 = 85;
/// How long the music is measured for.
const WINDOW: Duration = Duration::from_secs(2);
/// Packets a second of 20 ms G.711, and the tolerance.
const RATE: f64 = 50.0;
const RATE_TOLERANCE: f64 = 2.0;
/// Packets sipark may skip in the [`WINDOW`] (the worker stalled; see [`check_music`]).
const MAX_SKIPPED: u64 = 10;
/// G.711 at 20 ms: samples (and bytes) a packet.
const SAMPLES: usize = 160;
const PTIME_MS: f64 = 20.0;
/// The music must stop within this of the parked phone's 200 to the re-INVITE.
const STOP_WITHIN: Duration = Duration::from_millis(100);
/// RMS (of 16-bit samples) the music must exceed: silence decodes to 0 (µ-law) or ±8 (A-law);
/// sipark's tune peaks at -12 dBFS.
const MIN_RMS: f64 = 300.0;
/// Packets each way the two phones must exchange once bridged, of the 100 in 2 s.
const MIN_DIRECT: usize = 25;

// ---------------------------------------------------------------------------------------------
// SDP, RTP and G.711, read independently of sipark's code
// ---------------------------------------------------------------------------------------------

/// The first audio stream of an SDP body.
#[derive(Debug)]
struct Audio {
    /// `c=` of the m-section, else of the session.
    ip: Ipv4Addr,
    port: u16,
    /// The payload types, in the m-line's order.
    pts: Vec<u8>,
    /// The `a=` lines of the m-section (without `a=`).
    attrs: Vec<String>,
}

impl Audio {
    fn of(m: &Msg) -> Audio {
        let body = m.body();
        let fail = |what: &str| -> ! { panic!("{what} in the SDP of:\n{}", m.raw) };
        let conn = |l: &str| l.strip_prefix("c=IN IP4 ").map(|a| a.trim().parse::<Ipv4Addr>());
        let mut session_ip = None;
        let mut lines = body.lines().map(str::trim_end);
        for l in lines.by_ref() {
            if let Some(ip) = conn(l) {
                session_ip = Some(ip.unwrap_or_else(|_| fail("a bad c= line")));
            }
            if let Some(m_line) = l.strip_prefix("m=audio ") {
                let f: Vec<&str> = m_line.split_whitespace().collect();
                if f.len() < 3 || f[1] != "RTP/AVP" {
                    fail("an audio m-line that is not RTP/AVP");
                }
                let port = f[0].parse().unwrap_or_else(|_| fail("a bad m= port"));
                let pts = f[2..].iter().map(|p| p.parse().unwrap_or_else(|_| fail("a bad payload type"))).collect();
                let (mut ip, mut attrs) = (session_ip, Vec::new());
                for l in lines.by_ref() {
                    if l.starts_with("m=") {
                        break;
                    }
                    if let Some(c) = conn(l) {
                        ip = Some(c.unwrap_or_else(|_| fail("a bad c= line")));
                    }
                    if let Some(a) = l.strip_prefix("a=") {
                        attrs.push(a.to_string());
                    }
                }
                return Audio { ip: ip.unwrap_or_else(|| fail("no c= line")), port, pts, attrs };
            }
        }
        fail("no m=audio line")
    }

    fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.port)
    }

    fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a == attr)
    }
}

/// An RTP packet (RFC 3550 §5.1).
#[derive(Debug)]
struct Rtp<'a> {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &'a [u8],
}

fn rtp(b: &[u8]) -> Result<Rtp<'_>, String> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return Err(format!("not RTP version 2: {:02x?}", &b[..b.len().min(12)]));
    }
    let csrc = usize::from(b[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(start + 2..start + 4).ok_or("truncated header extension")?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.saturating_sub(usize::from(b[b.len() - 1]));
    }
    let payload = b.get(start..end).ok_or("truncated packet")?;
    Ok(Rtp {
        marker: b[1] & 0x80 != 0,
        pt: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// G.711 µ-law to linear (ITU-T G.711, as in its reference `ulaw2linear`).
fn ulaw(b: u8) -> i16 {
    let u = !b;
    let exp = (u >> 4) & 7;
    let mag = (((i32::from(u & 0x0f) << 3) + 0x84) << exp) - 0x84;
    (if u & 0x80 != 0 { -mag } else { mag }) as i16
}

/// G.711 A-law to linear (ITU-T G.711, as in its reference `alaw2linear`).
fn alaw(b: u8) -> i16 {
    let a = b ^ 0x55;
    let exp = (a >> 4) & 7;
    let mant = i32::from(a & 0x0f) << 4;
    let mag = if exp == 0 { mant + 8 } else { (mant + 0x108) << (exp - 1) };
    (if a & 0x80 != 0 { mag } else { -mag }) as i16
}

/// The decoder of payload type `pt` (0: PCMU, 8: PCMA).
fn decoder(pt: u8) -> fn(u8) -> i16 {
    match pt {
        0 => ulaw,
        8 => alaw,
        other => panic!("payload type {other} is not G.711"),
    }
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn ms_between(from: Duration, to: Duration) -> f64 {
    (to.as_secs_f64() - from.as_secs_f64()) * 1000.0
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// What the music looked like.
struct Figures {
    /// Packets received in the first [`WINDOW`], a second.
    rate: f64,
    /// The same with the packets sipark skipped in the window counted: its clock.
    nominal: f64,
    rms: f64,
    /// Packets of 20 ms that sipark skipped (see [`check_music`]), in the whole stream.
    skipped: u64,
}

/// Checks a stream of music (`music`, every packet sipark sent to the phone, in order): one
/// SSRC, payload type `pt`, marker on the first packet, sequence + 1 and timestamp + 160 per
/// packet, 160-byte payloads; in the first [`WINDOW`]: the rate and samples above silence.
///
/// A worker that falls behind by more than a packet time skips the packets whose time has
/// passed rather than sending a burst: the next packet's sequence number is + 1 and its
/// timestamp + 160 for each skipped packet too, and its audio is that much further on. Such a
/// jump is accepted only when that much time passed between the two packets; the caller
/// checks the total against sipark's count of skipped packets, so none goes unexplained. The
/// rate then counts the skipped packets of the window, as many as [`MAX_SKIPPED`]: a stall
/// of the test machine is not sipark's pacing, but a window mostly stalled measures nothing.
fn check_music(music: &[Seen], pt: u8) -> Figures {
    let first = music.first().expect("no music to check");
    let parsed: Vec<Rtp<'_>> = music
        .iter()
        .enumerate()
        .map(|(i, s)| rtp(&s.payload).unwrap_or_else(|e| panic!("music packet {i} from {}: {e}", s.src)))
        .collect();
    let head = &parsed[0];
    assert!(head.marker, "the first packet of music must have the marker bit: {head:?}");
    // Packets skipped just before each packet.
    let mut skips = vec![0u64; music.len()];
    for (i, (p, s)) in parsed.iter().zip(music).enumerate() {
        let at = || format!("music packet {i} ({:.1} ms after the first): {p:?}", ms_between(first.at, s.at));
        assert_eq!(p.pt, pt, "payload type must be {pt}, the codec baresip offered first; {}", at());
        assert_eq!(p.ssrc, head.ssrc, "one SSRC; {}", at());
        assert_eq!(p.payload.len(), SAMPLES, "160 bytes of G.711 a packet; {}", at());
        if i == 0 {
            continue;
        }
        let prev = &parsed[i - 1];
        assert_eq!(p.seq, prev.seq.wrapping_add(1), "sequence number + 1; {}", at());
        let step = p.ts.wrapping_sub(prev.ts);
        if step != SAMPLES as u32 {
            let frames = u64::from(step / SAMPLES as u32);
            let gap = ms_between(music[i - 1].at, s.at);
            // The packet is at most a packet time late, and the one before at most that early.
            let explained =
                step % SAMPLES as u32 == 0 && frames > 1 && gap + 2.0 * PTIME_MS >= frames as f64 * PTIME_MS;
            assert!(
                explained,
                "timestamp + 160 (or a multiple of it, after a stall that long): + {step} after {gap:.1} ms; {}",
                at()
            );
            skips[i] = frames - 1;
        }
    }
    let in_window = music.iter().take_while(|s| s.at < first.at + WINDOW).count();
    let skipped_in_window: u64 = skips[..in_window].iter().sum();
    assert!(
        skipped_in_window <= MAX_SKIPPED,
        "sipark skipped {skipped_in_window} packets of the first {WINDOW:?} (at most {MAX_SKIPPED}): stalled"
    );
    let rate = in_window as f64 / WINDOW.as_secs_f64();
    let nominal = (in_window as u64 + skipped_in_window) as f64 / WINDOW.as_secs_f64();
    assert!(
        (nominal - RATE).abs() <= RATE_TOLERANCE,
        "{in_window} packets of music in the first {WINDOW:?} ({skipped_in_window} skipped): {nominal} a second, \
         expected {RATE} ± {RATE_TOLERANCE}"
    );
    let decode = decoder(pt);
    let samples: Vec<i16> = parsed[..in_window].iter().flat_map(|p| p.payload.iter().map(|&b| decode(b))).collect();
    let level = rms(&samples);
    assert!(level > MIN_RMS, "the music is silence: RMS {level:.1} over the first {WINDOW:?}, expected > {MIN_RMS}");
    Figures { rate, nominal, rms: level, skipped: skips.iter().sum() }
}

/// sipark's media sockets, from its log line `music on hold: one media socket per worker`.
fn media_sockets(engine: &Engine) -> Vec<SocketAddr> {
    let log = engine.log();
    let line = log
        .lines()
        .find(|l| l.contains("music on hold: one media socket per worker"))
        .unwrap_or_else(|| panic!("sipark's log does not list its media sockets:\n{log}"));
    let at = line.find("media=").unwrap_or_else(|| panic!("no media= in: {line}"));
    let addrs: Vec<SocketAddr> = line[at + "media=".len()..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .map_while(|w| w.parse().ok())
        .collect();
    assert!(!addrs.is_empty(), "no media address in: {line}");
    addrs
}

/// The parker's dialog with baresip 101, from its INVITE and 101's 200.
struct Leg {
    invite: Request,
    /// 101's Contact.
    target: String,
    /// To, with 101's tag.
    to: String,
}

impl Leg {
    fn of(invite: &Request, ok: &Msg) -> Leg {
        let contact = ok.header("Contact").unwrap_or_else(|| panic!("no Contact in 101's 200:\n{}", ok.raw));
        let to = ok.header("To").unwrap_or_default().to_string();
        assert!(ok.tag_of("To").is_some(), "no To tag in 101's 200:\n{}", ok.raw);
        Leg { invite: invite.clone(), target: uri_of(contact).to_string(), to }
    }

    fn request(&self, method: &str, cseq: u32) -> Request {
        let mut r = self.invite.clone();
        r.method = method.to_string();
        r.uri = self.target.clone();
        r.to = self.to.clone();
        r.cseq = cseq;
        r.branch = format!("z9hG4bKe2e{}x{}", sip::unique(), std::process::id());
        r.extra.clear();
        r.body.clear();
        r
    }
}

/// An SDP offer of PCMU from `media`.
fn pcmu_offer(media: SocketAddr) -> String {
    let ip = media.ip();
    format!(
        "v=0\r\no=parker 1 1 IN IP4 {ip}\r\ns=parker\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        media.port()
    )
}

/// Is `s` a SIP message from `from` to `to` satisfying `pred`?
fn sip_between(s: &Seen, from: SocketAddr, to: SocketAddr, pred: impl Fn(&Msg) -> bool) -> bool {
    s.from(from) && s.to(to) && pred(&s.sip())
}

/// The scenario of the module's documentation, steps 1 to 4.
pub fn moh_baresip_hears_music_until_retrieved(v: Variant) {
    let ctx = Ctx::new("moh_baresip_hears_music_until_retrieved", NET, v);
    // The decoders against G.711's fixed points before they judge anything.
    assert_eq!((ulaw(0xff), ulaw(0x7f), ulaw(0x80), ulaw(0x00)), (0, 0, 32124, -32124));
    assert_eq!((alaw(0xd5), alaw(0x55), alaw(0xaa), alaw(0x2a)), (8, -8, 32256, -32256));
    let sniffer = Sniffer::start(&ctx);
    let metrics = free_tcp(&ctx, 1).to_string();
    let mut engine = Engine::start(&ctx, &["--moh", "tune", "--metrics", &metrics]);
    let media = media_sockets(&engine);
    // baresip binds RTP on the wildcard address: each phone gets ports of its own, per network.
    let base = 20000 + 40 * u16::from(ctx.ip(0).octets()[2]);
    let phone = |ext, host, rtp_ports, params, commands, tone_hz| Phone {
        ext,
        host,
        rtp_ports,
        outbound: engine.addr,
        params,
        commands,
        tone_hz,
    };
    let mut p101 =
        Baresip::start(&ctx, "phone101", &phone("101", 2, (base, base + 19), &["audio_codecs=PCMA,PCMU"], &[], 440));

    // 1. The blind transfer: 102 calls 101, then REFERs it to *68103.
    let parker = Agent::phone(ctx.udp(3));
    let parker_media = ctx.udp(3);
    let invite =
        Request::new("INVITE", &format!("sip:101@{}", p101.sip), parker.addr, "102", &format!("<sip:101@{DOMAIN}>"))
            .header(&format!("Contact: <sip:102@{}>", parker.addr))
            .sdp(&pcmu_offer(parker_media.addr));
    let ok = parker.transact(p101.sip, &invite);
    assert_eq!(ok.status(), Some(200), "baresip 101 must answer the parker's call:\n{}", ok.raw);
    let leg = Leg::of(&invite, &ok);
    parker.send(p101.sip, &leg.request("ACK", 1).render());
    let refer = leg
        .request("REFER", 2)
        .header(&format!("Contact: <sip:102@{}>", parker.addr))
        .header(&format!("Refer-To: <sip:*68103@{DOMAIN}>"))
        .header(&format!("Referred-By: <sip:102@{DOMAIN}>"));
    let accepted = parker.transact(p101.sip, &refer);
    assert_eq!(accepted.status(), Some(202), "baresip 101 must accept the REFER:\n{}", accepted.raw);
    parker.expect("NOTIFY with `SIP/2.0 200` (the transfer succeeded)", 15 * SEC, |m| {
        m.method() == Some("NOTIFY") && m.body().starts_with("SIP/2.0 200")
    });
    let bye = parker.transact(p101.sip, &leg.request("BYE", 3));
    assert_eq!(bye.status(), Some(200), "baresip 101 must answer the parker's BYE:\n{}", bye.raw);

    // 2. The park, as it went over the wire.
    let park = sniffer
        .wait_for("INVITE for *68103 from baresip 101 to sipark", 5 * SEC, |s| {
            sip_between(s, p101.sip, engine.addr, |m| m.request_uri() == Some(&*format!("sip:*68103@{DOMAIN}")))
        })
        .sip();
    let call_id = park.header("Call-ID").unwrap_or_else(|| panic!("no Call-ID:\n{}", park.raw)).to_string();
    let in_park = |m: &Msg| m.header("Call-ID") == Some(call_id.as_str());
    let offer = Audio::of(&park);
    let pt =
        *offer.pts.iter().find(|&&p| p == 0 || p == 8).unwrap_or_else(|| panic!("no G.711 offered:\n{}", park.raw));
    assert_eq!(pt, 8, "baresip 101 is configured to offer PCMA first:\n{}", park.raw);
    let answer = sniffer
        .wait_for("sipark's 200 to the park", 5 * SEC, |s| {
            sip_between(s, engine.addr, p101.sip, |m| {
                in_park(m) && m.status() == Some(200) && m.cseq_method() == Some("INVITE")
            })
        })
        .sip();
    let music_sdp = Audio::of(&answer);
    assert!(music_sdp.has("sendonly"), "sipark's 200 must answer a=sendonly:\n{}", answer.raw);
    assert_eq!(music_sdp.pts, [pt], "sipark must answer the codec offered first:\n{}", answer.raw);
    let moh = SocketAddr::V4(music_sdp.addr());
    assert!(media.contains(&moh), "the answer's c=/m= {moh} is not one of sipark's media sockets {media:?}");
    let rtp_port = offer.port;
    let is_music = |s: &Seen| s.from(moh) && s.dst.port() == rtp_port;

    // The music: 2 s of it, from the first packet.
    let first = sniffer.wait_for("music from sipark", 5 * SEC, is_music);
    assert_eq!(first.dst, offer.addr(), "the music must start towards the address of 101's offer");
    sniffer.settle_past(first.at + WINDOW);
    let music: Vec<Seen> = sniffer.all().into_iter().filter(is_music).collect();
    let figures = check_music(&music, pt);

    // 3. The retrieve: 104 dials *88103, sipark re-INVITEs 101 with 104's offer.
    let dial = format!("/dial sip:*88103@{DOMAIN}");
    let mut p104 = Baresip::start(&ctx, "phone104", &phone("104", 4, (base + 20, base + 39), &[], &[dial], 1000));
    let retrieve = sniffer
        .wait_for("INVITE for *88103 from baresip 104", 5 * SEC, |s| {
            sip_between(s, p104.sip, engine.addr, |m| m.request_uri() == Some(&*format!("sip:*88103@{DOMAIN}")))
        })
        .sip();
    let offer104 = Audio::of(&retrieve);
    let reinvite = sniffer.wait_for("sipark's re-INVITE to 101", 10 * SEC, |s| {
        sip_between(s, engine.addr, p101.sip, |m| in_park(m) && m.method() == Some("INVITE"))
    });
    assert_eq!(
        Audio::of(&reinvite.sip()).addr(),
        offer104.addr(),
        "the re-INVITE must offer 104's media:\n{}",
        reinvite.sip().raw
    );
    let ok101 = sniffer.wait_for("101's 200 to the re-INVITE", 10 * SEC, |s| {
        sip_between(s, p101.sip, engine.addr, |m| {
            in_park(m) && m.status() == Some(200) && m.cseq_method() == Some("INVITE")
        })
    });
    sniffer.settle_past(ok101.at + WINDOW);
    let seen = sniffer.all();
    let music: Vec<Seen> = seen.iter().filter(|s| is_music(s)).cloned().collect();
    let whole = check_music(&music, pt);
    // Every packet goes to the offer's address, or to where 101's own RTP to sipark came from
    // (sipark latches to it).
    let latched: Vec<SocketAddrV4> =
        seen.iter().filter(|s| s.src.port() == rtp_port && s.to(moh)).map(|s| s.src).collect();
    if let Some(s) = music.iter().find(|s| s.dst != offer.addr() && !latched.contains(&s.dst)) {
        panic!("music sent to {}: neither 101's offer {} nor a source of 101's RTP {latched:?}", s.dst, offer.addr());
    }
    let last = music.last().expect("music");
    let stop_ms = ms_between(ok101.at, last.at);
    assert!(
        last.at <= ok101.at + STOP_WITHIN,
        "music went on {stop_ms:.1} ms after 101's 200 to the re-INVITE (at most {STOP_WITHIN:?})"
    );
    assert!(
        last.at + STOP_WITHIN >= reinvite.at,
        "music stopped {:.1} ms before the re-INVITE: it must play until the retrieve",
        ms_between(last.at, reinvite.at)
    );
    // sipark's own count: every packet it sent was captured, every skip is accounted for.
    let text = scrape(metrics.parse().expect("metrics address"));
    assert_eq!(metric_sum(&text, "sipark_moh_streams_started_total"), 1, "one stream of music:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_moh_streams"), 0, "no music once retrieved:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_moh_packets_total"), music.len() as u64, "packets sent:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_moh_packets_skipped_total"), whole.skipped, "packets skipped:\n{text}");
    // Each phone sends to the address the other's SDP names, from its own RTP port (baresip's
    // RTP sockets are bound to the wildcard address, so the source address is 127.0.0.1).
    let answer101 = Audio::of(&ok101.sip());
    let after = |s: &&Seen| s.at > ok101.at;
    let to101 =
        seen.iter().filter(after).filter(|s| s.src.port() == offer104.port && s.dst == answer101.addr()).count();
    let to104 =
        seen.iter().filter(after).filter(|s| s.src.port() == answer101.port && s.dst == offer104.addr()).count();
    assert!(
        to101 >= MIN_DIRECT && to104 >= MIN_DIRECT,
        "the phones must talk directly once bridged: {to101} packets 104 → 101 ({}) and {to104} 101 → 104 ({}) \
         within {WINDOW:?} of the 200 (at least {MIN_DIRECT} each)",
        answer101.addr(),
        offer104.addr()
    );
    let stray: Vec<&Seen> =
        seen.iter().filter(|s| media.iter().any(|m| s.from(*m)) && s.dst.port() == offer104.port).collect();
    assert!(stray.is_empty(), "sipark sent {} packets from its media sockets to 104", stray.len());

    // 4. 104 hangs up; sipark hangs up 101.
    assert!(p104.stop(5 * SEC), "baresip 104 did not exit within 5 s of SIGTERM");
    sniffer.wait_for("sipark's BYE to 101", 5 * SEC, |s| {
        sip_between(s, engine.addr, p101.sip, |m| in_park(m) && m.method() == Some("BYE"))
    });
    assert!(p101.stop(5 * SEC), "baresip 101 did not exit within 5 s of SIGTERM");
    engine.terminate_cleanly(10 * SEC);

    let dsts: Vec<SocketAddrV4> = music.iter().fold(Vec::new(), |mut v, s| {
        if !v.contains(&s.dst) {
            v.push(s.dst);
        }
        v
    });
    eprintln!(
        "{}: {} packets of music from {moh} to {dsts:?}: {:.1} packets/s received over the first {WINDOW:?} ({:.1} with those skipped), RMS {:.0}; \
         last one {stop_ms:+.1} ms from 101's 200 to the re-INVITE ({:+.1} ms from the re-INVITE); \
         {} skipped; then {to101} packets 104 → 101 and {to104} 101 → 104 in {WINDOW:?}",
        ctx.name,
        music.len(),
        figures.rate,
        figures.nominal,
        figures.rms,
        ms_between(reinvite.at, last.at),
        whole.skipped,
    );
}
