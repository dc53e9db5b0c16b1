//! Message building: responses and requests written straight into a
//! reusable buffer. Nothing here allocates once the buffer has grown.

use std::io::Write;
use std::net::SocketAddr;

use super::Transport;
use super::parse::{HeaderName, Method, SipMessage, Via};

/// Appends `Name: value\r\n`.
pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one `Route` line per value, in order: a route set as
/// [`Routes::Block`] writes it.
pub fn write_routes<'v>(out: &mut Vec<u8>, values: impl IntoIterator<Item = &'v [u8]>) {
    for v in values {
        header(out, "Route", v);
    }
}

/// The values of the `Route` lines [`write_routes`] wrote, in order. A
/// line ends where `\r\nRoute: ` starts the next one: a folded value's
/// own line breaks are followed by whitespace.
pub fn route_values(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NEXT: &[u8] = b"\r\nRoute: ";
    let mut rest = block.strip_prefix(b"Route: ").and_then(|b| b.strip_suffix(b"\r\n"));
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memmem::find(r, NEXT) {
            Some(i) => {
                rest = Some(&r[i + NEXT.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Appends `Content-Type` (when there is a body), `Content-Length`, the
/// blank line and the body.
pub fn finish(out: &mut Vec<u8>, content_type: &str, body: &[u8]) {
    if !body.is_empty() {
        header(out, "Content-Type", content_type.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    push_dec(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Writes the top Via of a request as it goes back in a response: `rport`
/// gets its value and `received` the source address (RFC 3581 §4).
fn write_top_via(out: &mut Vec<u8>, via: Via<'_>, src: SocketAddr) {
    out.extend_from_slice(b"Via: ");
    write_via_params(out, via.raw, src);
    write_received(out, src);
}

/// [`write_top_via`]'s general case: every parameter but `received`, with
/// `rport` given its value.
fn write_via_params(out: &mut Vec<u8>, raw: &[u8], src: SocketAddr) {
    let first_param = memchr::memchr(b';', raw).unwrap_or(raw.len());
    out.extend_from_slice(raw[..first_param].trim_ascii_end());
    for param in raw[first_param..].split(|&b| b == b';').map(<[u8]>::trim_ascii) {
        if param.is_empty() {
            continue;
        }
        let name = param.split(|&b| b == b'=').next().unwrap_or(param).trim_ascii();
        if name.eq_ignore_ascii_case(b"received") {
            continue;
        }
        if name.eq_ignore_ascii_case(b"rport") {
            out.extend_from_slice(b";rport=");
            push_dec(out, u64::from(src.port()));
            continue;
        }
        out.push(b';');
        out.extend_from_slice(param);
    }
}

/// Appends `;received=<source address>` and the line end.
fn write_received(out: &mut Vec<u8>, src: SocketAddr) {
    out.extend_from_slice(b";received=");
    match src.ip() {
        std::net::IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_dec(out, u64::from(octet));
            }
        }
        ip => {
            let _ = write!(out, "{ip}");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a response's status line and the headers copied from `req`
/// (Via, From, To, Call-ID, CSeq). `to_tag` is added to To when the
/// request's To has no tag. The caller adds more headers, then [`finish`].
///
/// Returns false if `req` has no Via; nothing useful can then be sent.
pub fn response_head(
    out: &mut Vec<u8>,
    req: &SipMessage<'_>,
    src: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
) -> bool {
    status_line(out, code, reason);
    let ok = copy_headers(out, req, src, Some((code, to_tag))).is_some();
    if ok {
        header(out, "Server", b"sipark");
    }
    ok
}

fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"SIP/2.0 ");
    push_dec(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Where [`copy_headers`] put what a template fills in later, as offsets
/// from where it started writing.
struct Copied {
    to_end: u32,
    rr: (u32, u32),
    to_tagged: bool,
}

/// Writes the headers a response copies from `req` (see
/// [`ResponseTemplate`]). For a response written now (`now`: its code and
/// the tag for a To without one) the tag goes in To and the Record-Route
/// lines only where the code calls for them; for a template, both are left
/// to [`ResponseTemplate::write`] and every Record-Route line is written.
///
/// A request whose From, To, Call-ID or CSeq cannot be read is still
/// answered (RFC 4475 quotbal, insuf, unksm2): each is copied as received,
/// or left out when absent, and a To that cannot be read gets no tag.
/// `None` when `req` has no Via, which a response is matched on (`out`
/// then holds a part of the headers).
fn copy_headers(
    out: &mut Vec<u8>,
    req: &SipMessage<'_>,
    src: SocketAddr,
    now: Option<(u16, Option<&[u8]>)>,
) -> Option<Copied> {
    let start = out.len();
    let at = |out: &Vec<u8>| u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    // Via lines are copied as received (§8.2.6.2), so that even a request
    // with an unreadable Via can be told so; only a readable top value gets
    // `received` and `rport` filled in.
    let top = req.top_via().ok();
    let mut any_via = false;
    for h in req.headers().iter().filter(|h| h.name == HeaderName::Via) {
        let mut value = h.value;
        if !any_via {
            any_via = true;
            if let Some(v) = top.filter(|v| within(v.raw, h.value)) {
                write_top_via(out, v, src);
                let end = v.raw.as_ptr() as usize - h.value.as_ptr() as usize + v.raw.len();
                let rest = h.value[end..].trim_ascii_start();
                value = rest.strip_prefix(b",").unwrap_or(rest).trim_ascii_start();
            }
        }
        if !value.is_empty() {
            header(out, "Via", value);
        }
    }
    if !any_via {
        return None;
    }
    if let Some(from) = req.header(HeaderName::From) {
        header(out, "From", from);
    }
    // A To that cannot be read is copied whole, and gets no tag.
    let (to_raw, to_tagged) = match req.to_hdr() {
        Ok(to) => (Some(to.raw), to.tag().is_some()),
        Err(_) => (req.header(HeaderName::To), true),
    };
    let mut to_end = at(out);
    if let Some(raw) = to_raw {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(raw);
        to_end = at(out);
        if let (false, Some((_, Some(tag)))) = (to_tagged, now) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    for name in [HeaderName::CallId, HeaderName::CSeq] {
        if let Some(value) = req.header(name) {
            header(out, name.as_str(), value);
        }
    }
    let rr_start = at(out);
    // A response that can create a dialog carries the Record-Route set (§12.1.1).
    let dialog = now.is_none_or(|(code, _)| (101..300).contains(&code));
    if dialog && req.method() == Some(Method::Invite) {
        for h in req.headers().iter().filter(|h| h.name == HeaderName::RecordRoute) {
            header(out, "Record-Route", h.value);
        }
    }
    Some(Copied { to_end, rr: (rr_start, at(out)), to_tagged })
}

/// The headers every response to one request copies from it (§8.2.6.2),
/// written once: the Via lines (the top one with `received` and `rport`
/// filled in, RFC 3581), From, To (the tag goes in when the response is
/// written), Call-ID, CSeq, and for an INVITE the Record-Route set, which a
/// response that can create a dialog carries (§12.1.1). A request answered
/// later keeps this instead of its own bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseTemplate {
    bytes: Vec<u8>,
    /// Where the To value ends (a tag goes there).
    to_end: u32,
    /// Where the Record-Route lines start and end.
    rr: (u32, u32),
    /// The request's To already has a tag.
    to_tagged: bool,
}

impl ResponseTemplate {
    /// The template of responses to `req`, received from `src`; `None` when
    /// `req` has no Via.
    pub fn of(req: &SipMessage<'_>, src: SocketAddr) -> Option<ResponseTemplate> {
        let mut out = Vec::with_capacity(256);
        let Copied { to_end, rr, to_tagged } = copy_headers(&mut out, req, src, None)?;
        Some(ResponseTemplate { bytes: out, to_end, rr, to_tagged })
    }

    /// Writes the status line and the copied headers of a `code` response;
    /// `to_tag` goes in To when the request's To had none.
    pub fn write(&self, out: &mut Vec<u8>, code: u16, reason: &str, to_tag: Option<&[u8]>) {
        status_line(out, code, reason);
        let (to_end, (rr_start, rr_end)) = (self.to_end as usize, (self.rr.0 as usize, self.rr.1 as usize));
        out.extend_from_slice(&self.bytes[..to_end]);
        if let (false, Some(tag)) = (self.to_tagged, to_tag) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(&self.bytes[to_end..rr_start]);
        // A response that can create a dialog carries the Record-Route set (§12.1.1).
        if (101..300).contains(&code) {
            out.extend_from_slice(&self.bytes[rr_start..rr_end]);
        }
        out.extend_from_slice(&self.bytes[rr_end..]);
        header(out, "Server", b"sipark");
    }
}

/// Is `inner` a sub-slice of `outer`?
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

/// Writes a request line and sipark's Via for it (`advertise` is the
/// host and port of `transport`).
pub fn request_head(out: &mut Vec<u8>, method: &str, uri: &[u8], transport: Transport, advertise: &str, branch: &[u8]) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(transport.via_token().as_bytes());
    out.push(b' ');
    out.extend_from_slice(advertise.as_bytes());
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(branch);
    out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\n");
}

/// The Route header fields of a request sipark sends.
#[derive(Debug, Clone, Copy)]
pub enum Routes<'a> {
    None,
    /// One `Route` line with this value (a registration's Path, or the
    /// outbound proxy).
    One(&'a [u8]),
    /// `Route` lines written already (a dialog's route set, by
    /// [`write_routes`]), copied as they are.
    Block(&'a [u8]),
}

/// A request sipark sends, field by field (§8.1.1). Written by
/// [`write_request`] in this order: request line, Via, Max-Forwards,
/// Route, From, To, Call-ID, CSeq, Contact and Allow (when given), then
/// `headers`, Content-Type, Content-Length and the body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub uri: &'a [u8],
    pub transport: Transport,
    /// sipark's `host:port` for `transport`, for Via.
    pub advertise: &'a str,
    pub branch: &'a [u8],
    pub routes: Routes<'a>,
    /// sipark's party, without its tag.
    pub from: &'a [u8],
    pub from_tag: &'a [u8],
    /// The peer's party, with its tag once it has one.
    pub to: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: u32,
    pub contact: Option<&'a [u8]>,
    /// Write `Allow` after Contact.
    pub allow: bool,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Where a field sits in a request sipark wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn around(out: &[u8], start: usize) -> Span {
        Span { start: start as u32, end: out.len() as u32 }
    }

    /// The field's bytes in `request`.
    pub fn of<'r>(&self, request: &'r [u8]) -> &'r [u8] {
        request.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// The fields of a request sipark wrote that its transaction needs again
/// (for CANCEL and for the ACK of a non-2xx response, §9.1, §17.1.1.3),
/// recorded as it was written so that nothing reads the bytes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub cseq: u32,
    pub uri: Span,
    /// The Via value.
    pub via: Span,
    /// Every `Route` line, names and line ends included.
    pub routes: Span,
    /// The From value, tag included.
    pub from: Span,
    /// Within it, sipark's party (before `;tag=`) and the tag.
    pub from_party: Span,
    pub from_tag: Span,
    /// The To value.
    pub to: Span,
    pub call_id: Span,
}

/// Writes `r` into `out` and returns where its fields are.
pub fn write_request(out: &mut Vec<u8>, r: &Request<'_>) -> Head {
    let base = out.len();
    let mut head = Head { cseq: r.cseq, ..Head::default() };
    let rel = |out: &Vec<u8>, start: usize| {
        let s = Span::around(out, start);
        Span { start: s.start - base as u32, end: s.end - base as u32 }
    };
    out.extend_from_slice(r.method.as_bytes());
    out.push(b' ');
    let at = out.len();
    out.extend_from_slice(r.uri);
    head.uri = rel(out, at);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    let at = out.len();
    out.extend_from_slice(b"SIP/2.0/");
    out.extend_from_slice(r.transport.via_token().as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.advertise.as_bytes());
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(r.branch);
    out.extend_from_slice(b";rport");
    head.via = rel(out, at);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\n");
    let at = out.len();
    match r.routes {
        Routes::None => {}
        Routes::One(v) => header(out, "Route", v),
        Routes::Block(block) => out.extend_from_slice(block),
    }
    head.routes = rel(out, at);
    out.extend_from_slice(b"From: ");
    let at = out.len();
    out.extend_from_slice(r.from);
    head.from_party = rel(out, at);
    out.extend_from_slice(b";tag=");
    let tag_at = out.len();
    out.extend_from_slice(r.from_tag);
    head.from_tag = rel(out, tag_at);
    head.from = rel(out, at);
    out.extend_from_slice(b"\r\nTo: ");
    let at = out.len();
    out.extend_from_slice(r.to);
    head.to = rel(out, at);
    out.extend_from_slice(b"\r\nCall-ID: ");
    let at = out.len();
    out.extend_from_slice(r.call_id);
    head.call_id = rel(out, at);
    out.extend_from_slice(b"\r\nCSeq: ");
    push_dec(out, u64::from(r.cseq));
    out.push(b' ');
    out.extend_from_slice(r.method.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(c) = r.contact {
        header(out, "Contact", c);
    }
    if r.allow {
        header(out, "Allow", ALLOW);
    }
    for (name, value) in r.headers {
        header(out, name, value);
    }
    let (ctype, body) = r.body.unwrap_or(("", b""));
    finish(out, ctype, body);
    head
}

/// Writes the CANCEL of the INVITE `request` (whose fields are `head`):
/// the same Request-URI, Via, Route, From, To and Call-ID, and its CSeq
/// number (§9.1).
pub fn write_cancel(out: &mut Vec<u8>, request: &[u8], head: &Head) {
    write_reply_request(out, "CANCEL", request, head, head.to.of(request));
}

/// Writes the ACK of a non-2xx final response to the INVITE `request`:
/// as its CANCEL would be, with the response's `to` (§17.1.1.3).
pub fn write_non_2xx_ack(out: &mut Vec<u8>, request: &[u8], head: &Head, to: &[u8]) {
    write_reply_request(out, "ACK", request, head, to);
}

fn write_reply_request(out: &mut Vec<u8>, method: &str, request: &[u8], head: &Head, to: &[u8]) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.uri.of(request));
    out.extend_from_slice(b" SIP/2.0\r\n");
    header(out, "Via", head.via.of(request));
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    out.extend_from_slice(head.routes.of(request));
    header(out, "From", head.from.of(request));
    header(out, "To", to);
    header(out, "Call-ID", head.call_id.of(request));
    out.extend_from_slice(b"CSeq: ");
    push_dec(out, u64::from(head.cseq));
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\n");
    finish(out, "", b"");
}

/// Methods answered in `Allow`.
pub const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY";

/// Appends `n` in decimal.
pub fn push_dec(out: &mut Vec<u8>, mut n: u64) {
    // Short numbers (status codes, octets, ports, lengths) go without a loop.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    if n < 1000 {
        out.extend_from_slice(&[b'0' + (n / 100) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    // Two digits a step (ports, lengths, SDP session ids of 19 digits).
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let r = (n % 100) as usize;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    }
    if n >= 10 {
        let r = n as usize;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[2 * r..2 * r + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

/// `00` to `99`, two bytes each.
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Appends `n` in lowercase hexadecimal, without leading zeros.
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    out.extend_from_slice(&hex16(n)[16 - digits..]);
}

/// `n` as 16 lowercase hexadecimal digits, computed eight at a time: each
/// nibble spread into a byte of its own, then mapped to `0-9a-f`.
pub fn hex16(n: u64) -> [u8; 16] {
    fn eight(x: u32) -> [u8; 8] {
        const ONES: u64 = 0x0101_0101_0101_0101;
        let x = u64::from(x);
        let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        let x = (x | (x << 4)) & (ONES * 0x0f);
        // 1 in each byte whose nibble is 10 or more.
        let letter = ((x + ONES * 6) >> 4) & ONES;
        (x + ONES * u64::from(b'0') + letter * u64::from(b'a' - b'0' - 10)).to_be_bytes()
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&eight((n >> 32) as u32));
    out[8..].copy_from_slice(&eight(n as u32));
    out
}

/// Appends `n` as 16 lowercase hexadecimal digits.
pub fn push_hex16(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&hex16(n));
}

/// Prefix of sipark's Via branches: the RFC 3261 magic cookie, then `sp`.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKsp";
/// Prefix of the user part of sipark's Contact URIs.
pub const CONTACT_PREFIX: &[u8] = b"sp";

/// Writes sipark's branch for shard `shard` and transaction `id`.
pub fn write_branch(out: &mut Vec<u8>, shard: u16, id: u64) {
    out.extend_from_slice(BRANCH_PREFIX);
    push_dec(out, u64::from(shard));
    out.push(b'.');
    push_hex(out, id);
}

/// Parses the transaction id out of one of sipark's branches.
pub fn branch_id(branch: &[u8]) -> Option<u64> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let dot = memchr::memchr(b'.', rest)?;
    let hex = &rest[dot + 1..];
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    hex.iter().try_fold(0u64, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        Some((n << 4) | u64::from(d))
    })
}

/// Writes sipark's Contact URI (without angle brackets) for `shard` on
/// `transport` (`advertise` is that transport's host and port): `sips:`
/// for TLS, `;transport=tcp` for TCP.
pub fn write_contact_uri(out: &mut Vec<u8>, shard: u16, transport: Transport, advertise: &str) {
    let prefix = std::str::from_utf8(CONTACT_PREFIX).unwrap_or("sp");
    let _ = match transport {
        Transport::Udp => write!(out, "sip:{prefix}{shard}.sipark@{advertise}"),
        Transport::Tcp => write!(out, "sip:{prefix}{shard}.sipark@{advertise};transport=tcp"),
        Transport::Tls => write!(out, "sips:{prefix}{shard}.sipark@{advertise}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_those_of_the_formatter() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let samples = [0, 1, 9, 10, 15, 16, 0xabcdef, u64::from(u32::MAX), 1 << 32, u64::MAX - 1, u64::MAX];
        for n in samples.into_iter().chain((0..2000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        })) {
            assert_eq!(hex16(n), *format!("{n:016x}").as_bytes(), "{n:#x}");
            let mut out = b"x".to_vec();
            push_hex(&mut out, n);
            assert_eq!(out, format!("x{n:x}").as_bytes(), "{n:#x}");
        }
    }

    #[test]
    fn decimal_digits_are_those_of_the_formatter() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut samples: Vec<u64> = (0..=100_000).collect();
        samples.extend([u64::from(u32::MAX), u64::MAX / 2, u64::MAX - 1, u64::MAX]);
        samples.extend((0..5000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        }));
        for n in samples {
            let mut out = b"x".to_vec();
            push_dec(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn a_branch_gives_back_its_transaction_id() {
        for id in [1, 0xa, 0xff, 0x1234_5678_9abc, u64::MAX] {
            let mut b = Vec::new();
            write_branch(&mut b, 3, id);
            assert_eq!(branch_id(&b), Some(id), "{}", String::from_utf8_lossy(&b));
        }
        assert_eq!(branch_id(b"z9hG4bKsp3.FF"), Some(0xff), "any case");
        for bad in [
            &b"z9hG4bKsp3."[..],
            b"z9hG4bKsp3.fg",
            b"z9hG4bKsp3.+ff",
            b"z9hG4bKsp3.1ffffffffffffffff",
            b"z9hG4bKsp3",
            b"z9hG4bKx3.ff",
        ] {
            assert_eq!(branch_id(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
