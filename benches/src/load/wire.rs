//! What sipark-load puts on the wire: every message is written into a
//! caller's reused buffer, and every identifier carries its cycle slot and
//! generation so that what comes back is matched by index, not by lookup.
//!
//! Identifiers (`N` is the run's nonce, `S` the slot, `G` its generation):
//! * Call-ID `<kind>S.G@N.lg`, kind `p` (park dialog), `r` (retrieve
//!   dialog), `k` (a background parked call; `S` is its number and `G` 0)
//!   or `g` (a device's registration; `S` is the device number and `G` 0);
//! * our tags `<kind>S.G`; Via branches `z9hG4bKN<kind>S.G` with kinds `p`
//!   (park INVITE), `a` (its ACK), `r` (retrieve INVITE), `c` (its ACK), `b`
//!   (BYE), `k` (background park INVITE), `l` (its ACK), `m` (its BYE), `g`
//!   (REGISTER, with the CSeq appended).
//! * Contacts: the parked party is `sip:pkS@ip:port`, a background parked
//!   call `sip:bgS@ip:port`, a device `sip:<ext>-d<k>@ip:port`.

use sipark::proto::sip::parse::{HeaderName, SipMessage};

/// The first extension number; extension `e` of a tenant is `EXT_BASE + e`.
pub const EXT_BASE: u32 = 100;
/// The first extension of the background parked calls (`--background-parked`):
/// call `k` of `N` is parked on extension `BG_EXT_BASE + k / tenants` of tenant
/// `k % tenants`, one call per extension, and no device registers there.
pub const BG_EXT_BASE: u32 = 9000;
/// Domain of tenant `t`: `t<t>.<DOMAIN_SUFFIX>`.
pub const DOMAIN_SUFFIX: &[u8] = b".load.example";

/// Appends the decimal digits of `v`.
#[inline]
pub fn num(out: &mut Vec<u8>, mut v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// Parses all of `s` as a decimal number (1 to 19 digits).
#[inline]
pub fn parse_num(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// Writes `t<t>.load.example`.
pub fn domain(out: &mut Vec<u8>, tenant: u32) {
    out.push(b't');
    num(out, u64::from(tenant));
    out.extend_from_slice(DOMAIN_SUFFIX);
}

/// The tenant number of a domain written by [`domain`].
pub fn parse_domain(host: &[u8]) -> Option<u32> {
    let rest = host.strip_prefix(b"t")?;
    let dot = memchr::memchr(b'.', rest)?;
    if !rest[dot..].eq_ignore_ascii_case(DOMAIN_SUFFIX) {
        return None;
    }
    u32::try_from(parse_num(&rest[..dot])?).ok()
}

/// `(kind, slot, generation)` of one of our identifiers `<kind>S.G`,
/// followed by `@` and `suffix` when `suffix` is given.
pub fn parse_id(id: &[u8], suffix: Option<&[u8]>) -> Option<(u8, u32, u32)> {
    let (&kind, rest) = id.split_first()?;
    let dot = memchr::memchr(b'.', rest)?;
    let slot = u32::try_from(parse_num(&rest[..dot])?).ok()?;
    let rest = &rest[dot + 1..];
    let gen_digits = match suffix {
        Some(s) => {
            let at = memchr::memchr(b'@', rest)?;
            if &rest[at + 1..] != s {
                return None;
            }
            &rest[..at]
        }
        None => rest,
    };
    let generation = u32::try_from(parse_num(gen_digits)?).ok()?;
    Some((kind, slot, generation))
}

/// The fixed parts of every message of one run.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The run's nonce, decimal.
    pub nonce: Vec<u8>,
    /// `N.lg`: what follows `@` in our Call-IDs.
    pub call_id_host: Vec<u8>,
    pub park_fac: Vec<u8>,
    pub retrieve_fac: Vec<u8>,
    /// `IP4` or `IP6` for SDP.
    pub ip_kind: &'static [u8],
}

impl Ctx {
    /// A context for nonce `nonce`.
    pub fn new(nonce: u32, park_fac: &str, retrieve_fac: &str, ipv6: bool) -> Ctx {
        let mut n = Vec::new();
        num(&mut n, u64::from(nonce));
        let mut host = n.clone();
        host.extend_from_slice(b".lg");
        Ctx {
            nonce: n,
            call_id_host: host,
            park_fac: park_fac.as_bytes().to_vec(),
            retrieve_fac: retrieve_fac.as_bytes().to_vec(),
            ip_kind: if ipv6 { b"IP6" } else { b"IP4" },
        }
    }

    fn id(out: &mut Vec<u8>, kind: u8, slot: u32, generation: u32) {
        out.push(kind);
        num(out, u64::from(slot));
        out.push(b'.');
        num(out, u64::from(generation));
    }

    /// Writes `Call-ID: <kind>S.G@N.lg\r\n`.
    pub fn call_id(&self, out: &mut Vec<u8>, kind: u8, slot: u32, generation: u32) {
        out.extend_from_slice(b"Call-ID: ");
        Self::id(out, kind, slot, generation);
        out.push(b'@');
        out.extend_from_slice(&self.call_id_host);
        out.extend_from_slice(b"\r\n");
    }

    /// Writes a Via line for a request sent from `hostport`.
    pub fn via(&self, out: &mut Vec<u8>, hostport: &[u8], kind: u8, slot: u32, generation: u32, extra: Option<u32>) {
        out.extend_from_slice(b"Via: SIP/2.0/UDP ");
        out.extend_from_slice(hostport);
        out.extend_from_slice(b";branch=z9hG4bK");
        out.extend_from_slice(&self.nonce);
        Self::id(out, kind, slot, generation);
        if let Some(x) = extra {
            out.push(b'x');
            num(out, u64::from(x));
        }
        out.extend_from_slice(b";rport\r\n");
    }
}

/// One party of a cycle's dialogs, as far as the wire needs it.
#[derive(Debug, Clone, Copy)]
pub struct Dialog {
    /// `p` (park dialog: the parked party calling `*68<ext>`), `k` (a
    /// background parked call, also calling `*68<ext>`) or `r` (retrieve
    /// dialog: a device of `<ext>` calling `*88<ext>`).
    pub kind: u8,
    pub slot: u32,
    pub generation: u32,
    pub tenant: u32,
    /// Extension number (not index).
    pub ext: u32,
}

impl Dialog {
    /// Whether the dialog's INVITE parks (`*68`) rather than retrieves.
    pub fn parks(&self) -> bool {
        matches!(self.kind, b'p' | b'k')
    }

    fn caller_user(&self, out: &mut Vec<u8>) {
        match self.kind {
            b'p' => {
                out.extend_from_slice(b"pk");
                num(out, u64::from(self.slot));
            }
            b'k' => {
                out.extend_from_slice(b"bg");
                num(out, u64::from(self.slot));
            }
            _ => num(out, u64::from(self.ext)),
        }
    }

    /// `sip:<fac><ext>@<domain>`: the Request-URI of the dialog's INVITE.
    pub fn target(&self, ctx: &Ctx, out: &mut Vec<u8>) {
        out.extend_from_slice(b"sip:");
        out.extend_from_slice(if self.parks() { &ctx.park_fac } else { &ctx.retrieve_fac });
        num(out, u64::from(self.ext));
        out.push(b'@');
        domain(out, self.tenant);
    }

    fn from(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"From: <sip:");
        self.caller_user(out);
        out.push(b'@');
        domain(out, self.tenant);
        out.extend_from_slice(b">;tag=");
        Ctx::id(out, self.kind, self.slot, self.generation);
        out.extend_from_slice(b"\r\n");
    }

    fn to(&self, ctx: &Ctx, out: &mut Vec<u8>, tag: Option<&[u8]>) {
        out.extend_from_slice(b"To: <");
        self.target(ctx, out);
        out.push(b'>');
        if let Some(t) = tag {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(t);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the SDP of a party at `ip` with media port `port`; `answer`
/// offers one codec.
pub fn sdp(out: &mut Vec<u8>, ctx: &Ctx, ip: &[u8], port: u16, session: u32, version: u32, answer: bool) {
    out.extend_from_slice(b"v=0\r\no=load ");
    num(out, u64::from(session));
    out.push(b' ');
    num(out, u64::from(version));
    out.extend_from_slice(b" IN ");
    out.extend_from_slice(ctx.ip_kind);
    out.push(b' ');
    out.extend_from_slice(ip);
    out.extend_from_slice(b"\r\ns=-\r\nc=IN ");
    out.extend_from_slice(ctx.ip_kind);
    out.push(b' ');
    out.extend_from_slice(ip);
    out.extend_from_slice(b"\r\nt=0 0\r\nm=audio ");
    num(out, u64::from(port));
    if answer {
        out.extend_from_slice(b" RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n");
    } else {
        out.extend_from_slice(b" RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n");
    }
    out.extend_from_slice(b"a=sendrecv\r\n");
}

fn finish(out: &mut Vec<u8>, body: Option<&[u8]>) {
    match body {
        Some(b) => {
            out.extend_from_slice(b"Content-Type: application/sdp\r\nContent-Length: ");
            num(out, b.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// A REGISTER of device `k` of extension `ext` of `tenant` (device number
/// `dev`), from `hostport`, binding `sip:<ext>-d<k>@hostport`.
#[allow(clippy::too_many_arguments)]
pub fn register(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    hostport: &[u8],
    dev: u32,
    tenant: u32,
    ext: u32,
    k: u32,
    cseq: u32,
    expires: u32,
) {
    out.clear();
    out.extend_from_slice(b"REGISTER sip:");
    domain(out, tenant);
    out.extend_from_slice(b" SIP/2.0\r\n");
    ctx.via(out, hostport, b'g', dev, 0, Some(cseq));
    out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: <sip:");
    num(out, u64::from(ext));
    out.push(b'@');
    domain(out, tenant);
    out.extend_from_slice(b">;tag=");
    Ctx::id(out, b'g', dev, 0);
    out.extend_from_slice(b"\r\nTo: <sip:");
    num(out, u64::from(ext));
    out.push(b'@');
    domain(out, tenant);
    out.extend_from_slice(b">\r\n");
    ctx.call_id(out, b'g', dev, 0);
    out.extend_from_slice(b"CSeq: ");
    num(out, u64::from(cseq));
    out.extend_from_slice(b" REGISTER\r\nContact: <sip:");
    num(out, u64::from(ext));
    out.extend_from_slice(b"-d");
    num(out, u64::from(k));
    out.push(b'@');
    out.extend_from_slice(hostport);
    out.extend_from_slice(b">;expires=");
    num(out, u64::from(expires));
    out.extend_from_slice(b"\r\nExpires: ");
    num(out, u64::from(expires));
    out.extend_from_slice(b"\r\nUser-Agent: sipark-load\r\n");
    finish(out, None);
}

/// The INVITE that opens dialog `d` (park: `*68<ext>` with Referred-By
/// `parker`; retrieve: `*88<ext>`), from `hostport` with Contact user
/// `contact_user`, carrying `body` (SDP).
pub fn invite(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    d: &Dialog,
    hostport: &[u8],
    contact_user: &[u8],
    parker: Option<u32>,
    body: &[u8],
) {
    out.clear();
    out.extend_from_slice(b"INVITE ");
    d.target(ctx, out);
    out.extend_from_slice(b" SIP/2.0\r\n");
    ctx.via(out, hostport, d.kind, d.slot, d.generation, None);
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    d.from(out);
    d.to(ctx, out, None);
    ctx.call_id(out, d.kind, d.slot, d.generation);
    out.extend_from_slice(b"CSeq: 1 INVITE\r\nContact: <sip:");
    out.extend_from_slice(contact_user);
    out.push(b'@');
    out.extend_from_slice(hostport);
    out.extend_from_slice(b">\r\n");
    if let Some(p) = parker {
        out.extend_from_slice(b"Referred-By: <sip:");
        num(out, u64::from(p));
        out.push(b'@');
        domain(out, d.tenant);
        out.extend_from_slice(b">\r\n");
    }
    out.extend_from_slice(b"User-Agent: sipark-load\r\n");
    finish(out, Some(body));
}

/// Most Record-Route values copied into a route set.
pub const MAX_ROUTES: usize = 8;

/// The far end of a dialog, as the 2xx that established it says: its To
/// tag, its Contact (our Request-URI) and its Record-Route values in order.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub tag: &'a [u8],
    pub target: &'a [u8],
    pub routes: [&'a [u8]; MAX_ROUTES],
    pub n_routes: usize,
}

impl<'a> Remote<'a> {
    /// The far end named by the 2xx `ok`; `None` if it lacks a To tag or a
    /// Contact, or has more than [`MAX_ROUTES`] Record-Route values.
    pub fn of(ok: &SipMessage<'a>) -> Option<Remote<'a>> {
        let tag = ok.to_hdr().ok().and_then(|t| t.tag())?;
        let target = ok.contacts().find_map(|c| match c {
            Ok(sipark::proto::sip::parse::Contact::Addr(na)) => Some(na.uri.raw),
            _ => None,
        })?;
        let mut routes: [&[u8]; MAX_ROUTES] = [&[]; MAX_ROUTES];
        let mut n = 0;
        for r in ok.record_routes().flatten() {
            if n == MAX_ROUTES {
                return None;
            }
            routes[n] = r.raw;
            n += 1;
        }
        Some(Remote { tag, target, routes, n_routes: n })
    }

    /// The Record-Route values, in the order of the 2xx.
    pub fn routes(&self) -> &[&'a [u8]] {
        &self.routes[..self.n_routes]
    }
}

/// An in-dialog request (`ACK` or `BYE`) on dialog `d` to `remote`:
/// Request-URI = its Contact, Route = its Record-Route reversed, To tag = its
/// To tag. `branch_kind` names the branch.
#[allow(clippy::too_many_arguments)]
pub fn in_dialog_to(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    d: &Dialog,
    hostport: &[u8],
    remote: &Remote<'_>,
    method: &[u8],
    cseq: u32,
    branch_kind: u8,
) {
    out.clear();
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(remote.target);
    out.extend_from_slice(b" SIP/2.0\r\n");
    ctx.via(out, hostport, branch_kind, d.slot, d.generation, None);
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    for r in remote.routes().iter().rev() {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(r);
        out.extend_from_slice(b"\r\n");
    }
    d.from(out);
    d.to(ctx, out, Some(remote.tag));
    ctx.call_id(out, d.kind, d.slot, d.generation);
    out.extend_from_slice(b"CSeq: ");
    num(out, u64::from(cseq));
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\n");
    finish(out, None);
}

/// An in-dialog request (`ACK` or `BYE`) on dialog `d`, built from the 2xx
/// `ok` that established it (see [`in_dialog_to`]). Returns false (and
/// writes nothing useful) if `ok` lacks a To tag or a Contact.
#[allow(clippy::too_many_arguments)]
pub fn in_dialog(
    out: &mut Vec<u8>,
    ctx: &Ctx,
    d: &Dialog,
    hostport: &[u8],
    ok: &SipMessage<'_>,
    method: &[u8],
    cseq: u32,
    branch_kind: u8,
) -> bool {
    match Remote::of(ok) {
        Some(remote) => {
            in_dialog_to(out, ctx, d, hostport, &remote, method, cseq, branch_kind);
            true
        }
        None => {
            out.clear();
            false
        }
    }
}

/// The ACK for a non-2xx final response `resp` to our INVITE `invite`
/// (RFC 3261 §17.1.1.3: same branch and Request-URI, To from the response).
pub fn ack_non_2xx(out: &mut Vec<u8>, invite: &[u8], resp: &SipMessage<'_>) -> bool {
    out.clear();
    let Ok(req) = SipMessage::parse(invite) else { return false };
    let (Some(ruri), Some(via), Some(from), Some(to), Ok(cid), Ok(cseq)) = (
        req.request_uri(),
        req.header(HeaderName::Via),
        req.header(HeaderName::From),
        resp.header(HeaderName::To),
        req.call_id(),
        req.cseq(),
    ) else {
        return false;
    };
    out.extend_from_slice(b"ACK ");
    out.extend_from_slice(ruri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(via);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\nFrom: ");
    out.extend_from_slice(from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(cid);
    out.extend_from_slice(b"\r\nCSeq: ");
    num(out, u64::from(cseq.seq));
    out.extend_from_slice(b" ACK\r\n");
    finish(out, None);
    true
}

/// A response to `req`: its Via lines, From, To (with `to_tag` added when
/// it has none), Call-ID and CSeq, then an optional Contact
/// `<sip:user@hostport>` and an optional SDP body.
pub fn response(
    out: &mut Vec<u8>,
    req: &SipMessage<'_>,
    status: &[u8],
    to_tag: Option<&[u8]>,
    contact: Option<(&[u8], &[u8])>,
    body: Option<&[u8]>,
) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    for h in req.headers() {
        if h.name == HeaderName::Via {
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    let get = |n| req.header(n).unwrap_or_default();
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(get(HeaderName::From));
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(get(HeaderName::To));
    if let Some(t) = to_tag
        && req.to_hdr().ok().and_then(|t| t.tag()).is_none()
    {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(t);
    }
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(get(HeaderName::CallId));
    out.extend_from_slice(b"\r\nCSeq: ");
    out.extend_from_slice(get(HeaderName::CSeq));
    out.extend_from_slice(b"\r\n");
    if let Some((user, hostport)) = contact {
        out.extend_from_slice(b"Contact: <sip:");
        out.extend_from_slice(user);
        out.push(b'@');
        out.extend_from_slice(hostport);
        out.extend_from_slice(b">\r\n");
    }
    finish(out, body);
}

/// The `version` attribute of a park-info document.
pub fn park_info_version(body: &[u8]) -> Option<u64> {
    // After the root element's name: the XML declaration has a version too.
    let root = memchr::memmem::find(body, b"<park-info")?;
    let body = &body[root..];
    let at = memchr::memmem::find(body, b" version=\"")? + 10;
    let len = memchr::memchr(b'"', &body[at..])?;
    parse_num(&body[at..at + len])
}

/// Whether a park-info document lists a parked call.
pub fn park_info_has_parked(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"state=\"parked\"").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new(4242, "*68", "*88", false)
    }

    #[test]
    fn numbers_and_ids() {
        let mut v = Vec::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            v.clear();
            num(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
            assert_eq!(parse_num(&v), if n == u64::MAX { None } else { Some(n) }, "{n}");
        }
        assert_eq!(parse_num(b""), None);
        assert_eq!(parse_num(b"1a"), None);
        v.clear();
        domain(&mut v, 37);
        assert_eq!(v, b"t37.load.example");
        assert_eq!(parse_domain(&v), Some(37));
        assert_eq!(parse_domain(b"T37.LOAD.example"), None);
        assert_eq!(parse_domain(b"t37.other.example"), None);
        assert_eq!(parse_id(b"p12.3@4242.lg", Some(b"4242.lg")), Some((b'p', 12, 3)));
        assert_eq!(parse_id(b"p12.3@4243.lg", Some(b"4242.lg")), None);
        assert_eq!(parse_id(b"r0.0", None), Some((b'r', 0, 0)));
        assert_eq!(parse_id(b"22d353d1a3e63289-0-5de3400006@sipark", Some(b"4242.lg")), None);
    }

    #[test]
    fn park_invite_parses_with_the_engine_parser() {
        let c = ctx();
        let d = Dialog { kind: b'p', slot: 5, generation: 9, tenant: 3, ext: 104 };
        let mut body = Vec::new();
        sdp(&mut body, &c, b"127.0.0.1", 30010, 5, 1, false);
        let mut out = Vec::new();
        invite(&mut out, &c, &d, b"127.0.0.1:40000", b"pk5", Some(101), &body);
        let m = SipMessage::parse(&out).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(m.request_uri(), Some(&b"sip:*68104@t3.load.example"[..]));
        assert_eq!(m.call_id().ok(), Some(&b"p5.9@4242.lg"[..]));
        assert_eq!(m.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242p5.9"[..]));
        assert_eq!(m.from_hdr().ok().and_then(|f| f.tag()), Some(&b"p5.9"[..]));
        assert_eq!(m.to_hdr().ok().and_then(|t| t.tag()), None);
        assert_eq!(m.referred_by().and_then(Result::ok).map(|r| r.uri.raw), Some(&b"sip:101@t3.load.example"[..]));
        assert_eq!(m.body(), &body[..]);
        assert_eq!(m.content_length().and_then(Result::ok), Some(body.len() as u32));
        let contact = m.contacts().next().and_then(Result::ok);
        assert!(
            matches!(contact, Some(sipark::proto::sip::parse::Contact::Addr(na)) if na.uri.raw == b"sip:pk5@127.0.0.1:40000")
        );
    }

    #[test]
    fn background_park_invite_and_bye() {
        let c = ctx();
        let d = Dialog { kind: b'k', slot: 1234, generation: 0, tenant: 7, ext: BG_EXT_BASE + 1 };
        let mut body = Vec::new();
        sdp(&mut body, &c, b"127.0.0.1", 30010, 1234, 1, false);
        let mut out = Vec::new();
        invite(&mut out, &c, &d, b"127.0.0.1:40000", b"bg1234", Some(9001), &body);
        let m = SipMessage::parse(&out).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(m.request_uri(), Some(&b"sip:*689001@t7.load.example"[..]));
        assert_eq!(m.call_id().ok(), Some(&b"k1234.0@4242.lg"[..]));
        assert_eq!(parse_id(b"k1234.0@4242.lg", Some(b"4242.lg")), Some((b'k', 1234, 0)));
        assert_eq!(m.from_hdr().ok().map(|f| f.uri.raw), Some(&b"sip:bg1234@t7.load.example"[..]));
        assert_eq!(m.referred_by().and_then(Result::ok).map(|r| r.uri.raw), Some(&b"sip:9001@t7.load.example"[..]));
        assert_eq!(m.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242k1234.0"[..]));

        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK4242k1234.0\r\n\
From: <sip:bg1234@t7.load.example>;tag=k1234.0\r\nTo: <sip:*689001@t7.load.example>;tag=zz\r\n\
Call-ID: k1234.0@4242.lg\r\nCSeq: 1 INVITE\r\nContact: <sip:sp0.x@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n";
        let okm = SipMessage::parse(ok).unwrap_or_else(|e| panic!("{e:?}"));
        let remote = Remote::of(&okm).unwrap_or_else(|| panic!("no remote in the 200"));
        assert_eq!(
            (remote.tag, remote.target, remote.routes().len()),
            (&b"zz"[..], &b"sip:sp0.x@127.0.0.1:5060"[..], 0)
        );
        let mut bye = Vec::new();
        in_dialog_to(&mut bye, &c, &d, b"127.0.0.1:40000", &remote, b"BYE", 2, b'm');
        let b = SipMessage::parse(&bye).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&bye)));
        assert_eq!(b.request_uri(), Some(&b"sip:sp0.x@127.0.0.1:5060"[..]));
        assert_eq!(b.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242m1234.0"[..]));
        assert_eq!(b.cseq().ok().map(|c| (c.seq, c.method)), Some((2, sipark::proto::sip::parse::Method::Bye)));
        assert_eq!(b.to_hdr().ok().and_then(|t| t.tag()), Some(&b"zz"[..]));
        let mut again = Vec::new();
        assert!(in_dialog(&mut again, &c, &d, b"127.0.0.1:40000", &okm, b"BYE", 2, b'm'));
        assert_eq!(again, bye, "both builders write the same request");
    }

    #[test]
    fn register_and_response_and_in_dialog() {
        let c = ctx();
        let mut out = Vec::new();
        register(&mut out, &c, b"127.0.0.1:40001", 17, 2, 101, 1, 1, 3600);
        let m = SipMessage::parse(&out).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(m.request_uri(), Some(&b"sip:t2.load.example"[..]));
        assert_eq!(m.expires().and_then(Result::ok), Some(3600));
        assert_eq!(m.to_hdr().ok().map(|t| t.uri.raw), Some(&b"sip:101@t2.load.example"[..]));
        assert_eq!(m.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242g17.0x1"[..]));

        // A 200 from the "engine" with a Record-Route, and the ACK and BYE built from it.
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK4242r5.9;rport=40000\r\n\
Record-Route: <sip:10.0.0.1;lr>\r\nRecord-Route: <sip:10.0.0.2;lr>\r\n\
From: <sip:104@t3.load.example>;tag=r5.9\r\nTo: <sip:*88104@t3.load.example>;tag=abc\r\n\
Call-ID: r5.9@4242.lg\r\nCSeq: 1 INVITE\r\nContact: <sip:sp1.sipark@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n";
        let okm = SipMessage::parse(ok).unwrap_or_else(|e| panic!("{e:?}"));
        let d = Dialog { kind: b'r', slot: 5, generation: 9, tenant: 3, ext: 104 };
        let mut bye = Vec::new();
        assert!(in_dialog(&mut bye, &c, &d, b"127.0.0.1:40000", &okm, b"BYE", 2, b'b'));
        let b = SipMessage::parse(&bye).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&bye)));
        assert_eq!(b.request_uri(), Some(&b"sip:sp1.sipark@127.0.0.1:5060"[..]));
        let routes: Vec<&[u8]> = b.routes().flatten().map(|r| r.raw).collect();
        assert_eq!(routes, vec![&b"<sip:10.0.0.2;lr>"[..], &b"<sip:10.0.0.1;lr>"[..]]);
        assert_eq!(b.to_hdr().ok().and_then(|t| t.tag()), Some(&b"abc"[..]));
        assert_eq!(b.cseq().ok().map(|c| c.seq), Some(2));
        assert_eq!(b.call_id().ok(), Some(&b"r5.9@4242.lg"[..]));

        // A response to it keeps the Via and adds a To tag only where missing.
        let mut resp = Vec::new();
        response(&mut resp, &m, b"200 OK", Some(b"n1"), None, None);
        let r = SipMessage::parse(&resp).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&resp)));
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.to_hdr().ok().and_then(|t| t.tag()), Some(&b"n1"[..]));
        assert_eq!(r.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242g17.0x1"[..]));
        assert_eq!(r.cseq().ok().map(|c| c.seq), Some(1));

        let bad = b"SIP/2.0 486 Busy\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK4242r5.9\r\n\
From: <sip:104@t3.load.example>;tag=r5.9\r\nTo: <sip:*88104@t3.load.example>;tag=x\r\n\
Call-ID: r5.9@4242.lg\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let badm = SipMessage::parse(bad).unwrap_or_else(|e| panic!("{e:?}"));
        let mut inv = Vec::new();
        invite(&mut inv, &c, &d, b"127.0.0.1:40000", b"104-d0", None, b"v=0\r\n");
        let mut ack = Vec::new();
        assert!(ack_non_2xx(&mut ack, &inv, &badm));
        let a = SipMessage::parse(&ack).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&ack)));
        assert_eq!(a.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK4242r5.9"[..]));
        assert_eq!(a.to_hdr().ok().and_then(|t| t.tag()), Some(&b"x"[..]));
    }

    #[test]
    fn park_info_fields() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<park-info xmlns="urn:sipark:park-info" version="59857077" extension="103" domain="a">
  <call id="558xetxg" state="parked" parked-at="2026-11-24T18:58:01Z" timeout="300">"#;
        assert_eq!(park_info_version(doc), Some(59_857_077));
        assert!(park_info_has_parked(doc));
        let gone = br#"<park-info version="12" extension="103"><call id="1" state="terminated" reason="retrieved">"#;
        assert_eq!(park_info_version(gone), Some(12));
        assert!(!park_info_has_parked(gone));
        assert_eq!(park_info_version(b"<park-info>"), None);
    }
}
