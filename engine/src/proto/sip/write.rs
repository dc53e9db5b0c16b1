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

/// Appends `Content-Type` (when there is a body), `Content-Length`, the
/// blank line and the body.
pub fn finish(out: &mut Vec<u8>, content_type: &str, body: &[u8]) {
    if !body.is_empty() {
        header(out, "Content-Type", content_type.as_bytes());
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// Writes the top Via of a request as it goes back in a response: `rport`
/// gets its value and `received` the source address (RFC 3581 §4).
fn write_top_via(out: &mut Vec<u8>, via: Via<'_>, src: SocketAddr) {
    out.extend_from_slice(b"Via: ");
    let raw = via.raw;
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
            let _ = write!(out, ";rport={}", src.port());
            continue;
        }
        out.push(b';');
        out.extend_from_slice(param);
    }
    let _ = write!(out, ";received={}\r\n", src.ip());
}

/// Writes a response's status line and the headers copied from `req`
/// (Via, From, To, Call-ID, CSeq). `to_tag` is added to To when the
/// request's To has no tag. The caller adds more headers, then [`finish`].
///
/// Returns false if `req` lacks a header a response must copy; nothing
/// useful can then be sent.
pub fn response_head(
    out: &mut Vec<u8>,
    req: &SipMessage<'_>,
    src: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
) -> bool {
    let (Ok(to), Ok(call_id), Some(from), Some(cseq)) =
        (req.to_hdr(), req.call_id(), req.header(HeaderName::From), req.header(HeaderName::CSeq))
    else {
        return false;
    };
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
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
        return false;
    }
    header(out, "From", from);
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(to.raw);
    if let (None, Some(tag)) = (to.tag(), to_tag) {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag);
    }
    out.extend_from_slice(b"\r\n");
    header(out, "Call-ID", call_id);
    header(out, "CSeq", cseq);
    // A response that can create a dialog carries the Record-Route set (§12.1.1).
    if req.method() == Some(Method::Invite) && (101..300).contains(&code) {
        for h in req.headers().iter().filter(|h| h.name == HeaderName::RecordRoute) {
            header(out, "Record-Route", h.value);
        }
    }
    header(out, "Server", b"sipark");
    true
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

/// Writes sipark's branch for shard `shard` and transaction `id`.
pub fn write_branch(out: &mut Vec<u8>, shard: u16, id: u64) {
    out.extend_from_slice(crate::proto::route::BRANCH_PREFIX);
    let _ = write!(out, "{shard}.{id:x}");
}

/// Parses the transaction id out of one of sipark's branches.
pub fn branch_id(branch: &[u8]) -> Option<u64> {
    let rest = branch.strip_prefix(crate::proto::route::BRANCH_PREFIX)?;
    let dot = memchr::memchr(b'.', rest)?;
    let hex = std::str::from_utf8(&rest[dot + 1..]).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

/// Writes sipark's Contact URI (without angle brackets) for `shard` on
/// `transport` (`advertise` is that transport's host and port): `sips:`
/// for TLS, `;transport=tcp` for TCP.
pub fn write_contact_uri(out: &mut Vec<u8>, shard: u16, transport: Transport, advertise: &str) {
    let prefix = std::str::from_utf8(crate::proto::route::CONTACT_PREFIX).unwrap_or("sp");
    let _ = match transport {
        Transport::Udp => write!(out, "sip:{prefix}{shard}.sipark@{advertise}"),
        Transport::Tcp => write!(out, "sip:{prefix}{shard}.sipark@{advertise};transport=tcp"),
        Transport::Tls => write!(out, "sips:{prefix}{shard}.sipark@{advertise}"),
    };
}
