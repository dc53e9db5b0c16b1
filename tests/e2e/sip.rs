//! Minimal SIP over a Rust UDP socket for the end-to-end tests: build requests and responses as
//! text, read messages, and pick apart park-info bodies. Deliberately independent of sipark's
//! own parser so that the tests do not share its bugs.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::harness::DOMAIN;

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A process-unique token for branches, tags and Call-IDs.
pub fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A SIP message received (or logged) as text.
#[derive(Clone, Debug)]
pub struct Msg {
    pub raw: String,
}

/// Compact header forms (RFC 3261 §7.3.3 and friends).
fn compact(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "call-id" => "i",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        "from" => "f",
        "to" => "t",
        "via" => "v",
        "event" => "o",
        "subject" => "s",
        "supported" => "k",
        "referred-by" => "b",
        "refer-to" => "r",
        _ => return None,
    })
}

impl Msg {
    pub fn new(raw: String) -> Msg {
        Msg { raw }
    }

    fn head(&self) -> &str {
        match self.raw.find("\r\n\r\n") {
            Some(i) => &self.raw[..i],
            None => &self.raw,
        }
    }

    pub fn body(&self) -> &str {
        match self.raw.find("\r\n\r\n") {
            Some(i) => &self.raw[i + 4..],
            None => "",
        }
    }

    pub fn first_line(&self) -> &str {
        self.head().lines().next().unwrap_or_default()
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        let l = self.first_line();
        let rest = l.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// Method of a request.
    pub fn method(&self) -> Option<&str> {
        let l = self.first_line();
        if l.starts_with("SIP/2.0 ") {
            return None;
        }
        l.split(' ').next()
    }

    /// Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.first_line().split(' ').nth(1)
    }

    /// Every value of header `name` (long or compact form, case-insensitive), trimmed; each
    /// header line is one value (comma-separated lists are not split).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let short = compact(name);
        let mut out = Vec::new();
        // Unfold continuation lines is not needed for the messages sipark sends.
        for line in self.head().split("\r\n").skip(1) {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let n = n.trim();
            if n.eq_ignore_ascii_case(name) || short.is_some_and(|s| n.eq_ignore_ascii_case(s)) {
                out.push(v.trim());
            }
        }
        out
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    /// The method in CSeq.
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }

    /// The tag parameter of a From/To header value.
    pub fn tag_of(&self, header: &str) -> Option<String> {
        let v = self.header(header)?;
        // Parameters after the closing '>' (or after the URI when there is none).
        let params = match v.rfind('>') {
            Some(i) => &v[i + 1..],
            None => v,
        };
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
            .map(|(_, t)| t.trim().to_string())
    }
}

/// The URI inside `<...>` of a name-addr, or the value up to ';' for an addr-spec.
pub fn uri_of(value: &str) -> &str {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>'))
        && a < b
    {
        return &value[a + 1..b];
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// A UDP socket playing a SIP endpoint.
pub struct Udp {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Udp {
    pub fn bind(ip: Ipv4Addr) -> Udp {
        let sock = UdpSocket::bind(SocketAddrV4::new(ip, 0)).unwrap_or_else(|e| panic!("cannot bind UDP on {ip}: {e}"));
        let addr = sock.local_addr().expect("local_addr");
        Udp { sock, addr }
    }

    pub fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).unwrap_or_else(|e| panic!("send_to {to} failed: {e}"));
    }

    /// Next datagram before `deadline` (non-SIP keepalives are skipped).
    pub fn recv_until(&self, deadline: Instant) -> Option<(Msg, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if text.trim().is_empty() {
                        continue;
                    }
                    return Some((Msg::new(text), from));
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    continue;
                }
                // ICMP port unreachable from an earlier send, etc.
                Err(_) => continue,
            }
        }
    }

    /// Waits for a message satisfying `pred`; others are kept in the panic message.
    pub fn expect(&self, what: &str, limit: Duration, pred: impl Fn(&Msg) -> bool) -> (Msg, SocketAddr) {
        let deadline = Instant::now() + limit;
        let mut skipped = Vec::new();
        while let Some((m, from)) = self.recv_until(deadline) {
            if pred(&m) {
                return (m, from);
            }
            skipped.push(m.first_line().to_string());
        }
        panic!("socket {}: no {what} within {limit:?}; received instead: {skipped:?}", self.addr);
    }

    /// Waits for the response to the request with `call_id` and CSeq method `method`, skipping
    /// provisional responses; returns the final response.
    pub fn expect_final(&self, call_id: &str, method: &str, limit: Duration) -> Msg {
        let (m, _) = self.expect(&format!("final response to {method} {call_id}"), limit, |m| {
            m.status().is_some_and(|s| s >= 200)
                && m.header("Call-ID") == Some(call_id)
                && m.cseq_method() == Some(method)
        });
        m
    }

    /// Sends a request and returns its final response.
    pub fn transact(&self, to: SocketAddr, req: &Request) -> Msg {
        self.send(to, &req.render());
        self.expect_final(&req.call_id, &req.method, Duration::from_secs(5))
    }
}

/// A request to send from a Rust socket.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub via: SocketAddr,
    pub branch: String,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub extra: Vec<String>,
    pub body: String,
}

impl Request {
    /// An out-of-dialog request from `me` with fresh branch, tag and Call-ID.
    pub fn new(method: &str, uri: &str, me: SocketAddr, from_user: &str, to: &str) -> Request {
        let n = unique();
        Request {
            method: method.to_string(),
            uri: uri.to_string(),
            via: me,
            branch: format!("z9hG4bKe2e{n}x{}", std::process::id()),
            from: format!("<sip:{from_user}@{DOMAIN}>;tag=e2e{n}"),
            to: to.to_string(),
            call_id: format!("e2e-{n}-{}@{}", std::process::id(), me.ip()),
            cseq: 1,
            extra: Vec::new(),
            body: String::new(),
        }
    }

    pub fn header(mut self, h: &str) -> Self {
        self.extra.push(h.to_string());
        self
    }

    pub fn sdp(mut self, body: &str) -> Self {
        self.extra.push("Content-Type: application/sdp".to_string());
        self.body = body.to_string();
        self
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "{} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\nFrom: {}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: {} {}\r\nMax-Forwards: 70\r\n",
            self.method, self.uri, self.via, self.branch, self.from, self.to, self.call_id, self.cseq, self.method
        );
        for h in &self.extra {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        s.push_str(&self.body);
        s
    }
}

/// An SDP offer from `addr` with session name `name`.
pub fn sdp(addr: SocketAddr, name: &str) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no=e2e 4242 1 IN IP4 {ip}\r\ns={name}\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// A response to `req` (Via, From, To, Call-ID, CSeq copied; To tag added when given and
/// absent).
pub fn response(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>, extra: &[&str]) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers("Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    let from = req.header("From").unwrap_or_default();
    let mut to = req.header("To").unwrap_or_default().to_string();
    if let Some(tag) = to_tag
        && req.tag_of("To").is_none()
    {
        to.push_str(&format!(";tag={tag}"));
    }
    s.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.header("Call-ID").unwrap_or_default(),
        req.header("CSeq").unwrap_or_default()
    ));
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// OPTIONS from `me` to sipark.
pub fn options(me: SocketAddr, engine: SocketAddr, call_id: &str) -> String {
    let mut r = Request::new("OPTIONS", &format!("sip:{engine}"), me, "e2e", &format!("<sip:{engine}>"));
    r.call_id = call_id.to_string();
    r.render()
}

/// REGISTER `ext`@DOMAIN with a Contact at `me`, expires `expires`.
pub fn register(me: SocketAddr, ext: &str, expires: u32) -> Request {
    Request::new("REGISTER", &format!("sip:{DOMAIN}"), me, ext, &format!("<sip:{ext}@{DOMAIN}>"))
        .header(&format!("Contact: <sip:{ext}@{me}>;expires={expires}"))
}

// ---------------------------------------------------------------------------------------------
// park-info bodies
// ---------------------------------------------------------------------------------------------

/// One `<call>` of a park-info document.
#[derive(Clone, Debug, Default)]
pub struct ParkCall {
    pub id: String,
    pub state: String,
    pub reason: Option<String>,
    pub timeout: Option<String>,
    pub parked_uri: Option<String>,
    pub parked_display: Option<String>,
    pub parker_uri: Option<String>,
    pub retrieve_uri: Option<String>,
}

/// A park-info document.
#[derive(Clone, Debug, Default)]
pub struct ParkInfo {
    pub version: u64,
    pub extension: String,
    pub domain: String,
    pub calls: Vec<ParkCall>,
}

impl ParkInfo {
    pub fn call(&self, id: &str) -> Option<&ParkCall> {
        self.calls.iter().find(|c| c.id == id)
    }

    pub fn parked(&self) -> Vec<&ParkCall> {
        self.calls.iter().filter(|c| c.state == "parked").collect()
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Attributes of the start tag beginning at `tag` (which starts with '<').
fn attrs(tag: &str) -> Vec<(String, String)> {
    let end = tag.find('>').unwrap_or(tag.len());
    let mut rest = &tag[..end];
    // Skip the element name.
    rest = rest.trim_start_matches('<').trim_start_matches(|c: char| !c.is_whitespace());
    let mut out = Vec::new();
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(q) = after.chars().next() else {
            break;
        };
        if q != '"' && q != '\'' {
            break;
        }
        let Some(close) = after[1..].find(q) else {
            break;
        };
        out.push((name, xml_unescape(&after[1..1 + close])));
        rest = &after[close + 2..];
    }
    out
}

fn attr(list: &[(String, String)], name: &str) -> Option<String> {
    list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The first start tag `<name ...>` in `s`.
fn find_tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!("<{name}");
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat) {
        let at = from + i;
        let next = s[at + pat.len()..].chars().next();
        if next.is_some_and(|c| c.is_whitespace() || c == '>' || c == '/') {
            return Some(&s[at..]);
        }
        from = at + pat.len();
    }
    None
}

/// Parses a park-info body; `Err` says what is wrong.
pub fn parse_park_info(body: &str) -> Result<ParkInfo, String> {
    let root = find_tag(body, "park-info").ok_or("no <park-info> element")?;
    let ra = attrs(root);
    let version = attr(&ra, "version")
        .ok_or("park-info without version")?
        .parse::<u64>()
        .map_err(|e| format!("bad version: {e}"))?;
    let mut info = ParkInfo {
        version,
        extension: attr(&ra, "extension").unwrap_or_default(),
        domain: attr(&ra, "domain").unwrap_or_default(),
        calls: Vec::new(),
    };
    let mut rest = root;
    while let Some(call) = find_tag(&rest[1..], "call") {
        let ca = attrs(call);
        // The call's content: up to </call>, or nothing for <call .../>.
        let start_end = call.find('>').ok_or("unterminated <call>")?;
        let content = if call[..start_end].ends_with('/') {
            ""
        } else {
            let close = call.find("</call>").ok_or("no </call>")?;
            &call[start_end + 1..close]
        };
        let child = |name: &str, a: &str| find_tag(content, name).and_then(|t| attr(&attrs(t), a));
        info.calls.push(ParkCall {
            id: attr(&ca, "id").ok_or("call without id")?,
            state: attr(&ca, "state").ok_or("call without state")?,
            reason: attr(&ca, "reason"),
            timeout: attr(&ca, "timeout"),
            parked_uri: child("parked", "uri"),
            parked_display: child("parked", "display"),
            parker_uri: child("parker", "uri"),
            retrieve_uri: child("retrieve", "uri"),
        });
        rest = call;
    }
    Ok(info)
}

/// Parses the body of a NOTIFY, panicking with the message on error.
pub fn park_info_of(m: &Msg) -> ParkInfo {
    parse_park_info(m.body()).unwrap_or_else(|e| panic!("bad park-info body ({e}) in NOTIFY:\n{}", m.raw))
}

// ---------------------------------------------------------------------------------------------
// Agents: Rust endpoints answering on their own thread
// ---------------------------------------------------------------------------------------------

/// A Rust SIP endpoint whose socket is served by a thread: `on_msg` answers what must be
/// answered, and every received message is also handed to the test through a channel.
pub struct Agent {
    pub addr: SocketAddr,
    sender: Udp,
    rx: Receiver<Msg>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// What an agent's thread does with each message before forwarding it to the test.
pub type OnMsg = Box<dyn FnMut(&Udp, &Msg, SocketAddr) + Send>;

impl Agent {
    pub fn spawn(udp: Udp, mut on_msg: OnMsg) -> Agent {
        let sender = Udp { sock: udp.sock.try_clone().expect("clone socket"), addr: udp.addr };
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let addr = udp.addr;
        let handle = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Some((m, from)) = udp.recv_until(Instant::now() + Duration::from_millis(50)) else {
                    continue;
                };
                on_msg(&udp, &m, from);
                if tx.send(m).is_err() {
                    return;
                }
            }
        });
        Agent { addr, sender, rx, stop, handle: Some(handle) }
    }

    /// An agent that answers every NOTIFY (and OPTIONS) with 200 OK: a registered phone.
    pub fn phone(udp: Udp) -> Agent {
        Agent::spawn(
            udp,
            Box::new(|udp, m, from| {
                if matches!(m.method(), Some("NOTIFY" | "OPTIONS")) {
                    udp.send(from, &response(m, 200, "OK", Some("e2ephone"), &[]));
                }
            }),
        )
    }

    pub fn send(&self, to: SocketAddr, text: &str) {
        self.sender.send(to, text);
    }

    /// The next received message satisfying `pred` within `limit` (others are dropped and
    /// listed in the panic message).
    pub fn expect(&self, what: &str, limit: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + limit;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if pred(&m) => return m,
                Ok(m) => skipped.push(m.first_line().to_string()),
                Err(_) => panic!("agent {}: no {what} within {limit:?}; received instead: {skipped:?}", self.addr),
            }
        }
    }

    /// Any message within `limit`, if one comes.
    pub fn try_next(&self, limit: Duration) -> Option<Msg> {
        self.rx.recv_timeout(limit).ok()
    }

    /// Sends `req` and returns its final response.
    pub fn transact(&self, to: SocketAddr, req: &Request) -> Msg {
        self.send(to, &req.render());
        let (id, method) = (req.call_id.clone(), req.method.clone());
        self.expect(&format!("final response to {method} {id}"), Duration::from_secs(5), |m| {
            m.status().is_some_and(|s| s >= 200)
                && m.header("Call-ID") == Some(id.as_str())
                && m.cseq_method() == Some(method.as_str())
        })
    }

    /// The next NOTIFY with a Call-ID not in `seen` (retransmissions are skipped), with its
    /// parsed park-info body.
    pub fn next_notify(&self, seen: &mut Vec<String>, limit: Duration) -> (Msg, ParkInfo) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.expect("NOTIFY", left, |m| m.method() == Some("NOTIFY"));
            let id = m.header("Call-ID").unwrap_or_default().to_string();
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let info = park_info_of(&m);
            return (m, info);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
