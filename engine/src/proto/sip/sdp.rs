//! The little SDP (RFC 4566) sipark needs: a hold answer, and rewriting the
//! origin line so that each leg sees one origin whose version goes up with
//! every new offer or answer (RFC 3264 §8).
//!
//! Media never flows through sipark: connection lines are passed through
//! untouched, so the phones talk to each other directly once bridged.

use arrayvec::ArrayVec;

use super::find;

/// The codecs sipark's music on hold is sent in (RFC 3551 static payload
/// types): G.711 µ-law and A-law, 8,000 samples a second, one byte each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// PCMU, payload type 0.
    Pcmu,
    /// PCMA, payload type 8.
    Pcma,
}

impl Codec {
    /// Its static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of static payload type `pt`, if it is one of these.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Its encoding name in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// sipark's origin towards one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub session: u64,
    pub version: u64,
}

impl Origin {
    pub fn new(session: u64) -> Self {
        Origin { session: session & 0x7fff_ffff_ffff_ffff, version: 1 }
    }
}

fn lines(sdp: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = sdp;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (line, tail) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = tail;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    })
}

/// True if `body` looks like an SDP session description (starts `v=0`).
pub fn is_sdp(body: &[u8]) -> bool {
    body.trim_ascii_start().starts_with(b"v=0")
}

/// Writes `o=sipark <session> <version> IN <IP4|IP6> <host>`.
fn write_origin(out: &mut Vec<u8>, origin: Origin, host: &str) {
    let family = if host.contains(':') { "IP6" } else { "IP4" };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    out.extend_from_slice(b"o=sipark ");
    super::write::push_dec(out, origin.session);
    out.push(b' ');
    super::write::push_dec(out, origin.version);
    out.extend_from_slice(b" IN ");
    out.extend_from_slice(family.as_bytes());
    out.push(b' ');
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Copies `sdp` into `out` with its `o=` line replaced by sipark's origin.
/// Returns false (and writes nothing) if `sdp` has no `v=` line.
pub fn rewrite_origin(out: &mut Vec<u8>, sdp: &[u8], origin: Origin, host: &str) -> bool {
    // The usual SDP: copied in two pieces around its origin line.
    if let Some((o_start, o_end)) = lone_origin(sdp) {
        out.extend_from_slice(&sdp[..o_start]);
        write_origin(out, origin, host);
        out.extend_from_slice(&sdp[o_end..]);
        return true;
    }
    if !is_sdp(sdp) {
        return false;
    }
    let mut wrote_origin = false;
    // Where an SDP without an `o=` line gets one: after its `v=` line.
    let mut after_version = None;
    for line in lines(sdp) {
        if line.starts_with(b"o=") {
            write_origin(out, origin, host);
            wrote_origin = true;
        } else {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            if line.starts_with(b"v=") && after_version.is_none() {
                after_version = Some(out.len());
            }
        }
    }
    if let (false, Some(at)) = (wrote_origin, after_version) {
        let mut line = Vec::with_capacity(64);
        write_origin(&mut line, origin, host);
        out.splice(at..at, line);
        wrote_origin = true;
    }
    wrote_origin
}

/// Where the one `o=` line of `sdp` is (its start, and the start of the
/// line after it), when the line-by-line rewrite would copy every other
/// byte of `sdp` as it is: it starts `v=0`, every line ends in CRLF, no
/// line is empty, and one line is an origin. `None` otherwise.
fn lone_origin(sdp: &[u8]) -> Option<(usize, usize)> {
    if !sdp.starts_with(b"v=0") {
        return None;
    }
    let line_end = find::Byte::new(b'\n');
    let (mut start, mut origin) = (0, None);
    while start < sdp.len() {
        let end = start + line_end.find(&sdp[start..])?;
        if end < start + 2 || sdp[end - 1] != b'\r' {
            return None;
        }
        if sdp[start..].starts_with(b"o=") {
            if origin.is_some() {
                return None;
            }
            origin = Some((start, end + 1));
        }
        start = end + 1;
    }
    origin
}

/// What [`hold_answer`] reads of `sdp`: `v=0`, the m-lines and the
/// `a=rtpmap`/`a=fmtp` lines after the first. A parked leg keeps this, not
/// its whole SDP (ICE candidates, crypto and the like go): every hold
/// answer or hold offer made for it later is the same either way. Anything
/// that is not SDP is kept as it is.
pub fn hold_basis(sdp: &[u8]) -> Box<[u8]> {
    if !is_sdp(sdp) {
        return sdp.into();
    }
    let keep = |m_seen: bool, line: &[u8]| {
        line.starts_with(b"m=") || (m_seen && (line.starts_with(b"a=rtpmap:") || line.starts_with(b"a=fmtp:")))
    };
    // One pass notes the lines kept (a second finds them again if there
    // are more than a usual SDP has), then they are copied into a buffer
    // of their exact size.
    let (mut len, mut m_seen, mut all_noted) = (5, false, true);
    let mut kept: ArrayVec<&[u8], 24> = ArrayVec::new();
    for line in lines(sdp) {
        m_seen |= line.starts_with(b"m=");
        if keep(m_seen, line) {
            len += line.len() + 2;
            all_noted &= kept.try_push(line).is_ok();
        }
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"v=0\r\n");
    let mut copy = |line: &[u8]| {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    };
    if all_noted {
        kept.iter().for_each(|line| copy(line));
    } else {
        m_seen = false;
        for line in lines(sdp) {
            m_seen |= line.starts_with(b"m=");
            if keep(m_seen, line) {
                copy(line);
            }
        }
    }
    out.into()
}

/// Writes a hold answer to `offer` into `out`: one m-line per offered
/// m-line, same media and transport and formats, each `a=inactive`; ports
/// of rejected streams stay 0. Returns false if `offer` is not SDP or has
/// no m-line.
pub fn hold_answer(out: &mut Vec<u8>, offer: &[u8], origin: Origin, host: &str) -> bool {
    if !is_sdp(offer) {
        return false;
    }
    let start = out.len();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let family = if bare.contains(':') { "IP6" } else { "IP4" };
    out.extend_from_slice(b"v=0\r\n");
    write_origin(out, origin, host);
    write_session(out, family, bare);
    let mut m_lines = 0;
    for line in lines(offer) {
        if let Some(m) = line.strip_prefix(b"m=") {
            let mut parts = m.split(|&b| b == b' ').filter(|p| !p.is_empty());
            let (Some(media), Some(port), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let rejected = port == b"0";
            out.extend_from_slice(b"m=");
            out.extend_from_slice(media);
            out.extend_from_slice(if rejected { b" 0 " } else { b" 9 " });
            out.extend_from_slice(proto);
            for fmt in parts {
                out.push(b' ');
                out.extend_from_slice(fmt);
            }
            out.extend_from_slice(b"\r\n");
            if !rejected {
                out.extend_from_slice(b"a=inactive\r\n");
            }
            m_lines += 1;
        } else if m_lines > 0 && (line.starts_with(b"a=rtpmap:") || line.starts_with(b"a=fmtp:")) {
            // Keep the format descriptions of the m-section just written.
            let last = out.len();
            let inactive = b"a=inactive\r\n";
            if out.ends_with(inactive) {
                out.truncate(last - inactive.len());
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(inactive);
            } else {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if m_lines == 0 {
        out.truncate(start);
        return false;
    }
    true
}

/// Writes sipark's own offer for a call it holds without media (a park
/// INVITE that came without SDP): one audio stream, `a=inactive`, with the
/// common narrow-band formats so that any phone can answer it.
pub fn hold_offer(out: &mut Vec<u8>, origin: Origin, host: &str) {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let family = if bare.contains(':') { "IP6" } else { "IP4" };
    out.extend_from_slice(b"v=0\r\n");
    write_origin(out, origin, host);
    write_session(out, family, bare);
    out.extend_from_slice(
        b"m=audio 9 RTP/AVP 0 8 9 18 101\r\n\
          a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n\
          a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=inactive\r\n",
    );
}

/// sipark's session, connection (no media: the host's own address) and
/// time lines, after its origin.
fn write_session(out: &mut Vec<u8>, family: &str, bare_host: &str) {
    out.extend_from_slice(b"s=sipark\r\nc=IN ");
    out.extend_from_slice(family.as_bytes());
    out.push(b' ');
    out.extend_from_slice(bare_host.as_bytes());
    out.extend_from_slice(b"\r\nt=0 0\r\n");
}

#[cfg(test)]
mod tests {
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
            assert_eq!(
                String::from_utf8_lossy(&hold_basis(&offer)),
                String::from_utf8_lossy(&want),
                "{m_lines} m-lines"
            );
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
}
