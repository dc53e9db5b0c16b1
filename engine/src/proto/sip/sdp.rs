//! The little SDP (RFC 4566) sipark needs: a hold answer, the answer and
//! offer for music on hold, and rewriting the origin line so that each leg
//! sees one origin whose version goes up with every new offer or answer
//! (RFC 3264 §8).
//!
//! Bridged media never flows through sipark: connection lines are passed
//! through untouched, so the phones talk to each other directly once
//! bridged. The one stream sipark sends itself is music on hold, G.711 to a
//! parked phone from its own media socket ([`music_choice`],
//! [`music_answer`], [`music_offer`]).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// What [`hold_answer`], [`music_choice`] and [`music_answer`] read of
/// `sdp`. A parked leg keeps this, not its whole SDP (ICE candidates, the
/// keys themselves and the like go): every hold answer, hold offer, music
/// choice and music answer made for it later is the same either way.
///
/// Kept, in their order: `v=0`; the m-lines; the `a=rtpmap`/`a=fmtp`
/// lines after the first; and what [`music_choice`] reads, at session
/// level and in the m-section it would choose: the first `c=` line, the
/// first `a=ptime`, the first direction attribute (unless it is a
/// `a=sendrecv` that changes nothing) and, in that m-section, one marker
/// for its keys: its first `a=crypto:` or `a=fingerprint:` line cut after
/// the colon. Anything that is not SDP is kept as it is.
pub fn hold_basis(sdp: &[u8]) -> Box<[u8]> {
    if !is_sdp(sdp) {
        return sdp.into();
    }
    // One pass notes the lines kept (a second finds them again if there
    // are more than a usual SDP has), then they are copied into a buffer
    // of their exact size.
    let mut len = 5;
    let mut all_noted = true;
    let mut kept: ArrayVec<&[u8], 24> = ArrayVec::new();
    let mut basis = Basis::default();
    for line in lines(sdp) {
        if let Some(line) = basis.keep(line) {
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
        let mut basis = Basis::default();
        lines(sdp).filter_map(|line| basis.keep(line)).for_each(copy);
    }
    out.into()
}

/// Which lines of an SDP [`hold_basis`] keeps, read one at a time.
#[derive(Default)]
struct Basis<'a> {
    /// An m-line has been read.
    m_seen: bool,
    music: MusicScan<'a>,
}

impl<'a> Basis<'a> {
    /// What is kept of `line`: all of it, a part of it, or nothing.
    fn keep(&mut self, line: &'a [u8]) -> Option<&'a [u8]> {
        let for_music = self.music.read(line);
        self.m_seen |= line.starts_with(b"m=");
        let for_hold = line.starts_with(b"m=")
            || (self.m_seen && (line.starts_with(b"a=rtpmap:") || line.starts_with(b"a=fmtp:")));
        if for_hold { Some(line) } else { for_music }
    }
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

/// What an offer lets sipark stream as music on hold: the codec and packet
/// time it sends in, and where to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Music {
    /// PCMU or PCMA, whichever the chosen m-line offers first.
    pub codec: Codec,
    /// Milliseconds of audio a packet: 10 to 60, a multiple of 10.
    pub ptime_ms: u16,
    /// The offered connection address and port; `None` where the address
    /// is not an IP literal, or is `0.0.0.0` or `::` (hold in the style of
    /// RFC 2543, RFC 3264 §8.4): the caller latches to where the phone's
    /// RTP comes from, or sends nothing.
    pub dest: Option<SocketAddr>,
}

/// What sipark may stream to the sender of `offer`.
///
/// The first m-line that is `m=audio`, has a port, is plain `RTP/AVP` and
/// offers payload type 0 or 8 is chosen (the codec: whichever of the two
/// comes first in its format list); `None` if there is none, if `offer` is
/// not SDP, or if the chosen stream cannot carry music:
/// * its direction (media level, else session level, else `sendrecv`, the
///   first direction attribute of a level counting) is `sendonly` or
///   `inactive`: the answer could only be `recvonly` or `inactive`
///   (RFC 3264 §6.1);
/// * it carries `a=crypto` or `a=fingerprint`: SRTP is not served.
///
/// Only the first such m-line is looked at: a later one is not taken in its
/// place.
///
/// `ptime_ms` comes from the first `a=ptime` of the m-section, else of the
/// session: the nearest multiple of 10 ms (halfway rounds up: 25 gives 30;
/// a decimal point is allowed), held within 10..=60; 20 where there is
/// none or it is not a number. `dest` comes from the first `c=` of the
/// m-section, else of the session, with the m-line's port (a `/ttl` or
/// `/count` suffix is dropped); see [`Music::dest`].
pub fn music_choice(offer: &[u8]) -> Option<Music> {
    choose(offer).map(|(_, music)| music)
}

/// Writes sipark's answer to `offer` for streaming `music`, the result of
/// [`music_choice`] on the same offer: sipark's origin (its family from
/// `host`), a connection line naming `media` (the media socket, IPv4-mapped
/// addresses written as IPv4), then one m-line per offered m-line in their
/// order (RFC 3264 §6). The chosen one becomes
/// `m=audio <media port> RTP/AVP <pt>` with its `a=rtpmap`, `a=ptime` and
/// `a=sendonly`; every other one is rejected: port 0, same media,
/// transport and formats, no attributes. An m-line too short to have a
/// transport is left out, as [`hold_answer`] does.
///
/// Returns false, and writes nothing, where [`music_choice`] gives `None`
/// (not SDP, no m-line it could choose) or `music.codec` is not offered on
/// the chosen m-line.
pub fn music_answer(
    out: &mut Vec<u8>,
    offer: &[u8],
    origin: Origin,
    host: &str,
    media: SocketAddr,
    music: &Music,
) -> bool {
    let Some((chosen, _)) = choose(offer) else {
        return false;
    };
    let start = out.len();
    write_media_session(out, origin, host, media.ip());
    let m_lines = lines(offer).filter_map(|line| line.strip_prefix(b"m="));
    for (index, m) in m_lines.enumerate() {
        let mut parts = words(m);
        if index == chosen {
            if !parts.skip(3).any(|fmt| payload_type(fmt) == Some(music.codec.payload_type())) {
                out.truncate(start);
                return false;
            }
            write_music_stream(out, media.port(), &[music.codec], music.ptime_ms);
            continue;
        }
        let (Some(kind), Some(_), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        out.extend_from_slice(b"m=");
        out.extend_from_slice(kind);
        out.extend_from_slice(b" 0 ");
        out.extend_from_slice(proto);
        for fmt in parts {
            out.push(b' ');
            out.extend_from_slice(fmt);
        }
        out.extend_from_slice(b"\r\n");
    }
    true
}

/// Writes sipark's own offer for music on hold to a call that came without
/// SDP (a delayed offer): one `sendonly` audio stream from `media`, PCMU
/// and PCMA, 20 ms packets.
pub fn music_offer(out: &mut Vec<u8>, origin: Origin, host: &str, media: SocketAddr) {
    write_media_session(out, origin, host, media.ip());
    write_music_stream(out, media.port(), &[Codec::Pcmu, Codec::Pcma], 20);
}

/// Which m-line of `offer` [`music_choice`] chooses (counting every line
/// starting `m=`, from 0), and the music it allows.
fn choose(offer: &[u8]) -> Option<(usize, Music)> {
    if !is_sdp(offer) {
        return None;
    }
    let mut scan = MusicScan::default();
    for line in lines(offer) {
        scan.read(line);
        if scan.past_chosen {
            break;
        }
    }
    scan.music()
}

/// What [`music_choice`] reads at one level (the session, or the chosen
/// m-section): the first of each, the value after `c=` or `a=ptime:`.
#[derive(Default)]
struct Level<'a> {
    connection: Option<&'a [u8]>,
    ptime: Option<&'a [u8]>,
    direction: Option<Direction>,
    /// An `a=crypto` or `a=fingerprint` line.
    keyed: bool,
}

/// A stream's direction attribute (RFC 4566 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn of(line: &[u8]) -> Option<Direction> {
        match line.trim_ascii_end() {
            b"a=sendrecv" => Some(Direction::SendRecv),
            b"a=sendonly" => Some(Direction::SendOnly),
            b"a=recvonly" => Some(Direction::RecvOnly),
            b"a=inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// [`music_choice`]'s reading of an SDP, a line at a time. [`Self::read`]
/// also says which lines (or which part of them) it depends on, which is
/// what [`hold_basis`] keeps for it: reading only those gives the same
/// music.
#[derive(Default)]
struct MusicScan<'a> {
    /// m-lines read so far.
    m_lines: usize,
    /// The chosen m-line: its index, codec and port.
    chosen: Option<(usize, Codec, u16)>,
    /// An m-line after the chosen one has been read: nothing more counts.
    past_chosen: bool,
    session: Level<'a>,
    media: Level<'a>,
}

impl<'a> MusicScan<'a> {
    /// Reads `line`; returns what of it the music depends on, besides the
    /// m-lines (all of which count).
    fn read(&mut self, line: &'a [u8]) -> Option<&'a [u8]> {
        if let Some(m) = line.strip_prefix(b"m=") {
            if self.chosen.is_some() {
                self.past_chosen = true;
            } else if let Some((codec, port)) = music_stream(m) {
                self.chosen = Some((self.m_lines, codec, port));
            }
            self.m_lines += 1;
            return None;
        }
        let level = match (self.m_lines, self.chosen, self.past_chosen) {
            (0, _, _) => &mut self.session,
            (_, Some(_), false) => &mut self.media,
            _ => return None,
        };
        if let Some(value) = line.strip_prefix(b"c=") {
            return level.connection.is_none().then(|| {
                level.connection = Some(value);
                line
            });
        }
        if let Some(value) = line.strip_prefix(b"a=ptime:") {
            return level.ptime.is_none().then(|| {
                level.ptime = Some(value);
                line
            });
        }
        if let Some(direction) = Direction::of(line) {
            if level.direction.is_some() {
                return None;
            }
            level.direction = Some(direction);
            // `a=sendrecv` changes nothing where the level above it (or
            // the default) says the same.
            let above = if self.m_lines == 0 { None } else { self.session.direction };
            let redundant = direction == Direction::SendRecv && matches!(above, None | Some(Direction::SendRecv));
            return (!redundant).then_some(line);
        }
        if self.m_lines > 0 && !level.keyed {
            for marker in [&b"a=crypto:"[..], b"a=fingerprint:"] {
                if line.starts_with(marker) {
                    level.keyed = true;
                    return Some(&line[..marker.len()]);
                }
            }
        }
        None
    }

    /// The music, once every line that counts has been read.
    fn music(&self) -> Option<(usize, Music)> {
        let (index, codec, port) = self.chosen?;
        let direction = self.media.direction.or(self.session.direction);
        if self.media.keyed || matches!(direction, Some(Direction::SendOnly | Direction::Inactive)) {
            return None;
        }
        let ptime_ms = self.media.ptime.or(self.session.ptime).map_or(20, ptime_ms);
        let dest = self.media.connection.or(self.session.connection).and_then(connection_address);
        Some((index, Music { codec, ptime_ms, dest: dest.map(|ip| SocketAddr::new(ip, port)) }))
    }
}

/// The codec and port of m-line `m` (the text after `m=`) if sipark could
/// send music on it: audio, a port, plain RTP/AVP, PCMU or PCMA offered
/// (the first of the two in its format list).
fn music_stream(m: &[u8]) -> Option<(Codec, u16)> {
    let mut parts = words(m);
    let (Some(b"audio"), Some(port), Some(b"RTP/AVP")) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    // `<port>/<count>` names several ports; the first carries the stream.
    let port = port.split(|&b| b == b'/').next().and_then(|p| std::str::from_utf8(p).ok()?.parse().ok());
    let port = port.filter(|&p: &u16| p != 0)?;
    let codec = parts.find_map(|fmt| payload_type(fmt).and_then(Codec::from_payload_type))?;
    Some((codec, port))
}

/// The packet time sipark sends at for `a=ptime:<value>`: the nearest
/// multiple of 10 ms (halfway rounds up), held within 10..=60; 20 if
/// `value` is not a number of milliseconds (digits, maybe a decimal point
/// and more digits).
fn ptime_ms(value: &[u8]) -> u16 {
    let value = value.trim_ascii();
    let (whole, fraction) = match memchr::memchr(b'.', value) {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return 20;
    }
    // In tenths of a millisecond; later fraction digits cannot move a
    // rounding to 10 ms.
    let whole = whole.iter().fold(0u32, |n, &d| n.saturating_mul(10).saturating_add(u32::from(d - b'0')));
    let tenths = whole.saturating_mul(10).saturating_add(fraction.first().map_or(0, |&d| u32::from(d - b'0')));
    let rounded = tenths.saturating_add(50) / 100 * 10;
    rounded.clamp(10, 60) as u16
}

/// The address of a connection line's value (`IN IP4 <addr>` or
/// `IN IP6 <addr>`, a `/ttl` or `/count` suffix dropped): `None` if it is
/// not an IP literal of its family, or is unspecified.
fn connection_address(value: &[u8]) -> Option<IpAddr> {
    let mut parts = words(value);
    let (Some(b"IN"), Some(family), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let addr = std::str::from_utf8(addr.split(|&b| b == b'/').next()?).ok()?;
    let ip = match family {
        b"IP4" => IpAddr::V4(addr.parse::<Ipv4Addr>().ok()?),
        b"IP6" => IpAddr::V6(addr.parse::<Ipv6Addr>().ok()?),
        _ => return None,
    };
    (!ip.is_unspecified()).then_some(ip)
}

/// The space-separated words of a line.
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

/// The payload type an m-line's format names, if it is a number below 256.
fn payload_type(fmt: &[u8]) -> Option<u8> {
    if fmt.is_empty() || !fmt.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(fmt).ok()?.parse().ok()
}

/// sipark's version, origin, session, connection (`media`, the socket the
/// music comes from) and time lines.
fn write_media_session(out: &mut Vec<u8>, origin: Origin, host: &str, media: IpAddr) {
    let media = media.to_canonical();
    out.extend_from_slice(b"v=0\r\n");
    write_origin(out, origin, host);
    out.extend_from_slice(if media.is_ipv6() { b"s=sipark\r\nc=IN IP6 " } else { b"s=sipark\r\nc=IN IP4 " });
    let _ = write!(out, "{media}");
    out.extend_from_slice(b"\r\nt=0 0\r\n");
}

/// A `sendonly` G.711 audio stream from `port` offering `codecs`.
fn write_music_stream(out: &mut Vec<u8>, port: u16, codecs: &[Codec], ptime_ms: u16) {
    out.extend_from_slice(b"m=audio ");
    super::write::push_dec(out, u64::from(port));
    out.extend_from_slice(b" RTP/AVP");
    for &codec in codecs {
        out.push(b' ');
        super::write::push_dec(out, u64::from(codec.payload_type()));
    }
    out.extend_from_slice(b"\r\n");
    for &codec in codecs {
        out.extend_from_slice(b"a=rtpmap:");
        super::write::push_dec(out, u64::from(codec.payload_type()));
        out.push(b' ');
        out.extend_from_slice(codec.name().as_bytes());
        out.extend_from_slice(b"/8000\r\n");
    }
    out.extend_from_slice(b"a=ptime:");
    super::write::push_dec(out, u64::from(ptime_ms));
    out.extend_from_slice(b"\r\na=sendonly\r\n");
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
mod tests;
